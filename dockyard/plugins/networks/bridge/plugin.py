"""Network driver ``bridge``: docker's bridge networks, on a Linux bridge per network.

* A network is a bridge (``dy-<first 12 of the id>``; the default network's ``dockyard0``;
  ``com.docker.network.bridge.name`` chooses) holding the gateway address of its subnet.
* An endpoint is a veth pair: the host end on the bridge, the peer moved into the container's
  namespace file, renamed (``eth0``), addressed, with a default route via the gateway.
* Subnets come from the pools of :mod:`.ipam` (``default-address-pools``, ``bip`` for the
  default network), avoiding every route the host has and every network of this driver.
* The firewall is :mod:`.firewall`'s table: masquerade, isolation, published ports (DNAT, with
  ``route_localnet`` on the bridge so that 127.0.0.1 works without a proxy process, and keeps
  working while the daemon is down).
* Where an iptables ``FORWARD`` policy is ``DROP`` (dockerd sets it), :mod:`.forward` adds
  accept rules for the driver's bridges in a chain of its own; checked at each network's
  creation, each connect and each restore, since dockerd may start after this daemon.

Ownership lives in the kernel: each bridge's alias is ``<instance>:net:<network id>`` and each
veth host end's ``<instance>:ep:<endpoint id>:<address>``; each rule's comment names its
owner. That is how addresses in use, published ports and leftovers after a restart are found
without any state of the driver's own. All netlink goes through pyroute2.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from dockyard.core.config import option
from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind
from dockyard.core.errors import (
    ConfigError,
    Conflict,
    DriverUnavailable,
    InvalidParameter,
    NotFound,
)
from dockyard.core.hookspecs import hookimpl
from dockyard.core.interfaces import (
    EndpointSpec,
    EndpointState,
    NetworkSpec,
    NetworkState,
    PortBinding,
    Subnet,
    reconnection_of,
)
from dockyard.linux import hostports, netns
from dockyard.plugins.networks.bridge import ipam
from dockyard.plugins.networks.bridge.firewall import (
    Firewall,
    check_available,
    parse_port_comment,
)
from dockyard.plugins.networks.bridge.forward import Bridge, ForwardAccepts

#: Options of docker's bridge driver this one knows; any other is refused.
OPTION_NAME = "com.docker.network.bridge.name"
OPTION_DEFAULT = "com.docker.network.bridge.default_bridge"
OPTION_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
OPTION_MTU = "com.docker.network.driver.mtu"
KNOWN_OPTIONS = (OPTION_NAME, OPTION_DEFAULT, OPTION_MASQUERADE, OPTION_MTU)
DEFAULT_INSTANCE = "dockyard"
DEFAULT_DATA_ROOT = Path("/var/lib/dockyard")
#: Held while a subnet is chosen and its bridge made: daemons of one host (each with its own
#: instance) must not pick the same free subnet at the same moment.
HOST_LOCK = Path("/run/lock/dockyard-bridge-subnets.lock")


@attrs.frozen
class BridgeConfig:
    default_address_pools: list[dict[str, str | int]] = option(
        [],
        "subnets for networks that ask for none, as dockerd's: [{base = CIDR, size = N}]; "
        "empty: dockerd's own (172.17-31.0.0/16, then 192.168.0.0/16 in /20s)",
    )
    bip: str = option("", "the default network's gateway address and prefix (172.17.0.1/16)")
    instance: str = option(
        "",
        "name of the nftables table and mark of the links, one per daemon; empty: dockyard "
        "for the default data root, else dy and a hash of the data root (daemons never share)",
    )
    ip_forward: bool = option(True, "turn on net.ipv4.ip_forward, for outbound traffic")


def _names(prefix: str, key: str) -> str:
    # Interface names have 15 bytes; a hash keeps them short, fixed and unique per key.
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:10]


@attrs.frozen
class _Link:
    index: int
    name: str
    alias: str
    master: int


def _ipr() -> Any:
    from pyroute2 import IPRoute  # imported when used: building the driver stays cheap

    return IPRoute()


def _netlink_error() -> type[Exception]:
    from pyroute2 import NetlinkError

    return NetlinkError


class BridgeNetwork:
    """Docker's ``bridge`` driver. Thread-safe as far as the kernel is: each call works on the
    objects of one network or endpoint, and a port is checked free just before it is taken."""

    def __init__(self, config: BridgeConfig) -> None:
        where = "networks.bridge.default-address-pools"
        self.pools = ipam.parse_pools(config.default_address_pools, where) or ipam.DEFAULT_POOLS
        self.bip = config.bip
        if self.bip:
            ipam.parse_network(self.bip, "networks.bridge.bip")
        self.instance = config.instance or DEFAULT_INSTANCE
        #: The default network's bridge: dockyard0 for the default instance, else <instance>0.
        self.default_bridge = f"{self.instance}0"
        self.ip_forward = config.ip_forward
        self.firewall = Firewall(config.instance)
        self.forward = ForwardAccepts(self.instance)
        # Choosing a subnet, an address or a host port reads what is taken from the kernel and
        # then takes one: two threads of the daemon must not choose the same. Not state: a
        # lock only orders this process's calls.
        self._choosing = threading.RLock()

    # ------------------------------------------------------------ the kernel, read

    def _links(self, ipr: Any) -> list[_Link]:
        return [
            _Link(
                link["index"],
                link.get_attr("IFLA_IFNAME"),
                link.get_attr("IFLA_IFALIAS") or "",
                link.get_attr("IFLA_MASTER") or 0,
            )
            for link in ipr.get_links()
        ]

    def _mark(self, what: str, owner: str) -> str:
        return f"{self.instance}:{what}:{owner}"

    def _owned(self, links: Sequence[_Link], what: str) -> Iterator[tuple[_Link, str]]:
        prefix = f"{self.instance}:{what}:"
        for link in links:
            if link.alias.startswith(prefix):
                yield link, link.alias[len(prefix) :]

    def _own_subnets(self, ipr: Any) -> list[ipam.Network]:
        bridges = {link.index for link, _ in self._owned(self._links(ipr), "net")}
        return [
            ipaddress.IPv4Network(
                f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}", strict=False
            )
            for addr in ipr.get_addr(family=socket.AF_INET)
            if addr["index"] in bridges
        ]

    def _host_routes(self, ipr: Any) -> list[ipam.Network]:
        routes = []
        for route in ipr.get_routes(family=socket.AF_INET):
            if route["dst_len"] == 0 or route.get_attr("RTA_TABLE") == 255:
                continue  # the default route and the local table's host addresses
            routes.append(ipaddress.IPv4Network(f"{route.get_attr('RTA_DST')}/{route['dst_len']}"))
        return routes

    # ------------------------------------------------------------ networks

    def create_network(self, spec: NetworkSpec) -> NetworkState:
        unknown = sorted(set(spec.options) - set(KNOWN_OPTIONS))
        if unknown:
            raise InvalidParameter(f"unknown option of network driver bridge: {', '.join(unknown)}")
        if spec.enable_ipv6:
            raise InvalidParameter("enable_ipv6: IPv6 networks are not supported yet")
        if len(spec.ipam) > 1:
            raise InvalidParameter("a bridge network has one IPv4 subnet: several were given")
        default = spec.options.get(OPTION_DEFAULT, "false") == "true"
        bridge = spec.options.get(OPTION_NAME) or (
            self.default_bridge if default else f"dy-{spec.id[:12]}"
        )
        if len(bridge.encode()) > 15 or not bridge or "/" in bridge or " " in bridge:
            raise InvalidParameter(
                f"invalid {OPTION_NAME} {bridge!r}: at most 15 bytes, no / or space"
            )
        mtu = _int_option(spec.options, OPTION_MTU, 1500, 68, 65535)
        masquerade = spec.options.get(OPTION_MASQUERADE, "true") != "false"
        with self._choosing, _host_lock(), _ipr() as ipr:
            subnet = self._choose_subnet(ipr, spec, default)
            if ipr.link_lookup(ifname=bridge):
                raise Conflict(f"network interface {bridge} already exists on the host")
            state = NetworkState(
                id=spec.id,
                name=spec.name,
                interface=bridge,
                subnets=(subnet,),
                internal=spec.internal,
                data={"mtu": str(mtu), "masquerade": str(masquerade).lower()},
            )
            try:
                self._make_bridge(ipr, state)
                self._apply_network_rules(state)
                self.forward.ensure([_forwarded(state)])
            except BaseException:
                self.forward.remove(_forwarded(state))
                self._remove_bridge(ipr, bridge)
                raise
        return state

    def _choose_subnet(self, ipr: Any, spec: NetworkSpec, default: bool) -> Subnet:
        ours = self._own_subnets(ipr)
        request = spec.ipam[0] if spec.ipam else None
        if request is None and default and self.bip:
            interface = ipaddress.IPv4Interface(self.bip)
            ipam.check_no_overlap(interface.network, ours)
            return Subnet(str(interface.network), str(interface.ip))
        if request is None or not request.subnet:
            if request is not None and (request.gateway or request.ip_range):
                raise InvalidParameter("a gateway or ip-range needs a subnet")
            network = ipam.first_free_subnet(self.pools, ours + self._host_routes(ipr))
            return Subnet(str(network), str(next(ipam.host_addresses(network))))
        network = ipam.parse_network(request.subnet, "subnet")
        if str(network) != request.subnet:
            raise InvalidParameter(f"invalid subnet {request.subnet}: it has host bits set")
        if network.prefixlen > 30:
            raise InvalidParameter(f"subnet {network} is too small for a gateway and a container")
        ipam.check_no_overlap(network, ours)
        ip_range = ""
        if request.ip_range:
            span = ipam.parse_network(request.ip_range, "ip-range")
            if not span.subnet_of(network):
                raise InvalidParameter(f"ip-range {span} is not inside subnet {network}")
            ip_range = str(span)
        if request.gateway:
            gateway = ipam.parse_address(request.gateway, "gateway")
            ipam.check_requested(gateway, network, network.network_address, ())
        else:
            gateway = next(ipam.host_addresses(network))
        return Subnet(str(network), str(gateway), ip_range)

    def _make_bridge(self, ipr: Any, state: NetworkState) -> None:
        subnet = ipaddress.IPv4Network(state.subnets[0].subnet)
        ipr.link("add", ifname=state.interface, kind="bridge")
        (index,) = ipr.link_lookup(ifname=state.interface)
        ipr.link(
            "set", index=index, ifalias=self._mark("net", state.id),
            mtu=int(state.data.get("mtu", "1500")),
        )  # fmt: skip
        ipr.addr("add", index=index, address=state.subnets[0].gateway, prefixlen=subnet.prefixlen)
        # 127.0.0.1 DNATed to a container may leave through this bridge (and only this one).
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{state.interface}/route_localnet", "1")
        ipr.link("set", index=index, state="up")
        if self.ip_forward and not state.internal:
            _write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")

    def _network_rules(self, state: NetworkState) -> list[str]:
        return self.firewall.network_rules(
            state.id,
            state.interface,
            state.subnets[0].subnet,
            internal=state.internal,
            masquerade=state.data.get("masquerade", "true") == "true",
        )

    def _apply_network_rules(self, state: NetworkState) -> None:
        self.firewall.apply(self._network_rules(state))

    def _remove_bridge(self, ipr: Any, name: str) -> None:
        for index in ipr.link_lookup(ifname=name):
            with contextlib.suppress(_netlink_error()):
                ipr.link("del", index=index)

    def delete_network(self, state: NetworkState) -> None:
        with self._choosing, _ipr() as ipr:
            for link in self._links(ipr):
                if link.alias == self._mark("net", state.id):
                    self._remove_bridge(ipr, link.name)
            still_used = any(True for _ in self._owned(self._links(ipr), "net"))
            if still_used:
                mine = [r for r in self.firewall.rules() if r.comment == f"net:{state.id}"]
                self.firewall.delete_rules(mine, bridges=[state.interface])
                self.forward.remove(_forwarded(state))
            else:
                self.firewall.delete_table()  # the last network: nothing of ours stays
                self.forward.remove_all()

    # ------------------------------------------------------------ endpoints

    def connect(self, network: NetworkState, endpoint: EndpointSpec) -> EndpointState:
        if not netns.is_namespace(endpoint.netns):
            raise NotFound(f"network namespace {endpoint.netns} does not exist")
        subnet_record = network.subnets[0]
        subnet = ipaddress.IPv4Network(subnet_record.subnet)
        gateway = ipaddress.IPv4Address(subnet_record.gateway)
        host_end = _names("vd", endpoint.id)
        peer = _names("vp", endpoint.id)
        with self._choosing, _ipr() as ipr:
            bridges = ipr.link_lookup(ifname=network.interface)
            if not bridges:
                raise NotFound(f"network {network.name}: its bridge {network.interface} is gone")
            links = self._links(ipr)
            taken = [
                ipaddress.IPv4Address(owner.rpartition(":")[2])
                for link, owner in self._owned(links, "ep")
                if link.master == bridges[0]
            ]
            if endpoint.ipv4:
                address = ipam.parse_address(endpoint.ipv4, "IPv4 address")
                ipam.check_requested(address, subnet, gateway, taken)
            else:
                span = (
                    ipaddress.IPv4Network(subnet_record.ip_range)
                    if subnet_record.ip_range
                    else None
                )
                address = ipam.pick_address(subnet, span, gateway, taken)
            mac = endpoint.mac.lower() or "02:42:" + ":".join(f"{b:02x}" for b in address.packed)
            _check_mac(mac)
            state = EndpointState(
                id=endpoint.id,
                network_id=network.id,
                container_id=endpoint.container_id,
                netns=endpoint.netns,
                interface_name=endpoint.interface_name,
                host_interface=host_end,
                ipv4=f"{address}/{subnet.prefixlen}",
                gateway="" if network.internal else str(gateway),
                mac=mac,
            )
            try:
                self._plumb(ipr, network, state, peer, bridges[0])
            except BaseException:
                self._remove_bridge(ipr, host_end)  # the peer goes with it
                raise
            # A FORWARD policy set to DROP since the network was made (dockerd started later).
            self.forward.ensure([_forwarded(network)], recheck=False)
        return state

    def _plumb(
        self, ipr: Any, network: NetworkState, state: EndpointState, peer: str, bridge: int
    ) -> None:
        mtu = int(network.data.get("mtu", "1500"))
        try:
            ipr.link("add", ifname=state.host_interface, kind="veth", peer=peer)
        except _netlink_error() as exc:
            if getattr(exc, "code", None) == errno.EEXIST:
                raise Conflict(f"endpoint {state.id} is already connected") from None
            raise
        (host_index,) = ipr.link_lookup(ifname=state.host_interface)
        (peer_index,) = ipr.link_lookup(ifname=peer)
        address = state.ipv4.partition("/")[0]
        ipr.link(
            "set", index=host_index, master=bridge, mtu=mtu,
            ifalias=self._mark("ep", f"{state.id}:{address}"),
        )  # fmt: skip
        fd = os.open(state.netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            ipr.link("set", index=peer_index, net_ns_fd=fd)
        finally:
            os.close(fd)

        def inside() -> None:
            with _ipr() as inner:
                (index,) = inner.link_lookup(ifname=peer)
                inner.link(
                    "set", index=index, ifname=state.interface_name, address=state.mac, mtu=mtu
                )
                prefix = int(state.ipv4.partition("/")[2])
                inner.addr("add", index=index, address=address, prefixlen=prefix)
                inner.link("set", index=index, state="up")
                if state.gateway and not _has_default_route(inner):
                    # The first network with a way out keeps the default route, as in docker.
                    inner.route("add", dst="0.0.0.0/0", gateway=state.gateway)

        netns.run_in(state.netns, inside)
        ipr.link("set", index=host_index, state="up")

    def disconnect(self, network: NetworkState, endpoint: EndpointState) -> None:
        with _ipr() as ipr:
            for link in self._links(ipr):
                if link.alias.startswith(self._mark("ep", endpoint.id + ":")):
                    self._remove_bridge(ipr, link.name)
        stale = [
            rule
            for rule in self.firewall.rules()
            if (port := parse_port_comment(rule.comment)) and port.endpoint_id == endpoint.id
        ]
        self.firewall.delete_rules(stale)

    # ------------------------------------------------------------ ports

    def publish(
        self, network: NetworkState, endpoint: EndpointState, ports: Sequence[PortBinding]
    ) -> list[PortBinding]:
        if network.internal and ports:
            raise InvalidParameter(f"network {network.name} is internal: no port can be published")
        with self._choosing:
            return self._publish(endpoint, ports)

    def _publish(self, endpoint: EndpointState, ports: Sequence[PortBinding]) -> list[PortBinding]:
        published = [
            port for rule in self.firewall.rules() if (port := parse_port_comment(rule.comment))
        ]
        bound = hostports.allocate(ports, [(p.protocol, p.host_ip, p.host_port) for p in published])
        commands = []
        container_ip = endpoint.ipv4.partition("/")[0]
        for binding in bound:
            commands += self.firewall.port_rules(
                endpoint.id, container_ip, binding.protocol, binding.container_port,
                binding.host_ip, binding.host_port,
            )  # fmt: skip
        self.firewall.apply(commands)
        return bound

    def unpublish(
        self, network: NetworkState, endpoint: EndpointState, ports: Sequence[PortBinding]
    ) -> None:
        wanted = {(p.protocol, p.host_ip, p.host_port) for p in ports}
        rules = [
            rule
            for rule in self.firewall.rules()
            if (port := parse_port_comment(rule.comment))
            and port.endpoint_id == endpoint.id
            and (port.protocol, port.host_ip, port.host_port) in wanted
        ]
        self.firewall.delete_rules(rules)

    # ------------------------------------------------------------ restart

    def restore(
        self,
        networks: Sequence[NetworkState],
        endpoints: Sequence[EndpointState],
        ports: Mapping[str, Sequence[PortBinding]],
    ) -> None:
        with self._choosing:
            self._restore(networks, endpoints, ports)

    def _restore(
        self,
        networks: Sequence[NetworkState],
        endpoints: Sequence[EndpointState],
        ports: Mapping[str, Sequence[PortBinding]],
    ) -> None:
        by_id = {network.id: network for network in networks}
        with _ipr() as ipr:
            links = self._links(ipr)
            for link, owner in list(self._owned(links, "net")):
                if owner not in by_id or by_id[owner].interface != link.name:
                    self._remove_bridge(ipr, link.name)
            kept = {link.name for link, _ in self._owned(self._links(ipr), "net")}
            for network in networks:
                if network.interface not in kept:
                    self._make_bridge(ipr, network)
            wanted = {endpoint.id for endpoint in endpoints}
            for link, owner in list(self._owned(self._links(ipr), "ep")):
                if owner.rpartition(":")[0] not in wanted:
                    self._remove_bridge(ipr, link.name)
            present = {link.name for link, _ in self._owned(self._links(ipr), "ep")}
            self._reattach(ipr, by_id, endpoints)
        for endpoint in endpoints:
            home = by_id.get(endpoint.network_id)
            if home is None or endpoint.host_interface in present:
                continue
            if netns.is_namespace(endpoint.netns):  # its container still runs: plumb it again
                self.disconnect(home, endpoint)
                self.connect(home, reconnection_of(endpoint))
        commands = [c for network in networks for c in self._network_rules(network)]
        for endpoint in endpoints:
            container_ip = endpoint.ipv4.partition("/")[0]
            for binding in ports.get(endpoint.id, ()):
                commands += self.firewall.port_rules(
                    endpoint.id, container_ip, binding.protocol, binding.container_port,
                    binding.host_ip, binding.host_port,
                )  # fmt: skip
        if networks:
            self.firewall.replace_all(commands)  # one swap: no moment without the rules
        else:
            self.firewall.delete_table()
        self.forward.replace_all(_forwarded(network) for network in networks)

    def _reattach(
        self, ipr: Any, networks: Mapping[str, NetworkState], endpoints: Sequence[EndpointState]
    ) -> None:
        """Put surviving veths back on their bridge (a bridge made again has no ports)."""
        homes = {e.host_interface: networks.get(e.network_id) for e in endpoints}
        for link, _ in self._owned(self._links(ipr), "ep"):
            home = homes.get(link.name)
            bridge = ipr.link_lookup(ifname=home.interface) if home else []
            if bridge and link.master != bridge[0]:
                ipr.link("set", index=link.index, master=bridge[0], state="up")


def _forwarded(network: NetworkState) -> Bridge:
    return Bridge(network.id, network.interface, network.internal)


def _has_default_route(ipr: Any) -> bool:
    return any(route["dst_len"] == 0 for route in ipr.get_routes(family=socket.AF_INET))


def _int_option(options: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    text = options.get(key)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise InvalidParameter(f"invalid {key} {text!r}: an integer from {low} to {high}")
    return int(text)


def _check_mac(mac: str) -> None:
    parts = mac.split(":")
    if len(parts) != 6 or not all(
        len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts
    ):
        raise InvalidParameter(f"invalid MAC address {mac!r}")
    if int(parts[0], 16) & 1:
        raise InvalidParameter(f"invalid MAC address {mac}: a multicast address")


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    import fcntl

    HOST_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(HOST_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def instance_for(state_dir: Path) -> str:
    """The instance of the daemon whose driver state is ``state_dir`` (root/network/bridge)."""
    data_root = state_dir.parent.parent
    if data_root == DEFAULT_DATA_ROOT:
        return DEFAULT_INSTANCE
    return "dy" + hashlib.sha256(str(data_root).encode()).hexdigest()[:8]


def _write_sysctl(path: str, value: str) -> None:
    current = Path(path).read_text().strip()
    if current != value:
        Path(path).write_text(value)


def check() -> None:
    check_available()
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        raise DriverUnavailable("pyroute2 is not installed") from None


def build(config: BridgeConfig, context: DriverContext) -> BridgeNetwork:
    if not config.instance:
        config = attrs.evolve(config, instance=instance_for(context.state_dir))
    try:
        return BridgeNetwork(config)
    except InvalidParameter as exc:
        raise ConfigError(str(exc)) from None


@hookimpl
def dockyard_network_drivers() -> DriverInfo:
    return DriverInfo(
        name="bridge",
        kind=DriverKind.NETWORK,
        factory=build,
        config_class=BridgeConfig,
        check=check,
        description="a Linux bridge per network, veth pairs, nftables NAT (docker's bridge)",
    )
