"""The container record: what ``docker inspect`` shows, persisted as JSON in the state dir."""

from __future__ import annotations

import calendar
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import attrs

from dockyard.core.interfaces import ContainerSpec, PortBinding, spec_from_json, spec_to_json
from dockyard.core.timestamps import ZERO_TIME, parse_rfc3339_nano
from dockyard.core.units import human_duration
from dockyard.daemon.containers.binds import DEFAULT_PROPAGATION
from dockyard.daemon.containers.config import ContainerConfig, HostConfig, RestartPolicy
from dockyard.daemon.containers.health import STARTING, HealthState, health_from_json
from dockyard.daemon.containers.links import LegacyLink, links_from_json
from dockyard.daemon.containers.options import shown_modes
from dockyard.daemon.containers.process_modes import command_args, user_mounts
from dockyard.daemon.engine_api import ENGINE_API
from dockyard.daemon.images.content import atomic_write
from dockyard.daemon.networks import ports
from dockyard.daemon.networks.manager import address_with_prefix
from dockyard.daemon.networks.records import DEFAULT_BRIDGE, PREDEFINED_DRIVERS, Attachment

RECORD_NAME = "container.json"


@attrs.define
class ContainerState:
    status: str = "created"  # created, running, paused, restarting, exited, dead
    pid: int = 0
    #: The init process's start time (clock ticks since boot): with ``pid``, its identity.
    init_start_time: int = 0
    supervisor_pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    #: Set by ``docker stop``/``kill``; a restart policy does not undo a user's stop.
    stopped_by_user: bool = False
    #: ``State.Health``: set at the first start of a container with a health check.
    health: HealthState | None = attrs.field(default=None, converter=health_from_json)

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused")


@attrs.define
class Container:
    """One container. ``config`` and ``host_config`` are the Engine API documents as
    resolved at create; ``spec`` is what the runtime gets."""

    id: str
    name: str
    created: str
    image_id: str
    image_name: str
    config: ContainerConfig
    host_config: HostConfig
    spec: ContainerSpec
    snapshot: str
    driver: str
    state: ContainerState = attrs.Factory(ContainerState)
    restart_count: int = 0
    #: Names of volumes made for this container alone (``-v /path`` without a source).
    anonymous_volumes: list[str] = attrs.Factory(list)
    #: Volume name by container path, for every named or anonymous volume it mounts.
    volumes: dict[str, str] = attrs.Factory(dict)
    #: Incremented at every exit; attach streams end when it moves.
    exit_generation: int = 0
    #: Its networks, in order (the first is ``eth0``, where ports are published).
    networks: list[Attachment] = attrs.Factory(list)
    #: Its legacy links (``--link``) on the default bridge, in the order given.
    links: list[LegacyLink] = attrs.field(factory=list, converter=links_from_json)
    #: The variables its links gave it at its last start (replaced at the next).
    link_env: list[str] = attrs.Factory(list)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def tty(self) -> bool:
        return self.config.tty

    @property
    def restart_policy(self) -> RestartPolicy:
        return self.host_config.restart_policy

    def save(self, directory: Path) -> None:
        document = {
            "id": self.id,
            "name": self.name,
            "created": self.created,
            "image_id": self.image_id,
            "image_name": self.image_name,
            "config": ENGINE_API.encode(self.config),
            "host_config": ENGINE_API.encode(self.host_config),
            "spec": json.loads(spec_to_json(self.spec)),
            "snapshot": self.snapshot,
            "driver": self.driver,
            "state": attrs.asdict(self.state),
            "restart_count": self.restart_count,
            "anonymous_volumes": self.anonymous_volumes,
            "volumes": self.volumes,
            "exit_generation": self.exit_generation,
            "networks": [attachment.to_json() for attachment in self.networks],
            "links": [attrs.asdict(link) for link in self.links],
            "link_env": self.link_env,
        }
        atomic_write(directory / RECORD_NAME, json.dumps(document).encode())

    @classmethod
    def load(cls, directory: Path) -> Container:
        raw = json.loads((directory / RECORD_NAME).read_text())
        raw.pop("restart_policy", None)  # kept in host_config since records are typed
        raw["spec"] = spec_from_json(json.dumps(raw["spec"]))
        raw["config"] = ENGINE_API.decode(raw["config"], ContainerConfig)
        raw["host_config"] = ENGINE_API.decode(raw["host_config"], HostConfig)
        raw["state"] = ContainerState(**raw["state"])
        raw["networks"] = [Attachment.from_json(entry) for entry in raw.get("networks", [])]
        return cls(**raw)


def _mounts(container: Container) -> list[dict[str, Any]]:
    mounts = []
    # The mode a -v entry gave, as dockerd shows it; --mount and --volumes-from ones show none.
    modes = shown_modes(container.host_config.binds)
    for mount in user_mounts(container.spec, container.host_config.init):
        volume = container.volumes.get(mount.destination, "")
        is_volume = bool(volume)
        mounts.append(
            {
                "Type": "volume" if is_volume else "bind",
                "Name": volume,
                "Source": mount.source,
                "Destination": mount.destination,
                "Driver": "local" if is_volume else "",
                "Mode": modes.get(mount.destination, ""),
                "RW": not mount.read_only,
                "Propagation": "" if is_volume else mount.propagation or DEFAULT_PROPAGATION,
            }
        )
    # As dockerd lists them: a --mount tmpfs, not a --tmpfs (HostConfig.Tmpfs shows those).
    for entry in container.host_config.mounts or ():
        if entry.type == "tmpfs":
            mounts.append(
                {
                    "Type": "tmpfs",
                    "Source": "",
                    "Destination": entry.target,
                    "Mode": "",
                    "RW": not entry.read_only,
                    "Propagation": "",
                }
            )
    return mounts


def _endpoint_json(container: Container, attachment: Attachment) -> dict[str, Any]:
    endpoint = attachment.endpoint if container.state.running else None
    address, prefix = address_with_prefix(endpoint.ipv4 if endpoint else "")
    user_defined = PREDEFINED_DRIVERS.get(attachment.network_name) is None
    aliases = list(attachment.aliases)
    # Other containers resolve the short id on user-defined networks; dockerd lists it from
    # the container's first start. docker-compose 1.29 reconnects a network whose endpoint
    # lacks it, before that start, to send the service's links with the endpoint.
    if user_defined and container.state.started_at != ZERO_TIME:
        aliases.append(container.short_id)
    return {
        "IPAMConfig": {"IPv4Address": attachment.ipv4} if attachment.ipv4 else None,
        "Links": attachment.links or None,
        "Aliases": (aliases or None) if user_defined else None,
        "NetworkID": attachment.network_id,
        "EndpointID": endpoint.id if endpoint else "",
        "Gateway": endpoint.gateway if endpoint else "",
        "IPAddress": address,
        "IPPrefixLen": prefix,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "MacAddress": endpoint.mac if endpoint else "",
        "DriverOpts": None,
    }


def published_ports(container: Container) -> list[PortBinding]:
    if not container.state.running:
        return []
    return [port for attachment in container.networks for port in attachment.ports]


def listed_exposed_ports(container: Container) -> dict[str, Any] | None:
    """The exposed ports dockerd lists (inspect's and ps's ``Ports``): only while the
    container runs with an address on a network, where a port can be reached; none on
    ``host``, ``none`` or another container's network, none once it stops."""
    if container.state.running and any(
        a.endpoint is not None and a.endpoint.ipv4 for a in container.networks
    ):
        return container.config.exposed_ports
    return None


def _network_settings(container: Container) -> dict[str, Any]:
    running = container.state.running
    networks = {a.network_name: _endpoint_json(container, a) for a in container.networks}
    # The top-level fields describe the default bridge's endpoint only, as in dockerd.
    default = networks.get(DEFAULT_BRIDGE) or {}
    return {
        "Bridge": "",
        "SandboxID": hashlib.sha256(container.id.encode()).hexdigest() if running else "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": (
            ports.engine_ports(listed_exposed_ports(container), published_ports(container))
            if running
            else {}
        ),
        "SandboxKey": container.spec.netns if running else "",
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": default.get("EndpointID", ""),
        "Gateway": default.get("Gateway", ""),
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": default.get("IPAddress", ""),
        "IPPrefixLen": default.get("IPPrefixLen", 0),
        "IPv6Gateway": "",
        "MacAddress": default.get("MacAddress", ""),
        "Networks": networks,
    }


#: Fields dockerd leaves out of an inspect while they are empty (Go's ``omitempty``).
CONFIG_OMITTED = (
    "ExposedPorts",
    "Healthcheck",
    "ArgsEscaped",
    "NetworkDisabled",
    "MacAddress",
    "StopSignal",
    "StopTimeout",
    "Shell",
)
_HOST_OMITTED = ("Mounts", "StorageOpt", "Tmpfs", "Sysctls", "Init", "Runtime", "Annotations")


def as_dockerd_shows(encoded: dict[str, Any], omitted: tuple[str, ...]) -> dict[str, Any]:
    """``encoded`` without the ``omitted`` keys that are empty, and ``MemorySwappiness``
    -1 ("not set", as the docker CLI sends it) as dockerd shows it: null."""
    shown = {
        k: v
        for k, v in encoded.items()
        if not (k in omitted and (v is None or v is False or v in ("", [], {})))
    }
    if shown.get("MemorySwappiness") == -1:
        shown["MemorySwappiness"] = None
    return shown


def inspect(container: Container, exec_ids: list[str]) -> dict[str, Any]:
    """``GET /containers/{id}/json``: every object the docker CLI dereferences is present."""
    state = container.state
    entrypoint_and_cmd = list(command_args(container.spec, container.host_config.init))
    etc_files = {destination: host_file for host_file, destination in container.spec.etc_files}
    return {
        "Id": container.id,
        "Created": container.created,
        "Path": entrypoint_and_cmd[0] if entrypoint_and_cmd else "",
        "Args": entrypoint_and_cmd[1:],
        "State": {
            "Status": state.status,
            "Running": state.status in ("running", "paused"),
            "Paused": state.status == "paused",
            "Restarting": state.status == "restarting",
            "OOMKilled": state.oom_killed,
            "Dead": state.status == "dead",
            "Pid": state.pid if state.running else 0,
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": state.started_at,
            "FinishedAt": state.finished_at,
            **({"Health": state.health.to_engine_api()} if state.health is not None else {}),
        },
        "Image": container.image_id,
        "ResolvConfPath": etc_files.get("/etc/resolv.conf", ""),
        "HostnamePath": etc_files.get("/etc/hostname", ""),
        "HostsPath": etc_files.get("/etc/hosts", ""),
        "LogPath": str(Path(container.spec.state_dir) / "container.log"),
        "Name": f"/{container.name}",
        "RestartCount": container.restart_count,
        "Driver": container.driver,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": exec_ids or None,
        "HostConfig": as_dockerd_shows(ENGINE_API.encode(container.host_config), _HOST_OMITTED),
        "GraphDriver": {"Name": container.driver, "Data": {}},
        "Mounts": _mounts(container),
        "Config": as_dockerd_shows(ENGINE_API.encode(container.config), CONFIG_OMITTED),
        "NetworkSettings": _network_settings(container),
    }


def status_text(state: ContainerState, now: float | None = None) -> str:
    """``docker ps``'s STATUS column: "Up 3 seconds", "Exited (0) 2 minutes ago"."""
    now = time.time() if now is None else now

    def ago(stamp: str) -> str:
        seconds = max(0.0, now - parse_rfc3339_nano(stamp) / 1e9)
        return human_duration(seconds)

    if state.status == "running":
        if state.health is not None:
            # dockerd's words: "(health: starting)", "(healthy)", "(unhealthy)".
            health = "health: starting" if state.health.status == STARTING else state.health.status
            return f"Up {ago(state.started_at)} ({health})"
        return f"Up {ago(state.started_at)}"
    if state.status == "paused":
        return f"Up {ago(state.started_at)} (Paused)"
    if state.status == "restarting":
        return f"Restarting ({state.exit_code}) {ago(state.finished_at)} ago"
    if state.status == "exited":
        return f"Exited ({state.exit_code}) {ago(state.finished_at)} ago"
    if state.status == "dead":
        return "Dead"
    return "Created"


def summary(container: Container) -> dict[str, Any]:
    """One item of ``GET /containers/json``."""
    args = list(command_args(container.spec, container.host_config.init))
    return {
        "Id": container.id,
        "Names": [f"/{container.name}"],
        "Image": container.image_name,
        "ImageID": container.image_id,
        # dockerd quotes the arguments that hold a space: sh -c 'echo a b'.
        "Command": " ".join(f"'{arg}'" if " " in arg else arg for arg in args),
        "Created": calendar.timegm(time.strptime(container.created[:19], "%Y-%m-%dT%H:%M:%S")),
        "Ports": ports.summary_ports(listed_exposed_ports(container), published_ports(container)),
        "Labels": container.config.labels or {},
        "State": container.state.status,
        "Status": status_text(container.state),
        "HostConfig": {"NetworkMode": container.host_config.network_mode or "default"},
        "NetworkSettings": {"Networks": _network_settings(container)["Networks"]},
        "Mounts": _mounts(container),
    }
