"""Container, exec and volume routes of the Engine API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dockyard.core.decoding import parse_json
from dockyard.core.errors import Conflict, InvalidParameter, NotFound
from dockyard.core.interfaces import (
    BlockIO,
    BlockIOEntry,
    ContainerProcess,
    ContainerStats,
    CpuThrottling,
    CpuTimes,
    LogEntry,
    MemoryDetail,
    Runtime,
)
from dockyard.core.platforms import PlatformSpec, parse_platform_specifier, platform_runs
from dockyard.core.timestamps import ZERO_TIME, now_rfc3339, rfc3339_nano
from dockyard.daemon.api import versions
from dockyard.daemon.api.diskusage import size_rw, with_sizes
from dockyard.daemon.api.filters import (
    bool_filter,
    check_filters,
    created_before_all,
    labels_match,
    port_keys,
    regex_matches,
)
from dockyard.daemon.api.hijack import HIJACK_EXTENSION, HijackedConnection, frame
from dockyard.daemon.api.middleware import api_older_than
from dockyard.daemon.api.params import parse_bool, parse_filters, parse_timestamp
from dockyard.daemon.api.system import service_of
from dockyard.daemon.containers import model, options, start_host_config
from dockyard.daemon.containers.config import (
    CreateRequest,
    ExecConfig,
    ExecStartConfig,
    HostConfig,
)
from dockyard.daemon.containers.detach import ATTACH_REFUSAL, DetachScanner, detach_keys
from dockyard.daemon.containers.execs import ExecRegistry, exec_process
from dockyard.daemon.containers.health import FILTER_VALUES as HEALTH_FILTER_VALUES
from dockyard.daemon.containers.health import NO_HEALTHCHECK
from dockyard.daemon.containers.manager import ContainerManager
from dockyard.daemon.containers.model import Container
from dockyard.daemon.containers.supervisor import set_window_size
from dockyard.daemon.engine_api import ENGINE_API
from dockyard.daemon.volumes import Volume, VolumeCreateRequest, VolumeStore
from dockyard.linux import inroot, netns

T = TypeVar("T")


def _manager(request: Request) -> ContainerManager:
    manager = service_of(request).containers
    assert manager is not None
    return manager


def _execs(request: Request) -> ExecRegistry:
    registry = service_of(request).execs
    assert registry is not None
    return registry


async def _body(request: Request, record: type[T], required: bool = False) -> T:
    """The request's JSON body as ``record``: a 400 naming the field for anything amiss (an
    empty body too, where the route ``required`` one)."""
    return ENGINE_API.decode(parse_json(await request.body(), required), record)


def _window_size(request: Request) -> tuple[int, int]:
    """``h`` and ``w`` of a resize: both required, as dockerd has them."""
    height, width = _int_param(request, "h"), _int_param(request, "w")
    for name, value in (("h", height), ("w", width)):
        if value is None:
            raise InvalidParameter(f"{name}: the terminal's {name} is required (a number)")
    assert height is not None and width is not None
    return height, width


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


def _check_image_platform(manager: ContainerManager, name: str, text: str) -> None:
    """``platform`` (API 1.41): the image must be of that platform, else a 404 in dockerd's
    words (the CLI then pulls the platform's image)."""
    try:
        wanted = parse_platform_specifier(text)
    except ValueError as exc:
        raise InvalidParameter(str(exc)) from None
    config = manager.images.config(manager.images.resolve(name))
    image = PlatformSpec(
        str(config.get("os") or ""),
        str(config.get("architecture") or ""),
        str(config.get("variant") or ""),
    )
    if not platform_runs(wanted, image):
        raise NotFound(
            f"image with reference {name} was found but does not match the specified "
            f"platform: wanted {wanted}, actual: {image}"
        )


def _older_than(request: Request) -> versions.OlderThan:
    return lambda version: api_older_than(request, version)


async def create(request: Request) -> Response:
    body = versions.create_request(await _body(request, CreateRequest), _older_than(request))
    manager = _manager(request)
    platform = request.query_params.get("platform", "")
    if platform and body.image and not api_older_than(request, "1.41"):
        await run_in_threadpool(_check_image_platform, manager, body.image, platform)
    container, warnings = await run_in_threadpool(
        manager.create, body, request.query_params.get("name")
    )
    return JSONResponse({"Id": container.id, "Warnings": warnings}, status_code=201)


async def inspect(request: Request) -> Response:
    manager = _manager(request)
    container = manager.get(request.path_params["id"])
    exec_ids = _execs(request).unfinished_of_container(container.id)
    if container.state.status not in ("running", "paused"):
        exec_ids = []  # dockerd drops a container's execs when it stops
    shown = model.inspect(container, exec_ids)
    if manager.networking is not None:
        # Legacy links with the names of now (HostConfig keeps them as they were given).
        shown["HostConfig"]["Links"] = manager.networking.shown_links(container)
    return JSONResponse(versions.inspect_answer(shown, _older_than(request)))


def _summary(manager: ContainerManager, container: Container) -> dict[str, Any]:
    """``model.summary`` with the names links give the container, as dockerd lists them."""
    summary = model.summary(container)
    if manager.networking is not None:
        summary["Names"] = sorted([*summary["Names"], *manager.networking.link_names(container)])
    return summary


def _matches(container: Container, filters: dict[str, list[str]]) -> bool:
    for key, wanted in filters.items():
        if key == "status":
            if container.state.status not in wanted:
                return False
        elif key == "name":  # regular expressions, as dockerd's
            if not any(
                regex_matches(w, f"/{container.name}") or regex_matches(w, container.name)
                for w in wanted
            ):
                return False
        elif key == "id":
            if not any(regex_matches(w, container.id) for w in wanted):
                return False
        elif key == "label":
            if not labels_match(container.config.labels or {}, {"label": wanted}):
                return False
        elif key == "exited":
            if container.state.status != "exited" or str(container.state.exit_code) not in wanted:
                return False
        elif key == "health":
            health = container.state.health
            if (health.status if health is not None else NO_HEALTHCHECK) not in wanted:
                return False
        elif key == "ancestor":
            if not any(
                w in (container.image_name, container.image_id)
                or container.image_id.removeprefix("sha256:").startswith(w)
                for w in wanted
            ):
                return False
        elif key in _SUMMARY_FILTERS:
            if not _SUMMARY_FILTERS[key](model.summary(container), container, wanted):
                return False
        else:
            raise InvalidParameter(f"Invalid filter '{key}'")
    return True


def _mounts_volume(summary: dict[str, Any], container: Container, wanted: list[str]) -> bool:
    """A volume's name, a bind's source or either's destination, as dockerd matches them."""
    mounted = {m["Name"] or m["Source"] for m in summary["Mounts"]}
    mounted |= {m["Destination"] for m in summary["Mounts"]}
    return any(w in mounted for w in wanted)


def _on_network(summary: dict[str, Any], container: Container, wanted: list[str]) -> bool:
    """A network's name, or a prefix of its id."""
    networks = summary["NetworkSettings"]["Networks"]
    return any(
        w in networks or any(n["NetworkID"].startswith(w) for n in networks.values())
        for w in wanted
    )


def _publishes(summary: dict[str, Any], container: Container, wanted: list[str]) -> bool:
    """A host port of those ``docker ps`` lists (``0.0.0.0:8080->80/tcp`` is 8080), as
    dockerd matches them: so only while the container runs."""
    listed = {f"{p['PublicPort']}/{p['Type']}" for p in summary["Ports"] if p.get("PublicPort")}
    return bool(port_keys(wanted) & listed)


def _exposes(summary: dict[str, Any], container: Container, wanted: list[str]) -> bool:
    """A container port of those ``docker ps`` lists, as dockerd matches them."""
    listed = {f"{p['PrivatePort']}/{p['Type']}" for p in summary["Ports"]}
    return bool(port_keys(wanted) & listed)


def _is_task(summary: dict[str, Any], container: Container, wanted: list[str]) -> bool:
    return bool_filter({"is-task": wanted}, "is-task") is False  # no swarm: never a task


def _isolation(summary: dict[str, Any], container: Container, wanted: list[str]) -> bool:
    return True  # dockerd weighs isolation on Windows only: on Linux every container matches


#: Filters read from what ``docker ps`` shows of a container (and its config).
_SUMMARY_FILTERS: dict[str, Callable[[dict[str, Any], Container, list[str]], bool]] = {
    "volume": _mounts_volume,
    "network": _on_network,
    "publish": _publishes,
    "expose": _exposes,
    "is-task": _is_task,
    "isolation": _isolation,
}


_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")


def _check_ps_values(filters: dict[str, list[str]]) -> None:
    """Refuse the values dockerd refuses before it looks at any container."""
    for value in filters.get("status", []):
        if value not in _STATES:
            raise InvalidParameter(f"Invalid filter 'status={value}'")
    for value in filters.get("exited", []):
        if not value.lstrip("-").isdigit():
            raise InvalidParameter(f"invalid exited filter {value!r}: not an exit code")
    for value in filters.get("health", []):
        if value not in HEALTH_FILTER_VALUES:
            raise InvalidParameter(f"Unrecognised filter value for health: {value}")
    bool_filter(filters, "is-task")
    port_keys(filters.get("publish", []) + filters.get("expose", []))


def _created_order(
    manager: ContainerManager, filters: dict[str, list[str]]
) -> Callable[[Container], bool]:
    """``before`` and ``since``: created before (after) the named containers."""
    before = [manager.get(name).created for name in filters.pop("before", [])]
    since = [manager.get(name).created for name in filters.pop("since", [])]
    return lambda c: all(c.created < b for b in before) and all(c.created > s for s in since)


async def list_containers(request: Request) -> Response:
    manager = _manager(request)
    query = request.query_params
    filters = parse_filters(query.get("filters"))
    show_all = parse_bool(query.get("all"))
    limit = _int_param(request, "limit") or -1
    _check_ps_values(filters)
    in_order = _created_order(manager, filters)
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
        and in_order(c)
    ]
    found.sort(key=lambda c: c.created, reverse=True)
    if limit > 0:
        found = found[:limit]
    if parse_bool(query.get("size")):
        return JSONResponse(
            await run_in_threadpool(lambda: [with_sizes(manager, c) for c in found])
        )
    return JSONResponse([_summary(manager, c) for c in found])


# --------------------------------------------------------------------------------------------
# lifecycle
# --------------------------------------------------------------------------------------------


def _no_content() -> Response:
    return Response(status_code=204)


def _has_start_body(request: Request) -> bool:
    """dockerd's test for a body on start: over 7 bytes (the shortest JSON object it would
    take), or of a length not declared (chunked)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return "chunked" in request.headers.get("transfer-encoding", "").lower()
    return declared.strip().isdigit() and int(declared) > 7


async def start(request: Request) -> Response:
    """Before API 1.24 a ``HostConfig`` may come in the body (dockerd's old clients); from
    1.24 a body is refused, as dockerd refuses it."""
    host_config = None
    if _has_start_body(request):
        if not api_older_than(request, "1.24"):
            raise InvalidParameter(start_host_config.DEPRECATED_BODY)
        raw = parse_json(await request.body())
        if raw is not None:
            host_config = ENGINE_API.decode(raw, HostConfig)
    await _manager(request).start(request.path_params["id"], host_config)
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
    manager = _manager(request)
    container = manager.get(request.path_params["id"])
    # Before API 1.20 dockerd answers a kill of a container that is not running with 204.
    if api_older_than(request, "1.20") and container.state.status not in ("running", "paused"):
        options.parse_signal(request.query_params.get("signal"))  # a bad one is still a 400
        return _no_content()
    await manager.kill(request.path_params["id"], request.query_params.get("signal"))
    return _no_content()


async def update(request: Request) -> Response:
    body = versions.update_request(await _body(request, HostConfig), _older_than(request))
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
    if parse_bool(query.get("link")):
        await manager.remove_link(request.path_params["id"])
        return _no_content()
    container = manager.get(request.path_params["id"])
    await manager.remove(container.id, parse_bool(query.get("force")), parse_bool(query.get("v")))
    _execs(request).forget_container(container.id)
    return _no_content()


async def remove_by_link_name(request: Request) -> Response:
    """``DELETE /containers/PARENT/ALIAS``: a link's name names its child, as in dockerd;
    with ``link=1`` only the link goes (``docker rm --link``)."""
    query = request.query_params
    manager = _manager(request)
    name = f"{request.path_params['parent']}/{request.path_params['alias']}"
    if parse_bool(query.get("link")):
        await manager.remove_link(name)
        return _no_content()
    container = manager.linked_child(name)
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
    """Headers go out at once (the CLI starts the container only after it has them). Before
    API 1.30, as dockerd: no condition (not-running), and the answer comes whole at the end."""
    legacy = api_older_than(request, "1.30")
    condition = "" if legacy else request.query_params.get("condition", "")
    future = _manager(request).wait_future(request.path_params["id"], condition)
    if legacy:
        return JSONResponse(await future)

    async def body() -> AsyncIterator[bytes]:
        result = await future
        yield json.dumps(result).encode() + b"\n"

    return StreamingResponse(body(), media_type="application/json")


async def resize(request: Request) -> Response:
    height, width = _window_size(request)
    await run_in_threadpool(_manager(request).resize, request.path_params["id"], height, width)
    return Response(status_code=200)


def _created_seconds(container: Container) -> float:
    stamp = parse_timestamp(container.created)
    return stamp / 1e9 if stamp is not None else 0.0


async def prune(request: Request) -> Response:
    manager = _manager(request)
    filters = parse_filters(request.query_params.get("filters"))
    check_filters(filters, ("until", "label", "label!"))
    deleted, reclaimed = [], 0
    for container in list(manager.containers.values()):
        if (
            container.state.status in ("exited", "created", "dead")
            and labels_match(container.config.labels or {}, filters)
            and created_before_all(_created_seconds(container), filters)
        ):
            reclaimed += await run_in_threadpool(size_rw, manager, container)
            await manager.remove(container.id, force=False, remove_volumes=False)
            _execs(request).forget_container(container.id)
            deleted.append(container.id)
    return JSONResponse({"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed})


# --------------------------------------------------------------------------------------------
# output: logs and attach
# --------------------------------------------------------------------------------------------


def _encode(container: Container, entry: LogEntry, timestamps: bool) -> bytes:
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
    output = manager.open_output(container, stored=True)
    running = container.state.status in ("running", "paused", "restarting")
    generation = container.exit_generation

    def wanted(entry: LogEntry) -> bool:
        return (
            want[entry.stream]
            and (since is None or entry.time_ns >= since)
            and (until is None or entry.time_ns <= until)
        )

    def history() -> list[bytes]:
        entries = [e for e in output.entries() if wanted(e)]
        if tail is not None and tail >= 0:
            entries = entries[-tail:] if tail else []
        return [_encode(container, e, timestamps) for e in entries]

    async def body() -> AsyncIterator[bytes]:
        try:
            for chunk in await run_in_threadpool(history):
                yield chunk
            if follow and running and until is None:
                async for entry in output.follow(
                    _ended_since(manager, container, generation),
                    wake=manager.live(container).exited,
                ):
                    if wanted(entry):
                        yield _encode(container, entry, timestamps)
        finally:
            output.close()

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
    manager: ContainerManager, container: Container, read_stdin: Callable[[], Awaitable[bytes]]
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
            data = await asyncio.wait_for(read_stdin(), 0.02)
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
            data = await read_stdin()
            if not data:
                break
            await loop.sock_sendall(connection, data)
    except OSError:
        pass  # the container's stdin is gone
    finally:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_WR)
        connection.close()


class _DetachWatch:
    """The client's input, up to the detach sequence (``keys``; none: every byte is input).

    At the sequence the input ends (what came before it is delivered) and :attr:`detached`
    is set: the stream then closes and the process runs on.
    """

    def __init__(self, hijack: HijackedConnection, keys: bytes) -> None:
        self.hijack = hijack
        self.scanner = DetachScanner(keys) if keys else None
        self.detached = asyncio.Event()

    async def read_stdin(self) -> bytes:
        while not self.detached.is_set():
            data = await self.hijack.read_stdin()
            if self.scanner is None or not data:
                return data
            data = self.scanner.feed(data)
            if self.scanner.detached:
                self.detached.set()
            if data:
                return data
        return b""


async def _until_detached(work: Awaitable[None], detach: _DetachWatch | None) -> bool:
    """Run ``work`` (sending a stream's output) until it ends or the client detaches;
    whether it detached."""
    task = asyncio.ensure_future(work)
    if detach is None:
        await task
        return False
    detached = asyncio.ensure_future(detach.detached.wait())
    try:
        await asyncio.wait((task, detached), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, detached):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    return detach.detached.is_set()


async def attach(request: Request) -> Response:
    manager = _manager(request)
    # A stopped container may be attached to: `docker start -a` attaches before it starts.
    container = manager.get(request.path_params["id"])
    query = request.query_params
    # Checked first, whatever the container (dockerd refuses a bad one before attaching).
    keys = detach_keys(query.get("detachKeys", ""), ATTACH_REFUSAL)
    want = {"stdout": parse_bool(query.get("stdout")), "stderr": parse_bool(query.get("stderr"))}
    replay = parse_bool(query.get("logs"))
    stream = parse_bool(query.get("stream"))
    hijack: HijackedConnection | None = request.scope.get("extensions", {}).get(HIJACK_EXTENSION)
    output = manager.open_output(container)
    # As dockerd: a driver that keeps no logs (none) replays nothing, and is no error here.
    replay = replay and manager.keeps_logs(container)
    generation = container.exit_generation

    stdin = hijack is not None and parse_bool(query.get("stdin")) and container.config.open_stdin
    # The sequence is watched for on a TTY's input only, as dockerd does.
    detach = _DetachWatch(hijack, keys if container.tty else b"") if stdin and hijack else None
    manager.event("attach", container)

    async def send_output(send_chunk: Callable[[bytes], Awaitable[None]]) -> None:
        if replay:
            for entry in await run_in_threadpool(lambda: list(output.entries())):
                if want[entry.stream]:
                    await send_chunk(_encode(container, entry, False))
        if stream:
            async for entry in output.follow(
                _ended_since(manager, container, generation),
                wake=manager.live(container).exited,
            ):
                if hijack is not None and hijack.closed:
                    break
                if want[entry.stream]:
                    await send_chunk(_encode(container, entry, False))

    async def run(send_chunk: Callable[[bytes], Awaitable[None]]) -> None:
        stdin_task = None
        if detach is not None:
            stdin_task = asyncio.ensure_future(
                _forward_stdin(manager, container, detach.read_stdin)
            )
        try:
            if await _until_detached(send_output(send_chunk), detach):
                manager.event("detach", container)
        finally:
            output.close()
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


#: ``ps`` options ``top`` answers with its own ``ps -ef`` columns (docker's default); any other
#: options are given to the host's ``ps``, as dockerd does.
TOP_PS_ARGS = ("", "-ef")
#: Go's ``\s``: ASCII white space only.
_GO_SPACE = "[\t\n\f\r ]"
#: A format that would rename a column to PID (``user=PID``) and so hide which one has the
#: process ids; dockerd refuses it.
_PID_RENAMED = re.compile(f"{_GO_SPACE}+([^\t\n\f\r ]*)={_GO_SPACE}*(PID[^\t\n\f\r ]*)")


def _fields(line: str) -> list[str]:
    return [field for field in re.split(f"{_GO_SPACE}+", line) if field]


def _host_ps(ps_args: str, pids: list[int]) -> str:
    """The host's ``ps`` with the client's options (split on single spaces, as dockerd
    does), asked for the container's processes only where the options allow (``-q``)."""
    args = ["ps", *ps_args.split(" ")]
    # Without a terminal's width: ps would cut its lines to COLUMNS when the daemon has it.
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    for command in ([*args, "-q" + ",".join(map(str, pids))], args):
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if result.returncode == 0:
            return result.stdout
    reason = result.stderr.partition("\n")[0] or f"exit status {result.returncode}"
    # dockerd answers 500; the options are the client's, so 400 here, with its words.
    raise InvalidParameter(f"ps: {reason}")


def _ps_table(output: str, pids: set[int]) -> tuple[list[str], list[list[str]]]:
    """The titles and the container's rows of ``ps`` output, by the PID column; the last
    column takes the rest of each line (a command's arguments); thread lines (``-`` for a
    pid) go with the process above them."""
    lines = output.split("\n")
    titles = _fields(lines[0])
    if "PID" not in titles:
        raise InvalidParameter("Couldn't find PID field in ps output")
    pid_column, last = titles.index("PID"), len(titles) - 1
    rows: list[list[str]] = []
    in_container = False
    for line in lines[1:]:
        fields = _fields(line)
        if not fields:
            continue
        if fields[pid_column] == "-":
            if in_container:
                rows.append([*fields[:last], " ".join(fields[last:])])
            continue
        in_container = fields[pid_column].isdigit() and int(fields[pid_column]) in pids
        if in_container:
            rows.append([*fields[:last], " ".join(fields[last:])])
    return titles, rows


async def top(request: Request) -> Response:
    manager = _manager(request)
    container = manager.get(request.path_params["id"])
    ps_args = request.query_params.get("ps_args", "")
    for key, value in _PID_RENAMED.findall(ps_args):
        if key != "pid":
            raise InvalidParameter(f'specifying "{key}={value}" is not allowed')
    runtime = manager.runtime
    if container.state.status not in ("running", "paused") or runtime is None:
        raise Conflict(f"Container {container.id} is not running")

    def processes() -> list[ContainerProcess]:
        try:
            return runtime.processes(container.id)
        except NotFound:  # it exited a moment ago
            raise Conflict(f"Container {container.id} is not running") from None

    def default_columns() -> list[list[str]]:
        names = _user_names(container.state.pid)
        return [_top_row(process, names) for process in processes()]

    def with_host_ps() -> tuple[list[str], list[list[str]]]:
        pids = [process.pid for process in processes()]
        return _ps_table(_host_ps(ps_args, pids), set(pids))

    if ps_args.strip() in TOP_PS_ARGS:
        titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        rows = await run_in_threadpool(default_columns)
    else:
        titles, rows = await run_in_threadpool(with_host_ps)
    manager.event("top", container)
    return JSONResponse({"Titles": titles, "Processes": rows})


#: Seconds between two samples of a stats stream, and before the second sample a
#: ``stream=false`` answer waits for (its CPU figures are the change between the two).
STATS_INTERVAL = 1.0

#: CPU figures before the first sample, as dockerd sends them (``precpu_stats`` of a
#: stream's first frame, and of a one-shot answer): zero, and nothing it omits when empty.
_NO_CPU: dict[str, Any] = {
    "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
    "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
}


@attrs.frozen
class _Sample:
    """One reading of a container's cgroups and interfaces, and when it was taken."""

    stats: ContainerStats
    read: str
    #: Counters of the interfaces its networks gave it, by name (``eth0``...).
    networks: dict[str, dict[str, int]] = attrs.Factory(dict)


def _read_sample(manager: ContainerManager, runtime: Runtime, container: Container) -> _Sample:
    stats = runtime.stats(container.id)
    return _Sample(stats, now_rfc3339(), _network_counters(manager, container))


def _network_counters(manager: ContainerManager, container: Container) -> dict[str, dict]:
    """The traffic of the interfaces its networks gave the container, read in its network
    namespace (through its init's ``/proc/PID/net``); dockerd reports those alone, so a
    ``host`` or ``none`` container has none (and no ``networks`` in its frames)."""
    if manager.networking is None or not container.state.pid:
        return {}
    names = manager.networking.interfaces(container)
    if not names:
        return {}
    counters = netns.interface_counters(container.state.pid)
    return {name: counters[name]._asdict() for name in names if name in counters}


def _cpu_stats(stats: ContainerStats) -> dict[str, Any]:
    times = stats.cpu_times or CpuTimes()
    throttling = stats.cpu_throttling or CpuThrottling()
    usage: dict[str, Any] = {"total_usage": stats.cpu_total_ns}
    if times.per_cpu_ns:  # dockerd leaves it out where the cgroup does not count it (v2)
        usage["percpu_usage"] = list(times.per_cpu_ns)
    usage["usage_in_kernelmode"] = times.kernel_ns
    usage["usage_in_usermode"] = times.user_ns
    return {
        "cpu_usage": usage,
        "system_cpu_usage": stats.system_cpu_ns,
        "online_cpus": stats.online_cpus,
        "throttling_data": {
            "periods": throttling.periods,
            "throttled_periods": throttling.throttled_periods,
            "throttled_time": throttling.throttled_ns,
        },
    }


def _memory_stats(stats: ContainerStats) -> dict[str, Any]:
    """dockerd's shape: ``max_usage`` and ``failcnt`` only when not zero."""
    detail = stats.memory or MemoryDetail()
    memory: dict[str, Any] = {"usage": stats.memory_usage}
    if detail.max_usage:
        memory["max_usage"] = detail.max_usage
    memory["stats"] = dict(detail.stat)
    if detail.failcnt:
        memory["failcnt"] = detail.failcnt
    memory["limit"] = stats.memory_limit
    return memory


def _blkio_stats(block_io: BlockIO | None) -> dict[str, Any]:
    """Every list dockerd sends, ``null`` where the cgroup does not count it."""
    block_io = block_io or BlockIO()

    def entries(found: tuple[BlockIOEntry, ...] | None) -> list[dict[str, Any]] | None:
        return None if found is None else [attrs.asdict(entry) for entry in found]

    return {
        "io_service_bytes_recursive": entries(block_io.service_bytes),
        "io_serviced_recursive": entries(block_io.serviced),
        "io_queue_recursive": entries(block_io.queued),
        "io_service_time_recursive": entries(block_io.service_time),
        "io_wait_time_recursive": entries(block_io.wait_time),
        "io_merged_recursive": entries(block_io.merged),
        "io_time_recursive": entries(block_io.time),
        "sectors_recursive": entries(block_io.sectors),
    }


def _stats_document(container: Container, sample: _Sample, previous: _Sample | None) -> dict:
    """A running container's frame, key for key as dockerd 20.10 sends it."""
    stats = sample.stats
    pids: dict[str, int] = {"current": stats.pids}
    if stats.pids_limit:  # dockerd leaves out no limit
        pids["limit"] = stats.pids_limit
    document = {
        "read": sample.read,
        "preread": previous.read if previous is not None else ZERO_TIME,
        "pids_stats": pids,
        "blkio_stats": _blkio_stats(stats.block_io),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu_stats(stats),
        "precpu_stats": _cpu_stats(previous.stats) if previous is not None else _NO_CPU,
        "memory_stats": _memory_stats(stats),
        "name": f"/{container.name}",
        "id": container.id,
    }
    if sample.networks:  # dockerd leaves out an empty map
        document["networks"] = sample.networks
    return document


def _stopped_stats_document(container: Container) -> dict[str, Any]:
    """What dockerd answers ``stream=false`` for a container that is not running."""
    return {
        "read": ZERO_TIME,
        "preread": ZERO_TIME,
        "pids_stats": {},
        "blkio_stats": {},
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _NO_CPU,
        "precpu_stats": _NO_CPU,
        "memory_stats": {},
        "name": f"/{container.name}",
        "id": container.id,
    }


async def stats(request: Request) -> Response:
    """A frame at once, then one a second; its ``precpu_stats`` are the frame before's (zero
    in the first). ``stream=false``: one frame, after a second sample; with ``one-shot``
    (API 1.41) the first sample at once, as dockerd answers."""
    manager = _manager(request)
    container = manager.get(request.path_params["id"])
    runtime = manager.runtime
    if runtime is None:
        raise Conflict("no runtime")
    streaming = parse_bool(request.query_params.get("stream"), default=True)
    one_shot = not api_older_than(request, "1.41") and parse_bool(
        request.query_params.get("one-shot")
    )
    if streaming and one_shot:
        raise InvalidParameter("cannot have stream=true and one-shot=true")
    if container.state.status not in ("running", "paused"):
        if not streaming:
            return JSONResponse(_stopped_stats_document(container))
        raise Conflict(f"Container {container.id} is not running")

    async def sample() -> _Sample:
        return await run_in_threadpool(_read_sample, manager, runtime, container)

    first = await sample()
    if one_shot:
        return JSONResponse(_stats_document(container, first, None))
    older_than = _older_than(request)
    if not streaming:
        await asyncio.sleep(STATS_INTERVAL)
        document = _stats_document(container, await sample(), first)
        return JSONResponse(versions.stats_answer(document, older_than))

    async def body() -> AsyncIterator[bytes]:
        previous, current = None, first
        while True:
            document = _stats_document(container, current, previous)
            answer = versions.stats_answer(document, older_than)
            yield json.dumps(answer).encode() + b"\n"
            await asyncio.sleep(STATS_INTERVAL)
            if container.state.status not in ("running", "paused"):
                return
            try:
                previous, current = current, await sample()
            except Exception:
                return

    return StreamingResponse(body(), media_type="application/json")


# --------------------------------------------------------------------------------------------
# exec
# --------------------------------------------------------------------------------------------


async def exec_create(request: Request) -> Response:
    # The body first: bad JSON is a 400 even for a missing container, as in dockerd.
    config = await _body(request, ExecConfig, required=True)
    manager = _manager(request)
    container = manager.get(request.path_params["id"])
    instance = _execs(request).create(container, config, *await exec_process(container, config))
    return JSONResponse({"Id": instance.id}, status_code=201)


#: What dockerd writes on an exec's stream when the client detaches (its stdin copy ends
#: with the escape error, which it reports before closing).
EXEC_DETACHED_MESSAGE = b"exec attach failed: error on attach stdin: read escape sequence\r\n"


async def exec_start(request: Request) -> Response:
    # The body first: bad JSON is a 400 even for a missing exec, as in dockerd.
    start = await _body(request, ExecStartConfig, required=True)
    manager = _manager(request)
    execs = _execs(request)
    instance = execs.get(request.path_params["id"])
    container = manager.get(instance.container_id)
    hijack: HijackedConnection | None = request.scope.get("extensions", {}).get(HIJACK_EXTENSION)
    assert manager.runtime is not None
    if start.detach:
        await execs.start(instance, container, manager.runtime, None)
        return Response(status_code=200)
    detach = _DetachWatch(hijack, instance.detach_sequence) if hijack is not None else None
    read_stdin = detach.read_stdin if detach is not None and instance.attach_stdin else None
    output = await execs.start(instance, container, manager.runtime, read_stdin)
    wanted = {1: instance.attach_stdout, 2: instance.attach_stderr}

    async def send_output(send_chunk: Callable[[bytes], Awaitable[None]]) -> None:
        # Framed or raw as the START request says, whatever the exec was created with
        # (dockerd's rule; docker-py reads the stream by the Tty it sent to start).
        async for stream, data in output:
            if wanted.get(stream, True):
                await send_chunk(data if start.tty else frame(stream, data))

    async def run(send_chunk: Callable[[bytes], Awaitable[None]]) -> None:
        if await _until_detached(send_output(send_chunk), detach):
            output.discarding = True
            message = EXEC_DETACHED_MESSAGE
            await send_chunk(message if start.tty else frame(1, message))

    media = (
        "application/vnd.docker.raw-stream"
        if start.tty
        else "application/vnd.docker.multiplexed-stream"
    )
    return _Streamed(101 if hijack is not None else 200, media, run)


async def exec_inspect(request: Request) -> Response:
    return JSONResponse(_execs(request).get(request.path_params["id"]).to_engine_api())


async def exec_resize(request: Request) -> Response:
    height, width = _window_size(request)
    instance = _execs(request).get(request.path_params["id"])
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
    body = await _body(request, VolumeCreateRequest, required=True)
    if body.driver not in ("", "local"):
        raise InvalidParameter(f"volume driver {body.driver!r} is not available; only 'local'")
    name = body.name or os.urandom(32).hex()
    volume = await run_in_threadpool(
        _volumes(request).create, name, body.labels, False, body.driver_opts
    )
    return JSONResponse(volume.to_engine_api(), status_code=201)


def _volume_matches(
    volume: Volume, filters: dict[str, list[str]], manager: ContainerManager
) -> bool:
    driver = volume.to_engine_api()["Driver"]
    if "name" in filters and not any(regex_matches(n, volume.name) for n in filters["name"]):
        return False
    if "driver" in filters and driver not in filters["driver"]:
        return False
    dangling = bool_filter(filters, "dangling")
    if dangling is not None and (not manager.volume_users(volume.name)) != dangling:
        return False
    return labels_match(volume.labels, {"label": filters.get("label", [])})


async def volume_list(request: Request) -> Response:
    filters = parse_filters(request.query_params.get("filters"))
    check_filters(filters, ("name", "driver", "label", "dangling"))
    manager = _manager(request)

    def listed() -> list[dict[str, Any]]:
        return [
            v.to_engine_api()
            for v in _volumes(request).volumes()
            if _volume_matches(v, filters, manager)
        ]

    return JSONResponse({"Volumes": await run_in_threadpool(listed), "Warnings": None})


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
    """Before API 1.42 every unused volume goes (dockerd 20.10); from 1.42 anonymous ones
    only, unless the ``all`` filter is true."""
    filters = parse_filters(request.query_params.get("filters"))
    # `all` is API 1.42's, taken at 1.41 too (where it changes nothing), as dockerd 23 does.
    check_filters(filters, ("label", "label!", "all"))
    everything = bool_filter(filters, "all")
    if everything is None:
        everything = api_older_than(request, "1.42")
    removed, reclaimed = await run_in_threadpool(
        _volumes(request).prune, everything, lambda v: labels_match(v.labels, filters)
    )
    return JSONResponse({"VolumesDeleted": removed, "SpaceReclaimed": reclaimed})


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
        Route("/containers/{parent}/{alias}", remove_by_link_name, methods=["DELETE"]),
        Route("/exec/{id}/start", exec_start, methods=["POST"]),
        Route("/exec/{id}/json", exec_inspect),
        Route("/exec/{id}/resize", exec_resize, methods=["POST"]),
        Route("/volumes/create", volume_create, methods=["POST"]),
        Route("/volumes", volume_list),
        Route("/volumes/prune", volume_prune, methods=["POST"]),
        Route("/volumes/{name}", volume_inspect),
        Route("/volumes/{name}", volume_remove, methods=["DELETE"]),
    ]
