"""The exec helper: run a process inside a running container's namespaces.

The daemon opens the container's namespaces itself, by the init process's pid, and checks that
the pid still named the container's init once they are open (see :func:`open_namespaces`): a
pid reused after the container exited can never lead an exec into a stranger's namespaces.
It spawns ``python -S -c <bootstrap> <request JSON>`` (see :func:`spawn`) with the new
process's stdio on fds 0-2, a status pipe on fd 3 and the namespaces' fds. The helper joins
them with setns (net first, then user, ipc, uts, pid, mnt) and forks: only its child is
in the container's PID namespace. The child joins the container's cgroups, then its cgroup
namespace, sets credentials as the launcher does and execs. The helper writes one JSON line on
fd 3 (``{"pid": host pid}`` once the exec happened, or ``{"error", "exit_code"}``), then stays
as the daemon's waitable stand-in for the process: it forwards signals to it and exits with
its status (dying of the same signal when it was killed), so the daemon's ``waitpid`` on the
helper gives the command's real exit status.

The helper starts without site-packages (``-S``) and imports only the standard library and this
package's low-level modules: an exec's start-up time is mostly the interpreter's.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import os
import resource
import signal
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NoReturn

from dockyard.linux import syscalls
from dockyard.plugins.runtimes.namespaces import process

if TYPE_CHECKING:
    from dockyard.core.interfaces import ProcessSpec

STATUS_FD = 3
#: setns order: the network namespace first, while we are still the host's root (the daemon
#: makes it, so the host's user namespace owns it, and from inside the container's user
#: namespace it could not be joined); then the user namespace (it grants the capabilities for
#: the rest); the mount namespace last among those joined before the fork (it changes what
#: /proc/<pid> is).
NAMESPACE_ORDER = (
    ("net", syscalls.CLONE_NEWNET),
    ("user", syscalls.CLONE_NEWUSER),
    ("ipc", syscalls.CLONE_NEWIPC),
    ("uts", syscalls.CLONE_NEWUTS),
    ("pid", syscalls.CLONE_NEWPID),
    ("mnt", syscalls.CLONE_NEWNS),
)
FORWARDED_SIGNALS = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
    signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM,
)  # fmt: skip
#: The directory holding the ``dockyard`` package, for the helper's sys.path.
_PACKAGE_PARENT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
)
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, {root!r}); "
    "from dockyard.plugins.runtimes.namespaces.nsenter import main; main()"
)


def open_namespaces(
    init_pid: int, belongs: Callable[[int], bool]
) -> tuple[list[tuple[int, int]], int]:
    """fds of the namespaces of the container whose init is ``init_pid`` that differ from ours,
    in joining order, and its cgroup namespace's fd (-1: the same as ours).

    ``belongs(pid)`` says whether a process is in the container (its cgroup lists it). The
    pidfd taken first pins the process: once the namespaces are open, it is still alive, so the
    pid named it, and it was the container's, all along. Raises :class:`OSError` otherwise.
    """
    pidfd = os.pidfd_open(init_pid)
    opened: list[tuple[int, int]] = []
    cgroup_ns = -1
    try:
        if not belongs(init_pid):
            raise ProcessLookupError(errno.ESRCH, f"process {init_pid} is not the container's")
        for name, kind in NAMESPACE_ORDER:
            theirs = f"/proc/{init_pid}/ns/{name}"
            try:
                if os.readlink(theirs) == os.readlink(f"/proc/self/ns/{name}"):
                    continue
            except FileNotFoundError:
                if name == "user":
                    continue  # no user namespaces in this kernel: nothing to join
                raise
            opened.append((_above_stdio(os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)), kind))
        ours, theirs = "/proc/self/ns/cgroup", f"/proc/{init_pid}/ns/cgroup"
        if os.path.exists(ours) and os.readlink(ours) != os.readlink(theirs):
            cgroup_ns = _above_stdio(os.open(theirs, os.O_RDONLY | os.O_CLOEXEC))
        signal.pidfd_send_signal(pidfd, 0)  # raises once the process is gone
    except BaseException:
        for fd in [fd for fd, _kind in opened] + ([cgroup_ns] if cgroup_ns >= 0 else []):
            os.close(fd)
        raise
    finally:
        os.close(pidfd)
    return opened, cgroup_ns


def _above_stdio(fd: int) -> int:
    """``fd`` moved above the helper's fixed descriptors (0-3), so that placing those cannot
    overwrite it."""
    if fd > STATUS_FD:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, STATUS_FD + 1)
    os.close(fd)
    return moved


def spawn(
    init_pid: int,
    process_spec: ProcessSpec,
    stdio: tuple[int, int, int],
    *,
    privileged: bool,
    cgroup_procs: list[str],
    belongs: Callable[[int], bool],
) -> int:
    """Start the helper for ``process_spec`` in the container of ``init_pid``; return its pid.

    ``belongs`` is :func:`open_namespaces`'s. Raises :class:`LaunchError` (127, 126 or 125)
    when the process could not be started; the helper has been reaped then.
    """
    # The daemon has these loaded already; the helper itself must not import them.
    import attrs

    from dockyard.core.interfaces import LaunchError

    try:
        # Compiled here, where the program for a capability set is kept, not in the helper.
        seccomp_filter = process.seccomp_program(process_spec)
    except process.ProcessFailure as exc:
        raise LaunchError(str(exc), process.RUNTIME_FAILURE) from None
    try:
        namespaces, cgroup_ns = open_namespaces(init_pid, belongs)
    except OSError as exc:
        raise LaunchError(f"cannot enter the container: {exc}", process.RUNTIME_FAILURE) from None
    inherited = [fd for fd, _kind in namespaces] + ([cgroup_ns] if cgroup_ns >= 0 else [])
    try:
        request = {
            "namespaces": namespaces,
            "cgroup_namespace": cgroup_ns,
            "process": attrs.asdict(process_spec),
            "privileged": privileged,
            "cgroup_procs": cgroup_procs,
            "seccomp_filter": base64.b64encode(seccomp_filter).decode() if seccomp_filter else None,
        }
        status_r, status_w = os.pipe()
        try:
            actions = [
                (os.POSIX_SPAWN_DUP2, stdio[0], 0),
                (os.POSIX_SPAWN_DUP2, stdio[1], 1),
                (os.POSIX_SPAWN_DUP2, stdio[2], 2),
                (os.POSIX_SPAWN_DUP2, status_w, STATUS_FD),
                # dup2 onto itself: the same number, without close-on-exec.
                *((os.POSIX_SPAWN_DUP2, fd, fd) for fd in inherited),
            ]
            bootstrap = _BOOTSTRAP.format(root=_PACKAGE_PARENT)
            argv = [sys.executable, "-S", "-c", bootstrap, json.dumps(request)]
            pid = os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=actions)
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
    finally:
        for fd in inherited:
            os.close(fd)
    try:
        chunks = []
        while chunk := os.read(status_r, 65536):
            chunks.append(chunk)
    finally:
        os.close(status_r)
    try:
        reply = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        reply = {}
    if "pid" in reply:
        return pid
    os.waitpid(pid, 0)
    raise LaunchError(
        reply.get("error", "the exec helper died before starting the process"),
        reply.get("exit_code", process.RUNTIME_FAILURE),
    )


def _report(message: dict) -> None:
    try:
        os.write(STATUS_FD, json.dumps(message).encode() + b"\n")
        os.close(STATUS_FD)
    except OSError:
        pass  # the daemon stopped listening; the exit status still tells


def _process_spec(raw: dict) -> Any:
    """The ProcessSpec's fields as attributes (the class itself needs attrs, not loaded here)."""
    return SimpleNamespace(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def main() -> NoReturn:
    os.set_inheritable(STATUS_FD, False)
    try:
        request = json.loads(sys.argv[1])
        spec = _process_spec(request["process"])
        encoded_filter = request["seccomp_filter"]
        seccomp_filter = base64.b64decode(encoded_filter) if encoded_filter else None
        namespaces = [(int(fd), int(kind)) for fd, kind in request["namespaces"]]
        cgroup_ns = int(request["cgroup_namespace"])
        for fd, _kind in [*namespaces, (cgroup_ns, 0)]:
            if fd >= 0:
                os.set_inheritable(fd, False)
        cgroup_fds = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in request["cgroup_procs"]]
        for fd, kind in namespaces:
            syscalls.setns(fd, kind)
            os.close(fd)
    except OSError as exc:
        _report({"error": f"cannot enter the container: {exc}", "exit_code": 125})
        os._exit(125)
    error_r, error_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(error_r)
        try:
            process.join_cgroups(cgroup_fds)
            if cgroup_ns >= 0:
                # After joining: the container's cgroup must be inside our cgroup namespace.
                syscalls.setns(cgroup_ns, syscalls.CLONE_NEWCGROUP)
            process.run(
                spec, (0, 1, 2), privileged=request["privileged"], cgroup_fds=[],
                unshare_cgroup=False, seccomp_filter=seccomp_filter,
            )  # fmt: skip
        except BaseException as exc:
            process.report_and_exit(error_w, exc)
    os.close(error_w)
    for fd in cgroup_fds:
        os.close(fd)
    failure = process.read_report(error_r)
    os.close(error_r)
    if failure is not None:
        os.waitpid(child, 0)
        code, message = failure
        _report({"error": f"unable to start container process: {message}", "exit_code": code})
        os._exit(code)
    _report({"pid": child})
    _stand_in_for(child)


def _stand_in_for(child: int) -> NoReturn:
    """Let go of the stdio, forward signals to ``child`` and exit as it exits."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    for number in FORWARDED_SIGNALS:
        signal.signal(number, lambda received, _frame: _forward(child, received))
    while True:
        try:
            _, status = os.waitpid(child, 0)
        except ChildProcessError:
            os._exit(process.RUNTIME_FAILURE)
        if os.WIFEXITED(status):
            os._exit(os.WEXITSTATUS(status))
        if os.WIFSIGNALED(status):
            _die_of(os.WTERMSIG(status))


def _forward(child: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, number)


def _die_of(number: int) -> NoReturn:
    """End with the same signal as the process, so our wait status is its wait status."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if number not in (signal.SIGKILL, signal.SIGSTOP):  # those two have no handler to reset
        signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [number])
    os.kill(os.getpid(), number)
    os._exit(128 + number)


if __name__ == "__main__":
    main()
