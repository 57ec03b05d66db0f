"""The none driver's writer: nothing for ``docker logs``; only what ``attach`` follows.

dockyard's ``attach`` (and a build step) follows the container's output through its log driver's
reader, where dockerd copies it from the process in memory. So this writer keeps the live
output in ``attach-buffer/``, bounded: two files of at most 1 MiB, the older dropped as the
output goes on. ``docker logs`` never reads it (the driver is not ``readable``).

Imported by the container's supervisor on every start: standard library and core only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dockyard.core.errors import InvalidParameter
from dockyard.core.logfiles import FRAMED, RotatingLog

NAME = "none"
SUBDIRECTORY = "attach-buffer"
#: Enough for an attached client to keep up; a client a whole file behind loses output.
BUFFER_FILE_SIZE = 1 << 20


def check_options(options: Mapping[str, str]) -> None:
    if options:
        # The docker CLI's own message for --log-opt with --log-driver none.
        raise InvalidParameter(f"invalid logging opts for driver {NAME}")


def open_writer(directory: Path, options: Mapping[str, str]) -> RotatingLog:
    """The supervisor's writer for a container whose state directory is ``directory``."""
    check_options(options)
    return RotatingLog(directory / SUBDIRECTORY, FRAMED, BUFFER_FILE_SIZE, 2)
