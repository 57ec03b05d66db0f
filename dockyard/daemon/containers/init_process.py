"""The daemon's hold on a container's init process, through which it signals the container.

The launch report gives the init process's pid and start time; the daemon opens a pidfd of
the pid and checks that identity through it (see :mod:`dockyard.linux.processes`), keeps it
while the container runs, and opens it again after a restart. A signal sent through it reaches
the container's init or nobody: never a process that was given the pid after the init exited.
"""

from __future__ import annotations

import contextlib

import structlog

from dockyard.daemon.containers.model import ContainerState
from dockyard.linux.processes import ProcessHandle, start_time

_log = structlog.get_logger("dockyard.containers")


def hold_init(state: ContainerState) -> ProcessHandle | None:
    """A handle on the init process ``state`` records, or ``None`` if it is gone.

    The process must be the one that started at the recorded time, and the child of the
    container's supervisor. A record without a start time (written before they were kept)
    falls back on that parentage alone: only the supervisor, which the caller has checked,
    can have children in its container.
    """
    recorded = state.init_start_time
    if not recorded:
        with contextlib.suppress(OSError):
            recorded = start_time(state.pid)
    handle = ProcessHandle.open(state.pid, recorded, parent=state.supervisor_pid)
    if handle is None:
        _log.info("the container's init process is gone", pid=state.pid)
    return handle
