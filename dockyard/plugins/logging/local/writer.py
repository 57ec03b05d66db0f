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
from typing import NamedTuple

from dockyard.core.errors import InvalidParameter
from dockyard.core.logfiles import FRAMED, RotatingLog, go_bool, go_int
from dockyard.core.units import ram_in_bytes

NAME = "local"
OPTIONS = ("max-size", "max-file", "compress")
SUBDIRECTORY = "local-logs"
DEFAULT_MAX_SIZE = 20 * 1024 * 1024
DEFAULT_MAX_FILES = 5


class LocalOptions(NamedTuple):
    max_size: int  # bytes; 0: the file never rotates
    max_files: int
    compress: bool


def parse_options(options: Mapping[str, str]) -> LocalOptions:
    """``--log-opt`` values as dockerd's local driver reads them, refused with its messages."""
    for key in sorted(options):
        if key not in OPTIONS:
            raise InvalidParameter(f"unknown log opt '{key}' for log driver {NAME}")
    max_size = DEFAULT_MAX_SIZE
    if "max-size" in options:
        text = options["max-size"]
        try:
            max_size = ram_in_bytes(text)
        except ValueError as exc:
            raise InvalidParameter(f"invalid value for max-size: {text}: {exc}") from None
    max_files = DEFAULT_MAX_FILES
    if "max-file" in options:
        text = options["max-file"]
        try:
            max_files = go_int(text)
        except ValueError as exc:
            raise InvalidParameter(f"invalid value for max-file: {text}: {exc}") from None
        if max_files < 0:
            raise InvalidParameter("max file count cannot be less than 0")
        max_files = max_files or 1  # dockerd's local takes 0 for 1
    compress = True
    if "compress" in options:
        try:
            compress = go_bool(options["compress"])
        except ValueError as exc:
            raise InvalidParameter(f"error reading compress log option: {exc}") from None
    if compress and max_files == 1:
        raise InvalidParameter("compression cannot be enabled when max file count is 1")
    return LocalOptions(max_size, max_files, compress)


def open_writer(directory: Path, options: Mapping[str, str]) -> RotatingLog:
    """The supervisor's writer for a container whose state directory is ``directory``."""
    parsed = parse_options(options)
    return RotatingLog(
        directory / SUBDIRECTORY, FRAMED, parsed.max_size, parsed.max_files, parsed.compress
    )
