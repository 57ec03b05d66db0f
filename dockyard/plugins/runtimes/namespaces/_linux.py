"""Thin ctypes wrappers over the Linux calls Python 3.11 lacks (mount, unshare, setns...).

Standard library only (and dockyard.core.capabilities): the supervisor and the exec helper
import it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Sequence
from typing import Any

from dockyard.core.capabilities import ALL_CAPABILITIES

_libc = ctypes.CDLL(None, use_errno=True)

# namespaces (linux/sched.h)
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount flags (linux/mount.h)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

# prctl options (linux/prctl.h)
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "capget": 125, "capset": 126},
    "aarch64": {"pivot_root": 41, "capget": 90, "capset": 91},
}[os.uname().machine]
#: The new mount API's calls have one number on every architecture (asm-generic/unistd.h).
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442

# the new mount API (linux/mount.h, linux/fcntl.h)
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_IDMAP = 0x100000

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


def _check(result: int, what: str) -> int:
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    """mount(2); raises ``OSError`` naming the target."""
    _check(
        _libc.mount(_bytes(source), _bytes(target), _bytes(fstype), ctypes.c_ulong(flags),
                    _bytes(data)),
        f"mount {fstype or source} on {target}",
    )  # fmt: skip


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(_bytes(target), flags), f"unmount {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYSCALLS["pivot_root"], _bytes(new_root), _bytes(put_old)), "pivot_root")


def setfsuid(uid: int) -> None:
    """setfsuid(2) for the calling thread (it cannot fail for root, and reports nothing)."""
    _libc.setfsuid(ctypes.c_uint(uid))


def setfsgid(gid: int) -> None:
    _libc.setfsgid(ctypes.c_uint(gid))


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def open_tree_clone(path: str, recursive: bool = False) -> int:
    """open_tree(OPEN_TREE_CLONE): a detached copy of the mount at ``path``, as an fd.

    Nothing is visible anywhere until :func:`move_mount` attaches it; closing the fd of a clone
    never attached drops it. The fd is close-on-exec.
    """
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    return _check(
        _libc.syscall(_SYS_OPEN_TREE, ctypes.c_int(AT_FDCWD), _bytes(path), ctypes.c_uint(flags)),
        f"open_tree {path}",
    )


def mount_setattr(
    fd: int, attr_set: int, userns_fd: int = 0, recursive: bool = False, what: str = ""
) -> None:
    """mount_setattr(2) on the mount ``fd`` (from :func:`open_tree_clone`)."""
    attributes = _MountAttr(attr_set, 0, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(
        _libc.syscall(_SYS_MOUNT_SETATTR, ctypes.c_int(fd), b"", ctypes.c_uint(flags),
                      ctypes.byref(attributes), ctypes.c_size_t(ctypes.sizeof(attributes))),
        f"mount_setattr {what or fd}",
    )  # fmt: skip


def move_mount(fd: int, target: str) -> None:
    """move_mount(2): attach the detached mount ``fd`` at ``target``."""
    _check(
        _libc.syscall(_SYS_MOVE_MOUNT, ctypes.c_int(fd), b"", ctypes.c_int(AT_FDCWD),
                      _bytes(target), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)),
        f"move_mount to {target}",
    )  # fmt: skip


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(
        _libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4),
                    ctypes.c_ulong(arg5)),
        f"prctl({option})",
    )  # fmt: skip


PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_seccomp_filter(program: bytes) -> None:
    """Install a seccomp BPF program (``struct sock_filter[]``) on this process and its
    children. Needs CAP_SYS_ADMIN or no_new_privs, as the kernel requires."""
    instructions = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(instructions, ctypes.c_void_p))
    _check(
        _libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog),
                    ctypes.c_ulong(0), ctypes.c_ulong(0)),
        "prctl(PR_SET_SECCOMP)",
    )  # fmt: skip


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


def mount_layers(entries: Sequence[Any], target: str) -> None:
    """Perform a storage driver's mounts (``Mount`` records) at ``target``, in order."""
    for entry in entries:
        flags, data = parse_mount_options(entry.options)
        if entry.type == "bind":
            mount(entry.source, target, None, flags | MS_BIND)
            if flags & MS_RDONLY:
                remount_read_only(target)
        else:
            mount(entry.source, target, entry.type, flags, data or None)


# --------------------------------------------------------------------------------------------
# Capabilities
# --------------------------------------------------------------------------------------------

CAPABILITY_NAMES = ALL_CAPABILITIES
CAPABILITY_NUMBERS = {name: number for number, name in enumerate(CAPABILITY_NAMES)}


def last_capability() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as source:
            return int(source.read())
    except OSError:
        return max(CAPABILITY_NUMBERS.values())


def capability_mask(names: tuple[str, ...] | list[str]) -> int:
    """Bit mask of capability names (``CAP_CHOWN`` or ``chown``); unknown names raise."""
    mask = 0
    for name in names:
        key = name.upper()
        if not key.startswith("CAP_"):
            key = "CAP_" + key
        if key == "CAP_ALL":
            return (1 << (last_capability() + 1)) - 1
        if key not in CAPABILITY_NUMBERS:
            raise ValueError(f"unknown capability {name!r}")
        mask |= 1 << CAPABILITY_NUMBERS[key]
    return mask


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_CAPABILITY_VERSION_3 = 0x20080522


def _capability_set(field: str) -> int:
    with open("/proc/thread-self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1], 16)
    return 0


def bounding_set() -> int:
    """The calling thread's capability bounding set, from /proc."""
    return _capability_set("CapBnd")


def permitted_set() -> int:
    """The calling thread's permitted capabilities, from /proc."""
    return _capability_set("CapPrm")


def inheritable_set() -> int:
    return _capability_set("CapInh")


def effective_set() -> int:
    return _capability_set("CapEff")


def drop_bounding_set(keep: int) -> None:
    """Drop every capability outside ``keep`` from the bounding set (needs CAP_SETPCAP)."""
    current = bounding_set()
    for number in range(last_capability() + 1):
        if current & (1 << number) and not keep & (1 << number):
            prctl(PR_CAPBSET_DROP, number)


def set_capabilities(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for the calling thread."""
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for index in range(2):
        shift = 32 * index
        data[index].effective = (effective >> shift) & 0xFFFFFFFF
        data[index].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[index].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.syscall(_SYSCALLS["capset"], ctypes.byref(header), ctypes.byref(data)), "capset")


# --------------------------------------------------------------------------------------------
# Paths inside a root
# --------------------------------------------------------------------------------------------

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
