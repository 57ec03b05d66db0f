"""Network routes of the Engine API: ``/networks``, create, inspect, remove, connect, prune."""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard.core.decoding import parse_json
from dockyard.core.errors import DockyardError, InvalidParameter
from dockyard.core.timestamps import parse_rfc3339_nano
from dockyard.daemon.api.middleware import api_older_than
from dockyard.daemon.api.params import parse_bool, parse_filters, parse_timestamp
from dockyard.daemon.api.system import service_of
from dockyard.daemon.containers.config import EndpointSettings
from dockyard.daemon.containers.manager import ContainerManager
from dockyard.daemon.containers.networking import ContainerNetworks, endpoint_id
from dockyard.daemon.engine_api import ENGINE_API
from dockyard.daemon.networks.manager import NetworkManager, network_json
from dockyard.daemon.networks.records import (
    NetworkConnectRequest,
    NetworkCreateRequest,
    NetworkDisconnectRequest,
    NetworkRecord,
)

LIST_FILTERS = ("dangling", "driver", "id", "label", "name", "scope", "type")
PRUNE_FILTERS = ("until", "label", "label!")


def _parts(request: Request) -> tuple[NetworkManager, ContainerNetworks, ContainerManager]:
    service = service_of(request)
    containers = service.containers
    if containers is None or containers.networking is None:
        raise DockyardError("this daemon has no networks")
    return containers.networking.networks, containers.networking, containers


def _label_matches(labels: dict[str, str], wanted: str) -> bool:
    key, separator, value = wanted.partition("=")
    return key in labels and (not separator or labels[key] == value)


def _check_filters(filters: dict[str, list[str]], known: tuple[str, ...]) -> None:
    for key in filters:
        if key not in known:
            raise InvalidParameter(f"Invalid filter '{key}'")


def _matches(
    record: NetworkRecord, filters: dict[str, list[str]], members: Callable[[str], list[str]]
) -> bool:
    for key, wanted in filters.items():
        if key == "driver" and record.driver not in wanted:
            return False
        if key == "id" and not any(record.id.startswith(w) for w in wanted):
            return False
        if key == "name" and not any(re.search(w, record.name) for w in wanted):
            return False
        if key == "label" and not all(_label_matches(record.labels, w) for w in wanted):
            return False
        if key == "scope" and not set(wanted) & {"local"}:
            return False
        if key == "type":
            for kind in wanted:
                if kind not in ("custom", "builtin"):
                    raise InvalidParameter(f"invalid filter: 'type'='{kind}'")
            if ("builtin" if record.predefined else "custom") not in wanted:
                return False
        if key == "dangling":
            dangling = parse_bool(wanted[0])
            if (not record.predefined and not members(record.id)) != dangling:
                return False
    return True


async def list_networks(request: Request) -> Response:
    networks, networking, manager = _parts(request)
    filters = parse_filters(request.query_params.get("filters"))
    _check_filters(filters, LIST_FILTERS)
    # Before API 1.28 dockerd lists each network with its containers, as inspect shows them.
    detailed = api_older_than(request, "1.28")
    found = [
        network_json(record, _containers_of(record, manager) if detailed else {})
        for record in sorted(networks.networks.values(), key=lambda r: r.created)
        if _matches(record, filters, networking.members)
    ]
    return JSONResponse(found)


def _containers_of(record: NetworkRecord, manager: ContainerManager) -> dict[str, dict[str, str]]:
    found = {}
    for container in manager.containers.values():
        for attachment in container.networks:
            endpoint = attachment.endpoint
            if attachment.network_id == record.id and endpoint is not None:
                found[container.id] = {
                    "Name": container.name,
                    "EndpointID": endpoint_id(container.id, record.id),
                    "MacAddress": endpoint.mac,
                    "IPv4Address": endpoint.ipv4,
                    "IPv6Address": "",
                }
    return found


async def inspect_network(request: Request) -> Response:
    networks, _, manager = _parts(request)
    record = networks.get(request.path_params["id"])
    return JSONResponse(network_json(record, _containers_of(record, manager)))


async def create_network(request: Request) -> Response:
    networks, _, _ = _parts(request)
    body = ENGINE_API.decode(parse_json(await request.body(), required=True), NetworkCreateRequest)
    record = await run_in_threadpool(networks.create, body)
    return JSONResponse({"Id": record.id, "Warning": ""}, status_code=201)


async def remove_network(request: Request) -> Response:
    networks, networking, _ = _parts(request)
    await run_in_threadpool(networks.remove, request.path_params["id"], networking.members)
    return Response(status_code=204)


async def connect(request: Request) -> Response:
    networks, _, manager = _parts(request)
    body = ENGINE_API.decode(parse_json(await request.body(), required=True), NetworkConnectRequest)
    if not body.container:
        raise InvalidParameter("Container: a container name or id is required")
    record = networks.get(request.path_params["id"])
    await manager.connect(body.container, record, body.endpoint_config or EndpointSettings())
    return Response(status_code=200)


async def disconnect(request: Request) -> Response:
    networks, _, manager = _parts(request)
    body = ENGINE_API.decode(
        parse_json(await request.body(), required=True), NetworkDisconnectRequest
    )
    if not body.container:
        raise InvalidParameter("Container: a container name or id is required")
    record = networks.get(request.path_params["id"])
    await manager.disconnect(body.container, record, body.force)
    return Response(status_code=200)


async def prune(request: Request) -> Response:
    networks, networking, _ = _parts(request)
    filters = parse_filters(request.query_params.get("filters"))
    _check_filters(filters, PRUNE_FILTERS)
    until = min((parse_timestamp(u) or 0 for u in filters.get("until", [])), default=None)
    removed = []
    for record in list(networks.networks.values()):
        if record.predefined or networking.members(record.id):
            continue
        if until is not None and parse_rfc3339_nano(record.created) >= until:
            continue
        if not all(_label_matches(record.labels, w) for w in filters.get("label", [])):
            continue
        if any(_label_matches(record.labels, w) for w in filters.get("label!", [])):
            continue
        try:
            await run_in_threadpool(networks.remove, record.id, networking.members)
        except DockyardError:
            continue  # connected to meanwhile: not unused any more
        removed.append(record.name)
    return JSONResponse({"NetworksDeleted": removed or None})


def routes() -> list[Route]:
    return [
        Route("/networks", list_networks),
        Route("/networks/create", create_network, methods=["POST"]),
        Route("/networks/prune", prune, methods=["POST"]),
        Route("/networks/{id}", inspect_network),
        Route("/networks/{id}", remove_network, methods=["DELETE"]),
        Route("/networks/{id}/connect", connect, methods=["POST"]),
        Route("/networks/{id}/disconnect", disconnect, methods=["POST"]),
    ]
