"""A container's networks: chosen at create, plumbed at start, released at exit.

* **Create** (:meth:`ContainerNetworks.plan`) turns ``HostConfig.NetworkMode`` and
  ``NetworkingConfig`` into the container's :class:`~dockyard.daemon.networks.records.Attachment`
  list, checked as dockerd checks it (an ``--ip`` or alias on the default bridge, an unknown
  network, bad published ports are 400s and 404s before anything is made).
* **Start** (:meth:`ContainerNetworks.plumb`): a network namespace file of the container's
  own (``<data root>/netns/<id>``), each attachment connected by its network's driver, the
  ports published on the first, ``/etc/hosts`` and ``resolv.conf`` written with the addresses
  it got. The runtime then joins the namespace (``ContainerSpec.netns``).
* **Exit** (:meth:`ContainerNetworks.release`): the ports unpublished, the endpoints
  disconnected, the namespace file removed. Addresses go back to the pool, as dockerd does.

``--network container:NAME`` joins the namespace file of a running container, with its
hostname and ``/etc`` files; ``host`` has no namespace file. Blocking: worker threads only.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import attrs
import structlog

from dockyard.core.errors import Conflict, DockyardError, InvalidParameter, NotFound
from dockyard.core.interfaces import ContainerSpec, EndpointSpec
from dockyard.daemon.containers import etc_files, links
from dockyard.daemon.containers.config import CreateRequest, EndpointSettings, HostConfig
from dockyard.daemon.containers.model import Container
from dockyard.daemon.networks import ports
from dockyard.daemon.networks.manager import Forbidden, NetworkManager
from dockyard.daemon.networks.records import (
    DEFAULT_BRIDGE,
    Attachment,
    NetworkRecord,
    parse_link,
)
from dockyard.linux import netns

_log = structlog.get_logger("dockyard.containers")

CONTAINER_MODE = "container:"


def endpoint_id(container_id: str, network_id: str) -> str:
    """One endpoint per container and network, the same after a restart of the daemon."""
    return hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()


class ContainerNetworks:
    def __init__(
        self,
        networks: NetworkManager,
        netns_dir: Path,
        containers: Callable[[], Mapping[str, Container]],
        emit: Callable[[str, str, dict[str, str]], None],
    ) -> None:
        self.networks = networks
        self.netns_dir = netns_dir
        self.netns_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._containers = containers
        self._emit = emit

    # ------------------------------------------------------------------ create

    def default_mode(self) -> str:
        return DEFAULT_BRIDGE if self.networks.find(DEFAULT_BRIDGE) else "none"

    def plan(self, request: CreateRequest) -> tuple[str, list[Attachment]]:
        """The container's network mode as dockerd records it, and its attachments."""
        host = request.host_config
        mode = host.network_mode or "default"
        endpoints = request.networking_config.endpoints_config or {}
        if len(endpoints) > 1:
            raise InvalidParameter(
                "Container cannot be connected to network endpoints: " + ", ".join(endpoints)
            )
        ports.requested(request.exposed_ports, host.port_bindings, host.publish_all_ports)
        self.extra_hosts(host)
        ports.exposed(request.exposed_ports or {})  # checked even when none is published
        if mode.startswith(CONTAINER_MODE):
            if host.links:
                raise InvalidParameter(links.CONTAINER_MODE_REFUSED)
            self._check_shared(request, mode)
            other = self._container(mode[len(CONTAINER_MODE) :])
            return f"{CONTAINER_MODE}{other.id}", []
        network_name = self.default_mode() if mode == "default" else mode
        record = self.networks.find(network_name)
        if record is None:
            # A 404 at create makes the docker CLI pull the image and try again.
            raise InvalidParameter(f"network {network_name} not found")
        # The docker CLI keys it by the mode as given ("default"), others by name or id.
        keys = [key for key in (mode, record.name, record.id) if key in endpoints]
        if endpoints and not keys:
            raise InvalidParameter(
                f"NetworkingConfig.EndpointsConfig names {', '.join(endpoints)}, not the "
                f"container's network {record.name}"
            )
        config = (endpoints[keys[0]] if keys else None) or EndpointSettings()
        if host.links and record.driver == "host":
            raise InvalidParameter(links.HOST_MODE_REFUSED)
        if host.links and not record.predefined:
            # Legacy links on the default bridge (and none) are the container's (legacy_links);
            # on a user-defined network they are the endpoint's links, whose aliases resolve:
            # the docker CLI moves --link there itself, docker-compose 1.29 sends HostConfig.
            given = config.links or []
            endpoint_links = [*given, *(link for link in host.links if link not in given)]
            config = attrs.evolve(config, links=endpoint_links)
        attachment = self._attachment(record, config, request.mac_address)
        return mode, [attachment]

    def legacy_links(self, request: CreateRequest, mode: str) -> list[links.LegacyLink]:
        """``HostConfig.Links`` of a container on the default bridge or ``none`` (on a
        user-defined network :meth:`plan` made them the endpoint's)."""
        if not request.host_config.links or mode.startswith(CONTAINER_MODE):
            return []
        record = self.networks.find(self.default_mode() if mode == "default" else mode)
        if record is None or not record.predefined:
            return []
        return links.plan(request.host_config.links, self._link_child)

    def _link_child(self, name: str) -> links.Child:
        child = self._container(name)
        return links.Child(child.id, child.name, child.host_config.network_mode or "default")

    def _check_shared(self, request: CreateRequest, mode: str) -> None:
        host = request.host_config
        conflicts = [
            flag
            for flag, given in (
                ("--hostname", request.hostname),
                ("--mac-address", request.mac_address),
                ("--dns", host.dns),
                ("--dns-search", host.dns_search),
                ("--dns-option", host.dns_options),
                ("--add-host", host.extra_hosts),
                ("--publish", host.port_bindings or host.publish_all_ports),
                ("--expose", request.exposed_ports),
            )
            if given
        ]
        if conflicts:
            raise InvalidParameter(
                f"conflicting options: {conflicts[0]} and the network mode {mode}"
            )

    def _container(self, name_or_id: str) -> Container:
        containers = self._containers()
        key = name_or_id.removeprefix("/")
        if key in containers:
            return containers[key]
        for container in containers.values():
            if container.name == key:
                return container
        matches = [c for c in containers.values() if key and c.id.startswith(key)]
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"No such container: {name_or_id}")

    def _attachment(
        self, record: NetworkRecord, config: EndpointSettings, mac: str = ""
    ) -> Attachment:
        ipv4 = config.ipam_config.ipv4_address if config.ipam_config else ""
        if config.ipam_config and config.ipam_config.ipv6_address:
            raise InvalidParameter("IPv6Address: IPv6 is not supported yet")
        links = [link for link in config.links or [] if link]
        for link in links:
            parse_link(link)
        if config.driver_opts:
            raise InvalidParameter(
                f"DriverOpts: no endpoint options are supported ({', '.join(config.driver_opts)})"
            )
        aliases = [a for a in config.aliases or [] if a]
        if record.predefined:
            if ipv4:
                raise InvalidParameter(
                    "user specified IP address is supported on user defined networks only"
                )
            if aliases:
                raise InvalidParameter(
                    "network-scoped alias is supported only for containers in user defined networks"
                )
        if ipv4:
            _check_in_subnets(ipv4, record)
        mac = config.mac_address or mac
        return Attachment(record.id, record.name, aliases, ipv4, mac, links=links)

    # ------------------------------------------------------------------ start

    def netns_path(self, container: Container) -> Path:
        return self.netns_dir / container.id

    def plumb(self, container: Container) -> ContainerSpec:
        """Make the container's network namespace and connect it; the spec to launch with.

        On failure nothing stays plumbed.
        """
        mode = container.host_config.network_mode or "default"
        if mode.startswith(CONTAINER_MODE):
            return self._shared_spec(container, mode[len(CONTAINER_MODE) :])
        if any(self.networks.get(a.network_id).driver == "host" for a in container.networks):
            return attrs.evolve(container.spec, network_mode="host", netns="")
        linked = self._linked(container)  # refused before anything is made, as by dockerd
        path = self.netns_path(container)
        self.release(container)  # leftovers of a start a crash interrupted
        netns.create(path)
        try:
            for index, attachment in enumerate(container.networks):
                self._connect(container, attachment, f"eth{index}", path)
            if container.networks:
                self._publish(container, container.networks[0])
            self.write_etc_files(container)
            self._update_parents(container)
        except BaseException:
            self.release(container)
            raise
        env = [
            entry
            for link, child, address in linked
            for entry in links.environment(
                links.link_name(container.name, link.alias), address,
                child.config.exposed_ports, child.config.env,
            )
        ]  # fmt: skip
        process = attrs.evolve(
            container.spec.process,
            env=tuple(links.with_environment(container.spec.process.env, env, container.link_env)),
        )
        container.link_env = env
        return attrs.evolve(container.spec, process=process, network_mode="none", netns=str(path))

    def interfaces(self, container: Container) -> list[str]:
        """The interfaces the container's networks gave it (``eth0``...): for ``container:NAME``,
        those of the container whose namespace it joined; none for ``host`` or ``none``. These
        are what dockerd reports traffic of (``networks`` of a stats frame)."""
        seen = {container.id}
        while (mode := container.host_config.network_mode or "").startswith(CONTAINER_MODE):
            try:
                container = self._container(mode[len(CONTAINER_MODE) :])
            except NotFound:
                return []
            if container.id in seen:
                return []
            seen.add(container.id)
        return [
            attachment.endpoint.interface_name
            for attachment in container.networks
            if attachment.endpoint is not None and attachment.endpoint.interface_name
        ]

    # ------------------------------------------------------------------ legacy links

    def _children(
        self, container: Container
    ) -> Iterator[tuple[links.LegacyLink, Container | None, str]]:
        """Each legacy link of a container on the default bridge, with its child (``None``
        once removed) and the child's address there (``""`` if it has none)."""
        if not container.links or _bridge_address(container, running=False) is None:
            return
        containers = self._containers()
        for link in container.links:
            child = containers.get(link.child_id)
            yield link, child, (_bridge_address(child) or "") if child is not None else ""

    def _linked(self, container: Container) -> list[tuple[links.LegacyLink, Container, str]]:
        """:meth:`_children`, each running on the bridge, else refused (dockerd's words)."""
        found = []
        for link, child, address in self._children(container):
            name = links.link_name(container.name, link.alias)
            if child is None or not child.state.running:
                shown = child.name if child is not None else link.child_name
                raise Conflict(f"Cannot link to a non running container: /{shown} AS {name}")
            if not address:
                raise Conflict(f"container {child.id} not attached to default bridge network")
            found.append((link, child, address))
        return found

    def _link_hosts(self, container: Container) -> list[tuple[str, str]]:
        """``/etc/hosts`` entries (names, address) for the children running on the bridge."""
        return [
            (links.hosts_names(link.alias, child.name, child.config.hostname), address)
            for link, child, address in self._children(container)
            if child is not None and address
        ]

    def _update_parents(self, child: Container) -> None:
        """The ``/etc/hosts`` of the running containers linking to ``child``, which has a new
        address (dockerd updates its parents' too)."""
        for parent in list(self._containers().values()):
            if parent.state.running and any(link.child_id == child.id for link in parent.links):
                self.write_etc_files(parent)

    def shown_links(self, container: Container) -> list[str] | None:
        """``HostConfig.Links`` as dockerd's inspect shows them, with the names of now."""
        names = {c.id: c.name for c in self._containers().values()}
        return links.shown(container.name, container.links, names) or None

    def link_names(self, child: Container) -> list[str]:
        """The names its links give ``child`` (``/PARENT/ALIAS``), listed by ``ps``."""
        return [
            links.link_name(parent.name, link.alias)
            for parent in self._containers().values()
            for link in parent.links
            if link.child_id == child.id
        ]

    def _shared_spec(self, container: Container, other_id: str) -> ContainerSpec:
        other = self._container(other_id)
        if not other.state.running:
            raise Conflict(f"cannot join network of a non running container: {other.id}")
        if other.spec.network_mode == "host" or not other.spec.netns:
            return attrs.evolve(
                container.spec, network_mode=other.spec.network_mode, netns=other.spec.netns,
                hostname=other.spec.hostname, etc_files=other.spec.etc_files,
            )  # fmt: skip
        return attrs.evolve(
            container.spec, network_mode="none", netns=other.spec.netns,
            hostname=other.spec.hostname, etc_files=other.spec.etc_files,
        )  # fmt: skip

    def _connect(
        self, container: Container, attachment: Attachment, interface: str, path: Path
    ) -> None:
        with self.networks.lock:
            record = self.networks.get(attachment.network_id)
            driver = self.networks.driver(record)
            self._check_aliases(container, attachment, record)
            aliases = (container.name, container.id[:12], *attachment.aliases)
            attachment.endpoint = driver.connect(
                record.state,
                EndpointSpec(
                    id=endpoint_id(container.id, record.id),
                    network_id=record.id,
                    container_id=container.id,
                    netns=str(path),
                    interface_name=interface,
                    ipv4=attachment.ipv4,
                    mac=attachment.mac,
                    aliases=aliases,
                ),
            )
        self._emit("connect", record.id, {"container": container.id, "name": record.name,
                                          "type": record.driver})  # fmt: skip

    def _check_aliases(
        self, container: Container, attachment: Attachment, record: NetworkRecord
    ) -> None:
        """An alias may be shared (compose's replicas share their service's name), but not be
        another container's name on the network: its name must keep finding it."""
        wanted = {alias.lower() for alias in attachment.aliases}
        for other, _ in self._endpoints_on(record.id, self._containers()):
            if other.id != container.id and other.name.lower() in wanted:
                raise Conflict(
                    f"alias {other.name} of container {container.name} conflicts with the name "
                    f"of container {other.id[:12]} on network {record.name}"
                )

    def _publish(self, container: Container, attachment: Attachment) -> None:
        wanted = ports.requested(
            container.config.exposed_ports,
            container.host_config.port_bindings,
            container.host_config.publish_all_ports,
        )
        if not wanted or attachment.endpoint is None:
            return
        record = self.networks.get(attachment.network_id)
        attachment.ports = self.networks.driver(record).publish(
            record.state, attachment.endpoint, wanted
        )

    # ------------------------------------------------------------------ exit

    def release(self, container: Container) -> None:
        """Undo :meth:`plumb`; what is gone already is fine. Never raises for the kernel's
        sake: a driver's failure is logged, and the rest is still released."""
        for attachment in container.networks:
            self._disconnect(container, attachment)
        path = self.netns_path(container)
        if path.exists():
            netns.remove(path)

    def _disconnect(self, container: Container, attachment: Attachment) -> None:
        endpoint = attachment.endpoint
        record = self.networks.find(attachment.network_id)
        if endpoint is not None and record is not None:
            try:
                driver = self.networks.driver(record)
                if attachment.ports:
                    driver.unpublish(record.state, endpoint, attachment.ports)
                driver.disconnect(record.state, endpoint)
            except DockyardError as exc:
                _log.error("releasing an endpoint failed", container=container.id,
                           network=record.name, error=exc.message)  # fmt: skip
            self._emit("disconnect", record.id, {"container": container.id, "name": record.name,
                                                 "type": record.driver})  # fmt: skip
        attachment.endpoint = None
        attachment.ports = []

    # ------------------------------------------------------------------ connect, disconnect

    def connect(
        self, container: Container, record: NetworkRecord, config: EndpointSettings
    ) -> None:
        """``POST /networks/{id}/connect``: now if the container runs, at its next start if not."""
        mode = container.host_config.network_mode or "default"
        if mode.startswith(CONTAINER_MODE) or any(
            self.networks.get(a.network_id).driver in ("host", "null") for a in container.networks
        ):
            raise Forbidden(
                f"container {container.id} is on a network that cannot have another "
                "(host, none, or another container's)"
            )
        if record.driver in ("host", "null"):
            raise Forbidden(f"container cannot be connected to the {record.name} network")
        if any(a.network_id == record.id for a in container.networks):
            raise Forbidden(
                f"endpoint with name {container.name} already exists in network {record.name}"
            )
        attachment = self._attachment(record, config)
        if container.state.running:
            path = self.netns_path(container)
            try:
                self._connect(container, attachment, f"eth{len(container.networks)}", path)
            except BaseException:
                self._disconnect(container, attachment)
                raise
            container.networks.append(attachment)
            self.write_etc_files(container)
        else:
            container.networks.append(attachment)

    def disconnect(self, container: Container, record: NetworkRecord) -> None:
        found = [a for a in container.networks if a.network_id == record.id]
        if not found:
            raise Forbidden(f"container {container.id} is not connected to network {record.name}")
        self._disconnect(container, found[0])
        container.networks.remove(found[0])
        if container.state.running:
            self.write_etc_files(container)

    # ------------------------------------------------------------------ /etc and names

    def write_etc_files(self, container: Container) -> None:
        """``/etc/hosts`` and ``resolv.conf`` with the addresses the container has now.

        Written in place: the runtime bind-mounted these very files.
        """
        files = {destination: Path(source) for source, destination in container.spec.etc_files}
        host = container.host_config
        extra = [*self.extra_hosts(container.host_config), *self._link_hosts(container)]
        addresses = [
            a.endpoint.ipv4.partition("/")[0]
            for a in container.networks
            if a.endpoint is not None and a.endpoint.ipv4
        ]
        if "/etc/hosts" in files:
            _rewrite(
                files["/etc/hosts"],
                etc_files.hosts_file(
                    container.config.hostname, container.config.domainname, addresses, extra
                ),
            )
        if "/etc/resolv.conf" in files:
            _rewrite(
                files["/etc/resolv.conf"],
                etc_files.resolv_conf(
                    etc_files.host_resolv_conf(), host.dns or (), host.dns_search or (),
                    host.dns_options or (), embedded=self.embedded(container),
                ),
            )  # fmt: skip

    def embedded(self, container: Container) -> bool:
        """Whether the container's names come from the embedded DNS (user-defined networks)."""
        return any(
            (record := self.networks.find(a.network_id)) is not None and record.user_defined
            for a in container.networks
        )

    def extra_hosts(self, host: HostConfig) -> list[tuple[str, str]]:
        """``--add-host`` entries as (name, address), ``host-gateway`` resolved."""
        gateway = self.default_gateway() or None
        return [etc_files.parse_extra_host(entry, gateway) for entry in host.extra_hosts or []]

    def dns_settings(self, container: Container) -> tuple[list[str] | None, bool]:
        """The upstreams of the container's embedded DNS (its ``--dns``, else the server's)
        and whether its options set ``ndots`` (see :meth:`EmbeddedDNS.attach`)."""
        host = container.host_config
        ndots = etc_files.user_sets_ndots(etc_files.host_resolv_conf(), host.dns_options or ())
        return (list(host.dns) if host.dns else None), ndots

    def default_gateway(self) -> str:
        record = self.networks.find(DEFAULT_BRIDGE)
        if record is None or not record.state.subnets:
            return ""
        return record.state.subnets[0].gateway

    def addresses(self, asking_id: str, name: str) -> list[str] | None:
        """What ``name`` is on the user-defined networks of container ``asking_id``."""
        containers = self._containers()
        asking = containers.get(asking_id)
        if asking is None:
            return None
        wanted = name.rstrip(".").lower()
        links = {a.network_id: a.link_aliases() for a in asking.networks}
        found: list[str] = []
        for network_id in self._user_networks(asking):
            # A link's alias stands for its container, for the linking container only.
            looked_up = links.get(network_id, {}).get(wanted, wanted).lower()
            for other, attachment in self._endpoints_on(network_id, containers):
                names = {
                    other.name.lower(),
                    other.id[:12],
                    *(a.lower() for a in attachment.aliases),
                }
                if looked_up in names and attachment.endpoint is not None:
                    found.append(attachment.endpoint.ipv4.partition("/")[0])
        return list(dict.fromkeys(found)) or None

    def name_of(self, asking_id: str, address: str) -> str | None:
        containers = self._containers()
        asking = containers.get(asking_id)
        if asking is None:
            return None
        for network_id in self._user_networks(asking):
            for other, attachment in self._endpoints_on(network_id, containers):
                endpoint = attachment.endpoint
                if endpoint is not None and endpoint.ipv4.partition("/")[0] == address:
                    return f"{other.name}.{attachment.network_name}"
        return None

    def _user_networks(self, container: Container) -> list[str]:
        return [
            a.network_id
            for a in container.networks
            if (record := self.networks.find(a.network_id)) is not None and record.user_defined
        ]

    def _endpoints_on(
        self, network_id: str, containers: Mapping[str, Container]
    ) -> Iterator[tuple[Container, Attachment]]:
        for container in list(containers.values()):
            for attachment in container.networks:
                if attachment.network_id == network_id and attachment.endpoint is not None:
                    yield container, attachment

    def members(self, network_id: str) -> list[str]:
        """Containers configured on ``network_id``, running or not (dockerd refuses to remove
        a network any container is attached to)."""
        return [
            c.id
            for c in self._containers().values()
            if any(a.network_id == network_id for a in c.networks)
        ]

    # ------------------------------------------------------------------ restart

    def restore(self) -> None:
        """After a daemon restart: the drivers given every endpoint of a living container."""
        endpoints, published = [], {}
        for container in self._containers().values():
            if not netns.is_namespace(self.netns_path(container)):
                continue
            for attachment in container.networks:
                if attachment.endpoint is not None:
                    endpoints.append(attachment.endpoint)
                    published[attachment.endpoint.id] = list(attachment.ports)
        self.networks.restore(endpoints, published)


def _check_in_subnets(address: str, record: NetworkRecord) -> None:
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        raise InvalidParameter(f"invalid IPv4 address {address!r}") from None
    subnets = [ipaddress.IPv4Network(s.subnet) for s in record.state.subnets]
    if subnets and not any(parsed in subnet for subnet in subnets):
        raise InvalidParameter(
            f"address {address} does not belong to the subnets of network {record.name} "
            f"({', '.join(map(str, subnets))})"
        )


def _bridge_address(container: Container, running: bool = True) -> str | None:
    """The container's address on the default bridge (``""`` while it has none), or
    ``None`` if it is not on it; ``running=False``: whether it is on it at all."""
    for attachment in container.networks:
        if attachment.network_name == DEFAULT_BRIDGE:
            if not running:
                return ""
            endpoint = attachment.endpoint
            return endpoint.ipv4.partition("/")[0] if endpoint is not None else ""
    return None


def _rewrite(path: Path, text: str) -> None:
    with contextlib.suppress(FileNotFoundError), open(path, "w") as file:
        file.write(text)
