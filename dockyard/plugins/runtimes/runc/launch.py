"""The ``runc`` launcher: write the OCI bundle and drive ``runc create`` / ``runc start``.

``launch(spec, stdio)`` runs in the container's supervisor, a child subreaper:

1. The supervisor enters a mount namespace of its own (a slave of the host's) and mounts the
   storage driver's root filesystem at ``<state_dir>/rootfs`` there. runc, started from it,
   copies that namespace for the container; the host never sees the mount, and it goes away
   with the supervisor and the container, even if the daemon is killed: nothing to unmount.
2. ``config.json`` goes into ``<state_dir>`` (the bundle, see :mod:`.bundle`).
3. ``runc create`` starts ``runc init`` in the container's namespaces and cgroups, waiting on
   its exec fifo; ``runc create`` exits and the init process is reparented to the supervisor,
   which can therefore wait for it. ``runc start`` then lets it exec the command.

Without a terminal, runc hands its own stdin, stdout and stderr to the container unchanged, so
``stdio`` becomes runc's. With a terminal, runc makes a pty inside the container (so the
process has a controlling terminal, job control, ``^C`` and ``SIGWINCH``) and passes its master
over ``--console-socket``; a relay process (:mod:`dockyard.linux.ptyrelay`) copies bytes
between that master and the supervisor's pty slave, which it puts in raw mode and makes its
own controlling terminal, so a resize of the supervisor's pty reaches it as ``SIGWINCH`` and
is copied on.

runc's error messages go to a JSON log (``--log``); the last one becomes the
:class:`LaunchError`, with docker's exit code classes. Standard library and low-level
dockyard modules only: this is imported on every container start.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
import subprocess

import attrs

from dockyard.core.interfaces import ContainerSpec, LaunchError
from dockyard.linux import idmap, mounts, nsmounts, ptyrelay, syscalls
from dockyard.plugins.runtimes.runc.bundle import (
    CONFIG_FILE,
    bundle_config,
    names_network_namespace,
    rootfs_path,
    shm_path,
)

DEFAULT_BINARY = "runc"
DEFAULT_CGROUP_PARENT = "dockyard"
NOT_FOUND = 127
CANNOT_EXECUTE = 126
RUNTIME_FAILURE = 125
PID_FILE = "runc.pid"
LOG_FILE = "runc.log"
#: Relative on purpose: runc resolves it in the bundle directory (it chdirs there), and the
#: absolute path of a deep data root can exceed the 108 bytes a socket address holds.
CONSOLE_SOCKET = "console.sock"
#: Where idmapped volumes and etc files are attached for runc to bind (in the supervisor's
#: mount namespace only, so nothing shows on the host).
IDMAPPED_DIR = "idmapped"
#: Where the clones of shared and slave binds' sources are attached for runc to bind.
PROPAGATED_DIR = "propagated"
RUNC_TIMEOUT = 60.0
#: util-linux's nsenter (Debian's essential util-linux): runs runc in a namespace file.
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"  # a path: exec is posix_spawn'd
#: Whether this process (the supervisor) has entered its own mount namespace yet.
_in_private_mount_namespace = False


@attrs.frozen
class Runc:
    """How to call the runc binary: which one, and the private state root it keeps."""

    binary: str = DEFAULT_BINARY
    #: runc's ``--root``: ours alone, so container ids never meet a system runc's or docker's.
    root: str = ""
    cgroup_parent: str = DEFAULT_CGROUP_PARENT

    @classmethod
    def from_options(cls, options: tuple[tuple[str, str], ...]) -> Runc:
        """The settings the daemon-side runtime passed in ``ContainerSpec.runtime_options``."""
        values = dict(options)
        return cls(
            binary=values.get("binary", DEFAULT_BINARY),
            root=values.get("root", ""),
            cgroup_parent=values.get("cgroup-parent", DEFAULT_CGROUP_PARENT),
        )

    def options(self) -> tuple[tuple[str, str], ...]:
        return (("binary", self.binary), ("root", self.root), ("cgroup-parent", self.cgroup_parent))

    def command(self, *args: str, log: str | None = None, netns: str = "") -> list[str]:
        """A full runc command line; with ``log``, runc writes its errors there as JSON.

        With ``netns`` (a namespace file the daemon made), runc runs inside that network
        namespace and the bundle names none: runc 1.1 joins the user namespace before the
        others, and from there could not join one the host's root owns. The container's
        processes inherit it, as ``runc exec``'s do.
        """
        argv = [self.binary]
        if self.root:
            argv += ["--root", self.root]
        if log is not None:
            argv += ["--log", log, "--log-format", "json"]
        if netns:
            argv = [NSENTER, f"--net={netns}", "--", *argv]
        return [*argv, *args]

    def state_exists(self, container_id: str) -> bool:
        return bool(self.root) and os.path.exists(os.path.join(self.root, container_id))

    def delete(self, container_id: str) -> None:
        """``runc delete --force``: kill what is left, remove the cgroups and runc's state."""
        if not self.state_exists(container_id):
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                self.command("delete", "--force", container_id),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=RUNC_TIMEOUT,
                check=False,
            )


def last_error(log_path: str, fallback: str, offset: int = 0) -> str:
    """The last error runc logged after ``offset`` (its JSON log has one object a line).

    ``fallback`` when there is none: the log is appended to by every runc call of the
    container, and an older error must not be blamed for this failure.
    """
    message = ""
    try:
        with open(log_path, "rb") as log:
            log.seek(offset)
            for line in log:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    message = str(entry.get("msg", ""))
    except OSError:
        pass
    return message or fallback


def exit_code_for(message: str) -> int:
    """docker's class of a start failure, from runc's message.

    Only a failure to exec the command counts (``unable to start container process: exec
    ...``): a missing bind mount source also says "no such file or directory", and is 125.
    """
    lowered = message.lower()
    if "container process: exec" not in lowered and "exec failed: exec" not in lowered:
        return RUNTIME_FAILURE
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return NOT_FOUND
    if "permission denied" in lowered or "exec format error" in lowered:
        return CANNOT_EXECUTE
    if "is a directory" in lowered or "not a directory" in lowered:
        return CANNOT_EXECUTE
    return RUNTIME_FAILURE


# --------------------------------------------------------------------------------------------
# The launcher
# --------------------------------------------------------------------------------------------


def launch(spec: ContainerSpec, stdio: tuple[int, int, int]) -> int:
    """Create and start the container with runc; return the host pid of its process."""
    if not spec.state_dir:
        raise LaunchError("the container has no state directory", RUNTIME_FAILURE)
    runc = Runc.from_options(spec.runtime_options)
    rootfs = rootfs_path(spec)
    if spec.uid_mappings or spec.gid_mappings:
        _check_reachable(spec, rootfs)
    try:
        clones = _clone_propagated(spec)
        _enter_private_mount_namespace()
        os.makedirs(rootfs, mode=0o755, exist_ok=True)
        if spec.uid_mappings or spec.gid_mappings:
            spec = _mount_remapped(spec, rootfs)
        else:
            _mount_rootfs(spec, rootfs)
        spec = _stage_propagated(spec, clones)
        _stage_shared_shm(spec)
        config = bundle_config(spec, runc.cgroup_parent)
        with open(os.path.join(spec.state_dir, CONFIG_FILE), "w") as config_file:
            json.dump(config, config_file, indent=1)
    except OSError as exc:
        raise LaunchError(
            f"cannot prepare the container's bundle: {exc}", RUNTIME_FAILURE
        ) from None
    # A container an earlier supervisor started and nobody deleted (the daemon died before
    # its clean-up): the id is ours again now.
    runc.delete(spec.id)
    state_dir = spec.state_dir
    pid_file = os.path.join(state_dir, PID_FILE)
    log_file = os.path.join(state_dir, LOG_FILE)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pid_file)
    listener = _console_listener(state_dir) if spec.process.terminal else None
    try:
        create = ["create", "--bundle", state_dir, "--pid-file", pid_file]
        if listener is not None:
            create += ["--console-socket", CONSOLE_SOCKET]
        # With a terminal runc needs no stdio of ours (the container gets its own pty).
        runc_stdio = (subprocess.DEVNULL,) * 3 if listener is not None else stdio
        try:
            netns = "" if names_network_namespace(spec) else spec.netns
            _run(runc, [*create, spec.id], log_file, runc_stdio, state_dir, netns=netns)
            with open(pid_file) as pid_source:
                pid = int(pid_source.read().strip())
            os.unlink(pid_file)
            if listener is not None:
                ptyrelay.start_relay(outer=stdio[0], inner=_receive_console(listener))
            _run(runc, ["start", spec.id], log_file, (subprocess.DEVNULL,) * 3, state_dir)
        except BaseException:
            runc.delete(spec.id)  # runc undoes a failed create itself, mostly: leave nothing
            raise
    except OSError as exc:
        raise LaunchError(f"cannot start the container with runc: {exc}", RUNTIME_FAILURE) from None
    finally:
        if listener is not None:
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(state_dir, CONSOLE_SOCKET))
    return pid


def _run(
    runc: Runc,
    args: list[str],
    log_file: str,
    stdio: tuple[int, int, int],
    cwd: str,
    netns: str = "",
) -> None:
    """Run one runc command to its end; its failure becomes a :class:`LaunchError`."""
    log_size = _size(log_file)
    try:
        result = subprocess.run(
            runc.command(*args, log=log_file, netns=netns),
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            cwd=cwd,
            timeout=RUNC_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise LaunchError(
            f"the runc binary {runc.binary!r} is not installed", RUNTIME_FAILURE
        ) from None
    except subprocess.TimeoutExpired:
        raise LaunchError(
            f"runc {args[0]} did not finish in {RUNC_TIMEOUT:.0f}s", RUNTIME_FAILURE
        ) from None
    if result.returncode != 0:
        fallback = f"runc {args[0]} exited with status {result.returncode}"
        message = last_error(log_file, fallback, offset=log_size)
        raise LaunchError(message, exit_code_for(message))


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _enter_private_mount_namespace() -> None:
    """Give the supervisor a mount namespace of its own (once), receiving the host's changes."""
    global _in_private_mount_namespace
    if _in_private_mount_namespace:
        return
    syscalls.unshare(syscalls.CLONE_NEWNS)
    # A slave: our mounts stay here, while the host's unmounts still reach us (so we never pin
    # a file system the host has let go of).
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
    _in_private_mount_namespace = True


def _mount_rootfs(spec: ContainerSpec, rootfs: str) -> None:
    if not spec.rootfs:
        raise OSError(errno.EINVAL, "the container has no root filesystem mounts")
    mounts.mount_all(spec.rootfs, rootfs)


def _mount_remapped(spec: ContainerSpec, rootfs: str) -> ContainerSpec:
    """Mount the root filesystem, volumes and etc files idmapped (see :mod:`.idmap`).

    runc 1.1 cannot idmap a mount itself: it gets the root ready-made, and each volume and
    etc file as a bind of an idmapped clone attached in the state directory (a bind keeps
    the idmapping). Returns the spec with those sources replaced.
    """
    if not spec.rootfs:
        raise OSError(errno.EINVAL, "the container has no root filesystem mounts")
    uid, gid = idmap.root_ids(spec.uid_mappings, spec.gid_mappings)
    userns_fd = idmap.user_namespace(spec.uid_mappings, spec.gid_mappings)
    try:
        with idmap.filesystem_ids(uid, gid):
            idmap.mount_rootfs(spec.rootfs, rootfs, userns_fd)
        binds = tuple(
            attrs.evolve(bind, source=_stage(bind.source, spec, str(index), userns_fd))
            if bind.idmap
            else bind
            for index, bind in enumerate(spec.mounts)
        )
        etc_files = tuple(
            (_stage(host_file, spec, f"etc-{index}", userns_fd), destination)
            if idmap.is_inside(host_file, spec.state_dir)
            else (host_file, destination)
            for index, (host_file, destination) in enumerate(spec.etc_files)
        )
    finally:
        os.close(userns_fd)
    return attrs.evolve(spec, mounts=binds, etc_files=etc_files)


def _clone_propagated(spec: ContainerSpec) -> dict[int, int]:
    """Detached clones of the sources of the shared and slave binds, by index: taken in the
    host's mount namespace, they stay in the peer groups of the host's mounts (in our slave
    namespace the host's changes would still reach them, but not the container's the host)."""
    clones: dict[int, int] = {}
    try:
        for index, bind in enumerate(spec.mounts):
            if mounts.keeps_host_peers(bind.propagation):
                clones[index] = idmap.clone(bind.source, None, bind.read_only, bind.recursive)
    except BaseException:
        for fd in clones.values():
            os.close(fd)
        raise
    return clones


def _stage_propagated(spec: ContainerSpec, clones: dict[int, int]) -> ContainerSpec:
    """Attach each clone at ``<state_dir>/propagated/<index>`` (in our namespace only) for
    runc to bind; returns the spec with those sources replaced."""
    if not clones:
        return spec
    binds = list(spec.mounts)
    try:
        for index, fd in clones.items():
            staged = os.path.join(spec.state_dir, PROPAGATED_DIR, str(index))
            mounts.ensure_mountpoint(staged, directory=os.path.isdir(binds[index].source))
            syscalls.move_mount(fd, staged)
            binds[index] = attrs.evolve(binds[index], source=staged)
    finally:
        for fd in clones.values():
            os.close(fd)
    return attrs.evolve(spec, mounts=tuple(binds))


def _stage(source: str, spec: ContainerSpec, name: str, userns_fd: int) -> str:
    """Attach an idmapped clone of ``source`` at ``<state_dir>/idmapped/<name>``."""
    staged = os.path.join(spec.state_dir, IDMAPPED_DIR, name)
    mounts.ensure_mountpoint(staged, directory=os.path.isdir(source))
    fd = idmap.clone(source, userns_fd)
    try:
        syscalls.move_mount(fd, staged)
    finally:
        os.close(fd)
    return staged


def _stage_shared_shm(spec: ContainerSpec) -> None:
    """Attach the /dev/shm of the IPC namespace joined at ``shm_path`` for runc to bind.

    Taken from its container's mount namespace by a child (entering a mount namespace needs
    a single-threaded process); attached in ours, which runc and the child share.
    """
    donor = nsmounts.mount_namespace_beside(spec.ipc_namespace)
    if not donor:
        return
    target = shm_path(spec)
    os.makedirs(target, exist_ok=True)
    child = os.fork()
    if child == 0:
        try:
            fd = nsmounts.clone_from_namespace(donor, "/dev/shm")
            syscalls.move_mount(fd, target)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _pid, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(errno.EINVAL, f"cannot reach the /dev/shm of {spec.ipc_namespace}")


def _check_reachable(spec: ContainerSpec, rootfs: str) -> None:
    """Refuse, before making anything, a root filesystem the remapped root cannot reach.

    runc bind-mounts the root onto itself by its path from inside the user namespace, so
    every directory above it must let the container's root search it (the namespaces runtime
    needs no such thing: it steps in before entering the user namespace).
    """
    try:
        uid, gid = idmap.root_ids(spec.uid_mappings, spec.gid_mappings)
        blocked = _unsearchable_parents(rootfs, uid, gid)
    except OSError as exc:
        raise LaunchError(f"cannot start the container with runc: {exc}", RUNTIME_FAILURE) from None
    if blocked:
        raise LaunchError(
            f"{', '.join(blocked)} {'does' if len(blocked) == 1 else 'do'} not let the remapped "
            f"root (uid {uid}) search {'it' if len(blocked) == 1 else 'them'}, and runc reaches "
            "the root filesystem by its path from inside the user namespace: allow o+x there "
            "(as dockerd's userns-remap requires of its data root's parents), or use the "
            "namespaces runtime",
            RUNTIME_FAILURE,
        )


def _unsearchable_parents(path: str, uid: int, gid: int) -> list[str]:
    """The directories above ``path``, from the top, that host ``uid``/``gid`` may not search."""
    blocked: list[str] = []
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        info = os.stat(directory)
        if info.st_uid == uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            blocked.insert(0, directory)
        if directory == "/":
            return blocked
        directory = os.path.dirname(directory)


# --------------------------------------------------------------------------------------------
# The terminal
# --------------------------------------------------------------------------------------------


def _console_listener(state_dir: str) -> socket.socket:
    path = os.path.join(state_dir, CONSOLE_SOCKET)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    try:
        os.chdir(state_dir)  # bind by the relative name, as runc will connect
        listener.bind(CONSOLE_SOCKET)
    finally:
        os.chdir(cwd)
    # runc connects and sends during ``runc create``, before we accept: the backlog holds it.
    listener.listen(1)
    return listener


def _receive_console(listener: socket.socket) -> int:
    """The pty master runc sent (SCM_RIGHTS) during ``runc create``."""
    listener.settimeout(RUNC_TIMEOUT)
    connection, _ = listener.accept()
    with connection:
        _message, fds, _flags, _address = socket.recv_fds(connection, 4096, 1)
    if not fds:
        raise OSError(errno.EPROTO, "runc sent no terminal over the console socket")
    return fds[0]
