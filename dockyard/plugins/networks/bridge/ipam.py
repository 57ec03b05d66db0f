"""Address management of the bridge driver: subnets from pools, addresses from subnets.

Pure functions over :mod:`ipaddress` objects: what is taken comes from the kernel (the host's
routes, the driver's bridges and veths), read by the caller, so nothing here keeps state.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Sequence

import attrs

from dockyard.core.errors import Conflict, InvalidParameter

Network = ipaddress.IPv4Network
Address = ipaddress.IPv4Address


@attrs.frozen
class Pool:
    """A range subnets are cut from: ``base`` split into subnets of prefix length ``size``."""

    base: Network
    size: int

    def subnets(self) -> Iterator[Network]:
        return self.base.subnets(new_prefix=self.size)


#: dockerd's default pools: 172.17-31.0.0/16, then 192.168.0.0/20 slices.
DEFAULT_POOLS = (
    Pool(ipaddress.IPv4Network("172.17.0.0/16"), 16),
    Pool(ipaddress.IPv4Network("172.18.0.0/15"), 16),
    Pool(ipaddress.IPv4Network("172.20.0.0/14"), 16),
    Pool(ipaddress.IPv4Network("172.24.0.0/13"), 16),
    Pool(ipaddress.IPv4Network("192.168.0.0/16"), 20),
)


def parse_network(text: str, what: str) -> Network:
    try:
        return ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise InvalidParameter(
            f"invalid {what} {text!r}: not an IPv4 CIDR (IPv6 is not supported yet)"
        ) from None


def parse_address(text: str, what: str) -> Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidParameter(f"invalid {what} {text!r}: not an IPv4 address") from None


def parse_pools(entries: Sequence[dict[str, str | int]], where: str) -> tuple[Pool, ...]:
    """``default-address-pools`` entries as dockerd spells them: ``{base = "...", size = 24}``."""
    pools = []
    for entry in entries:
        if set(entry) != {"base", "size"}:
            raise InvalidParameter(f"{where}: each pool is {{base = CIDR, size = N}}, got {entry}")
        base, size = entry["base"], entry["size"]
        if not isinstance(base, str) or not isinstance(size, int):
            raise InvalidParameter(f"{where}: base is a string and size an integer, got {entry}")
        network = parse_network(base, f"{where} base")
        if not network.prefixlen <= size <= 30:
            raise InvalidParameter(
                f"{where}: size {size} must be between the base's prefix {network.prefixlen} and 30"
            )
        pools.append(Pool(network, size))
    return tuple(pools)


def first_free_subnet(pools: Iterable[Pool], taken: Sequence[Network]) -> Network:
    """The first subnet of ``pools`` overlapping nothing ``taken`` (routes, other networks)."""
    for pool in pools:
        for candidate in pool.subnets():
            if not any(candidate.overlaps(other) for other in taken):
                return candidate
    raise Conflict(
        "could not find an available, non-overlapping IPv4 address pool "
        "among the defaults to assign to the network"
    )


def check_no_overlap(subnet: Network, networks: Sequence[Network]) -> None:
    for other in networks:
        if subnet.overlaps(other):
            raise Conflict(
                f"Pool overlaps with other one on this address space: {subnet} and {other}"
            )


def host_addresses(subnet: Network) -> Iterator[Address]:
    return subnet.hosts() if subnet.prefixlen < 31 else iter(subnet)


def pick_address(
    subnet: Network, ip_range: Network | None, gateway: Address, taken: Iterable[Address]
) -> Address:
    """The first address of ``ip_range`` (or the subnet) that is not the gateway nor taken."""
    used = set(taken) | {gateway}
    for address in host_addresses(ip_range or subnet):
        if address in subnet and address not in used and address != subnet.broadcast_address:
            return address
    raise Conflict(f"no available IPv4 addresses on this network's address pools: {subnet}")


def check_requested(
    address: Address, subnet: Network, gateway: Address, taken: Iterable[Address]
) -> None:
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise InvalidParameter(f"invalid IPv4 address {address}: not a host address of {subnet}")
    if address == gateway or address in set(taken):
        raise Conflict(f"Address already in use: {address}")
