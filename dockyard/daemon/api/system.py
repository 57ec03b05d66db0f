"""System routes: ``/_ping``, ``/version``, ``/info``, ``/auth``, ``/events`` and
``/dockyard/plugins``."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import time
import urllib.parse
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
from dockyard.core.timestamps import now_rfc3339
from dockyard.daemon.api.middleware import API_VERSION, MIN_API_VERSION, api_older_than
from dockyard.daemon.api.params import parse_filters, parse_timestamp
from dockyard.daemon.distribution.authconfig import decode_auth_body
from dockyard.daemon.distribution.service import RegistryService
from dockyard.daemon.engine import Engine
from dockyard.linux import cgroups

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
    return _os_release_field("PRETTY_NAME") or platform.system()


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _os_release_field(name: str) -> str:
    """A field of /etc/os-release (dockerd's ``OSVersion`` is ``VERSION_ID``), else ""."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith(f"{name}="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return ""


_NO_COMMIT = {"ID": "N/A", "Expected": "N/A"}


def cgroup_limits(found: cgroups.Capabilities) -> dict[str, bool]:
    """``/info``'s cgroup capability fields: what this host's cgroups can limit (as dockerd
    finds it) and this engine applies. Kernel memory limits are refused (unapplied.py), so
    they are reported absent whatever the kernel has."""
    return {
        "MemoryLimit": found.memory_limit,
        "SwapLimit": found.swap_limit,
        "KernelMemory": False,
        "KernelMemoryTCP": False,
        "CpuCfsPeriod": found.cpu_cfs,
        "CpuCfsQuota": found.cpu_cfs,
        "CPUShares": found.cpu_shares,
        "CPUSet": found.cpuset,
        "PidsLimit": found.pids_limit,
        "OomKillDisable": found.oom_kill_disable,
    }


def _proc_flag(path: str) -> bool:
    try:
        return Path(path).read_text().strip() == "1"
    except OSError:
        return False


def host_forwarding() -> dict[str, bool]:
    """The host's forwarding switches, read as dockerd reads them (absent means off)."""
    return {
        "IPv4Forwarding": _proc_flag("/proc/sys/net/ipv4/ip_forward"),
        "BridgeNfIptables": _proc_flag("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        "BridgeNfIp6tables": _proc_flag("/proc/sys/net/bridge/bridge-nf-call-ip6tables"),
    }


def info_warnings(
    found: cgroups.Capabilities, limits: dict[str, bool], host_network: dict[str, bool]
) -> list[str]:
    """``/info``'s ``Warnings`` for what is missing, in dockerd's words and order (the docker
    CLI prints them under ``docker info``)."""
    v1 = found.version == 1
    missing = [
        (limits["MemoryLimit"], "No memory limit support"),
        (limits["SwapLimit"], "No swap limit support"),
        # v2 has neither: dockerd says nothing there, as no one can act on it.
        (limits["KernelMemoryTCP"] or not v1, "No kernel memory TCP limit support"),
        (limits["OomKillDisable"] or not v1, "No oom kill disable support"),
        (limits["CpuCfsQuota"], "No cpu cfs quota support"),
        (limits["CpuCfsPeriod"], "No cpu cfs period support"),
        (limits["CPUShares"], "No cpu shares support"),
        (limits["CPUSet"], "No cpuset support"),
        (host_network["IPv4Forwarding"], "IPv4 forwarding is disabled"),
        (host_network["BridgeNfIptables"], "bridge-nf-call-iptables is disabled"),
        (host_network["BridgeNfIp6tables"], "bridge-nf-call-ip6tables is disabled"),
    ]
    return [f"WARNING: {text}" for present, text in missing if not present]


def proxies() -> dict[str, str]:
    """The proxies the daemon's environment gives it, as dockerd reports them (credentials in
    a proxy's URL masked)."""

    def first(*names: str) -> str:
        return next((os.environ[name] for name in names if os.environ.get(name)), "")

    return {
        "HttpProxy": _mask_password(first("HTTP_PROXY", "http_proxy")),
        "HttpsProxy": _mask_password(first("HTTPS_PROXY", "https_proxy")),
        "NoProxy": first("NO_PROXY", "no_proxy"),
    }


def _mask_password(url: str) -> str:
    """As dockerd: a URL with user information gets ``xxxxx:xxxxx`` in its place."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    netloc = f"xxxxx:xxxxx@{parts.netloc.rpartition('@')[2]}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


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
    cgroup_capabilities = cgroups.capabilities()
    limits = cgroup_limits(cgroup_capabilities)
    host_network = host_forwarding()
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
        **limits,
        "IPv4Forwarding": host_network["IPv4Forwarding"],
        "BridgeNfIptables": host_network["BridgeNfIptables"],
        "BridgeNfIp6tables": host_network["BridgeNfIp6tables"],
        "Debug": service.config.daemon.log_level == "debug",
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0,
        "SystemTime": now_rfc3339(),
        "LoggingDriver": service.config.daemon.log_driver,
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": str(cgroup_capabilities.version),
        "NEventsListener": service.events.subscriber_count if service.events else 0,
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_pretty_name(),
        "OSVersion": _os_release_field("VERSION_ID"),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": registries.index_server_address,
        "RegistryConfig": registries.policy.registry_config(),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "GenericResources": None,
        "DockerRootDir": str(service.data_root),
        **proxies(),
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
            "Error": "",
            "RemoteManagers": None,
        },
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        # There is no containerd, and dockyard's runtimes and init are its own: dockerd's "N/A"
        # for a version it cannot find.
        "ContainerdCommit": _NO_COMMIT,
        "RuncCommit": _NO_COMMIT,
        "InitCommit": _NO_COMMIT,
        # As dockerd lists it; `docker info` shows it under "Security Options".
        "SecurityOptions": security_options(
            bool(service.containers and service.containers.remapped)
        ),
        "Warnings": info_warnings(cgroup_capabilities, limits, host_network) or None,
        # dockyard's own section; the docker CLI ignores fields it does not know.
        "Dockyard": {
            "ConfigFile": service.config.source,
            "Python": sys.version.split()[0],
            "Plugins": [report.to_json() for report in plugins.report()],
        },
    }
    return JSONResponse(info_for_version(body, request))


def info_for_version(body: dict[str, Any], request: Request) -> dict[str, Any]:
    """``/info`` as dockerd 20.10 answers older clients: before 1.25 with the long-gone
    ``ExecutionDriver`` and ``SecurityOptions`` as names only; before 1.39 with "<unknown>"
    for a kernel or OS it could not find."""
    if api_older_than(request, "1.25"):
        names = [
            dict(part.split("=", 1) for part in option.split(",")).get("name", "")
            for option in body["SecurityOptions"]
        ]
        return {**body, "ExecutionDriver": "<not supported>", "SecurityOptions": names}
    if api_older_than(request, "1.39"):
        return {
            **body,
            "KernelVersion": body["KernelVersion"] or "<unknown>",
            "OperatingSystem": body["OperatingSystem"] or "<unknown>",
        }
    return body


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
