"""Pulls through ``dockyard daemon`` beside a real dockerd 20.10, from one local registry.

Run (root): ``python bench/pull_bench.py [--layer-mb 50]``. The CNCF registry (Debian's
docker-registry) serves on loopback; both daemons pull through the Engine API
(``POST /images/create``, the stream read to its end):

* **cold pull** of a 5-layer image (``--layer-mb`` of incompressible data per layer, gzip);
* **warm pull**: another image sharing its 4 lower layers, pulled after the first.

Prints seconds (best of ``--runs``; each run on fresh data roots) and the ratio
dockyard/dockerd. Target: cold pull at most 0.8x dockerd's time.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dockyard.testing.images import layer_tar  # noqa: E402
from dockyard.testing.peers import real_dockerd  # noqa: E402
from tests.conftest import http_request, wait_for_socket  # noqa: E402
from tests.registry.conftest import start_cncf_registry  # noqa: E402

MIB = 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(url: str, name: str, tag: str, tars: list[bytes]) -> None:
    blobs = [gzip.compress(t, compresslevel=1, mtime=0) for t in tars]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in tars]},
            "config": {},
        }
    ).encode()
    for data in (config, *blobs):
        reply = requests.post(f"{url}/v2/{name}/blobs/uploads/")
        location = reply.headers["Location"]
        location = location if "://" in location else url + location
        sep = "&" if "?" in location else "?"
        assert requests.put(f"{location}{sep}digest={sha256(data)}", data=data).status_code == 201
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": sha256(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": len(b),
                "digest": sha256(b),
            }
            for b in blobs
        ],
    }
    reply = requests.put(
        f"{url}/v2/{name}/manifests/{tag}",
        data=json.dumps(manifest),
        headers={"Content-Type": manifest["mediaType"]},
    )
    assert reply.status_code == 201, reply.text


def timed_pull(socket_path: str, image: str, tag: str) -> float:
    query = urlencode({"fromImage": image, "tag": tag})
    started = time.perf_counter()
    reply = http_request(
        socket_path, "POST", f"/v1.41/images/create?{query}", {"X-Registry-Auth": "e30="}, None, 600
    )
    elapsed = time.perf_counter() - started
    assert reply.status == 200 and b'"error"' not in reply.body, reply.body[-500:]
    return elapsed


@contextlib.contextmanager
def dockyard_daemon(base: Path) -> Iterator[str]:
    socket_path = str(base / "dockyard.sock")
    log = base / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env["PYTHONPATH"] = str(ROOT)
    args = ["daemon", "--data-root", str(base / "root"), "-H", f"unix://{socket_path}"]
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dockyard", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        wait_for_socket(process, socket_path, log)
        yield socket_path
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layer-mb", type=int, default=50)
    parser.add_argument("--runs", type=int, default=2)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pull-bench-"))
    registry = start_cncf_registry(work / "registry")
    try:
        url = f"http://127.0.0.1:{registry.port}"
        host = f"127.0.0.1:{registry.port}"
        size = options.layer_mb * MIB
        base = [layer_tar({f"data{i}": os.urandom(size)}) for i in range(4)]
        push(url, "bench/cold", "1", [*base, layer_tar({"top": os.urandom(size)})])
        push(url, "bench/warm", "1", [*base, layer_tar({"other": os.urandom(size)})])
        results: dict[str, dict[str, float]] = {"cold": {}, "warm": {}}
        for run in range(options.runs):
            for who in ("dockyard", "dockerd"):
                root = work / f"{who}-{run}"
                root.mkdir()
                context = dockyard_daemon(root) if who == "dockyard" else _dockerd_socket(root)
                with context as socket_path:
                    cold = timed_pull(socket_path, f"{host}/bench/cold", "1")
                    warm = timed_pull(socket_path, f"{host}/bench/warm", "1")
                results["cold"][who] = min(results["cold"].get(who, cold), cold)
                results["warm"][who] = min(results["warm"].get(who, warm), warm)
        print(f"5 layers of {options.layer_mb} MiB (gzip), best of {options.runs}")
        print(f"{'pull':<6} {'dockyard s':>11} {'dockerd s':>10} {'ratio':>6}")
        for case, times in results.items():
            ratio = times["dockyard"] / times["dockerd"]
            print(f"{case:<6} {times['dockyard']:>11.2f} {times['dockerd']:>10.2f} {ratio:>6.2f}")
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _dockerd_socket(root: Path) -> Iterator[str]:
    with real_dockerd(root) as peer:
        yield peer.host.removeprefix("unix://")


if __name__ == "__main__":
    main()
