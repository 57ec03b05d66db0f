"""Published ports as the Engine API carries them: ``ExposedPorts``, ``PortBindings``, ``-P``.

``HostConfig.PortBindings`` maps ``"80/tcp"`` to ``[{"HostIp": "", "HostPort": "8080"}]``
(the docker CLI turns ``-p`` specs into this, ranges expanded); ``PublishAllPorts`` (``-P``)
publishes every exposed port on a host port the driver picks. These functions check them at
create (a 400 naming the bad entry) and turn them into the drivers' records.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dockyard.core.errors import InvalidParameter
from dockyard.core.interfaces import PortBinding
from dockyard.daemon.containers.config import PortBinding as RequestedBinding

PROTOCOLS = ("tcp", "udp")


def parse_port_key(key: str) -> tuple[int, str]:
    """``"80/tcp"`` (or ``"80"``, tcp) as (port, protocol)."""
    number, _, protocol = key.partition("/")
    protocol = (protocol or "tcp").lower()
    if protocol == "sctp":
        raise InvalidParameter(f"invalid port {key!r}: sctp ports are not supported")
    if protocol not in PROTOCOLS:
        raise InvalidParameter(f"invalid proto: {protocol}")
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise InvalidParameter(f"invalid containerPort: {number}")
    return int(number), protocol


def _host_ip(text: str, key: str) -> str:
    if text in ("", "0.0.0.0"):
        return ""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidParameter(f"invalid IP address {text!r} in the binding of {key}") from None
    if address.version != 4:
        raise InvalidParameter(f"HostIp {text} of {key}: IPv6 host addresses are not supported")
    return str(address)


def _host_port(text: str, key: str) -> int:
    if text == "":
        return 0
    if "-" in text:
        raise InvalidParameter(
            f"HostPort {text} of {key}: a range of host ports for one container port is not "
            "supported; give one port, or none to have one picked"
        )
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise InvalidParameter(f"invalid hostPort: {text}")
    return int(text)


def exposed(keys: Iterable[str]) -> list[tuple[int, str]]:
    """Each ``ExposedPorts`` key checked, in order, once."""
    return list(dict.fromkeys(parse_port_key(key) for key in keys))


def requested(
    exposed_ports: Mapping[str, Any] | None,
    bindings: Mapping[str, Sequence[RequestedBinding] | None] | None,
    publish_all: bool,
) -> list[PortBinding]:
    """The ports to publish when the container starts (host port 0: the driver picks)."""
    wanted: list[PortBinding] = []
    bound = set()
    for key, entries in (bindings or {}).items():
        port, protocol = parse_port_key(key)
        bound.add((port, protocol))
        for entry in entries or [RequestedBinding()]:
            wanted.append(
                PortBinding(
                    protocol, port, _host_ip(entry.host_ip, key), _host_port(entry.host_port, key)
                )
            )
    if publish_all:
        for port, protocol in exposed(exposed_ports or {}):
            if (port, protocol) not in bound:
                wanted.append(PortBinding(protocol, port))
    return list(dict.fromkeys(wanted))


def engine_ports(
    exposed_ports: Mapping[str, Any] | None, published: Sequence[PortBinding]
) -> dict[str, list[dict[str, str]] | None]:
    """``NetworkSettings.Ports``: every exposed or published port, ``None`` when unpublished."""
    ports: dict[str, list[dict[str, str]] | None] = {
        f"{port}/{protocol}": None for port, protocol in exposed(exposed_ports or {})
    }
    for binding in published:
        key = f"{binding.container_port}/{binding.protocol}"
        ports.setdefault(key, None)
        ports[key] = [
            *(ports[key] or []),
            {"HostIp": binding.host_ip or "0.0.0.0", "HostPort": str(binding.host_port)},
        ]
    return ports


def summary_ports(
    exposed_ports: Mapping[str, Any] | None, published: Sequence[PortBinding]
) -> list[dict[str, Any]]:
    """The ``Ports`` of a ``GET /containers/json`` item, as dockerd lists them."""
    items: list[dict[str, Any]] = []
    seen = set()
    for binding in published:
        seen.add((binding.container_port, binding.protocol))
        items.append(
            {
                "IP": binding.host_ip or "0.0.0.0",
                "PrivatePort": binding.container_port,
                "PublicPort": binding.host_port,
                "Type": binding.protocol,
            }
        )
    for port, protocol in exposed(exposed_ports or {}):
        if (port, protocol) not in seen:
            items.append({"PrivatePort": port, "Type": protocol})
    return items
