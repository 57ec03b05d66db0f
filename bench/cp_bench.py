"""``docker cp`` of a 100 MB directory each way, our daemon beside dockerd 20.10 (Debian docker.io).

Run as root: ``python bench/cp_bench.py [--runs 5] [--mb 100] [--files 200]``. Both daemons
run at once, each on its own socket and data root, with the same busybox image and one
running container each. The directory is ``--files`` files of random bytes (``--mb`` MB in
all) in a few subdirectories. Measured through the real docker CLI, turn about (ours,
dockerd's, ours, ...), median of ``--runs``:

* ``cp-in``: ``docker cp DIR box:/tmp/dN`` (HEAD, then a streamed PUT of the tar);
* ``cp-out``: ``docker cp box:/tmp/d0 OUT`` (one GET, the tar streamed back);
* ``cp-out-stopped``: the same from the container after it stopped (ours mounts its
  snapshot for the request).

Issue 12 asks for the figures (no target).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from containers import start_dockyard  # noqa: E402

from dockyard.testing.images import busybox_rootfs, image_archive  # noqa: E402
from dockyard.testing.peers import docker_cli, docker_env, real_dockerd  # noqa: E402


def make_tree(directory: Path, megabytes: int, files: int) -> None:
    size = megabytes * 1_000_000 // files
    for index in range(files):
        sub = directory / f"sub{index % 8}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"file{index}.bin").write_bytes(os.urandom(size))


def docker(host: str, *args: str) -> None:
    done = subprocess.run([docker_cli(), *args], env=docker_env(host), capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.decode()}")


def timed(host: str, *args: str) -> float:
    start = time.perf_counter()
    docker(host, *args)
    return time.perf_counter() - start


def prepare(host: str, archive: Path) -> None:
    docker(host, "load", "-i", str(archive))
    docker(host, "run", "-d", "--name", "box", "busybox", "sleep", "3600")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {"dockyard": {}, "dockerd": {}}
    with tempfile.TemporaryDirectory(prefix="dockyard-cp-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "ours").mkdir()
        archive = workdir / "busybox.tar"
        archive.write_bytes(image_archive([busybox_rootfs()], ["busybox:latest"]))
        source = workdir / "tree"
        make_tree(source, args.mb, args.files)
        # No default bridge: cp needs no network, and the bench leaves nothing on the host.
        process, our_host = start_dockyard(workdir / "ours", "--bridge", "none")
        try:
            with real_dockerd(workdir / "dockerd") as peer:
                hosts = {"dockyard": our_host, "dockerd": peer.host}
                for host in hosts.values():
                    prepare(host, archive)
                for phase in ("cp-in", "cp-out", "cp-out-stopped"):
                    if phase == "cp-out-stopped":
                        for host in hosts.values():
                            docker(host, "stop", "-t", "0", "box")
                    for run in range(args.runs):
                        for engine, host in hosts.items():
                            out = workdir / f"out-{engine}-{phase}-{run}"
                            if phase == "cp-in":
                                took = timed(host, "cp", str(source), f"box:/tmp/d{run}")
                            else:
                                took = timed(host, "cp", "box:/tmp/d0", str(out))
                                shutil.rmtree(out)
                            results[engine].setdefault(phase, []).append(took)
                for host in hosts.values():
                    docker(host, "rm", "-f", "box")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    print(f"docker cp of {args.mb} MB in {args.files} files, median of {args.runs} (seconds):")
    print(f"  {'':16} {'dockyard':>9} {'dockerd':>9} {'ratio':>6}")
    for phase in results["dockyard"]:
        ours = statistics.median(results["dockyard"][phase])
        theirs = statistics.median(results["dockerd"][phase])
        print(f"  {phase:16} {ours:9.3f} {theirs:9.3f} {ours / theirs:6.2f}")
    print("(ratio: dockyard / dockerd; below 1 is better for dockyard)")


if __name__ == "__main__":
    main()
