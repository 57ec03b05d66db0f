"""The launcher: start a container's init process in new namespaces, from the supervisor.

``launch(spec, stdio)`` runs in the container's supervisor (a child subreaper). It creates the
container's cgroups, then forks the init process into a new PID namespace, so the child is pid 1
there and the supervisor's direct child on the host. The child unshares the other namespaces,
builds the root filesystem under ``<state_dir>/rootfs`` in its private mount namespace (nothing
it mounts is visible on the host, and all of it goes away with the namespace), pivots into it,
drops privileges and execs. It reports a failure through a close-on-exec pipe: EOF with no data
means the exec happened.

With a user namespace the order must change: PID, mount and the other namespaces have to be
owned by the user namespace, or the child could not mount ``/proc`` in them. So an intermediate
child mounts the root filesystem as real root, through idmapped mounts carrying the container's
maps (see :mod:`.idmap`: the image's files, owned by 0 on disk, are the container root's), and
opens every bind mount's source as a detached mount (the container's root could neither make
an idmapped mount nor always reach a source by its path). Then it enters a new user namespace
(the supervisor writes its uid and gid maps), unshares the rest and forks the init process,
which the supervisor, as subreaper, inherits; the init process attaches those mounts.

Standard library, ctypes and :mod:`dockyard.core.interfaces` only: this is imported on every
container start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
import struct
from collections.abc import Sequence
from typing import NamedTuple, NoReturn

from dockyard.core.capabilities import DEFAULT_CAPABILITIES
from dockyard.core.interfaces import ContainerSpec, LaunchError, TmpfsMount
from dockyard.linux import idmap, mounts, nsmounts, ptyrelay, seccomp, syscalls
from dockyard.linux.cgroups import (
    CGROUP_ROOT,
    CgroupError,
    ContainerCgroup,
    hierarchies,
)
from dockyard.plugins.runtimes.namespaces import process

# Compiling the seccomp filter takes about 10 ms: compile docker's default set once here, in
# the zygote that imports this module, rather than on every container start.
seccomp.precompile(DEFAULT_CAPABILITIES)

DEFAULT_CGROUP_PARENT = "dockyard"
ROOTFS_DIR = "rootfs"
#: With a user namespace the root is mounted one level down, in a directory anyone may search:
#: the container's root (an unprivileged host uid) must look the mount point up by name.
USERNS_DIR = "userns"

#: The device nodes every container gets in /dev: name -> (major, minor).
STANDARD_DEVICES = {
    "null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9),
    "tty": (5, 0),
}  # fmt: skip
STANDARD_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}
#: The host's cgroup hierarchies, as the container will see them (read before forking).
_cgroup_hierarchies: list[tuple[str, str, str]] = []
#: Seconds the launcher waits for the container's terminal once its process has exec'd.
TERMINAL_TIMEOUT = 30.0
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_PROC_FLAGS = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC


def cgroup_parent(spec: ContainerSpec) -> str:
    """The cgroup parent the runtime's config asked for (passed in the spec's options)."""
    return dict(spec.runtime_options).get("cgroup-parent", DEFAULT_CGROUP_PARENT)


def rootfs_path(spec: ContainerSpec) -> str:
    if spec.uid_mappings or spec.gid_mappings:
        return os.path.join(spec.state_dir, USERNS_DIR, ROOTFS_DIR)
    return os.path.join(spec.state_dir, ROOTFS_DIR)


def launch(spec: ContainerSpec, stdio: tuple[int, int, int]) -> int:
    """Start the container's init process; return its host pid once it has exec'd."""
    if not spec.state_dir:
        raise LaunchError("the container has no state directory", 125)
    try:
        cgroup = ContainerCgroup(spec.id, cgroup_parent(spec))
        cgroup.create(spec.resources, privileged=spec.privileged)
    except (OSError, CgroupError) as exc:
        raise LaunchError(f"cannot create the container's cgroup: {exc}", 125) from None
    cgroup_fds: list[int] = []
    rootfs = rootfs_path(spec)
    global _cgroup_hierarchies
    _cgroup_hierarchies = hierarchies()  # read now: the host's mount table is out of sight later
    error_r, error_w = os.pipe()
    console = _console_pair(spec)
    try:
        cgroup_fds = cgroup.open_procs_files()
        os.makedirs(rootfs, mode=0o755, exist_ok=True)
        if spec.uid_mappings or spec.gid_mappings:
            os.chmod(os.path.dirname(rootfs), 0o711)
            pid = _fork_in_user_namespace(spec, stdio, rootfs, cgroup_fds, error_w, console)
        else:
            pid = _fork_init(spec, stdio, rootfs, cgroup_fds, error_w, console)
    except BaseException as exc:
        for fd in (error_r, error_w, *cgroup_fds):
            os.close(fd)
        _close_console(console)
        _discard(cgroup, rootfs)
        if isinstance(exc, LaunchError):
            raise
        if isinstance(exc, OSError):
            raise LaunchError(f"cannot start the container: {exc}", 125) from None
        raise
    os.close(error_w)
    for fd in cgroup_fds:
        os.close(fd)
    try:
        failure = process.read_report(error_r)
        if failure is None and console is not None:
            _relay_terminal(console[0], stdio[0])
    finally:
        os.close(error_r)
        _close_console(console)
    if failure is None:
        return pid
    _wait(pid)
    _discard(cgroup, rootfs)
    code, message = failure
    raise LaunchError(f"unable to start container process: {message}", code)


def _discard(cgroup: ContainerCgroup, rootfs: str) -> None:
    with contextlib.suppress(OSError, CgroupError):
        cgroup.remove()
    with contextlib.suppress(OSError):
        os.rmdir(rootfs)
    if os.path.basename(os.path.dirname(rootfs)) == USERNS_DIR:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(rootfs))


def _wait(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


# --------------------------------------------------------------------------------------------
# Forking
# --------------------------------------------------------------------------------------------


def _fork_init(
    spec: ContainerSpec,
    stdio: tuple[int, int, int],
    rootfs: str,
    cgroup_fds: list[int],
    error_w: int,
    console: _Console,
) -> int:
    """Fork the init process into a new PID namespace; return its host pid."""
    own_pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if os.readlink("/proc/self/ns/pid_for_children") != os.readlink("/proc/self/ns/pid"):
            # An earlier launch in this process: its namespace (now maybe dead) is still where
            # our children would go. Joining our own active one again is always allowed.
            syscalls.setns(own_pid_ns, syscalls.CLONE_NEWPID)
        _enter_pid_namespace(spec.pid_namespace)
        try:
            pid = os.fork()
        except BaseException:
            syscalls.setns(own_pid_ns, syscalls.CLONE_NEWPID)
            raise
        if pid == 0:
            _container_init(spec, stdio, rootfs, cgroup_fds, error_w, True, console=console)
        # Later children of the supervisor (a restart's launch, anything it runs) stay on the
        # host rather than join, or fail to join, the container's namespace.
        syscalls.setns(own_pid_ns, syscalls.CLONE_NEWPID)
        return pid
    finally:
        os.close(own_pid_ns)


def _fork_in_user_namespace(
    spec: ContainerSpec,
    stdio: tuple[int, int, int],
    rootfs: str,
    cgroup_fds: list[int],
    error_w: int,
    console: _Console,
) -> int:
    """Start the init process through an intermediate child that makes the user namespace."""
    ready_r, ready_w = os.pipe()  # intermediate -> us: "user namespace made"
    maps_r, maps_w = os.pipe()  # us -> intermediate: "maps written"
    pid_r, pid_w = os.pipe()  # intermediate -> us: host pid of the init process
    intermediate = os.fork()
    if intermediate == 0:
        for fd in (ready_r, maps_w, pid_r):
            os.close(fd)
        try:
            _intermediate(spec, stdio, rootfs, cgroup_fds, error_w, ready_w, maps_r, pid_w, console)
        except BaseException as exc:
            process.report_and_exit(error_w, exc)
    for fd in (ready_w, maps_r, pid_w):
        os.close(fd)
    try:
        if os.read(ready_r, 1) == b"u":
            idmap.write_id_maps(intermediate, spec.uid_mappings, spec.gid_mappings)
            os.write(maps_w, b"m")
        os.close(maps_w)
        maps_w = -1
        reply = b""
        while chunk := os.read(pid_r, 64):
            reply += chunk
    finally:
        for fd in (ready_r, pid_r, maps_w):
            if fd >= 0:
                os.close(fd)
        _wait(intermediate)
    if not reply:
        return intermediate  # it failed before forking: the error pipe tells why
    return int(reply)


def _intermediate(
    spec: ContainerSpec,
    stdio: tuple[int, int, int],
    rootfs: str,
    cgroup_fds: list[int],
    error_w: int,
    ready_w: int,
    maps_r: int,
    pid_w: int,
    console: _Console,
) -> NoReturn:
    # The root filesystem is mounted as real root: overlayfs must read the layers' trusted.*
    # whiteout attributes, which a user namespace cannot see, and only the host's root may
    # make idmapped mounts.
    syscalls.unshare(syscalls.CLONE_NEWNS)
    clones = _clone_propagated(spec)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    if not spec.rootfs:
        raise process.ProcessFailure("the container has no root filesystem mounts")
    userns_fd = idmap.user_namespace(spec.uid_mappings, spec.gid_mappings)
    try:
        with idmap.filesystem_ids(*idmap.root_ids(spec.uid_mappings, spec.gid_mappings)):
            idmap.mount_rootfs(spec.rootfs, rootfs, userns_fd)
        binds = _open_bind_sources(spec, userns_fd, clones)
    finally:
        os.close(userns_fd)
    # The init process starts from here: the path to it may not be searchable once it runs as
    # a mapped uid.
    os.chdir(rootfs)
    if spec.netns and spec.network_mode != "host":
        _join_network(spec.netns)  # as the host's root: from inside the user namespace, never
    syscalls.unshare(syscalls.CLONE_NEWUSER)
    os.write(ready_w, b"u")
    os.close(ready_w)
    if os.read(maps_r, 1) != b"m":
        raise process.ProcessFailure("the supervisor did not write the user namespace's maps")
    os.close(maps_r)
    # Become the namespace's root (where it is mapped) so what follows runs as it.
    for setter in (os.setresgid, os.setresuid):
        with contextlib.suppress(OSError):
            setter(0, 0, 0)
    syscalls.unshare(syscalls.CLONE_NEWPID)
    init = os.fork()
    if init == 0:
        os.close(pid_w)
        _container_init(
            spec, stdio, rootfs, cgroup_fds, error_w, False, binds=binds, console=console
        )
    os.write(pid_w, str(init).encode())
    os._exit(0)


class _Bind(NamedTuple):
    """A bind mount to make in the container."""

    source: str
    destination: str
    read_only: bool
    #: A detached mount of the source opened beforehand (by the intermediate, or before the
    #: namespace turned private), or None to bind the source by path.
    fd: int | None = None
    propagation: str = ""
    recursive: bool = True


def _bind_list(
    spec: ContainerSpec, fds: Sequence[int | None] | None = None
) -> list[_Bind | TmpfsMount]:
    """The bind and tmpfs mounts and then the etc files, parents before children.

    The sort is stable: a mount inside another bind mount lands on top of it, and an etc file
    on top of a bind mount of /etc.
    """
    sources = [
        _Bind(b.source, b.destination, b.read_only, None, b.propagation, b.recursive)
        for b in spec.mounts
    ]
    sources += [_Bind(host_file, destination, False) for host_file, destination in spec.etc_files]
    opened: list[int | None] = list(fds) if fds is not None else [None] * len(sources)
    binds = [source._replace(fd=fd) for source, fd in zip(sources, opened, strict=True)]
    depth = len(spec.mounts)
    mounts: list[_Bind | TmpfsMount] = [*binds[:depth], *spec.tmpfs]
    return sorted(mounts, key=_depth) + binds[depth:]


def _depth(mount: _Bind | TmpfsMount) -> int:
    return len(mount.destination.rstrip("/").split("/"))


def _clone_propagated(spec: ContainerSpec) -> list[int | None]:
    """Detached clones of the sources of the shared and slave binds, one per bind (None for
    the others): taken before the mount namespace turns private, they stay in the peer
    groups of the host's mounts, where a clone made after would be private too."""
    clones: list[int | None] = []
    try:
        for bind in spec.mounts:
            clones.append(
                _open_bind(bind.source, None, bind.read_only, bind.recursive)
                if mounts.keeps_host_peers(bind.propagation)
                else None
            )
    except BaseException:
        for fd in clones:
            if fd is not None:
                os.close(fd)
        raise
    return clones + [None] * len(spec.etc_files)


def _open_bind_sources(
    spec: ContainerSpec, userns_fd: int, clones: Sequence[int | None]
) -> list[_Bind | TmpfsMount]:
    """Open every bind source as a detached mount, while we are the host's root (those of
    ``clones`` are open already).

    Volumes (``idmap``) and the etc files the core wrote in the state directory get the
    container's maps, as docker's remapped root owns them; host paths are bound as they are.
    """
    fds: list[int] = []
    try:
        for bind, clone in zip(spec.mounts, clones, strict=False):
            mapped = userns_fd if bind.idmap else None
            if clone is None:
                clone = _open_bind(bind.source, mapped, bind.read_only, bind.recursive)
            fds.append(clone)
        for host_file, _destination in spec.etc_files:
            ours = idmap.is_inside(host_file, spec.state_dir)
            fds.append(_open_bind(host_file, userns_fd if ours else None, False))
    except BaseException:
        for fd in {*fds, *clones}:
            if fd is not None:
                os.close(fd)
        raise
    return _bind_list(spec, fds)


def _open_bind(source: str, userns_fd: int | None, read_only: bool, recursive: bool = True) -> int:
    try:
        # Recursive like "rbind", except an idmapped clone: a mount below the source on a
        # filesystem without idmapping support would fail the whole clone.
        return idmap.clone(source, userns_fd, read_only, recursive=recursive and userns_fd is None)
    except FileNotFoundError:
        raise process.ProcessFailure(
            f"error mounting {source!r}: bind source path does not exist: {source}"
        ) from None


# --------------------------------------------------------------------------------------------
# The init process, before exec
# --------------------------------------------------------------------------------------------


def _container_init(
    spec: ContainerSpec,
    stdio: tuple[int, int, int],
    rootfs: str,
    cgroup_fds: list[int],
    error_w: int,
    mount_rootfs: bool,
    binds: list[_Bind | TmpfsMount] | None = None,
    console: _Console = None,
) -> NoReturn:
    try:
        flags = syscalls.CLONE_NEWNS | _shared_namespaces(spec)
        own_network = spec.network_mode != "host"
        if own_network and not spec.netns:
            flags |= syscalls.CLONE_NEWNET
        elif own_network and mount_rootfs:
            _join_network(spec.netns)  # with a user namespace, the intermediate joined it
        syscalls.unshare(flags)
        if binds is None:
            binds = _bind_list(spec, _clone_propagated(spec))
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        if mount_rootfs:
            _mount_rootfs(spec, rootfs)
        else:
            # The mount made before the user namespace is locked here, and pivot_root refuses a
            # locked new root: put a mount of our own on top of it (we are in its root
            # directory), and step into that one by name (".." is the world-searchable dir).
            syscalls.mount(".", ".", None, syscalls.MS_BIND | syscalls.MS_REC)
            os.chdir(os.path.join("..", ROOTFS_DIR))
            rootfs = "."
        _build_root(spec, rootfs, stdio, own_network, binds)
        _pivot(rootfs)
        if console is not None:
            stdio = _container_terminal(console[1], stdio[0])
        if spec.domainname and not spec.uts_namespace:
            syscalls.setdomainname(spec.domainname)  # before the sysctls: a user's wins
        _write_sysctls(spec.sysctls)  # before /proc/sys turns read-only
        _restrict_paths(spec)
        if spec.read_only_rootfs:
            mounts.remount_read_only("/")
        if spec.hostname and not spec.uts_namespace:
            syscalls.sethostname(spec.hostname)
        if own_network and not spec.netns:
            _loopback_up()
        # Joined only now, so the memory our setup dirties is not charged to the container.
        process.join_cgroups(cgroup_fds)
        if spec.cgroup_namespace == "host":
            _mount_cgroups(read_only=not spec.privileged)
            _bind_own_cgroups(read_only=not spec.privileged)
        elif _has_cgroup_namespaces():
            # After joining, so the container's cgroup is the root of its cgroup namespace.
            syscalls.unshare(syscalls.CLONE_NEWCGROUP)
            _mount_cgroups(read_only=not spec.privileged)
        process.run(
            spec.process, stdio, privileged=spec.privileged, cgroup_fds=[], unshare_cgroup=False,
            seccomp_filter=process.seccomp_program(spec.process),
        )  # fmt: skip
    except BaseException as exc:
        process.report_and_exit(error_w, exc)


# --------------------------------------------------------------------------------------------
# The terminal: a pty of the container's own devpts
# --------------------------------------------------------------------------------------------

#: With a terminal, a socket pair: the launcher's end, and the init process's, which sends the
#: master of the pty it opens in the container's devpts.
_Console = tuple[socket.socket, socket.socket] | None


def _console_pair(spec: ContainerSpec) -> _Console:
    if not spec.process.terminal:
        return None
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def _close_console(console: _Console) -> None:
    if console is not None:
        for end in console:
            end.close()


def _container_terminal(theirs: socket.socket, outer: int) -> tuple[int, int, int]:
    """Open a pty in the container's devpts (its terminal is ``/dev/pts/0``, as under runc),
    show it at /dev/console, send its master to the launcher; the slave is the stdio."""
    master, slave = os.openpty()  # /dev/ptmx: the container's pts/ptmx, after the pivot
    ptyrelay.copy_window_size(outer, slave)  # before the process runs: its first output fits
    syscalls.mount(os.ttyname(slave), "/dev/console", None, syscalls.MS_BIND)
    socket.send_fds(theirs, [b"t"], [master])
    os.close(master)
    return slave, slave, slave


def _relay_terminal(ours: socket.socket, outer: int) -> None:
    """Join the container's pty (the master its init sent) to the supervisor's pty slave."""
    ours.settimeout(TERMINAL_TIMEOUT)
    _message, fds, _flags, _address = socket.recv_fds(ours, 16, 1)
    if not fds:
        raise LaunchError("the container's init process sent no terminal", 125)
    ptyrelay.start_relay(outer=outer, inner=fds[0])


# --------------------------------------------------------------------------------------------
# Namespaces shared with the host or another container, /dev/shm, sysctls
# --------------------------------------------------------------------------------------------


def _enter_pid_namespace(namespace: str) -> None:
    """Where our next child goes: a new PID namespace, the host's (ours), or a joined one."""
    if namespace == "host":
        return
    if not namespace:
        syscalls.unshare(syscalls.CLONE_NEWPID)
        return
    _join(namespace, syscalls.CLONE_NEWPID)


def _shared_namespaces(spec: ContainerSpec) -> int:
    """Join the IPC and UTS namespaces the spec names; the unshare flags of those it makes."""
    flags = 0
    for namespace, kind in (
        (spec.ipc_namespace, syscalls.CLONE_NEWIPC),
        (spec.uts_namespace, syscalls.CLONE_NEWUTS),
    ):
        if not namespace:
            flags |= kind
        elif namespace != "host":
            _join(namespace, kind)
    return flags


def _join(path: str, kind: int, what: str = "namespace") -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise process.ProcessFailure(f"cannot open {what} {path}: {exc}") from None
    try:
        syscalls.setns(fd, kind)
    finally:
        os.close(fd)


def _mount_shm(spec: ContainerSpec, shm: str) -> None:
    """/dev/shm: the host's or the joined IPC namespace's, a tmpfs of its own, or none."""
    donor = nsmounts.mount_namespace_beside(spec.ipc_namespace)
    if spec.ipc_namespace == "host":
        mounts.ensure_mountpoint(shm, directory=True)
        syscalls.mount("/dev/shm", shm, None, syscalls.MS_BIND | syscalls.MS_REC)
    elif donor:
        fd = nsmounts.clone_from_namespace(donor, "/dev/shm")
        try:
            mounts.ensure_mountpoint(shm, directory=True)
            syscalls.move_mount(fd, shm)
        finally:
            os.close(fd)
    elif spec.shm_size > 0:
        os.mkdir(shm, 0o1777)
        syscalls.mount("shm", shm, "tmpfs", _PROC_FLAGS, f"mode=1777,size={spec.shm_size}")


def _write_sysctls(sysctls: tuple[tuple[str, str], ...]) -> None:
    """Write the sysctls in the container's namespaces (its /proc, after the pivot)."""
    for name, value in sysctls:
        path = "/proc/sys/" + name.replace(".", "/")
        try:
            with open(path, "w") as knob:
                knob.write(value)
        except OSError as exc:
            raise process.ProcessFailure(f"cannot set sysctl {name}={value}: {exc}") from None


def _bind_own_cgroups(read_only: bool) -> None:
    """With the host's cgroup namespace: show each hierarchy from the container's cgroup down
    (as runc binds it), while ``/proc/self/cgroup`` keeps the full paths."""
    own: dict[frozenset[str], str] = {}
    with open("/proc/self/cgroup") as listing:
        for line in listing:
            _number, controllers, path = line.rstrip("\n").split(":", 2)
            own[frozenset(controllers.split(",")) if controllers else frozenset()] = path
    extra = syscalls.MS_RDONLY if read_only else 0
    for name, fstype, options in _cgroup_hierarchies:
        key = frozenset() if fstype == "cgroup2" else frozenset(options.split(","))
        path = own.get(key, "/").lstrip("/")
        target = os.path.join(CGROUP_ROOT, name)
        if not path or not os.path.isdir(os.path.join(target, path)):
            continue
        syscalls.mount(os.path.join(target, path), target, None, syscalls.MS_BIND)
        syscalls.mount(
            None, target, None, syscalls.MS_REMOUNT | syscalls.MS_BIND | _PROC_FLAGS | extra
        )


def _join_network(path: str) -> None:
    _join(path, syscalls.CLONE_NEWNET, "network namespace")


def _has_cgroup_namespaces() -> bool:
    return os.path.exists("/proc/self/ns/cgroup")


def _mount_rootfs(spec: ContainerSpec, rootfs: str) -> None:
    if not spec.rootfs:
        raise process.ProcessFailure("the container has no root filesystem mounts")
    mounts.mount_all(spec.rootfs, rootfs)


def _inside(rootfs: str, path: str) -> str:
    return mounts.resolve_in_root(rootfs, path)


def _build_root(
    spec: ContainerSpec,
    rootfs: str,
    stdio: tuple[int, int, int],
    own_network: bool,
    binds: list[_Bind | TmpfsMount],
) -> None:
    """Mount /proc, /dev, /sys, the bind and tmpfs mounts and the etc files under the new root."""
    cwd = _inside(rootfs, spec.process.cwd or "/")
    if not os.path.isdir(cwd):
        # As docker creates a missing working directory; where it cannot (a file in the way),
        # chdir reports it.
        with contextlib.suppress(OSError):
            os.makedirs(cwd, mode=0o755, exist_ok=True)
    proc = _inside(rootfs, "/proc")
    mounts.ensure_mountpoint(proc, directory=True)
    syscalls.mount("proc", proc, "proc", _PROC_FLAGS)
    _build_dev(spec, rootfs, stdio)
    _mount_sys(spec, rootfs, own_network)
    for entry in binds:
        if isinstance(entry, TmpfsMount):
            _mount_tmpfs(entry, _inside(rootfs, entry.destination))
            continue
        target = _inside(rootfs, entry.destination)
        if entry.fd is None:
            _bind(entry.source, target, entry.read_only, entry.recursive)
        else:
            _attach(entry.fd, target)
        if entry.propagation:
            mounts.set_propagation(target, entry.propagation)


def _attach(fd: int, target: str) -> None:
    """Attach a bind source the intermediate opened (read-only already, where asked)."""
    mounts.ensure_mountpoint(target, directory=stat.S_ISDIR(os.fstat(fd).st_mode))
    syscalls.move_mount(fd, target)
    os.close(fd)


def _bind(source: str, target: str, read_only: bool, recursive: bool = True) -> None:
    try:
        is_dir = stat.S_ISDIR(os.stat(source).st_mode)
    except FileNotFoundError:
        raise process.ProcessFailure(
            f"error mounting {source!r}: bind source path does not exist: {source}"
        ) from None
    mounts.ensure_mountpoint(target, directory=is_dir)
    syscalls.mount(source, target, None, syscalls.MS_BIND | (syscalls.MS_REC if recursive else 0))
    if read_only:
        mounts.remount_read_only(target)


def _mount_tmpfs(tmpfs: TmpfsMount, target: str) -> None:
    mounts.ensure_mountpoint(target, directory=True)
    flags, data = mounts.parse_mount_options(tmpfs.options)
    try:
        # Read-only the way runc makes it (a writable filesystem under a read-only mount), so
        # /proc/self/mountinfo reads the same under both runtimes and dockerd.
        syscalls.mount("tmpfs", target, "tmpfs", flags & ~syscalls.MS_RDONLY, data or None)
    except OSError as exc:
        raise process.ProcessFailure(
            f"error mounting tmpfs at {tmpfs.destination!r} ({','.join(tmpfs.options)}): "
            f"{exc.strerror}"
        ) from None
    if flags & syscalls.MS_RDONLY:
        mounts.remount_read_only(target)


def _build_dev(spec: ContainerSpec, rootfs: str, stdio: tuple[int, int, int]) -> None:
    dev = _inside(rootfs, "/dev")
    mounts.ensure_mountpoint(dev, directory=True)
    syscalls.mount(
        "tmpfs", dev, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_STRICTATIME, "mode=755,size=65536k"
    )
    for name, (major, minor) in STANDARD_DEVICES.items():
        node = os.path.join(dev, name)
        try:
            os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(major, minor))
            os.chmod(node, 0o666)  # mknod's mode goes through the umask
        except PermissionError:
            # A user namespace may not make device nodes: use the host's.
            mounts.ensure_mountpoint(node, directory=False)
            syscalls.mount(f"/dev/{name}", node, None, syscalls.MS_BIND)
    for name, target in STANDARD_LINKS.items():
        os.symlink(target, os.path.join(dev, name))
    _make_devices(spec, rootfs)
    pts = os.path.join(dev, "pts")
    os.mkdir(pts, 0o755)
    pts_flags = syscalls.MS_NOSUID | syscalls.MS_NOEXEC
    try:
        syscalls.mount(
            "devpts", pts, "devpts", pts_flags, "newinstance,ptmxmode=0666,mode=0620,gid=5"
        )
    except OSError:
        # gid 5 (tty) may be unmapped in a user namespace.
        syscalls.mount("devpts", pts, "devpts", pts_flags, "newinstance,ptmxmode=0666,mode=0620")
    _mount_shm(spec, os.path.join(dev, "shm"))
    mqueue = os.path.join(dev, "mqueue")
    os.mkdir(mqueue, 0o755)
    syscalls.mount("mqueue", mqueue, "mqueue", _PROC_FLAGS)
    if spec.process.terminal:
        # The container's own terminal is bound here once it exists (_container_terminal).
        mounts.ensure_mountpoint(os.path.join(dev, "console"), directory=False)


def _make_devices(spec: ContainerSpec, rootfs: str) -> None:
    """The ``--device`` nodes, made as the host has them (the cgroup rules let them be used)."""
    for device in spec.devices:
        node = _inside(rootfs, device.path)
        os.makedirs(os.path.dirname(node), mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(node)  # one of the standard nodes, asked for under its own name
        kind = stat.S_IFBLK if device.type == "b" else stat.S_IFCHR
        try:
            os.mknod(node, kind | device.mode, os.makedev(device.major, device.minor))
        except PermissionError:
            raise process.ProcessFailure(
                f"cannot make device {device.path} (no device nodes in a user namespace)"
            ) from None
        os.chmod(node, device.mode)  # mknod's mode goes through the umask
        os.chown(node, device.uid, device.gid)


def _mount_sys(spec: ContainerSpec, rootfs: str, own_network: bool) -> None:
    sys_dir = _inside(rootfs, "/sys")
    mounts.ensure_mountpoint(sys_dir, directory=True)
    read_only = 0 if spec.privileged else syscalls.MS_RDONLY
    try:
        syscalls.mount("sysfs", sys_dir, "sysfs", _PROC_FLAGS | read_only)
    except PermissionError:
        # A user namespace sharing the host's network may not mount sysfs: bind the host's.
        syscalls.mount("/sys", sys_dir, None, syscalls.MS_BIND | syscalls.MS_REC)
        if read_only:
            mounts.remount_read_only(sys_dir)


def _pivot(rootfs: str) -> None:
    """Make ``rootfs`` the root and drop the host's tree (pivot_root(".", ".") as runc does)."""
    os.chdir(rootfs)
    syscalls.pivot_root(".", ".")
    # The old root is now stacked on "."; detaching it leaves the new root alone.
    syscalls.umount(".", syscalls.MNT_DETACH)
    os.chdir("/")


def _restrict_paths(spec: ContainerSpec) -> None:
    """Mask and make read-only runc's sensitive paths (not for a privileged container)."""
    if spec.privileged:
        return
    for path in spec.masked_paths:
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                syscalls.mount("tmpfs", path, "tmpfs", syscalls.MS_RDONLY)
            else:
                os.stat(path)
                syscalls.mount("/dev/null", path, None, syscalls.MS_BIND)
        except FileNotFoundError:
            continue
    for path in spec.readonly_paths:
        try:
            syscalls.mount(path, path, None, syscalls.MS_BIND | syscalls.MS_REC)
        except FileNotFoundError:
            continue
        mounts.remount_read_only(path)


def _mount_cgroups(read_only: bool) -> None:
    """Mount the cgroup hierarchies at /sys/fs/cgroup, rooted at the container's cgroups.

    Runtimes such as the JVM's and Go's read their limits there. Best effort: a user
    namespace may not mount cgroup v1, and the container then goes without.
    """
    if not _cgroup_hierarchies or not os.path.isdir(CGROUP_ROOT):
        return
    flags = _PROC_FLAGS | (syscalls.MS_RDONLY if read_only else 0)
    try:
        if _cgroup_hierarchies[0][0] == "":  # a pure v2 host: one hierarchy, right there
            syscalls.mount("cgroup2", CGROUP_ROOT, "cgroup2", flags)
            return
        syscalls.mount("tmpfs", CGROUP_ROOT, "tmpfs", _PROC_FLAGS, "mode=755")
    except OSError:
        return
    for name, fstype, options in _cgroup_hierarchies:
        target = os.path.join(CGROUP_ROOT, name)
        os.makedirs(target, exist_ok=True)
        try:
            syscalls.mount(fstype, target, fstype, flags, options or None)
        except OSError:
            os.rmdir(target)
    if read_only:
        syscalls.mount(None, CGROUP_ROOT, None, syscalls.MS_REMOUNT | flags)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
