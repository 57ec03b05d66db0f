"""How a container's process is isolated: namespaces shared or made, /dev/shm, sysctls, init.

``HostConfig`` fields checked at create as dockerd 20.10 checks them (or, where it lets a bad
value through to a failing start, refused at create with its message), and the values inspect
shows filled in as dockerd fills them: ``IpcMode`` ``private``, ``ShmSize`` 64 MiB,
``CgroupnsMode`` ``host`` on cgroup v1 (``private`` on v2), ``Runtime`` the runtime's name,
``MaskedPaths``/``ReadonlyPaths`` the lists applied.

``container:NAME`` modes name the other container by id at create; its namespace files (its
init process's, ``/proc/PID/ns/KIND``) are found when this one starts
(:func:`join_shared_namespaces`), as the other must be running then. No I/O but a look at what
this host has (its cgroup version, a docker-init binary).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import attrs

from dockyard.core.errors import Conflict, InvalidParameter
from dockyard.core.interfaces import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    BindMount,
    ContainerSpec,
)

CONTAINER_MODE = "container:"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
#: Where docker's init is mounted in the container, and run from.
INIT_PATH = "/sbin/docker-init"
#: Debian's docker.io and tini packages: docker-init is a link to tini-static.
INIT_BINARIES = ("/usr/bin/docker-init", "/usr/bin/tini-static", "/usr/bin/tini")
#: The sysctls an IPC namespace isolates (runc's list), besides ``fs.mqueue.*``.
IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
    "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
})  # fmt: skip
IPC_MODES = ("none", "private", "shareable", "host")
#: What dockerd 20.10 sets in every network namespace of a container's own: ports under 1024
#: and ICMP echo sockets without capabilities. A user's ``--sysctl`` of the same name wins.
DEFAULT_NETWORK_SYSCTLS = (
    ("net.ipv4.ping_group_range", "0 2147483647"),
    ("net.ipv4.ip_unprivileged_port_start", "0"),
)
#: Finds a container by name or id; raises InvalidParameter ("No such container") if none.
Lookup = Callable[[str], "SharedTarget"]


@attrs.frozen
class SharedTarget:
    """What joining another container's namespaces needs to know about it."""

    id: str
    ipc_mode: str
    running: bool
    pid: int


@attrs.frozen
class ProcessModes:
    """The resolved modes, as inspect shows them."""

    pid_mode: str
    ipc_mode: str
    uts_mode: str
    cgroupns_mode: str
    shm_size: int
    sysctls: tuple[tuple[str, str], ...]


def cgroup_version() -> int:
    """2 on a pure cgroup v2 host, else 1 (a v1 or hybrid host, as dockerd counts it)."""
    return 2 if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else 1


def process_modes(
    pid_mode: str,
    ipc_mode: str,
    uts_mode: str,
    cgroupns_mode: str,
    shm_size: int,
    sysctls: Mapping[str, str] | None,
    *,
    network_mode: str,
    hostname: str,
    remapped: bool,
    lookup: Lookup,
    domainname: str = "",
) -> ProcessModes:
    """Check the modes of a create request; ``container:NAME`` becomes ``container:<id>``."""
    pid = _shared_mode(pid_mode, "PID", lookup, ("host",))
    if ipc_mode and ipc_mode not in IPC_MODES and not ipc_mode.startswith(CONTAINER_MODE):
        raise InvalidParameter(f"Invalid IPC mode: {ipc_mode}")
    ipc = _shared_mode(ipc_mode, "IPC", lookup, IPC_MODES) or "private"
    uts = _shared_mode(uts_mode, "UTS", lookup, ("host",))
    if uts and hostname:
        raise InvalidParameter("conflicting options: hostname and the UTS mode")
    if uts and domainname:
        # dockerd lets it through to a start runc fails ("kernel.domainname" is not in a
        # separate kernel namespace): the domain name is the UTS namespace's, not ours to set.
        raise InvalidParameter("conflicting options: domainname and the UTS mode")
    if cgroupns_mode not in ("", "host", "private"):
        raise InvalidParameter(f"invalid cgroup namespace mode: {cgroupns_mode}")
    cgroupns = cgroupns_mode or ("private" if cgroup_version() == 2 else "host")
    if shm_size < 0:
        raise InvalidParameter("SHM size can not be less than 0")
    if remapped:
        shared = [
            name
            for name, mode in (("PID", pid), ("IPC", ipc), ("UTS", uts))
            if mode == "host" or mode.startswith(CONTAINER_MODE)
        ]
        if shared:
            raise InvalidParameter(
                f"cannot share the {shared[0]} namespace of the host or of another container "
                "when user namespaces are enabled (use --userns=host)"
            )
    checked = tuple(
        (name, value)
        for name, value in (sysctls or {}).items()
        if _check_sysctl(name, network_mode=network_mode, ipc_mode=ipc, uts_mode=uts)
    )
    defaults = _default_sysctls(network_mode, remapped, {name for name, _ in checked})
    return ProcessModes(
        pid, ipc, uts, cgroupns, shm_size or DEFAULT_SHM_SIZE, (*defaults, *checked)
    )


def _default_sysctls(
    network_mode: str, remapped: bool, given: set[str]
) -> tuple[tuple[str, str], ...]:
    """dockerd's default network sysctls, for a container with a network namespace of its
    own (not ``host``, not another container's), those the host's kernel has.

    Not with ``userns-remap``: the namespace file belongs to the host's root, which a remapped
    root cannot write to (dockerd leaves out ``ping_group_range`` there for the same reason).
    """
    if network_mode == "host" or network_mode.startswith(CONTAINER_MODE) or remapped:
        return ()
    return tuple(
        (name, value)
        for name, value in DEFAULT_NETWORK_SYSCTLS
        if name not in given and os.path.exists("/proc/sys/" + name.replace(".", "/"))
    )


def _shared_mode(mode: str, kind: str, lookup: Lookup, plain: tuple[str, ...]) -> str:
    if not mode or mode in plain:
        return mode
    if not mode.startswith(CONTAINER_MODE) or not mode[len(CONTAINER_MODE) :]:
        raise InvalidParameter(
            f"invalid {kind} mode: {mode} (valid: {', '.join(plain)}, container:NAME, or empty)"
        )
    return CONTAINER_MODE + lookup(mode[len(CONTAINER_MODE) :]).id


def _check_sysctl(name: str, *, network_mode: str, ipc_mode: str, uts_mode: str) -> bool:
    """Let through a sysctl the container's own namespaces isolate, as runc does."""
    if name in IPC_SYSCTLS or name.startswith("fs.mqueue."):
        if ipc_mode == "host":
            raise InvalidParameter(f'sysctl "{name}" is not allowed in the hosts ipc namespace')
        return True
    if name.startswith("net."):
        if network_mode == "host":
            raise InvalidParameter(f'sysctl "{name}" not allowed in host network namespace')
        return True
    if name == "kernel.hostname":
        raise InvalidParameter(
            f'sysctl "{name}" is not allowed as it conflicts with the OCI "hostname" field'
        )
    if name == "kernel.domainname" and uts_mode != "host":
        return True
    raise InvalidParameter(f'sysctl "{name}" is not in a separate kernel namespace')


def init_binary(configured: str) -> str:
    """The host's docker-init: the daemon's ``init-path``, else Debian's tini."""
    candidates = (configured,) if configured else INIT_BINARIES
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise InvalidParameter(
        f"no docker-init binary found at {' or '.join(candidates)} "
        "(install tini, or set the daemon's init-path)"
    )


def with_init(spec: ContainerSpec, binary: str) -> ContainerSpec:
    """``--init``: tini as pid 1, bound read-only at /sbin/docker-init, running the command
    as ``/sbin/docker-init -- ARGS`` (as dockerd does)."""
    process = attrs.evolve(spec.process, args=(INIT_PATH, "--", *spec.process.args))
    mount = BindMount(binary, INIT_PATH, read_only=True)
    return attrs.evolve(spec, process=process, mounts=(*spec.mounts, mount))


def command_args(spec: ContainerSpec, init: bool | None) -> tuple[str, ...]:
    """The container's command as the user gave it (without docker-init in front)."""
    args = spec.process.args
    if init and args[:2] == (INIT_PATH, "--"):
        return args[2:]
    return args


def user_mounts(spec: ContainerSpec, init: bool | None) -> tuple[BindMount, ...]:
    """The container's mounts but docker-init's, which inspect does not show (as dockerd)."""
    if not init:
        return spec.mounts
    return tuple(m for m in spec.mounts if m.destination != INIT_PATH or not m.read_only)


def additional_groups(
    gids: tuple[int, ...], group_add: list[str] | None, group: str | None
) -> tuple[int, ...]:
    """``--group-add``: numbers as they are, names looked up in the image's /etc/group."""
    added = []
    for entry in group_add or ():
        if entry.isdigit():
            added.append(int(entry))
            continue
        lines = (group or "").splitlines()
        found = [line.split(":") for line in lines if line.split(":")[0] == entry]
        if not found or len(found[0]) < 3 or not found[0][2].isdigit():
            raise InvalidParameter(
                f"Unable to find group {entry}: no matching entries in group file"
            )
        added.append(int(found[0][2]))
    return tuple(dict.fromkeys((*gids, *added)))


def path_lists(
    masked: list[str] | None, readonly: list[str] | None, unconfined: bool
) -> tuple[list[str] | None, list[str] | None]:
    """``MaskedPaths`` and ``ReadonlyPaths`` as inspect shows them: null when unconfined
    (privileged, ``systempaths=unconfined``), the request's own lists (an empty one masks
    nothing), else the defaults."""
    if unconfined:
        return None, None
    return (
        list(DEFAULT_MASKED_PATHS) if masked is None else list(masked),
        list(DEFAULT_READONLY_PATHS) if readonly is None else list(readonly),
    )


def runtime_name(requested: str, configured: str, known: tuple[str, ...]) -> str:
    """``--runtime``: this daemon's runtime by name; an unknown name refused as dockerd does."""
    if not requested or requested == configured:
        return configured
    if requested in known:
        raise InvalidParameter(
            f"runtime {requested} is installed, but this daemon runs its containers with "
            f"{configured} (start it with --runtime {requested})"
        )
    raise InvalidParameter(f"Unknown runtime specified {requested}")


# --------------------------------------------------------------------------------------------
# at start
# --------------------------------------------------------------------------------------------


def join_shared_namespaces(
    spec: ContainerSpec, pid_mode: str, ipc_mode: str, uts_mode: str, lookup: Lookup
) -> ContainerSpec:
    """The spec with the namespace files of the containers it shares namespaces with.

    Each must be running (dockerd: ``container ID is not running``); an IPC namespace only
    from a ``shareable`` one (or one itself joined: docker's rule that a private namespace
    stays private).
    """
    fields: dict[str, str] = {}
    for kind, mode in (("pid", pid_mode), ("ipc", ipc_mode), ("uts", uts_mode)):
        if not mode.startswith(CONTAINER_MODE):
            fields[f"{kind}_namespace"] = mode if mode == "host" else ""
            continue
        target = lookup(mode[len(CONTAINER_MODE) :])
        if kind == "ipc":
            if not target.running:
                raise Conflict(
                    f"can't join IPC of container {target.id}: container {target.id} is not running"
                )
            if target.ipc_mode not in ("shareable", "host") and not target.ipc_mode.startswith(
                CONTAINER_MODE
            ):
                raise Conflict(
                    f"can't join IPC of container {target.id}: non-shareable IPC "
                    "(hint: use IpcMode:shareable for the donor container)"
                )
        elif not target.running:
            raise Conflict(f"container {target.id} is not running")
        fields[f"{kind}_namespace"] = f"/proc/{target.pid}/ns/{kind}"
    return attrs.evolve(
        spec,
        pid_namespace=fields["pid_namespace"],
        ipc_namespace=fields["ipc_namespace"],
        uts_namespace=fields["uts_namespace"],
    )
