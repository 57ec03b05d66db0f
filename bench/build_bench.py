"""A multi-stage ``docker build`` by our daemon and by dockerd 20.10's classic builder.

Run as root: ``python bench/build_bench.py [--rounds 5] [--context-mb 20] [--engines ...]``.

Side by side in one run, through the real docker CLI (``DOCKER_BUILDKIT=0 docker build``), the
same context and Dockerfile (two stages: ``COPY`` of the context's files, ``RUN`` steps that
read them, ``COPY --from``, and metadata steps) sent to our daemon and to a private dockerd,
each with a busybox loaded, never pulled, and no default bridge (``--bridge none``: RUN steps
touch nothing of the host's network). Each round, the two daemons in turn, the first one
alternating:

* **cold**: ``--no-cache``, every step run;
* **cached**: the same build again, every step from the cache (checked: the bench stops if a
  step was not ``Using cache``, which would time something else).

Each round's times are printed, then each figure's median and the ratio ours/dockerd, with
each round's own ratio (the machine's load changes between rounds, less within one).
Targets (issue 12): cold at most 1.0x dockerd's time, cached at most 0.5x.

Until our daemon builds, ``--engines dockerd`` runs the harness against dockerd alone; with
both, a daemon that refuses ``/build`` is reported and left out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Run as a script, bench/ is on the path: its siblings' helpers are shared, not copied.
from containers import start_dockyard

from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import docker_cli, docker_env, real_dockerd

ENGINES = ("dockyard", "dockerd")
TAG = "bench-build:1"
DOCKERFILE = """\
FROM busybox AS build
ARG VERSION=1
WORKDIR /src
COPY src/ ./
RUN mkdir -p /out && for f in *.txt; do wc -c "$f" >> /out/sizes; done
RUN cat *.txt | wc -l > /out/lines && echo "version $VERSION" > /out/version

FROM busybox
ENV APP=/app MODE=bench
WORKDIR /app
COPY --from=build /out/ ./
COPY config/ ./config/
LABEL org.example.bench=build
EXPOSE 8080/tcp
USER nobody
CMD ["cat", "/app/version"]
"""
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"


def make_context(root: Path, context_mb: int, files: int = 200) -> Path:
    """``src/`` holds ``context_mb`` MB of text in ``files`` files; ``config/`` a few small ones."""
    (root / "src").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / ".dockerignore").write_text("*.tmp\n")
    line = b"the quick brown fox jumps over the lazy dog 0123456789\n"
    per_file = context_mb * 1_000_000 // files
    for index in range(files):
        (root / "src" / f"part{index:04}.txt").write_bytes(line * (per_file // len(line)))
    for name in ("app.conf", "log.conf", "users.conf"):
        (root / "config" / name).write_text(f"# {name}\nkey = value\n")
    (root / "scratch.tmp").write_bytes(os.urandom(1 << 20))  # left out by .dockerignore
    return root


def docker(host: str, *args: str) -> subprocess.CompletedProcess:
    env = {**docker_env(host), "DOCKER_BUILDKIT": "0"}
    return subprocess.run([docker_cli(), *args], env=env, capture_output=True, text=True)


def load_busybox(host: str, workdir: Path) -> None:
    archive = workdir / "busybox.tar"
    archive.write_bytes(image_archive([busybox_rootfs({"etc/passwd": PASSWD})], ["busybox:latest"]))
    loaded = docker(host, "load", "-i", str(archive))
    if loaded.returncode != 0:
        raise RuntimeError(f"docker load failed: {loaded.stderr}")


class BuildFailed(Exception):
    """A build did not succeed (or a cached one ran a step): the figure would be meaningless."""


def timed_build(host: str, context: Path, cached: bool) -> float:
    flags = ["build", "-t", TAG, str(context)]
    if not cached:
        flags.insert(1, "--no-cache")
    started = time.perf_counter()
    built = docker(host, *flags)
    elapsed = time.perf_counter() - started
    if built.returncode != 0 or "Successfully tagged" not in built.stdout:
        raise BuildFailed((built.stdout + built.stderr).strip().splitlines()[-1])
    if cached:
        # Every step after a FROM must come from the cache.
        for step in re.split(r"^Step \d+/\d+ : ", built.stdout, flags=re.MULTILINE)[1:]:
            if not step.startswith("FROM ") and " ---> Using cache\n" not in step:
                raise BuildFailed(f"the cached build ran a step: {step.splitlines()[0]}")
    elif "Using cache" in built.stdout:
        raise BuildFailed("--no-cache used the cache")
    return elapsed


@contextlib.contextmanager
def daemons(workdir: Path, engines: list[str]) -> Iterator[dict[str, str]]:
    """The hosts of the daemons asked for, each with busybox loaded."""
    with contextlib.ExitStack() as stack:
        hosts: dict[str, str] = {}
        if "dockyard" in engines:
            (workdir / "ours").mkdir()
            process, hosts["dockyard"] = start_dockyard(workdir / "ours", "--bridge", "none")

            def stop() -> None:
                process.terminate()
                process.wait(30)

            stack.callback(stop)
        if "dockerd" in engines:
            hosts["dockerd"] = stack.enter_context(real_dockerd(workdir / "dockerd")).host
        for host in hosts.values():
            load_busybox(host, workdir)
        yield hosts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--context-mb", type=int, default=20)
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="build-bench-"))
    cold: dict[str, list[float]] = {}
    cached: dict[str, list[float]] = {}
    try:
        context = make_context(workdir / "ctx", args.context_mb)
        with daemons(workdir, args.engines) as hosts:
            for name, host in list(hosts.items()):
                try:
                    timed_build(host, context, cached=False)  # warm-up: the first build fills
                    # the cache the cached figure times
                except BuildFailed as exc:
                    print(f"{name}: left out, it cannot build: {exc}")
                    del hosts[name]
            if not hosts:
                raise SystemExit("no daemon builds")
            for round_index in range(args.rounds):
                order = list(hosts) if round_index % 2 == 0 else list(reversed(hosts))
                shown = []
                for name in order:
                    cold.setdefault(name, []).append(timed_build(hosts[name], context, False))
                    cached.setdefault(name, []).append(timed_build(hosts[name], context, True))
                    shown.append(
                        f"{name} cold {cold[name][-1]:6.2f} s cached {cached[name][-1]:5.2f} s"
                    )
                print(f"round {round_index + 1}: " + "   ".join(shown), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    steps = len([line for line in DOCKERFILE.splitlines() if line.strip()])
    print(f"build: {steps} steps in 2 stages, a {args.context_mb} MB context; {args.rounds} rounds")
    for name in cold:
        print(
            f"{name:9} cold {statistics.median(cold[name]):6.2f} s"
            f"   cached {statistics.median(cached[name]):5.2f} s   (medians)"
        )
    if len(cold) == 2:
        for label, figures, target in (("cold", cold, 1.0), ("cached", cached, 0.5)):
            ratio = statistics.median(figures["dockyard"]) / statistics.median(figures["dockerd"])
            pairs = zip(figures["dockyard"], figures["dockerd"], strict=True)
            rounds = ", ".join(f"{ours / theirs:.2f}" for ours, theirs in pairs)
            print(
                f"{label:6} dockyard / dockerd: {ratio:.2f}x (target {target}x; rounds: {rounds})"
            )


if __name__ == "__main__":
    main()
