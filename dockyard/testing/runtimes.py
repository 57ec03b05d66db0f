"""The runtime conformance suite, for the built-in runtimes and third-party ones alike.

In the spirit of containerd's snapshotter suite: every test starts real containers through the
runtime's :class:`~dockyard.core.interfaces.Launcher`, called from a supervisor stand-in (a
child subreaper subprocess, :mod:`dockyard.testing.launch_harness`), on a busybox root
filesystem, and looks from inside (the container's own output) and from the host (through the
:class:`~dockyard.core.interfaces.Runtime` interface, ``/proc`` and the mount table) at what
the runtime did. The tests need root, namespaces, cgroups, overlayfs and a static busybox.

A runtime author subclasses :class:`RuntimeConformance` and provides the ``runtime`` fixture
(and, for optional features such as user namespaces, ``runtime_capabilities``)::

    from dockyard.testing.runtimes import RuntimeConformance

    class TestMyRuntime(RuntimeConformance):
        @pytest.fixture
        def runtime(self):
            return MyRuntime(cgroup_parent="my-tests")

        @pytest.fixture
        def runtime_capabilities(self):
            return frozenset({"user-namespaces"})

:class:`RuntimeHarness` has the fixtures alone (containers, running them, exec), for a
runtime's own tests beyond the contract.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pty
import re
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import dockyard
from dockyard.core.errors import NotFound
from dockyard.core.interfaces import (
    DEFAULT_CAPABILITIES,
    BindMount,
    ContainerSpec,
    DeviceNode,
    IdMapping,
    LaunchError,
    Mount,
    ProcessSpec,
    Resources,
    Rlimit,
    Runtime,
    spec_to_json,
)
from dockyard.linux import layertar, netns
from dockyard.linux.processes import ProcessHandle
from dockyard.testing.images import busybox_rootfs

#: Applets the tests call besides the ones every test image has.
APPLETS = ("nproc", "mknod", "readlink", "stat")
PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"app:x:1000:1000:app:/home/app:/bin/sh\n"
    b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = b"root:x:0:\nwheel:x:10:\napp:x:1000:\nnogroup:x:65534:\n"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: docker's default capability set as the kernel shows it in /proc/PID/status.
DOCKER_DEFAULT_CAPS = "00000000a80425fb"
#: The user namespace maps the user-namespace tests use.
REMAPPED = (IdMapping(0, 100000, 65536),)
REPORT_TIMEOUT = 30.0
#: A script printing the container's PID, IPC and UTS namespaces, one a line.
NAMESPACE_LINKS = "for kind in pid ipc uts; do readlink /proc/self/ns/$kind; done"

#: ``make_spec(*args, process={ProcessSpec fields}, **ContainerSpec fields)``
SpecFactory = Callable[..., ContainerSpec]
#: ``run(spec, stdin=b"", timeout=...)``
Runner = Callable[..., "Finished"]
Starter = Callable[[ContainerSpec], "Running"]
TerminalRunner = Callable[[ContainerSpec], tuple[str, int]]


# --------------------------------------------------------------------------------------------
# Containers run to their end, or in the background
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Finished:
    """What a container run to its end left: output, exit code or signal, or the launch error."""

    stdout: str
    stderr: str
    exit_code: int | None = None
    signal: int | None = None
    launch_error: str = ""
    launch_exit_code: int | None = None


@attrs.define
class Running:
    """A container started in the background: the harness process and the init process."""

    process: subprocess.Popen[bytes]
    report: int
    pid: int
    #: The init process's start time, as the harness read it (the supervisor does the same).
    start_time: int
    spec: ContainerSpec

    def wait(self, timeout: float = REPORT_TIMEOUT) -> Finished:
        status = read_report(self.report, timeout)["status"]
        out, err = self.process.communicate(timeout=timeout)
        os.close(self.report)
        self.report = -1
        return _finished(out, err, status)

    def hold(self) -> ProcessHandle:
        """A pidfd handle on the init process, checked as the core checks it."""
        handle = ProcessHandle.open(self.pid, self.start_time, parent=self.process.pid)
        assert handle is not None, "the launcher's pid is not the harness's running child"
        return handle


def read_report(fd: int, timeout: float) -> dict[str, Any]:
    """One JSON line from the harness's report pipe."""
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
    report: dict[str, Any] = json.loads(data)
    return report


def _finished(out: bytes, err: bytes, status: int) -> Finished:
    if os.WIFSIGNALED(status):
        return Finished(out.decode(), err.decode(), signal=os.WTERMSIG(status))
    return Finished(out.decode(), err.decode(), exit_code=os.WEXITSTATUS(status))


def start_harness(
    spec: ContainerSpec, launcher: str, stdin: bytes = b"", terminal: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the supervisor stand-in for ``spec``; its stdio is pipes, or all three
    ``terminal`` (a pty's slave). Returns the process and the read end of its report pipe."""
    spec_file = Path(spec.state_dir) / "spec.json"
    spec_file.write_text(spec_to_json(spec))
    stdin_file = Path(spec.state_dir) / "stdin"
    stdin_file.write_bytes(stdin)
    package_parent = str(Path(dockyard.__file__).resolve().parent.parent)
    python_path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    report_r, report_w = os.pipe()
    with open(stdin_file, "rb") as stdin_source:
        process = subprocess.Popen(
            [sys.executable, "-m", "dockyard.testing.launch_harness", str(spec_file),
             str(report_w), launcher],
            stdin=stdin_source if terminal is None else terminal,
            stdout=subprocess.PIPE if terminal is None else terminal,
            stderr=subprocess.PIPE if terminal is None else terminal,
            pass_fds=(report_w,),
            env={**os.environ, "PYTHONPATH": python_path},
            cwd="/",
        )  # fmt: skip
    os.close(report_w)
    return process, report_r


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def status_field(text: str, name: str) -> str:
    """A field of /proc/PID/status text (``CapEff``, ``Uid``...)."""
    match = re.search(rf"^{name}:\s*(\S+)", text, re.MULTILINE)
    assert match, f"{name} not in {text!r}"
    return match.group(1)


def docker_exit_code(status: int) -> int:
    """A wait status as docker reports it: the exit code, or 128 + the killing signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


# --------------------------------------------------------------------------------------------
# What a container may leave behind
# --------------------------------------------------------------------------------------------


def mount_points() -> list[str]:
    """Every mount point this process sees."""
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split()[4] for line in mountinfo]


def cgroup_mounts() -> list[str]:
    """The mount points of every cgroup hierarchy (v1 and v2)."""
    points = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields, _, tail = line.partition(" - ")
            if tail.split()[0] in ("cgroup", "cgroup2"):
                points.append(fields.split()[4])
    return points


def cgroups_named(name: str) -> list[str]:
    """Every cgroup directory called ``name``, in any hierarchy, at any depth."""
    found = []
    pending = cgroup_mounts()
    while pending:
        directory = pending.pop()
        with contextlib.suppress(OSError), os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name == name:
                        found.append(entry.path)
                    pending.append(entry.path)
    return found


# --------------------------------------------------------------------------------------------
# The fixtures
# --------------------------------------------------------------------------------------------


class RuntimeHarness:
    """Fixtures to start containers on a runtime; subclass and provide ``runtime``."""

    @pytest.fixture(autouse=True)
    def _needs_root(self) -> None:
        if os.geteuid() != 0:
            pytest.skip("containers need root (namespaces, mounts and cgroups)")

    @pytest.fixture
    def runtime(self) -> Runtime:
        raise NotImplementedError("provide a `runtime` fixture returning the Runtime to test")

    @pytest.fixture
    def runtime_capabilities(self) -> frozenset[str]:
        """The runtime's declared capabilities (``DriverInfo.capabilities``)."""
        return frozenset()

    @pytest.fixture(scope="session")
    @classmethod
    def container_base(cls) -> Iterator[Path]:
        """Where containers live: a directory anyone may search (pytest's are root's alone),
        because a runtime may reach the root filesystem by path from inside a user namespace.
        It holds the busybox image, unpacked once, in ``image``."""
        base = Path(tempfile.mkdtemp(prefix="dockyard-runtime-suite-"))
        base.chmod(0o711)
        image = base / "image"
        image.mkdir()
        extra: dict[str, bytes | str | None] = {f"bin/{a}": "->busybox" for a in APPLETS}
        extra.update({
            "etc/passwd": PASSWD, "etc/group": GROUP, "home": None, "home/app": None,
            "bin/not-executable": b"#!/bin/sh\necho never\n",
        })  # fmt: skip
        layertar.extract_layer(io.BytesIO(busybox_rootfs(extra)), image, layertar.DeleteWhiteouts())
        (image / "bin/not-executable").chmod(0o644)
        yield base
        layertar.remove_tree(base)

    @pytest.fixture
    def make_spec(self, runtime: Runtime, container_base: Path) -> Iterator[SpecFactory]:
        """Factory of container specs, each on a fresh overlay of the busybox image.

        ``make_spec(*args, process={...ProcessSpec fields}, **ContainerSpec fields)``. Every
        container is cleaned up through the runtime afterwards.
        """
        made: list[ContainerSpec] = []

        def make(*args: str, process: dict[str, Any] | None = None, **fields: Any) -> ContainerSpec:
            container_id = "t" + secrets.token_hex(12)
            directory = container_base / container_id
            for part in ("upper", "work", "state"):
                (directory / part).mkdir(parents=True)
            directory.chmod(0o711)
            rootfs = Mount(
                "overlay",
                "overlay",
                (
                    f"lowerdir={container_base / 'image'}",
                    f"upperdir={directory / 'upper'}",
                    f"workdir={directory / 'work'}",
                ),
            )
            fields.setdefault("hostname", container_id[:12])
            spec = ContainerSpec(
                id=container_id,
                rootfs=(rootfs,),
                process=ProcessSpec(
                    **{
                        "args": args,
                        "env": (DEFAULT_PATH,),
                        "capabilities": DEFAULT_CAPABILITIES,
                        "no_new_privileges": False,
                        **(process or {}),
                    }
                ),
                state_dir=str(directory / "state"),
                runtime_options=tuple(runtime.launch_options),
                **fields,
            )
            made.append(spec)
            return spec

        yield make
        for spec in made:
            runtime.cleanup(spec.id)
            layertar.remove_tree(Path(spec.state_dir).parent)

    @pytest.fixture
    def run(self, runtime: Runtime) -> Runner:
        """Run a container to its end (or to its launch error): ``run(spec, stdin=b"")``."""

        def run_container(
            spec: ContainerSpec, stdin: bytes = b"", timeout: float = REPORT_TIMEOUT
        ) -> Finished:
            process, report = start_harness(spec, runtime.launcher, stdin)
            try:
                first = read_report(report, timeout)
                if "error" in first:
                    out, err = process.communicate(timeout=timeout)
                    return Finished(
                        out.decode(), err.decode(),
                        launch_error=first["error"], launch_exit_code=first["exit_code"],
                    )  # fmt: skip
                status = read_report(report, timeout)["status"]
                out, err = process.communicate(timeout=timeout)
                return _finished(out, err, status)
            finally:
                os.close(report)
                _stop(process)

        return run_container

    @pytest.fixture
    def start(self, runtime: Runtime) -> Iterator[Starter]:
        """Start a container in the background; returns once its process has exec'd."""
        started: list[Running] = []

        def start_container(spec: ContainerSpec) -> Running:
            process, report = start_harness(spec, runtime.launcher)
            first = read_report(report, REPORT_TIMEOUT)
            if "pid" not in first:
                os.close(report)
                _stop(process)
                raise AssertionError(f"the container did not start: {first}")
            running = Running(process, report, first["pid"], first["start_time"], spec)
            started.append(running)
            return running

        yield start_container
        for running in started:
            _stop(running.process)
            if running.report >= 0:
                os.close(running.report)

    @pytest.fixture
    def run_on_terminal(self, runtime: Runtime) -> TerminalRunner:
        """Run a container whose stdio is a pty, as ``docker run -t``: its output, exit code."""

        def run_container(spec: ContainerSpec) -> tuple[str, int]:
            master, slave = pty.openpty()
            process, report = start_harness(spec, runtime.launcher, terminal=slave)
            os.close(slave)
            try:
                assert "pid" in read_report(report, REPORT_TIMEOUT)
                output = b""
                while True:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # EIO: the last slave closed
                        break
                    if not chunk:
                        break
                    output += chunk
                status = read_report(report, REPORT_TIMEOUT)["status"]
                process.wait(REPORT_TIMEOUT)
                return output.decode(), os.waitstatus_to_exitcode(status)
            finally:
                os.close(master)
                os.close(report)
                _stop(process)

        return run_container

    @staticmethod
    def exec_in(runtime: Runtime, running: Running, *args: str, **fields: Any) -> tuple[int, str]:
        """Run a process in the container through ``runtime.exec``: its wait status and its
        output (stdout and stderr together)."""
        out_r, out_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            process = ProcessSpec(
                **{
                    "args": args,
                    "env": ("PATH=/bin",),
                    "capabilities": running.spec.process.capabilities,
                    **fields,
                }
            )
            pid = runtime.exec(running.spec, running.pid, process, (null, out_w, out_w))
        finally:
            os.close(out_w)
            os.close(null)
        output = b""
        while chunk := os.read(out_r, 65536):
            output += chunk
        os.close(out_r)
        _, status = os.waitpid(pid, 0)
        return status, output.decode()

    @staticmethod
    def wait_for_exec(runtime: Runtime, running: Running, program: str = "sleep") -> None:
        """Wait until the init process runs ``program`` (the script before it did its work)."""
        deadline = time.monotonic() + 20
        while True:
            init = [p for p in runtime.processes(running.spec.id) if p.pid == running.pid]
            if init and init[0].args[:1] == (program,):
                return
            assert time.monotonic() < deadline, "the container never reached its final exec"
            time.sleep(0.01)

    @staticmethod
    def assert_nothing_left(spec: ContainerSpec) -> None:
        """No cgroup named after the container and no mount below its directory remain."""
        assert cgroups_named(spec.id) == []
        directory = str(Path(spec.state_dir).parent)
        assert [p for p in mount_points() if p == directory or p.startswith(directory + "/")] == []

    @staticmethod
    def upper_dir(spec: ContainerSpec) -> Path:
        """Where the container's writes to its root filesystem are stored."""
        return Path(spec.state_dir).parent / "upper"


# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------


class RuntimeConformance(RuntimeHarness):
    """The tests every :class:`~dockyard.core.interfaces.Runtime` must pass."""

    # ---------------------------------------------------------------- the interface

    def test_runtime_implements_the_protocol(self, runtime: Runtime) -> None:
        assert isinstance(runtime, Runtime)
        module, _, function = runtime.launcher.partition(":")
        assert callable(getattr(importlib.import_module(module), function))
        options = tuple(runtime.launch_options)
        assert all(isinstance(name, str) and isinstance(value, str) for name, value in options), (
            options
        )

    def test_unknown_containers_are_not_found(self, runtime: Runtime) -> None:
        unknown = "t" + secrets.token_hex(12)
        with pytest.raises(NotFound):
            runtime.stats(unknown)
        with pytest.raises(NotFound):
            runtime.processes(unknown)
        assert not runtime.oom_killed(unknown)
        runtime.cleanup(unknown)

    # ---------------------------------------------------------------- starting and exiting

    def test_exit_codes_and_a_shielded_init(self, make_spec: SpecFactory, run: Runner) -> None:
        assert run(make_spec("true")).exit_code == 0
        assert run(make_spec("false")).exit_code == 1
        assert run(make_spec("sh", "-c", "exit 42")).exit_code == 42
        # As pid 1 of its namespace, the process only gets signals it handles, even SIGKILL.
        assert run(make_spec("sh", "-c", "kill -KILL $$; echo alive")).stdout == "alive\n"

    @pytest.mark.parametrize(
        ("command", "code", "wording"),
        [
            ("no-such-command", 127, "executable file not found in $PATH"),
            ("/bin/no-such-file", 127, "no such file or directory"),
            ("/bin/not-executable", 126, "permission denied"),
            ("/etc", 126, "permission denied"),
        ],
    )
    def test_commands_that_cannot_run_fail_like_docker_and_leave_nothing(
        self, make_spec: SpecFactory, run: Runner, command: str, code: int, wording: str
    ) -> None:
        spec = make_spec(command)
        result = run(spec)
        assert result.launch_exit_code == code, result
        assert wording in result.launch_error
        self.assert_nothing_left(spec)

    def test_stdio_reaches_the_process(self, make_spec: SpecFactory, run: Runner) -> None:
        result = run(make_spec("sh", "-c", "cat; echo to-err >&2"), stdin=b"piped through\n")
        assert (result.stdout, result.stderr) == ("piped through\n", "to-err\n")

    def test_environment_working_directory_and_hostname(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        spec = make_spec(
            "sh", "-c", "echo $GREETING; pwd; hostname",
            process={"env": ("PATH=/bin", "GREETING=hello there"), "cwd": "/home/app"},
            hostname="given-name",
        )  # fmt: skip
        result = run(spec)
        assert result.exit_code == 0, result
        assert result.stdout.splitlines() == ["hello there", "/home/app", "given-name"]

    def test_terminal_is_the_controlling_tty(
        self, make_spec: SpecFactory, run_on_terminal: TerminalRunner
    ) -> None:
        script = "test -t 0 && test -t 1 && echo is-a-tty; ps -o pid,tty | tail -1; exit 3"
        output, code = run_on_terminal(make_spec("sh", "-c", script, process={"terminal": True}))
        assert code == 3
        lines = output.replace("\r\n", "\n").splitlines()
        assert lines[0] == "is-a-tty"
        assert lines[1].split()[1] != "?"  # the session has the terminal as controlling tty

    def test_terminal_is_a_pty_of_the_containers_own_devpts(
        self, make_spec: SpecFactory, run_on_terminal: TerminalRunner
    ) -> None:
        script = "tty; stat -c '%t:%T' /dev/console /dev/pts/0"
        output, code = run_on_terminal(make_spec("sh", "-c", script, process={"terminal": True}))
        assert code == 0, output
        lines = output.replace("\r\n", "\n").splitlines()
        assert lines[0] == "/dev/pts/0"  # as under runc: not /dev/console, not the host's pty
        assert lines[1] == lines[2]  # /dev/console is that terminal

    # ---------------------------------------------------------------- namespaces

    def test_init_is_pid_1_with_its_own_hostname_and_processes(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        spec = make_spec("sh", "-c", "echo $$; hostname; ps -o pid,comm; true")
        result = run(spec)
        assert result.exit_code == 0, result
        lines = result.stdout.splitlines()
        assert lines[0] == "1"
        assert lines[1] == spec.hostname
        pids = sorted(int(line.split()[0]) for line in lines[3:])
        assert pids == [1, max(pids)] and max(pids) < 10  # only sh and ps: the host is hidden

    def test_mount_namespace_hides_the_host_and_leaves_no_host_mount(
        self, make_spec: SpecFactory, run: Runner, container_base: Path
    ) -> None:
        spec = make_spec("cat", "/proc/self/mountinfo")
        before = mount_points()
        result = run(spec)
        assert result.exit_code == 0, result
        points = [line.split()[4] for line in result.stdout.splitlines()]
        assert points[0] == "/"
        assert not [point for point in points if str(container_base) in point]
        assert {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"} <= set(points)
        # Only the container's own places: other processes (other test workers) may mount and
        # unmount elsewhere on the host meanwhile.
        ours = [str(container_base), *([spec.state_dir] if spec.state_dir else [])]
        left = [p for p in mount_points() if p not in before and any(o in p for o in ours)]
        assert not left, left

    def test_none_network_has_only_loopback_and_it_is_up(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        result = run(make_spec("sh", "-c", "cat /proc/net/dev; cat /sys/class/net/lo/flags"))
        assert result.exit_code == 0, result
        lines = result.stdout.splitlines()
        assert [line.split(":")[0].strip() for line in lines[2:-1]] == ["lo"]
        assert int(lines[-1], 16) & 0x1  # IFF_UP

    def test_host_network_sees_the_hosts_interfaces(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        def interfaces(text: str) -> set[str]:
            return {line.split(":")[0].strip() for line in text.splitlines()[2:]}

        # Other programs make and remove interfaces meanwhile: the container must see every
        # interface that was there throughout (its own namespace would have only lo).
        before = interfaces(Path("/proc/net/dev").read_text())
        result = run(make_spec("cat", "/proc/net/dev", network_mode="host"))
        after = interfaces(Path("/proc/net/dev").read_text())
        assert result.exit_code == 0, result
        seen = interfaces(result.stdout)
        assert before & after <= seen, (seen, before, after)
        assert len(before & after) > 1

    def test_cgroup_namespace_roots_the_container_at_its_own_cgroup(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        result = run(make_spec("cat", "/proc/self/cgroup"))
        assert result.exit_code == 0, result
        assert {line.split(":", 2)[2] for line in result.stdout.splitlines()} == {"/"}

    # ---------------------------------------------------------------- namespaces shared

    def test_host_pid_ipc_and_uts_namespaces_are_the_hosts(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        mark = Path("/dev/shm") / f"dockyard-suite-{secrets.token_hex(4)}"
        mark.write_text("host's")
        try:
            spec = make_spec(
                "sh", "-c", f"{NAMESPACE_LINKS}; hostname; cat /dev/shm/{mark.name}",
                pid_namespace="host", ipc_namespace="host", uts_namespace="host",
            )  # fmt: skip
            result = run(spec)
        finally:
            mark.unlink()
        assert result.exit_code == 0, result
        ours = [os.readlink(f"/proc/self/ns/{kind}") for kind in ("pid", "ipc", "uts")]
        lines = result.stdout.splitlines()
        assert lines[:3] == ours, (lines, ours)
        assert lines[3:] == [os.uname().nodename, "host's"]  # no hostname set on the host's

    def test_namespaces_of_another_container_are_joined(
        self, runtime: Runtime, make_spec: SpecFactory, run: Runner, start: Starter
    ) -> None:
        donor = start(
            make_spec(
                "sh", "-c", "echo shared > /dev/shm/mark && exec sleep 60", hostname="donor-name"
            )
        )
        self.wait_for_exec(runtime, donor)
        joined = {kind: f"/proc/{donor.pid}/ns/{kind}" for kind in ("pid", "ipc", "uts")}
        script = f"{NAMESPACE_LINKS}; hostname; cat /dev/shm/mark; ps -o pid,comm | grep -w 1"
        result = run(
            make_spec(
                "sh", "-c", script, pid_namespace=joined["pid"], ipc_namespace=joined["ipc"],
                uts_namespace=joined["uts"],
            )
        )  # fmt: skip
        assert result.exit_code == 0, result
        lines = result.stdout.splitlines()
        assert lines[:3] == [os.readlink(path) for path in joined.values()], lines
        # Its hostname, its /dev/shm, and its init as pid 1 of the namespace.
        assert lines[3:5] == ["donor-name", "shared"]
        assert lines[5].split() == ["1", "sleep"]

    def test_host_cgroup_namespace_binds_the_containers_own_cgroups(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        script = (
            "readlink /proc/self/ns/cgroup; cat /proc/self/cgroup; "
            "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"
        )
        spec = make_spec(
            "sh", "-c", script, cgroup_namespace="host", resources=Resources(pids_limit=77)
        )
        result = run(spec)
        assert result.exit_code == 0, result
        lines = result.stdout.splitlines()
        assert lines[0] == os.readlink("/proc/self/ns/cgroup")
        # The full paths, as the host sees them, and the container's own limits at the top.
        assert any(line.endswith(f"/{spec.id}") for line in lines[1:-1]), lines
        assert lines[-1] == "77"

    # ---------------------------------------------------------------- /dev/shm and sysctls

    def test_dev_shm_has_the_size_asked_for_or_is_absent(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        result = run(make_spec("grep", " /dev/shm ", "/proc/mounts", shm_size=1 << 20))
        assert result.exit_code == 0, result
        assert "size=1024k" in result.stdout
        result = run(make_spec("ls", "/dev/shm", shm_size=0))
        assert result.exit_code != 0 and "No such file" in result.stderr

    def test_namespaced_sysctls_are_set_inside_and_not_on_the_host(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        host_shmmax = Path("/proc/sys/kernel/shmmax").read_text()
        sysctls = (("net.ipv4.ip_forward", "1"), ("kernel.shmmax", "12345678"))
        script = "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax"
        result = run(make_spec("sh", "-c", script, sysctls=sysctls))
        assert result.exit_code == 0, result
        assert result.stdout.split() == ["1", "12345678"]
        assert Path("/proc/sys/kernel/shmmax").read_text() == host_shmmax

    # ---------------------------------------------------------------- the file system

    def test_dev_holds_the_standard_nodes_and_links(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        script = (
            "ls /dev; stat -c '%n %F %t:%T %a' /dev/null /dev/zero /dev/urandom /dev/tty; "
            "readlink /dev/ptmx; readlink /dev/fd; echo ok > /dev/shm/x && cat /dev/shm/x"
        )
        result = run(make_spec("sh", "-c", script))
        assert result.exit_code == 0, result
        lines = result.stdout.splitlines()
        assert set(lines) >= {
            "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
            "stdout", "tty", "urandom", "zero",
        }  # fmt: skip
        assert "/dev/null character special file 1:3 666" in lines
        assert "/dev/zero character special file 1:5 666" in lines
        assert "/dev/urandom character special file 1:9 666" in lines
        assert "/dev/tty character special file 5:0 666" in lines
        assert lines[-3:] == ["pts/ptmx", "/proc/self/fd", "ok"]

    def test_read_only_rootfs_refuses_writes_but_tmpfs_stays_writable(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        script = "touch /new-file && echo WROTE; echo ok > /dev/shm/x && cat /dev/shm/x"
        result = run(make_spec("sh", "-c", script, read_only_rootfs=True))
        assert result.exit_code == 0, result
        assert result.stdout == "ok\n"
        assert "Read-only file system" in result.stderr

    def test_writes_to_the_rootfs_land_in_its_mounts(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        spec = make_spec("sh", "-c", "echo data > /tmp/made-inside")
        assert run(spec).exit_code == 0
        assert (self.upper_dir(spec) / "tmp" / "made-inside").read_text() == "data\n"

    def test_bind_mounts_read_write_and_read_only_and_etc_files(
        self, make_spec: SpecFactory, run: Runner, tmp_path: Path
    ) -> None:
        writable, read_only = tmp_path / "writable", tmp_path / "read-only"
        writable.mkdir()
        read_only.mkdir()
        (read_only / "given").write_text("from the host\n")
        hosts = tmp_path / "hosts"
        hosts.write_text("127.0.0.1 localhost special\n")
        script = (
            "echo inside > /data/out; cat /config/given; echo x > /config/nope && echo WROTE; "
            "cat /etc/hosts"
        )
        spec = make_spec(
            "sh", "-c", script,
            mounts=(BindMount(str(writable), "/data"),
                    BindMount(str(read_only), "/config", read_only=True)),
            etc_files=((str(hosts), "/etc/hosts"),),
        )  # fmt: skip
        result = run(spec)
        assert result.exit_code == 0, result
        assert result.stdout == "from the host\n127.0.0.1 localhost special\n"
        assert "Read-only file system" in result.stderr
        assert (writable / "out").read_text() == "inside\n"
        assert not (read_only / "nope").exists()

    def test_bind_mount_of_a_missing_source_fails_and_leaves_nothing(
        self, make_spec: SpecFactory, run: Runner, tmp_path: Path
    ) -> None:
        missing = tmp_path / "missing"
        spec = make_spec("true", mounts=(BindMount(str(missing), "/data"),))
        result = run(spec)
        assert result.launch_exit_code == 125, result
        assert str(missing) in result.launch_error
        self.assert_nothing_left(spec)

    def test_masked_paths_read_empty_and_readonly_paths_refuse_writes(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        script = (
            "wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; "
            "echo x > /proc/sys/kernel/domainname && echo WROTE; "
            "grep -c ' /proc/sys .*ro,' /proc/self/mountinfo"
        )
        result = run(make_spec("sh", "-c", script))
        assert result.exit_code == 0, result
        assert result.stdout.split() == ["0", "0", "1"]
        assert "Read-only file system" in result.stderr

    def test_custom_masked_and_readonly_paths_replace_the_defaults(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        script = "wc -c < /etc/passwd; touch /tmp/x || echo REFUSED; head -c 1 /proc/timer_list"
        spec = make_spec(
            "sh", "-c", script, masked_paths=("/etc/passwd",), readonly_paths=("/tmp",)
        )
        result = run(spec)
        assert result.exit_code == 0, result
        # What is listed is masked and read-only; /proc/timer_list, not listed, is readable.
        assert result.stdout.split()[:2] == ["0", "REFUSED"]
        assert len(result.stdout.split()) == 3

    # ---------------------------------------------------------------- credentials

    def test_root_gets_dockers_default_capabilities(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        result = run(make_spec("grep", "-E", "^(Cap|NoNewPrivs)", "/proc/self/status"))
        assert result.exit_code == 0, result
        for field in ("CapBnd", "CapEff", "CapPrm"):
            assert status_field(result.stdout, field) == DOCKER_DEFAULT_CAPS
        assert status_field(result.stdout, "CapInh") == "0000000000000000"
        assert status_field(result.stdout, "NoNewPrivs") == "0"

    def test_user_groups_and_no_effective_capabilities_for_non_root(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        spec = make_spec(
            "sh", "-c", "id; grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
            process={"uid": 1000, "gid": 1000, "additional_gids": (10, 1000),
                     "cwd": "/home/app", "no_new_privileges": True},
        )  # fmt: skip
        result = run(spec)
        assert result.exit_code == 0, result
        assert result.stdout.splitlines()[0] == (
            "uid=1000(app) gid=1000(app) groups=10(wheel),1000(app)"
        )
        assert status_field(result.stdout, "CapEff") == "0000000000000000"
        assert status_field(result.stdout, "CapBnd") == DOCKER_DEFAULT_CAPS
        assert status_field(result.stdout, "NoNewPrivs") == "1"

    def test_capabilities_are_enforced(self, make_spec: SpecFactory, run: Runner) -> None:
        # CAP_SYS_ADMIN is not in docker's set: mounting fails; CAP_CHOWN is: chown works.
        script = (
            "mkdir /m; mount -t tmpfs none /m && echo MOUNTED; "
            "touch /f && chown 1000 /f && stat -c %u /f"
        )
        result = run(make_spec("sh", "-c", script))
        assert result.stdout == "1000\n"
        assert "permission denied" in result.stderr.lower()

    def test_privileged_keeps_every_capability_and_skips_masking(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        script = (
            "grep Cap /proc/self/status; wc -c < /proc/timer_list; "
            "grep ' /sys ' /proc/self/mountinfo"
        )
        result = run(make_spec("sh", "-c", script, privileged=True, masked_paths=(),
                               readonly_paths=()))  # fmt: skip
        assert result.exit_code == 0, result
        host_bounding = status_field(Path("/proc/self/status").read_text(), "CapBnd")
        assert status_field(result.stdout, "CapBnd") == host_bounding
        assert status_field(result.stdout, "CapEff") == host_bounding
        assert int(result.stdout.splitlines()[5]) > 0  # timer_list is readable
        assert " rw," in result.stdout.splitlines()[6]  # /sys is writable

    def test_device_nodes_may_be_made_but_not_opened_beyond_the_standard_ones(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        # CAP_MKNOD is in docker's set; the devices cgroup is what keeps the host's disks out.
        disk = next(
            (os.stat(p).st_rdev for p in ("/dev/vda", "/dev/sda", "/dev/loop0")
             if os.path.exists(p)),
            os.makedev(7, 0),
        )  # fmt: skip
        script = (
            f"mknod /disk b {os.major(disk)} {os.minor(disk)} && echo made; "
            "head -c 1 /disk && echo READ; head -c 1 /dev/zero | wc -c"
        )
        result = run(make_spec("sh", "-c", script))
        assert result.stdout.split() == ["made", "1"]
        assert "Operation not permitted" in result.stderr

    # ---------------------------------------------------------------- resources

    def test_memory_limit_oom_kills_and_is_reported(
        self, make_spec: SpecFactory, run: Runner, runtime: Runtime
    ) -> None:
        limit = Resources(memory_bytes=16 * 1024 * 1024)
        spec = make_spec("dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1",
                         resources=limit)  # fmt: skip
        result = run(spec)
        assert result.signal == signal.SIGKILL, result
        assert runtime.oom_killed(spec.id)
        fine = make_spec("true", resources=limit)
        assert run(fine).exit_code == 0
        assert not runtime.oom_killed(fine.id)

    def test_limits_are_visible_inside_and_no_cgroup_can_be_made(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        if Path("/sys/fs/cgroup/memory").is_dir():  # v1: a hierarchy per controller
            script = (
                "cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes cpu/cpu.cfs_quota_us "
                "pids/pids.max; mkdir memory/x && echo MADE"
            )
        else:
            script = "cd /sys/fs/cgroup; cat memory.max; cut -d' ' -f1 cpu.max; cat pids.max; "
            script += "mkdir x && echo MADE"
        resources = Resources(memory_bytes=64 << 20, nano_cpus=1_500_000_000, pids_limit=30)
        result = run(make_spec("sh", "-c", script, resources=resources))
        # Rooted at its own cgroup, and 1.5 CPUs are a quota of 150 ms in 100.
        assert result.stdout.split() == [str(64 << 20), "150000", "30"], result
        assert "Read-only file system" in result.stderr

    def test_cpu_memory_and_cpuset_settings_are_applied(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        if not Path("/sys/fs/cgroup/memory").is_dir():
            pytest.skip("checks cgroup v1's files")
        script = (
            "cd /sys/fs/cgroup; cat cpu/cpu.shares cpuset/cpuset.cpus cpuset/cpuset.mems "
            "memory/memory.memsw.limit_in_bytes memory/memory.soft_limit_in_bytes "
            "memory/memory.swappiness; grep oom_kill_disable memory/memory.oom_control"
        )
        resources = Resources(
            memory_bytes=64 << 20, memory_swap=96 << 20, memory_reservation=32 << 20,
            memory_swappiness=10, oom_kill_disable=True, cpu_shares=512, cpuset_cpus="0",
            cpuset_mems="0",
        )  # fmt: skip
        result = run(make_spec("sh", "-c", script, resources=resources))
        assert result.stdout.split() == [
            "512", "0", "0", str(96 << 20), str(32 << 20), "10", "oom_kill_disable", "1",
        ], result  # fmt: skip

    def test_update_changes_the_running_containers_limits(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        if not Path("/sys/fs/cgroup/memory").is_dir():
            pytest.skip("checks cgroup v1's files")
        spec = make_spec("sleep", "30", resources=Resources(memory_bytes=64 << 20))
        running = start(spec)
        new = Resources(memory_bytes=96 << 20, memory_swap=192 << 20, nano_cpus=500_000_000,
                        cpu_shares=256, cpuset_cpus="0", pids_limit=40)  # fmt: skip
        runtime.update(spec.id, new)
        status, output = self.exec_in(
            runtime, running, "sh", "-c",
            "cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes"
            " cpu/cpu.cfs_quota_us cpu/cpu.shares cpuset/cpuset.cpus pids/pids.max",
        )  # fmt: skip
        assert (status, output.split()) == (
            0, [str(96 << 20), str(192 << 20), "50000", "256", "0", "40"])  # fmt: skip
        assert runtime.stats(spec.id).pids_limit == 40
        runtime.cleanup(spec.id)
        with pytest.raises(NotFound):
            runtime.update(spec.id, new)

    def test_devices_are_made_and_allowed_by_the_cgroup(
        self, make_spec: SpecFactory, run: Runner
    ) -> None:
        null = os.stat("/dev/null").st_rdev
        node = DeviceNode("/dev/mynull", "c", os.major(null), os.minor(null), 0o640, 0, 10)
        script = "stat -c '%a %g' /dev/mynull; echo x > /dev/mynull && echo WROTE"
        spec = make_spec(
            "sh", "-c", script, devices=(node,),
            resources=Resources(device_rules=(f"c {os.major(null)}:{os.minor(null)} rwm",)),
        )  # fmt: skip
        result = run(spec)
        assert result.stdout.split() == ["640", "10", "WROTE"], result

    #: Whether an exec's soft RLIMIT_NOFILE is the one asked for. A runtime built on a runc
    #: before 1.1.13 sets this False: that runc sets the limit from outside while Go's runtime
    #: in ``runc init`` raises the soft limit to the hard one, and whichever comes last wins
    #: (opencontainers/runc#4195). The suite then checks the init's limits and the exec's
    #: others.
    EXEC_SOFT_NOFILE_EXACT = True

    def test_rlimits_and_oom_score_adj_reach_the_process_and_execs(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        limits = (Rlimit("RLIMIT_NOFILE", 512, 1024), Rlimit("RLIMIT_NPROC", 100, 200))
        spec = make_spec("sleep", "30",
                         process={"rlimits": limits, "oom_score_adj": 300})  # fmt: skip
        running = start(spec)
        assert Path(f"/proc/{running.pid}/oom_score_adj").read_text() == "300\n"
        init_limits = Path(f"/proc/{running.pid}/limits").read_text()
        assert re.search(r"^Max open files +512 +1024 ", init_limits, re.MULTILINE), init_limits
        status, output = self.exec_in(
            runtime, running, "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u",
            rlimits=limits, oom_score_adj=300,
        )  # fmt: skip
        soft, *others = output.split()
        assert (status, others) == (0, ["1024", "100"]), output
        if self.EXEC_SOFT_NOFILE_EXACT:
            assert soft == "512", output

    def test_pids_limit_caps_a_fork_bomb(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        # The inner shell forks sleepers until fork fails (busybox sh then gives up); they
        # outlive it, and init ends up as the last sleeper.
        bomb = "for i in $(seq 40); do sleep 30 & done"
        spec = make_spec(
            "sh", "-c", f"sh -c '{bomb}'; exec sleep 30", resources=Resources(pids_limit=12)
        )
        running = start(spec)
        self.wait_for_exec(runtime, running)
        stats = runtime.stats(spec.id)
        # At the limit there were init, the inner shell and 10 sleepers; the shell is gone.
        assert (stats.pids, stats.pids_limit) == (11, 12)
        assert len(runtime.processes(spec.id)) == 11
        runtime.cleanup(spec.id)
        result = running.wait()
        assert result.signal == signal.SIGKILL
        assert "can't fork" in result.stderr
        self.assert_nothing_left(spec)

    def test_stats_read_the_containers_use(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        script = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exec sleep 30"
        spec = make_spec("sh", "-c", script,
                         resources=Resources(memory_bytes=64 << 20, pids_limit=50))  # fmt: skip
        running = start(spec)
        self.wait_for_exec(runtime, running)
        stats = runtime.stats(spec.id)
        assert stats.memory_limit == 64 << 20
        assert 0 < stats.memory_usage < 64 << 20
        assert stats.cpu_total_ns > 50_000_000  # the loop took CPU time
        assert stats.system_cpu_ns > stats.cpu_total_ns
        assert stats.online_cpus == os.cpu_count()
        assert (stats.pids, stats.pids_limit) == (1, 50)
        runtime.cleanup(spec.id)
        with pytest.raises(NotFound):
            runtime.stats(spec.id)

    #: The optional parts of :class:`ContainerStats` the runtime fills; a runtime that fills
    #: fewer names fewer (in a subclass), and the suite checks each one named.
    STATS_FILLED = frozenset({"cpu_times", "cpu_throttling", "memory", "block_io"})

    def test_stats_detail_follows_the_containers_use(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        # A second's loop: user time. A direct write (past the page cache, so it reaches the
        # disk in the process's cgroup) and a read of what it wrote (into the page cache,
        # charged to the container).
        script = (
            "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; "
            "dd if=/dev/zero of=/written bs=1M count=4 oflag=direct 2>/dev/null; "
            "cat /written > /dev/null; exec sleep 30"
        )
        half_a_cpu = Resources(memory_bytes=64 << 20, nano_cpus=500_000_000)
        spec = make_spec("sh", "-c", script, resources=half_a_cpu)
        running = start(spec)
        self.wait_for_exec(runtime, running)
        stats = runtime.stats(spec.id)
        filled = {name for name in self.STATS_FILLED if getattr(stats, name) is not None}
        assert filled == self.STATS_FILLED, f"not filled: {self.STATS_FILLED - filled}"
        if stats.cpu_times is not None:
            times = stats.cpu_times
            assert times.user_ns >= 100_000_000, times  # the loop
            assert times.kernel_ns + times.user_ns <= stats.cpu_total_ns + 50_000_000, times
            if times.per_cpu_ns:  # cgroup v1 counts each CPU's share: they sum to the total
                assert len(times.per_cpu_ns) >= (os.cpu_count() or 1)
                assert abs(sum(times.per_cpu_ns) - stats.cpu_total_ns) < 10_000_000
        if stats.cpu_throttling is not None:  # whether it was throttled depends on the load
            throttling = stats.cpu_throttling
            assert throttling.periods > 0 and throttling.periods >= throttling.throttled_periods
        if stats.memory is not None:
            stat = stats.memory.stat
            # The 4 MiB read back is page cache (most of it: pages may be reclaimed already):
            # v1's total_cache, v2's file.
            assert stat.get("total_cache", stat.get("file", 0)) >= 3 << 20, stat
            assert set(stat) >= (
                {"total_inactive_file"} if "total_cache" in stat else {"inactive_file"}
            )
            if stats.memory.max_usage:
                assert stats.memory.max_usage >= stats.memory_usage
        if stats.block_io is not None:
            written = [
                entry.value for entry in stats.block_io.service_bytes or ()
                if entry.op in ("Write", "write")
            ]  # fmt: skip
            assert sum(written) >= 4 << 20, stats.block_io
            if stats.block_io.serviced is not None:
                writes = [e.value for e in stats.block_io.serviced if e.op == "Write"]
                assert sum(writes) >= 4, stats.block_io.serviced
        runtime.cleanup(spec.id)

    def test_a_cpu_quota_throttles_a_busy_container(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        if "cpu_throttling" not in self.STATS_FILLED:
            pytest.skip("the runtime reports no throttling")
        # Two busy loops under a tenth of a CPU: the container wants twenty times its quota,
        # so periods are throttled however loaded the machine is (one loop under half a CPU
        # was not, where other work left it less than half a CPU).
        loop = "while :; do :; done"
        spec = make_spec("sh", "-c", f"{loop} & {loop} & exec sleep 30",
                         resources=Resources(nano_cpus=100_000_000))  # fmt: skip
        running = start(spec)
        self.wait_for_exec(runtime, running)
        deadline = time.monotonic() + 20
        while True:
            throttling = runtime.stats(spec.id).cpu_throttling
            assert throttling is not None
            if throttling.throttled_periods > 0:
                break
            assert time.monotonic() < deadline, throttling
            time.sleep(0.2)
        assert throttling.periods >= throttling.throttled_periods, throttling
        assert throttling.throttled_ns > 0, throttling

    def test_pause_freezes_and_resume_thaws(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        spec = make_spec("sh", "-c", "while true; do :; done")
        running = start(spec)

        def cpu_used() -> int:
            return runtime.stats(spec.id).cpu_total_ns

        def spins_past(mark: int) -> bool:
            # On a loaded machine the loop may get little CPU in any one tenth of a second.
            deadline = time.monotonic() + 10
            while cpu_used() <= mark + 10_000_000:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
            return True

        assert spins_past(cpu_used())
        runtime.pause(spec.id)
        frozen = cpu_used()
        time.sleep(0.2)
        assert cpu_used() == frozen
        # A paused container's processes can still be listed (docker top works on it).
        assert [p.pid for p in runtime.processes(spec.id)] == [running.pid]
        runtime.resume(spec.id)
        assert spins_past(frozen)
        runtime.pause(spec.id)
        runtime.cleanup(spec.id)  # a frozen container can be cleaned up too
        self.assert_nothing_left(spec)

    # ---------------------------------------------------------------- processes and signals

    def test_processes_lists_the_containers_processes(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        spec = make_spec("sh", "-c", "sleep 30 & exec sleep 31")
        running = start(spec)
        self.wait_for_exec(runtime, running)
        deadline = time.monotonic() + 20
        while True:  # the background child may not have exec'd its sleep yet
            processes = runtime.processes(spec.id)
            if any(p.args == ("sleep", "30") for p in processes):
                break
            assert time.monotonic() < deadline, processes
        assert [p.pid for p in processes] == sorted(p.pid for p in processes)
        init = next(p for p in processes if p.pid == running.pid)
        assert init.args == ("sleep", "31")
        assert init.ppid == running.process.pid  # the supervisor's child
        assert init.uid == 0
        assert abs(init.started - time.time()) < 60 and init.cpu_seconds >= 0
        (child,) = [p for p in processes if p.pid != running.pid]
        assert (child.args, child.ppid) == (("sleep", "30"), running.pid)
        runtime.cleanup(spec.id)
        with pytest.raises(NotFound):
            runtime.processes(spec.id)

    def test_the_launchers_pid_is_the_init_the_core_signals(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        script = "trap 'echo terminated; exit 3' TERM; while true; do sleep 0.05; done"
        running = start(make_spec("sh", "-c", script))
        with running.hold() as init:
            deadline = time.monotonic() + 20
            # The loop's first sleep: the trap is set.
            while not any(p.args[:1] == ("sleep",) for p in runtime.processes(running.spec.id)):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert init.send_signal(signal.SIGTERM)
            result = running.wait()
            assert (result.exit_code, result.stdout) == (3, "terminated\n")
            # Exited and reaped: the handle reaches nobody, whoever has the pid now.
            assert not init.send_signal(signal.SIGKILL)
        killed = start(make_spec("sleep", "30"))
        with killed.hold() as init:
            assert init.send_signal(signal.SIGKILL)  # from outside, pid 1 is not shielded
            assert killed.wait().signal == signal.SIGKILL

    # ---------------------------------------------------------------- exec

    def test_exec_joins_the_running_container(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        spec = make_spec("sleep", "30")
        running = start(spec)
        script = (
            "echo $$; hostname; tr '\\0' ' ' < /proc/1/cmdline; echo; "
            "grep CapEff /proc/self/status; id; pwd; echo $GREETING"
        )
        status, output = self.exec_in(
            runtime, running, "sh", "-c", script, uid=1000, gid=1000, additional_gids=(10,),
            cwd="/tmp", env=("PATH=/bin", "GREETING=hi"),
        )  # fmt: skip
        assert os.waitstatus_to_exitcode(status) == 0, output
        lines = output.splitlines()
        assert 1 < int(lines[0]) < 10  # a pid of the container's namespace
        assert lines[1] == spec.hostname
        assert lines[2].strip() == "sleep 30"
        assert lines[3].split() == ["CapEff:", "0000000000000000"]
        assert lines[4:] == ["uid=1000(app) gid=1000(app) groups=10(wheel)", "/tmp", "hi"]
        # The exec'd process was the container's, and it is gone.
        assert [p.pid for p in runtime.processes(spec.id)] == [running.pid]

    def test_exec_reports_exit_codes_signals_and_launch_failures(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        running = start(make_spec("sleep", "30"))
        status, _ = self.exec_in(runtime, running, "sh", "-c", "exit 7")
        assert docker_exit_code(status) == 7
        status, _ = self.exec_in(runtime, running, "sh", "-c", "kill -KILL $$")
        assert docker_exit_code(status) == 128 + signal.SIGKILL
        with pytest.raises(LaunchError) as missing:
            self.exec_in(runtime, running, "no-such-command")
        assert missing.value.exit_code == 127
        assert "executable file not found in $PATH" in str(missing.value)
        with pytest.raises(LaunchError) as not_executable:
            self.exec_in(runtime, running, "/etc")
        assert not_executable.value.exit_code == 126

    # ---------------------------------------------------------------- clean-up

    def test_cleanup_kills_strays_removes_everything_and_is_repeatable(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        spec = make_spec("sh", "-c", "sleep 30 & exec sleep 30")
        running = start(spec)
        runtime.cleanup(spec.id)
        assert running.wait().signal == signal.SIGKILL
        self.assert_nothing_left(spec)
        runtime.cleanup(spec.id)
        assert not runtime.oom_killed(spec.id)
        with pytest.raises(NotFound):
            runtime.stats(spec.id)

    # ---------------------------------------------------------------- user namespaces

    @pytest.fixture
    def needs_user_namespaces(self, runtime_capabilities: frozenset[str]) -> None:
        if "user-namespaces" not in runtime_capabilities:
            pytest.skip("the runtime does not declare the user-namespaces capability")

    @pytest.mark.usefixtures("needs_user_namespaces")
    def test_user_namespace_maps_root_to_an_unprivileged_host_uid(
        self, make_spec: SpecFactory, start: Starter, runtime: Runtime
    ) -> None:
        spec = make_spec(
            "sh", "-c", "cat /proc/self/uid_map; id -u; exec sleep 30",
            uid_mappings=REMAPPED, gid_mappings=REMAPPED,
        )  # fmt: skip
        running = start(spec)
        self.wait_for_exec(runtime, running)
        assert status_field(Path(f"/proc/{running.pid}/status").read_text(), "Uid") == "100000"
        init = next(p for p in runtime.processes(spec.id) if p.pid == running.pid)
        assert init.uid == 100000
        # exec joins the user namespace too: root inside, the same maps, its own pid.
        status, output = self.exec_in(
            runtime, running, "sh", "-c", "id -u; cat /proc/self/uid_map; echo $$"
        )
        assert os.waitstatus_to_exitcode(status) == 0, output
        assert output.split()[:4] == ["0", "0", "100000", "65536"]
        assert 1 < int(output.split()[4]) < 10
        with running.hold() as handle:
            handle.send_signal(signal.SIGKILL)
        assert running.wait().stdout.split() == ["0", "100000", "65536", "0"]

    @pytest.mark.parametrize("remapped", [False, True], ids=["plain", "user-namespace"])
    def test_a_network_namespace_file_is_joined(
        self, make_spec: SpecFactory, run: Runner, container_base: Path,
        runtime_capabilities: frozenset[str], remapped: bool,
    ) -> None:  # fmt: skip
        if remapped and "user-namespaces" not in runtime_capabilities:
            pytest.skip("the runtime does not declare the user-namespaces capability")
        maps = {"uid_mappings": REMAPPED, "gid_mappings": REMAPPED} if remapped else {}
        path = netns.create(container_base / f"netns-{secrets.token_hex(4)}")
        try:
            result = run(make_spec("readlink", "/proc/self/ns/net", netns=str(path), **maps))
            assert result.exit_code == 0, result
            assert result.stdout.strip() == f"net:[{os.stat(path).st_ino}]"
        finally:
            netns.remove(path)

    @pytest.mark.usefixtures("needs_user_namespaces")
    def test_user_namespace_sees_the_image_and_idmapped_volumes_as_its_own(
        self, make_spec: SpecFactory, run: Runner, container_base: Path
    ) -> None:
        token = secrets.token_hex(4)
        volume, host_dir = container_base / f"volume-{token}", container_base / f"host-{token}"
        volume.mkdir()
        host_dir.mkdir()
        (volume / "old").write_text("")
        try:
            spec = make_spec(
                "sh", "-c",
                "stat -c %u:%g /bin/busybox /etc/passwd /volume/old /host; "
                "touch /made /volume/new",
                uid_mappings=REMAPPED,
                gid_mappings=(IdMapping(0, 200000, 65536),),
                mounts=(BindMount(str(volume), "/volume", idmap=True),
                        BindMount(str(host_dir), "/host")),
            )  # fmt: skip
            result = run(spec)
            assert result.exit_code == 0, result
            # The image's and the volume's root files are the container root's; a plain bind
            # mount shows the host's root as nobody, as docker shows it.
            assert result.stdout.split() == ["0:0", "0:0", "0:0", "65534:65534"]
            made = os.stat(self.upper_dir(spec) / "made")
            assert (made.st_uid, made.st_gid) == (0, 0)  # stored with the container's ids
            assert os.stat(volume / "new").st_uid == 0
        finally:
            layertar.remove_tree(volume)
            layertar.remove_tree(host_dir)
