"""The ``/networks`` API's request bodies, and the records the daemon keeps of its networks.

Request bodies are typed at the boundary (:data:`~dockyard.daemon.engine_api.ENGINE_API`);
the records are what the daemon persists: one JSON file per network, with the state its driver
returned (:class:`~dockyard.core.interfaces.NetworkState`), handed back to the driver on every
later call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from dockyard.core.decoding import json_key
from dockyard.core.errors import InvalidParameter
from dockyard.core.interfaces import EndpointState, IpamRequest, NetworkState, PortBinding, Subnet
from dockyard.daemon.containers.config import EndpointSettings
from dockyard.daemon.images.content import atomic_write

#: The networks every daemon has, by name, with their driver: docker's predefined networks.
DEFAULT_BRIDGE = "bridge"
PREDEFINED_DRIVERS = {"bridge": "bridge", "host": "host", "none": "null"}


# --------------------------------------------------------------------------------------------
# request bodies
# --------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class IPAMPool:
    subnet: str = ""
    ip_range: str = json_key("IPRange", default="")
    gateway: str = ""
    auxiliary_addresses: dict[str, str] | None = None


@attrs.frozen(kw_only=True)
class IPAM:
    driver: str = ""
    config: list[IPAMPool] | None = None
    options: dict[str, str] | None = None


@attrs.frozen(kw_only=True)
class NetworkCreateRequest:
    """The body of ``POST /networks/create``."""

    name: str = ""
    check_duplicate: bool = False
    driver: str = ""
    scope: str = ""
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    config_only: bool = False
    config_from: dict[str, str] | None = None
    ipam: IPAM | None = json_key("IPAM", default=None)
    enable_ipv6: bool = json_key("EnableIPv6", default=False)
    options: dict[str, str] | None = None
    labels: dict[str, str] | None = None


@attrs.frozen(kw_only=True)
class NetworkConnectRequest:
    container: str = ""
    endpoint_config: EndpointSettings | None = None


@attrs.frozen(kw_only=True)
class NetworkDisconnectRequest:
    container: str = ""
    force: bool = False


# --------------------------------------------------------------------------------------------
# what the daemon keeps
# --------------------------------------------------------------------------------------------


@attrs.define
class NetworkRecord:
    """A network: what was asked for, and what its driver made (``state``)."""

    id: str
    name: str
    driver: str
    created: str
    state: NetworkState
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = attrs.Factory(dict)
    options: dict[str, str] = attrs.Factory(dict)
    ipam: tuple[IpamRequest, ...] = ()

    @property
    def predefined(self) -> bool:
        return PREDEFINED_DRIVERS.get(self.name) == self.driver and self.name != ""

    @property
    def user_defined(self) -> bool:
        """Networks whose containers resolve each other's names (not docker's predefined)."""
        return not self.predefined

    def save(self, directory: Path) -> None:
        atomic_write(directory / f"{self.id}.json", json.dumps(attrs.asdict(self)).encode())

    @classmethod
    def load(cls, path: Path) -> NetworkRecord:
        raw = json.loads(path.read_text())
        raw["state"] = network_state_from(raw["state"])
        raw["ipam"] = tuple(IpamRequest(**entry) for entry in raw["ipam"])
        return cls(**raw)


def parse_link(link: str) -> tuple[str, str]:
    """``container[:alias]`` as (container name, alias); the alias defaults to the name."""
    name, _, alias = link.partition(":")
    name = name.removeprefix("/")
    if not name or ":" in alias or (link.count(":") == 1 and not alias):
        raise InvalidParameter(f"EndpointConfig.Links: bad format for links: {link}")
    return name, alias or name


def network_state_from(raw: dict[str, Any]) -> NetworkState:
    return NetworkState(**{**raw, "subnets": tuple(Subnet(**s) for s in raw["subnets"])})


@attrs.define
class Attachment:
    """A container's place on one network: what it asked for, and, while it runs, its
    endpoint and the ports published on it."""

    network_id: str
    network_name: str
    aliases: list[str] = attrs.Factory(list)
    ipv4: str = ""  # asked for (--ip); the endpoint holds the one it got
    mac: str = ""
    endpoint: EndpointState | None = None
    ports: list[PortBinding] = attrs.Factory(list)
    #: ``container[:alias]`` as given (EndpointConfig.Links): on a user-defined network, the
    #: alias names that container for this one only, as dockerd has it (compose sends them).
    links: list[str] = attrs.Factory(list)

    def link_aliases(self) -> dict[str, str]:
        """The container name each link alias stands for (lower case, as DNS compares)."""
        return {alias.lower(): name for name, alias in map(parse_link, self.links)}

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Attachment:
        endpoint = raw.get("endpoint")
        return cls(
            **{
                **raw,
                "endpoint": (
                    EndpointState(
                        **{
                            **endpoint,
                            "dns_servers": tuple(endpoint["dns_servers"]),
                            "dns_search": tuple(endpoint["dns_search"]),
                        }
                    )
                    if endpoint
                    else None
                ),
                "ports": [PortBinding(**port) for port in raw.get("ports", [])],
            }
        )
