"""A container's filesystem seen from the daemon: what ``docker cp`` and ``docker export`` read.

Two ways in, never mounting a snapshot twice (see :mod:`dockyard.linux.inroot`):

* a running (or paused) container is read through ``/proc/PID/root`` of its init process: its
  own mount namespace, volumes and bind mounts included. The kernel's own mounts there
  (``/proc``, ``/sys``, ``/dev``…) are listed but never descended into;
* a stopped one has its snapshot mounted under its state directory for the duration, with
  (for ``cp``) its volumes and bind mounts bound at their destinations, as dockerd mounts them
  for a stopped container's ``cp``; ``export`` shows the root filesystem alone, as dockerd's does.

Every path is resolved with openat2's ``RESOLVE_IN_ROOT`` (``..`` and absolute symlinks stay in
the container) and trees are walked by directory descriptor, never by host path, so neither a
path nor a symlink in the container can make the daemon read a host file.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import secrets
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

import attrs

from dockyard.core.errors import InvalidParameter, NotFound
from dockyard.core.interfaces import IdMapping
from dockyard.core.timestamps import rfc3339_nano
from dockyard.daemon.containers.model import Container
from dockyard.linux import inroot
from dockyard.linux.layertar import DiffWriter, proc_fd_path
from dockyard.linux.mounts import (
    ensure_mountpoint,
    mount_all,
    remount_read_only,
    resolve_in_root,
    unescape_mountinfo,
    unmount_all,
)
from dockyard.linux.syscalls import MS_BIND, MS_PRIVATE, MS_REC, mount

# Go's os.FileMode type bits: X-Docker-Container-Path-Stat carries a Go mode, not st_mode.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20

#: The mode of the empty file standing in for a file mount point (dockerd's init layer's).
MOUNT_POINT_FILE_MODE = 0o755

#: The size of the pieces a tar stream is handed to the HTTP layer in (each costs a thread hop:
#: 256 KiB pieces made cp-out of 100 MB ~20% faster than 64 KiB ones).
STREAM_CHUNK = 256 << 10


def go_file_mode(st_mode: int) -> int:
    """``st_mode`` as Go's ``os.FileMode`` (type bits at the top, permission bits kept)."""
    mode = stat.S_IMODE(st_mode) & 0o777
    kind = stat.S_IFMT(st_mode)
    if kind == stat.S_IFDIR:
        mode |= GO_MODE_DIR
    elif kind == stat.S_IFLNK:
        mode |= GO_MODE_SYMLINK
    elif kind == stat.S_IFBLK:
        mode |= GO_MODE_DEVICE
    elif kind == stat.S_IFCHR:
        mode |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE
    elif kind == stat.S_IFIFO:
        mode |= GO_MODE_NAMED_PIPE
    elif kind == stat.S_IFSOCK:
        mode |= GO_MODE_SOCKET
    if st_mode & stat.S_ISUID:
        mode |= GO_MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= GO_MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= GO_MODE_STICKY
    return mode


@attrs.frozen
class PathStat:
    """What ``X-Docker-Container-Path-Stat`` says about a path in a container."""

    name: str
    size: int
    mode: int
    mtime: str
    link_target: str

    def header(self) -> str:
        document = {
            "name": self.name,
            "size": self.size,
            "mode": self.mode,
            "mtime": self.mtime,
            "linkTarget": self.link_target,
        }
        return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


@attrs.frozen
class IdShift:
    """Translates ids as the daemon sees them through a user-namespaced container's idmapped
    root (host ids) into the container's ids, and back."""

    uid_mappings: tuple[IdMapping, ...]
    gid_mappings: tuple[IdMapping, ...]

    def to_container(self, uid: int, gid: int) -> tuple[int, int]:
        return _map(uid, self.uid_mappings, True), _map(gid, self.gid_mappings, True)

    def to_host(self, uid: int, gid: int) -> tuple[int, int]:
        return _map(uid, self.uid_mappings, False), _map(gid, self.gid_mappings, False)


#: The id an unmapped id shows as (the kernel's overflow id).
OVERFLOW_ID = 65534


def _map(value: int, mappings: Sequence[IdMapping], to_container: bool) -> int:
    for mapping in mappings:
        start, target = (
            (mapping.host_id, mapping.container_id)
            if to_container
            else (mapping.container_id, mapping.host_id)
        )
        if start <= value < start + mapping.size:
            return target + value - start
    return OVERFLOW_ID


@attrs.frozen
class RootView:
    """A container's ``/`` as a host directory, for as long as its context lasts.

    ``opaque_mounts`` are container paths of mount points not to descend into (the kernel's
    filesystems of a running container, or every mount for ``export``). ``ids`` is set when
    the ids seen here are host ids that must be shown (and written) as the container's.
    """

    path: str
    opaque_mounts: frozenset[str] = frozenset()
    ids: IdShift | None = None


def _mount_points(pid: int) -> list[str]:
    """The mount points of process ``pid``'s mount namespace, as paths inside its root."""
    points = []
    with open(f"/proc/{pid}/mountinfo") as listing:
        for line in listing:
            fields = line.split(" ")
            points.append(unescape_mountinfo(fields[4]))
    return points


@contextlib.contextmanager
def running_root(container: Container, with_volumes: bool) -> Iterator[RootView]:
    """A running container's ``/`` through ``/proc/PID/root``; its volumes and bind mounts
    (and ``/etc/hosts``…) are listed when ``with_volumes``, every other mount is opaque."""
    pid = container.state.pid
    path = f"/proc/{pid}/root"
    try:
        points = _mount_points(pid)
    except OSError:
        raise NotFound(f"Container {container.id} is not running") from None
    shown = {"/"}
    if with_volumes:
        shown |= {mount.destination.rstrip("/") or "/" for mount in container.spec.mounts}
        shown |= {destination for _source, destination in container.spec.etc_files}
    ids = None
    if container.spec.uid_mappings:
        ids = IdShift(container.spec.uid_mappings, container.spec.gid_mappings)
    yield RootView(path, frozenset(point for point in points if point not in shown), ids)


@contextlib.contextmanager
def stopped_root(
    container: Container,
    rootfs: Sequence[object],
    state_dir: str,
    with_volumes: bool,
) -> Iterator[RootView]:
    """A stopped container's snapshot mounted under ``state_dir`` (the caller holds the
    container's lock, so it cannot start meanwhile), with its volumes and bind mounts bound
    in when ``with_volumes``."""
    target = os.path.join(state_dir, f"fs-{secrets.token_hex(4)}")
    os.mkdir(target, 0o700)
    bound: list[str] = []
    try:
        mount_all(rootfs, target)  # type: ignore[arg-type]
        try:
            if with_volumes:
                for volume in container.spec.mounts:
                    destination = resolve_in_root(target, volume.destination)
                    ensure_mountpoint(destination, os.path.isdir(volume.source))
                    recursive = MS_REC if volume.recursive else 0
                    mount(volume.source, destination, None, MS_BIND | recursive)
                    bound.append(destination)
                    # Private, as dockerd makes these: a bind of a shared mount is its peer,
                    # and unmounting what lies below it here would unmount it on the host.
                    mount(None, destination, None, MS_PRIVATE | MS_REC)
                    if volume.read_only:
                        remount_read_only(destination, recursive=True)
            yield RootView(target)
        finally:
            for destination in reversed(bound):
                unmount_all(destination)
            unmount_all(target)
    finally:
        os.rmdir(target)


# --------------------------------------------------------------------------------------------
# Resolving a path as docker cp does
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Located:
    """A path found in a container: its parent directory (an ``O_PATH`` descriptor), its
    name there, its lstat, and how docker names and reports it."""

    parent_fd: int
    name: str
    info: os.stat_result
    stat: PathStat
    #: The name its archive entries start with (``.`` for ``dir/.``).
    archive_name: str

    def close(self) -> None:
        os.close(self.parent_fd)


def clean_container_path(path: str) -> str:
    """The path as docker takes it: ``400`` when empty, relative paths taken from ``/``."""
    if not path:
        raise InvalidParameter("bad parameter: pathcannot be empty")
    return path if path.startswith("/") else "/" + path


def locate(view: RootView, path: str, container_name: str) -> Located:
    """Find ``path`` in the container by docker's rules: a last component that is a symlink
    is not followed unless the path ends in ``/`` or ``/.``; ``/`` requires a directory;
    ``/.`` means the directory's contents. ``NotFound`` with docker's message otherwise."""
    missing = NotFound(f"Could not find the file {path} in container {container_name}")
    contents = path.endswith("/.") or path == "."
    follow = contents or path.endswith("/")
    trimmed = path.rstrip("/")
    if contents:
        trimmed = trimmed[:-1].rstrip("/")
    parent, _, name = trimmed.rpartition("/")
    if follow and name:
        # Resolve the symlink the last component may be, then split what it names.
        resolved = _resolved_path(view, trimmed or "/")
        if resolved is None:
            raise missing
        parent, _, name = resolved.rpartition("/")
    try:
        parent_fd = inroot.open_in_root(view.path, parent or "/", os.O_PATH | os.O_DIRECTORY)
    except FileNotFoundError:
        raise missing from None
    try:
        if name:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        else:
            info = os.stat(parent_fd)
            name = "."
    except (FileNotFoundError, NotADirectoryError):
        os.close(parent_fd)
        raise missing from None
    if follow and not stat.S_ISDIR(info.st_mode):
        os.close(parent_fd)
        raise InvalidParameter(f"not a directory: {path}")
    link_target = ""
    if stat.S_ISLNK(info.st_mode):
        link_target = _resolved_path(view, trimmed) or ""
    shown_name = "." if contents else (trimmed.rpartition("/")[2] or "/")
    size = info.st_size
    path_stat = PathStat(
        name=shown_name,
        size=size,
        mode=go_file_mode(info.st_mode),
        mtime=rfc3339_nano(info.st_mtime_ns),
        link_target=link_target,
    )
    archive_name = "." if contents else (trimmed.rpartition("/")[2] or ".")
    return Located(parent_fd, name, info, path_stat, archive_name)


def _resolved_path(view: RootView, path: str) -> str | None:
    """``path`` with every symlink resolved inside the container, or ``None`` if missing."""
    try:
        fd = inroot.open_in_root(view.path, path, os.O_PATH)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        host = os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    root = os.path.realpath(view.path)
    if host == root:
        return "/"
    if root != "/" and host.startswith(root + "/"):
        return host[len(root) :]
    # Through /proc/PID/root the kernel names the file as the container's namespace sees it.
    return host


# --------------------------------------------------------------------------------------------
# Writing trees as tar
# --------------------------------------------------------------------------------------------


class TarTree:
    """Writes files of a container into a tar, walking by directory descriptor."""

    def __init__(self, out: BinaryIO, view: RootView) -> None:
        self.view = view
        shift = view.ids.to_container if view.ids is not None else None
        self.writer = DiffWriter(out, id_map=shift, type_bits_in_mode=True)

    def close(self) -> None:
        self.writer.close()

    def add(self, parent_fd: int, name: str, archive_name: str, container_path: str) -> None:
        """Add ``name`` in ``parent_fd`` as ``archive_name``, and what is below it."""
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        opaque = self._opaque(container_path)
        if opaque and not stat.S_ISDIR(info.st_mode):
            # A file mounted over (``/etc/hosts``...): what lies beneath cannot be seen; an
            # empty file stands in, as dockerd's init layer has there.
            self.writer.add_empty_file(archive_name, MOUNT_POINT_FILE_MODE)
            return
        self.writer.add(archive_name, proc_fd_path(parent_fd, name), info)
        if stat.S_ISDIR(info.st_mode) and not opaque:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
            try:
                self._add_children(fd, archive_name, container_path)
            finally:
                os.close(fd)

    def add_root(self, archive_prefix: str) -> None:
        """Add everything below the container's ``/`` (not ``/`` itself), names prefixed."""
        fd = os.open(self.view.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._add_children(fd, archive_prefix, "/")
        finally:
            os.close(fd)

    def _opaque(self, container_path: str) -> bool:
        return container_path != "/" and container_path in self.view.opaque_mounts

    def _add_children(self, dir_fd: int, archive_name: str, container_path: str) -> None:
        for child in sorted(os.listdir(dir_fd)):
            child_archive = f"{archive_name}/{child}" if archive_name else child
            child_path = f"{container_path.rstrip('/')}/{child}"
            try:
                self.add(dir_fd, child, child_archive, child_path)
            except FileNotFoundError:
                continue  # removed while we walked


def write_path(out: BinaryIO, view: RootView, located: Located, container_path: str) -> None:
    """The tar ``docker cp`` gets for ``located``: the path and everything below it."""
    tree = TarTree(out, view)
    try:
        tree.add(located.parent_fd, located.name, located.archive_name, container_path)
    finally:
        tree.close()


def write_resource(out: BinaryIO, view: RootView, resource: str, container_name: str) -> None:
    """The tar of ``POST /containers/{id}/copy`` (API < 1.24), as dockerd makes it: the path
    with every symlink followed; a directory's contents at the top of the tar, a file under
    its own name."""
    resolved = _resolved_path(view, "/" + resource.lstrip("/"))
    if resolved is None:
        raise NotFound(f"Could not find the file {resource} in container {container_name}")
    parent, _, name = resolved.rpartition("/")
    tree = TarTree(out, view)
    try:
        if not name:  # the root itself
            tree.add_root("")
            return
        parent_fd = inroot.open_in_root(view.path, parent or "/", os.O_PATH | os.O_DIRECTORY)
        try:
            if stat.S_ISDIR(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode):
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
                try:
                    tree._add_children(fd, "", resolved)
                finally:
                    os.close(fd)
            else:
                tree.add(parent_fd, name, name, resolved)
        finally:
            os.close(parent_fd)
    finally:
        tree.close()


# --------------------------------------------------------------------------------------------
# Streaming a tar made in a worker thread
# --------------------------------------------------------------------------------------------


class _ChunkQueue:
    """A file-like sink handing what is written to a consumer in ``STREAM_CHUNK`` pieces."""

    def __init__(self) -> None:
        self.queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)
        self._buffer = bytearray()
        self.cancelled = threading.Event()

    def write(self, data: bytes) -> int:
        if self.cancelled.is_set():
            raise BrokenPipeError("the client went away")
        self._buffer += data
        while len(self._buffer) >= STREAM_CHUNK:
            self._put(bytes(self._buffer[:STREAM_CHUNK]))
            del self._buffer[:STREAM_CHUNK]
        return len(data)

    def flush(self) -> None:
        pass

    def finish(self, error: BaseException | None) -> None:
        if self._buffer and error is None:
            self._put(bytes(self._buffer))
        self._buffer.clear()
        self._put(error)

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self.cancelled.is_set():
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue


def produce(write: Callable[[BinaryIO], None], cleanup: Callable[[], None]) -> _ChunkQueue:
    """Run ``write(sink)`` in a thread; read the sink's ``queue`` (``bytes`` pieces, then
    ``None`` at the end or the exception that stopped it). ``cleanup`` runs last, in the
    thread, whatever happened; set ``cancelled`` when nobody reads any more."""
    sink = _ChunkQueue()

    def run() -> None:
        error: BaseException | None = None
        try:
            write(sink)  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the reader, which ends the response
            error = exc
        finally:
            try:
                cleanup()
            finally:
                sink.finish(error)

    threading.Thread(target=run, name="container-tar", daemon=True).start()
    return sink
