"""The daemon's networks: create, find, list, remove, restore; the drivers do the plumbing.

Records live in ``<data root>/networks/<id>.json``. The predefined networks (``bridge``,
``host``, ``none``) are made at the first start; the default bridge is left out with the
daemon's ``bridge = "none"``, and containers then default to ``none``, as dockerd's
``--bridge=none`` does. Names are unique (a ``409``), whatever ``CheckDuplicate`` says: two
networks of one name are a trap docker keeps only for old clients.

Methods block (drivers touch the kernel): call them from worker threads. One lock orders
creations and removals, so a name is never taken twice and a network is never removed while
a container is being connected to it.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from dockyard.core.errors import Conflict, DockyardError, InvalidParameter, NotFound
from dockyard.core.interfaces import (
    EndpointState,
    IpamRequest,
    NetworkDriver,
    NetworkSpec,
    PortBinding,
)
from dockyard.core.timestamps import now_rfc3339
from dockyard.daemon.networks.records import (
    DEFAULT_BRIDGE,
    PREDEFINED_DRIVERS,
    NetworkCreateRequest,
    NetworkRecord,
)

_log = structlog.get_logger("dockyard.networks")

#: The bridge driver's options that mark docker's default network.
DEFAULT_BRIDGE_OPTIONS = {
    "com.docker.network.bridge.default_bridge": "true",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
}


class Forbidden(DockyardError):
    """What dockerd answers 403 to: removing a predefined network or one in use."""

    status_code = 403


class NetworkManager:
    def __init__(
        self,
        root: Path,
        drivers: Mapping[str, NetworkDriver],
        emit: Callable[[str, str, dict[str, str]], None],
        default_bridge: bool = True,
    ) -> None:
        self.root = root
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.drivers = dict(drivers)
        self._emit = emit
        self.default_bridge = default_bridge
        self.networks: dict[str, NetworkRecord] = {}
        self.lock = threading.RLock()
        for path in sorted(root.glob("*.json")):
            try:
                record = NetworkRecord.load(path)
            except (OSError, ValueError, KeyError, TypeError):
                _log.warning("dropping a network record that cannot be read", path=str(path))
                path.unlink(missing_ok=True)
                continue
            self.networks[record.id] = record

    # ------------------------------------------------------------------ lookup

    def get(self, name_or_id: str) -> NetworkRecord:
        """By full id, name, or unique id prefix (dockerd's order)."""
        if name_or_id in self.networks:
            return self.networks[name_or_id]
        for record in self.networks.values():
            if record.name == name_or_id:
                return record
        matches = [r for r in self.networks.values() if name_or_id and r.id.startswith(name_or_id)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidParameter(f"network {name_or_id} is ambiguous ({len(matches)} matches)")
        raise NotFound(f"network {name_or_id} not found")

    def find(self, name_or_id: str) -> NetworkRecord | None:
        try:
            return self.get(name_or_id)
        except NotFound:
            return None

    def driver(self, record: NetworkRecord) -> NetworkDriver:
        driver = self.drivers.get(record.driver)
        if driver is None:
            raise DockyardError(
                f"network {record.name}: its driver {record.driver} is not usable on this "
                "machine (see `dockyard plugins`)"
            )
        return driver

    # ------------------------------------------------------------------ create

    def ensure_predefined(self) -> None:
        """Make ``bridge``, ``host`` and ``none`` if this daemon has no record of them."""
        for name, driver in PREDEFINED_DRIVERS.items():
            if name == DEFAULT_BRIDGE and not self.default_bridge:
                continue
            if self.find(name) is not None or driver not in self.drivers:
                continue
            options = DEFAULT_BRIDGE_OPTIONS if name == DEFAULT_BRIDGE else {}
            # Quietly, as dockerd makes its own: no "create" event before the daemon's "start".
            self._create(name, driver, options=dict(options), announce=False)

    def create(self, request: NetworkCreateRequest) -> NetworkRecord:
        """``POST /networks/create``, checked as dockerd checks it."""
        name = request.name
        if not name:
            raise InvalidParameter("network name is required")
        if name in PREDEFINED_DRIVERS:
            raise Forbidden(f"{name} is a pre-defined network and cannot be created")
        refused = [
            field
            for field, given in (
                ("Ingress", request.ingress),
                ("ConfigOnly", request.config_only),
                ("ConfigFrom", request.config_from),
                ("Scope", request.scope not in ("", "local")),
                ("IPAM.Driver", request.ipam and request.ipam.driver not in ("", "default")),
                ("IPAM.Options", request.ipam and request.ipam.options),
            )
            if given
        ]
        if refused:
            raise InvalidParameter(
                f"{refused[0]}: not supported by this engine (no swarm, the default IPAM only)"
            )
        pools = (request.ipam.config if request.ipam else None) or []
        if any(pool.auxiliary_addresses for pool in pools):
            raise InvalidParameter("IPAM.Config.AuxiliaryAddresses: not supported by this engine")
        ipam = tuple(IpamRequest(p.subnet, p.gateway, p.ip_range) for p in pools)
        for pool in ipam:
            for text in (pool.subnet, pool.ip_range):
                if text and ":" in text:
                    raise InvalidParameter(f"{text}: IPv6 subnets are not supported yet")
        driver = request.driver or "bridge"
        if driver not in self.drivers:
            raise NotFound(f'plugin "{driver}" not found')
        return self._create(
            name,
            driver,
            options=dict(request.options or {}),
            ipam=ipam,
            internal=request.internal,
            attachable=request.attachable,
            labels=dict(request.labels or {}),
            enable_ipv6=request.enable_ipv6,
        )

    def _create(
        self,
        name: str,
        driver_name: str,
        options: dict[str, str],
        ipam: tuple[IpamRequest, ...] = (),
        internal: bool = False,
        attachable: bool = False,
        labels: dict[str, str] | None = None,
        enable_ipv6: bool = False,
        announce: bool = True,
    ) -> NetworkRecord:
        with self.lock:
            if any(record.name == name for record in self.networks.values()):
                raise Conflict(f"network with name {name} already exists")
            network_id = secrets.token_hex(32)
            driver = self.drivers[driver_name]
            state = driver.create_network(
                NetworkSpec(
                    id=network_id,
                    name=name,
                    options=options,
                    ipam=ipam,
                    internal=internal,
                    enable_ipv6=enable_ipv6,
                    labels=labels or {},
                )
            )
            record = NetworkRecord(
                id=network_id,
                name=name,
                driver=driver_name,
                created=now_rfc3339(),
                state=state,
                internal=internal,
                attachable=attachable,
                labels=labels or {},
                options=options,
                ipam=ipam,
            )
            try:
                record.save(self.root)
            except BaseException:
                driver.delete_network(state)
                raise
            self.networks[network_id] = record
        if announce:
            self._emit("create", network_id, {"name": name, "type": driver_name})
        return record

    # ------------------------------------------------------------------ remove

    def remove(self, name_or_id: str, endpoints: Callable[[str], Sequence[str]]) -> None:
        """``DELETE /networks/{id}``; ``endpoints(network id)`` names the containers on it."""
        with self.lock:
            record = self.get(name_or_id)
            if record.predefined:
                raise Forbidden(f"{record.name} is a pre-defined network and cannot be removed")
            users = endpoints(record.id)
            if users:
                raise Forbidden(
                    f"error while removing network: network {record.name} id {record.id} has "
                    "active endpoints"
                )
            self.driver(record).delete_network(record.state)
            (self.root / f"{record.id}.json").unlink(missing_ok=True)
            del self.networks[record.id]
        self._emit("destroy", record.id, {"name": record.name, "type": record.driver})

    # ------------------------------------------------------------------ restart

    def restore(
        self, endpoints: Sequence[EndpointState], ports: Mapping[str, Sequence[PortBinding]]
    ) -> None:
        """Each driver's :meth:`~NetworkDriver.restore` with its networks and endpoints."""
        for name, driver in self.drivers.items():
            networks = [r.state for r in self.networks.values() if r.driver == name]
            ids = {state.id for state in networks}
            mine = [e for e in endpoints if e.network_id in ids]
            try:
                driver.restore(networks, mine, {e.id: ports.get(e.id, ()) for e in mine})
            except DockyardError as exc:
                _log.error("restoring networks failed", driver=name, error=exc.message)


def subnet_json(record: NetworkRecord) -> list[dict[str, str]]:
    """``IPAM.Config`` as dockerd shows it: the subnets in use, with gateway and range."""
    entries = []
    for subnet in record.state.subnets:
        entry = {"Subnet": subnet.subnet}
        if subnet.ip_range:
            entry["IPRange"] = subnet.ip_range
        if subnet.gateway:
            entry["Gateway"] = subnet.gateway
        entries.append(entry)
    return entries


def network_json(record: NetworkRecord, containers: Mapping[str, dict[str, str]]) -> dict[str, Any]:
    """A network as ``GET /networks/{id}`` shows it (``containers``: its endpoints by id)."""
    return {
        "Name": record.name,
        "Id": record.id,
        "Created": record.created,
        "Scope": "local",
        "Driver": record.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": subnet_json(record)},
        "Internal": record.internal,
        "Attachable": record.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": dict(containers),
        "Options": dict(record.options),
        "Labels": dict(record.labels),
    }


def address_with_prefix(ipv4: str) -> tuple[str, int]:
    """``"172.18.0.2/16"`` as ("172.18.0.2", 16); ("", 0) for none."""
    if not ipv4:
        return "", 0
    interface = ipaddress.IPv4Interface(ipv4)
    return str(interface.ip), interface.network.prefixlen
