"""The per-container supervisor: ``python -m dockyard.daemon.containers.supervisor STATE_DIR``.

The daemon starts one per container start, in a session of its own, so the container survives
the daemon. The supervisor:

* makes itself a child subreaper and starts the container's process through the runtime's
  launcher (named in ``supervisor.json``), with pipes or a pty as its stdio; the launch runs in
  a short-lived child, so that the supervisor itself stays small for the container's lifetime;
* hands everything the process prints to the container's log driver's writer, imported by
  its ``module:function`` path (the daemon's ``logs`` and ``attach`` read it back through the
  driver);
* takes stdin from ``stdin.sock`` and terminal resizes from ``control.sock``;
* records the exit status in ``exit.json`` (atomically) once the output is drained, and exits.

It tells the daemon how the launch went by one JSON line on file descriptor 3: the init
process's pid and start time, or the launch's error. Standard
library only, and nothing imported that a container start does not need.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import importlib
import json
import os
import pty
import selectors
import signal
import socket
import struct
import sys
import termios
import time
from pathlib import Path
from typing import Any

from dockyard.core.interfaces import LaunchError, LogWriter, spec_from_json
from dockyard.core.logfiles import open_private
from dockyard.daemon.containers.logs import SUPERVISOR_LOG_NAME
from dockyard.linux.processes import start_time

PR_SET_CHILD_SUBREAPER = 36
#: How long output may keep flowing after the init process exited (from processes that
#: escaped the pid namespace's teardown, such as a host-network daemon).
DRAIN_SECONDS = 2.0
#: Looked up at import, in the zygote, so that the supervisors it forks share the objects.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def write_json_atomically(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as out:
        json.dump(value, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def set_window_size(fd: int, rows: int, columns: int) -> None:
    if rows > 0 and columns > 0:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def _import_launcher(path: str) -> Any:
    """The function a ``module:function`` path names (a launcher, a log writer)."""
    module_name, _, function = path.partition(":")
    return getattr(importlib.import_module(module_name), function)


class Supervisor:
    def __init__(self, state_dir: Path, ready_fd: int) -> None:
        self.dir = state_dir
        self.ready_fd = ready_fd
        self.settings = json.loads((state_dir / "supervisor.json").read_text())
        self.tty: bool = self.settings.get("tty", False)
        self.open_stdin: bool = self.settings.get("open_stdin", False)
        self.stdin_once: bool = self.settings.get("stdin_once", False)
        log = self.settings["log"]
        self.logs: LogWriter = _import_launcher(log["writer"])(state_dir, log["options"])
        self.selector = selectors.DefaultSelector()
        self.outputs: dict[int, str] = {}  # our read end -> stream name
        self.stdin_fd: int | None = None  # our write end of the process's stdin
        self.stdin_pending = b""
        self.stdin_closing = False
        self.terminal_fd: int | None = None
        self.init_pid = 0
        self.exit_status: int | None = None

    # ------------------------------------------------------------------ setup

    def _stdio(self) -> tuple[int, int, int]:
        """The process's ends of its stdio; ours are registered for reading and writing."""
        if self.tty:
            master, slave = pty.openpty()
            os.set_blocking(master, False)
            self.terminal_fd = master
            self.outputs[master] = "stdout"
            if self.open_stdin:
                self.stdin_fd = master
            return slave, slave, slave
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            self.outputs[fd] = stream
        if self.open_stdin:
            in_r, in_w = os.pipe()
            os.set_blocking(in_w, False)
            self.stdin_fd = in_w
        else:
            in_r = os.open(os.devnull, os.O_RDONLY)
        return in_r, out_w, err_w

    def _listen(self, name: str) -> socket.socket:
        # Bound by a relative name (our cwd is the state dir): the full path of a data root can
        # exceed the 108 bytes a socket address holds.
        (self.dir / name).unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(name)
        listener.listen(8)
        listener.setblocking(False)
        return listener

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        stdio = self._stdio()
        stdin_listener = self._listen("stdin.sock") if self.open_stdin else None
        control_listener = self._listen("control.sock")
        try:
            outcome = self._launch_in_child(stdio)
        finally:
            for fd in set(stdio):
                os.close(fd)
        if "error" in outcome:
            return self._finish_failed(outcome["error"], outcome["exit_code"])
        self.init_pid = outcome["pid"]
        (self.dir / "init.pid").write_text(f"{self.init_pid}\n")
        # Read now, while the process is our unreaped child: its pid names nobody else yet.
        # With the pid, it is the identity the daemon checks before it signals the process.
        self._report({"pid": self.init_pid, "start_time": start_time(self.init_pid)})

        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        for fd in self.outputs:
            self.selector.register(fd, selectors.EVENT_READ, "output")
        if stdin_listener is not None:
            self.selector.register(stdin_listener, selectors.EVENT_READ, "stdin-listener")
        self.selector.register(control_listener, selectors.EVENT_READ, "control-listener")
        self._loop(wake_r)
        self._drain()
        assert self.exit_status is not None
        exit_code = os.waitstatus_to_exitcode(self.exit_status)
        if exit_code < 0:
            exit_code = 128 - exit_code  # killed by a signal: 128 + its number, as docker reports
        write_json_atomically(
            self.dir / "exit.json",
            {"exit_code": exit_code, "finished_at": time.time_ns(), "error": ""},
        )
        self.logs.close()
        return 0

    def _launch_in_child(self, stdio: tuple[int, int, int]) -> dict[str, Any]:
        """Have the runtime's launcher start the init process, from a short-lived child.

        The launch (the spec's parsing, cgroups, mounts, the fork of the init process) touches
        much of the memory this process shares copy-on-write with the zygote; done here, each
        touched page would stay copied for the container's whole life. The child does it and
        exits, and the init process, orphaned, is reparented to us: we are its subreaper.
        Returns ``{"pid": N}`` or ``{"error": message, "exit_code": N}``.
        """
        report_r, report_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(report_r)
            _launch_and_report(self.dir, self.settings["launcher"], stdio, report_w)
            os._exit(0)
        os.close(report_w)
        with os.fdopen(report_r, "rb") as report:
            message = report.read()
        os.waitpid(child, 0)
        try:
            outcome: dict[str, Any] = json.loads(message)
        except ValueError:
            outcome = {"error": "the launcher exited without a report", "exit_code": 125}
        return outcome

    def _finish_failed(self, message: str, exit_code: int) -> int:
        write_json_atomically(
            self.dir / "exit.json",
            {"exit_code": exit_code, "finished_at": time.time_ns(), "error": message},
        )
        self._report({"error": message, "exit_code": exit_code})
        self.logs.close()
        return 0

    def _report(self, message: dict[str, Any]) -> None:
        try:
            os.write(self.ready_fd, json.dumps(message).encode() + b"\n")
            os.close(self.ready_fd)
        except OSError:
            pass  # the daemon went away; exit.json and init.pid say the same

    def _loop(self, wake_r: int) -> None:
        while self.exit_status is None:
            for key, _events in self.selector.select(timeout=1.0):
                role = key.data
                if role == "wake":
                    self._drain_wakeups(wake_r)
                elif role == "output":
                    self._read_output(key.fd)
                elif role == "stdin-listener":
                    connection, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    connection.setblocking(False)
                    self.selector.register(connection, selectors.EVENT_READ, "stdin")
                elif role == "stdin":
                    self._read_stdin(key.fileobj)  # type: ignore[arg-type]
                elif role == "stdin-write":
                    self._flush_stdin()
                elif role == "control-listener":
                    connection, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    connection.setblocking(False)
                    self.selector.register(connection, selectors.EVENT_READ, "control")
                elif role == "control":
                    self._read_control(key.fileobj)  # type: ignore[arg-type]
            self._reap()

    def _drain_wakeups(self, wake_r: int) -> None:
        try:
            while os.read(wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        """Collect every exited child (we are a subreaper); note the init process's status."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.init_pid:
                self.exit_status = status

    def _read_output(self, fd: int) -> bool:
        """Copy what is there to the log; False once the stream has ended."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: the pty's last slave closed
                raise
            data = b""
        if not data:
            self.selector.unregister(fd)
            del self.outputs[fd]
            return False
        self.logs.write(self.outputs[fd], data)
        return True

    def _read_stdin(self, connection: socket.socket) -> None:
        try:
            data = connection.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.stdin_pending += data
            self._flush_stdin()
            return
        self.selector.unregister(connection)
        connection.close()
        # Docker closes a container's stdin when its (only) attached client's input ends, but
        # not for a terminal: detaching from a shell must leave the shell running.
        if self.stdin_once and not self.tty:
            self.stdin_closing = True
            self._flush_stdin()

    def _flush_stdin(self) -> None:
        if self.stdin_fd is None:
            return
        try:
            while self.stdin_pending:
                written = os.write(self.stdin_fd, self.stdin_pending)
                self.stdin_pending = self.stdin_pending[written:]
        except BlockingIOError:
            pass
        except OSError:
            self.stdin_pending = b""  # the process closed its stdin
        waiting = bool(self.stdin_pending)
        if self.stdin_fd != self.terminal_fd:
            registered = self.selector.get_map().get(self.stdin_fd)
            if waiting and registered is None:
                self.selector.register(self.stdin_fd, selectors.EVENT_WRITE, "stdin-write")
            elif not waiting and registered is not None:
                self.selector.unregister(self.stdin_fd)
        if not waiting and self.stdin_closing:
            os.close(self.stdin_fd)
            self.stdin_fd = None

    def _read_control(self, connection: socket.socket) -> None:
        try:
            data = connection.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(connection)
            connection.close()
            return
        for line in data.splitlines():
            try:
                request = json.loads(line)
                if "resize" in request and self.terminal_fd is not None:
                    rows, columns = request["resize"]
                    set_window_size(self.terminal_fd, int(rows), int(columns))
            except (ValueError, TypeError, OSError):
                continue

    def _drain(self) -> None:
        """Read what the process's output still holds, for at most ``DRAIN_SECONDS``."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.outputs and time.monotonic() < deadline:
            ready = self.selector.select(timeout=max(0.0, deadline - time.monotonic()))
            for key, _ in ready:
                if key.data == "output":
                    self._read_output(key.fd)
            if not ready:
                break
            self._reap()


def _launch_and_report(
    state_dir: Path, launcher: str, stdio: tuple[int, int, int], report_fd: int
) -> None:
    """In the launch child: start the init process; one JSON report on ``report_fd``."""
    outcome: dict[str, Any]
    try:
        spec = spec_from_json((state_dir / "spec.json").read_text())
        if os.isatty(stdio[1]):  # the pty starts at the size of the client's terminal
            set_window_size(stdio[1], *spec.process.console_size)
        outcome = {"pid": _import_launcher(launcher)(spec, stdio)}
    except LaunchError as exc:
        outcome = {"error": str(exc), "exit_code": exc.exit_code}
    except Exception as exc:
        outcome = {"error": f"{type(exc).__name__}: {exc}", "exit_code": 125}
    os.write(report_fd, json.dumps(outcome).encode())


def run_in(state_dir: Path, ready_fd: int) -> int:
    """Supervise the container of ``state_dir``; ``ready_fd`` takes the launch report."""
    os.umask(0o022)
    os.chdir(state_dir)
    with open_private(Path(SUPERVISOR_LOG_NAME)) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    Path("supervisor.pid").write_text(f"{os.getpid()}\n")
    return Supervisor(state_dir, ready_fd).run()


def main() -> int:
    """Run without the zygote (``python -m``): the report pipe is named in the environment."""
    if len(sys.argv) != 2:
        print("usage: python -m dockyard.daemon.containers.supervisor STATE_DIR", file=sys.stderr)
        return 2
    return run_in(Path(sys.argv[1]).absolute(), int(os.environ.get("DOCKYARD_READY_FD", "3")))


if __name__ == "__main__":
    sys.exit(main())
