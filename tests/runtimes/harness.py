"""Plays the container's supervisor for the runtime tests: ``python harness.py SPEC REPORT_FD``.

A child subreaper, like the real supervisor, that calls the launcher with its own stdio
(the test captures it) and reports on REPORT_FD, one JSON line each: the launch's outcome
(``{"pid"}`` or ``{"error", "exit_code"}``), then the init process's wait status. It runs in
its own process so the launcher's ``unshare(CLONE_NEWPID)`` never touches pytest.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

from dockyard.core.interfaces import LaunchError, spec_from_json
from dockyard.linux import syscalls


def report(message: dict) -> None:
    os.write(int(sys.argv[2]), json.dumps(message).encode() + b"\n")


def main() -> int:
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    with open(sys.argv[1]) as spec_file:
        spec = spec_from_json(spec_file.read())
    launcher = (
        sys.argv[3] if len(sys.argv) > 3 else "dockyard.plugins.runtimes.namespaces.launch:launch"
    )
    module, _, function = launcher.partition(":")
    launch = getattr(importlib.import_module(module), function)
    try:
        pid = launch(spec, (0, 1, 2))
    except LaunchError as exc:
        report({"error": str(exc), "exit_code": exc.exit_code})
        return 0
    report({"pid": pid})
    # Stdio now belongs to the container alone: the test reads its output until EOF.
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    while True:  # as subreaper, reap everything until the init process is gone
        reaped, status = os.waitpid(-1, 0)
        if reaped == pid:
            report({"status": status})
            return 0


if __name__ == "__main__":
    sys.exit(main())
