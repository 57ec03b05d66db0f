"""Supervision: starting a container's supervisor, learning of its exit, and who waits for it.

One supervisor process per running container (see :mod:`.supervisor`) holds the container's
stdio, writes its log and records its exit in ``exit.json``. The daemon has supervisors forked
by a warm zygote (:class:`Zygote`), watches each through a pidfd on its event loop
(:func:`watch_exit`), answers ``wait`` requests from :class:`Waiters`, and decides restarts by
docker's policy (:func:`should_restart`, :func:`restart_delay`). The manager composes these.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

import dockyard
from dockyard.core.errors import DockyardError, InvalidParameter
from dockyard.daemon.containers.model import Container

#: ``-S`` skips site initialisation (.pth files: some import whole packages); the module path
#: is given explicitly instead.
ZYGOTE_COMMAND = (sys.executable, "-S", "-m", "dockyard.daemon.containers.zygote")
#: The statuses in which a container has (or is about to have) a supervisor.
ACTIVE = ("running", "paused", "restarting")
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


def supervisor_python_path(launcher: str) -> str:
    """Where the zygote finds dockyard, its dependencies and the runtime's launcher."""
    roots = [str(Path(dockyard.__file__).resolve().parent.parent)]
    spec = importlib.util.find_spec(launcher.partition(":")[0].split(".")[0]) if launcher else None
    if spec is not None and spec.origin:
        roots.append(str(Path(spec.origin).resolve().parent.parent))
    roots += [entry for entry in sys.path if entry and os.path.isdir(entry)]
    return os.pathsep.join(dict.fromkeys(roots))


class Zygote:
    """The daemon's handle on its zygote process (see :mod:`dockyard.daemon.containers.zygote`).

    Started on first use, and again if it died. Thread-safe: one spawn at a time.
    """

    def __init__(self, launcher: str, log_path: Path, preload: Sequence[str] = ()) -> None:
        self.launcher = launcher
        self.log_path = log_path
        #: More ``module:function`` paths the zygote imports up front (the log writers).
        self.preload = tuple(preload)
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._lock = threading.Lock()

    def _start(self) -> socket.socket:
        # SEQPACKET keeps each request and answer whole: no partial reads to reassemble.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [*ZYGOTE_COMMAND, self.launcher, *self.preload],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                cwd="/",
                env={
                    **os.environ,
                    "DOCKYARD_CONTROL_FD": str(theirs.fileno()),
                    "PYTHONPATH": supervisor_python_path(self.launcher),
                },
            )
        theirs.close()
        self._control = ours
        return ours

    def spawn(self, state_dir: Path, ready_fd: int) -> int:
        with self._lock:
            for _attempt in range(2):
                control = self._control
                if control is None or self._process is None or self._process.poll() is not None:
                    control = self._start()
                try:
                    socket.send_fds(control, [str(state_dir).encode()], [ready_fd])
                    answer = control.recv(64)
                except OSError:
                    answer = b""
                if answer.strip().isdigit():
                    return int(answer)
                self.close()  # a dead or confused zygote: start a fresh one and retry once
            raise DockyardError(f"the supervisor zygote failed: {answer.decode(errors='replace')}")

    def close(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)  # it exits when the socket closes
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            self._process = None


@attrs.frozen
class LaunchReport:
    """How a start went: the container's init pid and its supervisor's, or an error."""

    pid: int = 0
    #: The init process's start time (clock ticks since boot), read by the supervisor.
    start_time: int = 0
    supervisor_pid: int = 0
    error: str = ""
    #: docker's class of failure when ``error``: 125, 126 (cannot execute), 127 (not found).
    exit_code: int = 0


def start_supervisor(zygote: Zygote, directory: Path) -> LaunchReport:
    """Have the zygote fork a supervisor for the container in ``directory``; blocking.

    The supervisor's ``supervisor.json`` and ``spec.json`` must be in ``directory`` already.
    """
    ready_r, ready_w = os.pipe()
    try:
        supervisor_pid = zygote.spawn(directory, ready_w)
        os.close(ready_w)
        ready_w = -1
        with os.fdopen(ready_r, "rb") as ready:
            ready_r = -1
            line = ready.readline()
    finally:
        for fd in (ready_r, ready_w):
            if fd >= 0:
                os.close(fd)
    if not line:
        log = (directory / "supervisor.log").read_text(errors="replace").strip().splitlines()
        detail = log[-1] if log else "it exited without a word"
        return LaunchReport(error=f"the container supervisor failed: {detail}", exit_code=125)
    report = json.loads(line)
    if "error" in report:
        return LaunchReport(error=str(report["error"]), exit_code=int(report["exit_code"]))
    return LaunchReport(
        pid=int(report["pid"]),
        start_time=int(report.get("start_time", 0)),
        supervisor_pid=supervisor_pid,
    )


def read_exit_status(directory: Path) -> tuple[int, str]:
    """The exit code and error the supervisor in ``directory`` recorded (255 if it died)."""
    try:
        result = json.loads((directory / "exit.json").read_text())
        return int(result["exit_code"]), str(result.get("error", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return 255, "the container supervisor died"


def connect_to_supervisor(directory: Path, name: str) -> socket.socket:
    """Connect to one of the sockets (``stdin.sock``, ``control.sock``) of the supervisor in
    ``directory``.

    Through ``/proc/self/fd`` of the state directory, because a socket address holds only
    108 bytes and a data root's path can be longer.
    """
    directory_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(f"/proc/self/fd/{directory_fd}/{name}")
    except OSError:
        connection.close()
        raise
    finally:
        os.close(directory_fd)
    return connection


def is_supervisor(pid: int, directory: Path) -> bool:
    """Whether ``pid`` is still the supervisor of the container in ``directory``."""
    if pid <= 0:
        return False
    try:
        # A supervisor works in its container's state directory: a reused pid does not.
        return os.readlink(f"/proc/{pid}/cwd") == str(directory.resolve())
    except OSError:
        return False


class ExitWatch:
    """Calls ``on_exit`` (on the event loop) once process ``pid`` has ended.

    A pidfd made readable by the kernel at exit: no thread waits, and a pid reused after the
    exit cannot be mistaken for the process.
    """

    def __init__(self, pid: int, on_exit: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_exit = on_exit
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None
            self._loop.call_soon(on_exit)
            return
        self._loop.add_reader(self._pidfd, self._exited)

    def _exited(self) -> None:
        self.cancel()
        self._on_exit()

    def cancel(self) -> None:
        """Stop watching (the daemon is shutting down; the process goes on)."""
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


@attrs.define
class _Waiter:
    condition: str
    future: asyncio.Future[dict[str, Any]]


@attrs.define
class Waiters:
    """The pending ``POST /containers/{id}/wait`` requests of one container."""

    pending: list[_Waiter] = attrs.Factory(list)

    def add(self, condition: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending.append(_Waiter(condition, future))
        return future

    def resolve(self, conditions: tuple[str, ...], exit_code: int) -> None:
        # "Error" is for a wait that failed; the CLI treats any object there as one.
        result: dict[str, Any] = {"StatusCode": exit_code, "Error": None}
        remaining = []
        for waiter in self.pending:
            if waiter.future.done():
                continue
            if waiter.condition in conditions:
                waiter.future.set_result(result)
            else:
                remaining.append(waiter)
        self.pending = remaining

    def cancel(self) -> None:
        for waiter in self.pending:
            if not waiter.future.done():
                waiter.future.cancel()


def check_wait_condition(condition: str) -> str:
    """A ``wait?condition=`` value; empty means ``not-running``, as in docker."""
    if condition not in (*WAIT_CONDITIONS, ""):
        raise InvalidParameter(f"invalid condition: {condition!r}")
    return condition or "not-running"


def should_restart(container: Container) -> bool:
    """docker's restart policies, applied to an exit that just happened."""
    policy = container.restart_policy
    if container.state.stopped_by_user or policy.name in ("", "no"):
        return False
    if policy.name == "on-failure":
        if container.state.exit_code == 0:
            return False
        return (
            not policy.maximum_retry_count or container.restart_count < policy.maximum_retry_count
        )
    return True  # always, unless-stopped


def restart_delay(restart_count: int) -> float:
    """docker's back-off: 100 ms, doubling per consecutive restart, at most a minute."""
    return min(60.0, 0.1 * (2 ** min(restart_count, 10)))
