"""Implements every dockyard hook and records each call, so tests can prove they all run.

Records go to the file named by ``DOCKYARD_TEST_RECORD`` as JSON lines ``{"hook": ..., ...}``.
"""

import json
import os

from dockyard.core.hookspecs import hookimpl


def _record(hook, **details):
    path = os.environ.get("DOCKYARD_TEST_RECORD")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"hook": hook, "pid": os.getpid(), **details}) + "\n")


@hookimpl
def dockyard_runtimes():
    _record("dockyard_runtimes")


@hookimpl
def dockyard_storage_drivers():
    _record("dockyard_storage_drivers")


@hookimpl
def dockyard_registry_backends():
    _record("dockyard_registry_backends")


@hookimpl
def dockyard_auth_providers():
    _record("dockyard_auth_providers")


@hookimpl
def dockyard_network_drivers():
    _record("dockyard_network_drivers")


@hookimpl
def dockyard_log_drivers():
    _record("dockyard_log_drivers")


@hookimpl
def dockyard_configure(config, program):
    _record("dockyard_configure", program=program, source=config.source)


@hookimpl
def dockyard_startup(service):
    _record("dockyard_startup", program=service.program, data_root=str(service.data_root))


@hookimpl
def dockyard_shutdown(service):
    _record("dockyard_shutdown", program=service.program)


@hookimpl
def dockyard_routes(program):
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    _record("dockyard_routes", program=program)

    async def hello(request):
        return JSONResponse({"hello": program, "path": request.url.path})

    async def fail(request):
        raise RuntimeError("the recorder's route failed on purpose")

    return [Route("/recorder/hello", hello), Route("/recorder/fail", fail)]


@hookimpl
def dockyard_event(event):
    _record("dockyard_event", type=event.type, action=event.action)
