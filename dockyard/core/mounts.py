"""Performing a storage driver's :class:`~dockyard.core.interfaces.Mount` list with mount(2)."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence

from dockyard.core.interfaces import Mount

_libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_BIND, MS_REC = 1, 4096, 16384
MNT_DETACH = 2


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Perform ``mounts`` at ``target`` in order, as a runtime does for a root filesystem."""
    for mount in mounts:
        flags = MS_BIND if mount.type == "bind" else 0
        data = []
        for option in mount.options:
            if option in ("bind", "rbind"):
                flags |= MS_BIND | (MS_REC if option == "rbind" else 0)
            elif option == "ro":
                flags |= MS_RDONLY
            elif option != "rw":
                data.append(option)
        fstype = None if mount.type == "bind" else mount.type.encode()
        if (
            _libc.mount(
                mount.source.encode(), target.encode(), fstype, flags, ",".join(data).encode()
            )
            != 0
        ):
            code = ctypes.get_errno()
            raise OSError(code, f"mount {mount.type} at {target}: {os.strerror(code)}")


def unmount_all(target: str) -> None:
    """Unmount everything stacked at ``target`` (lazily, so busy mounts do not block)."""
    while _libc.umount2(target.encode(), MNT_DETACH) == 0:
        pass
    code = ctypes.get_errno()
    if code not in (errno.EINVAL, errno.ENOENT):
        raise OSError(code, f"umount {target}: {os.strerror(code)}")
