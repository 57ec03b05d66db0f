"""Push a ~250 MB five-layer image to an empty repository, by our daemon and by dockerd.

Run as root: ``python bench/push_bench.py [--layer-mb 60] [--layers 4] [--rounds 2]``.

Side by side in one run, through the real docker CLI (``docker push``), to the CNCF registry
(a neutral one) on a loopback port: the same image, loaded into our daemon and into a private
dockerd 20.10, pushed to fresh repositories each round (nothing to skip: our gzip and Go's give
different blobs, so neither daemon's push helps the other's). Each layer is half random bytes
and half text, so compression has real work to do. Then a second push of each (everything
already exists) is timed too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dockyard.testing.images import busybox_rootfs, image_archive, layer_tar
from dockyard.testing.peers import docker_cli, docker_env, real_dockerd


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cncf(workdir: Path) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("docker-registry") or sys.exit("docker-registry is not installed")
    port = free_port()
    config = workdir / "cncf.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir}/cncf-data\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "cncf.log", "wb"),  # noqa: SIM115 - lives as long as the registry
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the CNCF registry did not start")


def start_dockyard(root: Path) -> tuple[subprocess.Popen, str]:
    socket_path = root / "dockyard.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "daemon", "--data-root", str(root / "data"),
         "-H", f"unix://{socket_path}", "--log-level", "warning"],
        stderr=open(root / "daemon.log", "w"),  # noqa: SIM115 - lives as long as the daemon
    )  # fmt: skip
    host = f"unix://{socket_path}"
    for _ in range(200):
        if socket_path.exists() and docker(host, "version").returncode == 0:
            return process, host
        time.sleep(0.05)
    raise RuntimeError(f"dockyard did not start: {(root / 'daemon.log').read_text()}")


def docker(host: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([docker_cli(), *args], env=docker_env(host), capture_output=True)


def timed_push(host: str, name: str) -> float:
    started = time.perf_counter()
    result = docker(host, "push", name)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"docker push {name} failed: {result.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer-mb", type=int, default=60)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="push-bench-"))
    half = options.layer_mb * (1 << 20) // 2
    layers = [busybox_rootfs()]
    for index in range(options.layers):
        text = (f"line {index} of some compressible text\n" * (half // 30))[:half].encode()
        layers.append(layer_tar({f"random{index}.bin": os.urandom(half), f"text{index}": text}))
    archive = workdir / "image.tar"
    archive.write_bytes(image_archive(layers, ["bench/push:1"]))
    total_mb = sum(len(layer) for layer in layers) / 1e6
    del layers
    registry, port = start_cncf(workdir)
    ours, host = start_dockyard(workdir)
    try:
        with real_dockerd(workdir / "dockerd") as peer:
            results: dict[str, list[float]] = {"dockyard": [], "dockerd": []}
            again: dict[str, list[float]] = {"dockyard": [], "dockerd": []}
            for daemon_host in (host, peer.host):
                subprocess.run(
                    [docker_cli(), "load", "-i", str(archive)],
                    env=docker_env(daemon_host), check=True, capture_output=True,
                )  # fmt: skip
            for round_ in range(options.rounds):
                for label, daemon_host in (("dockyard", host), ("dockerd", peer.host)):
                    name = f"127.0.0.1:{port}/{label}/r{round_}:1"
                    docker(daemon_host, "tag", "bench/push:1", name)
                    results[label].append(timed_push(daemon_host, name))
                    again[label].append(timed_push(daemon_host, name))
    finally:
        ours.terminate()
        ours.wait()
        registry.terminate()
        registry.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"image: {options.layers + 1} layers, {total_mb:.0f} MB uncompressed")
    for label in ("dockyard", "dockerd"):
        fresh, second = statistics.median(results[label]), statistics.median(again[label])
        print(f"{label:9} push to an empty repository {fresh:6.2f} s   again {second:5.2f} s")
    ratio = statistics.median(results["dockyard"]) / statistics.median(results["dockerd"])
    print(f"dockyard / dockerd: {ratio:.2f}x")


if __name__ == "__main__":
    main()
