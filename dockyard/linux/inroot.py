"""Reading a file of a container's root filesystem from the host, without leaving that root.

``create --user NAME`` and ``exec --user NAME`` need the image's ``/etc/passwd`` and
``/etc/group``: files an image author controls. They are opened with openat2's
``RESOLVE_IN_ROOT``, so that a symlink or ``..`` in the image resolves inside the container's
root and can never make the daemon read a host file, without blocking (a FIFO) and with a
bounded read (an endless file).

A running container's root filesystem is mounted only in its own mount namespace, and mounting
its snapshot a second time on the host is not an option: a second overlay mount over the same
upper and work directories recreates the work directory under the live mount, after which every
copy-up in the container fails. The host reaches that root through ``/proc/PID/root`` instead.

Writing goes the same way: :func:`extract_into` resolves its destination inside the root, then
creates every entry relative to directory fds without following symlinks (the rules of
:mod:`dockyard.linux.layertar`), so neither the path asked for nor the archive can make the
daemon write a host file. ``docker cp`` into a container and the builder's ``COPY``/``ADD`` both
write through it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import tarfile
from collections.abc import Sequence
from typing import Any, BinaryIO

import attrs

from dockyard.core.errors import InvalidParameter
from dockyard.linux import idmap, layertar

_libc = ctypes.CDLL(None, use_errno=True)
#: openat2(2) has the same number on every architecture (it was added after the numbering was
#: unified).
SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
#: How often a resolution that raced with a rename or mount is tried again.
OPENAT2_TRIES = 64
#: Directories :func:`make_directories` creates get docker's mode for implied parents.
DIRECTORY_MODE = 0o755
#: More than any passwd or group file; a hostile image's endless file stops here.
READ_LIMIT = 4 << 20


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _openat2(dir_fd: int, path: str, flags: int) -> int:
    """openat2 of ``path`` below ``dir_fd`` resolved as if ``dir_fd`` were ``/``; ``-errno``
    on failure, as the raw call returns it.

    The kernel answers EAGAIN when a rename or mount anywhere on the host raced with the
    resolution of a ``..`` (it cannot then prove the walk stayed inside the root), and asks
    the caller to retry: a busy host does that often enough to fail a ``docker cp`` through a
    ``../..`` symlink. Only a steady stream of races exhausts :data:`OPENAT2_TRIES`.
    """
    how = _OpenHow(flags, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    encoded = path.encode()
    for _ in range(OPENAT2_TRIES):
        fd = _libc.syscall(
            SYS_OPENAT2, dir_fd, encoded, ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))
        )
        if fd >= 0:
            return int(fd)
        code = ctypes.get_errno()
        if code != errno.EAGAIN:
            break
    return -code


def read_text(root_directory: str, path: str) -> str | None:
    """The text of ``path`` resolved inside ``root_directory`` as if it were ``/``.

    ``root_directory`` is a container's root filesystem: ``/proc/PID/root`` of its init
    process while it runs, or its snapshot mounted somewhere. ``..`` and symlinks, absolute
    ones included, resolve within it. At most :data:`READ_LIMIT` bytes are read. ``None`` when
    the file does not exist or is not a regular file (a FIFO, a device, a directory). Other
    failures (the process is gone, a kernel without openat2) raise :class:`OSError`.
    """
    root = os.open(root_directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # Non-blocking: an image's /etc/passwd may be a FIFO, which would block the open.
        fd = _openat2(root, path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
        if fd < 0:
            code = -fd
            if code in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None
            raise OSError(code, f"cannot open {path} in the container: {os.strerror(code)}")
    finally:
        os.close(root)
    with os.fdopen(fd, "rb") as opened:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return opened.read(READ_LIMIT).decode(errors="replace")


def open_in_root(root_directory: str, path: str, flags: int) -> int:
    """A descriptor of ``path`` resolved inside ``root_directory`` as if it were ``/``.

    Like :func:`read_text`'s resolution (``..`` and symlinks, absolute ones included, stay in
    the root; magic links are refused). ``flags`` are open(2) flags (``O_PATH`` to look
    without opening); ``O_CLOEXEC`` is added. A missing path (or a component that is not a
    directory, or a symlink loop) raises :class:`FileNotFoundError`.
    """
    root = os.open(root_directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = _openat2(root, path, flags | os.O_CLOEXEC)
    finally:
        os.close(root)
    if fd < 0:
        if -fd in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise FileNotFoundError(-fd, f"{path}: {os.strerror(-fd)}")
        raise OSError(-fd, f"cannot open {path} in the container: {os.strerror(-fd)}")
    return fd


_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def resolve(root_directory: str, path: str) -> str | None:
    """Where ``path`` is on the host once resolved inside ``root_directory`` as if it were
    ``/``, every symlink followed (the last one too) without leaving it; ``None`` when
    nothing is there. The answer names a path inside the root, good for reading a tree the
    daemon owns (a build context); a live container can change it after."""
    root = os.open(root_directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = _openat2(root, path, os.O_PATH | os.O_CLOEXEC)
    finally:
        os.close(root)
    if fd < 0:
        if -fd in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise OSError(-fd, os.strerror(-fd), path)
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def open_directory(root_directory: str, path: str) -> int:
    """An fd of directory ``path`` resolved inside ``root_directory`` as if it were ``/``
    (symlinks and ``..`` on the way stay inside); the caller closes it.

    Raises :class:`FileNotFoundError` when it does not exist, :class:`NotADirectoryError` when
    it is not a directory, :class:`OSError` otherwise.
    """
    root = os.open(root_directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = _openat2(root, path, _DIRECTORY_FLAGS)
    finally:
        os.close(root)
    if fd < 0:
        raise OSError(-fd, os.strerror(-fd), path)  # OSError picks the subclass from errno
    return fd


def make_directories(
    root_directory: str, path: str, owner: tuple[int, int] = (0, 0), mode: int = DIRECTORY_MODE
) -> None:
    """Create directory ``path`` inside ``root_directory`` and its missing parents (like
    ``mkdir -p`` in the container), each new one with ``mode`` and ``owner``.

    Each parent is resolved inside the root before its child is made in it, so a symlink on
    the way (dangling ones included: their target is made) leads elsewhere in the container,
    never out of it. A non-directory on the way raises :class:`NotADirectoryError`.
    """
    root = os.open(root_directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _make_directories(root, path, owner, mode, links_left=40)
    finally:
        os.close(root)


def _make_directories(
    root: int, path: str, owner: tuple[int, int], mode: int, links_left: int
) -> None:
    parts = [part for part in path.split("/") if part not in ("", ".")]
    current = os.dup(root)
    try:
        for depth, part in enumerate(parts):
            # Resolved from the root each time: ".." and symlinks need the whole path.
            prefix = "/".join(parts[: depth + 1])
            fd = _openat2(root, prefix, _DIRECTORY_FLAGS)
            if fd == -errno.ENOENT:
                try:
                    # mkdirat never follows a symlink in its last component.
                    os.mkdir(part, mode, dir_fd=current)
                except FileExistsError:
                    # A dangling symlink: make its target, resolved inside the root too.
                    try:
                        target = os.readlink(part, dir_fd=current)
                    except OSError:
                        target = None  # not a symlink: the open below says what it is
                    if target is not None:
                        if links_left <= 0:
                            raise OSError(
                                errno.ELOOP, os.strerror(errno.ELOOP), "/" + prefix
                            ) from None
                        base = "" if target.startswith("/") else "/".join(parts[:depth])
                        _make_directories(root, f"{base}/{target}", owner, mode, links_left - 1)
                else:
                    # Through an fd opened without following: a live container could swap
                    # the new directory for a symlink meanwhile. fchmod after mkdir because
                    # the umask cut the mode.
                    made = os.open(part, _DIRECTORY_FLAGS | os.O_NOFOLLOW, dir_fd=current)
                    try:
                        os.fchown(made, *owner)
                        os.fchmod(made, mode)
                    finally:
                        os.close(made)
                fd = _openat2(root, prefix, _DIRECTORY_FLAGS)
            if fd < 0:
                raise OSError(-fd, os.strerror(-fd), "/" + prefix)
            os.close(current)
            current = fd
    finally:
        os.close(current)


@attrs.frozen
class IdMaps:
    """A user-namespaced container's uid and gid maps (``IdMapping`` records): its id N is
    host id ``host_id + N - container_id`` of the line covering N."""

    uid_mappings: Sequence[Any]
    gid_mappings: Sequence[Any]

    def to_host(self, uid: int, gid: int) -> tuple[int, int]:
        """The host ids of container ids ``uid`` and ``gid``; :class:`InvalidParameter` when the
        maps do not cover them."""
        try:
            return (
                idmap.host_id(self.uid_mappings, uid, "uid"),
                idmap.host_id(self.gid_mappings, gid, "gid"),
            )
        except OSError as exc:
            raise InvalidParameter(f"cannot map the owner to the host: {exc.strerror}") from None


def extract_into(
    root_directory: str,
    directory: str,
    archive: BinaryIO,
    *,
    no_overwrite_dir_non_dir: bool = False,
    chown: tuple[int, int] | None = None,
    id_maps: IdMaps | None = None,
    allow_device_nodes: bool = True,
    limits: layertar.ExtractLimits | None = None,
) -> layertar.ExtractStats:
    """Extract the uncompressed tar ``archive`` under ``directory``, a path resolved inside the
    container root ``root_directory`` (a mounted snapshot, or ``/proc/PID/root``) as if it
    were ``/``.

    Entries keep their modes, times (to the nanosecond with PAX), xattrs, symlinks and hard
    links (to entries of the same archive); names with ``..`` are refused, a symlink is never
    written through, and a link whose target climbs above ``directory`` is refused, as in
    docker. ``chown`` gives every entry that owner (docker's ``ChownOpts``) instead of the
    entry's own; both are container ids, turned into host ids by ``id_maps`` for a
    user-namespaced container. ``no_overwrite_dir_non_dir`` is docker's option of that name.

    ``directory`` must exist (:class:`FileNotFoundError`, :class:`NotADirectoryError`). The
    root is a live container's: on error nothing is removed; the entries before the bad one
    stay and :class:`~dockyard.core.errors.InvalidParameter` names the bad one.
    """
    to_host = id_maps.to_host if id_maps is not None else _same_ids
    if chown is not None:
        fixed = to_host(*chown)

        def owner(entry: tarfile.TarInfo) -> tuple[int, int]:
            return fixed

    else:

        def owner(entry: tarfile.TarInfo) -> tuple[int, int]:
            return to_host(entry.uid, entry.gid)

    # As docker: parents the archive implies belong to the container's root, whatever chown.
    implied_owner = to_host(0, 0)
    fd = open_directory(root_directory, directory)
    try:
        return layertar.extract_archive(
            archive,
            fd,
            owner=owner,
            implied_owner=implied_owner,
            no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
            allow_device_nodes=allow_device_nodes,
            limits=limits,
        )
    finally:
        os.close(fd)


def _same_ids(uid: int, gid: int) -> tuple[int, int]:
    return uid, gid
