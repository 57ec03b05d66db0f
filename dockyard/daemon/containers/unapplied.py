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
from dockyard.daemon.containers.config import ContainerConfig, HostConfig


def _set(value: object) -> bool:
    """What clients send for an option left alone: zero, empty or null."""
    return bool(value)


def _not_default_isolation(value: object) -> bool:
    return value not in ("", "default")


@attrs.frozen
class Unapplied:
    """One refused field: its attribute on the record, its JSON name, and why it is refused."""

    record: type
    attribute: str
    json_name: str
    reason: str
    is_set: Callable[[object], bool] = _set
    #: The docker CLI's flag for the field, when it has one.
    flag: str = attrs.field(default="", kw_only=True)

    @property
    def message(self) -> str:
        named = f"{self.json_name} ({self.flag})" if self.flag else self.json_name
        return f"{named}: {self.reason}"


_WINDOWS = "Windows only"
#: The v1 blkio controller has weights only under the CFQ/BFQ I/O schedulers, which this
#: kernel lacks (no blkio.weight file); dockerd discards the weight with a warning there.
_NO_BLKIO_WEIGHT = "the kernel's blkio controller has no weights (no CFQ/BFQ I/O scheduler)"
_NO_RT_GROUPS = "real-time CPU scheduling needs a kernel with CONFIG_RT_GROUP_SCHED"
_KERNEL_MEMORY = "kernel memory limits are deprecated (dockerd ignores them on recent kernels)"

UNAPPLIED: tuple[Unapplied, ...] = (
    # Resources
    Unapplied(HostConfig, "blkio_weight", "HostConfig.BlkioWeight", _NO_BLKIO_WEIGHT,
              flag="--blkio-weight"),
    Unapplied(HostConfig, "blkio_weight_device", "HostConfig.BlkioWeightDevice",
              _NO_BLKIO_WEIGHT, flag="--blkio-weight-device"),
    Unapplied(HostConfig, "cpu_realtime_period", "HostConfig.CpuRealtimePeriod", _NO_RT_GROUPS,
              flag="--cpu-rt-period"),
    Unapplied(HostConfig, "cpu_realtime_runtime", "HostConfig.CpuRealtimeRuntime",
              _NO_RT_GROUPS, flag="--cpu-rt-runtime"),
    Unapplied(HostConfig, "device_requests", "HostConfig.DeviceRequests",
              "no device drivers (GPUs) on this engine", flag="--gpus"),
    Unapplied(HostConfig, "kernel_memory", "HostConfig.KernelMemory", _KERNEL_MEMORY,
              flag="--kernel-memory"),
    Unapplied(HostConfig, "kernel_memory_tcp", "HostConfig.KernelMemoryTCP", _KERNEL_MEMORY),
    Unapplied(HostConfig, "cpu_count", "HostConfig.CpuCount", _WINDOWS, flag="--cpu-count"),
    Unapplied(HostConfig, "cpu_percent", "HostConfig.CpuPercent", _WINDOWS,
              flag="--cpu-percent"),
    Unapplied(HostConfig, "io_maximum_iops", "HostConfig.IOMaximumIOps", _WINDOWS,
              flag="--io-maxiops"),
    Unapplied(HostConfig, "io_maximum_bandwidth", "HostConfig.IOMaximumBandwidth", _WINDOWS,
              flag="--io-maxbandwidth"),
    # The rest of HostConfig
    Unapplied(HostConfig, "cgroup", "HostConfig.Cgroup",
              "a container's cgroups are its own here (no joining another's)"),
    Unapplied(HostConfig, "storage_opt", "HostConfig.StorageOpt",
              "no storage driver here takes per-container options (size needs xfs project quotas)",
              flag="--storage-opt"),
    Unapplied(HostConfig, "isolation", "HostConfig.Isolation", _WINDOWS,
              is_set=_not_default_isolation, flag="--isolation"),
    # Config
    Unapplied(ContainerConfig, "network_disabled", "NetworkDisabled",
              "ask for HostConfig.NetworkMode none (--network none) instead"),
)  # fmt: skip


def refuse_unapplied(config: ContainerConfig, host: HostConfig) -> None:
    """Raise :class:`InvalidParameter` naming the first field of the request that asks for
    something this engine would not do."""
    for row in UNAPPLIED:
        record = config if row.record is ContainerConfig else host
        if row.is_set(getattr(record, row.attribute)):
            raise InvalidParameter(row.message)
