"""A container's resource limits, devices and process limits, read the way dockerd reads them.

:func:`plan_resources` turns ``HostConfig`` into the runtime's
:class:`~dockyard.core.interfaces.Resources`, refusing what dockerd refuses with its messages;
:func:`resolve_devices` looks up ``--device`` and the block I/O throttles' devices on the host
(the only step needing I/O); :func:`merge_update` applies a ``docker update`` body to a
container's ``HostConfig`` with dockerd's rules.
"""

from __future__ import annotations

import os
import re
import stat

import attrs

from dockyard.core.errors import Conflict, InvalidParameter
from dockyard.core.interfaces import DeviceNode, DeviceRate, Resources, Rlimit
from dockyard.daemon.containers import options
from dockyard.daemon.containers.config import HostConfig, ThrottleDevice
from dockyard.daemon.engine_api import ENGINE_API

MINIMUM_MEMORY = 6 * 1024 * 1024
#: docker's ``--ulimit`` names (``RLIMIT_`` + the upper-cased name is the kernel's).
ULIMIT_NAMES = (
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack",
)  # fmt: skip
_DEVICE_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")
_CPU_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")

#: ``docker update``'s fields (``HostConfig`` names) this engine applies.
UPDATABLE = frozenset({
    "cpu_shares", "memory", "cpu_period", "cpu_quota", "nano_cpus", "cpuset_cpus", "cpuset_mems",
    "memory_reservation", "memory_swap", "pids_limit", "restart_policy", "blkio_weight",
})  # fmt: skip


@attrs.frozen
class HostFacts:
    """What validation needs to know of this machine."""

    cpu_count: int
    #: Online CPUs and memory nodes in the kernel's list format (``0-1``).
    cpus: str = ""
    memory_nodes: str = ""


def plan_resources(host: HostConfig, facts: HostFacts, update: bool = False) -> Resources:
    """``host``'s cgroup limits, validated as dockerd does (``update``: for ``docker update``,
    which may leave out the memory limit a swap limit goes with)."""
    memory = host.memory or None
    if memory is not None and memory < 0:
        raise InvalidParameter(f"invalid memory limit: {memory}")
    if memory is not None and memory < MINIMUM_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    swap = host.memory_swap or None
    if swap is not None and swap > 0 and memory is None and not update:
        raise InvalidParameter(
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        )
    if swap is not None and swap > 0 and memory is not None and swap < memory:
        raise InvalidParameter(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if swap is not None and swap < -1:
        raise InvalidParameter(f"invalid memory swap limit: {swap}")
    swappiness = host.memory_swappiness
    if swappiness == -1:
        swappiness = None  # older clients' "not set"
    if swappiness is not None and not 0 <= swappiness <= 100:
        raise InvalidParameter(
            f"Invalid value: {swappiness}, valid memory swappiness range is 0-100"
        )
    reservation = host.memory_reservation or None
    if memory is not None and reservation is not None and memory < reservation:
        raise InvalidParameter(
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        )
    if reservation is not None and reservation < MINIMUM_MEMORY:
        raise InvalidParameter("Minimum memory reservation allowed is 6MB")
    nano_cpus = host.nano_cpus or None
    if nano_cpus is not None and (host.cpu_quota > 0 or host.cpu_period > 0):
        raise InvalidParameter(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set"
            if host.cpu_period > 0
            else "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        )
    if host.cpu_period and not 1000 <= host.cpu_period <= 1_000_000:
        raise InvalidParameter(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        )
    if 0 < host.cpu_quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if nano_cpus is None and host.cpu_quota > 0:
        nano_cpus = host.cpu_quota * 1_000_000_000 // (host.cpu_period or 100_000)
    if nano_cpus is not None and not 0 < nano_cpus <= facts.cpu_count * 10**9:
        raise InvalidParameter(
            f"Range of CPUs is from 0.01 to {facts.cpu_count}.00, as there are only "
            f"{facts.cpu_count} CPUs available"
        )
    if host.cpu_shares < 0:
        raise InvalidParameter(f"invalid CPU shares: {host.cpu_shares} (must not be negative)")
    _check_cpu_list(host.cpuset_cpus, facts.cpus, "cpus", "CPUs")
    _check_cpu_list(host.cpuset_mems, facts.memory_nodes, "mems", "memory nodes")
    pids_limit = host.pids_limit if host.pids_limit and host.pids_limit > 0 else None
    return Resources(
        memory_bytes=memory,
        nano_cpus=nano_cpus,
        pids_limit=pids_limit,
        cpu_shares=host.cpu_shares or None,
        cpuset_cpus=host.cpuset_cpus,
        cpuset_mems=host.cpuset_mems,
        memory_swap=swap,
        memory_reservation=reservation,
        memory_swappiness=swappiness,
        oom_kill_disable=bool(host.oom_kill_disable),
        device_rules=device_cgroup_rules(host.device_cgroup_rules or ()),
    )


def _check_cpu_list(value: str, available: str, kind: str, what: str) -> None:
    if not value:
        return
    if not _CPU_LIST.fullmatch(value):
        raise InvalidParameter(f"Invalid value {value} for cpuset {kind}: invalid format: {value}")
    if available and not cpu_list(value) <= cpu_list(available):
        raise InvalidParameter(
            f"Requested {what} are not available - requested {value}, available: {available}"
        )


def cpu_list(text: str) -> set[int]:
    """The numbers of a kernel list (``0-2,5`` is {0, 1, 2, 5})."""
    numbers: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        numbers.update(range(int(first), int(last or first) + 1))
    return numbers


def device_cgroup_rules(rules: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``--device-cgroup-rule`` entries, checked: ``TYPE MAJOR:MINOR ACCESS``."""
    for rule in rules:
        if not _DEVICE_RULE.fullmatch(rule):
            raise InvalidParameter(f"invalid device cgroup rule format: '{rule}'")
    return tuple(rules)


def with_swap_default(host: HostConfig) -> HostConfig:
    """dockerd records twice the memory limit as ``MemorySwap`` when none was given."""
    if host.memory > 0 and host.memory_swap == 0:
        return attrs.evolve(host, memory_swap=host.memory * 2)
    return host


def rlimits(host: HostConfig) -> tuple[Rlimit, ...]:
    """``--ulimit`` (``HostConfig.Ulimits``) as setrlimit calls; soft above hard is refused."""
    found: dict[str, Rlimit] = {}
    for ulimit in host.ulimits or ():
        if ulimit.name not in ULIMIT_NAMES:
            raise InvalidParameter(f"invalid ulimit type: {ulimit.name}")
        if ulimit.hard != -1 and (ulimit.soft > ulimit.hard or ulimit.soft == -1):
            raise InvalidParameter(
                f"ulimit soft limit must be less than or equal to hard limit: "
                f"{ulimit.soft} > {ulimit.hard}"
            )
        if ulimit.soft < -1 or ulimit.hard < -1:
            raise InvalidParameter(f"invalid ulimit {ulimit.name}: limits are -1 or more")
        found[ulimit.name] = Rlimit(f"RLIMIT_{ulimit.name.upper()}", ulimit.soft, ulimit.hard)
    return tuple(found.values())


def oom_score_adj(host: HostConfig) -> int:
    if not -1000 <= host.oom_score_adj <= 1000:
        raise InvalidParameter(
            f"Invalid value {host.oom_score_adj}, range for oom score adj is [-1000, 1000]"
        )
    return host.oom_score_adj


# --------------------------------------------------------------------------------------------
# devices (host lookups)
# --------------------------------------------------------------------------------------------


def resolve_devices(
    host: HostConfig, resources: Resources
) -> tuple[tuple[DeviceNode, ...], Resources]:
    """``--device`` nodes as the host has them, with the cgroup rules allowing them, and the
    block I/O throttles by device number. Reads the host's ``/dev``."""
    nodes: list[DeviceNode] = []
    rules: list[str] = []
    for mapping in host.devices or ():
        permissions = mapping.cgroup_permissions or "rwm"
        if not permissions or any(c not in "rwm" for c in permissions):
            raise InvalidParameter(f"invalid device mode: {mapping.cgroup_permissions}")
        source = mapping.path_on_host
        target = mapping.path_in_container or source
        if not source.startswith("/") or not target.startswith("/"):
            raise InvalidParameter(f"device paths must be absolute: {source}:{target}")
        for node in _device_nodes(source, target):
            nodes.append(node)
            rules.append(f"{node.type} {node.major}:{node.minor} {permissions}")
    throttles = {
        name: tuple(_rate(t, field) for t in getattr(host, name) or ())
        for name, field in (
            ("blkio_device_read_bps", "BlkioDeviceReadBps"),
            ("blkio_device_write_bps", "BlkioDeviceWriteBps"),
            ("blkio_device_read_iops", "BlkioDeviceReadIOps"),
            ("blkio_device_write_iops", "BlkioDeviceWriteIOps"),
        )
    }
    return tuple(nodes), attrs.evolve(
        resources,
        device_rules=(*rules, *resources.device_rules),
        blkio_read_bps=throttles["blkio_device_read_bps"],
        blkio_write_bps=throttles["blkio_device_write_bps"],
        blkio_read_iops=throttles["blkio_device_read_iops"],
        blkio_write_iops=throttles["blkio_device_write_iops"],
    )


def _device_nodes(source: str, target: str) -> list[DeviceNode]:
    try:
        info = os.stat(source)
    except OSError as exc:
        raise InvalidParameter(
            f'error gathering device information while adding custom device "{source}": '
            f"{os.strerror(exc.errno or 0).lower()}"
        ) from None
    if stat.S_ISDIR(info.st_mode):
        found = []
        for directory, _dirs, files in os.walk(source):
            for name in sorted(files):
                path = os.path.join(directory, name)
                node = _node(path, target + path[len(source) :])
                if node is not None:
                    found.append(node)
        return found
    node = _node(source, target)
    if node is None:
        raise InvalidParameter(f"{source} is not a device node")
    return [node]


def _node(path: str, target: str) -> DeviceNode | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    if stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISBLK(info.st_mode):
        kind = "b"
    else:
        return None
    return DeviceNode(
        path=target,
        type=kind,
        major=os.major(info.st_rdev),
        minor=os.minor(info.st_rdev),
        mode=stat.S_IMODE(info.st_mode),
        uid=info.st_uid,
        gid=info.st_gid,
    )


def _rate(throttle: ThrottleDevice, field: str) -> DeviceRate:
    try:
        info = os.stat(throttle.path)
    except OSError as exc:
        raise InvalidParameter(
            f"{field}: {throttle.path}: {os.strerror(exc.errno or 0).lower()}"
        ) from None
    if not stat.S_ISBLK(info.st_mode):
        raise InvalidParameter(f"{field}: {throttle.path} is not a block device")
    return DeviceRate(os.major(info.st_rdev), os.minor(info.st_rdev), throttle.rate)


# --------------------------------------------------------------------------------------------
# docker update
# --------------------------------------------------------------------------------------------


def refuse_not_updatable(update: HostConfig) -> None:
    """A 400 naming the first field of an update body this engine does not update."""
    defaults = HostConfig()
    for field in attrs.fields(HostConfig):
        if field.name in UPDATABLE:
            continue
        value = getattr(update, field.name)
        if value == getattr(defaults, field.name) or not value:
            continue
        if field.name == "memory_swappiness" and value == -1:
            continue
        json_name = ENGINE_API.key_of(field)
        raise InvalidParameter(f"{json_name} cannot be changed by docker update on this engine")


def keeping_lifelong(planned: Resources, current: Resources) -> Resources:
    """``planned`` limits with ``current``'s devices and block I/O throttles, which are the
    container's for its life (an update or a start's new limits keep them)."""
    return attrs.evolve(
        planned,
        device_rules=current.device_rules,
        blkio_read_bps=current.blkio_read_bps,
        blkio_write_bps=current.blkio_write_bps,
        blkio_read_iops=current.blkio_read_iops,
        blkio_write_iops=current.blkio_write_iops,
    )


def merge_update(current: HostConfig, update: HostConfig, auto_remove: bool) -> HostConfig:
    """``current`` with the fields ``update`` sets, as dockerd merges them (zero: unchanged)."""
    conflicts = (
        (update.nano_cpus > 0 and current.cpu_period > 0,
         "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set"),
        (update.nano_cpus > 0 and current.cpu_quota > 0,
         "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set"),
        (update.cpu_period > 0 and current.nano_cpus > 0,
         "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"),
        (update.cpu_quota > 0 and current.nano_cpus > 0,
         "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"),
        # As dockerd: also when there was no limit (a swap limit of 0) or unlimited swap (-1).
        (update.memory > 0 and update.memory > current.memory_swap and update.memory_swap == 0,
         "Memory limit should be smaller than already set memoryswap limit, update the "
         "memoryswap at the same time"),
    )  # fmt: skip
    for conflict, message in conflicts:
        if conflict:
            raise Conflict(message)
    changes: dict[str, object] = {}
    for name in sorted(UPDATABLE - {"pids_limit", "restart_policy"}):
        value = getattr(update, name)
        if value:
            changes[name] = value
    if update.pids_limit is not None:
        changes["pids_limit"] = update.pids_limit
    if update.restart_policy.name:
        policy = options.parse_restart_policy(update.restart_policy)
        if auto_remove and policy.name:
            raise Conflict(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
            )
        changes["restart_policy"] = policy
    return attrs.evolve(current, **changes)  # type: ignore[arg-type]
