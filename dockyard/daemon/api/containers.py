"""Container, exec and volume routes of the Engine API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dockyard.core.decoding import parse_json
from dockyard.core.errors import Conflict, InvalidParameter, NotFound
from dockyard.core.events import Event
from dockyard.core.interfaces import ContainerProcess, ProcessSpec
from dockyard.core.timestamps import ZERO_TIME, now_rfc3339, rfc3339_nano
from dockyard.daemon.api.hijack import HIJACK_EXTENSION, HijackedConnection, frame
from dockyard.daemon.api.params import parse_bool, parse_filters, parse_timestamp
from dockyard.daemon.api.system import service_of
from dockyard.daemon.containers import logs as container_logs
from dockyard.daemon.containers import model, options
from dockyard.daemon.containers.config import (
    CreateRequest,
    ExecConfig,
    ExecStartConfig,
    HostConfig,
)
from dockyard.daemon.containers.execs import ExecRegistry, check_can_exec, start_exec
from dockyard.daemon.containers.manager import ContainerManager
from dockyard.daemon.containers.model import Container
from dockyard.daemon.containers.spec import console_size
from dockyard.daemon.containers.supervisor import set_window_size
from dockyard.daemon.engine_api import ENGINE_API
from dockyard.daemon.volumes import VolumeCreateRequest, VolumeStore
from dockyard.linux import inroot

T = TypeVar("T")


def _manager(request: Request) -> ContainerManager:
    manager = service_of(request).containers
    assert manager is not None
    return manager


def _execs(request: Request) -> ExecRegistry:
    registry = service_of(request).execs
    assert registry is not None
    return registry


async def _body(request: Request, record: type[T]) -> T:
    """The request's JSON body as ``record``: a 400 naming the field for anything amiss."""
    return ENGINE_API.decode(parse_json(await request.body()), record)


def _int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f"invalid value for {name}: {value!r}") from None


# --------------------------------------------------------------------------------------------
# create, inspect, list
# --------------------------------------------------------------------------------------------


async def create(request: Request) -> Response:
    body = await _body(request, CreateRequest)
    manager = _manager(request)
    container, warnings = await run_in_threadpool(
        manager.create, body, request.query_params.get("name")
    )
    return JSONResponse({"Id": container.id, "Warnings": warnings}, status_code=201)


async def inspect(request: Request) -> Response:
    container = _manager(request).get(request.path_params["id"])
    return JSONResponse(model.inspect(container, _execs(request).of_container(container.id)))


def _matches(container: Container, filters: dict[str, list[str]]) -> bool:
    for key, wanted in filters.items():
        if key == "status":
            if container.state.status not in wanted:
                return False
        elif key == "name":
            if not any(w.removeprefix("/") in container.name for w in wanted):
                return False
        elif key == "id":
            if not any(container.id.startswith(w) for w in wanted):
                return False
        elif key == "label":
            labels = container.config.labels or {}
            for condition in wanted:
                label, sep, value = condition.partition("=")
                if label not in labels or (sep and labels[label] != value):
                    return False
        elif key == "exited":
            if container.state.status != "exited" or str(container.state.exit_code) not in wanted:
                return False
        elif key == "ancestor":
            if not any(
                w in (container.image_name, container.image_id)
                or container.image_id.removeprefix("sha256:").startswith(w)
                for w in wanted
            ):
                return False
        else:
            raise InvalidParameter(f"invalid filter '{key}'")
    return True


async def list_containers(request: Request) -> Response:
    manager = _manager(request)
    query = request.query_params
    filters = parse_filters(query.get("filters"))
    show_all = parse_bool(query.get("all"))
    limit = _int_param(request, "limit") or -1
    found = [
        c
        for c in manager.containers.values()
        if (
            show_all
            or limit > 0
            or c.state.status in ("running", "paused", "restarting")
            or "status" in filters
        )
        and _matches(c, filters)
    ]
    found.sort(key=lambda c: c.created, reverse=True)
    if limit > 0:
        found = found[:limit]
    return JSONResponse([model.summary(c) for c in found])


# --------------------------------------------------------------------------------------------
# lifecycle
# --------------------------------------------------------------------------------------------


def _no_content() -> Response:
    return Response(status_code=204)


async def start(request: Request) -> Response:
    await _manager(request).start(request.path_params["id"])
    return _no_content()


async def stop(request: Request) -> Response:
    await _manager(request).stop(
        request.path_params["id"], _int_param(request, "t"), request.query_params.get("signal")
    )
    return _no_content()


async def restart(request: Request) -> Response:
    await _manager(request).restart(request.path_params["id"], _int_param(request, "t"))
    return _no_content()


async def kill(request: Request) -> Response:
    await _manager(request).kill(request.path_params["id"], request.query_params.get("signal"))
    return _no_content()


async def update(request: Request) -> Response:
    body = await _body(request, HostConfig)
    warnings = await _manager(request).update(request.path_params["id"], body)
    return JSONResponse({"Warnings": warnings or None})


async def pause(request: Request) -> Response:
    await _manager(request).pause(request.path_params["id"], True)
    return _no_content()


async def unpause(request: Request) -> Response:
    await _manager(request).pause(request.path_params["id"], False)
    return _no_content()


async def remove(request: Request) -> Response:
    query = request.query_params
    manager = _manager(request)
    container = manager.get(request.path_params["id"])
    await manager.remove(container.id, parse_bool(query.get("force")), parse_bool(query.get("v")))
    _execs(request).forget_container(container.id)
    return _no_content()


async def rename(request: Request) -> Response:
    new_name = request.query_params.get("name") or ""
    if not new_name:
        raise InvalidParameter("Neither old nor new names may be empty")
    await _manager(request).rename(request.path_params["id"], new_name)
    return _no_content()


async def wait(request: Request) -> Response:
    """Headers go out at once (the CLI starts the container only after it has them)."""
    future = _manager(request).wait_future(
        request.path_params["id"], request.query_params.get("condition", "")
    )

    async def body() -> AsyncIterator[bytes]:
        result = await future
        yield json.dumps(result).encode() + b"\n"

    return StreamingResponse(body(), media_type="application/json")


async def resize(request: Request) -> Response:
    height, width = _int_param(request, "h") or 0, _int_param(request, "w") or 0
    await run_in_threadpool(_manager(request).resize, request.path_params["id"], height, width)
    return Response(status_code=200)


async def prune(request: Request) -> Response:
    manager = _manager(request)
    deleted, reclaimed = [], 0
    for container in list(manager.containers.values()):
        if container.state.status in ("exited", "created", "dead"):
            await manager.remove(container.id, force=False, remove_volumes=False)
            _execs(request).forget_container(container.id)
            deleted.append(container.id)
    return JSONResponse({"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed})


# --------------------------------------------------------------------------------------------
# output: logs and attach
# --------------------------------------------------------------------------------------------


def _encode(container: Container, entry: container_logs.LogEntry, timestamps: bool) -> bytes:
    data = entry.data
    if timestamps:
        data = rfc3339_nano(entry.time_ns).encode() + b" " + data
    if container.tty:
        return data
    return frame(1 if entry.stream == "stdout" else 2, data)


def _ended_since(
    manager: ContainerManager, container: Container, generation: int
) -> Callable[[], bool]:
    def finished() -> bool:
        current = manager.containers.get(container.id)
        if current is None:
            return True
        return current.exit_generation > generation and current.state.status not in (
            "running",
            "paused",
        )

    return finished


async def logs(request: Request) -> Response:
    manager = _manager(request)
    container = manager.get(request.path_params["id"])
    query = request.query_params
    want = {"stdout": parse_bool(query.get("stdout")), "stderr": parse_bool(query.get("stderr"))}
    if not any(want.values()):
        raise InvalidParameter("Bad parameters: you must choose at least one stream")
    follow = parse_bool(query.get("follow"))
    timestamps = parse_bool(query.get("timestamps"))
    since, until = parse_timestamp(query.get("since")), parse_timestamp(query.get("until"))
    tail_text = query.get("tail", "all")
    tail = (
        None
        if tail_text in ("all", "", None)
        else int(tail_text)
        if tail_text.lstrip("-").isdigit()
        else None
    )
    log_directory = container_logs.LogDirectory(manager.directory(container))
    position = log_directory.end_position
    running = container.state.status in ("running", "paused", "restarting")
    generation = container.exit_generation

    def wanted(entry: container_logs.LogEntry) -> bool:
        return (
            want[entry.stream]
            and (since is None or entry.time_ns >= since)
            and (until is None or entry.time_ns <= until)
        )

    def history() -> list[bytes]:
        entries = [e for e in log_directory.read_entries() if wanted(e)]
        if tail is not None and tail >= 0:
            entries = entries[-tail:] if tail else []
        return [_encode(container, e, timestamps) for e in entries]

    async def body() -> AsyncIterator[bytes]:
        try:
            for chunk in await run_in_threadpool(history):
                yield chunk
            if follow and running and until is None:
                async for entry in container_logs.follow(
                    log_directory,
                    position,
                    _ended_since(manager, container, generation),
                    wake=manager.live(container).exited,
                ):
                    if wanted(entry):
                        yield _encode(container, entry, timestamps)
        finally:
            log_directory.close()

    media = (
        "application/vnd.docker.raw-stream"
        if container.tty
        else "application/vnd.docker.multiplexed-stream"
    )
    return StreamingResponse(body(), media_type=media)


class _Streamed(Response):
    """A response whose body is produced by ``run(send_chunk)``, head first (101 or 200)."""

    def __init__(
        self,
        status: int,
        media_type: str | None,
        run: Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[None]],
    ) -> None:
        super().__init__(status_code=status, media_type=media_type)
        self._run = run

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})

        async def send_chunk(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        try:
            await self._run(send_chunk)
        finally:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _forward_stdin(
    manager: ContainerManager, container: Container, hijack: HijackedConnection
) -> None:
    """Client stdin to the container's supervisor. ``docker run -i`` sends stdin (and may end
    it) before it starts the container, so input is held until the container runs."""
    held: list[bytes] = []
    ended = False
    while container.state.status not in ("running", "paused"):
        if container.id not in manager.containers or container.state.status in ("exited", "dead"):
            return
        if ended:
            await asyncio.sleep(0.01)
            continue
        try:
            data = await asyncio.wait_for(hijack.read_stdin(), 0.02)
        except TimeoutError:
            continue
        if data:
            held.append(data)
        else:
            ended = True
    connection = await run_in_threadpool(manager.stdin_socket, container)
    if connection is None:
        return
    # Sent from the event loop: a worker thread blocked on a supervisor that reads slowly
    # would be taken from every other request for as long.
    connection.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        if held:
            await loop.sock_sendall(connection, b"".join(held))
        while not ended:
            data = await hijack.read_stdin()
            if not data:
                break
            await loop.sock_sendall(connection, data)
    except OSError:
        pass  # the container's stdin is gone
    finally:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_WR)
        connection.close()


async def attach(request: Request) -> Response:
    manager = _manager(request)
    # A stopped container may be attached to: `docker start -a` attaches before it starts.
    container = manager.get(request.path_params["id"])
    query = request.query_params
    want = {"stdout": parse_bool(query.get("stdout")), "stderr": parse_bool(query.get("stderr"))}
    replay = parse_bool(query.get("logs"))
    stream = parse_bool(query.get("stream"))
    hijack: HijackedConnection | None = request.scope.get("extensions", {}).get(HIJACK_EXTENSION)
    log_directory = container_logs.LogDirectory(manager.directory(container))
    position = log_directory.end_position
    generation = container.exit_generation

    async def run(send_chunk: Callable[[bytes], Awaitable[None]]) -> None:
        stdin_task = None
        if hijack is not None and parse_bool(query.get("stdin")) and container.config.open_stdin:
            stdin_task = asyncio.ensure_future(_forward_stdin(manager, container, hijack))
        try:
            if replay:
                for entry in await run_in_threadpool(lambda: list(log_directory.read_entries())):
                    if want[entry.stream]:
                        await send_chunk(_encode(container, entry, False))
            if stream:
                async for entry in container_logs.follow(
                    log_directory,
                    position,
                    _ended_since(manager, container, generation),
                    wake=manager.live(container).exited,
                ):
                    if hijack is not None and hijack.closed:
                        break
                    if want[entry.stream]:
                        await send_chunk(_encode(container, entry, False))
        finally:
            log_directory.close()
            if stdin_task is not None:
                if not stdin_task.done():
                    # Give stdin that arrived with the output's end a moment to be delivered.
                    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                        await asyncio.wait_for(asyncio.shield(stdin_task), 0.05)
                stdin_task.cancel()

    media = (
        "application/vnd.docker.raw-stream"
        if container.tty
        else "application/vnd.docker.multiplexed-stream"
    )
    return _Streamed(101 if hijack is not None else 200, media, run)


# --------------------------------------------------------------------------------------------
# top and stats
# --------------------------------------------------------------------------------------------


def _user_names(init_pid: int) -> dict[str, str]:
    """uid -> name from the container's own /etc/passwd, as ``ps`` inside it would show."""
    try:
        passwd = inroot.read_text(f"/proc/{init_pid}/root", "/etc/passwd") or ""
    except OSError:
        return {}
    return {f[2]: f[0] for f in (line.split(":") for line in passwd.splitlines()) if len(f) > 2}


def _top_row(process: ContainerProcess, names: dict[str, str]) -> list[str]:
    """One row of ``docker top``'s default ``ps -ef`` columns."""
    started = time.strftime("%H:%M", time.localtime(process.started))
    seconds = int(process.cpu_seconds)
    cpu = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    uid = str(process.uid)
    command = " ".join(process.args).strip()
    return [names.get(uid, uid), str(process.pid), str(process.ppid), "0", started, "?", cpu,
            command]  # fmt: skip


#: ``ps`` options ``top`` answers with: its default (docker's, too) and nothing else yet.
TOP_PS_ARGS = ("", "-ef")


async def top(request: Request) -> Response:
    manager = _manager(request)
    container = manager.get(request.path_params["id"])
    ps_args = request.query_params.get("ps_args", "").strip()
    if ps_args not in TOP_PS_ARGS:
        raise InvalidParameter(f"ps_args {ps_args!r} is not supported: top shows `ps -ef` columns")
    runtime = manager.runtime
    if container.state.status not in ("running", "paused") or runtime is None:
        raise Conflict(f"Container {container.id} is not running")

    def collect() -> list[list[str]]:
        try:
            processes = runtime.processes(container.id)
        except NotFound:  # it exited a moment ago
            raise Conflict(f"Container {container.id} is not running") from None
        names = _user_names(container.state.pid)
        return [_top_row(process, names) for process in processes]

    titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    return JSONResponse({"Titles": titles, "Processes": await run_in_threadpool(collect)})


def _stats_document(container: Container, sample: Any, previous: Any) -> dict[str, Any]:
    def cpu(s: Any) -> dict[str, Any]:
        if s is None:
            return {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0, "online_cpus": 0}
        return {
            "cpu_usage": {"total_usage": s.cpu_total_ns},
            "system_cpu_usage": s.system_cpu_ns,
            "online_cpus": s.online_cpus,
            "throttling_data": {},
        }

    return {
        "read": now_rfc3339(),
        "preread": ZERO_TIME,
        "id": container.id,
        "name": f"/{container.name}",
        "num_procs": 0,
        "pids_stats": {"current": sample.pids, "limit": sample.pids_limit},
        "cpu_stats": cpu(sample),
        "precpu_stats": cpu(previous),
        "memory_stats": {"usage": sample.memory_usage, "limit": sample.memory_limit, "stats": {}},
        "blkio_stats": {},
        "networks": {},
    }


async def stats(request: Request) -> Response:
    manager = _manager(request)
    container = manager.get(request.path_params["id"])
    runtime = manager.runtime
    if runtime is None:
        raise Conflict("no runtime")
    streaming = parse_bool(request.query_params.get("stream"), default=True)
    if container.state.status not in ("running", "paused"):
        if not streaming:
            return JSONResponse(
                {"read": ZERO_TIME, "id": container.id, "name": f"/{container.name}"}
            )
        raise Conflict(f"Container {container.id} is not running")
    first = await run_in_threadpool(runtime.stats, container.id)
    if not streaming:
        await asyncio.sleep(0.1)  # a second sample gives the CLI a CPU percentage
        second = await run_in_threadpool(runtime.stats, container.id)
        return JSONResponse(_stats_document(container, second, first))

    async def body() -> AsyncIterator[bytes]:
        previous = first
        while container.state.status in ("running", "paused"):
            await asyncio.sleep(1.0)
            try:
                sample = await run_in_threadpool(runtime.stats, container.id)
            except Exception:
                return
            yield json.dumps(_stats_document(container, sample, previous)).encode() + b"\n"
            previous = sample

    return StreamingResponse(body(), media_type="application/json")


# --------------------------------------------------------------------------------------------
# exec
# --------------------------------------------------------------------------------------------


async def exec_create(request: Request) -> Response:
    manager = _manager(request)
    container = manager.get(request.path_params["id"])
    config = await _body(request, ExecConfig)
    if not config.cmd:
        raise InvalidParameter("No exec command specified")
    base = container.spec.process
    env = options.merge_env(base.env, config.env or [])
    uid, gid, groups = base.uid, base.gid, base.additional_gids
    check_can_exec(container)
    if config.user:
        # The container's files as they are now (it may have added the user itself).
        root = f"/proc/{container.state.pid}/root"
        passwd = await run_in_threadpool(inroot.read_text, root, "/etc/passwd")
        group = await run_in_threadpool(inroot.read_text, root, "/etc/group")
        user = options.parse_user(config.user, passwd, group)
        uid, gid, groups = user.uid, user.gid, user.additional_gids
        # The exec user's home, unless the container's config or the exec set HOME.
        configured = [*(container.config.env or []), *(config.env or [])]
        if not any(entry.startswith("HOME=") for entry in configured):
            env = options.merge_env(env, [f"HOME={user.home}"])
    process = ProcessSpec(
        args=tuple(config.cmd),
        env=tuple(env),
        cwd=config.working_dir or base.cwd,
        uid=uid,
        gid=gid,
        additional_gids=groups,
        terminal=config.tty,
        capabilities=options.ALL_CAPABILITIES if config.privileged else base.capabilities,
        no_new_privileges=base.no_new_privileges,
        console_size=console_size(config.console_size, "ConsoleSize"),
        seccomp=base.seccomp,  # the container's policy, --privileged or not (as docker)
        rlimits=base.rlimits,  # as dockerd: an exec gets the container's process limits
        oom_score_adj=base.oom_score_adj,
    )
    instance = _execs(request).create(container, config, process)
    events = service_of(request).events
    if events is not None:
        action = f"exec_create: {' '.join(config.cmd)}"
        events.emit(Event("container", action, container.id, {"name": container.name}))
    return JSONResponse({"Id": instance.id}, status_code=201)


async def exec_start(request: Request) -> Response:
    manager = _manager(request)
    instance = _execs(request).get(request.path_params["id"])
    container = manager.get(instance.container_id)
    start = await _body(request, ExecStartConfig)
    hijack: HijackedConnection | None = request.scope.get("extensions", {}).get(HIJACK_EXTENSION)
    assert manager.runtime is not None
    if start.detach:
        await start_exec(instance, container, manager.runtime, None)
        return Response(status_code=200)
    read_stdin = hijack.read_stdin if hijack is not None and instance.attach_stdin else None
    output = await start_exec(instance, container, manager.runtime, read_stdin)
    wanted = {1: instance.attach_stdout, 2: instance.attach_stderr}

    async def run(send_chunk: Callable[[bytes], Awaitable[None]]) -> None:
        async for stream, data in output:
            if wanted.get(stream, True):
                await send_chunk(data if instance.process.terminal else frame(stream, data))

    media = (
        "application/vnd.docker.raw-stream"
        if instance.process.terminal
        else "application/vnd.docker.multiplexed-stream"
    )
    return _Streamed(101 if hijack is not None else 200, media, run)


async def exec_inspect(request: Request) -> Response:
    return JSONResponse(_execs(request).get(request.path_params["id"]).to_engine_api())


async def exec_resize(request: Request) -> Response:
    instance = _execs(request).get(request.path_params["id"])
    height, width = _int_param(request, "h") or 0, _int_param(request, "w") or 0
    if instance.terminal_fd is None:
        raise Conflict("the exec process has no terminal (yet)")
    set_window_size(instance.terminal_fd, height, width)
    return Response(status_code=200)


# --------------------------------------------------------------------------------------------
# volumes
# --------------------------------------------------------------------------------------------


def _volumes(request: Request) -> VolumeStore:
    store = service_of(request).volumes
    assert store is not None
    return store


async def volume_create(request: Request) -> Response:
    body = await _body(request, VolumeCreateRequest)
    if body.driver not in ("", "local"):
        raise InvalidParameter(f"volume driver {body.driver!r} is not available; only 'local'")
    if body.driver_opts:
        options_given = ", ".join(sorted(body.driver_opts))
        raise InvalidParameter(
            f"DriverOpts: the local volume driver takes no options ({options_given})"
        )
    name = body.name or os.urandom(32).hex()
    volume = await run_in_threadpool(_volumes(request).create, name, body.labels)
    return JSONResponse(volume.to_engine_api(), status_code=201)


async def volume_list(request: Request) -> Response:
    volumes = await run_in_threadpool(_volumes(request).volumes)
    filters = parse_filters(request.query_params.get("filters"))
    manager = _manager(request)
    if "dangling" in filters:
        wanted = parse_bool(filters["dangling"][0])
        volumes = [v for v in volumes if (not manager.volume_users(v.name)) == wanted]
    if "name" in filters:
        volumes = [v for v in volumes if any(n in v.name for n in filters["name"])]
    return JSONResponse({"Volumes": [v.to_engine_api() for v in volumes], "Warnings": None})


async def volume_inspect(request: Request) -> Response:
    return JSONResponse(_volumes(request).get(request.path_params["name"]).to_engine_api())


async def volume_remove(request: Request) -> Response:
    await run_in_threadpool(
        _volumes(request).remove,
        request.path_params["name"],
        parse_bool(request.query_params.get("force")),
    )
    return _no_content()


async def volume_prune(request: Request) -> Response:
    filters = parse_filters(request.query_params.get("filters"))
    everything = any(parse_bool(v) for v in filters.get("all", []))
    removed, reclaimed = await run_in_threadpool(_volumes(request).prune, everything)
    return JSONResponse({"VolumesDeleted": removed or None, "SpaceReclaimed": reclaimed})


def routes() -> list[Route]:
    return [
        Route("/containers/create", create, methods=["POST"]),
        Route("/containers/json", list_containers),
        Route("/containers/prune", prune, methods=["POST"]),
        Route("/containers/{id}/json", inspect),
        Route("/containers/{id}/start", start, methods=["POST"]),
        Route("/containers/{id}/stop", stop, methods=["POST"]),
        Route("/containers/{id}/restart", restart, methods=["POST"]),
        Route("/containers/{id}/kill", kill, methods=["POST"]),
        Route("/containers/{id}/update", update, methods=["POST"]),
        Route("/containers/{id}/pause", pause, methods=["POST"]),
        Route("/containers/{id}/unpause", unpause, methods=["POST"]),
        Route("/containers/{id}/wait", wait, methods=["POST"]),
        Route("/containers/{id}/rename", rename, methods=["POST"]),
        Route("/containers/{id}/resize", resize, methods=["POST"]),
        Route("/containers/{id}/attach", attach, methods=["POST"]),
        Route("/containers/{id}/logs", logs),
        Route("/containers/{id}/top", top),
        Route("/containers/{id}/stats", stats),
        Route("/containers/{id}/exec", exec_create, methods=["POST"]),
        Route("/containers/{id}", remove, methods=["DELETE"]),
        Route("/exec/{id}/start", exec_start, methods=["POST"]),
        Route("/exec/{id}/json", exec_inspect),
        Route("/exec/{id}/resize", exec_resize, methods=["POST"]),
        Route("/volumes/create", volume_create, methods=["POST"]),
        Route("/volumes", volume_list),
        Route("/volumes/prune", volume_prune, methods=["POST"]),
        Route("/volumes/{name}", volume_inspect),
        Route("/volumes/{name}", volume_remove, methods=["DELETE"]),
    ]
