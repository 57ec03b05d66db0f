"""Networking, our daemon beside dockerd 20.10 (Debian docker.io) with its own bridge networking.

Run as root: ``python bench/network_bench.py [--runs 10] [--mib 256] [--connections 1000]``.
Both daemons run at once, each on its own socket, data root and exec root; dockerd with
iptables on and its default userland proxy (``docker-proxy`` serves published ports on
127.0.0.1; ours is DNAT in the kernel, no process). dockerd's default bridge is one this bench
makes (``--bridge``, a name and a subnet no route uses), so dockerd creates no ``docker0``.
Measured, through the docker CLI or from the host over 127.0.0.1, turn about (ours, dockerd's,
ours, ...):

* ``docker run --rm busybox true`` on the default bridge (median of ``--runs``);
* TCP throughput through a published port: ``GET`` of a ``--mib`` MiB file from busybox httpd
  (median of ``--runs`` downloads, MiB/s);
* connections per second through a published port: ``--connections`` sequential short
  ``GET``s of a tiny file (each a new TCP connection, read to its close).

Targets (issue 11): ``run --rm`` at most 0.5x dockerd's time; throughput at least 0.9x.

dockerd changes the host's firewall (its DOCKER chains, NAT rules and perhaps the ``FORWARD``
policy) and sysctls. The bench saves the iptables tables of both backends and those sysctls
first, and afterwards deletes the tables dockerd created and restores the ones it changed,
then checks that the host reads as it did.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.conftest, wherever the bench is run from

from containers import start_dockyard  # noqa: E402

from dockyard.testing.images import busybox_rootfs, image_archive  # noqa: E402
from dockyard.testing.networks import HOST_NETWORK_LOCK  # noqa: E402
from dockyard.testing.peers import docker_cli, docker_env, real_dockerd  # noqa: E402
from tests.conftest import free_port, remove_daemon_networks  # noqa: E402

#: dockerd's bridge, made by the bench (a name of ours, no clash with a host's docker0).
DOCKERD_BRIDGE = "dyb-dockerd0"
#: Candidate subnets for it; the first that no host route overlaps is taken.
CANDIDATE_SUBNETS = ("10.213.0.0/24", "10.214.0.0/24", "172.30.213.0/24")
SYSCTLS = (
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
)
#: busybox httpd serving a large file and a tiny one from a tmpfs-free directory of its own.
SERVE = "mkdir -p /www && dd if=/dev/zero of=/www/big bs=1048576 count={mib} 2>/dev/null && "
SERVE += "echo ok > /www/small && exec httpd -f -p 80 -h /www"


# ------------------------------------------------------------------------ the host's firewall


def _save(command: str) -> str:
    """An iptables dump without its comments and packet counters (they change with traffic)."""
    if shutil.which(command) is None:
        return ""
    done = subprocess.run([command], capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    return "\n".join(re.sub(r" \[\d+:\d+\]$", "", line) for line in lines)


def _tables(dump: str) -> set[str]:
    return {line[1:] for line in dump.splitlines() if line.startswith("*")}


SAVERS = {
    # backend's save command: (its restore command, the nft family its tables are in, or None)
    "iptables-nft-save": ("iptables-nft-restore", "ip"),
    "ip6tables-nft-save": ("ip6tables-nft-restore", "ip6"),
    "iptables-legacy-save": ("iptables-legacy-restore", None),
    "ip6tables-legacy-save": ("ip6tables-legacy-restore", None),
}


@contextlib.contextmanager
def host_firewall_restored() -> Iterator[None]:
    """Save the iptables tables (both backends) and the sysctls dockerd sets; afterwards
    delete the tables that were not there, restore the others, and check the result."""
    before = {command: _save(command) for command in SAVERS}
    sysctls = {path: Path(path).read_text() for path in SYSCTLS if os.path.exists(path)}
    try:
        yield
    finally:
        for command, (restore, family) in SAVERS.items():
            if _save(command) == before[command]:
                continue
            added = _tables(_save(command)) - _tables(before[command])
            for table in sorted(added):
                if family is not None:
                    subprocess.run(["nft", "delete", "table", family, table], check=False)
                else:  # a legacy table cannot be deleted; emptied, it holds nothing
                    subprocess.run([command.replace("-save", ""), "-t", table, "-F"], check=False)
                    subprocess.run([command.replace("-save", ""), "-t", table, "-X"], check=False)
            if _tables(before[command]):
                subprocess.run([restore], input=before[command] + "\n", text=True, check=False)
        for path, value in sysctls.items():
            if Path(path).read_text() != value:
                Path(path).write_text(value)
        left = [command for command in SAVERS if _save(command) != before[command]]
        left += [path for path, value in sysctls.items() if Path(path).read_text() != value]
        print(f"\nhost firewall and sysctls restored: {'yes' if not left else 'NO: ' + str(left)}")


@contextlib.contextmanager
def host_network_lock() -> Iterator[None]:
    """The lock the host-network tests hold: none of them runs while dockerd changes the
    host's firewall (they compare the ruleset before and after)."""
    with open(HOST_NETWORK_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def free_subnet() -> ipaddress.IPv4Network:
    routes = json.loads(
        subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"],
                       capture_output=True, text=True, check=True).stdout
    )  # fmt: skip
    taken = []
    for route in routes:
        destination = route.get("dst", "")
        if destination and destination != "default":
            with contextlib.suppress(ValueError):
                taken.append(ipaddress.IPv4Network(destination, strict=False))
    for candidate in map(ipaddress.IPv4Network, CANDIDATE_SUBNETS):
        if not any(candidate.overlaps(route) for route in taken):
            return candidate
    raise RuntimeError(f"every candidate subnet for dockerd's bridge is routed: {taken}")


@contextlib.contextmanager
def dockerd_bridge() -> Iterator[str]:
    """The bridge dockerd's default network uses, with a gateway address; deleted afterwards."""
    if Path(f"/sys/class/net/{DOCKERD_BRIDGE}").exists():
        raise RuntimeError(f"{DOCKERD_BRIDGE} exists already: another bench is running")
    subnet = free_subnet()
    gateway = f"{next(subnet.hosts())}/{subnet.prefixlen}"
    subprocess.run(["ip", "link", "add", DOCKERD_BRIDGE, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", gateway, "dev", DOCKERD_BRIDGE], check=True)
        subprocess.run(["ip", "link", "set", DOCKERD_BRIDGE, "up"], check=True)
        yield DOCKERD_BRIDGE
    finally:
        subprocess.run(["ip", "link", "del", DOCKERD_BRIDGE], check=False)


# ------------------------------------------------------------------------ measuring


class Engine:
    def __init__(self, name: str, host: str) -> None:
        self.name = name
        self.env = docker_env(host)
        self.port = 0

    def docker(self, *args: str, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        return subprocess.run(
            [docker_cli(), *args], env=self.env, check=True, capture_output=True, **kwargs
        )

    def prepare(self, mib: int) -> None:
        archive = image_archive([busybox_rootfs()], ["busybox:latest"])
        self.docker("load", input=archive)
        self.docker("run", "--rm", "busybox", "true")  # a warm-up
        self.port = free_port()
        self.docker(
            "run", "-d", "--name", "bench-httpd", "-p", f"127.0.0.1:{self.port}:80",
            "busybox", "sh", "-c", SERVE.format(mib=mib),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while http_get(self.port, "/small") != b"ok\n":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the published httpd does not answer")
            time.sleep(0.1)

    def run_rm(self) -> float:
        started = time.perf_counter()
        self.docker("run", "--rm", "busybox", "true")
        return time.perf_counter() - started

    def throughput(self, mib: int) -> float:
        started = time.perf_counter()
        received = len(http_get(self.port, "/big"))
        seconds = time.perf_counter() - started
        if received != mib * 1024 * 1024:
            raise RuntimeError(f"{self.name}: {received} bytes received, not {mib} MiB")
        return mib / seconds

    def connections(self, count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            if http_get(self.port, "/small") != b"ok\n":
                raise RuntimeError(f"{self.name}: a short GET failed")
        return count / (time.perf_counter() - started)

    def finish(self) -> None:
        subprocess.run([docker_cli(), "rm", "-f", "bench-httpd"], env=self.env, capture_output=True)


def http_get(port: int, path: str) -> bytes:
    """One GET on a new connection, read to the server's close; the body (b'' on failure)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(f"GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
            chunks = []
            while chunk := connection.recv(1 << 20):
                chunks.append(chunk)
    except OSError:
        return b""
    reply = b"".join(chunks)
    head, _, body = reply.partition(b"\r\n\r\n")
    return body if head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0] else b""


def in_turn(
    engines: list[Engine], measure: Callable[[Engine], float], runs: int
) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {engine.name: [] for engine in engines}
    for _ in range(runs):
        for engine in engines:
            figures[engine.name].append(measure(engine))
    return figures


def report(label: str, unit: str, figures: dict[str, list[float]], target: str) -> None:
    ours, theirs = statistics.median(figures["dockyard"]), statistics.median(figures["dockerd"])
    spread = {name: (min(values), max(values)) for name, values in figures.items()}
    print(f"{label}")
    for name, median in (("dockyard", ours), ("dockerd", theirs)):
        low, high = spread[name]
        print(f"  {name:9} median {median:10.2f} {unit}  (min {low:.2f}, max {high:.2f})")
    print(f"  ratio dockyard/dockerd {ours / theirs:6.2f}   target {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    with (
        host_network_lock(),
        host_firewall_restored(),
        tempfile.TemporaryDirectory(prefix="dockyard-netbench-") as tmp,
        dockerd_bridge() as bridge,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        (workdir / "ours").mkdir()
        process, host = start_dockyard(workdir / "ours")

        def stop_ours() -> None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
            remove_daemon_networks(workdir / "ours" / "data")

        stack.callback(stop_ours)
        # Default configuration but for the bridge: iptables on, userland proxy on.
        peer = stack.enter_context(
            real_dockerd(workdir / "dockerd", extra_args=["--iptables=true", f"--bridge={bridge}"])
        )
        engines = [Engine("dockyard", host), Engine("dockerd", peer.host)]
        for engine in engines:
            stack.callback(engine.finish)
            engine.prepare(args.mib)
        print(f"runs {args.runs}, {args.mib} MiB per download, {args.connections} connections")
        print("dockerd: iptables on, userland-proxy on (its default); dockyard: DNAT, no proxy\n")
        seconds = in_turn(engines, Engine.run_rm, args.runs)
        milliseconds = {name: [s * 1000 for s in values] for name, values in seconds.items()}
        report("docker run --rm busybox true (default bridge), docker CLI", "ms", milliseconds,
               "<= 0.5")  # fmt: skip
        report(
            f"TCP throughput, GET of {args.mib} MiB through 127.0.0.1:published port",
            "MiB/s",
            in_turn(engines, lambda engine: engine.throughput(args.mib), args.runs),
            ">= 0.9",
        )
        report(
            "connections per second, short GETs through 127.0.0.1:published port",
            "conn/s",
            in_turn(engines, lambda engine: engine.connections(args.connections), 3),
            "(none; higher is better)",
        )


if __name__ == "__main__":
    main()
