"""Container filesystem routes: ``cp`` (archive GET/HEAD/PUT), ``diff``, ``export``, ``commit``."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dockyard.core.decoding import parse_json
from dockyard.core.errors import InvalidParameter
from dockyard.daemon.api.middleware import api_older_than
from dockyard.daemon.api.params import parse_bool
from dockyard.daemon.api.system import service_of
from dockyard.daemon.containers import filesystem, uploads
from dockyard.daemon.containers.changes import changes_from_diff, image_tree
from dockyard.daemon.containers.config import ContainerConfig
from dockyard.daemon.containers.manager import ContainerManager
from dockyard.daemon.containers.model import Container
from dockyard.daemon.engine_api import ENGINE_API
from dockyard.daemon.images.archive import apply_changes
from dockyard.daemon.images.commit import ImageChange, Snapshot, commit_image
from dockyard.distribution.reference import Reference, parse_repository_and_tag

PATH_STAT_HEADER = "X-Docker-Container-Path-Stat"


def _manager(request: Request) -> ContainerManager:
    manager = service_of(request).containers
    assert manager is not None
    return manager


def _parents(manager: ContainerManager, container: Container) -> list[str]:
    return manager.images.layer_keys(manager.images.get(container.image_id))


async def _open_root(
    manager: ContainerManager, container: Container, with_volumes: bool
) -> tuple[filesystem.RootView, Callable[[], None]]:
    """The container's root, and what closes it (callable from any thread).

    A stopped container's snapshot is mounted while its lock is held, so that it cannot start
    (and mount the snapshot a second time) until the work is done; the lock is released by
    the closer, on the event loop.
    """
    _runtime, driver = manager._require_runtime()
    lock = manager.live(container).lock
    loop = asyncio.get_running_loop()
    await lock.acquire()
    stack = contextlib.ExitStack()
    try:
        if container.state.running:
            lock.release()
            view = await run_in_threadpool(
                stack.enter_context, filesystem.running_root(container, with_volumes)
            )
        else:
            stack.callback(loop.call_soon_threadsafe, lock.release)
            rootfs = await run_in_threadpool(
                driver.mounts, container.snapshot, _parents(manager, container)
            )
            view = await run_in_threadpool(
                stack.enter_context,
                filesystem.stopped_root(
                    container, rootfs, str(manager.directory(container)), with_volumes
                ),
            )
    except BaseException:
        await run_in_threadpool(stack.close)
        raise
    return view, stack.close


async def _tar_stream(
    write: Callable[[BinaryIO], None], close: Callable[[], None]
) -> AsyncIterator[bytes]:
    sink = filesystem.produce(write, close)
    try:
        while True:
            item = await run_in_threadpool(sink.queue.get)
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item  # the response is under way: ending it short is all that is left
            yield item
    finally:
        sink.cancelled.set()


# --------------------------------------------------------------------------------------------
# archive
# --------------------------------------------------------------------------------------------


async def archive(request: Request) -> Response:
    """``GET``/``HEAD /containers/{id}/archive?path=``: the path as a tar, and its stat."""
    manager = _manager(request)
    name = request.path_params["id"]
    container = manager.get(name)
    path = filesystem.clean_container_path(request.query_params.get("path", ""))
    view, close = await _open_root(manager, container, with_volumes=True)
    try:
        located = await run_in_threadpool(filesystem.locate, view, path, name)
    except BaseException:
        await run_in_threadpool(close)
        raise
    headers = {PATH_STAT_HEADER: located.stat.header()}
    if request.method == "HEAD":
        located.close()
        await run_in_threadpool(close)
        return Response(status_code=200, headers=headers)

    def write(out: BinaryIO) -> None:
        filesystem.write_path(out, view, located, path)

    def finish() -> None:
        located.close()
        close()

    return StreamingResponse(
        _tar_stream(write, finish), media_type="application/x-tar", headers=headers
    )


async def copy(request: Request) -> Response:
    """``POST /containers/{id}/copy``: dockerd's ``docker cp`` before API 1.24 (a tar of the
    body's ``Resource``); from 1.24 an empty 404, as dockerd answers."""
    if not api_older_than(request, "1.24"):
        return Response(status_code=404)
    manager = _manager(request)
    name = request.path_params["id"]
    container = manager.get(name)
    body = parse_json(await request.body())
    resource = body.get("Resource") if isinstance(body, dict) else None
    if not isinstance(resource, str):
        raise InvalidParameter("Resource: expected a string (the path to copy)")
    if not resource:
        raise InvalidParameter("Path cannot be empty")
    view, close = await _open_root(manager, container, with_volumes=True)
    sink = filesystem.produce(
        lambda out: filesystem.write_resource(out, view, resource, name), close
    )
    # The first piece (or the error, a 404 for a missing path) before the answer's status.
    first = await run_in_threadpool(sink.queue.get)
    if isinstance(first, BaseException):
        raise first

    async def rest() -> AsyncIterator[bytes]:
        try:
            item: bytes | BaseException | None = first
            while item is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
                item = await run_in_threadpool(sink.queue.get)
        finally:
            sink.cancelled.set()

    return StreamingResponse(rest(), media_type="application/x-tar")


async def put_archive(request: Request) -> Response:
    """``PUT /containers/{id}/archive?path=``: extract the body's tar into a directory."""
    manager = _manager(request)
    name = request.path_params["id"]
    container = manager.get(name)
    query = request.query_params
    path = filesystem.clean_container_path(query.get("path", ""))
    options = uploads.UploadOptions(
        no_overwrite_dir_non_dir=parse_bool(query.get("noOverwriteDirNonDir")),
        copy_uid_gid=parse_bool(query.get("copyUIDGID")),
    )
    with tempfile.TemporaryFile(dir=manager.directory(container)) as spool:
        # Spooled first: a body that is not a tar is refused before anything is written.
        async for chunk in request.stream():
            spool.write(chunk)  # buffered: a thread hop per chunk would cost more
        spool.seek(0)
        await run_in_threadpool(uploads.check_is_tar, spool)
        view, close = await _open_root(manager, container, with_volumes=True)
        try:
            await run_in_threadpool(uploads.extract, view, container, path, name, spool, options)
        finally:
            await run_in_threadpool(close)
    return Response(status_code=200)


# --------------------------------------------------------------------------------------------
# changes and export
# --------------------------------------------------------------------------------------------


async def changes(request: Request) -> Response:
    manager = _manager(request)
    container = manager.get(request.path_params["id"])
    _runtime, driver = manager._require_runtime()

    def compute() -> list[dict[str, Any]]:
        tree = image_tree(manager.images, container.image_id)
        with tempfile.TemporaryFile(dir=manager.directory(container)) as diff:
            driver.diff(container.snapshot, _parents(manager, container), diff)
            diff.seek(0)
            return [change.to_json() for change in changes_from_diff(diff, tree)]

    return JSONResponse(await run_in_threadpool(compute))


async def export(request: Request) -> Response:
    """``GET /containers/{id}/export``: the root filesystem (no volumes) as a tar."""
    manager = _manager(request)
    container = manager.get(request.path_params["id"])
    view, close = await _open_root(manager, container, with_volumes=False)

    def write(out: BinaryIO) -> None:
        tree = filesystem.TarTree(out, view)
        try:
            tree.add_root("")
        finally:
            tree.close()

    return StreamingResponse(_tar_stream(write, close), media_type="application/octet-stream")


# --------------------------------------------------------------------------------------------
# commit
# --------------------------------------------------------------------------------------------

#: The fields dockerd's commit fills from the container's config when the request left them
#: empty (``merge`` in its daemon/commit.go), and those it unites.
_FILLED = ("User", "Healthcheck", "WorkingDir", "StopSignal")
_UNITED = ("ExposedPorts", "Labels", "Volumes")


def merge_commit_config(requested: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The committed image's config: ``requested`` completed from the container's ``config``."""
    merged = dict(requested)
    for key in _FILLED:
        if not merged.get(key) and container.get(key):
            merged[key] = container[key]
    for key in _UNITED:
        if container.get(key):
            merged[key] = {**container[key], **(merged.get(key) or {})}
    if container.get("Env"):
        names = {entry.partition("=")[0] for entry in merged.get("Env") or []}
        extra = [e for e in container["Env"] if e.partition("=")[0] not in names]
        merged["Env"] = [*(merged.get("Env") or []), *extra]
    if not merged.get("Entrypoint") and not merged.get("Cmd"):
        if container.get("Entrypoint"):
            merged["Entrypoint"] = container["Entrypoint"]
        if container.get("Cmd"):
            merged["Cmd"] = container["Cmd"]
    return merged


async def commit(request: Request) -> Response:
    """``POST /commit``: an image from a container's changes (paused meanwhile by default)."""
    manager = _manager(request)
    query = request.query_params
    # The body first: bad JSON is a 400 even for a missing container, as in dockerd.
    body = (await request.body()).strip()
    given = body and body != b"null"
    decoded = ENGINE_API.decode(parse_json(body), ContainerConfig) if given else None
    container = manager.get(query.get("container", ""))
    references: list[Reference] = []
    if query.get("repo"):
        references.append(parse_repository_and_tag(query["repo"], query.get("tag") or None))
    elif query.get("tag"):
        raise InvalidParameter("tag is given without a repository (repo)")
    own_config = ENGINE_API.encode(container.config)
    requested = ENGINE_API.encode(decoded) if decoded is not None else dict(own_config)
    config = merge_commit_config(apply_changes(requested, query.getlist("changes")), own_config)
    ENGINE_API.decode(config, ContainerConfig)  # what the changes made must still be a config
    # As dockerd: an absent or empty ``pause`` pauses, except for clients of API 1.12.
    pause_text = query.get("pause") or ""
    pause = parse_bool(pause_text) if pause_text else not api_older_than(request, "1.13")
    paused_here = pause and container.state.status == "running"
    if paused_here:
        await manager.pause(container.id, True)
    try:
        parent = manager.images.resolve(container.image_id)
        change = ImageChange(
            parent=parent,
            config=config,
            snapshot=Snapshot(container.snapshot, tuple(_parents(manager, container))),
            created_by=" ".join(container.config.cmd or ()),
            author=query.get("author", ""),
            comment=query.get("comment", ""),
            container_id=container.id,
            container_config=own_config,
        )
        image = await run_in_threadpool(commit_image, manager.images, change, references)
        # dockerd's container event, before the unpause.
        manager.event(
            "commit",
            container,
            comment=change.comment,
            imageID=image.id,
            imageRef=references[0].familiar() if references else "",
        )
    finally:
        if paused_here and container.state.status == "paused":
            await manager.pause(container.id, False)
    return JSONResponse({"Id": image.id}, status_code=201)


def routes() -> list[Route]:
    return [
        Route("/containers/{id}/archive", archive, methods=["GET", "HEAD"]),
        Route("/containers/{id}/archive", put_archive, methods=["PUT"]),
        Route("/containers/{id}/changes", changes),
        Route("/containers/{id}/export", export),
        Route("/containers/{id}/copy", copy, methods=["POST"]),
        Route("/commit", commit, methods=["POST"]),
    ]
