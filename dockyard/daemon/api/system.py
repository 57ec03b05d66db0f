"""System routes: ``/_ping``, ``/version``, ``/info``, ``/auth``, ``/events`` and
``/dockyard/plugins``."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import dockyard
from dockyard.core.drivers import DriverKind
from dockyard.core.events import Event
from dockyard.core.platforms import go_arch
from dockyard.core.plugins import OK, PluginHost
from dockyard.daemon.api.middleware import API_VERSION, MIN_API_VERSION
from dockyard.daemon.api.params import parse_filters, parse_timestamp
from dockyard.daemon.distribution.authconfig import decode_auth_body
from dockyard.daemon.distribution.service import RegistryService
from dockyard.daemon.engine import Engine

_NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


def service_of(request: Request) -> Engine:
    service: Engine = request.app.state.service
    return service


async def ping(request: Request) -> Response:
    body = b"" if request.method == "HEAD" else b"OK"
    return Response(body, media_type="text/plain; charset=utf-8", headers=_NO_CACHE)


async def version(request: Request) -> Response:
    details = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": platform.release(),
        "BuildTime": "",
        "Experimental": "false",
    }
    body = {
        "Platform": {"Name": f"dockyard {dockyard.__version__}"},
        "Components": [{"Name": "Engine", "Version": dockyard.__version__, "Details": details}],
        "Version": dockyard.__version__,
        **{key: value for key, value in details.items() if key != "Experimental"},
        "Experimental": False,
    }
    return JSONResponse(body)


def _os_pretty_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def engine_id(data_root: Path) -> str:
    """A stable identifier for this engine, made once per data root."""
    path = data_root / "engine-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = os.urandom(16).hex().upper()
        ident = ":".join(value[i : i + 4] for i in range(0, 32, 4))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(ident + "\n")
        os.replace(tmp, path)
        return ident


async def info(request: Request) -> Response:
    service = service_of(request)
    plugins = service.plugins
    storage = plugins.selected(DriverKind.STORAGE) or ""
    runtime = plugins.selected(DriverKind.RUNTIME) or ""
    runtimes = {name: {"path": name} for name in _usable_drivers(plugins, DriverKind.RUNTIME)}
    registries = registries_of(service)
    containers = service.containers.containers.values() if service.containers else ()
    states = [c.state.status for c in containers]
    body: dict[str, Any] = {
        "ID": engine_id(service.data_root),
        "Containers": len(states),
        "ContainersRunning": states.count("running"),
        "ContainersPaused": states.count("paused"),
        "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
        "Images": len(service.images.images()) if service.images else 0,
        "Driver": storage,
        "DriverStatus": [],
        "Plugins": plugins_by_kind(plugins),
        "MemoryLimit": True,
        "SwapLimit": False,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "PidsLimit": True,
        "IPv4Forwarding": True,
        "Debug": service.config.daemon.log_level == "debug",
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0,
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "LoggingDriver": service.config.daemon.log_driver,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": _cgroup_version(),
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_pretty_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": registries.index_server_address,
        "RegistryConfig": registries.policy.registry_config(),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "DockerRootDir": str(service.data_root),
        "Name": platform.node(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": dockyard.__version__,
        "Runtimes": runtimes,
        "DefaultRuntime": runtime,
        "Swarm": {
            "LocalNodeState": "inactive",
            "ControlAvailable": False,
            "NodeID": "",
            "NodeAddr": "",
            "RemoteManagers": None,
        },
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        # As dockerd lists it; `docker info` shows it under "Security Options".
        "SecurityOptions": security_options(
            bool(service.containers and service.containers.remapped)
        ),
        "Warnings": None,
        # dockyard's own section; the docker CLI ignores fields it does not know.
        "Dockyard": {
            "ConfigFile": service.config.source,
            "Python": sys.version.split()[0],
            "Plugins": [report.to_json() for report in plugins.report()],
        },
    }
    return JSONResponse(body)


def _usable_drivers(plugins: PluginHost, kind: DriverKind) -> list[str]:
    """The drivers of ``kind`` that work on this machine, by name."""
    return sorted(
        driver.name
        for report in plugins.report()
        for driver in report.drivers
        if driver.kind is kind and driver.status == OK
    )


def plugins_by_kind(plugins: PluginHost) -> dict[str, list[str] | None]:
    """``Plugins`` as dockerd shapes it: the drivers of each kind that work here, by name.

    Volumes are the daemon's own ``local`` driver; there is no authorization plugin
    (dockerd's ``null``)."""
    return {
        "Volume": ["local"],
        "Network": _usable_drivers(plugins, DriverKind.NETWORK),
        "Authorization": None,
        # dockerd lists the drivers that keep logs somewhere: ``none`` is not one of them.
        "Log": [name for name in _usable_drivers(plugins, DriverKind.LOG) if name != "none"],
    }


def security_options(remapped: bool) -> list[str]:
    """``SecurityOptions`` as dockerd lists them: every container gets the default seccomp
    profile unless it asks otherwise, and ``userns`` when the daemon remaps ids."""
    return ["name=seccomp,profile=default", *(["name=userns"] if remapped else [])]


def registries_of(service: Engine) -> RegistryService:
    assert service.registries is not None
    return service.registries


async def auth(request: Request) -> Response:
    """``POST /auth``: check credentials against their registry (docker login)."""
    config = decode_auth_body(await request.body())
    registries = registries_of(service_of(request))
    result = await registries.login(config, request.headers.get("user-agent", ""))
    return JSONResponse({"IdentityToken": result.identity_token, "Status": result.status})


async def plugin_list(request: Request) -> Response:
    return JSONResponse([report.to_json() for report in service_of(request).plugins.report()])


def _event_matches(event: Event, filters: dict[str, list[str]]) -> bool:
    checks = {
        "type": event.type,
        "event": event.action,
        "container": event.actor_id if event.type == "container" else None,
        "image": event.actor_id if event.type == "image" else None,
    }
    for key, wanted in filters.items():
        value = checks.get(key)
        if key == "container" and event.type == "container":
            # As dockerd: the container's id or name, or a prefix of either.
            names = (event.actor_id, event.attributes.get("name", ""))
            if not any(n.startswith(w) for w in wanted for n in names if w):
                return False
        elif key == "label":
            labels = [f"{k}={v}" for k, v in event.attributes.items()] + list(event.attributes)
            if not any(w in labels for w in wanted):
                return False
        elif value is None or value not in wanted:
            return False
    return True


async def events(request: Request) -> Response:
    """``docker events``: replay since ``since``, then stream until ``until`` or disconnect."""
    bus = service_of(request).events
    assert bus is not None
    query = request.query_params
    filters = parse_filters(query.get("filters"))
    since = parse_timestamp(query.get("since"))
    until = parse_timestamp(query.get("until"))
    past, queue = bus.subscribe(since_nano=since)

    async def stream() -> AsyncIterator[bytes]:
        try:
            for event in past:
                if until is not None and event.time_nano > until:
                    return
                if _event_matches(event, filters):
                    yield json.dumps(event.to_engine_api()).encode() + b"\n"
            while True:
                timeout = None
                if until is not None:
                    timeout = max(0.0, (until - time.time_ns()) / 1e9)
                try:
                    event = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    return
                if since is not None and past and event.time_nano <= past[-1].time_nano:
                    continue  # already replayed
                if until is not None and event.time_nano > until:
                    return
                if _event_matches(event, filters):
                    yield json.dumps(event.to_engine_api()).encode() + b"\n"
        finally:
            bus.unsubscribe(queue)

    return StreamingResponse(stream(), media_type="application/json")


def routes() -> list[Route]:
    return [
        Route("/_ping", ping, methods=["GET", "HEAD"]),
        Route("/version", version),
        Route("/info", info),
        Route("/auth", auth, methods=["POST"]),
        Route("/events", events),
        Route("/dockyard/plugins", plugin_list),
    ]
