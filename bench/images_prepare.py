"""Load a ~200 MB multi-layer image, then prepare 20 root filesystems from it, beside dockerd.

Run as root: ``python bench/images_prepare.py [--layer-mb 50] [--layers 4] [--count 20]``.

Side by side in one run:

* **load**: ``docker load -i`` through the real docker CLI, into our daemon (``overlay`` and
  ``vfs``) and into a private dockerd (Debian's docker.io, overlay2).
* **prepare**: 20 writable root filesystems over the image's layers. Ours: the storage driver's
  ``prepare`` on the image store the daemon wrote (in-process: the container API that will
  wrap it is not built yet). dockerd's: ``POST /containers/create`` through docker-py, which
  prepares the overlay2 rootfs and also writes container config; so dockerd does somewhat more
  per call. The same is measured for a 2 MB image, to show whether prepare grows with image size.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

from dockyard.daemon.images.content import ContentStore
from dockyard.daemon.images.store import ImageStore
from dockyard.testing.images import busybox_rootfs, image_archive, layer_tar
from dockyard.testing.peers import docker_cli, docker_env, real_dockerd

ROOT = Path(__file__).resolve().parent.parent


def build_archives(workdir: Path, layer_mb: int, layers: int) -> tuple[Path, Path]:
    big_layers = [busybox_rootfs()]
    for index in range(layers):
        # Several files a layer, random bytes so no filesystem can cheat with zeros.
        files = {f"data{index}": None}
        for part in range(4):
            files[f"data{index}/part{part}.bin"] = os.urandom(layer_mb * (1 << 20) // 4)
        big_layers.append(layer_tar(files))
    big = workdir / "big.tar"
    big.write_bytes(image_archive(big_layers, ["bench/big:1"]))
    small = workdir / "small.tar"
    small.write_bytes(image_archive([busybox_rootfs()], ["bench/small:1"]))
    return big, small


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def start_dockyard(root: Path, driver: str) -> tuple[subprocess.Popen, str]:
    socket_path = root / "dockyard.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "daemon", "--data-root", str(root / "data"),
         "-H", f"unix://{socket_path}", "--storage-driver", driver, "--log-level", "warning"],
        stderr=open(root / "daemon.log", "w"),  # noqa: SIM115 - lives as long as the daemon
    )  # fmt: skip
    host = f"unix://{socket_path}"
    for _ in range(200):
        if socket_path.exists() and timed_ok([docker_cli(), "version"], docker_env(host)):
            return process, host
        time.sleep(0.05)
    raise RuntimeError(f"dockyard did not start: {(root / 'daemon.log').read_text()}")


def timed_ok(command: list[str], env: dict[str, str]) -> bool:
    return subprocess.run(command, env=env, capture_output=True).returncode == 0


def prepare_ours(data_root: Path, driver_name: str, image: str, count: int) -> list[float]:
    from dockyard.core.config import Config
    from dockyard.core.drivers import DriverKind
    from dockyard.core.plugins import PluginHost

    host = PluginHost(Config(), "cli").load()
    info = next(i for i in host.driver_infos(DriverKind.STORAGE) if i.name == driver_name)
    from dockyard.core.drivers import DriverContext

    driver = info.factory(info.config_class(), DriverContext(data_root / "storage" / driver_name))
    store = ImageStore(data_root / "image", ContentStore(data_root / "content"), driver)
    record = store.resolve(image)
    parents = store.parents_of(record.layers[-1])
    samples = []
    for index in range(count):
        started = time.perf_counter()
        driver.prepare(f"bench-{index}", parents)
        samples.append(time.perf_counter() - started)
    for index in range(count):
        driver.remove(f"bench-{index}")
    return samples


def prepare_dockerd(host: str, image: str, count: int) -> list[float]:
    client = docker.APIClient(base_url=host, version="1.41")
    samples, ids = [], []
    for _ in range(count):
        started = time.perf_counter()
        ids.append(client.create_container(image, command="true", network_disabled=True)["Id"])
        samples.append(time.perf_counter() - started)
    for container in ids:
        client.remove_container(container)
    client.close()
    return samples


def ms(samples: list[float]) -> str:
    return (
        f"median {statistics.median(samples) * 1000:8.1f} ms  total {sum(samples) * 1000:8.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layer-mb", type=int, default=50)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp:
        workdir = Path(tmp)
        big, small = build_archives(workdir, args.layer_mb, args.layers)
        big_mb, small_mb = big.stat().st_size / 1e6, small.stat().st_size / 1e6
        print(f"image: {big_mb:.0f} MB in {args.layers + 1} layers; small image {small_mb:.1f} MB")
        print(f"{args.count} root filesystems each")
        results: dict[str, dict[str, float]] = {}
        for driver in ("overlay", "vfs"):
            root = workdir / f"dockyard-{driver}"
            root.mkdir()
            process, host = start_dockyard(root, driver)
            try:
                load = timed([docker_cli(), "load", "-i", str(big)], docker_env(host))
                timed([docker_cli(), "load", "-i", str(small)], docker_env(host))
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
            big_prepare = prepare_ours(root / "data", driver, "bench/big:1", args.count)
            small_prepare = prepare_ours(root / "data", driver, "bench/small:1", args.count)
            results[f"dockyard {driver}"] = {
                "load": load,
                "prepare": statistics.median(big_prepare),
                "prepare_small": statistics.median(small_prepare),
            }
            print(f"dockyard {driver:8} load {load:6.2f} s   prepare big {ms(big_prepare)}   "
                  f"small {ms(small_prepare)}")  # fmt: skip
        with real_dockerd(workdir / "dockerd") as peer:
            load = timed([docker_cli(), "load", "-i", str(big)], docker_env(peer.host))
            timed([docker_cli(), "load", "-i", str(small)], docker_env(peer.host))
            big_create = prepare_dockerd(peer.host, "bench/big:1", args.count)
            small_create = prepare_dockerd(peer.host, "bench/small:1", args.count)
        results["dockerd"] = {
            "load": load,
            "prepare": statistics.median(big_create),
            "prepare_small": statistics.median(small_create),
        }
        print(f"dockerd  overlay2 load {load:6.2f} s   create  big {ms(big_create)}   "
              f"small {ms(small_create)}")  # fmt: skip
        reference = results["dockerd"]
        print("\nratios (dockyard / dockerd; below 1 is faster than dockerd):")
        for name in ("dockyard overlay", "dockyard vfs"):
            ours = results[name]
            print(f"  {name:17} load {ours['load'] / reference['load']:5.2f}   "
                  f"prepare {ours['prepare'] / reference['prepare']:7.3f}   "
                  f"prepare big/small {ours['prepare'] / ours['prepare_small']:6.2f} "
                  f"(dockerd {reference['prepare'] / reference['prepare_small']:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
