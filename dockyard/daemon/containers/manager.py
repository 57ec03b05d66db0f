"""The container lifecycle: create, start, stop, kill, wait, restart, remove, exec.

Runs on the daemon's event loop; blocking work (the storage driver, the runtime, process
spawning) goes to worker threads. One supervisor process per running container does the
watching (see :mod:`dockyard.daemon.containers.supervisor`); the manager learns of an exit when
that supervisor exits (a pidfd becomes readable), reads ``exit.json`` and applies the restart
policy. Containers that outlived a daemon restart are found again by :meth:`reconcile`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import structlog
from starlette.concurrency import run_in_threadpool

import dockyard
from dockyard.core.errors import Conflict, DockyardError, InvalidParameter, NotFound
from dockyard.core.interfaces import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    BindMount,
    ContainerSpec,
    ProcessSpec,
    Resources,
    Runtime,
    StorageDriver,
    spec_to_json,
)
from dockyard.daemon.containers import options
from dockyard.daemon.containers.init_process import hold_init
from dockyard.daemon.containers.model import Container, ContainerState, now_rfc3339
from dockyard.daemon.images.store import ImageStore
from dockyard.daemon.userns import Remapping
from dockyard.linux.mounts import mount_all, unmount_all
from dockyard.linux.processes import ProcessHandle

_log = structlog.get_logger("dockyard.containers")

MINIMUM_MEMORY = 6 * 1024 * 1024
DEFAULT_STOP_TIMEOUT = 10
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


#: ``-S`` skips site initialisation (.pth files: some import whole packages); the module path
#: is given explicitly instead.
ZYGOTE_COMMAND = (sys.executable, "-S", "-m", "dockyard.daemon.containers.zygote")


def supervisor_python_path(runtime: Any) -> str:
    """Where the zygote finds dockyard, its dependencies and the runtime's launcher."""
    roots = [str(Path(dockyard.__file__).resolve().parent.parent)]
    launcher = getattr(runtime, "launcher", "")
    spec = importlib.util.find_spec(launcher.partition(":")[0].split(".")[0]) if launcher else None
    if spec is not None and spec.origin:
        roots.append(str(Path(spec.origin).resolve().parent.parent))
    roots += [entry for entry in sys.path if entry and os.path.isdir(entry)]
    return os.pathsep.join(dict.fromkeys(roots))


class Zygote:
    """The daemon's handle on its zygote process (see :mod:`dockyard.daemon.containers.zygote`).

    Started on first use, and again if it died. Thread-safe: one spawn at a time.
    """

    def __init__(self, launcher: str, runtime: Any, log_path: Path) -> None:
        self.launcher = launcher
        self.runtime = runtime
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._lock = threading.Lock()

    def _start(self) -> socket.socket:
        # SEQPACKET keeps each request and answer whole: no partial reads to reassemble.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [*ZYGOTE_COMMAND, self.launcher],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                cwd="/",
                env={
                    **os.environ,
                    "DOCKYARD_CONTROL_FD": str(theirs.fileno()),
                    "PYTHONPATH": supervisor_python_path(self.runtime),
                },
            )
        theirs.close()
        self._control = ours
        return ours

    def spawn(self, state_dir: Path, ready_fd: int) -> int:
        with self._lock:
            for _attempt in range(2):
                control = self._control
                if control is None or self._process is None or self._process.poll() is not None:
                    control = self._start()
                try:
                    socket.send_fds(control, [str(state_dir).encode()], [ready_fd])
                    answer = control.recv(64)
                except OSError:
                    answer = b""
                if answer.strip().isdigit():
                    return int(answer)
                self.close()  # a dead or confused zygote: start a fresh one and retry once
            raise DockyardError(f"the supervisor zygote failed: {answer.decode(errors='replace')}")

    def close(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)  # it exits when the socket closes
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            self._process = None


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
class _Waiter:
    condition: str  # "not-running", "next-exit", "removed"
    future: asyncio.Future[dict[str, Any]]


@attrs.define
class _Live:
    """In-memory companions of a container: waiters, pending stdin, the supervisor watch."""

    waiters: list[_Waiter] = attrs.Factory(list)
    pidfd: int | None = None
    #: The init process, while it runs: signals go through it (see ``init_process``).
    init: ProcessHandle | None = None
    lock: asyncio.Lock = attrs.Factory(asyncio.Lock)
    #: Set when the container exits (followers of its output stop waiting at once).
    exited: asyncio.Event = attrs.Factory(asyncio.Event)
    restart_task: asyncio.Task[None] | None = None

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
        volumes: Any,
        emit: Callable[[str, str, dict[str, str]], None],
        remapping: Remapping | None = None,
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
        #: The daemon's ``userns-remap``: the maps containers get unless ``--userns=host``.
        self.remapping = remapping
        self.containers: dict[str, Container] = {}
        self._live: dict[str, _Live] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self.zygote = Zygote(
            runtime.launcher if runtime else "", runtime, root.parent / "zygote.log"
        )
        for directory in sorted(self.root.iterdir()):
            if not directory.is_dir():
                continue
            if directory.name.startswith(".removing-"):
                shutil.rmtree(directory, ignore_errors=True)  # a removal a crash interrupted
                continue
            try:
                container = Container.load(directory)
            except (OSError, ValueError, KeyError, TypeError):
                _log.warning("dropping a container record that cannot be read", dir=str(directory))
                shutil.rmtree(directory, ignore_errors=True)
                continue
            self.containers[container.id] = container

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

    def _save(self, container: Container) -> None:
        container.save(self.directory(container))

    def _event(self, action: str, container: Container, **extra: str) -> None:
        attributes = {"name": container.name, "image": container.image_name, **extra}
        self._emit(action, container.id, attributes)

    # ------------------------------------------------------------------ create

    def _require_runtime(self) -> tuple[Runtime, StorageDriver]:
        if self.runtime is None:
            raise DockyardError("no container runtime is installed or usable on this machine")
        if self.driver is None:
            raise DockyardError("no storage driver is installed or usable on this machine")
        return self.runtime, self.driver

    def create(self, body: dict[str, Any], name: str | None) -> tuple[Container, list[str]]:
        """``POST /containers/create``. Blocking: call from a worker thread."""
        runtime, driver = self._require_runtime()
        if not isinstance(body, dict):
            raise InvalidParameter("the request body must be a JSON object")
        image_name = body.get("Image") or ""
        if not image_name:
            raise InvalidParameter("Config.Image is required")
        image = self.images.resolve(image_name)
        image_config = self.images.config(image).get("config") or {}
        host = dict(body.get("HostConfig") or {})
        warnings: list[str] = []

        entrypoint, cmd = options.resolve_command(image_config, body)
        args = entrypoint + cmd
        if not args:
            raise InvalidParameter("No command specified")
        name = options.check_name(name) if name else self._unique_random_name()
        if any(c.name == name for c in self.containers.values()):
            holder = next(c for c in self.containers.values() if c.name == name)
            raise Conflict(
                f'Conflict. The container name "/{name}" is already in use by container '
                f'"{holder.id}". You have to remove (or rename) that container to be able to '
                "reuse that name."
            )
        memory = options.parse_memory(host.get("Memory"))
        if memory is not None and memory < MINIMUM_MEMORY:
            raise InvalidParameter("Minimum memory limit allowed is 6MB")
        nano_cpus = host.get("NanoCpus") or None
        if not nano_cpus and host.get("CpuQuota") and host.get("CpuPeriod"):
            nano_cpus = int(host["CpuQuota"] * 1_000_000_000 / host["CpuPeriod"])
        if nano_cpus is not None and (nano_cpus < 0 or nano_cpus > (os.cpu_count() or 1) * 10**9):
            raise InvalidParameter(
                f"Range of CPUs is from 0.01 to {os.cpu_count()}.00, as there are only "
                f"{os.cpu_count()} CPUs available"
            )
        pids_limit = host.get("PidsLimit") or None
        if pids_limit is not None and pids_limit <= 0:
            pids_limit = None
        restart = options.parse_restart_policy(host.get("RestartPolicy"))
        if restart.name != "no" and host.get("AutoRemove"):
            raise Conflict("conflicting options: cannot specify both --restart and --rm")
        network_mode = host.get("NetworkMode") or "default"
        if network_mode not in ("default", "bridge", "none", "host"):
            raise InvalidParameter(f"network {network_mode} not found")
        # Until bridge networking lands, the default network is "none": loopback only.
        privileged = bool(host.get("Privileged"))
        caps = options.capabilities(host.get("CapAdd"), host.get("CapDrop"), privileged)
        security = options.parse_security_options(host.get("SecurityOpt"))
        unconfined_paths = privileged or security.unconfined_system_paths
        remapping = self._remapping_for(host.get("UsernsMode") or "", privileged, network_mode)
        volume_specs = [options.parse_bind(b) for b in host.get("Binds") or []]
        volume_specs += [options.parse_mount(m) for m in host.get("Mounts") or []]
        anonymous = [
            d
            for d in (body.get("Volumes") or image_config.get("Volumes") or {})
            if d not in {v.destination for v in volume_specs}
        ]
        for volume_spec in volume_specs:
            if not volume_spec.is_named_volume and not os.path.exists(volume_spec.source):
                raise InvalidParameter(
                    'invalid mount config for type "bind": bind source path does not exist: '
                    + volume_spec.source
                )

        container_id = secrets.token_hex(32)
        directory = self.root / container_id
        directory.mkdir()
        snapshot = f"container-{container_id}"
        try:
            parents = self.images.parents_of(image.layers[-1]) if image.layers else []
            rootfs = driver.prepare(snapshot, parents)
            user = self._resolve_user(
                body.get("User") or image_config.get("User") or "", rootfs, directory
            )
            made_volumes: list[str] = []
            mounts = []
            volume_names: dict[str, str] = {}
            for volume_spec in volume_specs:
                source = volume_spec.source
                if volume_spec.is_named_volume:
                    source = str(self.volumes.ensure(volume_spec.source).mountpoint)
                    volume_names[volume_spec.destination] = volume_spec.source
                # Volumes are remapped like the root filesystem; host paths are not (docker's
                # rule: they are the host's files, seen as they are).
                idmap = remapping is not None and volume_spec.is_named_volume
                mounts.append(
                    BindMount(source, volume_spec.destination, volume_spec.read_only, idmap)
                )
            for destination in anonymous:
                volume = self.volumes.ensure(secrets.token_hex(32), anonymous=True)
                made_volumes.append(volume.name)
                volume_names[destination] = volume.name
                mounts.append(
                    BindMount(str(volume.mountpoint), destination, False, remapping is not None)
                )
            # On the host's network a container has the host's name, as under docker.
            default_name = socket.gethostname() if network_mode == "host" else container_id[:12]
            hostname = body.get("Hostname") or default_name
            etc_files = self._write_etc_files(directory, hostname, network_mode)
            tty = bool(body.get("Tty"))
            console = tuple(host.get("ConsoleSize") or (0, 0))
            env = options.merge_env(
                image_config.get("Env") or [DEFAULT_PATH], body.get("Env") or []
            )
            if not any(e.startswith("PATH=") for e in env):
                env.insert(0, DEFAULT_PATH)
            env.append(f"HOSTNAME={hostname}")
            if tty:
                env.append("TERM=xterm")
            process = ProcessSpec(
                args=tuple(args),
                env=tuple(options.with_home(env, user.home)),
                cwd=body.get("WorkingDir") or image_config.get("WorkingDir") or "/",
                uid=user.uid,
                gid=user.gid,
                additional_gids=user.additional_gids,
                terminal=tty,
                capabilities=caps,
                no_new_privileges=security.no_new_privileges,
                seccomp="unconfined" if privileged or security.unconfined_seccomp else "default",
                console_size=(int(console[0]), int(console[1])) if len(console) == 2 else (0, 0),
            )
            spec = ContainerSpec(
                id=container_id,
                rootfs=tuple(rootfs),
                process=process,
                hostname=hostname,
                read_only_rootfs=bool(host.get("ReadonlyRootfs")),
                network_mode="host" if network_mode == "host" else "none",
                mounts=tuple(mounts),
                resources=Resources(memory, nano_cpus, pids_limit),
                privileged=privileged,
                etc_files=etc_files,
                masked_paths=() if unconfined_paths else DEFAULT_MASKED_PATHS,
                readonly_paths=() if unconfined_paths else DEFAULT_READONLY_PATHS,
                uid_mappings=remapping.uid_mappings if remapping else (),
                gid_mappings=remapping.gid_mappings if remapping else (),
                state_dir=str(directory),
                runtime_options=tuple(runtime.launch_options),
            )
            config = self._engine_config(body, image_config, entrypoint, cmd, env, hostname)
            host_config = self._engine_host_config(
                host, network_mode, restart, memory, nano_cpus, pids_limit
            )
            container = Container(
                id=container_id,
                name=name,
                created=now_rfc3339(),
                image_id=image.id,
                image_name=image_name,
                config=config,
                host_config=host_config,
                spec=spec,
                snapshot=snapshot,
                driver=self.driver_name,
                restart_policy=restart,
                anonymous_volumes=made_volumes,
                volumes=volume_names,
            )
            self._save(container)
        except BaseException:
            driver.remove(snapshot)
            shutil.rmtree(directory, ignore_errors=True)
            raise
        self.containers[container.id] = container
        self._event("create", container)
        return container, warnings

    def _remapping_for(
        self, userns_mode: str, privileged: bool, network_mode: str
    ) -> Remapping | None:
        """The maps a new container gets: the daemon's, unless it opts out with ``host``.

        dockerd's rules: ``--privileged`` and ``--network host`` need ``--userns=host`` when
        remapping is on (a remapped root could not use the host's devices or network stack).
        """
        if userns_mode not in ("", "host"):
            raise InvalidParameter(
                f"invalid USER mode: {userns_mode} (valid: host, or empty for the daemon's default)"
            )
        if self.remapping is None or userns_mode == "host":
            return None
        if privileged:
            raise InvalidParameter(
                "privileged mode is incompatible with user namespaces.  You must run the "
                "container in the host namespace when running privileged mode"
            )
        if network_mode == "host":
            raise InvalidParameter(
                "cannot share the host's network namespace when user namespaces are enabled"
            )
        return self.remapping

    def _unique_random_name(self) -> str:
        taken = {c.name for c in self.containers.values()}
        for _ in range(100):
            name = options.random_name()
            if name not in taken:
                return name
        return f"{options.random_name()}_{secrets.token_hex(3)}"

    def _resolve_user(self, user: str, rootfs: list[Any], directory: Path) -> options.ResolvedUser:
        # Root too: its home and group memberships come from the image's files.
        passwd, group = self._read_image_files(rootfs, directory, ("/etc/passwd", "/etc/group"))
        return options.parse_user(user, passwd, group)

    @staticmethod
    def _read_image_files(
        rootfs: list[Any], directory: Path, paths: tuple[str, ...]
    ) -> tuple[str | None, ...]:
        """Read a few files of the prepared root filesystem (mounted briefly, read-only)."""
        target = directory / "peek"
        target.mkdir(exist_ok=True)
        mount_all(rootfs, str(target))
        try:
            contents: list[str | None] = []
            for path in paths:
                try:
                    contents.append((target / path.lstrip("/")).read_text(errors="replace"))
                except OSError:
                    contents.append(None)
            return tuple(contents)
        finally:
            unmount_all(str(target))
            target.rmdir()

    @staticmethod
    def _write_etc_files(
        directory: Path, hostname: str, network_mode: str
    ) -> tuple[tuple[str, str], ...]:
        hosts = directory / "hosts"
        host_hosts = Path("/etc/hosts")
        if network_mode == "host" and host_hosts.is_file():
            # The host's names on the host's network, as a copy: the container's writes to its
            # /etc/hosts must not reach the host's.
            hosts.write_text(host_hosts.read_text(errors="replace"))
        else:
            hosts.write_text(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                f"ff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
            )
        (directory / "hostname").write_text(f"{hostname}\n")
        resolv = directory / "resolv.conf"
        try:
            resolv.write_text(Path("/etc/resolv.conf").read_text())
        except OSError:
            resolv.write_text("")
        # (host file, container path), as ContainerSpec.etc_files holds them.
        return (
            (str(directory / "hostname"), "/etc/hostname"),
            (str(resolv), "/etc/resolv.conf"),
            (str(hosts), "/etc/hosts"),
        )

    @staticmethod
    def _engine_config(
        body: dict[str, Any],
        image: dict[str, Any],
        entrypoint: list[str],
        cmd: list[str],
        env: list[str],
        hostname: str,
    ) -> dict[str, Any]:
        return {
            "Hostname": hostname,
            "Domainname": body.get("Domainname") or "",
            "User": body.get("User") or image.get("User") or "",
            "AttachStdin": bool(body.get("AttachStdin")),
            "AttachStdout": bool(body.get("AttachStdout")),
            "AttachStderr": bool(body.get("AttachStderr")),
            "ExposedPorts": body.get("ExposedPorts") or image.get("ExposedPorts"),
            "Tty": bool(body.get("Tty")),
            "OpenStdin": bool(body.get("OpenStdin")),
            "StdinOnce": bool(body.get("StdinOnce")),
            "Env": env,
            "Cmd": cmd or None,
            "Image": body.get("Image"),
            "Volumes": body.get("Volumes") or image.get("Volumes"),
            "WorkingDir": body.get("WorkingDir") or image.get("WorkingDir") or "",
            "Entrypoint": entrypoint or None,
            "OnBuild": None,
            "Labels": {**(image.get("Labels") or {}), **(body.get("Labels") or {})},
            "StopSignal": body.get("StopSignal") or image.get("StopSignal"),
            "StopTimeout": body.get("StopTimeout"),
        }

    @staticmethod
    def _engine_host_config(
        host: dict[str, Any],
        network_mode: str,
        restart: options.RestartPolicy,
        memory: int | None,
        nano_cpus: int | None,
        pids_limit: int | None,
    ) -> dict[str, Any]:
        log_config = host.get("LogConfig") or {}
        return {
            **host,
            "Binds": host.get("Binds"),
            "NetworkMode": network_mode,
            "RestartPolicy": restart.to_engine_api(),
            "AutoRemove": bool(host.get("AutoRemove")),
            "LogConfig": {"Type": "json-file", "Config": log_config.get("Config") or {}},
            "Memory": memory or 0,
            "NanoCpus": nano_cpus or 0,
            "PidsLimit": pids_limit,
            "Privileged": bool(host.get("Privileged")),
            "ReadonlyRootfs": bool(host.get("ReadonlyRootfs")),
            "UsernsMode": host.get("UsernsMode") or "",
        }

    # ------------------------------------------------------------------ start

    async def start(self, name: str) -> None:
        container = self.get(name)
        async with self.live(container).lock:
            if container.state.status in ("running", "paused"):
                raise NotModified()
            await self._start_locked(container)

    async def _start_locked(self, container: Container) -> None:
        runtime, _driver = self._require_runtime()
        directory = self.directory(container)
        for stale in ("exit.json", "init.pid", "supervisor.pid"):
            (directory / stale).unlink(missing_ok=True)
        log_options = container.host_config["LogConfig"]["Config"]
        settings = {
            "launcher": runtime.launcher,
            "tty": container.tty,
            "open_stdin": bool(container.config.get("OpenStdin")),
            "stdin_once": bool(container.config.get("StdinOnce")),
            "log_max_size": options.parse_memory(log_options.get("max-size")) or 0,
            "log_max_files": int(log_options.get("max-file") or 1),
        }
        (directory / "supervisor.json").write_text(json.dumps(settings))
        (directory / "spec.json").write_text(spec_to_json(container.spec))
        report = await run_in_threadpool(self._spawn_supervisor, container)
        if "error" in report:
            container.state = attrs.evolve(
                container.state,
                status="exited" if container.state.status != "created" else "created",
                exit_code=report["exit_code"],
                error=report["error"],
                finished_at=now_rfc3339(),
            )
            self._save(container)
            with contextlib.suppress(Exception):
                await run_in_threadpool(runtime.cleanup, container.id)
            if container.host_config.get("AutoRemove"):
                await self._finish_exit(container, report["exit_code"], report["error"])
            raise StartFailed(report["error"], report["exit_code"])
        container.state = ContainerState(
            status="running",
            pid=report["pid"],
            init_start_time=report.get("start_time", 0),
            supervisor_pid=report["supervisor_pid"],
            started_at=now_rfc3339(),
        )
        self._save(container)
        self.live(container).exited.clear()
        self._watch(container, container.state.supervisor_pid)
        self.live(container).init = hold_init(container.state)
        self._event("start", container)

    def _spawn_supervisor(self, container: Container) -> dict[str, Any]:
        """Have the zygote fork a supervisor; returns its launch report (``pid`` or ``error``)."""
        directory = self.directory(container)
        ready_r, ready_w = os.pipe()
        try:
            supervisor_pid = self.zygote.spawn(directory, ready_w)
            os.close(ready_w)
            ready_w = -1
            with os.fdopen(ready_r, "rb") as ready:
                ready_r = -1
                line = ready.readline()
        finally:
            for fd in (ready_r, ready_w):
                if fd >= 0:
                    os.close(fd)
        if not line:
            log = (directory / "supervisor.log").read_text(errors="replace").strip().splitlines()
            detail = log[-1] if log else "it exited without a word"
            return {"error": f"the container supervisor failed: {detail}", "exit_code": 125}
        report: dict[str, Any] = json.loads(line)
        report["supervisor_pid"] = supervisor_pid
        return report

    # ------------------------------------------------------------------ exits

    def _background(self, work: Any) -> None:
        """Run a coroutine on its own, keeping a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _watch(self, container: Container, supervisor_pid: int) -> None:
        """Call :meth:`_supervisor_exited` when the supervisor process ends."""
        try:
            pidfd = os.pidfd_open(supervisor_pid)
        except ProcessLookupError:
            self._background(self._supervisor_exited(container.id))
            return
        loop = asyncio.get_running_loop()
        live = self.live(container)
        live.pidfd = pidfd

        def readable() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            live.pidfd = None
            self._background(self._supervisor_exited(container.id))

        loop.add_reader(pidfd, readable)

    async def _supervisor_exited(self, container_id: str) -> None:
        container = self.containers.get(container_id)
        if container is None:
            return
        live = self.live(container)
        exit_file = self.directory(container) / "exit.json"
        try:
            result = json.loads(exit_file.read_text())
            exit_code, error = int(result["exit_code"]), result.get("error", "")
        except (OSError, ValueError, KeyError):
            exit_code, error = 255, "the container supervisor died"
        async with live.lock:
            await self._finish_exit(container, exit_code, error)

    async def _finish_exit(self, container: Container, exit_code: int, error: str) -> None:
        oom = False
        if self.runtime is not None:
            with contextlib.suppress(Exception):
                oom = await run_in_threadpool(self.runtime.oom_killed, container.id)
            with contextlib.suppress(Exception):
                await run_in_threadpool(self.runtime.cleanup, container.id)
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
        if container.host_config.get("AutoRemove"):
            await self._remove_locked(container, remove_volumes=True)
            return
        if self._should_restart(container):
            live = self.live(container)
            live.restart_task = asyncio.ensure_future(self._restart_later(container))

    def _should_restart(self, container: Container) -> bool:
        policy = container.restart_policy
        if container.state.stopped_by_user or policy.name == "no":
            return False
        if policy.name == "on-failure":
            if container.state.exit_code == 0:
                return False
            return (
                not policy.maximum_retry_count
                or container.restart_count < policy.maximum_retry_count
            )
        return True  # always, unless-stopped

    async def _restart_later(self, container: Container) -> None:
        # Docker's back-off: 100 ms doubling per consecutive restart, at most a minute.
        delay = min(60.0, 0.1 * (2 ** min(container.restart_count, 10)))
        container.state = attrs.evolve(container.state, status="restarting")
        self._save(container)
        await asyncio.sleep(delay)
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
                if self._should_restart(container):
                    self.live(container).restart_task = asyncio.ensure_future(
                        self._restart_later(container)
                    )

    def _resolve_waiters(self, container: Container, conditions: tuple[str, ...]) -> None:
        live = self.live(container)
        # "Error" is for a wait that failed; the CLI treats any object there as one.
        result: dict[str, Any] = {"StatusCode": container.state.exit_code, "Error": None}
        remaining = []
        for waiter in live.waiters:
            if waiter.condition in conditions and not waiter.future.done():
                waiter.future.set_result(result)
            elif not waiter.future.done():
                remaining.append(waiter)
        live.waiters = remaining

    def wait_future(self, name: str, condition: str) -> asyncio.Future[dict[str, Any]]:
        """A future completing like ``POST /containers/{id}/wait?condition=``."""
        if condition not in ("not-running", "next-exit", "removed", ""):
            raise InvalidParameter(f"invalid condition: {condition!r}")
        container = self.get(name)
        condition = condition or "not-running"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if condition == "not-running" and container.state.status not in (
            "running",
            "paused",
            "restarting",
        ):
            future.set_result({"StatusCode": container.state.exit_code, "Error": None})
        else:
            self.live(container).waiters.append(_Waiter(condition, future))
        return future

    # ------------------------------------------------------------------ signals

    def _require_running(self, container: Container, verb: str) -> None:
        if container.state.status not in ("running", "paused"):
            raise Conflict(f"{verb}Container {container.id} is not running")

    async def kill(self, name: str, signal_value: str | None) -> None:
        container = self.get(name)
        signum = options.parse_signal(signal_value)
        self._require_running(container, f"Cannot kill container: {name}: ")
        if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            container.state.stopped_by_user = True
            self._save(container)
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
            signal_value or container.config.get("StopSignal"), signal.SIGTERM
        )
        if timeout is None:
            timeout = container.config.get("StopTimeout") or DEFAULT_STOP_TIMEOUT
        waiter = self.wait_future(container.id, "not-running")
        self._signal(container, stop_signal)
        if timeout < 0:
            await waiter
        else:
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except TimeoutError:
                self._signal(container, signal.SIGKILL)
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
            await run_in_threadpool(runtime.pause, container.id)
            container.state.status = "paused"
        else:
            if container.state.status != "paused":
                raise Conflict(f"Container {container.id} is not paused")
            await run_in_threadpool(runtime.resume, container.id)
            container.state.status = "running"
        self._save(container)
        self._event("pause" if pause else "unpause", container)

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
                self._signal(container, signal.SIGKILL)
                await waiter
        async with self.live(container).lock:
            if container.id in self.containers:
                await self._remove_locked(container, remove_volumes)

    async def _remove_locked(self, container: Container, remove_volumes: bool) -> None:
        # The record goes first (renamed away in one step), so the container is gone for
        # everyone at once and a crash mid-way leaves only garbage that reconcile() sweeps.
        self.containers.pop(container.id, None)
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

    async def rename(self, name: str, new_name: str) -> None:
        container = self.get(name)
        new_name = options.check_name(new_name)
        if any(c.name == new_name and c.id != container.id for c in self.containers.values()):
            raise Conflict(f'Conflict. The container name "/{new_name}" is already in use')
        old = container.name
        container.name = new_name
        self._save(container)
        self._event("rename", container, oldName=f"/{old}")

    def image_users(self, image_id: str) -> list[str]:
        """Containers made from ``image_id`` (they keep its layers in use)."""
        return [c.id for c in self.containers.values() if c.image_id == image_id]

    def volume_users(self, name: str) -> list[str]:
        """Containers that mount volume ``name``."""
        mountpoint = str(self.volumes.root / name / "_data")
        return [
            c.id
            for c in self.containers.values()
            if any(m.source == mountpoint for m in c.spec.mounts)
        ]

    # ------------------------------------------------------------------ stdin and tty

    def _connect(self, container: Container, name: str) -> socket.socket:
        """Connect to one of the supervisor's sockets.

        Through ``/proc/self/fd`` of the state directory, because a socket address holds only
        108 bytes and a data root's path can be longer.
        """
        directory = os.open(self.directory(container), os.O_PATH | os.O_DIRECTORY)
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(f"/proc/self/fd/{directory}/{name}")
        except OSError:
            connection.close()
            raise
        finally:
            os.close(directory)
        return connection

    def stdin_socket(self, container: Container) -> socket.socket | None:
        try:
            return self._connect(container, "stdin.sock")
        except OSError:
            return None

    def resize(self, name: str, height: int, width: int) -> None:
        container = self.get(name)
        self._require_running(container, "")
        try:
            with self._connect(container, "control.sock") as connection:
                connection.sendall(json.dumps({"resize": [height, width]}).encode() + b"\n")
        except OSError as exc:
            raise Conflict(f"cannot resize: {exc}") from None

    # ------------------------------------------------------------------ daemon restart

    async def reconcile(self) -> None:
        """Re-attach to supervisors that outlived the daemon; record exits that happened while
        it was down; start containers whose restart policy says so; drop snapshots of
        containers whose removal a crash interrupted."""
        if self.driver is not None:
            snapshots = {c.snapshot for c in self.containers.values()}
            for key in list(self.driver.keys()):
                if key.startswith("container-") and key not in snapshots:
                    await run_in_threadpool(self.driver.remove, key)
        for container in list(self.containers.values()):
            state = container.state
            if state.status in ("running", "paused", "restarting"):
                if state.status != "restarting" and _is_supervisor(
                    state.supervisor_pid, self.directory(container)
                ):
                    self._watch(container, state.supervisor_pid)
                    self.live(container).init = hold_init(state)
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
        await run_in_threadpool(self.zygote.close)
        loop = asyncio.get_running_loop()
        for live in self._live.values():
            live.release_init()
            if live.pidfd is not None:
                loop.remove_reader(live.pidfd)
                os.close(live.pidfd)
                live.pidfd = None
            if live.restart_task is not None:
                live.restart_task.cancel()
            for waiter in live.waiters:
                if not waiter.future.done():
                    waiter.future.cancel()


def _is_supervisor(pid: int, directory: Path) -> bool:
    """Whether ``pid`` is still the supervisor of the container in ``directory``."""
    if pid <= 0:
        return False
    try:
        # A supervisor works in its container's state directory: a reused pid does not.
        return os.readlink(f"/proc/{pid}/cwd") == str(directory.resolve())
    except OSError:
        return False
