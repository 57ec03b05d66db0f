"""Processes by identity: pidfds for signalling, and what ``ps`` shows of a process.

A pid is only a number: once its process has been reaped the kernel hands the number to the
next process that starts, so ``kill(pid)`` from a record can hit a stranger. A process is
identified here by its pid *and* its start time (field 22 of ``/proc/PID/stat``, clock ticks
since boot), and held by a pidfd, which names the process itself rather than the number:
a signal sent through it reaches that process or, once it is gone, nobody.

Standard library only and cheap to import: the supervisor imports :func:`start_time` on every
container start.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal

from dockyard.core.interfaces import ContainerProcess

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: Fields of /proc/PID/stat, counted from the state (field 3), the first after the name.
_PPID, _UTIME, _STIME, _STARTTIME = 1, 11, 12, 19


def _stat_fields(text: str) -> list[str]:
    # The name (field 2) is in parentheses and may hold spaces or parentheses itself.
    return text[text.rindex(")") + 2 :].split()


def start_time(pid: int) -> int:
    """When process ``pid`` started, in clock ticks since boot. Raises :class:`OSError`
    (:class:`ProcessLookupError` or :class:`FileNotFoundError`) when it does not exist."""
    with open(f"/proc/{pid}/stat") as source:
        return int(_stat_fields(source.read())[_STARTTIME])


class ProcessHandle:
    """A process held by a pidfd, from :meth:`open`; close it when done (or use ``with``)."""

    def __init__(self, pidfd: int, pid: int, start_time: int) -> None:
        self.pidfd = pidfd
        self.pid = pid
        self.start_time = start_time

    @classmethod
    def open(cls, pid: int, start_time: int, parent: int = 0) -> ProcessHandle | None:
        """Hold process ``pid`` if it is the one that started at ``start_time`` (and, when
        ``parent`` is given, is that process's child); ``None`` when that process is gone.

        The pidfd is opened first and the identity read after: if the pidfd's process is still
        there once the identity has been read, the pid named it all along, so what was read
        was its own. The start time has the resolution of a clock tick (10 ms): a pid reused
        within the same tick would pass, which the parent check then catches.
        """
        if pid <= 0:
            return None
        try:
            pidfd = os.pidfd_open(pid)
        except (ProcessLookupError, PermissionError):
            return None
        try:
            with open(f"/proc/{pid}/stat") as source:
                fields = _stat_fields(source.read())
            signal.pidfd_send_signal(pidfd, 0)  # still our process: raises once it is reaped
        except OSError:
            os.close(pidfd)
            return None
        if int(fields[_STARTTIME]) != start_time or (parent and int(fields[_PPID]) != parent):
            os.close(pidfd)
            return None
        return cls(pidfd, pid, start_time)

    def send_signal(self, signum: int) -> bool:
        """Send ``signum`` to the process; ``False`` if it has been reaped (nothing was sent)."""
        if self.pidfd < 0:
            return False
        try:
            signal.pidfd_send_signal(self.pidfd, signum)
        except ProcessLookupError:
            return False
        return True

    def has_exited(self) -> bool:
        """Whether the process has exited (a zombie counts as exited)."""
        if self.pidfd < 0:
            return True
        readable, _, _ = select.select([self.pidfd], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def __enter__(self) -> ProcessHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# What ps shows
# --------------------------------------------------------------------------------------------

_boot_time: float | None = None


def boot_time() -> float:
    """The wall-clock time of the boot, in seconds since the epoch (``btime`` of /proc/stat)."""
    global _boot_time
    if _boot_time is None:
        with open("/proc/stat") as source:
            _boot_time = next(float(line.split()[1]) for line in source if line.startswith("btime"))
    return _boot_time


def _read_at(directory: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=directory)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def in_cgroup(cgroup_lines: str, cgroup: str) -> bool:
    """Whether ``/proc/PID/cgroup`` text names cgroup path ``cgroup`` in some hierarchy.

    Compared by suffix: where the reader sits in a cgroup namespace of its own, the paths it
    sees start below the part of the tree that namespace hides.
    """
    suffix = "/" + cgroup.strip("/")
    return any(line.split(":", 2)[-1].endswith(suffix) for line in cgroup_lines.splitlines())


def describe(pid: int, cgroup: str = "") -> ContainerProcess | None:
    """What ``ps`` shows of process ``pid``, or ``None`` when it is gone.

    Every file is read through one handle on ``/proc/PID``, which stays bound to the process
    it was opened for: reads fail once that process is reaped, even if the pid has been
    reused since. With ``cgroup`` (a path as in ``/proc/PID/cgroup``), a process that is not
    (or no longer) in that cgroup counts as gone: the pid came from the cgroup's list, and
    may have been reused between the listing and this look.
    """
    try:
        directory = os.open(f"/proc/{pid}", _DIRECTORY_FLAGS)
    except FileNotFoundError:
        return None
    try:
        stat_text = _read_at(directory, "stat").decode(errors="replace")
        status = _read_at(directory, "status").decode(errors="replace")
        cmdline = _read_at(directory, "cmdline")
        if cgroup and not in_cgroup(_read_at(directory, "cgroup").decode(errors="replace"), cgroup):
            return None
    except (ProcessLookupError, FileNotFoundError):
        return None
    finally:
        os.close(directory)
    fields = _stat_fields(stat_text)
    ticks = os.sysconf("SC_CLK_TCK")
    uid = 0
    for line in status.splitlines():
        if line.startswith("Uid:"):
            uid = int(line.split()[1])
            break
    return ContainerProcess(
        pid=pid,
        ppid=int(fields[_PPID]),
        uid=uid,
        started=boot_time() + int(fields[_STARTTIME]) / ticks,
        cpu_seconds=(int(fields[_UTIME]) + int(fields[_STIME])) / ticks,
        # Arguments end with a NUL each, unless the process rewrote them (as nginx does).
        args=tuple(arg.decode(errors="replace") for arg in cmdline.rstrip(b"\0").split(b"\0"))
        if cmdline.strip(b"\0")
        else (),
    )


def describe_all(pids: list[int], cgroup: str = "") -> list[ContainerProcess]:
    """:func:`describe` each of ``pids``, leaving out those that are gone; ordered by pid."""
    found = []
    for pid in sorted(pids):
        with contextlib.suppress(OSError):
            described = describe(pid, cgroup)
            if described is not None:
                found.append(described)
    return found
