"""Container output in Docker's json-file format, written by the supervisor, read by the daemon.

Each line is ``{"log": "...", "stream": "stdout", "time": "<RFC 3339 nano>"}``, as Docker
writes it, so existing tools can read our logs. Output that is not valid UTF-8 also carries
``"raw"`` (base64), because the same file feeds ``attach``, which must pass bytes through
exactly (``docker run image cat /bin/file > copy``). Files rotate at ``max_size`` into
``container.log.1`` ... ``.N``; readers follow across a rotation.

This module is imported by the supervisor on every container start: standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from dockyard.core.timestamps import parse_rfc3339_nano, rfc3339_nano

LOG_NAME = "container.log"


class LogEntry(NamedTuple):
    stream: str  # "stdout" or "stderr"
    data: bytes
    time_ns: int


def encode_entry(stream: str, data: bytes, time_ns: int) -> bytes:
    record: dict[str, str] = {"log": data.decode("utf-8", "replace"), "stream": stream}
    record["time"] = rfc3339_nano(time_ns)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        record["raw"] = base64.b64encode(data).decode()
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def decode_entry(line: bytes) -> LogEntry | None:
    try:
        record = json.loads(line)
        raw = record.get("raw")
        data = base64.b64decode(raw) if raw else record["log"].encode()
        return LogEntry(record["stream"], data, parse_rfc3339_nano(record["time"]))
    except (ValueError, KeyError, TypeError):
        return None  # a torn last line of a killed writer, or foreign junk


class LogWriter:
    """Appends entries, splitting at newlines, rotating by size. Used by the supervisor."""

    def __init__(self, directory: Path, max_size: int = 0, max_files: int = 1) -> None:
        self.path = directory / LOG_NAME
        self.max_size = max_size
        self.max_files = max(1, max_files)
        self._out: IO[bytes] = open(self.path, "ab")  # noqa: SIM115 - lives with the writer
        self._size = self._out.tell()

    def write(self, stream: str, data: bytes) -> None:
        now = time.time_ns()
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end + 1
            line = encode_entry(stream, data[start:end], now)
            if self.max_size and self._size + len(line) > self.max_size and self._size:
                self._rotate()
            self._out.write(line)
            self._size += len(line)
            start = end
        self._out.flush()

    def _rotate(self) -> None:
        self._out.close()
        if self.max_files == 1:
            os.truncate(self.path, 0)
        else:
            for index in range(self.max_files - 1, 0, -1):
                older = self.path.with_name(f"{LOG_NAME}.{index}")
                newer = self.path if index == 1 else self.path.with_name(f"{LOG_NAME}.{index - 1}")
                if newer.exists():
                    os.replace(newer, older)
        self._out = open(self.path, "ab")  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        self._out.close()


class LogPosition(NamedTuple):
    inode: int
    offset: int


def _log_names_oldest_first(names: list[str]) -> list[str]:
    rotated = sorted(
        (n for n in names if n.startswith(f"{LOG_NAME}.") and n[len(LOG_NAME) + 1 :].isdigit()),
        key=lambda n: int(n[len(LOG_NAME) + 1 :]),
        reverse=True,
    )
    return [*rotated, LOG_NAME] if LOG_NAME in names else rotated


class LogDirectory:
    """A container's logs as they are when a request arrives: its directory and every log file
    in it, held open.

    Reading then survives the container's removal: docker-py's ``containers.run`` removes a
    ``--rm`` container before it reads the log stream it asked for, and ``--rm`` removes a
    container the moment it exits. A follower finds a rotation through the directory.
    """

    def __init__(self, directory: Path) -> None:
        self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._files: list[IO[bytes]] = []
        self._current: IO[bytes] | None = None
        for name in _log_names_oldest_first(os.listdir(self.fd)):
            with contextlib.suppress(FileNotFoundError):  # rotated away meanwhile
                fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
                self._files.append(os.fdopen(fd, "rb"))
                if name == LOG_NAME:
                    self._current = self._files[-1]
        self._current_handed_out = False
        #: Where the log ended when it was opened: following from here gives only new output.
        self.end_position = LogPosition(0, 0)
        if self._current is not None:
            info = os.fstat(self._current.fileno())
            self.end_position = LogPosition(info.st_ino, info.st_size)

    def read_entries(self) -> Iterator[LogEntry]:
        """The entries stored when the directory was opened, oldest first."""
        for source in self._files:
            source.seek(0)
            # The current file may have grown since: what follows is a follower's to read.
            limit = self.end_position.offset if source is self._current else -1
            data = source.read(limit)
            for line in data.splitlines():
                entry = decode_entry(line)
                if entry is not None:
                    yield entry

    def open_log(self) -> IO[bytes] | None:
        """The current log file: first the one held since the request, then by name."""
        if self._current is not None and not self._current_handed_out:
            self._current_handed_out = True
            return self._current
        try:
            fd = os.open(LOG_NAME, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        return os.fdopen(fd, "rb")

    def log_inode(self) -> int | None:
        try:
            return os.stat(LOG_NAME, dir_fd=self.fd).st_ino
        except FileNotFoundError:
            return None

    def close(self) -> None:
        for source in self._files:
            if source is not self._current or not self._current_handed_out:
                source.close()  # a follower closes the file it was handed
        self._files = []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def follow(
    directory: LogDirectory,
    start: LogPosition,
    finished: Callable[[], bool],
    poll: float = 0.01,
    wake: Any = None,
) -> AsyncIterator[LogEntry]:
    """Yield entries written from ``start`` on, until ``finished()`` and everything is read.

    Polls with a short, growing sleep: cheap when idle, prompt when output flows. ``wake``
    (an ``asyncio.Event``) cuts a sleep short, so the end of a container is seen at once.
    Closes ``directory`` when done.
    """
    import asyncio  # here, not at the top: the supervisor imports this module and has no loop

    source: IO[bytes] | None = None
    inode = start.inode
    pending = b""
    delay = poll
    try:
        while True:
            done = finished()  # checked before reading, so output written before exit is read
            if source is None:
                source = directory.open_log()
                if source is not None:
                    current = os.fstat(source.fileno()).st_ino
                    if current == inode:
                        source.seek(start.offset)
                    inode = current
            progressed = False
            if source is not None:
                chunk = source.read(1 << 20)
                if chunk:
                    progressed = True
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        entry = decode_entry(line)
                        if entry is not None:
                            yield entry
                elif directory.log_inode() not in (None, inode):
                    source.close()  # rotated: finish with the new file
                    source, pending = None, b""
                    inode = 0
                    continue
            if progressed:
                delay = poll
                continue
            if done:
                return
            if wake is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
            delay = min(delay * 1.5, 0.1)
    finally:
        if source is not None:
            source.close()
        directory.close()
