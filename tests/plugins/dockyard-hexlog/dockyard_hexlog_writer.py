"""The hexlog driver's writer and format: ``hexlog/container.log`` in the container's
directory, one text line per entry: ``<stream> <time in ns> <the bytes in hex>``.

The container's supervisor imports this module on every start, so it imports only the
standard library and ``dockyard.core.logfiles`` (rotation, following and reading come from
there; a driver brings its format and its options).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import IO

from dockyard.core.errors import InvalidParameter
from dockyard.core.interfaces import LogEntry
from dockyard.core.logfiles import RotatingLog, ends_a_line

NAME = "hexlog"
SUBDIRECTORY = "hexlog"


class HexLines:
    def encode(self, stream: str, data: bytes, time_ns: int) -> bytes:
        return f"{stream} {time_ns} {data.hex()}\n".encode()

    def decode(self, buffer: bytes) -> tuple[list[LogEntry], int]:
        end = buffer.rfind(b"\n") + 1
        entries = []
        for line in buffer[:end].splitlines():
            stream, time_ns, data = line.decode().split(" ")
            entries.append(LogEntry(stream, bytes.fromhex(data), int(time_ns)))
        return entries, end

    def ends_whole(self, source: IO[bytes], size: int) -> bool:
        return ends_a_line(source, size)  # one entry per line


HEX_LINES = HexLines()


def check_options(options: Mapping[str, str]) -> int:
    """The one option, ``max-bytes`` (rotate past that many bytes, two files kept)."""
    for key in options:
        if key != "max-bytes":
            raise InvalidParameter(f"unknown log opt '{key}' for log driver {NAME}")
    text = options.get("max-bytes", "0")
    if not text.isdigit():
        raise InvalidParameter(f"max-bytes must be a number of bytes, not {text!r}")
    return int(text)


def open_writer(directory: Path, options: Mapping[str, str]) -> RotatingLog:
    return RotatingLog(directory / SUBDIRECTORY, HEX_LINES, check_options(options), 2)
