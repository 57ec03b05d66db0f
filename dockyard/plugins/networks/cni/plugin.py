"""Network driver ``cni``: a network is a CNI network configuration list, run with the CNI plugins.

This is the plumbing Kubernetes, containerd and podman share: a user's conflist in the conf dir
(``/etc/cni/net.d``) with the plugins of Debian's containernetworking-plugins (``/usr/lib/cni``:
bridge, host-local, portmap, firewall...), or any others in the bin dirs.

* A network names its conflist with the option ``cni.conflist`` (default: the network's own
  name), by file name or by the ``name`` inside. ``create_network`` reads it once and keeps it in
  the network's record (``NetworkState.data``): what ADD ran is what DEL runs, whatever happens
  to the file later. The subnets the record shows are those of a host-local IPAM; the conflist's
  IPAM chooses addresses, so ``--subnet`` is taken only when it says what the conflist says.
* ``connect`` is a CNI ADD through the list's plugins, chaining ``prevResult``; a failure
  midway DELs what was added. ``disconnect`` is a DEL in reverse order with the cached result.
* Ports: the plugins with the ``portMappings`` capability (portmap) are left out of the
  endpoint's chain and run on their own for each published port, with the endpoint's result as
  ``prevResult`` and a CNI container id of their own (``<container>-<proto>-<ip>-<port>``). Our
  interface publishes after connecting and per port; this way each port is added and deleted
  alone, with no ADD again of the bridge and IPAM. Host ports are checked and chosen here
  (:mod:`dockyard.linux.hostports`); portmap itself checks nothing.
* The cache (``<state dir>/cache``) holds, per attachment, the list and the result, written
  before the ADD and removed after the DEL, as libcni's cache: DEL needs the result, and
  ``restore`` finds there what the core no longer owns. ``<state dir>/networks`` holds per
  network the bridges its chain made (a bridge outlives its last container under the bridge
  plugin; a veth goes with its DEL) so that ``delete_network`` can remove them.
* When the driver's last network goes, the chains the reference plugins share and never remove
  are removed if idle, and the iptables-nft tables they made (:mod:`.leftovers`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
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
    DockyardError,
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
from dockyard.plugins.networks.cni import leftovers
from dockyard.plugins.networks.cni.invoke import (
    PORT_MAPPINGS,
    Attachment,
    ConfList,
    Result,
    Runner,
    addressing,
    find_conflist,
    host_interfaces,
)

OPTION_CONFLIST = "cni.conflist"
KNOWN_OPTIONS = (OPTION_CONFLIST,)
DEFAULT_BIN_DIRS = ["/usr/lib/cni", "/opt/cni/bin"]
#: Plugins the driver's own uses need (a conflist may name any other).
ESSENTIAL_PLUGINS = ("bridge", "host-local", "portmap")


@attrs.frozen
class CniConfig:
    conf_dir: str = option("/etc/cni/net.d", "where the CNI network configuration lists are")
    bin_dirs: list[str] = option(DEFAULT_BIN_DIRS, "where the CNI plugin executables are")


def _key(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:24]


def _bridges() -> set[str]:
    """Names of the bridges in this process's network namespace (netlink: /sys may show
    another namespace's links)."""
    from pyroute2 import IPRoute  # imported when used: building the driver stays cheap

    with IPRoute() as ipr:
        return {
            link.get_attr("IFLA_IFNAME")
            for link in ipr.get_links()
            if (info := link.get_attr("IFLA_LINKINFO"))
            and info.get_attr("IFLA_INFO_KIND") == "bridge"
        }


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value))
    os.replace(temporary, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class CniNetwork:
    """The ``cni`` driver. Each call works on one network's or one endpoint's files and
    plugins; choosing host ports and the last-network clean-up are serialized by a lock."""

    def __init__(self, config: CniConfig, state_dir: Path) -> None:
        self.conf_dir = Path(config.conf_dir)
        self.runner = Runner(config.bin_dirs)
        self.cache = state_dir / "cache"
        self.networks_dir = state_dir / "networks"
        self.host_before = state_dir / "host-before.json"
        self._lock_file = state_dir / "lock"
        state_dir.mkdir(parents=True, exist_ok=True)
        # Orders this process's host-port choices and network bookkeeping; the file lock
        # below does the same between processes sharing the state dir.
        self._choosing = threading.RLock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._choosing, open(self._lock_file, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------ networks

    def create_network(self, spec: NetworkSpec) -> NetworkState:
        unknown = sorted(set(spec.options) - set(KNOWN_OPTIONS))
        if unknown:
            raise InvalidParameter(f"unknown option of network driver cni: {', '.join(unknown)}")
        if spec.enable_ipv6:
            raise InvalidParameter("enable_ipv6: the conflist's plugins decide, not this option")
        if spec.internal:
            raise InvalidParameter("internal: the conflist's plugins decide what leaves a network")
        conflist, path = find_conflist(self.conf_dir, spec.options.get(OPTION_CONFLIST, spec.name))
        self.runner.check_plugins(conflist)
        subnets = _ipam_subnets(conflist)
        _check_ipam_request(spec, subnets, str(path))
        state = NetworkState(
            id=spec.id,
            name=spec.name,
            subnets=subnets,
            data={"conflist": json.dumps(conflist.to_json()), "path": str(path)},
        )
        with self._locked():
            if not any(self.networks_dir.glob("*.json")) and not self.host_before.exists():
                # The first network: what the host had before any plugin ran, so that the last
                # network's removal leaves exactly that.
                _write_json(self.host_before, leftovers.iptables_nft_chains())
            self._write_network(state.id, {"links": [], "conflist": conflist.to_json()})
        return state

    def _network_file(self, network_id: str) -> Path:
        return self.networks_dir / f"{network_id}.json"

    def _write_network(self, network_id: str, record: Mapping[str, Any]) -> None:
        _write_json(self._network_file(network_id), record)

    def delete_network(self, state: NetworkState) -> None:
        with self._locked():
            self._forget_network(state.id)

    def _forget_network(self, network_id: str) -> None:
        record = _read_json(self._network_file(network_id)) or {}
        in_use = {
            link
            for other in self.networks_dir.glob("*.json")
            if other.stem != network_id
            for link in (_read_json(other) or {}).get("links", ())
        }
        for link in record.get("links", ()):
            if link not in in_use:
                _remove_link(link)
        self._network_file(network_id).unlink(missing_ok=True)
        if not any(self.networks_dir.glob("*.json")):
            self._leave_host_as_found()

    def _leave_host_as_found(self) -> None:
        before = _read_json(self.host_before)
        if not isinstance(before, list):
            # Nothing is known to be ours: keep all. The shared chains may be another CNI
            # user's, idle only because its plugins are between two steps of an ADD (another
            # daemon on this host, podman...).
            return
        leftovers.remove_idle_chains()
        leftovers.remove_made_tables([tuple(entry) for entry in before])
        self.host_before.unlink(missing_ok=True)

    def _note_links(self, network_id: str, made: Sequence[str]) -> None:
        if not made:
            return
        with self._locked():
            path = self._network_file(network_id)
            record = _read_json(path) or {"links": []}
            record["links"] = sorted(set(record.get("links", [])) | set(made))
            self._write_network(network_id, record)

    # ------------------------------------------------------------ endpoints

    def _lists(self, network: NetworkState) -> tuple[ConfList, ConfList]:
        """The network's list without and with its port-mapping plugins."""
        raw = network.data.get("conflist")
        if not raw:
            raise NotFound(f"network {network.name} has no CNI config in its record")
        conflist = ConfList.parse(json.loads(raw), f"of network {network.name}")
        return conflist.split(PORT_MAPPINGS)

    def _endpoint_file(self, endpoint_id: str) -> Path:
        return self.cache / f"{endpoint_id}.json"

    def connect(self, network: NetworkState, endpoint: EndpointSpec) -> EndpointState:
        if not netns.is_namespace(endpoint.netns):
            raise NotFound(f"network namespace {endpoint.netns} does not exist")
        chain, _ = self._lists(network)
        runtime = self._requests(chain, network, endpoint)
        who = Attachment(endpoint.container_id, endpoint.netns, endpoint.interface_name)
        record = {"network_id": network.id, "container_id": endpoint.container_id,
                  "netns": endpoint.netns, "ifname": endpoint.interface_name,
                  "conflist": chain.to_json(), "runtime": runtime, "result": None}  # fmt: skip
        path = self._endpoint_file(endpoint.id)
        if path.exists():
            raise InvalidParameter(f"endpoint {endpoint.id} is already connected")
        # Written before the ADD: a daemon stopping midway leaves what restore needs to DEL.
        _write_json(path, record)
        bridges_before = _bridges()
        seen: list[Result] = []
        try:
            result = self.runner.add(chain, who, runtime, seen)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            # Bridges the chain made stay after a DEL (and after a failed ADD): the network
            # removes them when it goes.
            bridges = _bridges() - bridges_before
            made = {name for done in seen for name in host_interfaces(done) if name in bridges}
            self._note_links(network.id, sorted(made))
        _write_json(path, {**record, "result": result})
        found = addressing(result, endpoint.interface_name, _bridges().__contains__)
        return EndpointState(
            id=endpoint.id,
            network_id=network.id,
            container_id=endpoint.container_id,
            netns=endpoint.netns,
            interface_name=endpoint.interface_name,
            host_interface=found.host_interface,
            ipv4=found.ipv4,
            gateway=found.gateway,
            mac=found.mac,
            dns_servers=found.dns_servers,
            dns_search=found.dns_search,
        )

    def _requests(
        self, chain: ConfList, network: NetworkState, endpoint: EndpointSpec
    ) -> dict[str, Any]:
        """``--ip`` and ``--mac`` as the CNI conventions' ``ips`` and ``mac`` capabilities,
        refused when no plugin of the list takes them (they would be ignored)."""
        runtime: dict[str, Any] = {}
        if endpoint.ipv4:
            if not chain.capable("ips"):
                raise InvalidParameter(
                    f"--ip: no plugin of CNI network {chain.name} has the ips capability"
                )
            try:
                address = ipaddress.IPv4Address(endpoint.ipv4)
            except ValueError:
                raise InvalidParameter(f"invalid IPv4 address {endpoint.ipv4!r}") from None
            subnets = [ipaddress.IPv4Network(s.subnet) for s in network.subnets]
            inside = [subnet for subnet in subnets if address in subnet]
            if subnets and not inside:
                raise InvalidParameter(
                    f"--ip {address} is not in the network's subnets {', '.join(map(str, subnets))}"
                )
            runtime["ips"] = [f"{address}/{inside[0].prefixlen}" if inside else str(address)]
        if endpoint.mac:
            if not chain.capable("mac"):
                raise InvalidParameter(
                    f"--mac-address: no plugin of CNI network {chain.name} has the mac capability"
                )
            runtime["mac"] = endpoint.mac.lower()
        return runtime

    def disconnect(self, network: NetworkState, endpoint: EndpointState) -> None:
        for port in self._port_files(endpoint.id):
            self._unpublish_file(port)
        self._delete_attachment(endpoint.id)

    def _delete_attachment(self, endpoint_id: str) -> None:
        path = self._endpoint_file(endpoint_id)
        record = _read_json(path)
        if record is None:
            return  # never added, or deleted already: nothing of it is left
        chain = ConfList.parse(record["conflist"], f"cached for endpoint {endpoint_id}")
        with self._namespace_for_delete(endpoint_id, record) as namespace:
            who = Attachment(record["container_id"], namespace, record["ifname"])
            self.runner.delete(chain, who, record.get("result"), record.get("runtime") or {})
        path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _namespace_for_delete(self, endpoint_id: str, record: Mapping[str, Any]) -> Iterator[str]:
        """The endpoint's namespace, or, when it is gone, a stand-in holding a dummy link with
        the endpoint's interface name and address. The bridge plugin removes its masquerade
        rules only for the addresses it finds on that interface: given no namespace, it would
        leave them on the host for good."""
        if netns.is_namespace(record["netns"]):
            yield record["netns"]
            return
        stand_in = netns.create(self.cache / f"{endpoint_id}.stand-in")
        try:
            addresses = _sandbox_addresses(record.get("result") or {})
            netns.run_in(stand_in, lambda: _stand_in_link(record["ifname"], addresses))
            yield str(stand_in)
        finally:
            netns.remove(stand_in)

    # ------------------------------------------------------------ ports

    def _port_dir(self, endpoint_id: str) -> Path:
        return self.cache / f"{endpoint_id}.ports"

    def _port_files(self, endpoint_id: str) -> list[Path]:
        directory = self._port_dir(endpoint_id)
        return sorted(directory.glob("*.json")) if directory.is_dir() else []

    def _held(self) -> list[hostports.Held]:
        held = []
        for path in self.cache.glob("*.ports/*.json"):
            record = _read_json(path)
            if record:
                held.append(hostports.held_by(PortBinding(**record["binding"])))
        return held

    def publish(
        self, network: NetworkState, endpoint: EndpointState, ports: Sequence[PortBinding]
    ) -> list[PortBinding]:
        if not ports:
            return []
        _, mappers = self._lists(network)
        if not mappers.plugins:
            raise InvalidParameter(
                f"network {network.name}: no plugin of CNI network {mappers.name} has the "
                f"{PORT_MAPPINGS} capability (add portmap to the conflist)"
            )
        cached = _read_json(self._endpoint_file(endpoint.id))
        if not cached or not cached.get("result"):
            raise NotFound(f"endpoint {endpoint.id} is not connected")
        with self._locked():
            bound = hostports.allocate(ports, self._held())
            made: list[Path] = []
            try:
                for binding in bound:
                    made.append(self._publish_one(mappers, endpoint, cached, binding))
            except BaseException:
                for path in made:  # all or nothing
                    with contextlib.suppress(DockyardError):
                        self._unpublish_file(path)
                raise
        return bound

    def _publish_one(
        self, mappers: ConfList, endpoint: EndpointState, cached: Mapping[str, Any],
        binding: PortBinding,
    ) -> Path:  # fmt: skip
        container_id = "-".join(
            (endpoint.container_id, binding.protocol, binding.host_ip or "any",
             str(binding.host_port))
        )  # fmt: skip
        path = self._port_dir(endpoint.id) / f"{_key(*map(str, hostports.held_by(binding)))}.json"
        record = {"binding": attrs.asdict(binding), "container_id": container_id,
                  "netns": endpoint.netns, "ifname": endpoint.interface_name,
                  "conflist": mappers.to_json(), "result": cached["result"]}  # fmt: skip
        _write_json(path, record)
        try:
            self._run_port(record, "ADD")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def _run_port(self, record: Mapping[str, Any], command: str) -> None:
        binding = PortBinding(**record["binding"])
        mapping: dict[str, Any] = {
            "hostPort": binding.host_port,
            "containerPort": binding.container_port,
            "protocol": binding.protocol,
        }
        if binding.host_ip:
            mapping["hostIP"] = binding.host_ip
        runtime = {PORT_MAPPINGS: [mapping]}
        mappers = ConfList.parse(record["conflist"], "cached for a published port")
        netns_path = record["netns"] if netns.is_namespace(record["netns"]) else ""
        who = Attachment(record["container_id"], netns_path, record["ifname"])
        if command == "ADD":
            self.runner.add(mappers, who, runtime, previous=record["result"])
        else:
            self.runner.delete(mappers, who, record["result"], runtime)

    def _unpublish_file(self, path: Path) -> None:
        record = _read_json(path)
        if record is not None:
            self._run_port(record, "DEL")
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # the endpoint's last port

    def unpublish(
        self, network: NetworkState, endpoint: EndpointState, ports: Sequence[PortBinding]
    ) -> None:
        wanted = {hostports.held_by(hostports.checked(port)) for port in ports}
        for path in self._port_files(endpoint.id):
            record = _read_json(path)
            if record and hostports.held_by(PortBinding(**record["binding"])) in wanted:
                self._unpublish_file(path)

    # ------------------------------------------------------------ restart

    def restore(
        self,
        networks: Sequence[NetworkState],
        endpoints: Sequence[EndpointState],
        ports: Mapping[str, Sequence[PortBinding]],
    ) -> None:
        by_id = {network.id: network for network in networks}
        owned = {e.id for e in endpoints if e.network_id in by_id}
        # What no record owns: DEL it (its namespace may be gone; the plugins still release
        # its address and rules).
        for path in sorted(self.cache.glob("*.json")) if self.cache.is_dir() else []:
            if path.stem not in owned:
                for port in self._port_files(path.stem):
                    self._unpublish_file(port)
                self._delete_attachment(path.stem)
        for directory in self.cache.glob("*.ports") if self.cache.is_dir() else []:
            if directory.name.removesuffix(".ports") not in owned:
                for port in sorted(directory.glob("*.json")):
                    self._unpublish_file(port)
        for endpoint in endpoints:
            network = by_id.get(endpoint.network_id)
            if network is not None:
                self._restore_endpoint(network, endpoint, ports.get(endpoint.id, ()))
        with self._locked():
            for path in sorted(self.networks_dir.glob("*.json")):
                if path.stem not in by_id:
                    self._forget_network(path.stem)
            for network in networks:
                if not self._network_file(network.id).exists():
                    self._write_network(network.id, {"links": []})
            if not networks:
                self._leave_host_as_found()

    def _restore_endpoint(
        self, network: NetworkState, endpoint: EndpointState, ports: Sequence[PortBinding]
    ) -> None:
        chain, _ = self._lists(network)
        cached = _read_json(self._endpoint_file(endpoint.id))
        healthy = False
        if cached and cached.get("result"):
            who = Attachment(endpoint.container_id, endpoint.netns, endpoint.interface_name)
            listed = ConfList.parse(cached["conflist"], f"cached for endpoint {endpoint.id}")
            if listed.checkable:
                try:
                    self.runner.check(listed, who, cached["result"], cached.get("runtime") or {})
                    healthy = True
                except DockyardError:
                    healthy = False
            else:  # no CHECK before spec 0.4.0: the interface being there is all we can see
                healthy = _has_interface(endpoint.netns, endpoint.interface_name)
        if not healthy:
            # Broken or lost: made again, asking for the same address where the list can.
            for path in self._port_files(endpoint.id):
                self._unpublish_file(path)
            self._delete_attachment(endpoint.id)
            address = endpoint.ipv4.partition("/")[0] if chain.capable("ips") else ""
            mac = endpoint.mac if chain.capable("mac") else ""
            self.connect(network, attrs.evolve(reconnection_of(endpoint), ipv4=address, mac=mac))
        present = {
            hostports.held_by(PortBinding(**record["binding"])): path
            for path in self._port_files(endpoint.id)
            if (record := _read_json(path))
        }
        wanted = [hostports.checked(port) for port in ports]
        for held, path in present.items():
            if held not in {hostports.held_by(port) for port in wanted}:
                self._unpublish_file(path)
        _, mappers = self._lists(network)
        cached = _read_json(self._endpoint_file(endpoint.id)) or {}
        for binding in wanted:
            if hostports.held_by(binding) in present:
                # ADD again: portmap adds only the rules that are missing, and the running
                # container's traffic keeps flowing through those that are there.
                self._run_port(_read_json(present[hostports.held_by(binding)]), "ADD")
            elif cached.get("result"):
                with self._locked():
                    self._publish_one(mappers, endpoint, cached, binding)


def _sandbox_addresses(result: Result) -> list[str]:
    interfaces = result.get("interfaces") or []
    found = []
    for entry in result.get("ips") or ():
        index = entry.get("interface") if isinstance(entry, dict) else None
        if not isinstance(index, int) or not 0 <= index < len(interfaces):
            continue
        if interfaces[index].get("sandbox") and entry.get("address"):
            found.append(str(entry["address"]))
    return found


def _stand_in_link(name: str, addresses: Sequence[str]) -> None:
    """A link ``name`` with ``addresses`` in this thread's namespace: one end of a veth pair
    (the dummy kind is not in every kernel; veth is, the bridge plugin needs it)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer="stand-in-peer")
        (index,) = ipr.link_lookup(ifname=name)
        for address in addresses:
            interface = ipaddress.ip_interface(address)
            ipr.addr("add", index=index, address=str(interface.ip),
                     prefixlen=interface.network.prefixlen)  # fmt: skip


def _has_interface(namespace: str, name: str) -> bool:
    if not netns.is_namespace(namespace):
        return False
    return bool(netns.run_in(namespace, lambda: name in {n for _, n in socket.if_nameindex()}))


def _ipam_subnets(conflist: ConfList) -> tuple[Subnet, ...]:
    """The subnets of a host-local IPAM in the list (``ranges``, or the older ``subnet``),
    each with its gateway (the first address when the range names none)."""
    subnets = []
    for plugin in conflist.plugins:
        ipam = plugin.get("ipam")
        if not isinstance(ipam, dict) or ipam.get("type") != "host-local":
            continue
        ranges = [r for rs in ipam.get("ranges") or () if isinstance(rs, list) for r in rs]
        if ipam.get("subnet"):
            ranges.append({"subnet": ipam["subnet"], "gateway": ipam.get("gateway", "")})
        for entry in ranges:
            try:
                network = ipaddress.ip_network(str(entry.get("subnet")), strict=False)
            except ValueError:
                continue
            if network.version != 4:
                continue
            gateway = entry.get("gateway") or str(network.network_address + 1)
            start, end = entry.get("rangeStart"), entry.get("rangeEnd")
            span = f"{start}-{end}" if start and end else ""
            subnets.append(Subnet(str(network), str(gateway), span))
    return tuple(subnets)


def _check_ipam_request(spec: NetworkSpec, subnets: Sequence[Subnet], where: str) -> None:
    """``--subnet/--gateway`` are taken when they say what the conflist says; the conflist's
    IPAM allocates, so anything else would be accepted and not done."""
    for request in spec.ipam:
        match = [s for s in subnets if s.subnet == request.subnet]
        if (
            not request.subnet
            or not match
            or request.ip_range
            or (request.gateway and request.gateway != match[0].gateway)
        ):
            raise InvalidParameter(
                "--subnet/--gateway/--ip-range: a cni network's addresses are its conflist's "
                f"IPAM ({where}: {', '.join(s.subnet for s in subnets) or 'no host-local range'})"
            )


def _remove_link(name: str) -> None:
    """Remove a host link the chain made, unless it is a bridge something is still on."""
    from pyroute2 import IPRoute, NetlinkError  # imported when used: building stays cheap

    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):
            if any(link.get_attr("IFLA_MASTER") == index for link in ipr.get_links()):
                continue  # another network's container is on it (the same conflist)
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=index)


def check() -> None:
    missing_everywhere = [
        plugin
        for plugin in ESSENTIAL_PLUGINS
        if not any(os.access(Path(d) / plugin, os.X_OK) for d in DEFAULT_BIN_DIRS)
    ]
    if missing_everywhere:
        raise DriverUnavailable(
            f"CNI plugins {', '.join(missing_everywhere)} not found in "
            f"{', '.join(DEFAULT_BIN_DIRS)}: install containernetworking-plugins"
        )


def build(config: CniConfig, context: DriverContext) -> CniNetwork:
    if not config.bin_dirs:
        raise ConfigError("networks.cni.bin-dirs: at least one directory is needed")
    return CniNetwork(config, context.state_dir)


@hookimpl
def dockyard_network_drivers() -> DriverInfo:
    return DriverInfo(
        name="cni",
        kind=DriverKind.NETWORK,
        factory=build,
        config_class=CniConfig,
        check=check,
        description="any CNI network configuration list, run with the CNI plugins "
        "(containernetworking-plugins: bridge, host-local, portmap, firewall)",
    )
