"""The local driver's options and writer: ``local-logs/container.log`` in the container's
directory, as dockerd's ``local`` places it, rotated at ``max-size`` (20 MiB) into ``max-file``
(5) files, rotated files gzipped (``compress``, on by default): dockerd's defaults.

The records are our own, not dockerd's protobuf: :data:`~dockyard.core.logfiles.FRAMED`, a
binary header and the raw bytes (no JSON or base64 on the way in). ``docker logs`` reads them
back with every option (follow, since, until, tail, timestamps) as for json-file.

Imported by the container's supervisor on every start: standard library and core only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dockyard.core.errors import InvalidParameter
from dockyard.core.logfiles import (
    COMPRESS_ERROR,
    FRAMED,
    RotatingLog,
    Rotation,
    go_bool,
    go_int,
    read_option,
)
from dockyard.core.units import ram_in_bytes

NAME = "local"
OPTIONS = ("max-size", "max-file", "compress")
SUBDIRECTORY = "local-logs"
DEFAULT_MAX_SIZE = 20 * 1024 * 1024
DEFAULT_MAX_FILES = 5


def parse_options(options: Mapping[str, str]) -> Rotation:
    """``--log-opt`` values as dockerd's local driver reads them, refused with its messages."""
    for key in sorted(options):
        if key not in OPTIONS:
            raise InvalidParameter(f"unknown log opt '{key}' for log driver {NAME}")
    max_size = read_option(options, "max-size", ram_in_bytes, DEFAULT_MAX_SIZE)
    max_files = read_option(options, "max-file", go_int, DEFAULT_MAX_FILES)
    if max_files < 0:
        raise InvalidParameter("max file count cannot be less than 0")
    max_files = max_files or 1  # dockerd's local takes 0 for 1
    compress = read_option(options, "compress", go_bool, True, COMPRESS_ERROR)
    if compress and max_files == 1:
        raise InvalidParameter("compression cannot be enabled when max file count is 1")
    return Rotation(max_size, max_files, compress)


def open_writer(directory: Path, options: Mapping[str, str]) -> RotatingLog:
    """The supervisor's writer for a container whose state directory is ``directory``."""
    parsed = parse_options(options)
    return RotatingLog(
        directory / SUBDIRECTORY, FRAMED, parsed.max_size, parsed.max_files, parsed.compress
    )
