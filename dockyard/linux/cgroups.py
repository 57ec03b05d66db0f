"""A container's cgroups, on cgroup v1 (one hierarchy per controller) or v2 (unified).

A container's cgroup is ``<mount>/<parent>/<container id>`` in every hierarchy used. On v1 (and
the "hybrid" layout, where v1 controllers sit beside an empty unified tree) that is one directory
per controller; on v2 it is one directory. Standard library only: the supervisor creates the
cgroups on every container start, and the daemon reads them for stats, pause and clean-up.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from typing import NamedTuple

from dockyard.core.interfaces import (
    BlockIO,
    BlockIOEntry,
    CpuThrottling,
    CpuTimes,
    DeviceRate,
    MemoryDetail,
    Resources,
)

#: v1 controllers a container gets a directory in. A new cpuset cgroup starts with no CPUs or
#: memory nodes: each level gets its parent's (see :func:`_inherit_cpuset`) unless limited.
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer", "devices", "cpuset", "blkio")
#: v2 controllers enabled for the containers' subtree, when the kernel offers them.
V2_CONTROLLERS = ("memory", "cpu", "pids", "cpuset", "io")
CPU_PERIOD_US = 100_000
#: The smallest quota the kernel accepts (1 ms).
CPU_MIN_QUOTA_US = 1_000
#: Devices a container may use without --privileged, as docker allows them: mknod of anything,
#: and read/write of the standard character devices and ptys.
DEFAULT_DEVICE_RULES = (
    "c *:* m", "b *:* m",
    # null, zero, full, random, urandom
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm",  # tty console ptmx
    "c 136:* rwm",  # pty slaves
    "c 10:200 rwm",  # tun
)  # fmt: skip
FREEZE_TIMEOUT = 5.0
EMPTY_TIMEOUT = 5.0


class CgroupError(Exception):
    """The cgroup tree cannot be used as needed."""


class Layout(NamedTuple):
    """Where the cgroup hierarchies are mounted (a plain tuple: cheap to import)."""

    version: int
    #: v1: controller -> mount point; v2: {"": mount point}.
    mounts: dict[str, str]


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")


_layout: Layout | None = None


def detect_layout() -> Layout:
    """Find the mounted cgroup hierarchies (cached: mounts do not move under a running daemon)."""
    global _layout
    if _layout is not None:
        return _layout
    v1: dict[str, str] = {}
    unified = ""
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields, _, tail = line.partition(" - ")
            point = _unescape(fields.split()[4])
            fstype, _source, options = tail.split()[:3]
            if fstype == "cgroup2" and not unified:
                unified = point
            elif fstype == "cgroup":
                for option in options.split(","):
                    if option in V1_CONTROLLERS and option not in v1:
                        v1[option] = point
    if "memory" in v1:
        _layout = Layout(1, v1)
    elif unified:
        _layout = Layout(2, {"": unified})
    else:
        raise CgroupError("no cgroup hierarchy is mounted (neither v1 memory nor cgroup2)")
    return _layout


#: Where every container expects the cgroup hierarchies.
CGROUP_ROOT = "/sys/fs/cgroup"


def hierarchies() -> list[tuple[str, str, str]]:
    """Every cgroup hierarchy mounted under /sys/fs/cgroup: ``(name, fstype, options)``.

    ``name`` is the mount point below /sys/fs/cgroup ("" for a pure v2 host), ``options`` the
    controllers (v1) as the kernel needs them to mount the same hierarchy again.
    """
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields, _, tail = line.partition(" - ")
            point = _unescape(fields.split()[4])
            fstype, _source, options = tail.split()[:3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            if point != CGROUP_ROOT and not point.startswith(CGROUP_ROOT + "/"):
                continue
            wanted = [o for o in options.split(",") if o not in ("rw", "ro")]
            if fstype == "cgroup2":
                wanted = []  # mount options like nsdelegate belong to the host's mount
            found.append((point[len(CGROUP_ROOT) :].lstrip("/"), fstype, ",".join(wanted)))
    return found


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as source:
        return source.read().strip()


def _read_int(path: str, default: int = 0) -> int:
    try:
        text = _read(path)
    except OSError:
        return default
    if text == "max":
        return default
    try:
        return int(text)
    except ValueError:
        return default


def _keyed(path: str) -> dict[str, int]:
    """A flat-keyed cgroup file (``key value`` lines) as a dict."""
    values = {}
    try:
        with open(path) as source:
            for line in source:
                key, _, value = line.partition(" ")
                if value.strip().lstrip("-").isdigit():
                    values[key] = int(value)
    except OSError:
        pass
    return values


def host_memory() -> int:
    """Total RAM, the limit docker reports for a container without one."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def system_cpu_ns() -> int:
    """Time all CPUs spent since boot (user to softirq), in ns, as docker's stats compute it."""
    with open("/proc/stat") as source:
        for line in source:
            if line.startswith("cpu "):
                ticks = sum(int(value) for value in line.split()[1:8])
                return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return 0


#: The ``memory.stat`` counters docker reports, by cgroup version (dockerd 20.10 copies these
#: through containerd; other lines of the file it leaves out).
DOCKER_MEMORY_STAT = {
    1: (
        "cache", "rss", "rss_huge", "mapped_file", "dirty", "writeback", "pgpgin", "pgpgout",
        "pgfault", "pgmajfault", "inactive_anon", "active_anon", "inactive_file", "active_file",
        "unevictable", "hierarchical_memory_limit", "hierarchical_memsw_limit",
        "total_cache", "total_rss", "total_rss_huge", "total_mapped_file", "total_dirty",
        "total_writeback", "total_pgpgin", "total_pgpgout", "total_pgfault",
        "total_pgmajfault", "total_inactive_anon", "total_active_anon", "total_inactive_file",
        "total_active_file", "total_unevictable",
    ),
    2: (
        "anon", "file", "kernel_stack", "slab", "sock", "shmem", "file_mapped", "file_dirty",
        "file_writeback", "anon_thp", "inactive_anon", "active_anon", "inactive_file",
        "active_file", "unevictable", "slab_reclaimable", "slab_unreclaimable", "pgfault",
        "pgmajfault", "workingset_refault", "workingset_activate", "workingset_nodereclaim",
        "pgrefill", "pgscan", "pgsteal", "pgactivate", "pgdeactivate", "pglazyfree",
        "pglazyfreed", "thp_fault_alloc", "thp_collapse_alloc",
    ),
}  # fmt: skip


def docker_memory_stat(raw: dict[str, int], version: int) -> dict[str, int]:
    """The counters of a ``memory.stat`` docker reports for cgroup ``version``; 0 for those
    the kernel does not write (a v2 kernel before 5.x has no ``workingset_*`` lines)."""
    return {key: raw.get(key, 0) for key in DOCKER_MEMORY_STAT[version]}


def _ticks_ns(ticks: int) -> int:
    """Clock ticks (USER_HZ, as ``cpuacct.stat`` counts) in nanoseconds."""
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _blkio_entries(path: str) -> tuple[BlockIOEntry, ...]:
    """A v1 blkio file's ``MAJOR:MINOR Op value`` lines; the closing ``Total N`` (summing
    all devices) is left out, as docker leaves it."""
    entries = []
    try:
        with open(path) as source:
            for line in source:
                fields = line.split()
                if len(fields) != 3 or ":" not in fields[0]:
                    continue
                major, _, minor = fields[0].partition(":")
                entries.append(BlockIOEntry(int(major), int(minor), fields[1], int(fields[2])))
    except (OSError, ValueError):
        pass
    return tuple(entries)


def _io_stat(path: str) -> list[tuple[tuple[int, int], dict[str, int]]]:
    """v2 ``io.stat``: each device's ``key=value`` counters."""
    devices = []
    try:
        with open(path) as source:
            for line in source:
                device, *pairs = line.split()
                major, _, minor = device.partition(":")
                counters = {}
                for pair in pairs:
                    key, _, value = pair.partition("=")
                    if value.isdigit():
                        counters[key] = int(value)
                devices.append(((int(major), int(minor)), counters))
    except (OSError, ValueError):
        pass
    return devices


class Capabilities(NamedTuple):
    """What this host's cgroups can limit, found as dockerd 20.10 finds it (for ``/info``): on
    v1 by the control files of each controller's hierarchy, on v2 by the controllers the root
    offers."""

    version: int
    memory_limit: bool
    swap_limit: bool
    oom_kill_disable: bool
    kernel_memory: bool
    kernel_memory_tcp: bool
    cpu_shares: bool
    cpu_cfs: bool
    cpuset: bool
    pids_limit: bool


def capabilities() -> Capabilities:
    """The cgroup capabilities of this host (see :class:`Capabilities`)."""
    layout = detect_layout()
    if layout.version == 1:
        mounts = layout.mounts

        def has(controller: str, name: str = "") -> bool:
            return controller in mounts and os.path.exists(os.path.join(mounts[controller], name))

        return Capabilities(
            version=1,
            memory_limit=has("memory"),
            swap_limit=has("memory", "memory.memsw.limit_in_bytes"),
            oom_kill_disable=has("memory", "memory.oom_control"),
            kernel_memory=has("memory", "memory.kmem.limit_in_bytes"),
            kernel_memory_tcp=has("memory", "memory.kmem.tcp.limit_in_bytes"),
            cpu_shares=has("cpu", "cpu.shares"),
            cpu_cfs=has("cpu", "cpu.cfs_quota_us"),
            cpuset=has("cpuset"),
            pids_limit=has("pids"),
        )
    root = layout.mounts[""]
    try:
        controllers = set(_read(os.path.join(root, "cgroup.controllers")).split())
    except OSError:
        controllers = set()
    # Swap is limited where the daemon's own cgroup has the file (none without swap accounting).
    own = ""
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as membership:
        for line in membership:
            if line.startswith("0::"):
                own = line[3:].strip().lstrip("/")
    memory = "memory" in controllers
    return Capabilities(
        version=2,
        memory_limit=memory,
        swap_limit=memory and os.path.exists(os.path.join(root, own, "memory.swap.max")),
        # v2 has no setting for these.
        oom_kill_disable=False,
        kernel_memory=False,
        kernel_memory_tcp=False,
        cpu_shares="cpu" in controllers,
        cpu_cfs="cpu" in controllers,
        cpuset="cpuset" in controllers,
        pids_limit="pids" in controllers,
    )


class ContainerCgroup:
    """The cgroup directories of one container."""

    def __init__(
        self, container_id: str, parent: str = "dockyard", layout: Layout | None = None
    ) -> None:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise CgroupError(f"invalid container id for a cgroup: {container_id!r}")
        self.container_id = container_id
        self.parent = parent.strip("/")
        self.layout = layout or detect_layout()
        relative = os.path.join(self.parent, container_id) if self.parent else container_id
        #: The cgroup's path as ``/proc/PID/cgroup`` names it.
        self.path = "/" + relative
        #: Controller ("" on v2) -> the container's directory; co-mounted controllers share one.
        self.dirs = {
            controller: os.path.join(point, relative)
            for controller, point in self.layout.mounts.items()
        }

    @property
    def version(self) -> int:
        return self.layout.version

    def _unique_dirs(self) -> list[str]:
        return list(dict.fromkeys(self.dirs.values()))

    def _file(self, controller: str, name: str) -> str:
        return os.path.join(self.dirs["" if self.version == 2 else controller], name)

    # ------------------------------------------------------------------ set up

    def create(self, resources: Resources | None = None, privileged: bool = False) -> None:
        """Make the directories and write the limits; on failure nothing is left."""
        resources = resources or Resources()
        try:
            if self.version == 1:
                self._create_v1(resources, privileged)
            else:
                self._create_v2(resources)
        except BaseException:
            self.remove()
            raise

    def _create_v1(self, resources: Resources, privileged: bool) -> None:
        for controller, path in self.dirs.items():
            if controller == "cpuset":
                self._make_cpuset_levels()
            os.makedirs(path, exist_ok=True)
        if not privileged and "devices" in self.dirs:
            _write(self._file("devices", "devices.deny"), "a")
            for rule in (*DEFAULT_DEVICE_RULES, *resources.device_rules):
                _write(self._file("devices", "devices.allow"), rule)
        self._apply_v1(resources)
        for name, rates in _throttle_files(resources):
            if rates and "blkio" not in self.dirs:
                raise CgroupError("the blkio controller is not mounted")
            for rate in rates:
                _write(self._file("blkio", f"blkio.throttle.{name}_device"), _rate_line(rate))

    def _make_cpuset_levels(self) -> None:
        """Make the cpuset directories down to the container's, each with its parent's CPUs
        and memory nodes (a new v1 cpuset cgroup has none, and no process could join it)."""
        level = self.layout.mounts["cpuset"]
        for part in [*self.parent.split("/"), self.container_id]:
            if not part:
                continue
            parent, level = level, os.path.join(level, part)
            os.makedirs(level, exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not _read(os.path.join(level, name)):
                    _write(os.path.join(level, name), _read(os.path.join(parent, name)))

    def _apply_v1(self, limits: Resources) -> None:
        """Write every limit ``limits`` sets (on create, and again on ``docker update``)."""
        if limits.memory_bytes is not None or limits.memory_swap is not None:
            self._set_memory_v1(limits)
        if limits.memory_reservation is not None:
            _write(self._file("memory", "memory.soft_limit_in_bytes"),
                   str(limits.memory_reservation))  # fmt: skip
        if limits.memory_swappiness is not None:
            _write(self._file("memory", "memory.swappiness"), str(limits.memory_swappiness))
        if limits.oom_kill_disable:
            _write(self._file("memory", "memory.oom_control"), "1")
        if limits.nano_cpus is not None and "cpu" in self.dirs:
            _write(self._file("cpu", "cpu.cfs_period_us"), str(CPU_PERIOD_US))
            _write(self._file("cpu", "cpu.cfs_quota_us"), str(_cpu_quota(limits.nano_cpus)))
        if limits.cpu_shares is not None:
            _write(self._file("cpu", "cpu.shares"), str(limits.cpu_shares))
        if limits.cpuset_cpus:
            _write(self._file("cpuset", "cpuset.cpus"), limits.cpuset_cpus)
        if limits.cpuset_mems:
            _write(self._file("cpuset", "cpuset.mems"), limits.cpuset_mems)
        if limits.pids_limit is not None and limits.pids_limit > 0 and "pids" in self.dirs:
            _write(self._file("pids", "pids.max"), str(limits.pids_limit))

    def _set_memory_v1(self, limits: Resources) -> None:
        memory = limits.memory_bytes if limits.memory_bytes is not None else -1
        swap_file = self._file("memory", "memory.memsw.limit_in_bytes")
        has_swap_file = os.path.exists(swap_file)
        if limits.memory_swap is not None and limits.memory_swap != 0 and not has_swap_file:
            raise CgroupError("the kernel has no swap accounting (memory.memsw.limit_in_bytes)")
        # docker's default without --memory-swap: as much swap as memory.
        swap = limits.memory_swap or (memory * 2 if memory > 0 else -1)
        limit_file = self._file("memory", "memory.limit_in_bytes")
        if not has_swap_file:
            _write(limit_file, str(memory))
            return
        # The kernel keeps memory <= memory+swap at every step: raise the sum first when the
        # new memory limit is above the old sum, else lower the memory limit first.
        try:
            _write(limit_file, str(memory))
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _write(swap_file, str(swap))
            _write(limit_file, str(memory))
        _write(swap_file, str(swap))

    def update(self, resources: Resources) -> None:
        """Apply ``resources`` to the existing cgroups (``docker update``); the device rules
        and block I/O throttles are the container's for its life."""
        if not self.exists():
            raise CgroupError(f"container {self.container_id} has no cgroup")
        if self.version == 1:
            self._apply_v1(resources)
        else:
            self._apply_v2(resources)

    def _create_v2(self, resources: Resources) -> None:
        root = self.layout.mounts[""]
        directory = self.dirs[""]
        # Every level above the container must hand the controllers down.
        level = root
        for part in [p for p in self.parent.split("/") if p]:
            self._enable_controllers(level)
            level = os.path.join(level, part)
            os.makedirs(level, exist_ok=True)
        self._enable_controllers(level)
        os.makedirs(directory, exist_ok=True)
        self._apply_v2(resources)
        lines: dict[str, list[str]] = {
            f"{rate.major}:{rate.minor}": [] for _, rates in _throttle_files(resources)
            for rate in rates
        }  # fmt: skip
        for name, rates in _throttle_files(resources):
            key = {"read_bps": "rbps", "write_bps": "wbps", "read_iops": "riops"}.get(name, "wiops")
            for rate in rates:
                lines[f"{rate.major}:{rate.minor}"].append(f"{key}={rate.rate}")
        for device, settings in lines.items():
            _write(os.path.join(directory, "io.max"), f"{device} {' '.join(settings)}")

    def _apply_v2(self, limits: Resources) -> None:
        directory = self.dirs[""]
        if limits.memory_swappiness is not None or limits.oom_kill_disable:
            raise CgroupError("memory swappiness and oom-kill-disable have no cgroup v2 setting")
        if limits.memory_bytes is not None:
            _write(os.path.join(directory, "memory.max"), str(limits.memory_bytes))
            swap_file = os.path.join(directory, "memory.swap.max")
            if os.path.exists(swap_file):
                swap = limits.memory_swap or limits.memory_bytes * 2
                extra = "max" if swap < 0 else str(swap - limits.memory_bytes)
                _write(swap_file, extra)
        if limits.memory_reservation is not None:
            _write(os.path.join(directory, "memory.low"), str(limits.memory_reservation))
        if limits.nano_cpus is not None:
            _write(os.path.join(directory, "cpu.max"),
                   f"{_cpu_quota(limits.nano_cpus)} {CPU_PERIOD_US}")  # fmt: skip
        if limits.cpu_shares is not None:
            _write(os.path.join(directory, "cpu.weight"), str(cpu_weight(limits.cpu_shares)))
        if limits.cpuset_cpus:
            _write(os.path.join(directory, "cpuset.cpus"), limits.cpuset_cpus)
        if limits.cpuset_mems:
            _write(os.path.join(directory, "cpuset.mems"), limits.cpuset_mems)
        if limits.pids_limit is not None and limits.pids_limit > 0:
            _write(os.path.join(directory, "pids.max"), str(limits.pids_limit))

    @staticmethod
    def _enable_controllers(directory: str) -> None:
        available = set(_read(os.path.join(directory, "cgroup.controllers")).split())
        enabled = set(_read(os.path.join(directory, "cgroup.subtree_control")).split())
        wanted = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
        if wanted:
            _write(
                os.path.join(directory, "cgroup.subtree_control"),
                " ".join(f"+{c}" for c in wanted),
            )

    def open_procs_files(self) -> list[int]:
        """File descriptors of every ``cgroup.procs`` (close-on-exec).

        Opened before the container's root replaces the host's, so the process can still join
        its cgroups by writing ``0`` to each after the host's /sys/fs/cgroup is out of sight.
        """
        return [
            os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
            for path in self._unique_dirs()
        ]

    def exists(self) -> bool:
        return any(os.path.isdir(path) for path in self._unique_dirs())

    # ------------------------------------------------------------------ freezer

    def freeze(self) -> None:
        """Freeze every process and wait until the kernel says they are frozen."""
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:
        if self.version == 1:
            if "freezer" not in self.dirs:
                raise CgroupError("the freezer controller is not mounted")
            state_file = self._file("freezer", "freezer.state")
            wanted = "FROZEN" if frozen else "THAWED"
            _write(state_file, wanted)
            deadline = time.monotonic() + FREEZE_TIMEOUT
            while _read(state_file) != wanted:
                if time.monotonic() > deadline:
                    raise CgroupError(f"the container's cgroup did not become {wanted}")
                _write(state_file, wanted)
                time.sleep(0.001)
            return
        _write(self._file("", "cgroup.freeze"), "1" if frozen else "0")
        events = self._file("", "cgroup.events")
        deadline = time.monotonic() + FREEZE_TIMEOUT
        while _keyed(events).get("frozen", -1) != int(frozen):
            if time.monotonic() > deadline:
                raise CgroupError("the container's cgroup did not change its frozen state")
            time.sleep(0.001)

    def is_frozen(self) -> bool:
        try:
            if self.version == 1:
                return _read(self._file("freezer", "freezer.state")) != "THAWED"
            return _keyed(self._file("", "cgroup.events")).get("frozen") == 1
        except (OSError, KeyError):
            return False

    # ------------------------------------------------------------------ reading

    def pids(self) -> list[int]:
        """Host pids of every process in the container's cgroup."""
        controller = "pids" if self.version == 1 and "pids" in self.dirs else "memory"
        path = self._file(controller if self.version == 1 else "", "cgroup.procs")
        try:
            return [int(line) for line in _read(path).split()]
        except OSError:
            return []

    def memory_usage(self) -> int:
        if self.version == 1:
            return _read_int(self._file("memory", "memory.usage_in_bytes"))
        return _read_int(self._file("", "memory.current"))

    def memory_limit(self) -> int:
        """The limit, or the host's memory when there is none (as docker reports it)."""
        machine = host_memory()
        if self.version == 1:
            limit = _read_int(self._file("memory", "memory.limit_in_bytes"), machine)
        else:
            limit = _read_int(self._file("", "memory.max"), machine)
        return min(limit, machine) if machine else limit

    def cpu_usage_ns(self) -> int:
        if self.version == 1:
            return (
                _read_int(self._file("cpuacct", "cpuacct.usage")) if "cpuacct" in self.dirs else 0
            )
        return _keyed(self._file("", "cpu.stat")).get("usage_usec", 0) * 1000

    def cpu_quota(self) -> tuple[int, int]:
        """``(quota_us, period_us)``; quota -1 means unlimited."""
        if self.version == 1:
            return (
                _read_int(self._file("cpu", "cpu.cfs_quota_us"), -1),
                _read_int(self._file("cpu", "cpu.cfs_period_us"), CPU_PERIOD_US),
            )
        quota, _, period = _read(self._file("", "cpu.max")).partition(" ")
        return (-1 if quota == "max" else int(quota)), int(period or CPU_PERIOD_US)

    def pids_current(self) -> int:
        return _read_int(self._file("pids", "pids.current")) if self._has("pids") else 0

    def pids_max(self) -> int:
        """The pids limit; 0 when unlimited."""
        return _read_int(self._file("pids", "pids.max")) if self._has("pids") else 0

    def cpu_times(self) -> CpuTimes:
        """Kernel and user time, and (v1) the time on each CPU."""
        if self.version == 2:
            stat = _keyed(self._file("", "cpu.stat"))
            return CpuTimes(
                kernel_ns=stat.get("system_usec", 0) * 1000,
                user_ns=stat.get("user_usec", 0) * 1000,
            )
        if "cpuacct" not in self.dirs:
            return CpuTimes()
        ticks = _keyed(self._file("cpuacct", "cpuacct.stat"))
        try:
            per_cpu = tuple(
                int(v) for v in _read(self._file("cpuacct", "cpuacct.usage_percpu")).split()
            )
        except (OSError, ValueError):
            per_cpu = ()
        return CpuTimes(
            kernel_ns=_ticks_ns(ticks.get("system", 0)),
            user_ns=_ticks_ns(ticks.get("user", 0)),
            per_cpu_ns=per_cpu,
        )

    def cpu_throttling(self) -> CpuThrottling:
        """What the CFS quota did (``cpu.stat``: v1 counts the time in ns, v2 in us)."""
        if self.version == 2:
            stat = _keyed(self._file("", "cpu.stat"))
            throttled_ns = stat.get("throttled_usec", 0) * 1000
        elif "cpu" in self.dirs:
            stat = _keyed(self._file("cpu", "cpu.stat"))
            throttled_ns = stat.get("throttled_time", 0)
        else:
            return CpuThrottling()
        return CpuThrottling(
            periods=stat.get("nr_periods", 0),
            throttled_periods=stat.get("nr_throttled", 0),
            throttled_ns=throttled_ns,
        )

    def memory_detail(self) -> MemoryDetail:
        """Peak usage, failure count and the ``memory.stat`` counters docker reports."""
        if self.version == 2:
            return MemoryDetail(
                failcnt=_keyed(self._file("", "memory.events")).get("oom", 0),
                stat=docker_memory_stat(_keyed(self._file("", "memory.stat")), 2),
            )
        return MemoryDetail(
            max_usage=_read_int(self._file("memory", "memory.max_usage_in_bytes")),
            failcnt=_read_int(self._file("memory", "memory.failcnt")),
            stat=docker_memory_stat(_keyed(self._file("memory", "memory.stat")), 1),
        )

    def block_io(self) -> BlockIO:
        """Bytes and requests by device: v1 from the blkio throttling files (they count
        every request, whatever the scheduler), v2 from ``io.stat``."""
        if self.version == 2:
            entries = []
            for device, counters in _io_stat(self._file("", "io.stat")):
                major, minor = device
                entries.append(BlockIOEntry(major, minor, "read", counters.get("rbytes", 0)))
                entries.append(BlockIOEntry(major, minor, "write", counters.get("wbytes", 0)))
            return BlockIO(service_bytes=tuple(entries) or None)
        if "blkio" not in self.dirs:
            return BlockIO()
        return BlockIO(
            service_bytes=_blkio_entries(
                self._file("blkio", "blkio.throttle.io_service_bytes_recursive")
            ),
            serviced=_blkio_entries(self._file("blkio", "blkio.throttle.io_serviced_recursive")),
            queued=(), service_time=(), wait_time=(), merged=(), time=(), sectors=(),
        )  # fmt: skip

    def _has(self, controller: str) -> bool:
        return self.version == 2 or controller in self.dirs

    def oom_kills(self) -> int:
        """How many processes the OOM killer killed in this cgroup."""
        if self.version == 2:
            return _keyed(self._file("", "memory.events")).get("oom_kill", 0)
        control = _keyed(self._file("memory", "memory.oom_control"))
        if "oom_kill" in control:
            return control["oom_kill"]
        # Kernels before 4.13 have no counter: hitting the limit is the best hint there is.
        return _read_int(self._file("memory", "memory.failcnt"))

    # ------------------------------------------------------------------ clean-up

    def kill_all(self) -> None:
        """SIGKILL every process left in the cgroup and wait until it is empty."""
        if self.is_frozen():
            # A frozen process cannot die; it must be thawed to act on the signal.
            for pid in self.pids():
                _kill(pid)
            self.thaw()
        kill_file = self._file("", "cgroup.kill") if self.version == 2 else ""
        deadline = time.monotonic() + EMPTY_TIMEOUT
        while True:
            left = self.pids()
            if not left:
                return
            if kill_file and os.path.exists(kill_file):
                _write(kill_file, "1")
            for pid in left:
                _kill(pid)
            if time.monotonic() > deadline:
                raise CgroupError(f"processes {left} of the container do not die")
            time.sleep(0.005)

    def remove(self) -> None:
        """Kill stray processes and delete the container's directories; missing is fine."""
        if not self.exists():
            return
        self.kill_all()
        for path in self._unique_dirs():
            deadline = time.monotonic() + EMPTY_TIMEOUT
            while True:
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    # A dead process may still be leaving the cgroup for a moment.
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def cpu_weight(shares: int) -> int:
    """cgroup v2's ``cpu.weight`` (1..10000) for v1's ``cpu.shares`` (2..262144), as runc
    converts it."""
    return 1 + ((shares - 2) * 9999) // 262142


def _throttle_files(resources: Resources) -> list[tuple[str, tuple[DeviceRate, ...]]]:
    return [
        ("read_bps", resources.blkio_read_bps),
        ("write_bps", resources.blkio_write_bps),
        ("read_iops", resources.blkio_read_iops),
        ("write_iops", resources.blkio_write_iops),
    ]


def _rate_line(rate: DeviceRate) -> str:
    return f"{rate.major}:{rate.minor} {rate.rate}"


def host_cpus() -> str:
    """The CPUs this machine has online, in the kernel's list format (``0-3``)."""
    return _read("/sys/devices/system/cpu/online")


def host_memory_nodes() -> str:
    """The memory (NUMA) nodes this machine has online (``0`` on most)."""
    try:
        return _read("/sys/devices/system/node/online")
    except OSError:
        return "0"


def _cpu_quota(nano_cpus: int) -> int:
    return max(CPU_MIN_QUOTA_US, nano_cpus * CPU_PERIOD_US // 1_000_000_000)
