"""Container output kept in rotating files: the layout the file-based log drivers share.

A log is one current file (``container.log``) and, once it rotates, older ones beside it
(``container.log.1`` ... ``.N``, newest first; ``.N.gz`` when compressed). Entries are written
in one of two formats:

* :data:`JSON_LINES`, Docker's json-file format: one ``{"log", "stream", "time"}`` object per
  line, so existing tools read our logs. Output that is not valid UTF-8 also carries ``"raw"``
  (base64): ``attach`` reads the same file and must pass bytes through exactly.
* :data:`FRAMED`, our own binary records for the ``local`` driver: a 13-byte header (length,
  stream, time) before the bytes and the length again after them. No JSON and no base64 on the
  write path, and the trailing length lets a writer find a torn last record in O(1).

The core keeps this layout (as it keeps the registry's path layout) so that each log driver is
a thin adapter and the daemon's readers (``logs``, ``attach``, ``build``) are the same for all.
The writer runs in the container's supervisor, which imports this module on every container
start: standard library only, and ``gzip``/``threading`` are imported only when compressing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import json.encoder
import os
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol, TypeVar

from dockyard.core.errors import InvalidParameter
from dockyard.core.interfaces import LogEntry
from dockyard.core.timestamps import parse_rfc3339_nano, rfc3339_nano

#: Owner and group only, as dockerd's json-file logs: a container's output is its own business.
LOG_MODE = 0o640
#: The current file's name for every driver (each keeps its files in a directory of its own).
LOG_NAME = "container.log"
COMPRESSED_SUFFIX = ".gz"


class LogFormat(Protocol):
    """How entries become bytes in a log file, and back."""

    def encode(self, stream: str, data: bytes, time_ns: int) -> bytes: ...

    def decode(self, buffer: bytes) -> tuple[list[LogEntry], int]:
        """The whole entries at the start of ``buffer`` and how many bytes they took; what
        follows them is an entry still being written (or a torn one)."""
        ...

    def ends_whole(self, source: IO[bytes], size: int) -> bool:
        """Whether the first ``size`` bytes of ``source`` end with a whole entry (a reader
        starting to follow there is between two entries). Moves the file position."""
        ...


def ends_a_line(source: IO[bytes], size: int) -> bool:
    """:meth:`LogFormat.ends_whole` for a format of one entry per line."""
    if size == 0:
        return True
    source.seek(size - 1)
    return source.read(1) == b"\n"


class _JsonLines:
    def __init__(self) -> None:
        # The lines of one read share its time: format it once (strftime is most of the cost).
        self._time_ns = -1
        self._time_text = ""

    def encode(self, stream: str, data: bytes, time_ns: int) -> bytes:
        if time_ns != self._time_ns:
            self._time_ns, self._time_text = time_ns, rfc3339_nano(time_ns)
        raw = ""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("utf-8", "replace")
            raw = f',"raw":"{base64.b64encode(data).decode()}"'
        # What json.dumps(..., separators=(",", ":")) gives, without building a dict per line.
        return (
            f'{{"log":{_json_string(text)},"stream":"{stream}","time":"{self._time_text}"{raw}}}\n'
        ).encode()

    def decode(self, buffer: bytes) -> tuple[list[LogEntry], int]:
        end = buffer.rfind(b"\n") + 1
        entries = []
        for line in buffer[:end].splitlines():
            entry = self.decode_line(line)
            if entry is not None:
                entries.append(entry)
        return entries, end

    def ends_whole(self, source: IO[bytes], size: int) -> bool:
        return ends_a_line(source, size)

    @staticmethod
    def decode_line(line: bytes) -> LogEntry | None:
        try:
            record = json.loads(line)
            raw = record.get("raw")
            data = base64.b64decode(raw) if raw else record["log"].encode()
            return LogEntry(record["stream"], data, parse_rfc3339_nano(record["time"]))
        except (ValueError, KeyError, TypeError):
            return None  # a torn last line of a killed writer, or foreign junk


_json_string = json.encoder.encode_basestring_ascii

_HEADER = struct.Struct(">IBq")  # data length, stream (1 stdout, 2 stderr), time in ns
_TRAILER = struct.Struct(">I")  # the data length again
_STREAM_CODES = {"stdout": 1, "stderr": 2}
_STREAM_NAMES = {1: "stdout", 2: "stderr"}


class _Framed:
    def encode(self, stream: str, data: bytes, time_ns: int) -> bytes:
        return (
            _HEADER.pack(len(data), _STREAM_CODES[stream], time_ns)
            + data
            + _TRAILER.pack(len(data))
        )

    def decode(self, buffer: bytes) -> tuple[list[LogEntry], int]:
        entries = []
        offset = 0
        overhead = _HEADER.size + _TRAILER.size
        while len(buffer) - offset >= overhead:
            length, code, time_ns = _HEADER.unpack_from(buffer, offset)
            end = offset + _HEADER.size + length + _TRAILER.size
            if end > len(buffer):
                break
            data = buffer[offset + _HEADER.size : end - _TRAILER.size]
            entries.append(LogEntry(_STREAM_NAMES.get(code, "stdout"), data, time_ns))
            offset = end
        return entries, offset

    def ends_whole(self, source: IO[bytes], size: int) -> bool:
        # Two reads whatever the size: the trailing length, then the header it points to.
        if size == 0:
            return True
        if size < _HEADER.size + _TRAILER.size:
            return False
        source.seek(size - _TRAILER.size)
        (length,) = _TRAILER.unpack(source.read(_TRAILER.size))
        start = size - _TRAILER.size - length - _HEADER.size
        if start < 0:
            return False
        source.seek(start)
        return _HEADER.unpack(source.read(_HEADER.size))[0] == length


JSON_LINES: LogFormat = _JsonLines()
FRAMED: LogFormat = _Framed()


# --------------------------------------------------------------------------------------------
# writing (in the supervisor)
# --------------------------------------------------------------------------------------------


def open_private(path: Path, mode: int = LOG_MODE) -> IO[bytes]:
    """``path`` for appending, created or not, with exactly ``mode`` (the umask and an
    earlier version's mode notwithstanding)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")


class Rotation(NamedTuple):
    """When a log rotates and what it keeps: a driver's options, read."""

    max_size: int  # bytes; 0: the file never rotates
    max_files: int
    compress: bool


def rotated_name(index: int, compressed: bool) -> str:
    return f"{LOG_NAME}.{index}{COMPRESSED_SUFFIX if compressed else ''}"


class RotatingLog:
    """Appends entries to ``directory/container.log``, one per line of output, rotating by size.

    ``max_size`` 0 never rotates. At ``max_size`` the current file becomes ``.1`` (older ones
    move up, the oldest past ``max_files`` goes); with ``max_files`` 1 it is emptied instead,
    as dockerd's. ``compress`` gzips each rotated file in a thread of its own, so the output of
    the container is not held up meanwhile; the next rotation waits for it.
    """

    def __init__(
        self,
        directory: Path,
        log_format: LogFormat,
        max_size: int = 0,
        max_files: int = 1,
        compress: bool = False,
    ) -> None:
        directory.mkdir(mode=0o700, exist_ok=True)
        self.path = directory / LOG_NAME
        self.format = log_format
        self.max_size = max_size
        self.max_files = max(1, max_files)
        self.compress = compress and self.max_files > 1
        self._compressing: Any = None  # the thread gzipping the last rotated file
        self._out = open_private(self.path)
        self._size = self._out.tell()
        with open(self.path, "rb") as existing:
            torn = not log_format.ends_whole(existing, self._size)
        if torn and log_format is JSON_LINES:
            self._append([b"\n"])  # end the torn line: readers skip it as junk
            self._size += 1
        elif torn:
            # A killed writer's torn entry: nothing after it could be read back (a format
            # like FRAMED has no point to resync at), so start a new file after it.
            self._rotate()

    def write(self, stream: str, data: bytes) -> None:
        now = time.time_ns()
        encode = self.format.encode
        records: list[bytes] = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end + 1
            record = encode(stream, data[start:end], now)
            if self.max_size and self._size + len(record) > self.max_size and self._size:
                self._append(records)
                records = []
                self._rotate()
            records.append(record)
            self._size += len(record)
            start = end
        self._append(records)

    def _append(self, records: list[bytes]) -> None:
        # One write(2) for the lot: a reader never finds a file ending inside an entry, except
        # for the instant of the write itself (LogFiles waits that out).
        if records:
            self._out.write(b"".join(records))
            self._out.flush()

    def _rotate(self) -> None:
        self._out.close()
        if self.max_files == 1:
            os.truncate(self.path, 0)
        else:
            self._wait_for_compression()
            for index in range(self.max_files - 1, 1, -1):
                older = self.path.with_name(rotated_name(index - 1, self.compress))
                if older.exists():
                    os.replace(older, self.path.with_name(rotated_name(index, self.compress)))
            plain = self.path.with_name(rotated_name(1, False))
            os.replace(self.path, plain)
            if self.compress:
                self._start_compression(plain)
        self._out = open_private(self.path)
        self._size = 0

    def _start_compression(self, plain: Path) -> None:
        import threading

        self._compressing = threading.Thread(target=_compress, args=(plain,), daemon=True)
        self._compressing.start()

    def _wait_for_compression(self) -> None:
        if self._compressing is not None:
            self._compressing.join()
            self._compressing = None

    def close(self) -> None:
        self._out.close()
        self._wait_for_compression()


def _compress(plain: Path) -> None:
    """``container.log.1`` into ``container.log.1.gz``: whole or not at all, then the original
    goes (a reader that finds both reads the plain one)."""
    import gzip
    import shutil

    target = plain.with_name(plain.name + COMPRESSED_SUFFIX)
    temporary = plain.with_name(f".{target.name}.tmp")
    with open(plain, "rb") as source, open_private(temporary) as raw:
        raw.truncate(0)
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as packed:
            shutil.copyfileobj(source, packed, 1 << 20)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(temporary, target)
    plain.unlink()


# --------------------------------------------------------------------------------------------
# reading (in the daemon)
# --------------------------------------------------------------------------------------------


class LogPosition(NamedTuple):
    inode: int
    offset: int


def _rotated_index(name: str) -> tuple[int, bool] | None:
    """``container.log.3`` -> (3, False); ``container.log.3.gz`` -> (3, True); others None."""
    if not name.startswith(f"{LOG_NAME}."):
        return None
    rest = name[len(LOG_NAME) + 1 :]
    compressed = rest.endswith(COMPRESSED_SUFFIX)
    if compressed:
        rest = rest[: -len(COMPRESSED_SUFFIX)]
    return (int(rest), compressed) if rest.isdigit() else None


def log_names_oldest_first(names: list[str]) -> list[str]:
    """The log files among ``names``, oldest first; of a ``.N`` and a ``.N.gz`` (a compression
    under way), the plain one."""
    rotated: dict[int, str] = {}
    for name in names:
        found = _rotated_index(name)
        if found is not None and (found[0] not in rotated or not found[1]):
            rotated[found[0]] = name
    ordered = [rotated[index] for index in sorted(rotated, reverse=True)]
    return [*ordered, LOG_NAME] if LOG_NAME in names else ordered


class LogFiles:
    """A log as it is when a request arrives: its directory and every file in it, held open.

    Reading then survives the container's removal: docker-py's ``containers.run`` removes a
    ``--rm`` container before it reads the log stream it asked for, and ``--rm`` removes a
    container the moment it exits. A follower finds a rotation through the directory. A
    directory that does not exist (yet: ``docker run`` attaches before the first start) reads as
    empty; a follower waits for it.
    """

    def __init__(self, directory: Path, log_format: LogFormat) -> None:
        self.directory = directory
        self.format = log_format
        self.fd = -1
        self._files: list[IO[bytes]] = []
        self._compressed: list[IO[bytes]] = []
        self._current: IO[bytes] | None = None
        self._current_handed_out = False
        #: Where the log ended when it was opened: following from here gives only new output.
        self.end_position = LogPosition(0, 0)
        with contextlib.suppress(FileNotFoundError):
            self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if self.fd < 0:
            return
        for name in log_names_oldest_first(os.listdir(self.fd)):
            with contextlib.suppress(FileNotFoundError):  # rotated away meanwhile
                fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
                self._files.append(os.fdopen(fd, "rb"))
                if name.endswith(COMPRESSED_SUFFIX):
                    self._compressed.append(self._files[-1])
                if name == LOG_NAME:
                    self._current = self._files[-1]
        if self._current is not None:
            info = os.fstat(self._current.fileno())
            self.end_position = LogPosition(info.st_ino, self._whole_size(self._current))

    def _whole_size(self, source: IO[bytes]) -> int:
        """The size of ``source`` up to its last whole entry, waiting out (briefly) an entry
        being written this instant: a follower must start between two entries."""
        deadline = time.monotonic() + 0.2
        while True:
            info = os.fstat(source.fileno())
            if self.format.ends_whole(source, info.st_size):
                return info.st_size
            if time.monotonic() > deadline or time.time() - info.st_mtime > 1:
                # A torn entry of a killed writer (the next writer starts after it): no wait.
                return info.st_size
            time.sleep(0.002)

    def entries(self) -> Iterator[LogEntry]:
        """The entries stored when the log was opened, oldest first."""
        for source in self._files:
            source.seek(0)
            if source is self._current:
                # The current file may have grown since: what follows is a follower's to read.
                data = source.read(self.end_position.offset)
            elif source in self._compressed:
                import gzip

                data = gzip.GzipFile(fileobj=source, mode="rb").read()
            else:
                data = source.read()
            yield from self.format.decode(data)[0]

    def _open_current(self) -> IO[bytes] | None:
        """The current log file: first the one held since the request, then by name."""
        if self._current is not None and not self._current_handed_out:
            self._current_handed_out = True
            return self._current
        if self.fd < 0:
            with contextlib.suppress(FileNotFoundError):
                self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            if self.fd < 0:
                return None
        try:
            fd = os.open(LOG_NAME, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        return os.fdopen(fd, "rb")

    def _current_inode(self) -> int | None:
        try:
            return os.stat(LOG_NAME, dir_fd=self.fd).st_ino
        except FileNotFoundError:
            return None

    async def follow(
        self, finished: Callable[[], bool], wake: Any = None, poll: float = 0.01
    ) -> AsyncIterator[LogEntry]:
        """Yield entries written after :attr:`end_position`, until ``finished()`` and everything
        is read.

        Polls with a short, growing sleep: cheap when idle, prompt when output flows. ``wake``
        (an ``asyncio.Event``) cuts a sleep short, so the end of a container is seen at once.
        Closes the log when done.
        """
        import asyncio  # here, not at the top: the supervisor imports this module

        source: IO[bytes] | None = None
        inode, offset = self.end_position
        pending = b""
        delay = poll
        try:
            while True:
                done = finished()  # checked before reading: output written before exit is read
                if source is None:
                    source = self._open_current()
                    if source is not None:
                        current = os.fstat(source.fileno()).st_ino
                        if current == inode:
                            source.seek(offset)
                        inode = current
                progressed = False
                if source is not None:
                    chunk = source.read(1 << 20)
                    if chunk:
                        progressed = True
                        pending += chunk
                        entries, used = self.format.decode(pending)
                        pending = pending[used:]
                        for entry in entries:
                            yield entry
                    elif self._current_inode() not in (None, inode):
                        source.close()  # rotated: finish with the new file
                        source, pending = None, b""
                        inode = 0
                        continue
                    elif source.tell() > os.fstat(source.fileno()).st_size:
                        source.seek(0)  # emptied in place (max-file 1): read it anew
                        pending = b""
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
            self.close()

    def close(self) -> None:
        for source in self._files:
            if source is not self._current or not self._current_handed_out:
                source.close()  # a follower closes the file it was handed
        self._files, self._compressed = [], []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --------------------------------------------------------------------------------------------
# option values, read as dockerd reads them (Go's strconv), with its messages
# --------------------------------------------------------------------------------------------

#: dockerd's words for a ``compress`` that is not a boolean (json-file and local alike).
COMPRESS_ERROR = "error reading compress log option"
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def go_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``; ``ValueError`` with Go's message otherwise."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def go_int(text: str) -> int:
    """Go's ``strconv.Atoi``; ``ValueError`` with Go's message otherwise."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


T = TypeVar("T")


def read_option(
    options: Mapping[str, str], key: str, parse: Callable[[str], T], default: T, prefix: str = ""
) -> T:
    """``options[key]`` through ``parse``, else ``default``; a value ``parse`` refuses (with a
    ``ValueError``) is an ``InvalidParameter``: ``"<prefix>: <why>"``, or by default dockerd's
    ``"invalid value for <key>: <value>: <why>"``."""
    if key not in options:
        return default
    text = options[key]
    try:
        return parse(text)
    except ValueError as exc:
        reason = f"{prefix}: {exc}" if prefix else f"invalid value for {key}: {text}: {exc}"
        raise InvalidParameter(reason) from None
