"""One daemon per test module with a busybox image, shared by the container CLI tests.

Starting a daemon and importing an image costs about a second; the container tests create
uniquely named containers, so they can share both and stay fast.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest

from dockyard.testing.images import busybox_rootfs
from tests.conftest import (
    Daemon,
    module_daemon,
    plugin_env,
    run_dockyard,
    serving,
    shut_down,
    spawn_daemon,
)
from tests.containers.engine_api import Api

#: Applets the tests call by path (busybox's sh finds the others by itself).
APPLETS = ("sleep", "env", "pwd", "id", "stty", "hostname", "printf", "seq", "kill")
IMAGE = "busybox"


def import_busybox(daemon: Daemon, rootfs: Path, applets: Sequence[str]) -> None:
    """Import busybox as ``IMAGE`` into ``daemon`` with ``applets`` linked in ``/bin`` (more
    than busybox_rootfs links) and an empty ``/data``; the layer is written to ``rootfs``."""
    extra: dict[str, bytes | str | None] = {f"bin/{a}": "->busybox" for a in applets}
    extra["data"] = None
    rootfs.write_bytes(busybox_rootfs(extra))
    imported = run_dockyard(
        ["-H", daemon.host, "import", "-c", 'CMD ["/bin/sh"]', "-c", "ENV PATH=/bin",
         str(rootfs), IMAGE],
        env=plugin_env([]),
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("containers-daemon")
    with module_daemon(base) as daemon:
        import_busybox(daemon, base / "rootfs.tar", APPLETS)
        yield daemon


@pytest.fixture
def cli(shared_daemon) -> DockyardCLI:
    return DockyardCLI(shared_daemon)


class DockyardCLI:
    """``dockyard -H <daemon> …`` as a subprocess."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.env = plugin_env([])

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        return run_dockyard(
            ["-H", self.daemon.host, *args], env=self.env, timeout=timeout, input=input
        )

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:  # type: ignore[no-untyped-def]
        return subprocess.Popen(
            [sys.executable, "-m", "dockyard", "-H", self.daemon.host, *args],
            env=self.env,
            **kwargs,
        )

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dockyard", "-H", self.daemon.host, *args]


@pytest.fixture(params=["namespaces", "runc"])
def api(request, start_daemon) -> Iterator[Api]:
    """A daemon with busybox, once per runtime (runc's only where its binary is installed)."""
    if (
        request.param == "runc"
        and shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin:/bin") is None
    ):
        pytest.skip("the runc binary is not installed")
    parent = f"dockyard-test-{secrets.token_hex(4)}"
    config = f'[runtimes.{request.param}]\ncgroup-parent = "{parent}"\n'
    daemon = start_daemon("--runtime", request.param, config=config)
    yield attrs.evolve(Api.with_busybox(daemon), cgroup_parent=parent)
    shut_down(daemon)
    for directory in Path("/sys/fs/cgroup").glob(f"*/{parent}"):
        with contextlib.suppress(OSError):
            directory.rmdir()


@contextlib.contextmanager
def runtime_daemon(base: Path, runtime: str, label: str) -> Iterator[tuple[Daemon, str]]:
    """A serving daemon on ``runtime`` in ``base`` (skipped where runc is not installed), its
    containers under a cgroup parent of their own (``dockyard-<label>-...``), removed after."""
    if runtime == "runc" and shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        pytest.skip("the runc binary is not installed")
    parent = f"dockyard-{label}-{secrets.token_hex(4)}"
    config = base / "config.toml"
    config.write_text(f'[runtimes.{runtime}]\ncgroup-parent = "{parent}"\n')
    socket_path = str(base / "dockyard.sock")
    args = ["daemon", "--data-root", str(base / "root"), "-H", f"unix://{socket_path}",
            "--config", str(config), "--runtime", runtime]  # fmt: skip
    daemon = serving(
        spawn_daemon(args, plugin_env([]), socket_path, base / "root", base / "daemon.log")
    )
    try:
        yield daemon, parent
    finally:
        shut_down(daemon)
        for directory in Path("/sys/fs/cgroup").glob(f"*/{parent}"):
            with contextlib.suppress(OSError):
                directory.rmdir()
