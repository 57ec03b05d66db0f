"""Fixtures for the runtime tests: busybox root filesystems and a supervisor stand-in.

Every container runs for real: a busybox image layer unpacked by the real overlay driver, a
snapshot prepared on it, and the launcher called from ``harness.py`` (a subreaper subprocess,
as the supervisor is). Tests need root, namespaces and a cgroup tree; elsewhere they skip.
"""

from __future__ import annotations

import io
import json
import os
import pty
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from dockyard.core.interfaces import (
    DEFAULT_CAPABILITIES,
    BindMount,
    ContainerSpec,
    Mount,
    ProcessSpec,
    spec_to_json,
)
from dockyard.plugins.runtimes.namespaces.plugin import NamespacesConfig, NamespacesRuntime
from dockyard.plugins.storage.overlay import OverlayDriver
from dockyard.testing.images import busybox_rootfs

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent / "harness.py"
#: A cgroup parent of the tests' own, so a leftover can never be mistaken for a real container.
CGROUP_PARENT = "dockyard-test"
APPLETS = (
    "id", "hostname", "mount", "ps", "sleep", "false", "grep", "head", "wc", "touch", "mkdir",
    "stat", "env", "readlink", "rm", "dd", "seq", "kill", "test", "tr", "nproc", "pwd", "mknod",
    "tail",
)  # fmt: skip
PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"app:x:1000:1000:app:/home/app:/bin/sh\n"
    b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = b"root:x:0:\nwheel:x:10:\napp:x:1000:\nnogroup:x:65534:\n"
BASE_LAYER = "busybox-base"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


@attrs.frozen
class Finished:
    """What a container run to its end left: output, exit code or the launch error."""

    stdout: str
    stderr: str
    exit_code: int | None = None
    signal: int | None = None
    launch_error: str = ""
    launch_exit_code: int | None = None


@attrs.define
class Running:
    """A container started in the background: its harness process and init pid."""

    process: subprocess.Popen
    report: int
    pid: int
    spec: ContainerSpec

    def wait(self, timeout: float = 20) -> Finished:
        status = _read_line(self.report, timeout)["status"]
        out, err = self.process.communicate(timeout=timeout)
        os.close(self.report)
        return _finished(out, err, status)


def _read_line(fd: int, timeout: float) -> dict:
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError("the harness did not report in time")
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError(f"the harness ended without a report (read {data!r})")
        data += chunk
    return json.loads(data)


def _finished(out: bytes, err: bytes, status: int) -> Finished:
    if os.WIFSIGNALED(status):
        return Finished(out.decode(), err.decode(), signal=os.WTERMSIG(status))
    return Finished(out.decode(), err.decode(), exit_code=os.WEXITSTATUS(status))


@pytest.fixture(scope="session")
def image_store(tmp_path_factory) -> OverlayDriver:
    """An overlay store holding one busybox layer, as ``docker pull busybox`` would leave it."""
    driver = OverlayDriver(tmp_path_factory.mktemp("overlay"))
    extra: dict[str, bytes | str | None] = {f"bin/{a}": "->busybox" for a in APPLETS}
    extra.update({
        "etc/passwd": PASSWD, "etc/group": GROUP, "tmp": None, "home": None, "home/app": None,
        "bin/not-executable": b"#!/bin/sh\necho never\n",
    })  # fmt: skip
    driver.apply_layer(BASE_LAYER, [], io.BytesIO(busybox_rootfs(extra)))
    return driver


@pytest.fixture
def runtime() -> NamespacesRuntime:
    return NamespacesRuntime(NamespacesConfig(cgroup_parent=CGROUP_PARENT))


@pytest.fixture
def make_spec(image_store, tmp_path, runtime) -> Iterator[Callable[..., ContainerSpec]]:
    """Factory of container specs on fresh overlay snapshots; cleans every container up."""
    made: list[ContainerSpec] = []

    def make(*args: str, process: dict | None = None, **fields) -> ContainerSpec:
        container_id = "t" + secrets.token_hex(12)
        snapshot = f"snapshot-{container_id}"
        mounts = image_store.prepare(snapshot, [BASE_LAYER])
        state_dir = tmp_path / container_id
        state_dir.mkdir()
        process_fields = {
            "args": args,
            "env": ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
            "capabilities": DEFAULT_CAPABILITIES,
            "no_new_privileges": False,
            **(process or {}),
        }
        spec = ContainerSpec(
            id=container_id,
            rootfs=tuple(mounts),
            process=ProcessSpec(**process_fields),
            hostname=container_id[:12],
            state_dir=str(state_dir),
            runtime_options=runtime.launch_options,
            **fields,
        )
        made.append(spec)
        return spec

    yield make
    for spec in made:
        runtime.cleanup(spec.id)
        image_store.remove(f"snapshot-{spec.id}")


def _start(
    spec: ContainerSpec, stdin: bytes | None = None, terminal: int | None = None
) -> tuple[subprocess.Popen, int]:
    """Start the harness; its stdio is pipes, or all three ``terminal`` (a pty's slave)."""
    spec_file = Path(spec.state_dir) / "spec.json"
    spec_file.write_text(spec_to_json(spec))
    stdin_file = Path(spec.state_dir) / "stdin"
    stdin_file.write_bytes(stdin or b"")
    report_r, report_w = os.pipe()
    with open(stdin_file, "rb") as stdin_source:
        process = subprocess.Popen(
            [sys.executable, str(HARNESS), str(spec_file), str(report_w)],
            stdin=stdin_source if terminal is None else terminal,
            stdout=subprocess.PIPE if terminal is None else terminal,
            stderr=subprocess.PIPE if terminal is None else terminal,
            pass_fds=(report_w,),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )
    os.close(report_w)
    return process, report_r


@pytest.fixture
def run() -> Callable[..., Finished]:
    """Run a container to its end (or to its launch error)."""

    def run_container(
        spec: ContainerSpec, timeout: float = 30, stdin: bytes | None = None
    ) -> Finished:
        process, report = _start(spec, stdin)
        try:
            first = _read_line(report, timeout)
            if "error" in first:
                out, err = process.communicate(timeout=timeout)
                return Finished(
                    out.decode(), err.decode(),
                    launch_error=first["error"], launch_exit_code=first["exit_code"],
                )  # fmt: skip
            status = _read_line(report, timeout)["status"]
            out, err = process.communicate(timeout=timeout)
            return _finished(out, err, status)
        finally:
            os.close(report)
            if process.poll() is None:
                process.kill()
                process.wait()

    return run_container


@pytest.fixture
def start() -> Iterator[Callable[..., Running]]:
    """Start a container in the background; returns once its process has exec'd."""
    started: list[Running] = []

    def start_container(spec: ContainerSpec) -> Running:
        process, report = _start(spec)
        first = _read_line(report, 30)
        assert "pid" in first, first
        running = Running(process, report, first["pid"], spec)
        started.append(running)
        return running

    yield start_container
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def host_mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split()[4] for line in mountinfo]


def bind(source: Path, destination: str, read_only: bool = False) -> BindMount:
    return BindMount(str(source), destination, read_only)


def run_on_terminal(spec: ContainerSpec, timeout: float = 30) -> tuple[str, int]:
    """Run a container whose stdio is a pty, as ``docker run -t``; its output and exit code."""
    master, slave = pty.openpty()
    process, report = _start(spec, terminal=slave)
    os.close(slave)
    try:
        assert "pid" in _read_line(report, timeout)
        output = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last slave closed
                break
            if not chunk:
                break
            output += chunk
        status = _read_line(report, timeout)["status"]
        process.wait(timeout)
        return output.decode(), os.waitstatus_to_exitcode(status)
    finally:
        os.close(master)
        os.close(report)
        if process.poll() is None:
            process.kill()
            process.wait()


__all__ = ["Mount", "bind", "host_mount_points"]
