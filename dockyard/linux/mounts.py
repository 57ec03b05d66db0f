"""Mounting: a storage driver's :class:`~dockyard.core.interfaces.Mount` lists, and mount options.

The one routine every runtime, the daemon and the storage suite use to perform a root
filesystem's mounts (:func:`mount_all`), with option words read as ``mount(8)`` reads them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Sequence

from dockyard.core.interfaces import Mount
from dockyard.linux.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_DIRSYNC,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    libc,
    mount,
)

#: Mount option words that are flags of mount(2) rather than filesystem data.
MOUNT_FLAG_WORDS = {
    "ro": (MS_RDONLY, True),
    "rw": (MS_RDONLY, False),
    "nosuid": (MS_NOSUID, True),
    "suid": (MS_NOSUID, False),
    "nodev": (MS_NODEV, True),
    "dev": (MS_NODEV, False),
    "noexec": (MS_NOEXEC, True),
    "exec": (MS_NOEXEC, False),
    "sync": (MS_SYNCHRONOUS, True),
    "dirsync": (MS_DIRSYNC, True),
    "noatime": (MS_NOATIME, True),
    "nodiratime": (MS_NODIRATIME, True),
    "relatime": (MS_RELATIME, True),
    "strictatime": (MS_STRICTATIME, True),
    "bind": (MS_BIND, True),
    "rbind": (MS_BIND | MS_REC, True),
    "private": (MS_PRIVATE, True),
    "rprivate": (MS_PRIVATE | MS_REC, True),
}

#: Bind propagation (docker's ``-v /a:/b:rshared``, ``--mount bind-propagation=``) and the
#: mount(2) flags that set it on a mount (with ``MS_REC``: on the mounts below it too).
PROPAGATION_FLAGS = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
}


def keeps_host_peers(propagation: str) -> bool:
    """Whether a bind with ``propagation`` must stay in its source mount's peer group (shared
    with the host's mount, or a slave of it) rather than be private to the container."""
    return propagation in ("shared", "rshared", "slave", "rslave")


def set_propagation(path: str, propagation: str) -> None:
    """Give the mount at ``path`` one of :data:`PROPAGATION_FLAGS`' propagations."""
    mount(None, path, None, PROPAGATION_FLAGS[propagation])


def mount_holding(path: str) -> tuple[str, tuple[str, ...]]:
    """The mount point of this process's mount namespace that ``path`` lies on (its deepest
    mount point above it), and that mount's optional mountinfo fields (``shared:N``,
    ``master:N``...): how it propagates. ``path`` is taken as it is (resolve links first)."""
    found: str = "/"
    fields: tuple[str, ...] = ()
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            parts = line.split(" ")
            point = unescape_mountinfo(parts[4])
            inside = point == "/" or path == point or path.startswith(point.rstrip("/") + "/")
            # The last of several mounts at one point is the one on top.
            if inside and len(point) >= len(found):
                found, fields = point, tuple(parts[6 : parts.index("-")])
    return found, fields


def unescape_mountinfo(field: str) -> str:
    """A path field of mountinfo, which escapes space, tab, newline and backslash as ``\\ooo``."""
    out, index = [], 0
    while index < len(field):
        code = field[index + 1 : index + 4]
        if field[index] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


#: statvfs f_flag bits -> the mount flags a read-only remount must keep. In a user namespace
#: the kernel refuses a remount that would clear flags locked by a more privileged namespace.
_STATVFS_TO_MOUNT_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)


def mount_flags_of(path: str) -> int:
    """The per-mount flags of the mount holding ``path`` that a bind remount must repeat."""
    found = os.statvfs(path).f_flag
    return sum(flag for bit, flag in _STATVFS_TO_MOUNT_FLAGS if found & bit)


def remount_read_only(path: str, recursive: bool = False) -> None:
    """Make the (bind) mount at ``path`` read-only, keeping its other flags."""
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | mount_flags_of(path)
    mount(None, path, None, flags | (MS_REC if recursive else 0))


def parse_mount_options(options: tuple[str, ...] | list[str]) -> tuple[int, str]:
    """Split mount option words into mount(2) flags and the filesystem's data string."""
    flags = 0
    data = []
    for word in options:
        known = MOUNT_FLAG_WORDS.get(word)
        if known is None:
            data.append(word)
        elif known[1]:
            flags |= known[0]
        else:
            flags &= ~known[0]
    return flags, ",".join(data)


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Perform a storage driver's mounts at ``target``, in order, as a runtime does for a root
    filesystem. Every option word applies: ``ro`` on a bind mount makes it read-only (bind
    mounts take only ``MS_BIND`` at first, so the flag needs a remount)."""
    for entry in mounts:
        flags, data = parse_mount_options(entry.options)
        if entry.type == "bind":
            mount(entry.source, target, None, flags | MS_BIND)
            if flags & MS_RDONLY:
                remount_read_only(target)
        else:
            mount(entry.source, target, entry.type, flags, data or None)


def unmount_all(target: str) -> None:
    """Unmount everything stacked at ``target`` (lazily, so busy mounts do not block)."""
    while libc.umount2(os.fsencode(target), MNT_DETACH) == 0:
        pass
    code = ctypes.get_errno()
    if code not in (errno.EINVAL, errno.ENOENT):
        raise OSError(code, f"umount {target}: {os.strerror(code)}")


# Paths inside a root


_MAX_SYMLINKS = 255


def resolve_in_root(root: str, path: str) -> str:
    """The host path of container path ``path``, resolving symlinks as if ``root`` were ``/``.

    A link can never lead outside ``root`` (``..`` stops at it, absolute targets restart at it),
    so a hostile image cannot redirect a mount onto a host path. Components that do not exist
    yet are kept as they are.
    """
    pending = [part for part in path.split("/") if part not in ("", ".")]
    pending.reverse()
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if not stat.S_ISLNK(info.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise OSError(errno.ELOOP, f"too many levels of symbolic links in {path}")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
    return os.path.join(root, *resolved)


def ensure_mountpoint(host_path: str, directory: bool) -> None:
    """Create a directory, or an empty file, at ``host_path`` (and its parents) if missing."""
    if os.path.lexists(host_path):
        return
    if directory:
        os.makedirs(host_path, mode=0o755, exist_ok=True)
        return
    os.makedirs(os.path.dirname(host_path), mode=0o755, exist_ok=True)
    os.close(os.open(host_path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
