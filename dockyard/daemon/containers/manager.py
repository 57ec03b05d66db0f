"""The container lifecycle: create, start, stop, kill, wait, restart, remove.

Orchestration only: the request is planned and the runtime's spec built by the pure functions
of :mod:`.spec`; supervisors are started, watched and waited for with :mod:`.supervision`;
this module keeps the records, does the I/O in between and applies docker's state rules.

Runs on the daemon's event loop; blocking work (the storage driver, the runtime, process
spawning) goes to worker threads. The manager learns of an exit when a container's supervisor
exits, reads ``exit.json`` and applies the restart policy. Containers that outlived a daemon
restart are found again by :meth:`ContainerManager.reconcile`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import structlog
from starlette.concurrency import run_in_threadpool

from dockyard.core.decoding import DecodeError
from dockyard.core.errors import Conflict, DockyardError, InvalidParameter, NotFound
from dockyard.core.interfaces import (
    ContainerSpec,
    LogReader,
    Mount,
    Runtime,
    StorageDriver,
    spec_to_json,
)
from dockyard.core.timestamps import now_rfc3339
from dockyard.daemon import modes
from dockyard.daemon.containers import (
    binds,
    limits,
    options,
    process_modes,
    spec,
    start_host_config,
    unapplied,
    volume_mounts,
)
from dockyard.daemon.containers.config import (
    ContainerConfig,
    CreateRequest,
    EndpointSettings,
    HostConfig,
)
from dockyard.daemon.containers.etc_files import write_etc_files
from dockyard.daemon.containers.execs import ExecRegistry
from dockyard.daemon.containers.health import (
    STARTING,
    HealthMonitor,
    HealthState,
    ProbeResult,
    probe_command,
)
from dockyard.daemon.containers.init_process import hold_init
from dockyard.daemon.containers.links import LegacyLink
from dockyard.daemon.containers.log_drivers import DEFAULT_DRIVER, LogDrivers
from dockyard.daemon.containers.model import Container, ContainerState
from dockyard.daemon.containers.names import NameRegistry
from dockyard.daemon.containers.networking import ContainerNetworks
from dockyard.daemon.containers.supervision import (
    ACTIVE,
    ExitWatch,
    LaunchReport,
    Waiters,
    Zygote,
    check_wait_condition,
    connect_to_supervisor,
    is_supervisor,
    read_exit_status,
    restart_delay,
    should_restart,
    start_supervisor,
)
from dockyard.daemon.engine_api import ENGINE_API
from dockyard.daemon.images.store import ImageRecord, ImageStore
from dockyard.daemon.networks.records import Attachment, NetworkRecord
from dockyard.daemon.volumes import VolumeStore
from dockyard.linux import inroot
from dockyard.linux.cgroups import host_cpus, host_memory_nodes
from dockyard.linux.mounts import mount_all, unmount_all
from dockyard.linux.processes import ProcessHandle

if TYPE_CHECKING:
    from dockyard.daemon.networks.dns import EmbeddedDNS

_log = structlog.get_logger("dockyard.containers")

DEFAULT_STOP_TIMEOUT = 10


class NotModified(DockyardError):
    """Already in the requested state: the Engine API answers 304."""

    status_code = 304


class StartFailed(DockyardError):
    """The runtime could not start the process; ``exit_code`` is docker's 125/126/127."""

    status_code = 400

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@attrs.define
class _Live:
    """In-memory companions of a container: waiters, the supervisor watch, the restart timer."""

    waiters: Waiters = attrs.Factory(Waiters)
    watch: ExitWatch | None = None
    #: The init process, while it runs: signals go through it (see ``init_process``).
    init: ProcessHandle | None = None
    lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    #: Set when the container exits (followers of its output stop waiting at once).
    exited: asyncio.Event = attrs.Factory(asyncio.Event)
    restart_task: asyncio.Task[None] | None = None
    #: The health-check loop, while the container runs (and is not paused).
    health: HealthMonitor | None = None

    def release_init(self) -> None:
        if self.init is not None:
            self.init.close()
            self.init = None


class ContainerManager:
    def __init__(
        self,
        root: Path,
        images: ImageStore,
        driver: StorageDriver | None,
        driver_name: str,
        runtime: Runtime | None,
        runtime_name: str,
        volumes: VolumeStore,
        emit: Callable[[str, str, dict[str, str]], None],
        user_namespace: spec.UserNamespace | None = None,
        logging: LogDrivers | None = None,
        runtimes: tuple[str, ...] = (),
        init: bool = False,
        init_path: str = "",
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.images = images
        self.driver = driver
        self.driver_name = driver_name
        self.runtime = runtime
        self.runtime_name = runtime_name
        self.volumes = volumes
        self._emit = emit
        self.settings = spec.DaemonSettings(
            cpu_count=os.cpu_count() or 1,
            host_name=socket.gethostname(),
            user_namespace=user_namespace,
            runtime_options=tuple(runtime.launch_options) if runtime is not None else (),
            logging=logging or LogDrivers(),
            host_cpus=host_cpus(),
            host_memory_nodes=host_memory_nodes(),
            runtime_name=runtime_name,
            runtimes=runtimes,
            init_path=init_path,
            init=init,
            data_root=os.path.realpath(root.parent),
        )
        self.containers: dict[str, Container] = {}
        #: Set by the daemon once its networks exist; without it containers get loopback
        #: only (or the host's network), as before networking.
        self.networking: ContainerNetworks | None = None
        #: The embedded DNS server answering containers on user-defined networks.
        self.dns: EmbeddedDNS | None = None
        self.names = NameRegistry()
        self._live: dict[str, _Live] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        #: The execs of every container; health probes are execs too.
        self.execs = ExecRegistry(
            lambda action, container, attributes: self._event(action, container, **attributes)
        )
        self.zygote = Zygote(
            runtime.launcher if runtime else "",
            root.parent / "zygote.log",
            # Each supervisor imports its container's log writer: the zygote has them ready.
            preload=tuple(d.writer for d in self.settings.logging.drivers.values()),
        )
        for directory in sorted(self.root.iterdir()):
            if not directory.is_dir():
                continue
            if directory.name.startswith(".removing-"):
                shutil.rmtree(directory, ignore_errors=True)  # a removal a crash interrupted
                continue
            try:
                container = Container.load(directory)
            except (OSError, ValueError, KeyError, TypeError, DockyardError):
                _log.warning("dropping a container record that cannot be read", dir=str(directory))
                shutil.rmtree(directory, ignore_errors=True)
                continue
            container.name = self.names.adopt(container.name, container.id)
            self.containers[container.id] = container

    @property
    def remapped(self) -> bool:
        """Whether containers get a user namespace by default (``userns-remap``)."""
        return self.settings.user_namespace is not None

    # ------------------------------------------------------------------ lookup

    def live(self, container: Container) -> _Live:
        return self._live.setdefault(container.id, _Live())

    def get(self, name_or_id: str) -> Container:
        """By full id, unique id prefix, or name (with or without the leading slash)."""
        key = name_or_id.removeprefix("/")
        if key in self.containers:
            return self.containers[key]
        for container in self.containers.values():
            if container.name == key:
                return container
        matches = [c for c in self.containers.values() if c.id.startswith(key)] if key else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidParameter(f"multiple IDs found with provided prefix: {key}")
        raise NotFound(f"No such container: {name_or_id}")

    def directory(self, container: Container) -> Path:
        return self.root / container.id

    def open_output(self, container: Container, *, stored: bool = False) -> LogReader:
        """The container's output through its log driver. ``stored``: for ``docker logs``,
        refused (501, as dockerd) when the driver keeps none; otherwise the live output that
        ``attach`` and build steps follow."""
        return self.settings.logging.open_reader(
            container.host_config.log_config, self.directory(container), stored=stored
        )

    def keeps_logs(self, container: Container) -> bool:
        """Whether the container's log driver keeps output ``docker logs`` can read."""
        log_config = container.host_config.log_config
        return self.settings.logging.driver(log_config.type or DEFAULT_DRIVER).readable

    def _save(self, container: Container) -> None:
        container.save(self.directory(container))

    def _event(self, action: str, container: Container, **extra: str) -> None:
        # dockerd's container events carry the container's labels, under its name and image.
        labels = container.config.labels or {}
        attributes = {**labels, "name": container.name, "image": container.image_name, **extra}
        self._emit(action, container.id, attributes)

    def event(self, action: str, container: Container, **extra: str) -> None:
        """Emit a container event the API layer observes (``attach``, ``detach``)."""
        self._event(action, container, **extra)

    # ------------------------------------------------------------------ create

    def _require_runtime(self) -> tuple[Runtime, StorageDriver]:
        if self.runtime is None:
            raise DockyardError("no container runtime is installed or usable on this machine")
        if self.driver is None:
            raise DockyardError("no storage driver is installed or usable on this machine")
        return self.runtime, self.driver

    def create(self, request: CreateRequest, name: str | None) -> tuple[Container, list[str]]:
        """``POST /containers/create``. Blocking: call from a worker thread."""
        if not request.image:
            raise InvalidParameter("Config.Image is required")
        return self.create_from(self.images.resolve(request.image), request, name)

    def create_from(
        self, image: ImageRecord | None, request: CreateRequest, name: str | None
    ) -> tuple[Container, list[str]]:
        """Create a container of ``image``, or with an empty filesystem when it is ``None``
        (a build step after ``FROM scratch``). Blocking: call from a worker thread."""
        _runtime, driver = self._require_runtime()
        try:
            raw_config = self.images.config(image).get("config") if image is not None else None
            image_config = ENGINE_API.decode(raw_config or {}, ContainerConfig)
        except DecodeError as exc:
            raise InvalidParameter(f"the image's config is not usable: config.{exc}") from None
        plan = spec.plan(request, image_config, self.settings, self._shared_target)
        devices, resources = limits.resolve_devices(plan.host_config, plan.resources)
        plan = attrs.evolve(plan, devices=devices, resources=resources)
        attachments: list[Attachment] = []
        legacy_links: list[LegacyLink] = []
        if self.networking is not None:
            mode, attachments = self.networking.plan(
                attrs.evolve(request, exposed_ports=plan.config.exposed_ports)
            )
            plan = attrs.evolve(plan, host_config=attrs.evolve(plan.host_config, network_mode=mode))
            legacy_links = self.networking.legacy_links(request, mode)
        if plan.host_config.volumes_from:
            inherited = volume_mounts.inherited_volumes(plan.host_config.volumes_from, self.get)
            plan = spec.with_inherited(plan, inherited)
        for volume in plan.volumes:
            if volume.is_bind and not os.path.exists(volume.source):
                raise InvalidParameter(
                    'invalid mount config for type "bind": bind source path does not exist: '
                    + volume.source
                )
        name = options.check_name(name) if name else ""

        container_id = secrets.token_hex(32)
        # Taken before the slow work, so that a racing create with this name fails at once.
        if name:
            self.names.reserve(name, container_id)
        else:
            name = self.names.reserve_random(container_id)
        directory = self.root / container_id
        snapshot = f"container-{container_id}"
        made_volumes: list[str] = []
        try:
            namespace = self.settings.user_namespace
            group = modes.search_group(namespace.gid_mappings if namespace else ())
            modes.make_dir(directory, modes.CONTAINERS, group, exist_ok=False)
            parents = self.images.layer_keys(image)
            rootfs = tuple(driver.prepare(snapshot, parents))
            user = self._resolve_user(plan.user, rootfs, directory, plan.host_config.group_add)
            volume_names, sources = self._make_volumes(plan.volumes, made_volumes)
            volume_mounts.fill_from_image(
                self.volumes,
                volume_names,
                rootfs,
                directory / "peek",
                volume_mounts.fills_for(plan.volumes, sources, volume_names),
            )
            network_host = plan.network_mode == "host"
            hostname = request.hostname or (
                self.settings.host_name
                if network_host or plan.host_config.uts_mode == "host"
                else container_id[:12]
            )
            prepared = spec.Prepared(
                container_id=container_id,
                hostname=hostname,
                rootfs=rootfs,
                user=user,
                volume_sources=sources,
                etc_files=write_etc_files(
                    directory,
                    hostname,
                    network_host,
                    domainname=request.domainname,
                    extra_hosts=(
                        self.networking.extra_hosts(request.host_config)
                        if self.networking is not None
                        else ()
                    ),
                    dns=request.host_config.dns or (),
                    dns_search=request.host_config.dns_search or (),
                    dns_options=request.host_config.dns_options or (),
                ),
                state_dir=str(directory),
            )
            container = Container(
                id=container_id,
                name=name,
                created=now_rfc3339(),
                image_id=image.id if image is not None else "",
                image_name=request.image,
                config=spec.engine_config(plan, hostname),
                host_config=plan.host_config,
                spec=spec.build_spec(plan, prepared),
                snapshot=snapshot,
                driver=self.driver_name,
                anonymous_volumes=made_volumes,
                volumes=volume_names,
                networks=attachments,
                links=legacy_links,
            )
            self._save(container)
        except BaseException:
            self.names.release(name, container_id)
            driver.remove(snapshot)
            shutil.rmtree(directory, ignore_errors=True)
            for volume_name in made_volumes:
                with contextlib.suppress(DockyardError):
                    self.volumes.remove(volume_name, force=True)
            raise
        self.containers[container.id] = container
        self._event("create", container)
        return container, []

    def _shared_target(self, name: str) -> process_modes.SharedTarget:
        """A container another one shares namespaces with (``--pid container:NAME``)."""
        try:
            other = self.get(name)
        except NotFound as exc:
            raise InvalidParameter(exc.message) from None  # a 404 makes the CLI pull
        return process_modes.SharedTarget(
            other.id, other.host_config.ipc_mode, other.state.running, other.state.pid
        )

    def _resolve_user(
        self,
        user: str,
        rootfs: tuple[Mount, ...],
        directory: Path,
        group_add: list[str] | None = None,
    ) -> options.ResolvedUser:
        """Who the process runs as: ``--user`` against the image's passwd and group files.

        Root too: its home and group memberships come from the image's files. The snapshot is
        mounted for a moment and the files are read *inside* it (a symlink in the image
        resolves within the image; a FIFO or a huge file cannot stall or flood the daemon).
        """
        target = directory / "peek"
        target.mkdir(exist_ok=True)
        mount_all(rootfs, str(target))
        try:
            passwd = inroot.read_text(str(target), "/etc/passwd")
            group = inroot.read_text(str(target), "/etc/group")
        finally:
            unmount_all(str(target))
            target.rmdir()
        resolved = options.parse_user(user, passwd, group)
        gids = process_modes.additional_groups(resolved.additional_gids, group_add, group)
        return attrs.evolve(resolved, additional_gids=gids)

    def _make_volumes(
        self, requests: tuple[spec.VolumeRequest, ...], made: list[str]
    ) -> tuple[dict[str, str], tuple[str, ...]]:
        """Each request's host path (named volumes made as needed, anonymous ones created and
        listed in ``made``), and the volume name by container path."""
        names: dict[str, str] = {}
        sources = []
        for request in requests:
            if request.is_bind:
                sources.append(request.source)
                continue
            # Labels and options apply to a volume the request creates (as with dockerd).
            labels, driver_options = dict(request.labels), dict(request.driver_options)
            if request.is_anonymous:
                volume = self.volumes.create(
                    secrets.token_hex(32), labels, anonymous=True, options=driver_options
                )
                made.append(volume.name)
            else:
                volume = self.volumes.create(request.source, labels, options=driver_options)
            names[request.destination] = volume.name
            sources.append(str(volume.mountpoint))
        return names, tuple(sources)

    # ------------------------------------------------------------------ start

    async def start(self, name: str, host_config: HostConfig | None = None) -> None:
        """``host_config``: one given on start, by a client of API 1.23 or older."""
        container = self.get(name)
        async with self.live(container).lock:
            if container.state.status in ("running", "paused"):
                raise NotModified()
            if host_config is not None:
                await run_in_threadpool(self._replace_host_config, container, host_config)
            await self._start_locked(container)

    def _replace_host_config(self, container: Container, given: HostConfig) -> None:
        """Take ``given`` as the container's ``HostConfig``, as dockerd's start before API
        1.24 does (see :mod:`.start_host_config`)."""
        image = self.images.get(container.image_id) if container.image_id else None
        raw_config = self.images.config(image).get("config") if image is not None else None
        image_config = ENGINE_API.decode(raw_config or {}, ContainerConfig)
        request = start_host_config.as_create_request(container, given)
        plan = spec.plan(request, image_config, self.settings, self._shared_target)
        mode = plan.host_config.network_mode
        if self.networking is not None:
            mode = self.networking.plan(request)[0]
        taken = start_host_config.replacement(container, given, plan, mode)
        made = start_host_config.mounts(
            container, plan, lambda name: str(self.volumes.get(name).mountpoint)
        )
        container.host_config = taken.host_config
        container.spec = attrs.evolve(container.spec, resources=taken.resources, mounts=made.mounts)
        container.volumes = made.volumes
        self._save(container)

    async def _start_locked(self, container: Container) -> None:
        runtime, _driver = self._require_runtime()
        directory = self.directory(container)
        for stale in ("exit.json", "init.pid", "supervisor.pid"):
            (directory / stale).unlink(missing_ok=True)
        log_config = container.host_config.log_config
        log_driver = self.settings.logging.driver(log_config.type or DEFAULT_DRIVER)
        settings = {
            "launcher": runtime.launcher,
            "tty": container.tty,
            "open_stdin": container.config.open_stdin,
            "stdin_once": container.config.stdin_once,
            "log": {"writer": log_driver.writer, "options": log_config.config},
        }
        (directory / "supervisor.json").write_text(json.dumps(settings))
        try:
            container.spec = self._join_shared_namespaces(container)
            host = container.host_config
            binds.check_source_mounts(
                container.spec.mounts,
                options.asked_propagations(host.binds, host.mounts),
                self.settings.data_root,
            )
        except DockyardError as exc:
            self._record_failed_start(container, str(exc), container.state.exit_code or 128)
            if container.host_config.auto_remove:
                await self._finish_exit(container, container.state.exit_code, str(exc))
            raise
        if self.networking is not None:
            try:
                container.spec = await run_in_threadpool(self.networking.plumb, container)
            except DockyardError as exc:
                # As dockerd: the reason stays in State.Error, with 128 for an exit code
                # nothing set (docker-compose's ps shows "Exit 128" for it, not "Exit 0").
                self._record_failed_start(container, str(exc), container.state.exit_code or 128)
                raise
            self._save(container)
            # Before the process runs: its first lookup may come at once.
            await self._serve_names(container)
        modes.write_private(directory / modes.SPEC_NAME, spec_to_json(container.spec))
        try:
            await run_in_threadpool(volume_mounts.mount_volumes, self.volumes, container)
        except DockyardError as exc:
            await self._release_networks(container)
            self._record_failed_start(container, exc.message, 125)
            if container.host_config.auto_remove:
                await self._finish_exit(container, 125, exc.message)
            else:
                volume_mounts.unmount_volumes(self.volumes, container)  # dockerd's events
            raise StartFailed(exc.message, 125) from None
        try:
            report: LaunchReport = await run_in_threadpool(start_supervisor, self.zygote, directory)
        except BaseException:
            await self._release_networks(container)
            volume_mounts.unmount_volumes(self.volumes, container)
            raise
        if report.error:
            await self._release_networks(container)
            if not container.host_config.auto_remove:  # else _finish_exit unmounts them
                volume_mounts.unmount_volumes(self.volumes, container)
            self._record_failed_start(container, report.error, report.exit_code)
            with contextlib.suppress(Exception):
                await run_in_threadpool(runtime.cleanup, container.id)
            if container.host_config.auto_remove:
                await self._finish_exit(container, report.exit_code, report.error)
            raise StartFailed(report.error, report.exit_code)
        container.state = ContainerState(
            status="running",
            pid=report.pid,
            init_start_time=report.start_time,
            supervisor_pid=report.supervisor_pid,
            started_at=now_rfc3339(),
            health=container.state.health,
        )
        self._save(container)
        self.live(container).exited.clear()
        self._watch(container, container.state.supervisor_pid)
        self.live(container).init = hold_init(container.state)
        self._event("start", container)
        self._start_health(container, reset=True)

    def _start_health(self, container: Container, reset: bool) -> None:
        """Probe a running container that has a health check. Its health starts over
        (``starting``, no failing streak) at each start and after a daemon restart, as in
        dockerd; after an unpause it carries on."""
        live = self.live(container)
        if probe_command(container.config) is None or self.runtime is None or live.health:
            return
        state = container.state
        if state.health is None:
            state.health = HealthState()
        elif reset:
            state.health.status, state.health.failing_streak = STARTING, 0
        runtime = self.runtime

        async def probe(command: list[str], timeout_ns: int) -> ProbeResult:
            return await self.execs.run_probe(container, runtime, command, timeout_ns)

        def recorded(new_status: str | None) -> None:
            if container.id in self.containers:
                self._save(container)
                if new_status is not None:
                    self._event(f"health_status: {new_status}", container)

        live.health = HealthMonitor(container.config, state.health, state.started_at, probe,
                                    recorded)  # fmt: skip

    async def _stop_health(self, container: Container) -> None:
        live = self._live.get(container.id)
        if live is not None and live.health is not None:
            monitor, live.health = live.health, None
            await monitor.stop()

    def _join_shared_namespaces(self, container: Container) -> ContainerSpec:
        host = container.host_config
        return process_modes.join_shared_namespaces(
            container.spec, host.pid_mode, host.ipc_mode, host.uts_mode, self._shared_target
        )

    def _record_failed_start(self, container: Container, error: str, exit_code: int) -> None:
        container.state = attrs.evolve(
            container.state,
            status="exited" if container.state.status != "created" else "created",
            exit_code=exit_code,
            error=error,
            finished_at=now_rfc3339(),
        )
        self._save(container)

    async def _serve_names(self, container: Container) -> None:
        """Answer the container's DNS queries when it is on a user-defined network."""
        if self.dns is None or self.networking is None or not container.spec.netns:
            return
        if self.networking.embedded(container):
            upstreams, user_ndots = self.networking.dns_settings(container)
            try:
                await self.dns.attach(
                    container.id, container.spec.netns, upstreams=upstreams, user_ndots=user_ndots
                )
            except OSError as exc:
                _log.error("cannot serve DNS to the container", container=container.id,
                           error=str(exc))  # fmt: skip

    async def _release_networks(self, container: Container) -> None:
        if self.dns is not None:
            await self.dns.detach(container.id)
        if self.networking is not None:
            await run_in_threadpool(self.networking.release, container)
            self._save(container)

    # ------------------------------------------------------------------ exits

    def _background(self, work: Any) -> None:
        """Run a coroutine on its own, keeping a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _watch(self, container: Container, supervisor_pid: int) -> None:
        """Call :meth:`_supervisor_exited` when the supervisor process ends."""
        live = self.live(container)
        live.watch = ExitWatch(
            supervisor_pid, lambda: self._background(self._supervisor_exited(container.id))
        )

    async def _supervisor_exited(self, container_id: str) -> None:
        container = self.containers.get(container_id)
        if container is None:
            return
        live = self.live(container)
        live.watch = None
        exit_code, error = read_exit_status(self.directory(container))
        async with live.lock:
            await self._finish_exit(container, exit_code, error)

    async def _finish_exit(self, container: Container, exit_code: int, error: str) -> None:
        await self._stop_health(container)
        oom = False
        if self.runtime is not None:
            with contextlib.suppress(Exception):
                oom = await run_in_threadpool(self.runtime.oom_killed, container.id)
            with contextlib.suppress(Exception):
                await run_in_threadpool(self.runtime.cleanup, container.id)
        await self._release_networks(container)
        await run_in_threadpool(volume_mounts.unmount_volumes, self.volumes, container)
        container.exit_generation += 1
        self.live(container).exited.set()
        self.live(container).release_init()
        container.state = attrs.evolve(
            container.state,
            status="exited",
            pid=0,
            init_start_time=0,
            supervisor_pid=0,
            exit_code=exit_code,
            error=error,
            oom_killed=oom,
            finished_at=now_rfc3339(),
        )
        self._save(container)
        if oom:
            self._event("oom", container)
        self._event("die", container, exitCode=str(exit_code))
        self._resolve_waiters(container, ("not-running", "next-exit"))
        if container.host_config.auto_remove:
            await self._remove_locked(container, remove_volumes=True)
            return
        if should_restart(container):
            live = self.live(container)
            live.restart_task = asyncio.ensure_future(self._restart_later(container))

    async def _restart_later(self, container: Container) -> None:
        container.state = attrs.evolve(container.state, status="restarting")
        self._save(container)
        await asyncio.sleep(restart_delay(container.restart_count))
        if container.id not in self.containers or container.state.status != "restarting":
            return
        async with self.live(container).lock:
            if container.state.status != "restarting":
                return
            container.restart_count += 1
            try:
                await self._start_locked(container)
            except DockyardError as exc:
                _log.warning("restart failed", container=container.id, error=exc.message)
                container.state = attrs.evolve(container.state, status="exited")
                self._save(container)
                if should_restart(container):
                    self.live(container).restart_task = asyncio.ensure_future(
                        self._restart_later(container)
                    )

    def _resolve_waiters(self, container: Container, conditions: tuple[str, ...]) -> None:
        self.live(container).waiters.resolve(conditions, container.state.exit_code)

    def wait_future(self, name: str, condition: str) -> asyncio.Future[dict[str, Any]]:
        """A future completing like ``POST /containers/{id}/wait?condition=``."""
        condition = check_wait_condition(condition)
        container = self.get(name)
        if condition == "not-running" and container.state.status not in ACTIVE:
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            future.set_result({"StatusCode": container.state.exit_code, "Error": None})
            return future
        return self.live(container).waiters.add(condition)

    # ------------------------------------------------------------------ signals

    def _require_running(self, container: Container, verb: str) -> None:
        if container.state.status not in ("running", "paused"):
            raise Conflict(f"{verb}Container {container.id} is not running")

    async def kill(self, name: str, signal_value: str | None) -> None:
        """``POST /containers/{id}/kill``. As dockerd: a SIGKILL (the default) is answered once
        the exit is recorded, so an inspect right after shows it exited with 137; any other
        signal is answered once sent (the process may ignore it)."""
        container = self.get(name)
        signum = options.parse_signal(signal_value)
        self._require_running(container, f"Cannot kill container: {name}: ")
        if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            container.state.stopped_by_user = True
            self._save(container)
        waiter = self.wait_future(container.id, "not-running") if signum == signal.SIGKILL else None
        self._send_signal(container, signum)
        if waiter is not None:
            await waiter

    def _send_signal(self, container: Container, signum: int) -> None:
        """Signal the container's init and log the ``kill`` event dockerd logs for every signal
        it sends (``kill``, and ``stop``'s): before the exit, so before ``die``."""
        self._signal(container, signum)
        self._event("kill", container, signal=str(signum))

    def _signal(self, container: Container, signum: int) -> None:
        if container.state.status == "paused" and self.runtime is not None:
            with contextlib.suppress(Exception):
                self.runtime.resume(container.id)
            container.state.status = "running"
        init = self.live(container).init
        if init is not None:
            init.send_signal(signum)  # by pidfd: once the init is gone, to nobody

    async def stop(self, name: str, timeout: int | None, signal_value: str | None = None) -> None:
        container = self.get(name)
        live = self.live(container)
        if live.restart_task is not None and container.state.status == "restarting":
            live.restart_task.cancel()
            container.state = attrs.evolve(container.state, status="exited", stopped_by_user=True)
            self._save(container)
            return
        if container.state.status not in ("running", "paused"):
            raise NotModified()
        container.state.stopped_by_user = True
        self._save(container)
        stop_signal = options.parse_signal(
            signal_value or container.config.stop_signal, signal.SIGTERM
        )
        if timeout is None:
            timeout = container.config.stop_timeout or DEFAULT_STOP_TIMEOUT
        waiter = self.wait_future(container.id, "not-running")
        self._send_signal(container, stop_signal)
        if timeout < 0:
            await waiter
        else:
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except TimeoutError:
                self._send_signal(container, signal.SIGKILL)
                await waiter
        self._event("stop", container)

    async def restart(self, name: str, timeout: int | None) -> None:
        container = self.get(name)
        with contextlib.suppress(NotModified):
            await self.stop(container.id, timeout)
        await self.start(container.id)
        container.state.stopped_by_user = False
        self._save(container)
        self._event("restart", container)

    async def pause(self, name: str, pause: bool) -> None:
        container = self.get(name)
        runtime, _ = self._require_runtime()
        if pause:
            if container.state.status == "paused":
                raise Conflict(f"Container {container.id} is already paused")
            self._require_running(container, "")
            await self._stop_health(container)
            await run_in_threadpool(runtime.pause, container.id)
            container.state.status = "paused"
        else:
            if container.state.status != "paused":
                raise Conflict(f"Container {container.id} is not paused")
            await run_in_threadpool(runtime.resume, container.id)
            container.state.status = "running"
            self._start_health(container, reset=False)
        self._save(container)
        self._event("pause" if pause else "unpause", container)

    # ------------------------------------------------------------------ update

    async def update(self, name: str, update: HostConfig) -> list[str]:
        """``POST /containers/{id}/update``: new limits and restart policy, applied to the
        running container's cgroups and kept for its next starts; the ``update`` event."""
        container = self.get(name)
        unapplied.refuse_unapplied(ContainerConfig(), update)
        limits.refuse_not_updatable(update)
        limits.plan_resources(update, self.settings.host_facts, update=True)
        async with self.live(container).lock:
            if container.id not in self.containers:
                raise NotFound(f"No such container: {name}")
            host_config = limits.merge_update(
                container.host_config, update, container.host_config.auto_remove
            )
            planned = limits.plan_resources(host_config, self.settings.host_facts, update=True)
            resources = limits.keeping_lifelong(planned, container.spec.resources)
            if container.state.status in ("running", "paused") and self.runtime is not None:
                await run_in_threadpool(self.runtime.update, container.id, resources)
            container.host_config = host_config
            container.spec = attrs.evolve(container.spec, resources=resources)
            self._save(container)
        self._event("update", container)
        return []

    # ------------------------------------------------------------------ remove

    async def remove(self, name: str, force: bool, remove_volumes: bool) -> None:
        container = self.get(name)
        if container.state.status in ("running", "paused", "restarting"):
            if not force:
                raise Conflict(
                    f"You cannot remove a running container {container.id}. Stop the container "
                    "before attempting removal or force remove"
                )
            live = self.live(container)
            if live.restart_task is not None:
                live.restart_task.cancel()
            if container.state.status != "restarting":
                container.state.stopped_by_user = True
                waiter = self.wait_future(container.id, "not-running")
                self._send_signal(container, signal.SIGKILL)
                await waiter
        async with self.live(container).lock:
            if container.id in self.containers:
                await self._remove_locked(container, remove_volumes)

    async def _remove_locked(self, container: Container, remove_volumes: bool) -> None:
        await self._stop_health(container)
        # The record goes first (renamed away in one step), so the container is gone for
        # everyone at once and a crash mid-way leaves only garbage that reconcile() sweeps.
        self.containers.pop(container.id, None)
        self.names.release(container.name, container.id)
        trash = self.root / f".removing-{container.id}"
        os.replace(self.directory(container), trash)
        self._event("destroy", container)
        self._resolve_waiters(container, ("not-running", "next-exit", "removed"))
        live = self._live.pop(container.id, None)
        if live is not None:
            live.release_init()
        await run_in_threadpool(self._delete_remains, container, trash, remove_volumes)

    def _delete_remains(self, container: Container, trash: Path, remove_volumes: bool) -> None:
        if self.runtime is not None and container.state.status != "exited":
            with contextlib.suppress(Exception):
                self.runtime.cleanup(container.id)  # an exited container was cleaned at exit
        if self.driver is not None:
            self.driver.remove(container.snapshot)
        shutil.rmtree(trash, ignore_errors=True)
        if remove_volumes:
            for volume in container.anonymous_volumes:
                with contextlib.suppress(DockyardError):
                    self.volumes.remove(volume, force=True)

    async def remove_link(self, name: str) -> None:
        """``DELETE /containers/PARENT/ALIAS?link=1``: the parent's link goes, both stay."""
        parent_name, _, alias = name.strip("/").rpartition("/")
        if not parent_name:
            self.get(name)
            raise Conflict("Conflict, cannot remove the default link name of the container")
        try:
            parent = self.get(parent_name)
        except NotFound:
            raise NotFound(f"No such container: {name}") from None
        async with self.live(parent).lock:
            found = [link for link in parent.links if link.alias == alias]
            if not found:
                raise NotFound(f"No such container: {name}")
            parent.links.remove(found[0])
            self._save(parent)

    def linked_child(self, name: str) -> Container:
        """The container a link name (``PARENT/ALIAS``) stands for, as dockerd finds it."""
        parent_name, _, alias = name.strip("/").rpartition("/")
        try:
            parent = self.get(parent_name)
        except NotFound:
            raise NotFound(f"No such container: {name}") from None
        for link in parent.links:
            if link.alias == alias and link.child_id in self.containers:
                return self.containers[link.child_id]
        raise NotFound(f"No such container: {name}")

    async def rename(self, name: str, new_name: str) -> None:
        container = self.get(name)
        new_name = options.check_name(new_name)
        if new_name == container.name:
            raise InvalidParameter("Renaming a container with the same name as its current name")
        try:
            self.names.reserve(new_name, container.id)
        except Conflict as exc:
            raise Conflict(f"Error when allocating new name: {exc.message}") from None
        old = container.name
        container.name = new_name
        self.names.release(old, container.id)
        self._save(container)
        for parent in list(self.containers.values()):
            # The name its parents' links show once it is gone, as dockerd shows it.
            for link in parent.links:
                if link.child_id == container.id:
                    link.child_name = new_name
                    self._save(parent)
        self._event("rename", container, oldName=f"/{old}")

    # ------------------------------------------------------------------ networks

    async def connect(self, name: str, network: NetworkRecord, config: EndpointSettings) -> None:
        """``POST /networks/{id}/connect``."""
        container = self.get(name)
        if self.networking is None:
            raise DockyardError("this daemon has no networks")
        async with self.live(container).lock:
            await run_in_threadpool(self.networking.connect, container, network, config)
            self._save(container)
            if container.state.running and self.dns is not None:
                await self.dns.detach(container.id)
                await self._serve_names(container)

    async def disconnect(self, name: str, network: NetworkRecord, force: bool) -> None:
        """``POST /networks/{id}/disconnect``."""
        if self.networking is None:
            raise DockyardError("this daemon has no networks")
        try:
            container = self.get(name)
        except NotFound:
            if force:
                return  # dockerd: forced, an endpoint whose container is gone is fine
            raise
        async with self.live(container).lock:
            await run_in_threadpool(self.networking.disconnect, container, network)
            self._save(container)
            if container.state.running and self.dns is not None:
                await self.dns.detach(container.id)
                await self._serve_names(container)

    def image_users(self, image_id: str) -> list[str]:
        """Containers made from ``image_id`` (they keep its layers in use)."""
        return [c.id for c in self.containers.values() if c.image_id == image_id]

    def running_image_users(self, image_id: str) -> list[str]:
        """Those of :meth:`image_users` that run (dockerd's ``IsRunning``: paused ones too)."""
        return [
            c.id
            for c in self.containers.values()
            if c.image_id == image_id and c.state.status in ("running", "paused", "restarting")
        ]

    def volume_users(self, name: str) -> list[str]:
        """Containers that mount volume ``name``."""
        mountpoint = str(self.volumes.root / name / "_data")
        return [
            c.id
            for c in self.containers.values()
            if any(m.source == mountpoint for m in c.spec.mounts)
        ]

    # ------------------------------------------------------------------ stdin and tty

    def stdin_socket(self, container: Container) -> socket.socket | None:
        try:
            return connect_to_supervisor(self.directory(container), "stdin.sock")
        except OSError:
            return None

    def resize(self, name: str, height: int, width: int) -> None:
        container = self.get(name)
        self._require_running(container, "")
        try:
            with connect_to_supervisor(self.directory(container), "control.sock") as connection:
                connection.sendall(json.dumps({"resize": [height, width]}).encode() + b"\n")
        except OSError as exc:
            raise Conflict(f"cannot resize: {exc}") from None
        self._event("resize", container, height=str(height), width=str(width))

    # ------------------------------------------------------------------ daemon restart

    async def reconcile(self) -> None:
        """Re-attach to supervisors that outlived the daemon; record exits that happened while
        it was down; start containers whose restart policy says so; drop snapshots of
        containers whose removal a crash interrupted."""
        if self.networking is not None:
            await run_in_threadpool(self.networking.restore)
        if self.driver is not None:
            snapshots = {c.snapshot for c in self.containers.values()}
            for key in list(self.driver.keys()):
                if key.startswith("container-") and key not in snapshots:
                    await run_in_threadpool(self.driver.remove, key)
        for container in list(self.containers.values()):
            state = container.state
            if state.status in ("running", "paused", "restarting"):
                if state.status != "restarting" and is_supervisor(
                    state.supervisor_pid, self.directory(container)
                ):
                    self._watch(container, state.supervisor_pid)
                    self.live(container).init = hold_init(state)
                    await self._serve_names(container)
                    for volume in container.volumes.values():
                        self.volumes.adopt(volume, container.id)
                    if state.status == "running":
                        self._start_health(container, reset=True)
                    continue
                await self._supervisor_exited(container.id)
            elif (
                state.status == "exited"
                and container.restart_policy.name == "always"
                and state.stopped_by_user
            ):
                # dockerd starts "always" containers a user stopped when the daemon restarts.
                container.state.stopped_by_user = False
                with contextlib.suppress(DockyardError):
                    await self.start(container.id)

    async def shutdown(self) -> None:
        """Stop watching; containers keep running under their supervisors."""
        if self.dns is not None:
            await self.dns.close()
        await run_in_threadpool(self.zygote.close)
        for container_id in list(self._live):
            container = self.containers.get(container_id)
            if container is not None:
                await self._stop_health(container)
        for live in self._live.values():
            live.release_init()
            if live.watch is not None:
                live.watch.cancel()
                live.watch = None
            if live.restart_task is not None:
                live.restart_task.cancel()
            live.waiters.cancel()
