"""Thin ctypes wrappers over the Linux calls Python 3.11 lacks (mount, unshare, setns...).

Standard library only: the supervisor and the exec helper import it. :func:`check` turns a
libc call's ``-1`` into an :class:`OSError` naming what failed.
"""

from __future__ import annotations

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)

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
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

SYSCALLS = {
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


def check(result: int, what: str) -> int:
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
    check(
        libc.mount(_bytes(source), _bytes(target), _bytes(fstype), ctypes.c_ulong(flags),
                    _bytes(data)),
        f"mount {fstype or source} on {target}",
    )  # fmt: skip


def umount(target: str, flags: int = MNT_DETACH) -> None:
    check(libc.umount2(_bytes(target), flags), f"unmount {target}")


def unshare(flags: int) -> None:
    check(libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    check(libc.setns(fd, nstype), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    check(libc.syscall(SYSCALLS["pivot_root"], _bytes(new_root), _bytes(put_old)), "pivot_root")


def setfsuid(uid: int) -> None:
    """setfsuid(2) for the calling thread (it cannot fail for root, and reports nothing)."""
    libc.setfsuid(ctypes.c_uint(uid))


def setfsgid(gid: int) -> None:
    libc.setfsgid(ctypes.c_uint(gid))


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
    return check(
        libc.syscall(_SYS_OPEN_TREE, ctypes.c_int(AT_FDCWD), _bytes(path), ctypes.c_uint(flags)),
        f"open_tree {path}",
    )


def mount_setattr(
    fd: int, attr_set: int, userns_fd: int = 0, recursive: bool = False, what: str = ""
) -> None:
    """mount_setattr(2) on the mount ``fd`` (from :func:`open_tree_clone`)."""
    attributes = _MountAttr(attr_set, 0, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    check(
        libc.syscall(_SYS_MOUNT_SETATTR, ctypes.c_int(fd), b"", ctypes.c_uint(flags),
                      ctypes.byref(attributes), ctypes.c_size_t(ctypes.sizeof(attributes))),
        f"mount_setattr {what or fd}",
    )  # fmt: skip


def move_mount(fd: int, target: str) -> None:
    """move_mount(2): attach the detached mount ``fd`` at ``target``."""
    check(
        libc.syscall(_SYS_MOVE_MOUNT, ctypes.c_int(fd), b"", ctypes.c_int(AT_FDCWD),
                      _bytes(target), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)),
        f"move_mount to {target}",
    )  # fmt: skip


def sethostname(name: str) -> None:
    raw = name.encode()
    check(libc.sethostname(raw, len(raw)), "sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    check(libc.setdomainname(raw, len(raw)), "setdomainname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return check(
        libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4),
                    ctypes.c_ulong(arg5)),
        f"prctl({option})",
    )  # fmt: skip


#: sync_file_range(2): start writing the range's dirty pages back, without waiting.
SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing ``length`` bytes at ``offset`` of ``fd`` to disk, and return at once.

    A file written in pieces and fsynced at its end (a download) then finds most of its pages
    already on their way, so the disk works while the data still arrives rather than all at the
    end. A filesystem that cannot (or a kernel without the call) leaves it to the fsync.
    """
    libc.sync_file_range(
        fd, ctypes.c_longlong(offset), ctypes.c_longlong(length), SYNC_FILE_RANGE_WRITE
    )


PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_seccomp_filter(program: bytes) -> None:
    """Install a seccomp BPF program (``struct sock_filter[]``) on this process and its
    children. Needs CAP_SYS_ADMIN or no_new_privs, as the kernel requires."""
    instructions = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(instructions, ctypes.c_void_p))
    check(
        libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog),
                    ctypes.c_ulong(0), ctypes.c_ulong(0)),
        "prctl(PR_SET_SECCOMP)",
    )  # fmt: skip
