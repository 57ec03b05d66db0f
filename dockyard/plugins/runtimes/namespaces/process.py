"""The last steps before a container process runs: cgroup, credentials, stdio, exec.

Shared by the launcher (the container's init process) and the exec helper. Everything here runs
in a forked child that must either ``execve`` or report an error on ``error_fd`` and exit: it
never returns. Errors are reported as ``b"<exit code>\\n<message>"``, the code being docker's
class of failure (127 not found, 126 cannot execute, 125 anything else).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import resource
import signal
import stat
import termios
from typing import TYPE_CHECKING, NoReturn

from dockyard.linux import capabilities, seccomp, syscalls

if TYPE_CHECKING:
    # Only for annotations: the exec helper runs without site-packages (no attrs) to start fast.
    from dockyard.core.interfaces import ProcessSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOT_FOUND = 127
CANNOT_EXECUTE = 126
RUNTIME_FAILURE = 125
_SYS_CLOSE_RANGE = 436  # the same number on every architecture (a "new" syscall)
_CLOSE_RANGE_CLOEXEC = 4


class ProcessFailure(Exception):
    """A failure of the child before exec, with docker's exit code class."""

    def __init__(self, message: str, exit_code: int = RUNTIME_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def report_and_exit(error_fd: int, exc: BaseException) -> NoReturn:
    """Write the failure to the parent and end the child without running Python's clean-up."""
    if isinstance(exc, ProcessFailure):
        code, message = exc.exit_code, str(exc)
    elif isinstance(exc, OSError):
        code, message = RUNTIME_FAILURE, str(exc)
    else:
        code, message = RUNTIME_FAILURE, f"{type(exc).__name__}: {exc}"
    try:
        os.write(error_fd, f"{code}\n{message}".encode(errors="replace"))
    finally:
        os._exit(code)


def read_report(error_fd: int) -> tuple[int, str] | None:
    """Read the child's report until the pipe closes: ``None`` means it exec'd."""
    chunks = []
    while True:
        try:
            chunk = os.read(error_fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        chunks.append(chunk)
    if not chunks:
        return None
    text = b"".join(chunks).decode(errors="replace")
    code, _, message = text.partition("\n")
    return (int(code) if code.isdigit() else RUNTIME_FAILURE), message


def join_cgroups(procs_fds: list[int]) -> None:
    """Move the calling process into the cgroups whose ``cgroup.procs`` these fds are."""
    for fd in procs_fds:
        os.write(fd, b"0")
        os.close(fd)


def environment_path(env: tuple[str, ...] | list[str]) -> str:
    for entry in env:
        if entry.startswith("PATH="):
            return entry[5:]
    return DEFAULT_PATH


def resolve_executable(name: str, env: tuple[str, ...] | list[str]) -> str:
    """Find ``name`` as Go's ``exec.LookPath`` does in runc, with docker's error wording."""
    if "/" in name:
        _check_executable(name, name)
        return name
    for directory in environment_path(env).split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            _check_executable(name, candidate)
        except ProcessFailure:
            continue
        return candidate
    raise ProcessFailure(f'exec: "{name}": executable file not found in $PATH', NOT_FOUND)


def _check_executable(name: str, path: str) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ProcessFailure(
            f'exec: "{name}": stat {path}: no such file or directory', NOT_FOUND
        ) from None
    except OSError as exc:
        raise ProcessFailure(
            f'exec: "{name}": stat {path}: {os.strerror(exc.errno or 0).lower()}', CANNOT_EXECUTE
        ) from None
    if stat.S_ISDIR(info.st_mode) or not os.access(path, os.X_OK):
        raise ProcessFailure(f'exec: "{name}": permission denied', CANNOT_EXECUTE)


def _exec_failure(name: str, exc: OSError) -> ProcessFailure:
    reason = os.strerror(exc.errno or 0).lower()
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ProcessFailure(f"exec {name}: {reason}", NOT_FOUND)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR, errno.ETXTBSY):
        return ProcessFailure(f"exec {name}: {reason}", CANNOT_EXECUTE)
    return ProcessFailure(f"exec {name}: {reason}", RUNTIME_FAILURE)


def apply_credentials(process: ProcessSpec, privileged: bool) -> None:
    """Bounding set, user and groups, then the other capability sets, as runc orders them.

    The bounding set is dropped first (that needs CAP_SETPCAP), the ids are changed with
    KEEPCAPS so the permitted set survives, and capset then sets effective and permitted.
    The inheritable set stays empty and no ambient capability is raised, as docker does since
    CVE-2022-24769: so a non-root user ends up with none after exec, like under docker.
    """
    if privileged:
        keep = capabilities.bounding_set()
    else:
        keep = capabilities.capability_mask(process.capabilities)
        capabilities.drop_bounding_set(keep)
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1)
    os.setgroups(list(process.additional_gids))
    os.setresgid(process.gid, process.gid, process.gid)
    os.setresuid(process.uid, process.uid, process.uid)
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 0)
    capabilities.set_capabilities(effective=keep, permitted=keep, inheritable=0)
    if process.no_new_privileges:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)


def apply_limits(process: ProcessSpec) -> None:
    """``--ulimit`` and ``--oom-score-adj``, while still root: raising a hard limit and
    lowering the OOM score need privileges the process may give up next."""
    for limit in getattr(process, "rlimits", ()):
        # The exec helper sees the spec as JSON: dicts rather than Rlimit records.
        kind, soft, hard = (
            (limit["type"], limit["soft"], limit["hard"]) if isinstance(limit, dict)
            else (limit.type, limit.soft, limit.hard)
        )  # fmt: skip
        number = getattr(resource, kind, None)
        if number is None:
            raise ProcessFailure(f"unknown resource limit {kind}")
        try:
            resource.setrlimit(number, (soft, hard))
        except (OSError, ValueError) as exc:
            raise ProcessFailure(f"error setting rlimit type {kind}: {exc}") from None
    adjustment = getattr(process, "oom_score_adj", 0)
    if adjustment:
        with open("/proc/self/oom_score_adj", "w") as score:
            score.write(str(adjustment))


def install_stdio(stdio: tuple[int, int, int], terminal: bool) -> None:
    """Make ``stdio`` fds 0, 1, 2; for a terminal, a new session with it as controlling tty."""
    # Copies first, so dup2 onto 0-2 cannot clobber a source that happens to be 0-2.
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in stdio]
    for target, fd in enumerate(copies):
        os.dup2(fd, target)
        os.close(fd)
    os.setsid()
    if terminal:
        try:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        except PermissionError:
            # The tty is still the controlling terminal of the supervisor's session: take it.
            fcntl.ioctl(0, termios.TIOCSCTTY, 1)


def close_other_fds() -> None:
    """Mark every fd above 2 close-on-exec (the error pipe must survive until the exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_CLOSE_RANGE, 3, ctypes.c_uint(0xFFFFFFFF), _CLOSE_RANGE_CLOEXEC) == 0:
        return
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def reset_signals() -> None:
    """Default dispositions and an empty mask: Python ignores SIGPIPE and SIGXFSZ, and an
    ignored signal stays ignored across exec."""
    signal.set_wakeup_fd(-1)
    for number in signal.valid_signals():
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError, ValueError):
            signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def seccomp_program(process: ProcessSpec) -> bytes | None:
    """The seccomp filter ``process`` gets (``None``: unconfined), compiled or from the cache.

    Compiling takes about 10 ms: the launcher's module compiles docker's default set once in
    the zygote, and the daemon compiles an exec's before it starts the exec helper.
    """
    if process.seccomp == "unconfined":
        return None
    try:
        return seccomp.filter_program(process.capabilities)
    except seccomp.SeccompUnavailable as exc:
        raise ProcessFailure(f"seccomp: {exc}") from None


def run(
    process: ProcessSpec,
    stdio: tuple[int, int, int],
    *,
    privileged: bool,
    cgroup_fds: list[int],
    unshare_cgroup: bool,
    seccomp_filter: bytes | None,
) -> NoReturn:
    """Join the cgroups, drop privileges, set up stdio and exec ``process``; never returns.

    ``seccomp_filter`` is :func:`seccomp_program`'s for ``process``. Raises
    :class:`ProcessFailure` (or ``OSError``) for the caller to report.
    """
    join_cgroups(cgroup_fds)
    if unshare_cgroup:
        # After joining, so the container's cgroup is the root of its cgroup namespace.
        syscalls.unshare(syscalls.CLONE_NEWCGROUP)
    apply_limits(process)
    if seccomp_filter is not None:
        # Last of what needs refused calls, and while still holding CAP_SYS_ADMIN: the kernel
        # then takes a filter without no_new_privs, which docker leaves off by default.
        syscalls.install_seccomp_filter(seccomp_filter)
    apply_credentials(process, privileged)
    install_stdio(stdio, process.terminal)
    close_other_fds()
    try:
        os.chdir(process.cwd or "/")
    except OSError as exc:
        raise ProcessFailure(
            f'chdir to cwd ("{process.cwd}") set in config.json failed: '
            f"{os.strerror(exc.errno or 0).lower()}"
        ) from None
    if not process.args:
        raise ProcessFailure("no command specified")
    path = resolve_executable(process.args[0], process.env)
    reset_signals()
    env = {}
    for entry in process.env:
        key, _, value = entry.partition("=")
        env[key] = value
    try:
        os.execve(path, list(process.args), env)
    except OSError as exc:
        raise _exec_failure(process.args[0], exc) from None
