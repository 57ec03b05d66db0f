"""Plays the container's supervisor for runtime tests.

``python -m dockyard.testing.launch_harness SPEC_FILE REPORT_FD LAUNCHER``

Like the real supervisor it makes itself a child subreaper and calls the runtime's launcher
(``module:function``) with its own stdio (the test captures it). It reports on REPORT_FD, one
JSON line each: the launch's outcome (``{"pid", "start_time"}`` or ``{"error",
"exit_code"}``), then the init process's wait status (``{"status"}``). It runs as a process of
its own so that a launcher's ``unshare`` or mount namespace never touches pytest.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

from dockyard.core.interfaces import LaunchError, spec_from_json
from dockyard.linux import syscalls
from dockyard.linux.processes import start_time


def _report(fd: int, message: dict[str, object]) -> None:
    os.write(fd, json.dumps(message).encode() + b"\n")


def main() -> int:
    spec_file, report_fd, launcher = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    with open(spec_file) as source:
        spec = spec_from_json(source.read())
    module, _, function = launcher.partition(":")
    launch = getattr(importlib.import_module(module), function)
    try:
        pid = launch(spec, (0, 1, 2))
    except LaunchError as exc:
        _report(report_fd, {"error": str(exc), "exit_code": exc.exit_code})
        return 0
    # As the supervisor does: read while the process is our unreaped child.
    _report(report_fd, {"pid": pid, "start_time": start_time(pid)})
    # Stdio now belongs to the container alone: the test reads its output until EOF.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    while True:  # as subreaper, reap everything until the init process is gone
        reaped, status = os.waitpid(-1, 0)
        if reaped == pid:
            _report(report_fd, {"status": status})
            return 0


if __name__ == "__main__":
    sys.exit(main())
