"""Network namespaces kept as files: made, entered and removed without a process inside.

A container's network namespace is made before its process exists, so that the network driver
can plumb it (``NetworkDriver.connect``) and the runtime can join it. It is kept alive by a bind
mount of the namespace onto an empty file, as ``ip netns add`` does, under a directory the caller
chooses. Python 3.11 has no ``os.unshare``/``os.setns``: a short-lived thread makes or joins the
namespace with the ctypes calls of :mod:`dockyard.linux.syscalls`. Network namespaces are per
thread, so the rest of the process never leaves the host's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

from dockyard.linux import syscalls

T = TypeVar("T")

# linux/sockios.h and linux/if.h
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH14x"  # ifr_name, ifr_flags, the rest of the union


def _in_thread(work: Callable[[], T]) -> T:
    """Run ``work`` in a new thread and return its result or raise its exception there."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=body, name="dockyard-netns")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def _join(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(fd, syscalls.CLONE_NEWNET)
    finally:
        os.close(fd)


def set_link_up(name: str) -> None:
    """Set link ``name`` of the calling thread's network namespace up (an ioctl, no netlink)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack(_IFREQ, name.encode(), 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, name.encode(), flags | _IFF_UP))


def create(path: str | os.PathLike[str]) -> Path:
    """Make a new network namespace, with ``lo`` up, kept alive by a bind mount on ``path``.

    ``path`` must not exist; its directory must. On failure nothing is left: no file, no mount.
    Returns ``path``. Remove it with :func:`remove`.
    """
    target = Path(path)
    # O_EXCL: two callers never share a namespace file by accident.
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))

    def make() -> None:
        syscalls.unshare(syscalls.CLONE_NEWNET)
        syscalls.mount("/proc/thread-self/ns/net", str(target), None, syscalls.MS_BIND)
        set_link_up("lo")

    try:
        _in_thread(make)
    except BaseException:
        remove(target)
        raise
    return target


def is_namespace(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a network namespace file (a bind mount of one), not a plain file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        # nsfs files have their own device; an empty regular file on disk has the disk's.
        return os.fstat(fd).st_dev != os.stat(Path(path).parent).st_dev
    finally:
        os.close(fd)


def remove(path: str | os.PathLike[str]) -> None:
    """Unmount and delete namespace file ``path``; the namespace goes once nothing holds it.

    A path already gone, or never mounted, is fine.
    """
    with contextlib.suppress(OSError):  # EINVAL: not mounted (create failed half-way)
        syscalls.umount(str(path), syscalls.MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def run_in(path: str | os.PathLike[str], work: Callable[[], T]) -> T:
    """Call ``work()`` in a thread that joined the network namespace at ``path``; its result.

    Sockets ``work`` opens (netlink ones too) stay in that namespace after the thread ends.
    """

    def body() -> T:
        _join(path)
        return work()

    return _in_thread(body)


class InterfaceCounters(NamedTuple):
    """Traffic of one interface since it was made, as the kernel counts it (``errors`` and
    ``dropped`` as ``/proc/net/dev`` sums them)."""

    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int


def interface_counters(pid: int) -> dict[str, InterfaceCounters]:
    """Each interface of process ``pid``'s network namespace, by name, with its counters.

    Read from ``/proc/PID/net/dev``, which shows the namespace of that process: no thread has
    to join it. Empty when the process is gone.
    """
    found = {}
    try:
        with open(f"/proc/{pid}/net/dev") as source:
            lines = source.readlines()[2:]  # two lines of headings
    except OSError:
        return {}
    for line in lines:
        name, _, numbers = line.partition(":")
        fields = [int(value) for value in numbers.split()]
        if len(fields) < 12:
            continue
        # receive: bytes packets errs drop fifo frame compressed multicast; transmit: the same
        # four first
        found[name.strip()] = InterfaceCounters(*fields[0:4], *fields[8:12])
    return found
