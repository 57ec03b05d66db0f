"""Host ports for published container ports: checking a request, and finding one free.

Shared by the network drivers that publish ports with DNAT rules (``bridge``, ``cni``): a DNAT
rule takes a port without binding it, so whether it is free is checked here, against the
bindings the driver already holds and against the host's own sockets, and ``port 0`` is turned
into a free port the way docker's proxy gets one: from the kernel's ephemeral range.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Sequence

import attrs

from dockyard.core.errors import Conflict, InvalidParameter
from dockyard.core.interfaces import PortBinding

PROTOCOLS = ("tcp", "udp")

#: What a binding holds on the host: protocol, host address ("" for all of them), port.
Held = tuple[str, str, int]


def checked(port: PortBinding) -> PortBinding:
    """``port`` with its fields checked, and ``0.0.0.0`` spelled as "every address" (``""``)."""
    if port.protocol not in PROTOCOLS:
        raise InvalidParameter(f"invalid protocol {port.protocol!r}: tcp or udp")
    if not 1 <= port.container_port <= 65535:
        raise InvalidParameter(f"invalid container port {port.container_port}")
    if not 0 <= port.host_port <= 65535:
        raise InvalidParameter(f"invalid host port {port.host_port}")
    if port.host_ip in ("", "0.0.0.0"):
        return attrs.evolve(port, host_ip="")
    try:
        host_ip = ipaddress.IPv4Address(port.host_ip)
    except ValueError:
        raise InvalidParameter(f"invalid host IP {port.host_ip!r}: not an IPv4 address") from None
    return attrs.evolve(port, host_ip=str(host_ip))


def held_by(binding: PortBinding) -> Held:
    return (binding.protocol, binding.host_ip, binding.host_port)


def clashes(binding: PortBinding, held: Sequence[Held]) -> bool:
    """Whether ``binding`` wants a port another binding holds (every address overlaps all)."""
    return any(
        protocol == binding.protocol
        and port == binding.host_port
        and (not host_ip or not binding.host_ip or host_ip == binding.host_ip)
        for protocol, host_ip, port in held
    )


def _socket_for(binding: PortBinding) -> socket.socket:
    kind = socket.SOCK_STREAM if binding.protocol == "tcp" else socket.SOCK_DGRAM
    return socket.socket(socket.AF_INET, kind)


def check_free(binding: PortBinding, held: Sequence[Held]) -> None:
    """Raise docker's ``port is already allocated`` Conflict if the host port is taken."""
    where = f"{binding.host_ip or '0.0.0.0'}:{binding.host_port}"
    refused = Conflict(f"Bind for {where} failed: port is already allocated")
    if clashes(binding, held):
        raise refused
    # A server of the host's on that port would be shadowed by the DNAT: refuse, as docker's
    # proxy does when it cannot bind.
    with _socket_for(binding) as probe:
        try:
            probe.bind((binding.host_ip or "0.0.0.0", binding.host_port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise refused from None
            raise InvalidParameter(f"cannot publish on {where}: {exc.strerror}") from None


def free_port(binding: PortBinding, held: Sequence[Held]) -> int:
    """A host port for ``binding`` that no host socket and no binding in ``held`` has."""
    for _ in range(64):
        with _socket_for(binding) as probe:
            # Port 0: the kernel picks a free one from the ephemeral range, as docker's does.
            probe.bind((binding.host_ip or "0.0.0.0", 0))
            port = int(probe.getsockname()[1])
        if not clashes(attrs.evolve(binding, host_port=port), held):
            return port
    raise Conflict("no free host port left in the ephemeral range")


def allocate(requests: Sequence[PortBinding], held: Sequence[Held]) -> list[PortBinding]:
    """``requests`` checked, each with a free host port (chosen where it asks for 0); raises
    before anything is taken if one of them cannot have its port."""
    taken = list(held)
    bound = []
    for request in requests:
        binding = checked(request)
        if binding.host_port == 0:
            binding = attrs.evolve(binding, host_port=free_port(binding, taken))
        else:
            check_free(binding, taken)
        taken.append(held_by(binding))
        bound.append(binding)
    return bound
