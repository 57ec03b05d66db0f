"""Image routes of the Engine API: list, inspect, tag, rmi, import, save, load, history, prune."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dockyard.core.drivers import DriverKind
from dockyard.core.errors import DockyardError, InvalidParameter
from dockyard.daemon.api.filters import (
    bool_filter,
    check_filters,
    created_before_all,
    labels_match,
)
from dockyard.daemon.api.middleware import api_older_than
from dockyard.daemon.api.params import parse_bool, parse_filters
from dockyard.daemon.api.pulls import pull_image
from dockyard.daemon.api.streams import consume_body, json_message, stream_from_thread
from dockyard.daemon.api.system import service_of
from dockyard.daemon.containers.model import CONFIG_OMITTED, as_dockerd_shows
from dockyard.daemon.distribution import progress
from dockyard.daemon.images import archive
from dockyard.daemon.images.store import ImageRecord, ImageStore
from dockyard.distribution.reference import Reference, parse_repository_and_tag


def _store(request: Request) -> ImageStore:
    store = service_of(request).images
    assert store is not None
    return store


def _created_unix(config: dict[str, Any], image: ImageRecord) -> int:
    created = config.get("created")
    if isinstance(created, str):
        try:
            return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return int(image.created_at)


def _labels(config: dict[str, Any]) -> dict[str, str]:
    return (config.get("config") or {}).get("Labels") or {}


def summary(store: ImageStore, image: ImageRecord, references: list[Reference]) -> dict[str, Any]:
    """One item of ``GET /images/json``, showing ``references`` as its tags."""
    config = store.config(image)
    return {
        "Id": image.id,
        "ParentId": image.parent,
        "RepoTags": [ref.familiar() for ref in references],
        "RepoDigests": list(image.repo_digests),
        "Created": _created_unix(config, image),
        "Size": image.size,
        "VirtualSize": image.size,
        "SharedSize": -1,
        "Labels": _labels(config),
        "Containers": -1,
    }


#: An image's container config as dockerd shows it: these keys always (empty as Go's zero
#: values), in this order, then the ones it leaves out while empty where they are set.
_IMAGE_CONFIG_KEYS: dict[str, Any] = {
    "Hostname": "",
    "Domainname": "",
    "User": "",
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
    "ExposedPorts": None,
    "Tty": False,
    "OpenStdin": False,
    "StdinOnce": False,
    "Env": None,
    "Cmd": None,
    "Healthcheck": None,
    "ArgsEscaped": None,
    "Image": "",
    "Volumes": None,
    "WorkingDir": "",
    "Entrypoint": None,
    "NetworkDisabled": None,
    "MacAddress": None,
    "OnBuild": None,
    "Labels": None,
    "StopSignal": None,
    "StopTimeout": None,
    "Shell": None,
}


def image_config_shape(config: dict[str, Any] | None) -> dict[str, Any]:
    """``config`` (an image's ``config`` or ``container_config``) with dockerd's keys."""
    given = config or {}
    shaped = {key: given.get(key, default) for key, default in _IMAGE_CONFIG_KEYS.items()}
    shaped.update({k: v for k, v in given.items() if k not in shaped})
    return as_dockerd_shows(shaped, CONFIG_OMITTED)


def inspect(store: ImageStore, image: ImageRecord, driver_name: str) -> dict[str, Any]:
    """``GET /images/{name}/json``."""
    config = store.config(image)
    return {
        "Id": image.id,
        "RepoTags": [ref.familiar() for ref in store.references_of(image.id)],
        "RepoDigests": list(image.repo_digests),
        "Parent": image.parent,
        "Comment": config.get("comment", ""),
        "Created": config.get("created", ""),
        "Container": config.get("container", ""),
        "ContainerConfig": image_config_shape(config.get("container_config")),
        "DockerVersion": config.get("docker_version", ""),
        "Author": config.get("author", ""),
        "Config": image_config_shape(config.get("config")),
        "Architecture": config.get("architecture", ""),
        **({"Variant": config["variant"]} if config.get("variant") else {}),
        "Os": config.get("os", ""),
        "Size": image.size,
        "VirtualSize": image.size,
        "GraphDriver": {"Name": driver_name, "Data": {}},
        "RootFS": {"Type": "layers", "Layers": config.get("rootfs", {}).get("diff_ids", [])},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


_LIST_FILTERS = ("dangling", "reference", "label", "before", "since")


def _matches(store: ImageStore, image: ImageRecord, filters: dict[str, list[str]]) -> bool:
    references = store.references_of(image.id)
    for key, wanted in filters.items():
        if key == "dangling":
            dangling = not references
            if not any(parse_bool(w) == dangling for w in wanted):
                return False
        elif key == "reference":
            pass  # narrows the tags shown; see matching_references
        elif key == "label":
            if not labels_match(_labels(store.config(image)), {"label": wanted}):
                return False
        elif key in ("before", "since"):
            for name in wanted:
                pivot = store.resolve(name)
                if key == "before" and not image.created_at < pivot.created_at:
                    return False
                if key == "since" and not image.created_at > pivot.created_at:
                    return False
    return True


def _path_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match``: like a shell glob, but ``*`` and ``?`` never match ``/``."""
    regex = "".join(
        "[^/]*" if part == "*" else "[^/]" if part == "?" else re.escape(part)
        for part in re.split(r"(\*|\?)", pattern)
    )
    return re.fullmatch(regex, name) is not None


def matching_references(references: list[Reference], patterns: list[str]) -> list[Reference]:
    """The references a ``reference`` filter keeps, as moby's ``FamiliarMatch`` decides:
    the pattern against ``name:tag``, else against the name alone."""
    return [
        ref
        for ref in references
        if any(
            _path_match(p, ref.familiar()) or _path_match(p, ref.familiar_name) for p in patterns
        )
    ]


async def list_images(request: Request) -> Response:
    store = _store(request)
    filters = parse_filters(request.query_params.get("filters"))
    # The old form, a reference pattern: dockerd 20.10 takes it before API 1.41 only.
    if request.query_params.get("filter") and api_older_than(request, "1.41"):
        filters.setdefault("reference", []).append(request.query_params["filter"])
    check_filters(filters, _LIST_FILTERS)
    bool_filter(filters, "dangling")  # a value other than true or false is refused

    def collect() -> list[dict[str, Any]]:
        images = [i for i in store.images() if _matches(store, i, filters)]
        images.sort(key=lambda i: i.created_at, reverse=True)
        listed = []
        show_all = parse_bool(request.query_params.get("all"))
        for image in images:
            references = store.references_of(image.id)
            if not references and not show_all and store.children_of(image.id):
                continue  # an intermediate image (a build step's): shown with all=1 only
            if "reference" in filters:
                references = matching_references(references, filters["reference"])
                if not references:
                    continue
            listed.append(summary(store, image, references))
        return listed

    return JSONResponse(await run_in_threadpool(collect))


async def inspect_image(request: Request) -> Response:
    store = _store(request)
    driver = service_of(request).plugins.selected(DriverKind.STORAGE) or ""
    image = await run_in_threadpool(store.resolve, request.path_params["name"])
    return JSONResponse(await run_in_threadpool(inspect, store, image, driver))


async def history(request: Request) -> Response:
    store = _store(request)
    image = await run_in_threadpool(store.resolve, request.path_params["name"])
    config = store.config(image)
    layers = [store.layer(chain) for chain in image.layers]
    entries = config.get("history") or [{"created": config.get("created", "")} for _ in layers]
    # Entries are oldest first; the ones with layers consume the image's layers in order.
    layer_sizes = iter(layer.size for layer in layers)
    rows = []
    for entry in entries:
        created = entry.get("created", "")
        try:
            created_unix = int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
        except (ValueError, AttributeError):
            created_unix = 0
        size = 0 if entry.get("empty_layer") else next(layer_sizes, 0)
        rows.append(
            {
                "Id": "<missing>",
                "Created": created_unix,
                "CreatedBy": entry.get("created_by", ""),
                "Tags": None,
                "Size": size,
                "Comment": entry.get("comment", ""),
            }
        )
    rows.reverse()
    if rows:
        rows[0]["Id"] = image.id
        rows[0]["Tags"] = [ref.familiar() for ref in store.references_of(image.id)] or None
    return JSONResponse(rows)


async def tag_image(request: Request) -> Response:
    store = _store(request)
    repo = request.query_params.get("repo")
    if not repo:
        raise InvalidParameter("repository name (repo) is required")
    reference = parse_repository_and_tag(repo, request.query_params.get("tag"))
    if reference.digest is not None:
        raise InvalidParameter("refusing to create a tag with a digest reference")
    image = await run_in_threadpool(store.resolve, request.path_params["name"])
    await run_in_threadpool(store.tag, image.id, reference)
    return Response(status_code=201)


async def remove_image(request: Request) -> Response:
    store = _store(request)
    force = parse_bool(request.query_params.get("force"))
    prune_parents = not parse_bool(request.query_params.get("noprune"))
    deleted = await run_in_threadpool(
        store.delete, request.path_params["name"], force, prune_parents
    )
    return JSONResponse(deleted)


async def prune_images(request: Request) -> Response:
    store = _store(request)
    filters = parse_filters(request.query_params.get("filters"))
    check_filters(filters, ("dangling", "until", "label", "label!"))
    # As dockerd decides: any false value prunes every unused image; else a true one is needed.
    dangling = [value.lower() for value in filters.get("dangling", ["true"])]
    dangling_only = not ({"false", "0"} & set(dangling))
    if dangling_only and not {"true", "1"} & set(dangling):
        raise InvalidParameter(f"Invalid filter 'dangling=[{' '.join(dangling)}]'")

    def selected(image: ImageRecord) -> bool:
        config = store.config(image)
        return created_before_all(_created_unix(config, image), filters) and labels_match(
            _labels(config), filters
        )

    deleted, reclaimed = await run_in_threadpool(store.prune, dangling_only, selected)
    return JSONResponse({"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


def _messages(*messages: bytes) -> Response:
    async def body() -> Any:
        for message in messages:
            yield message

    return StreamingResponse(body(), media_type="application/json")


async def create_image(request: Request) -> Response:
    """``POST /images/create``: ``fromImage`` pulls (:mod:`.pulls`), ``fromSrc=-`` imports
    the body."""
    query = request.query_params
    source = query.get("fromSrc")
    if query.get("fromImage"):
        return await pull_image(request)
    if source != "-":
        raise InvalidParameter("fromSrc=- (the request body) is the only import source supported")
    reference = None
    if query.get("repo"):
        reference = parse_repository_and_tag(query["repo"], query.get("tag"))
        if reference.digest is not None:
            raise InvalidParameter("cannot import digest reference")
    changes = query.getlist("changes")
    message = query.get("message", "")
    archive.apply_changes({}, changes)  # refuse a bad change before reading the body
    store = _store(request)
    image = await consume_body(
        request,
        lambda body: archive.import_rootfs(store, body, reference, changes, message),
    )
    return _messages(json_message(status=image.id))


async def load_images(request: Request) -> Response:
    """``POST /images/load``. A bad archive is not an HTTP error: dockerd answers 200 and puts
    the error in the stream (``errorDetail``), which docker-py and the CLI raise as their load
    error."""
    store = _store(request)
    try:
        results = await consume_body(request, lambda body: archive.load_archive(store, body))
    except DockyardError as exc:
        return _messages(json_message(**progress.error(exc.message)))
    quiet = parse_bool(request.query_params.get("quiet"))
    lines: list[str] = []
    for result in results:
        if result.names:
            lines.extend(f"Loaded image: {name.familiar()}\n" for name in result.names)
        else:
            lines.append(f"Loaded image ID: {result.image.id}\n")
    del quiet  # dockerd prints the same lines either way; quiet only hides progress
    return _messages(*(json_message(stream=line) for line in lines))


async def save_images(request: Request) -> Response:
    store = _store(request)
    names = request.query_params.getlist("names")
    if "name" in request.path_params:
        names = [request.path_params["name"]]
    if not names:
        raise InvalidParameter("no images to save: give names=")
    items = await run_in_threadpool(archive.select_for_save, store, names)
    body = stream_from_thread(lambda out: archive.save_images(store, items, out))
    return StreamingResponse(body, media_type="application/x-tar")


def routes() -> list[Route]:
    return [
        Route("/images/json", list_images),
        Route("/images/create", create_image, methods=["POST"]),
        Route("/images/load", load_images, methods=["POST"]),
        Route("/images/get", save_images),
        Route("/images/prune", prune_images, methods=["POST"]),
        Route("/images/{name:path}/json", inspect_image),
        Route("/images/{name:path}/history", history),
        Route("/images/{name:path}/get", save_images),
        Route("/images/{name:path}/tag", tag_image, methods=["POST"]),
        Route("/images/{name:path}", remove_image, methods=["DELETE"]),
    ]
