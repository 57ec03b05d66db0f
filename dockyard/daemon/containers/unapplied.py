"""Request fields the daemon can read but does not apply, refused by name.

:mod:`~dockyard.daemon.containers.config` decodes every field of docker's create request, so a
client's JSON is never rejected for a field docker has. Decoding a field is not applying it:
the fields below have no effect on this engine, and a request that *sets* one (anything but
its zero value, which clients send for every option the user left alone) is answered with a
400 that names it, rather than creating a container that silently lacks what was asked for.

When a field gets implemented, its row goes. The README's table of refused options is this
table, with its reasons.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.containers.config import ContainerConfig, HealthConfig, HostConfig


def _set(value: object) -> bool:
    """What clients send for an option left alone: zero, empty or null."""
    return bool(value)


def _swappiness_set(value: object) -> bool:
    return value is not None and value != -1


def _not_default_isolation(value: object) -> bool:
    return value not in ("", "default")


def _checks_health(value: object) -> bool:
    """``Test: ["NONE"]`` turns health checks off, which is what happens without them."""
    return isinstance(value, HealthConfig) and bool(value.test) and value.test != ["NONE"]


@attrs.frozen
class Unapplied:
    """One refused field: its attribute on the record, its JSON name, and why it is refused."""

    record: type
    attribute: str
    json_name: str
    reason: str
    is_set: Callable[[object], bool] = _set


_NOT_YET = "not supported by this engine yet"
_WINDOWS = "Windows only"

UNAPPLIED: tuple[Unapplied, ...] = (
    # Resources
    Unapplied(HostConfig, "cpu_shares", "HostConfig.CpuShares", _NOT_YET),
    Unapplied(HostConfig, "blkio_weight", "HostConfig.BlkioWeight", _NOT_YET),
    Unapplied(HostConfig, "blkio_weight_device", "HostConfig.BlkioWeightDevice", _NOT_YET),
    Unapplied(HostConfig, "blkio_device_read_bps", "HostConfig.BlkioDeviceReadBps", _NOT_YET),
    Unapplied(HostConfig, "blkio_device_write_bps", "HostConfig.BlkioDeviceWriteBps", _NOT_YET),
    Unapplied(HostConfig, "blkio_device_read_iops", "HostConfig.BlkioDeviceReadIOps", _NOT_YET),
    Unapplied(HostConfig, "blkio_device_write_iops", "HostConfig.BlkioDeviceWriteIOps", _NOT_YET),
    Unapplied(
        HostConfig,
        "cpu_realtime_period",
        "HostConfig.CpuRealtimePeriod",
        "real-time CPU scheduling needs a kernel with CONFIG_RT_GROUP_SCHED",
    ),
    Unapplied(
        HostConfig,
        "cpu_realtime_runtime",
        "HostConfig.CpuRealtimeRuntime",
        "real-time CPU scheduling needs a kernel with CONFIG_RT_GROUP_SCHED",
    ),
    Unapplied(HostConfig, "cpuset_cpus", "HostConfig.CpusetCpus", _NOT_YET),
    Unapplied(HostConfig, "cpuset_mems", "HostConfig.CpusetMems", _NOT_YET),
    Unapplied(HostConfig, "devices", "HostConfig.Devices", _NOT_YET),
    Unapplied(HostConfig, "device_cgroup_rules", "HostConfig.DeviceCgroupRules", _NOT_YET),
    Unapplied(
        HostConfig,
        "device_requests",
        "HostConfig.DeviceRequests",
        "no device drivers (--gpus) on this engine",
    ),
    Unapplied(
        HostConfig,
        "kernel_memory",
        "HostConfig.KernelMemory",
        "kernel memory limits are deprecated (dockerd ignores them on recent kernels)",
    ),
    Unapplied(
        HostConfig,
        "kernel_memory_tcp",
        "HostConfig.KernelMemoryTCP",
        "kernel memory limits are deprecated (dockerd ignores them on recent kernels)",
    ),
    Unapplied(HostConfig, "memory_reservation", "HostConfig.MemoryReservation", _NOT_YET),
    Unapplied(HostConfig, "memory_swap", "HostConfig.MemorySwap", _NOT_YET),
    Unapplied(
        HostConfig,
        "memory_swappiness",
        "HostConfig.MemorySwappiness",
        _NOT_YET,
        _swappiness_set,
    ),
    Unapplied(HostConfig, "oom_kill_disable", "HostConfig.OomKillDisable", _NOT_YET),
    Unapplied(HostConfig, "ulimits", "HostConfig.Ulimits", _NOT_YET),
    Unapplied(HostConfig, "cpu_count", "HostConfig.CpuCount", _WINDOWS),
    Unapplied(HostConfig, "cpu_percent", "HostConfig.CpuPercent", _WINDOWS),
    Unapplied(HostConfig, "io_maximum_iops", "HostConfig.IOMaximumIOps", _WINDOWS),
    Unapplied(HostConfig, "io_maximum_bandwidth", "HostConfig.IOMaximumBandwidth", _WINDOWS),
    # The rest of HostConfig
    Unapplied(HostConfig, "volume_driver", "HostConfig.VolumeDriver", _NOT_YET),
    Unapplied(HostConfig, "volumes_from", "HostConfig.VolumesFrom", _NOT_YET),
    Unapplied(HostConfig, "cgroup", "HostConfig.Cgroup", _NOT_YET),
    Unapplied(HostConfig, "oom_score_adj", "HostConfig.OomScoreAdj", _NOT_YET),
    Unapplied(
        HostConfig,
        "storage_opt",
        "HostConfig.StorageOpt",
        "no storage driver here takes per-container options (size needs xfs project quotas)",
    ),
    Unapplied(HostConfig, "tmpfs", "HostConfig.Tmpfs", _NOT_YET),
    Unapplied(HostConfig, "isolation", "HostConfig.Isolation", _WINDOWS, _not_default_isolation),
    # Config
    Unapplied(ContainerConfig, "healthcheck", "Healthcheck", _NOT_YET, _checks_health),
    Unapplied(ContainerConfig, "network_disabled", "NetworkDisabled", _NOT_YET),
)


def refuse_unapplied(config: ContainerConfig, host: HostConfig) -> None:
    """Raise :class:`InvalidParameter` naming the first field of the request that asks for
    something this engine would not do."""
    for row in UNAPPLIED:
        record = config if row.record is ContainerConfig else host
        if row.is_set(getattr(record, row.attribute)):
            raise InvalidParameter(f"{row.json_name}: {row.reason}")
