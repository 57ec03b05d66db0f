"""The OCI runtime bundle's ``config.json``, made from a :class:`ContainerSpec`.

Pure functions from the spec to the JSON document runc reads (OCI runtime spec 1.0.2): no
side effects beyond a few cheap reads of what this host supports. The supervisor runs this on
every container start, so it imports nothing but the standard library, the core's capability
table and the namespaces package's low-level helpers.
"""

from __future__ import annotations

import os
from typing import Any

from dockyard.core.capabilities import ALL_CAPABILITIES
from dockyard.core.interfaces import (
    BindMount,
    ContainerSpec,
    IdMapping,
    LaunchError,
    ProcessSpec,
    Resources,
    TmpfsMount,
)
from dockyard.linux import seccomp
from dockyard.linux.capabilities import bounding_set, last_capability
from dockyard.linux.cgroups import CPU_MIN_QUOTA_US, CPU_PERIOD_US

OCI_VERSION = "1.0.2"
ROOTFS_DIR = "rootfs"
CONFIG_FILE = "config.json"
SHM_DIR = "shm"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PROC_FLAGS = ["nosuid", "noexec", "nodev"]
#: Where the v1 memory controller keeps its memory+swap limit, present only with swap
#: accounting: runc fails to start a container that asks for a swap limit without it.
_V1_MEMSW_FILE = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"

#: Device cgroup rules (besides the standard nodes runc always allows): mknod of anything,
#: as docker allows it, so a container may make device nodes it cannot open.
_MKNOD_RULES = [
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
]


def rootfs_path(spec: ContainerSpec) -> str:
    return os.path.join(spec.state_dir, ROOTFS_DIR)


def cgroups_path(container_id: str, parent: str) -> str:
    """An absolute cgroup path: runc puts it below each hierarchy's root, not below its own."""
    parent = parent.strip("/")
    return f"/{parent}/{container_id}" if parent else f"/{container_id}"


def all_capabilities() -> list[str]:
    """Every capability we hold in our bounding set: what a privileged container gets.

    Not all the kernel knows: where we run in a container ourselves, runc could not grant
    what our own bounding set lacks ("unable to apply caps: operation not permitted").
    """
    held = bounding_set()
    return [
        name for number, name in enumerate(ALL_CAPABILITIES[: last_capability() + 1])
        if held & (1 << number)
    ]  # fmt: skip


def process_config(process: ProcessSpec, privileged: bool) -> dict[str, Any]:
    """The ``process`` object, for ``config.json`` and for ``runc exec --process``.

    The inheritable set stays empty and no capability is ambient, as docker does since
    CVE-2022-24769 (and as the ``namespaces`` runtime does): a non-root user keeps none after
    exec, a root user the bounding set.
    """
    capabilities = all_capabilities() if privileged else list(process.capabilities)
    config: dict[str, Any] = {
        "terminal": process.terminal,
        "user": {
            "uid": process.uid,
            "gid": process.gid,
            "additionalGids": list(process.additional_gids),
        },
        "args": list(process.args),
        "env": list(process.env) or [f"PATH={DEFAULT_PATH}"],
        "cwd": process.cwd or "/",
        "capabilities": {
            "bounding": capabilities,
            "effective": capabilities,
            "permitted": capabilities,
            "inheritable": [],
            "ambient": [],
        },
        "noNewPrivileges": process.no_new_privileges,
    }
    rows, columns = process.console_size
    if process.terminal and rows > 0 and columns > 0:
        config["consoleSize"] = {"height": rows, "width": columns}
    if process.rlimits:
        config["rlimits"] = [
            {"type": r.type, "soft": _rlimit_value(r.soft), "hard": _rlimit_value(r.hard)}
            for r in process.rlimits
        ]
    if process.oom_score_adj:
        config["oomScoreAdj"] = process.oom_score_adj
    return config


def _rlimit_value(value: int) -> int:
    """runc takes an unsigned 64-bit number: docker's -1 (unlimited) is RLIM_INFINITY."""
    return value if value >= 0 else (1 << 64) - 1


def _sys_mount(spec: ContainerSpec, read_only: list[str]) -> dict[str, Any]:
    if spec.uid_mappings and spec.netns and spec.network_mode != "host":
        # sysfs needs the network namespace's owner; one the host's root made and the
        # container joins is not its user namespace's: the host's /sys, as with --network host.
        return {
            "destination": "/sys",
            "type": "bind",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", *read_only],
        }
    return {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": [*_PROC_FLAGS, *read_only],
    }


def _mounts(spec: ContainerSpec) -> list[dict[str, Any]]:
    """docker's default mounts for runc, then the bind mounts and the etc files."""
    read_only = [] if spec.privileged else ["ro"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": _PROC_FLAGS},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        _sys_mount(spec, read_only),
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [*_PROC_FLAGS, *read_only],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": _PROC_FLAGS,
        },
        *_shm_mount(spec),
    ]
    # Parents before children, so a mount inside another bind mount lands on top of it.
    listed: list[BindMount | TmpfsMount] = [*spec.mounts, *spec.tmpfs]
    for bind in sorted(listed, key=lambda m: len(m.destination.rstrip("/").split("/"))):
        if isinstance(bind, TmpfsMount):
            mounts.append(
                {
                    "destination": bind.destination,
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": list(bind.options),
                }
            )
            continue
        mounts.append(
            {
                "destination": bind.destination,
                "type": "bind",
                "source": bind.source,
                "options": [
                    "rbind" if bind.recursive else "bind",
                    bind.propagation or "rprivate",
                    *(["ro"] if bind.read_only else []),
                ],
            }
        )
    for host_file, destination in spec.etc_files:
        mounts.append(
            {
                "destination": destination,
                "type": "bind",
                "source": host_file,
                "options": ["rbind", "rprivate"],
            }
        )
    return mounts


def shm_path(spec: ContainerSpec) -> str:
    """Where the launcher attaches the /dev/shm of the joined IPC namespace (see
    :func:`dockyard.linux.nsmounts.clone_from_namespace`), for runc to bind."""
    return os.path.join(spec.state_dir, SHM_DIR)


def _shm_mount(spec: ContainerSpec) -> list[dict[str, Any]]:
    """/dev/shm: the host's or the joined IPC namespace's (bound), a tmpfs of its own, or none."""
    joined = spec.ipc_namespace not in ("", "host")
    if spec.ipc_namespace == "host" or joined:
        return [
            {
                "destination": "/dev/shm",
                "type": "bind",
                "source": shm_path(spec) if joined else "/dev/shm",
                "options": ["rbind", "rprivate"],
            }
        ]
    if spec.shm_size <= 0:
        return []
    return [
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": [*_PROC_FLAGS, "mode=1777", f"size={spec.shm_size}"],
        }
    ]


def _shared_namespaces(spec: ContainerSpec) -> list[dict[str, str]]:
    """The PID, IPC and UTS namespaces: new, joined by path, or the host's (not named)."""
    namespaces = []
    for kind, namespace in (
        ("pid", spec.pid_namespace),
        ("ipc", spec.ipc_namespace),
        ("uts", spec.uts_namespace),
    ):
        if not namespace:
            namespaces.append({"type": kind})
        elif namespace != "host":
            namespaces.append({"type": kind, "path": namespace})
    return namespaces


def names_network_namespace(spec: ContainerSpec) -> bool:
    """Whether the bundle names the daemon's namespace file, for runc to join, rather than
    runc running in it: runc writes net.* sysctls only into a namespace the bundle names and
    that is not its own. Without a user namespace only (see ``Runc.command``)."""
    remapped = bool(spec.uid_mappings or spec.gid_mappings)
    wants_sysctls = any(name.startswith("net.") for name, _ in spec.sysctls)
    return bool(spec.netns) and spec.network_mode != "host" and wants_sysctls and not remapped


def _namespaces(spec: ContainerSpec) -> list[dict[str, str]]:
    kinds = ["user"] if spec.uid_mappings or spec.gid_mappings else []
    kinds += ["mount"]
    if spec.cgroup_namespace != "host" and os.path.exists("/proc/self/ns/cgroup"):
        kinds.append("cgroup")
    namespaces = [{"type": kind} for kind in kinds] + _shared_namespaces(spec)
    if spec.network_mode != "host" and not spec.netns:
        # A new one, whose loopback runc brings up itself. A namespace file the daemon made
        # is not named here: runc runs inside it (see ``Runc.command``).
        namespaces.append({"type": "network"})
    elif names_network_namespace(spec):
        namespaces.append({"type": "network", "path": spec.netns})
    return namespaces


def _id_mappings(mappings: tuple[IdMapping, ...]) -> list[dict[str, int]]:
    return [{"containerID": m.container_id, "hostID": m.host_id, "size": m.size} for m in mappings]


def _resources(spec: ContainerSpec) -> dict[str, Any]:
    devices = [{"allow": True, "access": "rwm"}] if spec.privileged else [
        {"allow": False, "access": "rwm"}, *_MKNOD_RULES,
        *(device_rule(rule) for rule in spec.resources.device_rules),
    ]  # fmt: skip
    resources: dict[str, Any] = {"devices": devices, **oci_resources(spec.resources)}
    throttles = {
        "throttleReadBpsDevice": spec.resources.blkio_read_bps,
        "throttleWriteBpsDevice": spec.resources.blkio_write_bps,
        "throttleReadIOPSDevice": spec.resources.blkio_read_iops,
        "throttleWriteIOPSDevice": spec.resources.blkio_write_iops,
    }
    block_io = {
        key: [{"major": r.major, "minor": r.minor, "rate": r.rate} for r in rates]
        for key, rates in throttles.items() if rates
    }  # fmt: skip
    if block_io:
        resources["blockIO"] = block_io
    return resources


def oci_resources(limits: Resources) -> dict[str, Any]:
    """The cgroup limits of ``linux.resources`` (devices and block I/O aside): what the bundle
    starts the container with, and what ``runc update`` takes for ``docker update``."""
    resources: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    if limits.memory_bytes is not None:
        memory["limit"] = limits.memory_bytes
        if os.path.exists(_V1_MEMSW_FILE):
            # docker's default without --memory-swap: as much swap as memory.
            memory["swap"] = limits.memory_swap or limits.memory_bytes * 2
    elif limits.memory_swap is not None:
        memory["swap"] = limits.memory_swap
    if limits.memory_reservation is not None:
        memory["reservation"] = limits.memory_reservation
    if limits.memory_swappiness is not None:
        memory["swappiness"] = limits.memory_swappiness
    if limits.oom_kill_disable:
        memory["disableOOMKiller"] = True
    if memory:
        resources["memory"] = memory
    cpu: dict[str, Any] = {}
    if limits.nano_cpus is not None:
        quota = max(limits.nano_cpus * CPU_PERIOD_US // 1_000_000_000, CPU_MIN_QUOTA_US)
        cpu.update(quota=quota, period=CPU_PERIOD_US)
    if limits.cpu_shares is not None:
        cpu["shares"] = limits.cpu_shares
    if limits.cpuset_cpus:
        cpu["cpus"] = limits.cpuset_cpus
    if limits.cpuset_mems:
        cpu["mems"] = limits.cpuset_mems
    if cpu:
        resources["cpu"] = cpu
    if limits.pids_limit is not None and limits.pids_limit > 0:
        resources["pids"] = {"limit": limits.pids_limit}
    return resources


def device_rule(rule: str) -> dict[str, Any]:
    """A v1 ``devices.allow`` line (``c 1:3 rwm``, ``b *:* m``, ``a``) as an OCI device rule."""
    kind, _, rest = rule.partition(" ")
    numbers, _, access = rest.partition(" ")
    major, _, minor = numbers.partition(":")
    entry: dict[str, Any] = {"allow": True, "type": kind, "access": access or "rwm"}
    if major and major != "*":
        entry["major"] = int(major)
    if minor and minor != "*":
        entry["minor"] = int(minor)
    return entry


def _devices(spec: ContainerSpec) -> list[dict[str, Any]]:
    return [
        {
            "path": d.path, "type": d.type, "major": d.major, "minor": d.minor,
            "fileMode": d.mode, "uid": d.uid, "gid": d.gid,
        }
        for d in spec.devices
    ]  # fmt: skip


def _seccomp(capabilities: tuple[str, ...]) -> dict[str, Any]:
    """The profile of :mod:`dockyard.linux.seccomp`, in the OCI form runc compiles (with the
    same libseccomp and the same ENOSYS stub as the ``namespaces`` runtime's filter)."""
    try:
        return seccomp.oci_profile(capabilities)
    except seccomp.SeccompUnavailable as exc:
        raise LaunchError(f"seccomp: {exc}") from None


def bundle_config(spec: ContainerSpec, cgroup_parent: str) -> dict[str, Any]:
    """The whole ``config.json`` for ``spec``; the root is ``<state_dir>/rootfs``."""
    linux: dict[str, Any] = {
        "namespaces": _namespaces(spec),
        "resources": _resources(spec),
        "cgroupsPath": cgroups_path(spec.id, cgroup_parent),
    }
    if spec.uid_mappings or spec.gid_mappings:
        linux["uidMappings"] = _id_mappings(spec.uid_mappings)
        linux["gidMappings"] = _id_mappings(spec.gid_mappings)
    if not spec.privileged:
        linux["maskedPaths"] = list(spec.masked_paths)
        linux["readonlyPaths"] = list(spec.readonly_paths)
    if spec.process.seccomp != "unconfined":
        linux["seccomp"] = _seccomp(spec.process.capabilities)
    if spec.devices:
        linux["devices"] = _devices(spec)
    if any(bind.propagation in ("shared", "rshared") for bind in spec.mounts):
        # runc makes every mount a slave first (its default "rslave"), which would turn a
        # shared bind's source into a mere slave of the host's mount (dockerd asks the same).
        linux["rootfsPropagation"] = "shared"
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process_config(spec.process, spec.privileged),
        "root": {"path": rootfs_path(spec), "readonly": spec.read_only_rootfs},
        "mounts": _mounts(spec),
        "linux": linux,
    }
    if spec.hostname and not spec.uts_namespace:
        config["hostname"] = spec.hostname
    sysctls = dict(spec.sysctls)
    if spec.domainname and not spec.uts_namespace:
        # As dockerd sets it: runc 1.1 takes no "domainname" field (1.2 does), and the sysctl
        # is setdomainname(2) in the container's UTS namespace. A user's --sysctl wins.
        sysctls.setdefault("kernel.domainname", spec.domainname)
    if sysctls:
        linux["sysctl"] = sysctls
    return config
