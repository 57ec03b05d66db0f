"""Shared fixtures: real daemons on temp sockets, example plugin distributions installed with pip."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest

from dockyard.linux import netns
from dockyard.plugins.networks.bridge.forward import ForwardAccepts
from dockyard.plugins.networks.bridge.plugin import instance_for
from dockyard.testing.networks import host_left_as_found
from dockyard.testing.peers import RealDockerd, docker_cli
from dockyard.testing.peers import real_dockerd as start_real_dockerd

__all__ = ["docker_cli"]

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DISTS = ROOT / "tests" / "plugins"


def builtin_driver_names(kind) -> set[str]:
    """The names of the built-in drivers of ``kind`` (a DriverKind), as the plugin host finds
    them: the conformance guards check each runs its kind's suite."""
    from dockyard.core.config import Config
    from dockyard.core.plugins import PluginHost

    host = PluginHost(Config(), "cli").load()
    return {
        driver.name
        for report in host.report()
        if report.builtin
        for driver in report.drivers
        if driver.kind is kind
    }


def eventually(condition, timeout: float = 15, what: str = "the condition"):  # type: ignore[no-untyped-def]
    """``condition()``'s first true value, asked every 50 ms: for what a loaded machine makes
    late (a process reaching a point, a supervisor writing a log), where a fixed sleep guesses."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} never came in {timeout} s"
        time.sleep(0.05)
    return value


def children(pid: int) -> list[str]:
    """The process ids of ``pid``'s children (a shell's running command, say)."""
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def runc_races_on_exec_nofile() -> bool:
    """Whether ``runc exec`` leaves an exec's soft RLIMIT_NOFILE to chance: before runc 1.1.13 it
    sets the limit from outside while Go's runtime in ``runc init`` raises the soft limit to the
    hard one, and whichever comes last wins (opencontainers/runc#4195, two runs in three here with
    Debian 12's 1.1.5). dockerd on the same runc does the same."""
    runc = shutil.which("runc")
    if runc is None:
        return False
    first_line = subprocess.run([runc, "--version"], capture_output=True, text=True).stdout
    release = re.match(r"runc version (\d+)\.(\d+)\.(\d+)", first_line)
    assert release, first_line
    return tuple(int(part) for part in release.groups()) < (1, 1, 13)


def free_port() -> int:
    """A port a server the test starts can listen on, on any address.

    Chosen below the kernel's ephemeral range: a port the kernel hands out (bind to port 0)
    can be taken, before the server binds it, as the local port of any outgoing connection on
    the machine, which makes the server's bind fail now and then.
    """
    low, _high = (
        int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    )
    for _ in range(100):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def http_request(
    socket_path: str,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 60,
) -> Reply:
    connection = UnixHTTPConnection(socket_path, timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()


# --------------------------------------------------------------------------------------------
# Example plugin distributions
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def plugin_sites(tmp_path_factory) -> dict[str, Path]:
    """Each example distribution pip-installed into its own directory (add it to sys.path)."""
    sites = {}
    for dist in sorted(PLUGIN_DISTS.iterdir()):
        if not (dist / "setup.cfg").exists():
            continue
        target = tmp_path_factory.mktemp(f"site-{dist.name}")
        build = tmp_path_factory.mktemp(f"build-{dist.name}")
        shutil.copytree(dist, build, dirs_exist_ok=True)  # keep build artefacts out of the repo
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--target",
                str(target),
                str(build),
            ],
            check=True,
        )
        sites[dist.name] = target
    return sites


def plugin_env(sites: list[Path], **extra: str) -> dict[str, str]:
    """Environment for a dockyard subprocess that sees exactly these plugin sites."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env["PYTHONPATH"] = os.pathsep.join([*(str(s) for s in sites), str(ROOT)])
    env.update(extra)
    return env


def run_authors_tests(
    workdir: Path,
    module_text: str,
    *pytest_args: str,
    sites: list[Path] | None = None,
    min_passed: int = 1,
) -> None:
    """Run a plugin author's test module, alone in a directory of its own, with a child pytest
    that sees dockyard and plugin ``sites`` only: nothing it runs may depend on this
    repository's tests. It must pass ``min_passed`` tests or more, and fail and skip none."""
    project = workdir / "authors-project"
    project.mkdir()
    (project / "test_authors.py").write_text(module_text)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "test_authors.py", "-q", "-p", "no:cacheprovider",
         f"--basetemp={workdir / 'child'}", *pytest_args],
        cwd=project, capture_output=True, text=True, timeout=300, env=plugin_env(sites or []),
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= min_passed, summary
    assert "failed" not in summary and "skipped" not in summary, summary


# --------------------------------------------------------------------------------------------
# Daemons
# --------------------------------------------------------------------------------------------


@attrs.define
class Daemon:
    process: subprocess.Popen
    socket_path: str
    data_root: Path
    log_path: Path
    tcp_port: int | None = None
    #: The ``dockyard`` arguments and environment it was started with.
    args: list[str] = attrs.Factory(list)
    env: dict[str, str] = attrs.Factory(dict)

    @property
    def host(self) -> str:
        return f"unix://{self.socket_path}"

    def wait_until_serving(self) -> None:
        wait_for_socket(self.process, self.socket_path, self.log_path)

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Reply:
        return http_request(self.socket_path, method, path, headers, body)

    def log_lines(self) -> list[dict]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            if line.strip():
                lines.append(json.loads(line))
        return lines

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def run_dockyard(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 30, **kwargs
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else plugin_env([]),
        timeout=timeout,
        **kwargs,
    )


def spawn_daemon(
    args: list[str],
    env: dict[str, str],
    socket_path: str,
    data_root: Path,
    log_path: Path,
    tcp_port: int | None = None,
    network: bool = False,
) -> Daemon:
    """``dockyard ARGS`` (a daemon) in the background, its output in ``log_path``; callers
    wait with :meth:`Daemon.wait_until_serving` once they can clean up after a failure.

    Without ``network`` the daemon has no default bridge (``--bridge none``): its containers
    touch nothing of the host's network, so tests that compare the host's network before and
    after are not disturbed by daemons of other tests.
    """
    if not network and "--bridge" not in args:
        args = [*args, "--bridge", "none"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dockyard", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return Daemon(process, socket_path, data_root, log_path, tcp_port, args, env)


def docker_load(host: str, archive: Path) -> None:
    """``docker load -i ARCHIVE`` with the docker CLI against ``host``."""
    from dockyard.testing.peers import docker_cli, docker_env

    loaded = subprocess.run(
        [docker_cli(), "load", "-i", str(archive)], env=docker_env(host), capture_output=True
    )
    assert loaded.returncode == 0, loaded.stderr


def daemon_in(base: Path, network: bool = False, extra_args: Sequence[str] = ()) -> Daemon:
    """``dockyard daemon`` on ``base/root``, its socket and log in ``base`` (not yet serving);
    ``extra_args`` are more of its flags."""
    socket_path = str(base / "dockyard.sock")
    args = ["daemon", "--data-root", str(base / "root"), "-H", f"unix://{socket_path}"]
    args += extra_args
    return spawn_daemon(
        args, plugin_env([]), socket_path, base / "root", base / "daemon.log", network=network
    )


@contextlib.contextmanager
def module_daemon(base: Path) -> Iterator[Daemon]:
    """A serving daemon on ``base`` while the block runs (a module's tests share one)."""
    daemon = serving(daemon_in(base))
    try:
        yield daemon
    finally:
        shut_down(daemon)


def serving(daemon: Daemon) -> Daemon:
    """``daemon`` once it serves; shut down, with whatever it started, if it never does."""
    try:
        daemon.wait_until_serving()
    except BaseException:
        shut_down(daemon)
        raise
    return daemon


def wait_for_socket(process: subprocess.Popen, socket_path: str, log_path: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited with {process.returncode}: {log_path.read_text()}")
        if os.path.exists(socket_path):
            try:
                if http_request(socket_path, "GET", "/_ping").status == 200:
                    return
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"daemon did not come up: {log_path.read_text()}")


@pytest.fixture
def start_daemon(tmp_path) -> Iterator:
    """Factory: start ``dockyard daemon`` on a temp socket and data root; stopped afterwards."""
    started: list[Daemon] = []

    def start(
        *extra_args: str,
        config: str | None = None,
        sites: list[Path] = (),
        env: dict[str, str] | None = None,
        tcp: bool = False,
        name: str = "d",
        network: bool = False,
    ) -> Daemon:
        """``network``: with the default bridge network (and every test that has one holds
        the host-network lock, and must leave the host's network as it found it); without,
        ``--bridge none``: containers default to loopback only and touch nothing of the host."""
        base = tmp_path / f"daemon-{name}-{len(started)}"
        base.mkdir()
        socket_path = str(base / "dockyard.sock")
        data_root = base / "root"
        log_path = base / "daemon.log"
        args = ["daemon", "--data-root", str(data_root), "-H", f"unix://{socket_path}"]
        port = None
        if tcp:
            port = free_port()
            args += ["-H", f"tcp://127.0.0.1:{port}"]
        if config is not None:
            config_path = base / "config.toml"
            config_path.write_text(config)
            args += ["--config", str(config_path)]
        args += list(extra_args)
        if network:
            held.enter_context(host_left_as_found())
        daemon_env = plugin_env(list(sites), **(env or {}))
        daemon = spawn_daemon(args, daemon_env, socket_path, data_root, log_path, port, network)
        started.append(daemon)
        daemon.wait_until_serving()
        return daemon

    with contextlib.ExitStack() as held:
        yield start
        for daemon in started:
            shut_down(daemon)


def shut_down(daemon: Daemon) -> None:
    """Stop a test daemon and every container it left: containers outlive their daemon by
    design, and a test's ``while true`` loop must not run on through the rest of the suite."""
    if daemon.process.poll() is None:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            listing = daemon.request("GET", "/containers/json?all=1")
            for container in listing.json() if listing.status == 200 else []:
                daemon.request("DELETE", f"/containers/{container['Id']}?force=1&v=1")
        daemon.process.kill()
        daemon.process.wait()
    for pid_file in ("init.pid", "supervisor.pid"):
        for path in (daemon.data_root / "containers").glob(f"*/{pid_file}"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(path.read_text()), signal.SIGKILL)
    remove_daemon_networks(daemon.data_root)


def remove_daemon_networks(data_root: Path) -> None:
    """Remove what a (dead) test daemon's networks left on the host: its namespace files, the
    bridge driver's links and nftables table. Its containers must be gone already."""
    for path in (data_root / "netns").glob("*"):
        netns.remove(path)
    instance = instance_for(data_root / "network" / "bridge")
    for line in subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True
    ).stdout.splitlines():
        if f"alias {instance}:" in line:
            name = line.split()[1].rstrip(":").partition("@")[0]
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
    subprocess.run(["nft", "delete", "table", "ip", instance], capture_output=True, check=False)
    ForwardAccepts(instance).remove_all()


@contextlib.contextmanager
def restarted(daemon: Daemon) -> Iterator[Daemon]:
    """The same daemon again (same arguments, data root and socket) after ``daemon`` died.

    Stopped with SIGTERM afterwards, which must end it cleanly.
    """
    again = spawn_daemon(
        daemon.args,
        daemon.env,
        daemon.socket_path,
        daemon.data_root,
        daemon.log_path.with_suffix(".restarted.log"),
        daemon.tcp_port,
        network="--bridge" not in daemon.args,
    )
    try:
        again.wait_until_serving()
        yield again
    finally:
        if again.process.poll() is None:
            again.process.send_signal(signal.SIGTERM)
            assert again.process.wait(15) == 0, again.log_path.read_text()


@pytest.fixture
def daemon(start_daemon) -> Daemon:
    """A daemon with no third-party plugins, on embedded defaults."""
    return start_daemon()


# --------------------------------------------------------------------------------------------
# A real Docker daemon (Debian's docker.io), for interop tests
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_dockerd(tmp_path_factory) -> Iterator[RealDockerd]:
    try:
        with start_real_dockerd(tmp_path_factory.mktemp("dockerd")) as peer:
            yield peer
    except RuntimeError as exc:
        pytest.fail(str(exc))


def busybox_archive(directory: Path) -> Path:
    """``docker save`` of busybox:latest (static busybox, fixed dates) in ``directory``."""
    from dockyard.testing.images import busybox_rootfs, image_archive

    path = directory / "busybox.tar"
    path.write_bytes(image_archive([busybox_rootfs()], ["busybox:latest"]))
    return path


@attrs.frozen
class BusyboxDaemon:
    daemon: Daemon
    #: The archive that loads busybox:latest again, for tests that delete it.
    archive: Path


@pytest.fixture(scope="module")
def busybox_served(tmp_path_factory) -> Iterator[BusyboxDaemon]:
    """A module's serving daemon, holding busybox:latest."""
    base = tmp_path_factory.mktemp("busybox-daemon")
    archive = busybox_archive(base)
    with module_daemon(base) as daemon:
        docker_load(daemon.host, archive)
        yield BusyboxDaemon(daemon, archive)
