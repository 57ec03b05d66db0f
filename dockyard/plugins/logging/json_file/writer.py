"""The json-file driver's options and writer: ``container.log`` in the container's directory,
one JSON object per line as dockerd writes them, rotated by ``max-size``/``max-file`` and
gzipped when rotated with ``compress``.

Imported by the container's supervisor on every start: standard library and core only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dockyard.core.errors import InvalidParameter
from dockyard.core.logfiles import (
    COMPRESS_ERROR,
    JSON_LINES,
    RotatingLog,
    Rotation,
    go_bool,
    go_int,
    read_option,
)
from dockyard.core.units import ram_in_bytes

NAME = "json-file"
OPTIONS = ("max-size", "max-file", "compress")
#: dockerd's json-file takes these too (extra attributes on each line): not applied here.
NOT_APPLIED = ("labels", "labels-regex", "env", "env-regex", "tag")


def parse_options(options: Mapping[str, str]) -> Rotation:
    """``--log-opt`` values as dockerd's json-file reads them, refused with its messages."""
    for key in sorted(options):
        if key in NOT_APPLIED:
            raise InvalidParameter(
                f"log opt '{key}' is not supported by this engine's json-file log driver"
            )
        if key not in OPTIONS:
            raise InvalidParameter(f"unknown log opt '{key}' for json-file log driver")
    max_size = read_option(options, "max-size", ram_in_bytes, 0)
    if "max-size" in options and max_size <= 0:
        raise InvalidParameter("max-size must be a positive number")
    max_files = read_option(options, "max-file", go_int, 1)
    if max_files < 1:
        raise InvalidParameter("max-file cannot be less than 1")
    if max_files > 1 and not max_size:
        # dockerd takes it and never rotates: refused rather than accepted and ignored.
        raise InvalidParameter("max-file can only be used together with max-size")
    compress = read_option(options, "compress", go_bool, False, COMPRESS_ERROR)
    if compress and (max_files == 1 or not max_size):
        raise InvalidParameter(
            "compress cannot be true when max-file is less than 2 or max-size is not set"
        )
    return Rotation(max_size, max_files, compress)


def open_writer(directory: Path, options: Mapping[str, str]) -> RotatingLog:
    """The supervisor's writer for a container whose state directory is ``directory``."""
    parsed = parse_options(options)
    return RotatingLog(directory, JSON_LINES, parsed.max_size, parsed.max_files, parsed.compress)
