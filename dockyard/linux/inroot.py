"""Reading a file of a running container's root filesystem from the host.

``exec --user NAME`` needs the container's current ``/etc/passwd`` and ``/etc/group``. Its root
filesystem is mounted only in the container's own mount namespace, and mounting the snapshot a
second time on the host is not an option: a second overlay mount over the same upper and work
directories recreates the work directory under the live mount, after which every copy-up in the
container fails. The host reaches the container's root through ``/proc/PID/root`` instead, and
opens the file with openat2's ``RESOLVE_IN_ROOT``, so that a symlink or ``..`` in the image
resolves inside the container's root and can never make the daemon read a host file.
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


def read_text(pid: int, path: str) -> str | None:
    """The text of ``path`` in the root filesystem of process ``pid`` (a container's init).

    ``None`` when it does not exist or is not a regular file. Other failures (the process is
    gone, a kernel without openat2) raise :class:`OSError`.
    """
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
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
