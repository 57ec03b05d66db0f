"""Registry backend ``filesystem``: paths are files under a root directory.

Every write goes to a private temporary file beside its destination and becomes visible by
``rename(2)`` after ``fsync``, with the directory synced too, so a registry killed at any moment
(SIGKILL included) restarts with each path either complete or absent. A write that is closed
without being committed is kept as ``.<name>.partial`` next to the path, where ``append=True``
finds it again; listings never show those hidden files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, ParamSpec, TypeVar

import attrs

from dockyard.core.config import option
from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind
from dockyard.core.durable import sync_directory
from dockyard.core.errors import InvalidParameter, NotFound
from dockyard.core.hookspecs import hookimpl
from dockyard.core.interfaces import FileInfo

READ_CHUNK = 4 * 1024 * 1024
_PARTIAL_SUFFIX = ".partial"
_TEMP_SUFFIX = ".tmp"

#: The methods' return type where ``list`` names the method of that name.
_Lines = list[str]

P = ParamSpec("P")
R = TypeVar("R")


@attrs.frozen
class FilesystemConfig:
    root: str = option("", "directory holding the registry's data; empty: <state dir>")


def _hidden(name: str) -> bool:
    return name.startswith(".")


class FilesystemWriter:
    """A write to a temporary file, made visible by rename on commit."""

    def __init__(self, root: Path, target: Path, file_path: Path, size: int) -> None:
        self._root = root
        self._target = target
        self._path = file_path
        self._file = _open_creating_parents(file_path)
        # Held while the file is open: gc's sweep leaves a temporary file alone while anyone
        # (in any process) writes it, however long since its last byte (see sweep()).
        fcntl.flock(self._file.fileno(), fcntl.LOCK_SH)
        self._size = size
        self._done = False

    @property
    def size(self) -> int:
        return self._size

    def _check_open(self) -> None:
        if self._done:
            raise ValueError("writer already finished")

    def write(self, data: bytes) -> None:
        self._check_open()
        self._file.write(data)
        self._size += len(data)

    def close(self) -> None:
        if self._done:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._done = True
        partial = _partial_path(self._target)
        if self._path != partial:
            os.replace(self._path, partial)
        sync_directory(self._target.parent)

    def commit(self) -> None:
        self._check_open()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._done = True
        os.replace(self._path, self._target)
        sync_directory(self._target.parent)

    def cancel(self) -> None:
        if not self._done:
            self._file.close()
            self._done = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_partial_path(self._target))
        _remove_empty_parents(self._target.parent, self._root)


def _make_dirs(directory: Path) -> None:
    """``mkdir -p`` whose new entries survive a crash: each new directory's parent is synced.

    A concurrent delete may remove a fresh, still empty directory at any point: start over.
    """
    for _ in range(10):
        missing = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            current = current.parent
        try:
            for new in reversed(missing):
                with contextlib.suppress(FileExistsError):
                    new.mkdir()
                sync_directory(new.parent)
            return
        except FileNotFoundError:
            continue
    raise OSError(errno.ENOENT, "directory keeps vanishing", str(directory))


def _open_creating_parents(file_path: Path) -> BinaryIO:
    # A concurrent delete may remove the (empty) directory between mkdir and open: retry.
    for _ in range(10):
        _make_dirs(file_path.parent)
        try:
            return open(file_path, "ab")
        except FileNotFoundError:
            continue
    raise OSError(errno.ENOENT, "directory keeps vanishing", str(file_path))


def _being_written(path: Path) -> bool:
    """Whether a writer holds ``path`` open (its shared flock): a write may pause for long
    (a client between two chunks, bytes gathered before they are written) and still be live."""
    if path.is_dir():
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _partial_path(target: Path) -> Path:
    return target.with_name(f".{target.name}{_PARTIAL_SUFFIX}")


def _remove_empty_parents(directory: Path, root: Path) -> None:
    """Remove now-empty directories up to the backend root, so nothing is left behind."""
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def _refuse_long_paths(method: Callable[P, R]) -> Callable[P, R]:
    """Turn ENAMETOOLONG into :class:`InvalidParameter`: the path (a client's long repository
    name or tag under a deep root) is what is wrong, not the registry."""

    @functools.wraps(method)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            path = next((a for a in args if isinstance(a, str)), "")
            raise InvalidParameter(
                f"registry path too long for the filesystem: {path[:200]}..."
            ) from None

    return checked


class FilesystemBackend:
    """A :class:`~dockyard.core.interfaces.RegistryBackend` over a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.root.mkdir(parents=True, exist_ok=True)

    def _local(self, path: str) -> Path:
        if not path.startswith("/"):
            raise InvalidParameter(f"registry path must be absolute: {path!r}")
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise InvalidParameter(f"registry path must not contain '.' or '..': {path!r}")
        return self.root.joinpath(*parts)

    def _path_of(self, local: Path) -> str:
        return "/" + local.relative_to(self.root).as_posix()

    @_refuse_long_paths
    def stat(self, path: str) -> FileInfo:
        local = self._local(path)
        try:
            st = os.stat(local)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{path} not found") from None
        if os.path.isdir(local):
            return FileInfo(path=path, size=0, modified=st.st_mtime, is_dir=True)
        return FileInfo(path=path, size=st.st_size, modified=st.st_mtime)

    @_refuse_long_paths
    def read(self, path: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        local = self._local(path)
        try:
            handle = open(local, "rb")  # noqa: SIM115 - closed by the generator
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"{path} not found") from None
        return self._read(handle, offset, length)

    @staticmethod
    def _read(handle: object, offset: int, length: int | None) -> Iterator[bytes]:
        with handle as file:  # type: ignore[attr-defined]
            file.seek(offset)
            remaining = length
            while remaining is None or remaining > 0:
                size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = file.read(size)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    @_refuse_long_paths
    def writer(self, path: str, append: bool = False) -> FilesystemWriter:
        target = self._local(path)
        partial = _partial_path(target)
        if append:
            try:
                size = os.stat(partial).st_size
            except FileNotFoundError:
                raise NotFound(f"no resumable write of {path}") from None
            return FilesystemWriter(self.root, target, partial, size)
        # A private name per write: concurrent writers of one path never mix their bytes.
        temp = target.with_name(f".{target.name}.{secrets.token_hex(8)}{_TEMP_SUFFIX}")
        return FilesystemWriter(self.root, target, temp, 0)

    @_refuse_long_paths
    def list(self, path: str) -> list[str]:
        local = self._local(path)
        try:
            names = os.listdir(local)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{path} not found") from None
        prefix = path.rstrip("/")
        return [f"{prefix}/{name}" for name in sorted(names) if not _hidden(name)]

    @_refuse_long_paths
    def move(self, source: str, destination: str) -> None:
        src, dst = self._local(source), self._local(destination)
        try:
            for _ in range(10):
                _make_dirs(dst.parent)
                try:
                    os.replace(src, dst)
                    break
                except FileNotFoundError:
                    if not src.exists():
                        raise NotFound(f"{source} not found") from None
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EISDIR, errno.EEXIST):
                raise
            shutil.rmtree(dst)
            os.replace(src, dst)
        sync_directory(dst.parent)
        _remove_empty_parents(src.parent, self.root)

    @_refuse_long_paths
    def delete(self, path: str) -> None:
        local = self._local(path)
        if local == self.root:
            for child in list(self.root.iterdir()):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            return
        try:
            if local.is_dir() and not local.is_symlink():
                # Rename first: the directory vanishes at once, however big it is.
                doomed = local.with_name(f".{local.name}.{secrets.token_hex(8)}.deleting")
                os.rename(local, doomed)
                shutil.rmtree(doomed)
            else:
                os.unlink(local)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{path} not found") from None
        _remove_empty_parents(local.parent, self.root)

    def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return None

    # ------------------------------------------------------------------ RegistryHousekeeping

    @_refuse_long_paths
    def create_exclusive(self, path: str, data: bytes) -> bytes | None:
        target = self._local(path)
        temp = target.with_name(f".{target.name}.{secrets.token_hex(8)}{_TEMP_SUFFIX}")
        with _open_creating_parents(temp) as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            # link(2) fails if the name exists: the create and the check are one step.
            os.link(temp, target)
        except FileExistsError:
            try:
                return target.read_bytes()
            except FileNotFoundError:  # released meanwhile: try again
                return self.create_exclusive(path, data)
        finally:
            os.unlink(temp)
        sync_directory(target.parent)
        return None

    def sweep(self, older_than: float, dry_run: bool = False) -> _Lines:
        """Temporary files of writes a crash interrupted (``.<name>.<random>.tmp``), trees a
        crash left half deleted (``.<name>.<random>.deleting``), then empty directories.

        ``.partial`` files are not touched: they are resumable uploads, whose sessions gc
        expires. An empty directory is removed only if not changed since ``older_than``, and
        with rmdir(2), which fails if a push just put something in it; a push that finds its
        directory gone makes it again (:func:`_make_dirs`)."""
        # Directories' times as they were before this sweep emptied any of them (removing a
        # child touches its parent), listed parents first and walked children first.
        walk = []
        for directory, dirnames, filenames in os.walk(self.root):
            with contextlib.suppress(OSError):
                walk.append((Path(directory), list(dirnames), filenames, os.stat(directory)))
            dirnames[:] = [d for d in dirnames if not _hidden(d)]
        swept = []
        emptied: set[Path] = set()
        for here, dirnames, filenames, st in reversed(walk):
            for name in filenames + dirnames:
                if not (_hidden(name) and name.endswith((_TEMP_SUFFIX, ".deleting"))):
                    continue
                leftover = here / name
                with contextlib.suppress(FileNotFoundError):
                    if os.lstat(leftover).st_mtime >= older_than or _being_written(leftover):
                        continue
                    swept.append(f"temporary {self._path_of(leftover)}")
                    if dry_run:
                        emptied.add(leftover)
                        continue
                    if leftover.is_dir() and not leftover.is_symlink():
                        shutil.rmtree(leftover, ignore_errors=True)
                    else:
                        leftover.unlink()
            if here == self.root or st.st_mtime >= older_than:
                continue
            with contextlib.suppress(OSError):
                if dry_run:
                    if all(here / name in emptied for name in os.listdir(here)):
                        emptied.add(here)
                        swept.append(f"empty directory {self._path_of(here)}")
                    continue
                here.rmdir()  # fails unless empty
                swept.append(f"empty directory {self._path_of(here)}")
        return swept


def build(config: FilesystemConfig, context: DriverContext) -> FilesystemBackend:
    return FilesystemBackend(Path(config.root) if config.root else context.state_dir)


CAPABILITIES: frozenset[str] = frozenset({"resumable"})


@hookimpl
def dockyard_registry_backends() -> DriverInfo:
    return DriverInfo(
        name="filesystem",
        kind=DriverKind.REGISTRY_BACKEND,
        factory=build,
        config_class=FilesystemConfig,
        description="registry content in a local directory (atomic renames, fsync)",
        capabilities=CAPABILITIES,
        priority=10,
    )
