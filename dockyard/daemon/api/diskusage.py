"""``GET /system/df`` (``docker system df [-v]``) and the sizes prunes and ``ps --size`` report."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard.core.errors import NotFound
from dockyard.daemon.api.images import summary
from dockyard.daemon.api.params import parse_filters
from dockyard.daemon.api.system import service_of
from dockyard.daemon.containers import model
from dockyard.daemon.containers.manager import ContainerManager
from dockyard.daemon.containers.model import Container
from dockyard.daemon.images.store import ImageStore


def size_rw(manager: ContainerManager, container: Container) -> int:
    """What the container wrote over its image (its snapshot's own bytes); 0 if unknown."""
    if manager.driver is None:
        return 0
    try:
        return manager.driver.usage(container.snapshot).size
    except (NotFound, OSError):
        return 0


def image_size(images: ImageStore | None, image_id: str) -> int:
    image = images.get(image_id) if images is not None else None
    return image.size if image is not None else 0


def with_sizes(manager: ContainerManager, container: Container) -> dict[str, Any]:
    """``docker ps --size``'s item: ``SizeRw`` (left out when 0, as dockerd's omitempty) and
    ``SizeRootFs``, the image's size and that."""
    summary = model.summary(container)
    written = size_rw(manager, container)
    if written:
        summary["SizeRw"] = written
    summary["SizeRootFs"] = written + image_size(manager.images, container.image_id)
    return summary


def tree_size(root: Path) -> int:
    """Bytes of the files under ``root``, each hard-linked file once (as dockerd counts)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_size
    return total


def _images(images: ImageStore, users: Counter[str]) -> list[dict[str, Any]]:
    records = images.images()
    layer_users = Counter(chain for image in records for chain in set(image.layers))
    listed = []
    for image in sorted(records, key=lambda i: i.created_at, reverse=True):
        references = images.references_of(image.id)
        if not references and images.children_of(image.id):
            continue  # an intermediate image, as ``docker images`` leaves out
        item = summary(images, image, references)
        item["Containers"] = users[image.id]
        item["SharedSize"] = sum(
            images.layer(chain).size for chain in image.layers if layer_users[chain] > 1
        )
        listed.append(item)
    return listed


def disk_usage(request: Request) -> dict[str, Any]:
    service = service_of(request)
    manager, images, volumes = service.containers, service.images, service.volumes
    assert manager is not None and images is not None and volumes is not None
    containers = sorted(manager.containers.values(), key=lambda c: c.created, reverse=True)
    users = Counter(c.image_id for c in containers)
    volume_items = []
    for volume in volumes.volumes():
        item = volume.to_engine_api()
        item["UsageData"] = {
            "Size": tree_size(volume.mountpoint),
            "RefCount": len(manager.volume_users(volume.name)),
        }
        volume_items.append(item)
    return {
        "LayersSize": sum(layer.size for layer in images.layers()),
        "Images": _images(images, users),
        "Containers": [with_sizes(manager, c) for c in containers],
        "Volumes": volume_items,
        # Builds here keep no cache of their own (their steps are images, counted above).
        "BuildCache": [],
        "BuilderSize": 0,
    }


async def system_df(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(disk_usage, request))


async def build_prune(request: Request) -> Response:
    """``docker builder prune`` (and ``system prune``'s last step): builds here keep no cache
    of their own, so there is never anything to delete, whatever the filters select."""
    parse_filters(request.query_params.get("filters"))  # still refuse a malformed one
    return JSONResponse({"CachesDeleted": None, "SpaceReclaimed": 0})


def routes() -> list[Route]:
    return [
        Route("/system/df", system_df),
        Route("/build/prune", build_prune, methods=["POST"]),
    ]
