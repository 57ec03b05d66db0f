"""Container start-up and memory, our daemon beside dockerd (Debian docker.io: containerd + runc).

Run as root: ``python bench/containers.py [--runs 20] [--concurrent 50]``. One run measures, for
each engine:

* ``docker run --rm busybox true`` end to end through the real docker CLI (median of N), and
  ``dockyard run --rm busybox true`` through our own CLI (the ``run_rm_own_cli`` ratio compares
  it with docker's CLI on dockerd);
* create + start + wait + remove through docker-py's low-level API (median of N);
* N containers started concurrently (``sleep 300``, 8 client threads): wall time;
* memory (PSS from /proc/PID/smaps_rollup, so shared pages are split fairly): the engine's
  processes idle, then with the concurrent containers running; per container, the supervisor
  (ours) or containerd-shim (dockerd's), not counting the container's own process.

Targets (issue 4): ``run --rm`` median at most half of docker's; per-container memory below
containerd-shim's.
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import beside_python, docker_cli, docker_env, real_dockerd


def own_cli_script() -> str:
    """Our console script, the one installed beside this interpreter (see beside_python)."""
    return beside_python("dockyard") or "dockyard"


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def processes_named(fragment: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if fragment.encode() in cmdline:
                found.append(int(entry))
    return found


def start_dockyard(root: Path, *extra_args: str) -> tuple[subprocess.Popen, str]:
    """``dockyard daemon`` on its own data root and socket, with ``extra_args`` more flags."""
    socket_path = root / "dockyard.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "daemon", "--data-root", str(root / "data"),
         "-H", f"unix://{socket_path}", "--log-level", "warning", *extra_args],
        stderr=open(root / "daemon.log", "w"),  # noqa: SIM115 - lives as long as the daemon
    )  # fmt: skip
    host = f"unix://{socket_path}"
    # A deadline, not a count of tries: a loaded machine starts it slower.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if (
            socket_path.exists()
            and subprocess.run(
                [docker_cli(), "version"], env=docker_env(host), capture_output=True
            ).returncode
            == 0
        ):
            return process, host
        time.sleep(0.05)
    raise RuntimeError((root / "daemon.log").read_text())


def parent_of(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def measure(
    host: str,
    engine: Callable[[], list[int]],
    per_container: Callable[[], list[int]],
    runs: int,
    concurrent: int,
    own_cli: list[str] | None = None,
) -> dict[str, float]:
    env = docker_env(host)
    archive = image_archive([busybox_rootfs()], ["busybox:latest"])
    subprocess.run([docker_cli(), "load"], input=archive, env=env, check=True, capture_output=True)
    subprocess.run(
        [docker_cli(), "run", "--rm", "--network", "none", "busybox", "true"],
        env=env,
        check=True,
        capture_output=True,
    )

    cli = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [docker_cli(), "run", "--rm", "--network", "none", "busybox", "true"],
            env=env,
            check=True,
            capture_output=True,
        )
        cli.append(time.perf_counter() - started)

    # The engine's own client, where it has one (dockyard's; dockerd's is the docker CLI).
    own = []
    for _ in range(runs if own_cli else 0):
        started = time.perf_counter()
        run_rm = [*own_cli, "run", "--rm", "--network", "none", "busybox", "true"]
        subprocess.run(run_rm, env=env, check=True, capture_output=True)
        own.append(time.perf_counter() - started)

    client = docker.APIClient(base_url=host, version="1.41", timeout=120)
    api = []
    for _ in range(runs):
        started = time.perf_counter()
        container = client.create_container(
            "busybox",
            "true",
            # No network, as dockerd's --network none (NetworkDisabled is refused here).
            host_config=client.create_host_config(network_mode="none"),
        )
        client.start(container)
        client.wait(container)
        client.remove_container(container)
        api.append(time.perf_counter() - started)

    idle = sum(pss_kib(pid) for pid in engine())

    def start_one(_: int) -> str:
        container = client.create_container(
            "busybox", "sleep 300", host_config=client.create_host_config(network_mode="none")
        )
        client.start(container)
        return container["Id"]

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(start_one, range(concurrent)))
    concurrent_seconds = time.perf_counter() - started
    time.sleep(1.0)
    busy = sum(pss_kib(pid) for pid in engine())
    shims = [pss_kib(pid) for pid in per_container()]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: client.remove_container(c, force=True), ids))
    client.close()
    return {
        "run_rm_cli": statistics.median(cli),
        "run_rm_own_cli": statistics.median(own) if own else statistics.median(cli),
        "api_cycle": statistics.median(api),
        "concurrent": concurrent_seconds,
        "idle_mib": idle / 1024,
        "busy_mib": busy / 1024,
        "per_container_kib": statistics.median(shims) if shims else 0.0,
        "shims": len(shims),
    }


def report(name: str, result: dict[str, float], concurrent: int) -> None:
    run_ms, cycle_ms = result["run_rm_cli"] * 1000, result["api_cycle"] * 1000
    own_ms = result["run_rm_own_cli"] * 1000
    per_mib = result["per_container_kib"] / 1024
    print(f"{name:9} run --rm {run_ms:7.1f} ms (docker CLI), {own_ms:7.1f} ms (its own CLI)")
    print(f"{'':9} create..remove {cycle_ms:7.1f} ms")
    print(f"{'':9} {concurrent} concurrent starts {result['concurrent']:6.2f} s")
    print(
        f"{'':9} engine idle {result['idle_mib']:6.1f} MiB, {result['busy_mib']:6.1f} MiB running"
    )
    print(f"{'':9} per container {per_mib:5.2f} MiB ({int(result['shims'])} supervisors/shims)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "ours").mkdir()
        # As the dockerd beside it (--bridge=none): no network set-up in either, none left behind.
        process, host = start_dockyard(workdir / "ours", "--bridge", "none")
        try:
            # The zygote (the daemon's child) belongs to the engine; the supervisors it forked
            # (reparented away from it) are the per-container cost.
            zygote = "dockyard.daemon.containers.zygote"
            ours = measure(
                host,
                lambda: (
                    [process.pid]
                    + [p for p in processes_named(zygote) if parent_of(p) == process.pid]
                ),
                lambda: [p for p in processes_named(zygote) if parent_of(p) != process.pid],
                args.runs,
                args.concurrent,
                own_cli=[own_cli_script(), "-H", host],
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        with real_dockerd(workdir / "dockerd") as peer:
            engine = processes_named(str(workdir / "dockerd"))
            theirs = measure(
                peer.host,
                lambda: engine,
                lambda: processes_named("containerd-shim"),
                args.runs,
                args.concurrent,
            )
    report("dockyard", ours, args.concurrent)
    report("dockerd", theirs, args.concurrent)
    print("\nratios (dockyard / dockerd; below 1 is better for dockyard):")
    for key in (
        "run_rm_cli",
        "run_rm_own_cli",
        "api_cycle",
        "concurrent",
        "idle_mib",
        "busy_mib",
        "per_container_kib",
    ):
        if theirs[key]:
            print(f"  {key:18} {ours[key] / theirs[key]:6.2f}")


if __name__ == "__main__":
    main()
