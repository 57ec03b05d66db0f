"""From a create request and its image to what the runtime runs: pure functions, no I/O.

Creating a container takes two pure steps around the work only the manager can do:

1. :func:`plan` reads the typed request (:class:`~.config.CreateRequest`) against the image's
   config and the daemon's settings, the way dockerd merges and validates them, and returns a
   :class:`Plan`: every error a request can have is found here, before anything is made.
2. The manager prepares the snapshot, reads the image's ``/etc/passwd`` and ``/etc/group``,
   makes the volumes and writes the container's ``/etc`` files.
3. :func:`build_spec` turns the plan and those results (:class:`Prepared`) into the
   :class:`~dockyard.core.interfaces.ContainerSpec` a runtime receives.

Each setting is applied in one place, so a test can check it without a daemon.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from dockyard.core.errors import Conflict, InvalidParameter
from dockyard.core.interfaces import (
    BindMount,
    ContainerSpec,
    DeviceNode,
    IdMapping,
    Mount,
    ProcessSpec,
    Resources,
    Rlimit,
    TmpfsMount,
)
from dockyard.daemon import volumes as volumes_module
from dockyard.daemon.containers import binds, limits, options, process_modes, tmpfs, unapplied
from dockyard.daemon.containers.config import (
    ContainerConfig,
    CreateRequest,
    HostConfig,
    RestartPolicy,
)
from dockyard.daemon.containers.health import check_healthcheck, merge_healthcheck
from dockyard.daemon.containers.log_drivers import LogDrivers

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@attrs.frozen
class UserNamespace:
    """The id maps a container's user namespace gets (the daemon's ``userns-remap``)."""

    uid_mappings: tuple[IdMapping, ...]
    gid_mappings: tuple[IdMapping, ...]


@attrs.frozen
class DaemonSettings:
    """What the daemon decides for every container it creates."""

    cpu_count: int
    #: The host's name: a container on the host's network has it, as under docker.
    host_name: str
    #: ``None``: containers run without a user namespace unless remapping is on.
    user_namespace: UserNamespace | None = None
    #: The runtime's :attr:`~dockyard.core.interfaces.Runtime.launch_options`.
    runtime_options: tuple[tuple[str, str], ...] = ()
    #: The log drivers, and the daemon's ``log-driver`` and ``log-opts``.
    logging: LogDrivers = attrs.Factory(LogDrivers)
    #: Online CPUs and memory nodes (``0-1``), which ``--cpuset-*`` must stay within.
    host_cpus: str = ""
    host_memory_nodes: str = ""

    @property
    def host_facts(self) -> limits.HostFacts:
        return limits.HostFacts(self.cpu_count, self.host_cpus, self.host_memory_nodes)

    #: The runtime containers run with, and every runtime installed (``/info``'s list).
    runtime_name: str = ""
    runtimes: tuple[str, ...] = ()
    #: The daemon's ``init-path`` (empty: Debian's tini), and whether ``--init`` is the
    #: default (its ``init`` setting).
    init_path: str = ""
    init: bool = False
    #: The daemon's data root (symlinks resolved): a bind of it, or of a path above it, is
    #: ``rslave`` unless it asks otherwise (see :mod:`.binds`).
    data_root: str = ""


@attrs.frozen
class VolumeRequest:
    """A mount the container asks for: a host path, a named volume, or (no source) an
    anonymous volume made for it alone."""

    destination: str
    source: str = ""
    read_only: bool = False
    #: Leave a new volume empty rather than fill it with the image's files at its path.
    no_copy: bool = False
    #: For a volume this request creates: its labels and the local driver's options.
    labels: tuple[tuple[str, str], ...] = ()
    driver_options: tuple[tuple[str, str], ...] = ()
    #: A host path's propagation (see :mod:`.binds`; as asked until :func:`plan` decides it).
    propagation: str = ""
    #: ``BindOptions.NonRecursive``: the mounts below the host path are not taken.
    non_recursive: bool = False

    @property
    def is_anonymous(self) -> bool:
        return not self.source

    @property
    def is_bind(self) -> bool:
        return self.source.startswith("/")


@attrs.frozen
class Plan:
    """A create request, validated and merged with its image: everything but what needs I/O."""

    #: The container's ``Config`` as inspect shows it (image defaults merged in), with the
    #: hostname still empty when the container id decides it.
    config: ContainerConfig
    host_config: HostConfig
    args: tuple[str, ...]
    env: tuple[str, ...]
    user: str
    network_mode: str
    resources: Resources
    capabilities: tuple[str, ...]
    security: options.SecurityOptions
    volumes: tuple[VolumeRequest, ...]
    user_namespace: UserNamespace | None
    runtime_options: tuple[tuple[str, str], ...]
    console_size: tuple[int, int]
    modes: process_modes.ProcessModes
    #: ``HostConfig.Tmpfs`` and the ``Mounts`` of type tmpfs, in that order.
    tmpfs: tuple[TmpfsMount, ...] = ()
    #: ``--ulimit`` and ``--oom-score-adj``, for the container's processes (execs' too).
    rlimits: tuple[Rlimit, ...] = ()
    oom_score_adj: int = 0
    #: ``--device`` nodes, found on the host by :func:`~.limits.resolve_devices` (the manager
    #: adds them, with their cgroup rules in ``resources``).
    devices: tuple[DeviceNode, ...] = ()
    #: The host's docker-init, when the container runs it as pid 1 (``--init``).
    init_binary: str = ""

    @property
    def privileged(self) -> bool:
        return self.host_config.privileged

    @property
    def terminal(self) -> bool:
        return self.config.tty


@attrs.frozen
class Prepared:
    """What the manager made for a planned container (the inputs :func:`build_spec` needs)."""

    container_id: str
    hostname: str
    rootfs: tuple[Mount, ...]
    user: options.ResolvedUser
    #: One per :attr:`Plan.volumes` entry, in order: the host path to mount.
    volume_sources: tuple[str, ...]
    etc_files: tuple[tuple[str, str], ...]
    state_dir: str


# --------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------


def plan(
    request: CreateRequest,
    image: ContainerConfig,
    settings: DaemonSettings,
    lookup: process_modes.Lookup | None = None,
) -> Plan:
    """Validate ``request`` and merge ``image`` (the image config's ``config``) under it.

    ``lookup`` finds the containers a ``container:NAME`` mode names (none: no such container).
    """
    host = request.host_config
    unapplied.refuse_unapplied(request.config, host)
    entrypoint, cmd = options.resolve_command(image, request)
    args = tuple(entrypoint + cmd)
    if not args:
        raise InvalidParameter("No command specified")
    resources = limits.plan_resources(host, settings.host_facts)
    restart = _restart_policy(host)
    network_mode = host.network_mode or "default"  # the daemon's networks check it
    capabilities = options.capabilities(host.cap_add, host.cap_drop, host.privileged)
    security = options.parse_security_options(host.security_opt)
    user_namespace = _user_namespace(host, network_mode, settings.user_namespace)
    log_config = settings.logging.resolve(host.log_config)
    volumes_module.check_driver(host.volume_driver, "HostConfig.VolumeDriver")
    tmpfs_mounts = _tmpfs_mounts(host)
    # The image's anonymous volumes and the request's, as dockerd merges them.
    anonymous_volumes = {**(image.volumes or {}), **(request.volumes or {})} or None
    volumes = _volumes(host, anonymous_volumes, tmpfs_mounts)
    volumes = tuple(
        attrs.evolve(
            v, propagation=binds.bind_propagation(v.source, v.propagation, settings.data_root)
        )
        if v.is_bind
        else v
        for v in volumes
    )
    check_healthcheck(request.healthcheck)
    options.check_env(request.env or [])
    env = options.container_env(image.env or [DEFAULT_PATH], request.env or [])
    if not any(entry.partition("=")[0] == "PATH" for entry in env):
        env.insert(0, DEFAULT_PATH)
    config = attrs.evolve(
        request.config,
        user=request.user or image.user,
        exposed_ports=request.exposed_ports or image.exposed_ports,
        env=env,
        cmd=cmd or None,
        healthcheck=merge_healthcheck(request.healthcheck, image.healthcheck),
        volumes=anonymous_volumes,
        working_dir=request.working_dir or image.working_dir,
        entrypoint=entrypoint or None,
        on_build=None,
        labels={**(image.labels or {}), **(request.labels or {})},
        stop_signal=request.stop_signal or image.stop_signal,
    )
    if config.stop_signal:
        options.parse_signal(config.stop_signal)  # refused now rather than at `docker stop`
    modes = _process_modes(request, network_mode, user_namespace, lookup)
    init = host.init if host.init is not None else settings.init
    masked, readonly = process_modes.path_lists(
        host.masked_paths,
        host.readonly_paths,
        host.privileged or security.unconfined_system_paths,
    )
    host_config = attrs.evolve(
        limits.with_swap_default(host),
        network_mode=network_mode,
        restart_policy=restart,
        log_config=log_config,
        memory=resources.memory_bytes or 0,
        pids_limit=resources.pids_limit,
        pid_mode=modes.pid_mode,
        ipc_mode=modes.ipc_mode,
        uts_mode=modes.uts_mode,
        cgroupns_mode=modes.cgroupns_mode,
        shm_size=modes.shm_size,
        runtime=process_modes.runtime_name(host.runtime, settings.runtime_name, settings.runtimes),
        masked_paths=masked,
        readonly_paths=readonly,
    )
    return Plan(
        config=config,
        host_config=host_config,
        args=args,
        env=tuple(env),
        user=config.user,
        network_mode=network_mode,
        resources=resources,
        capabilities=capabilities,
        security=security,
        volumes=volumes,
        user_namespace=user_namespace,
        runtime_options=settings.runtime_options,
        console_size=console_size(host.console_size, "HostConfig.ConsoleSize"),
        tmpfs=tmpfs_mounts,
        rlimits=limits.rlimits(host),
        oom_score_adj=limits.oom_score_adj(host),
        modes=modes,
        init_binary=process_modes.init_binary(settings.init_path) if init else "",
    )


def _process_modes(
    request: CreateRequest,
    network_mode: str,
    user_namespace: UserNamespace | None,
    lookup: process_modes.Lookup | None,
) -> process_modes.ProcessModes:
    def no_lookup(name: str) -> process_modes.SharedTarget:
        raise InvalidParameter(f"No such container: {name}")

    host = request.host_config
    return process_modes.process_modes(
        host.pid_mode,
        host.ipc_mode,
        host.uts_mode,
        host.cgroupns_mode,
        host.shm_size,
        host.sysctls,
        network_mode=network_mode,
        hostname=request.hostname,
        remapped=user_namespace is not None,
        lookup=lookup or no_lookup,
        domainname=request.domainname,
    )


def _restart_policy(host: HostConfig) -> RestartPolicy:
    policy = options.parse_restart_policy(host.restart_policy)
    if policy.name and host.auto_remove:
        raise Conflict("conflicting options: cannot specify both --restart and --rm")
    return policy


def _user_namespace(
    host: HostConfig, network_mode: str, remapping: UserNamespace | None
) -> UserNamespace | None:
    """The maps a new container gets: the daemon's, unless it opts out with ``host``.

    dockerd's rules: ``--privileged`` and ``--network host`` need ``--userns=host`` when
    remapping is on (a remapped root could not use the host's devices or network stack).
    """
    if host.userns_mode not in ("", "host"):
        raise InvalidParameter(
            f"invalid USER mode: {host.userns_mode} "
            "(valid: host, or empty for the daemon's default)"
        )
    if remapping is None or host.userns_mode == "host":
        return None
    if host.privileged:
        raise InvalidParameter(
            "privileged mode is incompatible with user namespaces.  You must run the "
            "container in the host namespace when running privileged mode"
        )
    if network_mode == "host":
        raise InvalidParameter(
            "cannot share the host's network namespace when user namespaces are enabled"
        )
    return remapping


def _tmpfs_mounts(host: HostConfig) -> tuple[TmpfsMount, ...]:
    found = tmpfs.from_host_config(host.tmpfs)
    found += [
        tmpfs.from_mount(mount, index)
        for index, mount in enumerate(host.mounts or ())
        if mount.type == "tmpfs"
    ]
    return tuple(found)


def _volumes(
    host: HostConfig,
    anonymous: dict[str, object] | None,
    tmpfs_mounts: Sequence[TmpfsMount] = (),
) -> tuple[VolumeRequest, ...]:
    """``-v`` binds, then ``--mount``s, then the anonymous volumes nothing else covers (a
    tmpfs over an image's volume path replaces the volume, as under dockerd)."""
    given = [options.parse_bind(bind) for bind in host.binds or ()]
    given += [options.parse_mount(m) for m in host.mounts or () if m.type != "tmpfs"]
    requests = [
        VolumeRequest(
            v.destination,
            v.source,
            v.read_only,
            v.no_copy,
            v.labels,
            v.driver_options,
            v.propagation,
            v.non_recursive,
        )
        for v in given
    ]
    on_tmpfs = {_clean(t.destination) for t in tmpfs_mounts}
    for request in requests:
        if _clean(request.destination) in on_tmpfs:
            raise InvalidParameter(f"Duplicate mount point: {request.destination}")
    covered = {_clean(v.destination) for v in requests} | on_tmpfs
    requests += [VolumeRequest(path) for path in anonymous or {} if _clean(path) not in covered]
    return tuple(requests)


def with_inherited(plan: Plan, inherited: Sequence[VolumeRequest]) -> Plan:
    """``plan`` with the mounts of ``--volumes-from`` containers: the container's own
    binds, volumes and tmpfs mounts win at a path, and those win over anonymous volumes (the
    image's, or ``-v /path``), as dockerd orders them."""
    own = [v for v in plan.volumes if not v.is_anonymous]
    anonymous = [v for v in plan.volumes if v.is_anonymous]
    taken = {_clean(v.destination) for v in own} | {_clean(t.destination) for t in plan.tmpfs}
    added = []
    for request in inherited:
        if _clean(request.destination) not in taken:
            taken.add(_clean(request.destination))
            added.append(request)
    kept = [v for v in anonymous if _clean(v.destination) not in taken]
    return attrs.evolve(plan, volumes=(*own, *added, *kept))


def _clean(path: str) -> str:
    return path.rstrip("/") or "/"


# --------------------------------------------------------------------------------------------
# the runtime's spec
# --------------------------------------------------------------------------------------------


def build_spec(plan: Plan, prepared: Prepared) -> ContainerSpec:
    """The runtime's view of a planned container, once its parts exist."""
    # A bare name (``-e VAR`` for a VAR the client does not have) stays in Config.Env and
    # unsets the image's value, as under dockerd, but is no variable of the process.
    # dockerd's order: its defaults, then Config.Env over them (a later entry of a name
    # replacing an earlier one where it stands).
    defaults = [DEFAULT_PATH, f"HOSTNAME={prepared.hostname}"]
    if plan.terminal:
        defaults.append("TERM=xterm")
    env = options.merge_env(defaults, [entry for entry in plan.env if "=" in entry])
    namespace = plan.user_namespace
    process = ProcessSpec(
        args=plan.args,
        env=tuple(options.with_home(env, prepared.user.home)),
        cwd=plan.config.working_dir or "/",
        uid=prepared.user.uid,
        gid=prepared.user.gid,
        additional_gids=prepared.user.additional_gids,
        terminal=plan.terminal,
        capabilities=plan.capabilities,
        no_new_privileges=plan.security.no_new_privileges,
        seccomp="unconfined" if plan.privileged or plan.security.unconfined_seccomp else "default",
        console_size=plan.console_size,
        rlimits=plan.rlimits,
        oom_score_adj=plan.oom_score_adj,
    )
    built = ContainerSpec(
        id=prepared.container_id,
        rootfs=prepared.rootfs,
        process=process,
        hostname=prepared.hostname,
        read_only_rootfs=plan.host_config.readonly_rootfs,
        network_mode="host" if plan.network_mode == "host" else "none",
        mounts=_bind_mounts(plan, prepared.volume_sources),
        resources=plan.resources,
        privileged=plan.privileged,
        etc_files=prepared.etc_files,
        masked_paths=tuple(plan.host_config.masked_paths or ()),
        readonly_paths=tuple(plan.host_config.readonly_paths or ()),
        uid_mappings=namespace.uid_mappings if namespace else (),
        gid_mappings=namespace.gid_mappings if namespace else (),
        state_dir=prepared.state_dir,
        runtime_options=plan.runtime_options,
        tmpfs=plan.tmpfs,
        devices=plan.devices,
        cgroup_namespace=plan.modes.cgroupns_mode,
        shm_size=0 if plan.modes.ipc_mode == "none" else plan.modes.shm_size,
        sysctls=plan.modes.sysctls,
        domainname=plan.config.domainname,
    )
    if plan.init_binary:
        built = process_modes.with_init(built, plan.init_binary)
    return built


def _bind_mounts(plan: Plan, sources: Sequence[str]) -> tuple[BindMount, ...]:
    remapped = plan.user_namespace is not None
    return tuple(
        # Volumes are remapped like the root filesystem; host paths are not (docker's rule:
        # they are the host's files, seen as they are).
        BindMount(
            source,
            volume.destination,
            volume.read_only,
            remapped and not volume.is_bind,
            volume.propagation,
            not volume.non_recursive,
        )
        for volume, source in zip(plan.volumes, sources, strict=True)
    )


def console_size(size: Sequence[int] | None, field: str) -> tuple[int, int]:
    """A ``ConsoleSize`` ([rows, columns], or null): two sizes a terminal can have."""
    if not size:
        return (0, 0)
    if len(size) != 2 or any(not 0 <= number < 1 << 16 for number in size):
        raise InvalidParameter(f"{field}: expected [rows, columns], got {size}")
    return (size[0], size[1])


def engine_config(plan: Plan, hostname: str) -> ContainerConfig:
    """The ``Config`` inspect shows: the plan's, with the hostname the container got."""
    return attrs.evolve(plan.config, hostname=hostname)


def volume_bind_mounts(plan: Plan, sources: Sequence[str]) -> tuple[BindMount, ...]:
    """The mounts of ``plan``'s volumes, from ``sources`` (one host path each, in order), as
    :func:`build_spec` makes them (for a start's new ``Binds``, API < 1.24)."""
    return _bind_mounts(plan, sources)
