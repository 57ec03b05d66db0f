"""An in-memory registry backend: the worked example of a dockyard plugin distribution.

It implements :class:`dockyard.core.interfaces.RegistryBackend` with a dict, which makes it fast
for tests and short enough to read as a template. Content is lost when the process exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import attrs

from dockyard.core.config import option
from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind
from dockyard.core.errors import InvalidParameter, NotFound, Unavailable
from dockyard.core.hookspecs import hookimpl
from dockyard.core.interfaces import FileInfo

CHUNK = 1 << 20


@attrs.frozen
class MemoryConfig:
    max_size: int = option(0, "most bytes held (stored and in-progress writes); 0: no limit")


@attrs.define
class _File:
    data: bytes
    modified: float


class MemoryWriter:
    """A write in progress; ``close`` parks it so ``writer(path, append=True)`` can resume it."""

    def __init__(self, backend: MemoryBackend, path: str, data: bytearray) -> None:
        self._backend = backend
        self._path = path
        self._data = data
        self._finished = False

    @property
    def size(self) -> int:
        return len(self._data)

    def write(self, data: bytes) -> None:
        if self._finished:
            raise InvalidParameter(f"write to {self._path} after commit or cancel")
        self._backend._reserve(len(data))
        self._data += data

    def close(self) -> None:
        if not self._finished:
            self._backend._park(self._path, self._data)

    def commit(self) -> None:
        self._finished = True
        self._backend._commit(self._path, bytes(self._data))

    def cancel(self) -> None:
        self._finished = True
        self._backend._discard(self._path)


class MemoryBackend:
    def __init__(self, max_size: int = 0) -> None:
        self._files: dict[str, _File] = {}
        self._parked: dict[str, bytearray] = {}
        self._max_size = max_size
        self._lock = threading.RLock()

    # -- helpers for the writer ------------------------------------------------------------

    def _held(self) -> int:
        return sum(len(f.data) for f in self._files.values()) + sum(
            len(b) for b in self._parked.values()
        )

    def _reserve(self, extra: int) -> None:
        with self._lock:
            if self._max_size and self._held() + extra > self._max_size:
                raise Unavailable(f"memory backend is full (max-size {self._max_size} bytes)")

    def _park(self, path: str, data: bytearray) -> None:
        with self._lock:
            self._parked[path] = data

    def _commit(self, path: str, data: bytes) -> None:
        with self._lock:
            self._parked.pop(path, None)
            self._files[path] = _File(data, time.time())

    def _discard(self, path: str) -> None:
        with self._lock:
            self._parked.pop(path, None)

    # -- RegistryBackend -------------------------------------------------------------------

    def _children_prefix(self, path: str) -> str:
        return path.rstrip("/") + "/"

    def stat(self, path: str) -> FileInfo:
        with self._lock:
            found = self._files.get(path)
            if found is not None:
                return FileInfo(path, len(found.data), found.modified)
            prefix = self._children_prefix(path)
            below = [f.modified for p, f in self._files.items() if p.startswith(prefix)]
            if below:
                return FileInfo(path, 0, max(below), is_dir=True)
        raise NotFound(f"{path}: not found")

    def read(self, path: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        with self._lock:
            found = self._files.get(path)
        if found is None:
            raise NotFound(f"{path}: not found")
        if offset < 0 or offset > len(found.data):
            raise InvalidParameter(f"{path}: offset {offset} outside 0..{len(found.data)}")
        end = len(found.data) if length is None else min(len(found.data), offset + length)
        return (found.data[i : min(i + CHUNK, end)] for i in range(offset, end, CHUNK))

    def writer(self, path: str, append: bool = False) -> MemoryWriter:
        with self._lock:
            if append:
                if path not in self._parked:
                    raise NotFound(f"{path}: no write in progress to resume")
                data = self._parked[path]
            else:
                self._parked.pop(path, None)
                data = bytearray()
        return MemoryWriter(self, path, data)

    def list(self, path: str) -> list[str]:
        prefix = self._children_prefix(path) if path != "/" else "/"
        with self._lock:
            children = {
                prefix + p[len(prefix) :].split("/", 1)[0]
                for p in self._files
                if p.startswith(prefix)
            }
        if not children and path != "/":
            raise NotFound(f"{path}: not found")
        return sorted(children)

    def move(self, source: str, destination: str) -> None:
        with self._lock:
            if source in self._files:
                self._files[destination] = self._files.pop(source)
                return
            prefix = self._children_prefix(source)
            moving = [p for p in self._files if p.startswith(prefix)]
            if not moving:
                raise NotFound(f"{source}: not found")
            for p in moving:
                self._files[self._children_prefix(destination) + p[len(prefix) :]] = (
                    self._files.pop(p)
                )

    def delete(self, path: str) -> None:
        with self._lock:
            if self._files.pop(path, None) is not None:
                return
            prefix = self._children_prefix(path)
            doomed = [p for p in self._files if p.startswith(prefix)]
            if not doomed:
                raise NotFound(f"{path}: not found")
            for p in doomed:
                del self._files[p]

    def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return None


def _build(config: MemoryConfig, context: DriverContext) -> MemoryBackend:
    return MemoryBackend(max_size=config.max_size)


@hookimpl
def dockyard_registry_backends() -> DriverInfo:
    return DriverInfo(
        name="memory",
        kind=DriverKind.REGISTRY_BACKEND,
        factory=_build,
        config_class=MemoryConfig,
        description="keeps everything in memory (tests, demos)",
        capabilities={"ephemeral"},
    )
