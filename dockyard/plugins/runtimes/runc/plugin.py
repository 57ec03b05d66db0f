"""The ``runc`` runtime: its config, the daemon-side :class:`Runtime` and the hook.

Everything after the start goes through runc too: ``runc exec`` (in the foreground, so the
daemon waits for it as for the process), ``runc pause``/``resume``, ``runc events --stats``
and ``runc ps``. Only the OOM verdict is read from the memory cgroup runc made, because runc
keeps no count of OOM kills (its ``events`` only streams them while someone listens).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import termios
import time
import tty
from pathlib import Path
from typing import Any

import attrs

from dockyard.core.config import option
from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind
from dockyard.core.errors import DockyardError, DriverUnavailable, InvalidParameter, NotFound
from dockyard.core.hookspecs import hookimpl
from dockyard.core.interfaces import (
    BlockIO,
    BlockIOEntry,
    ContainerProcess,
    ContainerSpec,
    ContainerStats,
    CpuThrottling,
    CpuTimes,
    LaunchError,
    MemoryDetail,
    ProcessSpec,
    Resources,
)
from dockyard.linux.cgroups import (
    CgroupError,
    ContainerCgroup,
    detect_layout,
    docker_memory_stat,
    host_memory,
    system_cpu_ns,
)
from dockyard.linux.processes import describe_all
from dockyard.plugins.runtimes.runc.bundle import cgroups_path, oci_resources, process_config
from dockyard.plugins.runtimes.runc.launch import (
    DEFAULT_BINARY,
    DEFAULT_CGROUP_PARENT,
    RUNC_TIMEOUT,
    RUNTIME_FAILURE,
    Runc,
    exit_code_for,
    last_error,
)

LAUNCHER = "dockyard.plugins.runtimes.runc.launch:launch"
#: Where runc usually lives, besides $PATH (a daemon started without the sbin directories).
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
#: How often ``exec`` looks whether runc has started the process (written its pid file).
EXEC_POLL_SECONDS = 0.002


@attrs.frozen
class RuncConfig:
    """Options of ``[runtimes.runc]``."""

    binary: str = option(DEFAULT_BINARY, "the runc binary: a path, or a name looked up in $PATH")
    root: str = option("", "runc's state directory (--root); empty: runc-root in our state dir")
    cgroup_parent: str = option(
        DEFAULT_CGROUP_PARENT,
        "cgroup, under each hierarchy's root, holding one cgroup per container",
    )


def find_binary(name: str) -> str | None:
    """The absolute path of the runc binary, or ``None``."""
    if "/" in name:
        return os.path.abspath(name) if os.access(name, os.X_OK) else None
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    return shutil.which(name, path=search)


class RuncRuntime:
    """A :class:`~dockyard.core.interfaces.Runtime` that drives the ``runc`` binary.

    Containers are found by id in runc's private state root, so this works for containers an
    earlier daemon started.
    """

    launcher = LAUNCHER

    def __init__(self, runc: Runc, setsid: str | None = None) -> None:
        self.runc = runc
        #: util-linux ``setsid``, to give a terminal exec's runc its controlling terminal
        #: (without it such an exec works, but does not follow resizes).
        self.setsid = setsid or shutil.which("setsid")
        #: Copied by the core into ``ContainerSpec.runtime_options`` for the launcher.
        self.launch_options = runc.options()

    def _require_state(self, container_id: str) -> None:
        if not self.runc.state_exists(container_id):
            raise NotFound(f"container {container_id} is not known to runc (is it running?)")

    def _call(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.runc.command(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=RUNC_TIMEOUT,
            check=False,
        )

    def _call_checked(self, container_id: str, *args: str) -> str:
        self._require_state(container_id)
        result = self._call(*args, container_id)
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip()
            raise DockyardError(f"runc {args[0]} failed: {message}")
        return result.stdout.decode(errors="replace")

    # ------------------------------------------------------------------ exec

    def exec(
        self, spec: ContainerSpec, pid: int, process: ProcessSpec, stdio: tuple[int, int, int]
    ) -> int:
        """Start ``process`` with a foreground ``runc exec``; return runc's pid.

        runc stays the daemon's child until the process ends and exits with its status (128 +
        the signal's number when it was killed), so waiting for runc is waiting for the
        process. It started the process once it has written its pid file; had it failed, it
        exits without one, and its log says why.
        """
        self._require_state(spec.id)
        files = _ExecFiles.make(spec.state_dir or self.runc.root)
        with open(files.process, "w") as process_file:
            json.dump(process_config(process, spec.privileged), process_file)
        argv = self.runc.command(
            "exec", "--process", files.process, "--pid-file", files.pid, spec.id, log=files.log,
            netns=spec.netns if spec.network_mode != "host" else "",
        )  # fmt: skip
        if process.terminal:
            # runc makes its stdin raw too, but only once it already copies the container's
            # output: what came first would get a second CR from this pty's ONLCR.
            tty.setraw(stdio[0], termios.TCSANOW)
        if process.terminal and self.setsid is not None:
            # runc relays between its stdin (our pty's slave) and the container's pty, and
            # copies a resize on SIGWINCH, which it gets only if the slave is its controlling
            # terminal: setsid --ctty makes it so, then execs runc (same pid).
            argv = [self.setsid, "--ctty", *argv]
        try:
            runc_pid = os.posix_spawn(
                argv[0],
                argv,
                dict(os.environ),
                file_actions=[(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)],
            )
        except OSError as exc:
            files.remove()
            raise LaunchError(f"cannot run runc exec: {exc}", RUNTIME_FAILURE) from None
        try:
            started = _wait_for_start(runc_pid, files.pid)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.kill(runc_pid, signal.SIGKILL)
            os.waitpid(runc_pid, 0)
            files.remove()
            raise
        if started:
            files.remove()  # runc may log on: it keeps the unlinked file
            return runc_pid
        _, status = os.waitpid(runc_pid, 0)
        fallback = f"runc exec exited with status {os.waitstatus_to_exitcode(status)}"
        message = last_error(files.log, fallback)
        files.remove()
        raise LaunchError(message, exit_code_for(message))

    # ------------------------------------------------------------------ freezer, stats

    def pause(self, container_id: str) -> None:
        self._call_checked(container_id, "pause")

    def resume(self, container_id: str) -> None:
        self._call_checked(container_id, "resume")

    def stats(self, container_id: str) -> ContainerStats:
        output = self._call_checked(container_id, "events", "--stats")
        try:
            data: dict[str, Any] = json.loads(output)["data"]
        except (ValueError, KeyError, TypeError):
            raise DockyardError(f"runc events gave no stats: {output[:200]!r}") from None
        memory = data.get("memory", {}).get("usage", {})
        machine = host_memory()
        limit = int(memory.get("limit") or 0) or machine
        pids = data.get("pids", {})
        cpu = data.get("cpu") or {}
        usage = cpu.get("usage") or {}
        throttling = cpu.get("throttling") or {}
        version = detect_layout().version
        return ContainerStats(
            memory_usage=int(memory.get("usage") or 0),
            memory_limit=min(limit, machine) if machine else limit,
            cpu_total_ns=int(usage.get("total") or 0),
            system_cpu_ns=system_cpu_ns(),
            online_cpus=os.cpu_count() or 1,
            pids=int(pids.get("current") or 0),
            pids_limit=int(pids.get("limit") or 0),
            cpu_times=CpuTimes(
                kernel_ns=int(usage.get("kernel") or 0),
                user_ns=int(usage.get("user") or 0),
                per_cpu_ns=tuple(int(v) for v in usage.get("percpu") or ()),
            ),
            # runc leaves out the zero figures, and names two of these in camel case.
            cpu_throttling=CpuThrottling(
                periods=int(throttling.get("periods") or 0),
                throttled_periods=int(throttling.get("throttledPeriods") or 0),
                throttled_ns=int(throttling.get("throttledTime") or 0),
            ),
            memory=self._memory_detail(container_id, data.get("memory") or {}, version),
            block_io=_block_io(data.get("blkio") or {}, version),
        )

    def _memory_detail(
        self, container_id: str, memory: dict[str, Any], version: int
    ) -> MemoryDetail:
        raw = {key: int(value) for key, value in (memory.get("raw") or {}).items()}
        if version == 2:
            # runc's events carry no OOM count: docker's v2 failcnt is memory.events' "oom".
            try:
                failcnt = (
                    ContainerCgroup(container_id, self.runc.cgroup_parent).memory_detail().failcnt
                )
            except (OSError, CgroupError):
                failcnt = 0
            return MemoryDetail(failcnt=failcnt, stat=docker_memory_stat(raw, 2))
        usage = memory.get("usage") or {}
        return MemoryDetail(
            max_usage=int(usage.get("max") or 0),
            failcnt=int(usage.get("failcnt") or 0),
            stat=docker_memory_stat(raw, 1),
        )

    def processes(self, container_id: str) -> list[ContainerProcess]:
        """The pids ``runc ps`` lists, described from /proc (checked against runc's cgroup)."""
        output = self._call_checked(container_id, "ps", "--format", "json")
        try:
            pids = [int(pid) for pid in json.loads(output)]
        except (ValueError, TypeError):
            raise DockyardError(f"runc ps gave no pid list: {output[:200]!r}") from None
        return describe_all(pids, cgroups_path(container_id, self.runc.cgroup_parent))

    def oom_killed(self, container_id: str) -> bool:
        """Read the OOM kill count of the memory cgroup runc made (until ``runc delete``)."""
        try:
            cgroup = ContainerCgroup(container_id, self.runc.cgroup_parent)
            return cgroup.exists() and cgroup.oom_kills() > 0
        except (OSError, CgroupError):
            return False

    def update(self, container_id: str, resources: Resources) -> None:
        """``runc update``, the new limits as OCI resources on its stdin."""
        self._require_state(container_id)
        result = subprocess.run(
            self.runc.command("update", "--resources", "-", container_id),
            input=json.dumps(oci_resources(resources)).encode(),
            capture_output=True,
            timeout=RUNC_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip()
            raise InvalidParameter(f"Cannot update container {container_id}: {message}")

    # ------------------------------------------------------------------ clean-up

    def cleanup(self, container_id: str) -> None:
        """``runc delete --force``, then whatever cgroup runc's lost state left behind.

        The root filesystem needs no unmounting: it was mounted in the supervisor's private
        mount namespace, gone with it. The bundle files belong to the container's state
        directory, which the core removes with the container.
        """
        self.runc.delete(container_id)
        with contextlib.suppress(OSError, CgroupError):
            ContainerCgroup(container_id, self.runc.cgroup_parent).remove()
        # runc makes a directory in every v1 hierarchy, more than ContainerCgroup knows.
        relative = os.path.join(self.runc.cgroup_parent.strip("/"), container_id)
        for path in glob.glob(os.path.join("/sys/fs/cgroup", "*", relative)):
            with contextlib.suppress(OSError):
                os.rmdir(path)


@attrs.frozen
class _ExecFiles:
    """The files of one ``runc exec``: its process.json, pid file and error log."""

    process: str
    pid: str
    log: str

    @classmethod
    def make(cls, directory: str) -> _ExecFiles:
        stem = os.path.join(directory, f"exec-{secrets.token_hex(8)}")
        return cls(process=f"{stem}.json", pid=f"{stem}.pid", log=f"{stem}.log")

    def remove(self) -> None:
        for path in (self.process, self.pid, self.log):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _wait_for_start(runc_pid: int, pid_file: str) -> bool:
    """Wait until runc wrote its pid file (True) or exited without it (False).

    runc writes the pid file once the process runs, and only then waits for it: so a runc
    that ended first failed, unless it raced a very short process, which the second look
    at the file catches. The exit is peeked at (pidfd), never reaped: the caller reaps.
    """
    pidfd = os.pidfd_open(runc_pid)
    try:
        deadline = time.monotonic() + RUNC_TIMEOUT
        while time.monotonic() < deadline:
            if os.path.exists(pid_file):
                return True
            exited, _, _ = select.select([pidfd], [], [], EXEC_POLL_SECONDS)
            if exited:
                return os.path.exists(pid_file)
        raise LaunchError("runc exec did not start the process in time", RUNTIME_FAILURE)
    finally:
        os.close(pidfd)


# --------------------------------------------------------------------------------------------
# The plugin
# --------------------------------------------------------------------------------------------

_CONFIGURED_BINARY = DEFAULT_BINARY


def check() -> None:
    """Raise DriverUnavailable without root or without the runc binary (cheap: a path lookup)."""
    if os.geteuid() != 0:
        raise DriverUnavailable("the runc runtime needs root (it mounts the root filesystem)")
    if find_binary(_CONFIGURED_BINARY) is None:
        raise DriverUnavailable("the runc binary is not installed")
    try:
        detect_layout()
    except (OSError, CgroupError) as exc:
        raise DriverUnavailable(str(exc)) from None


def build(config: RuncConfig, context: DriverContext) -> RuncRuntime:
    """The factory the core calls with the decoded ``[runtimes.runc]`` table."""
    binary = find_binary(config.binary)
    if binary is None:
        raise DriverUnavailable(f"the runc binary {config.binary!r} is not installed")
    root = Path(config.root) if config.root else Path(context.state_dir) / "runc-root"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return RuncRuntime(Runc(binary=binary, root=str(root), cgroup_parent=config.cgroup_parent))


@hookimpl
def dockyard_runtimes() -> DriverInfo:
    return DriverInfo(
        name="runc",
        kind=DriverKind.RUNTIME,
        factory=build,
        config_class=RuncConfig,
        description="the runc binary (OCI runtime bundles), as docker runs containers",
        capabilities=frozenset(("oci", "cgroup-v1", "cgroup-v2", "user-namespaces")),
        priority=10,
        check=check,
    )


def _blkio_list(entries: list[dict[str, Any]] | None) -> tuple[BlockIOEntry, ...]:
    """runc's blkio entries (it leaves out zero fields) as records."""
    return tuple(
        BlockIOEntry(
            int(e.get("major") or 0),
            int(e.get("minor") or 0),
            e.get("op") or "",
            int(e.get("value") or 0),
        )
        for e in entries or ()
    )


def _block_io(blkio: dict[str, Any], version: int) -> BlockIO:
    """runc's blkio figures as docker reports them: on v1 every list (runc leaves out the
    empty ones), on v2 the bytes read and written alone, their ops in lower case."""
    if version == 2:
        moved = [
            attrs.evolve(entry, op=entry.op.lower())
            for entry in _blkio_list(blkio.get("ioServiceBytesRecursive"))
            if entry.op in ("Read", "Write")
        ]
        return BlockIO(service_bytes=tuple(moved) or None)
    return BlockIO(
        service_bytes=_blkio_list(blkio.get("ioServiceBytesRecursive")),
        serviced=_blkio_list(blkio.get("ioServicedRecursive")),
        queued=_blkio_list(blkio.get("ioQueueRecursive")),
        service_time=_blkio_list(blkio.get("ioServiceTimeRecursive")),
        wait_time=_blkio_list(blkio.get("ioWaitTimeRecursive")),
        merged=_blkio_list(blkio.get("ioMergedRecursive")),
        time=_blkio_list(blkio.get("ioTimeRecursive")),
        sectors=_blkio_list(blkio.get("sectorsRecursive")),
    )
