"""Pulls by ``dockyard daemon`` through ``dockyard registry`` as a pull-through cache, against
pulls straight from the registry it caches.

Run (root): ``python bench/proxy_bench.py [--layer-mb 20] [--runs 2]``. The CNCF registry
(Debian's docker-registry) holds a 5-layer image (``--layer-mb`` of incompressible data per
layer, gzip); our registry, started with ``[registry.proxy] remote-url`` pointing at it, serves
on another loopback port. Each pull is by a fresh daemon (``POST /images/create``, the stream
read to its end):

* **direct**: from the CNCF registry;
* **cold**: through a proxy that holds nothing yet (it fetches every blob while streaming it);
* **warm**: through the same proxy afterwards (it holds everything; the tag is within its TTL);
* **ours**: from our registry as a plain registry holding the image (pushed to it): what the
  warm pull costs without the proxy, to tell the proxy's cost from our registry's.

Prints seconds (best of ``--runs``; each run with a fresh proxy) and each ratio to direct.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from pull_bench import MIB, ROOT, dockyard_daemon, push, timed_pull

from dockyard.testing.images import layer_tar
from tests.registry.conftest import start_cncf_registry, start_registry_process

IMAGE = "bench/proxied"


def plain_config(root: Path) -> str:
    return (
        f'[registry]\nbackend = "filesystem"\ndata-root = "{root}/state"\nlog-level = "warning"\n'
        f'[registries.filesystem]\nroot = "{root}/data"\n'
    )


def proxy_config(root: Path, remote_url: str) -> str:
    return plain_config(root) + f'[registry.proxy]\nremote-url = "{remote_url}"\ntag-ttl = 300\n'


def pull_with_fresh_daemon(base: Path, host: str) -> float:
    base.mkdir(parents=True)
    with dockyard_daemon(base) as socket_path:
        return timed_pull(socket_path, f"{host}/{IMAGE}", "1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layer-mb", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2)
    options = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    registry = start_cncf_registry(work / "registry")
    try:
        size = options.layer_mb * MIB
        layers = [layer_tar({f"data{i}": os.urandom(size)}) for i in range(5)]
        push(registry.url, IMAGE, "1", layers)
        plain = start_registry_process(work / "plain", plain_config(work / "plain"))
        push(plain.url, IMAGE, "1", layers)
        best: dict[str, float] = {}
        for run in range(options.runs):
            times = {"direct": pull_with_fresh_daemon(work / f"direct-{run}", registry.host)}
            proxy_root = work / f"proxy-{run}"
            proxy = start_registry_process(proxy_root, proxy_config(proxy_root, registry.url))
            try:
                times["cold"] = pull_with_fresh_daemon(work / f"cold-{run}", proxy.host)
                times["warm"] = pull_with_fresh_daemon(work / f"warm-{run}", proxy.host)
            finally:
                proxy.stop()
            times["ours"] = pull_with_fresh_daemon(work / f"ours-{run}", plain.host)
            for case, seconds in times.items():
                best[case] = min(best.get(case, seconds), seconds)
        print(f"5 layers of {options.layer_mb} MiB (gzip), best of {options.runs}")
        print(f"{'pull':<7} {'seconds':>8} {'vs direct':>10}")
        for case, seconds in best.items():
            print(f"{case:<7} {seconds:>8.2f} {seconds / best['direct']:>9.2f}x")
        plain.stop()
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
