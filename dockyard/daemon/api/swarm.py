"""What dockerd outside a swarm answers, for the swarm endpoints, and Docker's managed plugins
(``/plugins``), which dockyard does not have.

Clients meet these: compose and test suites tear down with ``docker swarm leave``, ``docker
node ls`` probes for a swarm, ``docker plugin ls`` lists plugins. A 404 tells them the daemon is
broken; dockerd's own 503 tells them what they can act on: there is no swarm. Joining or
making one is refused (501): dockyard has no swarm mode. dockyard's own plugins (storage,
runtimes...) are at ``/dockyard/plugins`` and in ``/info``, not here.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dockyard.daemon.api.middleware import error_response

#: dockerd 20.10's words, measured (tests/core/test_swarm_plugins_interop.py).
NOT_A_MANAGER = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to '
    "connect this node to swarm and try again."
)
NOT_IN_A_SWARM = "This node is not part of a swarm"
NO_SWARM_MODE = "dockyard has no swarm mode: a swarm cannot be created or joined"
NO_MANAGED_PLUGINS = (
    "dockyard has no Docker engine plugins (docker plugin install/enable/...): its own plugins "
    "are Python packages, listed by `dockyard plugins` and in /info"
)

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE"]


async def not_a_manager(request: Request) -> Response:
    return error_response(503, NOT_A_MANAGER)


async def leave(request: Request) -> Response:
    return error_response(503, NOT_IN_A_SWARM)


async def no_swarm_mode(request: Request) -> Response:
    return error_response(501, NO_SWARM_MODE)


async def list_plugins(request: Request) -> Response:
    return JSONResponse([])


async def no_such_plugin(request: Request) -> Response:
    """An inspect finds nothing, as dockerd with no plugin of that name: ``docker inspect``
    asks every kind of object for a name and reports "No such object" after 404s only."""
    return error_response(404, f'plugin "{request.path_params["name"]}" not found')


async def no_managed_plugins(request: Request) -> Response:
    return error_response(501, NO_MANAGED_PLUGINS)


def routes() -> list[Route]:
    manager_only = [
        Route(path, not_a_manager, methods=_ALL_METHODS)
        for area in ("nodes", "services", "tasks", "secrets", "configs")
        for path in (f"/{area}", f"/{area}/{{rest:path}}")
    ]
    return [
        Route("/swarm", not_a_manager, methods=["GET", "HEAD"]),
        Route("/swarm/leave", leave, methods=["POST"]),
        Route("/swarm/init", no_swarm_mode, methods=["POST"]),
        Route("/swarm/join", no_swarm_mode, methods=["POST"]),
        Route("/swarm/unlockkey", not_a_manager, methods=["GET"]),
        Route("/swarm/unlock", not_a_manager, methods=["POST"]),
        Route("/swarm/update", not_a_manager, methods=["POST"]),
        *manager_only,
        Route("/plugins", list_plugins, methods=["GET", "HEAD"]),
        Route("/plugins", no_managed_plugins, methods=["POST", "PUT", "DELETE"]),
        Route("/plugins/{name:path}/json", no_such_plugin, methods=["GET", "HEAD"]),
        Route("/plugins/{rest:path}", no_managed_plugins, methods=_ALL_METHODS),
    ]
