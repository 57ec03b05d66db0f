"""The daemon's HTTP API: the Docker Engine API (a versioned subset) on starlette.

Each module holds the routes of one area; :func:`create_app` puts them together behind the
middleware every Engine API response needs (version prefix, headers, logging, errors).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute

from dockyard.core.errors import DockyardError
from dockyard.core.server import RequestLogMiddleware
from dockyard.daemon.api import (
    build,
    containerfs,
    containers,
    diskusage,
    distribution,
    images,
    networks,
    pulls,
    swarm,
    system,
)
from dockyard.daemon.api.middleware import (
    EngineHeadersMiddleware,
    JsonBodyLimitMiddleware,
    handle_dockyard_error,
    handle_http_exception,
    handle_unexpected_error,
)
from dockyard.daemon.engine import Engine


def create_app(service: Engine) -> Any:
    """The Engine API ASGI app for ``service`` (plugins' routes after the core's)."""
    routes: list[BaseRoute] = [
        *system.routes(),
        *images.routes(),
        *pulls.routes(),
        *distribution.routes(),
        *containers.routes(),
        *containerfs.routes(),
        *networks.routes(),
        *build.routes(),
        *diskusage.routes(),
        *swarm.routes(),
    ]
    for extra in service.plugins.hook.dockyard_routes(program="daemon"):
        routes.extend(extra or ())
    app = Starlette(
        routes=routes,
        exception_handlers={
            DockyardError: handle_dockyard_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected_error,
        },
    )
    app.state.service = service
    limited = JsonBodyLimitMiddleware(app, service.config.daemon.max_json_body)
    return RequestLogMiddleware(EngineHeadersMiddleware(limited))
