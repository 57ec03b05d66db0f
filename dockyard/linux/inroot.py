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
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

_libc = ctypes.CDLL(None, use_errno=True)
#: openat2(2) has the same number on every architecture (it was added after the numbering was
#: unified).
SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
#: More than any passwd or group file; a hostile image's endless file stops here.
READ_LIMIT = 4 << 20


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


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
        how = _OpenHow(
            os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK,
            0,
            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        )
        fd = _libc.syscall(
            SYS_OPENAT2, root, path.encode(), ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))
        )
        if fd < 0:
            code = ctypes.get_errno()
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
        how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        fd = _libc.syscall(
            SYS_OPENAT2, root, path.encode(), ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))
        )
    finally:
        os.close(root)
    if fd < 0:
        code = ctypes.get_errno()
        if code in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise FileNotFoundError(code, f"{path}: {os.strerror(code)}")
        raise OSError(code, f"cannot open {path} in the container: {os.strerror(code)}")
    return int(fd)
