"""The interfaces each kind of driver implements, and the plain data they exchange.

The core keeps the layouts (which layers make an image, which blobs a repository references, which
container uses which snapshot); a driver is a thin adapter over one kind of storage or one way of
running processes. Methods are synchronous: the core calls them from worker threads, never on the
event loop, so a driver may block on disk, syscalls or the network.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol, runtime_checkable

import attrs

from dockyard.core.capabilities import ALL_CAPABILITIES as ALL_CAPABILITIES
from dockyard.core.capabilities import DEFAULT_CAPABILITIES as DEFAULT_CAPABILITIES

# --------------------------------------------------------------------------------------------
# Storage drivers (the daemon's layer and container filesystem store)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Mount:
    """One mount to perform, in the form of mount(2): ``mount -t type -o options source target``.

    A root filesystem is a list of these applied in order at the container's root; a driver that
    needs no mount syscall (``vfs``) returns a single ``bind`` mount of a directory.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()


@attrs.frozen
class Usage:
    """Disk used by one layer or snapshot, counting only what it adds over its parents."""

    size: int
    inodes: int


@runtime_checkable
class StorageDriver(Protocol):
    """Unpacks image layers and prepares container root filesystems from them.

    Vocabulary, as in containerd's snapshotter: a *layer* is a committed, read-only filesystem
    diff identified by a key the core chooses (the layer's chain id); a *snapshot* is a writable
    filesystem prepared on top of a chain of layers (a container's rootfs). Keys are opaque, unique
    strings of ``[A-Za-z0-9_.:-]``. ``parents`` is always the full chain below the object, nearest
    parent first and base layer last; the core keeps that graph, the driver only stores bytes.

    Every method is atomic as seen by the core: on error, nothing half-made stays visible under
    the key, and calling ``remove`` on a partly created key cleans it up.
    """

    def apply_layer(self, key: str, parents: Sequence[str], diff: BinaryIO) -> Usage:
        """Create layer ``key`` as ``parents`` plus the changes in ``diff``.

        ``diff`` is an uncompressed OCI layer tar (the core decompresses) read front to back
        exactly once. Whiteouts (``.wh.NAME``, ``.wh..wh..opq``) delete from the parents; the
        driver stores them in its own form. Entries that would land outside the layer (``..``,
        absolute paths, links escaping the root, writes through a symlink) raise
        :class:`~dockyard.core.errors.InvalidParameter` and leave no layer behind. Ownership,
        modes including setuid/setgid, timestamps, xattrs and hard links are preserved. Returns
        the layer's usage. Raises :class:`~dockyard.core.errors.Conflict` if ``key`` exists.
        """
        ...

    def prepare(self, key: str, parents: Sequence[str]) -> list[Mount]:
        """Create writable snapshot ``key`` over layer chain ``parents``; return its mounts.

        An empty ``parents`` gives an empty root. Preparing must not copy the layers where the
        driver can avoid it: its cost should not grow with the image size.
        """
        ...

    def mounts(self, key: str, parents: Sequence[str]) -> list[Mount]:
        """Return the mounts of existing snapshot ``key`` again (after a daemon restart)."""
        ...

    def diff(self, key: str, parents: Sequence[str], out: BinaryIO) -> None:
        """Write the changes of snapshot ``key`` against ``parents`` to ``out`` as a layer tar.

        Deletions become ``.wh.`` whiteouts and replaced directories ``.wh..wh..opq``, so that
        ``apply_layer`` of the result over the same parents reproduces the snapshot.
        """
        ...

    def remove(self, key: str) -> None:
        """Delete layer or snapshot ``key`` and everything stored for it; a missing key is fine.

        The core never removes a layer that another layer or snapshot still names as a parent.
        """
        ...

    def usage(self, key: str) -> Usage:
        """Return what ``key`` adds on disk. Raises :class:`~dockyard.core.errors.NotFound`."""
        ...

    def keys(self) -> Iterable[str]:
        """Every layer and snapshot key stored, so the core can reconcile after a crash."""
        ...


# --------------------------------------------------------------------------------------------
# Runtimes (the daemon's process runner)
# --------------------------------------------------------------------------------------------
#
# How a container runs. The daemon starts one *supervisor* process per container (core code,
# ``dockyard.daemon.containers.supervisor``) in its own session, so the container outlives the
# daemon. The supervisor holds the container's stdio, writes its logs and records its exit
# status. To start the container's process it imports the runtime's *launcher* (a
# ``module:function`` path, so it needs no plugin loading) and calls it; the process becomes
# the supervisor's child. Everything else the runtime does (exec, pause, stats, clean-up) runs
# in the daemon through the :class:`Runtime` object.


@attrs.frozen
class ProcessSpec:
    """A process to run in a container: what ``docker run`` resolves from image and flags."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    terminal: bool = False
    #: Capability names as Docker spells them (``CAP_CHOWN``...); the bounding, effective,
    #: permitted and inheritable sets all get exactly these.
    capabilities: tuple[str, ...] = ()
    no_new_privileges: bool = True
    #: Initial terminal size (rows, columns) when ``terminal``.
    console_size: tuple[int, int] = (0, 0)
    #: ``default``: the policy of :mod:`dockyard.linux.seccomp` for ``capabilities``;
    #: ``unconfined``: no filter (``--privileged``, ``--security-opt seccomp=unconfined``).
    seccomp: str = "default"
    #: Resource limits set before exec (``--ulimit``), as the kernel names them
    #: (``RLIMIT_NOFILE``...); limits not listed are inherited.
    rlimits: tuple[Rlimit, ...] = ()
    #: ``/proc/PID/oom_score_adj`` of the process (``--oom-score-adj``, -1000..1000); 0 leaves
    #: the inherited value.
    oom_score_adj: int = 0


@attrs.frozen
class Rlimit:
    """One ``setrlimit`` of a container's processes."""

    #: ``RLIMIT_`` and the resource's name, as the OCI spec and ``resource`` spell it.
    type: str
    soft: int
    hard: int


@attrs.frozen
class BindMount:
    """A host path (or a volume's directory) mounted into the container."""

    source: str
    destination: str
    read_only: bool = False
    #: With a user namespace, show the source through an idmapped mount carrying the
    #: container's maps, as the root filesystem is: ids on disk are the container's ids (a
    #: named volume's files owned by 0 are its root's). Host bind mounts leave it off, as
    #: docker does not remap them. Ignored without a user namespace.
    idmap: bool = False
    #: The mount's propagation, a word of :data:`dockyard.linux.mounts.PROPAGATION_FLAGS`
    #: (``rshared``, ``slave``...); empty for the runtime's default (private to the container).
    #: A shared or slave bind stays in touch with the source's mount on the host.
    propagation: str = ""
    #: ``False`` for docker's ``bind-nonrecursive``: the mounts below the source are not taken.
    recursive: bool = True


@attrs.frozen
class TmpfsMount:
    """A tmpfs mounted in the container (``--tmpfs``, ``--mount type=tmpfs``)."""

    destination: str
    #: mount(8) option words: flags in their "on" spelling only (``ro``, ``noexec``...) and the
    #: filesystem's data (``size=64m``, ``mode=1777``), as
    #: :func:`dockyard.linux.mounts.parse_mount_options` splits them.
    options: tuple[str, ...] = ()


@attrs.frozen
class Resources:
    """cgroup limits; ``None`` means unlimited."""

    memory_bytes: int | None = None
    nano_cpus: int | None = None
    pids_limit: int | None = None
    #: The CPU weight relative to other cgroups (``--cpu-shares``; v1 ``cpu.shares``).
    cpu_shares: int | None = None
    #: CPUs and memory nodes the processes may use, in the kernel's list format (``0-1,3``);
    #: empty: those of the parent cgroup.
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    #: Memory and swap together (``--memory-swap``), in bytes; -1: unlimited swap. ``None``:
    #: docker's default, as much swap as memory (twice ``memory_bytes``) when there is a limit.
    memory_swap: int | None = None
    #: The soft limit the kernel reclaims down to under pressure (``--memory-reservation``).
    memory_reservation: int | None = None
    #: 0..100 (``--memory-swappiness``); ``None`` leaves the parent's.
    memory_swappiness: int | None = None
    #: Keep the OOM killer away: at the limit, processes wait for memory instead.
    oom_kill_disable: bool = False
    #: More device cgroup rules, each as v1's ``devices.allow`` takes it (``c 1:3 rwm``,
    #: ``b 8:* r``), for ``--device`` and ``--device-cgroup-rule``; after the defaults.
    device_rules: tuple[str, ...] = ()
    #: Block I/O throttles per device (``--device-read-bps`` ...).
    blkio_read_bps: tuple[DeviceRate, ...] = ()
    blkio_write_bps: tuple[DeviceRate, ...] = ()
    blkio_read_iops: tuple[DeviceRate, ...] = ()
    blkio_write_iops: tuple[DeviceRate, ...] = ()


@attrs.frozen
class DeviceRate:
    """A rate limit on one block device (bytes or operations per second)."""

    major: int
    minor: int
    rate: int


@attrs.frozen
class DeviceNode:
    """A device node made in the container's ``/dev`` (``--device``), as on the host."""

    #: Where, in the container (``/dev/...``).
    path: str
    #: ``c`` (character) or ``b`` (block).
    type: str
    major: int
    minor: int
    #: Permission bits and owner of the node.
    mode: int = 0o666
    uid: int = 0
    gid: int = 0


@attrs.frozen
class IdMapping:
    """One line of a user namespace's uid_map or gid_map."""

    container_id: int
    host_id: int
    size: int


#: docker's default masked paths (bind-mounted over with /dev/null or an empty read-only
#: tmpfs), in dockerd 20.10's order (inspect shows them), and /sys/devices/virtual/powercap,
#: which later dockerd releases mask as well (power readings leak what others compute).
DEFAULT_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip

#: runc's default read-only paths.
DEFAULT_READONLY_PATHS = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)  # fmt: skip


@attrs.frozen
class ContainerSpec:
    """Everything a runtime needs to start a container, independent of how it does it.

    It is written as JSON into the container's state directory (:func:`spec_to_json`), where
    the supervisor reads it back, so every field is plain data.
    """

    id: str
    #: Mounts making the root filesystem, from the storage driver (applied at the new root).
    rootfs: tuple[Mount, ...]
    process: ProcessSpec
    hostname: str = ""
    read_only_rootfs: bool = False
    #: "none" (own network namespace with loopback up) or "host" (the host's).
    network_mode: str = "none"
    #: With ``network_mode`` "none": a network namespace file (:mod:`dockyard.linux.netns`) to
    #: join instead of making a new namespace. The core made it, and a network driver plumbed
    #: it, before the launch; the runtime joins it before any user namespace is made (so the
    #: container's root cannot reconfigure a namespace the host's root owns). Empty: a new one.
    netns: str = ""
    mounts: tuple[BindMount, ...] = ()
    resources: Resources = Resources()
    privileged: bool = False
    #: ``(host file, container path)`` pairs: files the core wrote on the host, bind-mounted
    #: at these container paths (``/etc/hosts``, ``/etc/resolv.conf``, ``/etc/hostname``).
    etc_files: tuple[tuple[str, str], ...] = ()
    masked_paths: tuple[str, ...] = DEFAULT_MASKED_PATHS
    readonly_paths: tuple[str, ...] = DEFAULT_READONLY_PATHS
    #: User namespace mappings; empty means no user namespace. With them, the runtime shows
    #: the root filesystem (and ``idmap`` bind mounts) through idmapped mounts, so files owned
    #: by 0 on disk are the container root's, and what it writes is stored with container ids.
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    #: Directory private to this container (the runtime may keep files there).
    state_dir: str = ""
    #: Runtime-specific settings for the launcher, which sees nothing but the spec: the core
    #: copies :attr:`Runtime.launch_options` here when it creates the container (the
    #: ``namespaces`` runtime passes its configured ``cgroup-parent`` this way).
    runtime_options: tuple[tuple[str, str], ...] = ()
    #: tmpfs mounts, made after the root filesystem's own (/proc, /dev, /sys) and in one list
    #: with :attr:`mounts`, parents before children, so either kind may sit inside the other.
    tmpfs: tuple[TmpfsMount, ...] = ()
    #: Device nodes made in ``/dev`` (the cgroup rules allowing them are in ``resources``).
    devices: tuple[DeviceNode, ...] = ()
    #: The PID, IPC and UTS namespaces: ``""`` a new one, ``"host"`` the host's, or the path
    #: of a namespace file to join (another container's, ``/proc/PID/ns/pid``: the core
    #: resolves ``container:NAME`` when it starts the container).
    pid_namespace: str = ""
    ipc_namespace: str = ""
    uts_namespace: str = ""
    #: ``"private"``: a cgroup namespace rooted at the container's own cgroups; ``"host"``:
    #: the host's, the container's cgroups bind-mounted at ``/sys/fs/cgroup`` (where they show
    #: with their full paths in ``/proc/self/cgroup``).
    cgroup_namespace: str = "private"
    #: The size of the tmpfs at ``/dev/shm``, in bytes; 0: no ``/dev/shm`` at all (docker's
    #: ``--ipc none``). With the host's IPC namespace the host's ``/dev/shm`` is bound there,
    #: with a joined one (``/proc/PID/ns/ipc``) the ``/dev/shm`` mount of process PID.
    shm_size: int = 64 * 1024 * 1024
    #: ``(name, value)`` sysctls written in the container's namespaces before its process runs
    #: (``net.ipv4.ip_forward``); the core lets through only those its namespaces isolate.
    sysctls: tuple[tuple[str, str], ...] = ()
    #: The NIS domain name set in the container's own UTS namespace (``Config.Domainname``).
    domainname: str = ""


def spec_to_json(spec: ContainerSpec) -> str:
    return json.dumps(attrs.asdict(spec))


def spec_from_json(text: str) -> ContainerSpec:
    raw = json.loads(text)
    return ContainerSpec(
        **{
            **raw,
            "rootfs": tuple(
                Mount(m["type"], m["source"], tuple(m["options"])) for m in raw["rootfs"]
            ),
            "process": _process_from_json(raw["process"]),
            "mounts": tuple(BindMount(**m) for m in raw["mounts"]),
            "resources": _resources_from_json(raw["resources"]),
            "etc_files": tuple(tuple(pair) for pair in raw["etc_files"]),
            "masked_paths": tuple(raw["masked_paths"]),
            "readonly_paths": tuple(raw["readonly_paths"]),
            "uid_mappings": tuple(IdMapping(**m) for m in raw["uid_mappings"]),
            "gid_mappings": tuple(IdMapping(**m) for m in raw["gid_mappings"]),
            "runtime_options": tuple(tuple(pair) for pair in raw.get("runtime_options", ())),
            "tmpfs": tuple(
                TmpfsMount(m["destination"], tuple(m["options"])) for m in raw.get("tmpfs", ())
            ),
            "devices": tuple(DeviceNode(**d) for d in raw.get("devices", ())),
            "sysctls": tuple(tuple(pair) for pair in raw.get("sysctls", ())),
        }
    )


def _process_from_json(raw: dict[str, Any]) -> ProcessSpec:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    fields["rlimits"] = tuple(Rlimit(**r) for r in raw.get("rlimits", ()))
    return ProcessSpec(**fields)


def _resources_from_json(raw: dict[str, Any]) -> Resources:
    fields = dict(raw)
    for name in ("blkio_read_bps", "blkio_write_bps", "blkio_read_iops", "blkio_write_iops"):
        fields[name] = tuple(DeviceRate(**r) for r in raw.get(name, ()))
    fields["device_rules"] = tuple(raw.get("device_rules", ()))
    return Resources(**fields)


class LaunchError(Exception):
    """The container's process could not be started.

    ``exit_code`` follows docker: 127 when the command is not found, 126 when it cannot be
    executed (permission denied, not a file), 125 for any other failure of the runtime.
    """

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Launcher(Protocol):
    """``launch(spec, stdio) -> pid``: called by the container's supervisor process.

    Called once per start, in the supervisor (never in the daemon), which has made itself a
    child subreaper. ``stdio`` is three file descriptors for the process's stdin, stdout and
    stderr (for a terminal, all three are the pty's slave end). The launcher sets up the
    isolation (namespaces, mounts, cgroup, credentials) and returns the host pid of the
    container's init process, once it has been exec'd. Failure to start raises
    :class:`LaunchError`, after cleaning up what it made.

    What the core relies on about that pid:

    * it is the container's own init (pid 1 of its pid namespace, the process running
      ``spec.process``), not a shim in front of it: the core's signals go to it;
    * it is a child of the supervisor when ``launch`` returns, or an orphan reparented to it
      (the supervisor is a subreaper), and stays so until it exits: the supervisor waits for
      it, and the core checks that parentage when it finds the process again after a daemon
      restart. Being the supervisor's unreaped child, it keeps its pid and start time until
      it has exited and the supervisor has seen it, so the core can take them as its
      identity.
    """

    def __call__(self, spec: ContainerSpec, stdio: tuple[int, int, int]) -> int: ...


@attrs.frozen
class CpuTimes:
    """Where a container's CPU time went, in nanoseconds since its cgroup was made."""

    #: Time in the kernel on the container's behalf, and in its own code (cgroup v1 counts
    #: these in clock ticks, so they move in steps of 10 ms; v2 counts microseconds).
    kernel_ns: int = 0
    user_ns: int = 0
    #: Total time on each CPU the kernel may use, by CPU number (v1's
    #: ``cpuacct.usage_percpu``); empty where the cgroup does not count it (v2).
    per_cpu_ns: tuple[int, ...] = ()


@attrs.frozen
class CpuThrottling:
    """How a CPU quota (``--cpus``, ``--cpu-quota``) held the container back."""

    #: Enforcement periods that have passed while it ran, how many of them it hit its quota
    #: in, and how long in all it was then kept waiting (ns).
    periods: int = 0
    throttled_periods: int = 0
    throttled_ns: int = 0


@attrs.frozen
class MemoryDetail:
    """Memory figures beyond usage and limit."""

    #: The highest usage seen (v1's ``memory.max_usage_in_bytes``); 0 where not counted (v2).
    max_usage: int = 0
    #: v1: how often usage hit the limit (``memory.failcnt``); v2: how often the OOM killer
    #: was invoked for the cgroup (``oom`` in ``memory.events``), as dockerd reports each.
    failcnt: int = 0
    #: The cgroup's ``memory.stat`` counters docker reports: v1's 32 (``cache``, ``rss``,
    #: ``total_inactive_file``...), v2's 31 (``anon``, ``file``, ``inactive_file``...); each
    #: of them, 0 when the kernel has no such line. Clients read the page cache from them
    #: (``docker stats`` subtracts ``total_inactive_file``, or ``inactive_file`` on v2).
    stat: Mapping[str, int] = attrs.field(factory=dict)


@attrs.frozen
class BlockIOEntry:
    """One counter of a block device: ``op`` is ``Read``, ``Write``, ``Sync``, ``Async``,
    ``Discard`` or ``Total`` (v1, as the kernel names them), ``read`` or ``write`` (v2)."""

    major: int
    minor: int
    op: str
    value: int


@attrs.frozen
class BlockIO:
    """Block I/O of the container's cgroup (and its children), by device.

    Each list is ``None`` where the cgroup does not count it (dockerd sends ``null``), empty
    where it counts but nothing happened yet (``[]``). Cgroup v1 with a throttling-capable
    blkio controller fills the first two and leaves the rest empty (their files belonged to
    the CFQ scheduler, gone since Linux 5.0); v2 fills ``service_bytes`` alone, from
    ``rbytes`` and ``wbytes`` of ``io.stat``.
    """

    #: Bytes and requests moved, by device and operation.
    service_bytes: tuple[BlockIOEntry, ...] | None = None
    serviced: tuple[BlockIOEntry, ...] | None = None
    #: CFQ's figures: requests queued, time serving and waiting (ns), merged requests, time
    #: the device was busy (ms), sectors moved.
    queued: tuple[BlockIOEntry, ...] | None = None
    service_time: tuple[BlockIOEntry, ...] | None = None
    wait_time: tuple[BlockIOEntry, ...] | None = None
    merged: tuple[BlockIOEntry, ...] | None = None
    time: tuple[BlockIOEntry, ...] | None = None
    sectors: tuple[BlockIOEntry, ...] | None = None


@attrs.frozen
class ContainerStats:
    """One sample of a container's resource use, read from its cgroup.

    The fields after ``pids_limit`` came later and have defaults: a runtime that does not
    fill them leaves them ``None``, and the daemon then reports zeros and empty lists. The
    conformance suite (:mod:`dockyard.testing.runtimes`) checks what a runtime fills. Network
    counters are not here: the network namespace is the daemon's, and it reads them.
    """

    memory_usage: int
    memory_limit: int
    cpu_total_ns: int
    system_cpu_ns: int
    online_cpus: int
    pids: int
    pids_limit: int
    cpu_times: CpuTimes | None = None
    cpu_throttling: CpuThrottling | None = None
    memory: MemoryDetail | None = None
    block_io: BlockIO | None = None


@attrs.frozen
class ContainerProcess:
    """One process of a running container, as ``ps`` on the host shows it (``docker top``)."""

    #: Host pid, and the host pid of its parent (the supervisor, for the container's init).
    pid: int
    ppid: int
    #: Real user id, as the host sees it (with a user namespace, the mapped id).
    uid: int
    #: When it started, in seconds since the epoch.
    started: float
    #: User and system CPU time used so far, in seconds.
    cpu_seconds: float
    #: Its command line (empty for a process that has exited and not been reaped yet).
    args: tuple[str, ...]


@runtime_checkable
class Runtime(Protocol):
    """Runs containers: isolated processes on a prepared root filesystem.

    The core owns container metadata, logs, the supervisor and restart policy; the runtime owns
    namespaces, cgroups and how processes enter them. All methods run in the daemon, in worker
    threads, and must work for containers started by an earlier daemon process: they find a
    container by its id alone.

    **Signals are the core's, not the runtime's.** ``docker kill``, ``stop`` and ``rm -f``
    signal the container's init process, whose pid the :class:`Launcher` reports. When the
    launch reports it, the supervisor records the process's start time; the daemon opens a
    pidfd of the pid, checks through it that the process is still the one that started then
    (and the supervisor's child), keeps it for the container's life, and opens and checks it
    again after a daemon restart. Signals go through that pidfd, so once the init process is
    gone a signal reaches nobody, never a process that reused its pid. A runtime therefore has
    no ``kill``: the launcher's pid is all the core needs, one race-free mechanism serves
    every runtime, and a signal costs no process start (``runc kill`` would look up the same
    pid in its state and signal it). A paused container is resumed before it is signalled.
    """

    #: ``"package.module:function"`` of the :class:`Launcher` the supervisor imports.
    launcher: str

    @property
    def launch_options(self) -> tuple[tuple[str, str], ...]:
        """Settings of this runtime its launcher needs, as ``(name, value)`` pairs.

        The launcher runs in the supervisor, which loads no plugin and sees nothing but the
        :class:`ContainerSpec`: the core copies these into ``ContainerSpec.runtime_options``
        when it creates a container (a configured cgroup parent, runc's binary and state
        root). Empty when the launcher needs nothing. Read once per create; a container keeps
        the options it was created with.
        """
        ...

    def exec(
        self, spec: ContainerSpec, pid: int, process: ProcessSpec, stdio: tuple[int, int, int]
    ) -> int:
        """Start ``process`` inside running container ``spec.id`` (init pid ``pid``).

        The new process (or a stand-in for it) is a child of the calling (daemon) process, so
        the caller can wait for it; returns its pid. Its wait status is the process's: its exit
        code, or its death by signal N, either as that death or as exit code 128 + N. A command
        that cannot be found or executed raises :class:`LaunchError` with exit code 127 or 126.

        ``pid`` is a number from the container's record: if the container has just exited, it
        may already name another process. A runtime that enters namespaces by pid must make
        sure it entered the container's (the ``namespaces`` runtime holds the pid with a pidfd,
        checks that the container's cgroup lists it, and opens the namespaces while it is held),
        and raise :class:`LaunchError` (125) otherwise.
        """
        ...

    def pause(self, container_id: str) -> None:
        """Freeze every process of the container (cgroup freezer)."""
        ...

    def resume(self, container_id: str) -> None:
        """Thaw a paused container."""
        ...

    def stats(self, container_id: str) -> ContainerStats:
        """Read current resource use. Raises :class:`~dockyard.core.errors.NotFound`."""
        ...

    def oom_killed(self, container_id: str) -> bool:
        """Whether the kernel's OOM killer killed a process of the container."""
        ...

    def processes(self, container_id: str) -> list[ContainerProcess]:
        """Every process of the running container (its init included), ordered by pid.

        The runtime knows which processes are the container's (those in its cgroup, execs'
        included). A process that exits while being looked at is left out, and a pid listed
        first and reused by another process before it was read must not show up. Raises
        :class:`~dockyard.core.errors.NotFound` when no such container runs.
        """
        ...

    def cleanup(self, container_id: str) -> None:
        """Remove what the runtime made for a stopped container (cgroups, mounts, files).

        Kills whatever is left of the container's processes first. A container with nothing
        left to clean up is fine; call it again and again.
        """
        ...

    def update(self, container_id: str, resources: Resources) -> None:
        """Apply ``resources`` to the running container's cgroups (``docker update``).

        ``resources`` is the whole new set, the one the container will also be started with
        next time; the core has validated it. Raises
        :class:`~dockyard.core.errors.NotFound` when no such container runs, and
        :class:`~dockyard.core.errors.InvalidParameter` when the kernel refuses a value
        (memory below what the container uses, say).
        """
        ...


# --------------------------------------------------------------------------------------------
# Registry backends (the registry's byte store)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class FileInfo:
    """What ``stat`` knows about one stored path."""

    path: str
    size: int
    modified: float
    is_dir: bool = False


class BlobWriter(Protocol):
    """A streaming write of one path, resumable across requests until committed or cancelled.

    Until ``commit`` the bytes are invisible: ``stat``, ``read`` and ``list`` do not see them,
    and the path keeps its previous content. Two writers of one path never mix their bytes;
    the last to commit wins.
    """

    @property
    def size(self) -> int:
        """Bytes written so far, including those of earlier sessions of a resumed write."""
        ...

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        ...

    def close(self) -> None:
        """Persist what was written so far so the write can be resumed with ``append=True``.

        The registry uses this between the chunks of an upload, which may arrive at another
        registry process sharing the storage; the writer is finished afterwards.
        """
        ...

    def commit(self) -> None:
        """Make the content visible at the path, atomically; the writer is finished."""
        ...

    def cancel(self) -> None:
        """Discard everything written, earlier closed sessions included: nothing is left behind,
        the path is unchanged and the writer is finished."""
        ...


@runtime_checkable
class RegistryBackend(Protocol):
    """Stores the registry's bytes under slash-separated paths, like distribution's StorageDriver.

    Paths are absolute (``/docker/registry/v2/blobs/sha256/ab/abcd.../data``); the core chooses
    the layout and never depends on a backend listing in any particular order. A missing path
    raises :class:`~dockyard.core.errors.NotFound`. The core hashes and verifies content: a backend
    stores exactly the bytes it is given.
    """

    def stat(self, path: str) -> FileInfo:
        """Describe ``path``; a directory is any prefix that has stored paths below it.

        ``modified`` is the wall-clock time of the last commit (or move) that wrote the path:
        the registry's garbage collector spares recently written content by it.
        """
        ...

    def read(self, path: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Yield the bytes of ``path`` from ``offset`` on (``length`` of them, or to the end).

        Chunks are bounded (a few MiB at most) so a multi-GB blob never sits in memory.
        """
        ...

    def writer(self, path: str, append: bool = False) -> BlobWriter:
        """Open a streaming write of ``path``; ``append`` resumes a closed, uncommitted one.

        With ``append`` and no such write to resume, raises
        :class:`~dockyard.core.errors.NotFound`.
        """
        ...

    def list(self, path: str) -> list[str]:
        """The direct children of directory ``path``, as full paths (``/`` lists the top).

        Uncommitted writes are not children. An empty store lists ``/`` as ``[]``.
        """
        ...

    def move(self, source: str, destination: str) -> None:
        """Move ``source`` to ``destination``, replacing it; atomic where the storage allows."""
        ...

    def delete(self, path: str) -> None:
        """Delete ``path`` and, for a directory, everything below it.

        The registry cancels in-progress writes itself before deleting their directory.
        """
        ...

    def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL the client may fetch ``path`` from directly, or ``None`` to serve it ourselves."""
        ...


@runtime_checkable
class RegistryHousekeeping(Protocol):
    """What a :class:`RegistryBackend` may add for ``dockyard registry gc`` (optional: gc does
    without it, and then cannot see what the backend hides, nor keep a second gc out).
    """

    def create_exclusive(self, path: str, data: bytes) -> bytes | None:
        """Create ``path`` holding ``data`` only if it does not exist, atomically even against
        other processes and machines sharing the storage: ``None`` once created, else the bytes
        the existing ``path`` holds. (gc keeps one run at a time per storage with it.)"""
        ...

    def sweep(self, older_than: float, dry_run: bool = False) -> list[str]:
        """Remove what interrupted writes left behind and listings never show (temporary
        files, unfinished multipart uploads nobody can resume) not written since ``older_than``
        (wall-clock seconds), and directories left empty; return a line for each."""
        ...


# --------------------------------------------------------------------------------------------
# Auth providers (who may do what on the registry; Docker's registry token spec)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Access:
    """One requested permission, as in a token scope: ``repository:library/busybox:pull,push``.

    ``str()`` gives the scope string of the token spec and :meth:`parse` reads one.
    """

    type: str  # "repository", "registry"
    name: str  # "library/busybox", "catalog"
    actions: tuple[str, ...]  # ("pull",), ("pull", "push"), ("delete",), ("*",)

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    @classmethod
    def parse(cls, scope: str) -> Access:
        """Read one scope (``type[(class)]:name:action,action``); the name may hold a ``:``
        (``repository:127.0.0.1:5000/app:pull``), so type and actions are split off its ends.

        Raises ``ValueError`` for a scope without three parts or with an empty part. The name is
        not checked against the repository grammar: the caller that knows it does that.
        """
        kind, sep, rest = scope.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not (sep and sep2 and kind and name):
            raise ValueError(f"invalid scope {scope[:200]!r}: want type:name:actions")
        wanted = tuple(a for a in actions.split(",") if a)
        if not wanted:
            raise ValueError(f"invalid scope {scope[:200]!r}: no actions")
        # A resource class ("repository(plugin)") narrows the type; the class is not kept.
        return cls(kind.partition("(")[0], name, wanted)

    def allows(self, wanted: Access) -> tuple[str, ...]:
        """The actions of ``wanted`` this grant covers (``*`` covers every action)."""
        if (self.type, self.name) != (wanted.type, wanted.name):
            return ()
        if "*" in self.actions:
            return wanted.actions
        return tuple(a for a in wanted.actions if a in self.actions)


@attrs.frozen
class Identity:
    """An authenticated caller.

    ``granted`` is set when the credentials themselves limit what the request may do (a bearer
    token's ``access`` claim): the registry then allows an action only if the provider's rules
    *and* ``granted`` both allow it. ``None`` means the rules alone decide (Basic credentials).
    An empty ``subject`` is an anonymous caller holding a token (the token service hands
    anonymous callers tokens for what anonymous users may do).
    """

    subject: str
    groups: tuple[str, ...] = ()
    granted: tuple[Access, ...] | None = None

    def carried(self, wanted: Access) -> tuple[str, ...]:
        """The actions of ``wanted`` that ``granted`` allows (all of them when not limited)."""
        if self.granted is None:
            return wanted.actions
        covered: set[str] = set()
        for grant in self.granted:
            covered.update(grant.allows(wanted))
        return tuple(a for a in wanted.actions if a in covered)


@attrs.frozen
class AuthRequest:
    """The parts of an HTTP request an auth provider may look at.

    ``headers`` have lower-case names. ``scheme`` and the ``host`` header let a provider name
    its own token endpoint (the ``realm``) when none is configured.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    client_address: str = ""
    scheme: str = "http"


@runtime_checkable
class AuthProvider(Protocol):
    """Decides who a registry request comes from and what they may do.

    The registry calls, for every request, :meth:`authenticate` and then :meth:`authorize` for
    each permission the request needs (a blob mount also needs ``pull`` on its source). It allows
    the request when the rules and, for a token, the token's own ``granted`` list cover every
    action. Otherwise it answers:

    * 401 with :meth:`challenge`'s headers when the caller is anonymous or its credentials are
      wrong (``error="invalid_token"`` for a bad bearer token), or when a bearer token is too
      narrow but the rules would allow more (``error="insufficient_scope"``: a client asks the
      token service for a wider token and retries);
    * 403 ``DENIED`` when the caller is known and the rules refuse.

    Methods are called from worker threads, concurrently: they must be thread-safe. Hashing a
    password is slow on purpose; the registry rate-limits failures before calling again. A
    provider whose methods never block (no hashing, no I/O; verifying a cached token) declares
    the ``nonblocking`` capability in its ``DriverInfo``, and the registry then calls it on its
    event loop, saving a thread hop per request.
    """

    def authenticate(self, request: AuthRequest) -> Identity | None:
        """Return the caller's identity, or ``None`` if the request carries no credentials.

        Raises :class:`~dockyard.core.errors.InvalidCredentials` when credentials are present
        and wrong. Compares secrets in constant time.
        """
        ...

    def authorize(self, identity: Identity | None, access: Access) -> tuple[str, ...]:
        """Return the subset of ``access.actions`` the rules grant ``identity`` (``None``:
        anonymous), in their order; ``("*",)`` may stand for all of them. Ignores
        ``identity.granted``: the registry applies that itself."""
        ...

    def challenge(
        self, request: AuthRequest, wanted: Sequence[Access], error: str = ""
    ) -> dict[str, str]:
        """Headers for a 401 answer: ``WWW-Authenticate`` telling the client how to log in.

        A bearer challenge names the realm, the service and ``wanted`` as its scope (several
        scopes space-separated); ``error`` (``invalid_token``, ``insufficient_scope``) is added
        when given. A Basic challenge names the realm only.
        """
        ...


@attrs.frozen
class IssuedToken:
    """What a token service hands out, as the token spec's response names it."""

    token: str
    expires_in: int  # seconds
    issued_at: str  # RFC 3339, UTC
    refresh_token: str = ""  # only when asked for (``offline_token=true``, ``access_type=offline``)


@runtime_checkable
class TokenIssuer(Protocol):
    """An auth provider that also runs a token service (Docker's registry token authentication).

    The registry serves the token endpoint (``GET`` and the OAuth2 ``POST /token``) when its
    provider is also a ``TokenIssuer``: it parses the request, rate-limits it, calls
    :meth:`login` or :meth:`refresh` for the credentials, :meth:`AuthProvider.authorize` for
    each requested scope, then :meth:`issue` with what the rules granted (which may be less than
    asked, or nothing: the spec answers with a token either way).
    """

    def login(self, username: str, password: str) -> Identity:
        """The identity for a user name and password; raises
        :class:`~dockyard.core.errors.InvalidCredentials`."""
        ...

    def refresh(self, refresh_token: str) -> Identity:
        """The identity a refresh token (an identity token) stands for; raises
        :class:`~dockyard.core.errors.InvalidCredentials` when it is unknown, forged or expired."""
        ...

    def issue(
        self,
        identity: Identity | None,
        granted: Sequence[Access],
        service: str,
        client_id: str = "",
        offline: bool = False,
    ) -> IssuedToken:
        """Mint a signed bearer token for ``granted`` and audience ``service`` (``identity``
        ``None``: anonymous); with ``offline`` a refresh token for ``identity`` as well."""
        ...

    def signing_certificates(self) -> str:
        """PEM certificates for the keys that sign the tokens: what a registry that verifies
        them (the CNCF registry's ``rootcertbundle``) must trust. ``dockyard registry
        token-cert`` prints them."""
        ...


@runtime_checkable
class UserManager(Protocol):
    """An auth provider that keeps its own users: names and password hashes.

    ``dockyard registry user add/rm/ls`` calls these on the configured provider, in a process
    of its own while the registry may be serving: a change is written atomically (readers see
    the old or the new list, never a part) and a serving registry takes it up without a
    restart. A registry whose provider manages users refuses to start while it has none, and
    says how to add one. Passwords are stored as slow salted hashes only, never in the clear.
    """

    def add_user(self, name: str, password: str) -> bool:
        """Create user ``name``, or set a new password for it; ``True`` if it is new.

        Changing a password invalidates what the old one was used to obtain beyond a
        short-lived token (refresh tokens). Raises
        :class:`~dockyard.core.errors.InvalidParameter` for a name or password the provider
        cannot hold (empty, too long, a reserved name), saying which and why.
        """
        ...

    def remove_user(self, name: str) -> None:
        """Delete user ``name`` and, with it, every refresh token it holds; raises
        :class:`~dockyard.core.errors.NotFound` when there is no such user."""
        ...

    def users(self) -> list[str]:
        """The user names, sorted."""
        ...


# --------------------------------------------------------------------------------------------
# Network drivers (the daemon's networks, endpoints and published ports)
# --------------------------------------------------------------------------------------------
#
# The core owns the bookkeeping: which networks exist, which container has an endpoint on which
# network, which ports are published. It persists the ``*State`` records a driver returns and
# hands them back on every later call, including after a daemon restart (``restore``). A driver
# keeps no state of its own beyond the kernel objects it makes (links, addresses, routes,
# firewall rules), which it marks as its own so that ``restore`` can tell them apart from the
# host's. Every network namespace is a file (a bind mount, see :mod:`dockyard.linux.netns`)
# made by the core before ``connect`` and handed to the runtime as well.


@attrs.frozen
class IpamRequest:
    """One subnet a user asked for (``--subnet/--gateway/--ip-range``); empty strings: pick."""

    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""


@attrs.frozen
class NetworkSpec:
    """A network to create, as ``POST /networks/create`` asks for it once the core checked it.

    ``id`` is the core's 64-hex network id, ``name`` the user's name. ``options`` are the
    driver's own options (``com.docker.network.bridge.name``...): a driver refuses the ones it
    does not know with :class:`~dockyard.core.errors.InvalidParameter` naming them. An empty
    ``ipam`` lets the driver pick a subnet from its pools.
    """

    id: str
    name: str
    options: Mapping[str, str] = attrs.field(factory=dict)
    ipam: tuple[IpamRequest, ...] = ()
    #: No traffic to or from outside the network (no masquerade, no published ports).
    internal: bool = False
    #: Refused by every built-in driver for now (InvalidParameter).
    enable_ipv6: bool = False
    labels: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Subnet:
    """A subnet a network uses, with its gateway address and the range endpoints come from."""

    subnet: str
    gateway: str
    ip_range: str = ""


@attrs.frozen
class NetworkState:
    """What a driver made for a network, as plain data the core persists and hands back.

    ``interface`` is the host-side link (a bridge's name), empty when the driver makes none.
    ``data`` holds whatever else the driver needs to find its objects again, as strings.
    """

    id: str
    name: str
    interface: str = ""
    subnets: tuple[Subnet, ...] = ()
    internal: bool = False
    data: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class EndpointSpec:
    """A container to connect to a network.

    ``netns`` is the path of the container's network namespace file. ``interface_name`` is the
    name the container sees (``eth0`` for its first network, the core counts). ``ipv4`` and
    ``mac`` are the user's ``--ip`` and ``--mac-address`` (empty: the driver picks).
    ``aliases`` are the names the endpoint answers to on the network (for name resolution,
    which the core does; drivers may ignore them).
    """

    id: str
    network_id: str
    container_id: str
    netns: str
    interface_name: str = "eth0"
    ipv4: str = ""
    mac: str = ""
    aliases: tuple[str, ...] = ()


@attrs.frozen
class EndpointState:
    """What ``connect`` made: the container's interface and addresses, for inspect and restore.

    ``ipv4`` carries its prefix length (``172.18.0.2/16``); ``gateway`` is empty when the
    network has no route out. ``host_interface`` is the host-side link (a veth's host end),
    empty when there is none.
    """

    id: str
    network_id: str
    container_id: str
    netns: str
    interface_name: str = ""
    host_interface: str = ""
    ipv4: str = ""
    gateway: str = ""
    mac: str = ""
    #: Name servers and search domains the network offers its endpoints (what a CNI plugin's
    #: result carries); empty: the core decides what the container's resolv.conf says.
    dns_servers: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()


def reconnection_of(endpoint: EndpointState) -> EndpointSpec:
    """The spec that makes ``endpoint`` again as it was (its address and MAC asked for): what
    a driver's ``restore`` connects when an endpoint's interfaces are gone."""
    return EndpointSpec(
        id=endpoint.id,
        network_id=endpoint.network_id,
        container_id=endpoint.container_id,
        netns=endpoint.netns,
        interface_name=endpoint.interface_name,
        ipv4=endpoint.ipv4.partition("/")[0],
        mac=endpoint.mac,
    )


@attrs.frozen
class PortBinding:
    """One published port: ``host_ip:host_port -> container_port/protocol``.

    ``host_ip`` empty means every host address (docker's ``0.0.0.0``). In a request,
    ``host_port`` 0 asks the driver to pick a free one; in a result it is the real port.
    """

    protocol: str
    container_port: int
    host_ip: str = ""
    host_port: int = 0


@runtime_checkable
class NetworkDriver(Protocol):
    """Creates networks and plugs containers' network namespaces into them.

    The daemon builds every usable network driver at start (each network names its driver,
    docker's ``bridge``, ``host``, ``none``...) and calls them from worker threads. Errors are
    :mod:`dockyard.core.errors`: ``InvalidParameter`` for options or addresses the driver
    cannot use, ``Conflict`` for a subnet overlapping another network's or a host port already
    published (``Bind for 0.0.0.0:8080 failed: port is already allocated``, as docker says),
    ``NotFound`` for a network or endpoint whose kernel objects are gone. A failing call leaves
    nothing half-made.
    """

    def create_network(self, spec: NetworkSpec) -> NetworkState:
        """Make network ``spec`` (a bridge, its address, firewall rules) and describe it.

        Called by the core for ``docker network create`` and for the default networks at daemon
        start (when the core has no state for them). The result is persisted by the core and
        passed back to every later call about this network.
        """
        ...

    def delete_network(self, state: NetworkState) -> None:
        """Remove everything ``create_network`` made; a network already gone is fine.

        The core calls it only once the network has no endpoints left.
        """
        ...

    def connect(self, network: NetworkState, endpoint: EndpointSpec) -> EndpointState:
        """Plumb an interface into the namespace file ``endpoint.netns`` and address it.

        Called by the core before the container's process starts (and for ``network
        connect``). The result is persisted by the core; it holds the addresses inspect shows.
        """
        ...

    def disconnect(self, network: NetworkState, endpoint: EndpointState) -> None:
        """Undo ``connect``: remove the endpoint's interfaces and addresses; gone already is fine.

        Called when the container stops or is disconnected. The core unpublishes its ports
        first.
        """
        ...

    def publish(
        self, network: NetworkState, endpoint: EndpointState, ports: Sequence[PortBinding]
    ) -> list[PortBinding]:
        """Make ``ports`` reach the endpoint from the host; return them with real host ports.

        All or nothing: when one port cannot be published, none is. Reachable on the host's
        addresses, on 127.0.0.1 and from other containers.
        """
        ...

    def unpublish(
        self, network: NetworkState, endpoint: EndpointState, ports: Sequence[PortBinding]
    ) -> None:
        """Remove what ``publish`` made for ``ports`` (as it returned them); gone is fine."""
        ...

    def restore(
        self,
        networks: Sequence[NetworkState],
        endpoints: Sequence[EndpointState],
        ports: Mapping[str, Sequence[PortBinding]],
    ) -> None:
        """Bring the kernel in line with the core's records after a daemon restart.

        ``networks`` and ``endpoints`` are every state of this driver the core kept (an
        endpoint only while its namespace file exists); ``ports`` maps endpoint ids to their
        published ports. Missing objects are recreated, objects marked as this driver's that
        no record owns are removed. Running containers keep their connectivity throughout.
        """
        ...


# --------------------------------------------------------------------------------------------
# Log drivers (where a container's output is kept, and how it is read back)
# --------------------------------------------------------------------------------------------
#
# Two halves, in two processes. The container's *supervisor* (one per container, core code)
# reads the process's stdout and stderr and hands each chunk to a :class:`LogWriter`, which it
# builds by importing the driver's :attr:`LogDriver.writer` (a ``module:function`` path, as a
# runtime's launcher: no plugin loading on the log path). The *daemon* checks a container's
# ``--log-opt`` options when it is created and reads the output back through
# :meth:`LogDriver.open_reader` for ``logs``, ``attach`` and ``build``.


class LogEntry(NamedTuple):
    """One piece of a container's output as a log keeps it: a line with its newline, or output
    that ended without one. A tuple, not an attrs class: a ``docker logs`` makes one per line.
    """

    stream: str  # "stdout" or "stderr"
    data: bytes
    time_ns: int  # when the supervisor read it, in nanoseconds since the epoch


class LogWriter(Protocol):
    """Keeps one container's output; lives in the supervisor for one run of the container.

    Built by the driver's writer function, ``open_writer(directory, options) -> LogWriter``:
    ``directory`` is the container's state directory (the writer keeps its files in it or in
    a subdirectory of its own, readable by root only or root's group, never by other users);
    ``options`` are the container's log options, already accepted by
    :meth:`LogDriver.check_options`. The writer's module is imported by the supervisor on
    every container start: standard library and :mod:`dockyard.core` only.
    """

    def write(self, stream: str, data: bytes) -> None:
        """Keep ``data`` (one read of ``stream``, at most 64 KiB, maybe several lines).

        Called from the supervisor's single thread, in the order the output was read; it must
        not block for long (the container's pipes fill meanwhile). Once it returns, a reader
        opened after that sees the data: readers follow the output live.
        """
        ...

    def close(self) -> None:
        """Finish (the container exited): flush and release files; wait for any work begun."""
        ...


class LogReader(Protocol):
    """A container's output as it is when the reader is opened, then as it keeps coming.

    Opened by the daemon per request (``logs``, ``attach``, a build step), possibly before the
    container first starts and after it is removed: what was open stays readable.
    """

    def entries(self) -> Iterator[LogEntry]:
        """The entries kept when the reader was opened, oldest first. Blocking: called from a
        worker thread."""
        ...

    def follow(self, finished: Callable[[], bool], wake: Any = None) -> AsyncIterator[LogEntry]:
        """Entries written after those :meth:`entries` gives, as they come, until
        ``finished()`` is true and everything written by then has been yielded.

        ``wake``, an ``asyncio.Event``, is set when the container exits: a waiting follower
        should look again at once. Closes the reader when done.
        """
        ...

    def close(self) -> None:
        """Release the reader's files; safe to call twice."""
        ...


class LogDriver(Protocol):
    """A way of keeping containers' output: docker's ``--log-driver``.

    The daemon builds every usable log driver at start (each container names its own, or
    takes the daemon's ``log-driver``) and calls these methods from worker threads or the
    event loop; they must be quick.
    """

    #: ``module:function`` of the writer the supervisor imports (see :class:`LogWriter`).
    writer: str
    #: Whether ``docker logs`` can read what is kept. ``False`` (docker's ``none``): ``logs``
    #: is refused as dockerd refuses it, and :meth:`open_reader` gives only the live output
    #: that ``attach`` and build steps follow.
    readable: bool

    def check_options(self, options: Mapping[str, str]) -> None:
        """Accept the container's ``--log-opt`` options or raise
        :class:`~dockyard.core.errors.InvalidParameter` naming the option and what is wrong.

        Called when a container is created (with the daemon's ``log-opts`` merged in when
        the container uses the daemon's driver). An option the driver does not apply is
        refused, never accepted and ignored.
        """
        ...

    def open_reader(self, directory: Path) -> LogReader:
        """A reader of what the writer keeps in the container's state ``directory``.

        The directory may not hold a log yet (a container never started): the reader is then
        empty, and a follower waits for the output to appear.
        """
        ...
