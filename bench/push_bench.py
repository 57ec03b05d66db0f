"""Push a ~250 MB five-layer image to an empty repository, by our daemon and by dockerd.

Run as root: ``python bench/push_bench.py [--layer-mb 60] [--layers 4] [--rounds 2]
[--tree DIR ...]``.

Side by side in one run, through the real docker CLI (``docker push``), to the CNCF registry
(a neutral one) on a loopback port: the same image, loaded into our daemon and into a private
dockerd 20.10, pushed each round to a new, empty registry, the two daemons in turn, the first
one alternating. A new registry, not only a new repository: both daemons remember where they
pushed a layer and would mount it from there, timing a mount instead of an upload (our gzip
and Go's give different blobs, so neither daemon's push helps the other's). Each layer is half
random bytes and half text, so compression has real work to do (or, with ``--tree``, each is
a real directory's tar). Then a second push of each (everything already exists) is timed too.
Each round's times are printed, then the medians and the size of each daemon's pushed layers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

# Run as a script, bench/ is on the path: its siblings' helpers are shared, not copied.
from containers import start_dockyard
from registry_bench import start_cncf

from dockyard.testing.images import busybox_rootfs, image_archive, layer_tar
from dockyard.testing.peers import docker_cli, docker_env, real_dockerd


def docker(host: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([docker_cli(), *args], env=docker_env(host), capture_output=True)


def cpu_seconds(pid: int) -> float:
    """User and system time of ``pid`` so far, all its threads: less disturbed than wall time
    by whatever else shares the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_push(host: str, name: str, pid: int) -> tuple[float, float]:
    """Wall time of ``docker push name``, and the CPU time the daemon (``pid``) spent on it."""
    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    result = docker(host, "push", name)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"docker push {name} failed: {result.stderr.decode()}")
    return elapsed, cpu_seconds(pid) - cpu


def tree_tar(root: Path) -> bytes:
    """A layer of ``root``'s files, under its path without the leading ``/``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(root, arcname=str(root.resolve()).lstrip("/"))
    return buffer.getvalue()


def pushed_size(port: int, repository: str) -> int:
    """The bytes of the layers the manifest ``repository:1`` names."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/{repository}/manifests/1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request) as response:
        return sum(layer["size"] for layer in json.load(response)["layers"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer-mb", type=int, default=60)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        help="a directory whose tar is a layer, instead of the made-up ones (repeatable): "
        "real files compress as real images do, /usr/lib/python3.11 say",
    )
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="push-bench-"))
    half = options.layer_mb * (1 << 20) // 2
    layers = [busybox_rootfs()]
    for tree in options.tree:
        layers.append(tree_tar(Path(tree)))
    for index in range(0 if options.tree else options.layers):
        text = (f"line {index} of some compressible text\n" * (half // 30))[:half].encode()
        layers.append(layer_tar({f"random{index}.bin": os.urandom(half), f"text{index}": text}))
    archive = workdir / "image.tar"
    archive.write_bytes(image_archive(layers, ["bench/push:1"]))
    total_mb, layer_count = sum(len(layer) for layer in layers) / 1e6, len(layers)
    del layers
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
            dockerd_pid = int((workdir / "dockerd" / "dockerd.pid").read_text())
            daemons = [("dockyard", host, ours.pid), ("dockerd", peer.host, dockerd_pid)]
            cpu: dict[str, list[float]] = {"dockyard": [], "dockerd": []}
            sizes: dict[str, int] = {}
            for round_ in range(options.rounds):
                round_dir = workdir / f"round{round_}"
                round_dir.mkdir()
                registry, port = start_cncf(round_dir)
                try:
                    in_turn = daemons if round_ % 2 == 0 else daemons[::-1]
                    for label, daemon_host, pid in in_turn:
                        name = f"127.0.0.1:{port}/{label}/push:1"
                        docker(daemon_host, "tag", "bench/push:1", name)
                        elapsed, spent = timed_push(daemon_host, name, pid)
                        results[label].append(elapsed)
                        cpu[label].append(spent)
                        again[label].append(timed_push(daemon_host, name, pid)[0])
                        sizes[label] = pushed_size(port, f"{label}/push")
                finally:
                    registry.terminate()
                    registry.wait()
                    shutil.rmtree(round_dir, ignore_errors=True)
                print(
                    f"round {round_}: dockyard {results['dockyard'][-1]:.2f} s "
                    f"(CPU {cpu['dockyard'][-1]:.2f} s), dockerd {results['dockerd'][-1]:.2f} s "
                    f"(CPU {cpu['dockerd'][-1]:.2f} s)",
                    flush=True,
                )
    finally:
        ours.terminate()
        ours.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"image: {layer_count} layers, {total_mb:.0f} MB uncompressed")
    for label in ("dockyard", "dockerd"):
        fresh, second = statistics.median(results[label]), statistics.median(again[label])
        spent = statistics.median(cpu[label])
        print(
            f"{label:9} push to an empty repository {fresh:6.2f} s (daemon CPU {spent:5.2f} s)"
            f"   again {second:5.2f} s   layers pushed {sizes[label] / 1e6:.1f} MB"
        )
    ratio = statistics.median(results["dockyard"]) / statistics.median(results["dockerd"])
    # Each round's own ratio too: the machine's load changes between rounds, less within one.
    pairs = zip(results["dockyard"], results["dockerd"], strict=True)
    paired = [ours / theirs for ours, theirs in pairs]
    print(
        f"dockyard / dockerd: {ratio:.2f}x (rounds: " + ", ".join(f"{r:.2f}" for r in paired) + ")"
    )


if __name__ == "__main__":
    main()
