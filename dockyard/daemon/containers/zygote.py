"""A warm parent for supervisors: ``python -m dockyard.daemon.containers.zygote LAUNCHER``.

Starting a Python process and importing the supervisor and the runtime's launcher costs tens of
milliseconds, paid on every container start. The daemon therefore keeps one *zygote*: a process
that has imported them once and, for each container start, forks a supervisor. The fork takes
a millisecond, and the supervisors share the zygote's memory pages copy-on-write, which keeps
each container's overhead small.

Protocol, over the SEQPACKET socket the daemon passes (number in ``DOCKYARD_CONTROL_FD``): one
message with the container's state directory (UTF-8) and, as SCM_RIGHTS, the write end of the
launch-report pipe; the zygote answers with the supervisor's pid (decimal, newline). The
supervisor is forked twice so that it is nobody's child but init's (or the nearest subreaper's):
it survives the zygote and the daemon alike, and the zygote has nothing to reap but the
short-lived middle process.
"""

from __future__ import annotations

import array
import contextlib
import gc
import importlib
import os
import signal
import socket
import sys
from pathlib import Path


def _receive(control: socket.socket) -> tuple[str, int] | None:
    fds = array.array("i")
    message, ancillary, _flags, _address = control.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    if not message:
        return None
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        return message.decode(), -1
    return message.decode(), fds[0]


def _become_supervisor(control: socket.socket, state_dir: str, ready_fd: int) -> None:
    """In the grandchild: run the supervisor; never returns."""
    from dockyard.daemon.containers import supervisor

    control.close()
    gc.disable()  # the supervisor's loop makes no reference cycles worth a collector's writes
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    code = 1
    try:
        code = supervisor.run_in(Path(state_dir), ready_fd)
    finally:
        os._exit(code)


def serve(control: socket.socket) -> None:
    while True:
        request = _receive(control)
        if request is None:
            return  # the daemon went away
        state_dir, ready_fd = request
        if ready_fd < 0:
            control.sendall(b"error: no report pipe\n")
            continue
        middle_read, middle_write = os.pipe()
        middle = os.fork()
        if middle == 0:
            os.close(middle_read)
            grandchild = os.fork()
            if grandchild == 0:
                os.close(middle_write)
                _become_supervisor(control, state_dir, ready_fd)
            os.write(middle_write, f"{grandchild}\n".encode())
            os._exit(0)
        os.close(middle_write)
        os.close(ready_fd)
        with os.fdopen(middle_read, "rb") as report:
            pid = report.readline()
        os.waitpid(middle, 0)
        control.sendall(pid or b"error: fork failed\n")


def main() -> int:
    # Import now what every supervisor needs, so the forks inherit it ready.
    from dockyard.daemon.containers import supervisor  # noqa: F401

    for path in sys.argv[1:]:  # the runtime's launcher, the log drivers' writers
        if path:
            importlib.import_module(path.partition(":")[0])
    # Everything imported so far is shared with every supervisor, copy-on-write. A garbage
    # collection walks (and so writes to) every object, copying the pages: keep the collector
    # away from them.
    gc.collect()
    gc.freeze()
    control = socket.socket(
        socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=int(os.environ["DOCKYARD_CONTROL_FD"])
    )
    with contextlib.suppress(ConnectionError, KeyboardInterrupt):
        serve(control)
    return 0


if __name__ == "__main__":
    sys.exit(main())
