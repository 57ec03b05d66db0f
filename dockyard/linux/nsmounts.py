"""Mounts taken from another process's mount namespace (another container's ``/dev/shm``).

A bind mount's source must be in the caller's own mount namespace: a path through
``/proc/PID/root`` reaches another namespace's files but not its mounts (``EINVAL``). So the
caller steps into that namespace for a moment, clones the mount there (``open_tree``: a detached
copy, which belongs to no namespace), steps back and attaches the copy where it wants it
(``move_mount``). Entering a mount namespace needs a single-threaded process: call this in a
forked child (the runtimes' container setup is one).
"""

from __future__ import annotations

import os
import re

from dockyard.linux import syscalls

#: A namespace file of a process, as ``/proc/PID/ns/KIND``.
_PROC_NAMESPACE = re.compile(r"^/proc/(\d+)/ns/[a-z_]+$")


def mount_namespace_beside(namespace: str) -> str:
    """The mount namespace file of the process whose namespace file ``namespace`` is
    (``/proc/PID/ns/ipc`` -> ``/proc/PID/ns/mnt``); empty for a file that names no process."""
    found = _PROC_NAMESPACE.match(namespace)
    return f"/proc/{found.group(1)}/ns/mnt" if found else ""


def clone_from_namespace(namespace: str, path: str) -> int:
    """A detached recursive clone of the mount at ``path`` in mount namespace ``namespace``
    (a file such as ``/proc/PID/ns/mnt``): an fd for :func:`syscalls.move_mount`."""
    own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        theirs = os.open(namespace, os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(theirs, syscalls.CLONE_NEWNS)
        finally:
            os.close(theirs)
        try:
            return syscalls.open_tree_clone(path, recursive=True)
        finally:
            # Back home: setns moved our root and working directory to that namespace's.
            syscalls.setns(own, syscalls.CLONE_NEWNS)
            os.fchdir(cwd)
    finally:
        os.close(own)
        os.close(cwd)
