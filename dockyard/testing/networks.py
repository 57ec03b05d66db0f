"""The network-driver conformance suite, for the built-in drivers and third-party ones alike.

Every test makes real network namespace files (:mod:`dockyard.linux.netns`), real networks and
endpoints through the driver, and sends real TCP traffic between them and from the host's
127.0.0.1 to published ports. Traffic goes only to loopback and to addresses the test made.
Every test ends by comparing the host's links, addresses and nftables ruleset with what they
were before it: a driver must leave nothing behind. A plugin author subclasses
:class:`NetworkDriverConformance`, provides the ``driver_factory`` fixture (a callable building
a new driver object over the same host, which is how a daemon restart is played) and says what
the driver does with the class attributes::

    from dockyard.testing.networks import NetworkDriverConformance

    class TestMyDriver(NetworkDriverConformance):
        @pytest.fixture
        def driver_factory(self):
            return lambda: MyDriver(...)

Tests must run as root. Names made by the suite start with ``dyt``.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import secrets
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.core.errors import Conflict, InvalidParameter, NotFound
from dockyard.core.interfaces import (
    EndpointSpec,
    EndpointState,
    IpamRequest,
    NetworkDriver,
    NetworkSpec,
    NetworkState,
    PortBinding,
)
from dockyard.linux import netns

DriverFactory = Callable[[], NetworkDriver]

#: How long a connection that should work may take, and one that should not is given.
CONNECT_TIMEOUT = 5.0
REFUSED_TIMEOUT = 1.0


# --------------------------------------------------------------------------------------------
# Looking at the host
# --------------------------------------------------------------------------------------------


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def host_network_snapshot() -> dict[str, list[str]]:
    """The host's links, addresses and nftables ruleset, as comparable text.

    Link lines drop their counters and state words that traffic changes, keeping names,
    aliases and masters.
    """
    links = []
    for line in _run("ip", "-o", "link").splitlines():
        words = line.split()
        alias = line.partition("alias ")[2].split("\\")[0] if "alias " in line else ""
        links.append(f"{words[1]} {alias}".strip())
    addresses = [" ".join(line.split()[1:4]) for line in _run("ip", "-o", "addr").splitlines()]
    ruleset = _run("nft", "list", "ruleset").splitlines()
    return {"links": sorted(links), "addresses": sorted(addresses), "ruleset": ruleset}


#: Held by every test that changes the host's network, across processes: tests run in
#: parallel (pytest-xdist, or two suites at once) would otherwise see each other's bridges in
#: their before-and-after comparison, and could pick the same free subnet at the same time.
HOST_NETWORK_LOCK = Path(tempfile.gettempdir()) / "dockyard-host-network-tests.lock"


def _assert_unchanged(before: dict[str, list[str]], after: dict[str, list[str]]) -> None:
    changes = {
        key: {"added": sorted(set(after[key]) - set(before[key])),
              "removed": sorted(set(before[key]) - set(after[key]))}
        for key in before
        if after[key] != before[key]
    }  # fmt: skip
    assert not changes, f"the host's network changed: {changes}"


_held = threading.local()


@contextlib.contextmanager
def host_left_as_found() -> Iterator[None]:
    """Run the block alone among host-network tests, and check that it left the host's links,
    addresses and ruleset as it found them.

    Re-entrant within a thread (a module's daemon holds it while one of its tests holds it
    again): flock would make a second hold of the same process wait for the first forever.
    """
    if getattr(_held, "depth", 0):
        _held.depth += 1
        try:
            before = host_network_snapshot()
            yield
            _assert_unchanged(before, host_network_snapshot())
        finally:
            _held.depth -= 1
        return
    with open(HOST_NETWORK_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _held.depth = 1
        try:
            before = host_network_snapshot()
            yield
            _assert_unchanged(before, host_network_snapshot())
        finally:
            _held.depth = 0
            fcntl.flock(lock, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Traffic
# --------------------------------------------------------------------------------------------


def listen_in(namespace: str | Path | None, port: int = 0) -> socket.socket:
    """A TCP server socket on 0.0.0.0:``port`` in ``namespace`` (``None``: the host's)."""

    def make() -> socket.socket:
        server = socket.create_server(("0.0.0.0", port))
        server.settimeout(CONNECT_TIMEOUT)
        return server

    return netns.run_in(namespace, make) if namespace else make()


@contextlib.contextmanager
def echo_server(namespace: str | Path | None, port: int = 0) -> Iterator[int]:
    """Serve one-shot echo connections in ``namespace`` while the block runs; yields the port."""
    server = listen_in(namespace, port)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                peer, _ = server.accept()
            except OSError:
                continue  # the accept timeout: look at ``stop`` again
            with peer:
                peer.settimeout(CONNECT_TIMEOUT)
                with contextlib.suppress(OSError):
                    peer.sendall(b"echo:" + peer.recv(64))

    thread = threading.Thread(target=serve, name="dyt-echo", daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        thread.join(CONNECT_TIMEOUT + 1)


def exchange(
    namespace: str | Path | None, address: str, port: int, timeout: float = CONNECT_TIMEOUT
) -> bytes:
    """Connect from ``namespace`` (``None``: the host) to ``address:port``, send, read back."""

    def talk() -> bytes:
        with socket.create_connection((address, port), timeout=timeout) as connection:
            connection.sendall(b"hello")
            return connection.recv(64)

    return netns.run_in(namespace, talk) if namespace else talk()


def unreachable(namespace: str | Path | None, address: str, port: int) -> bool:
    try:
        exchange(namespace, address, port, timeout=REFUSED_TIMEOUT)
    except OSError:
        return True
    return False


def new_id() -> str:
    return secrets.token_hex(32)


# --------------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------------


class Lab:
    """The networks, namespaces and endpoints of one test, all removed when it ends."""

    def __init__(self, driver: NetworkDriver, directory: Path) -> None:
        self.driver = driver
        self.directory = directory
        self.networks: list[NetworkState] = []
        self.endpoints: list[tuple[NetworkState, EndpointState]] = []
        self.namespaces: list[Path] = []

    def network(self, subnet: str = "", **fields: Any) -> NetworkState:
        ipam = (IpamRequest(subnet=subnet),) if subnet else ()
        spec = NetworkSpec(id=new_id(), name=f"dyt-{secrets.token_hex(3)}", ipam=ipam, **fields)
        state = self.driver.create_network(spec)
        self.networks.append(state)
        return state

    def namespace(self) -> Path:
        path = netns.create(self.directory / f"dyt-{secrets.token_hex(4)}")
        self.namespaces.append(path)
        return path

    def connect(
        self, network: NetworkState, namespace: Path | None = None, **fields: Any
    ) -> EndpointState:
        spec = EndpointSpec(
            id=new_id(),
            network_id=network.id,
            container_id=new_id(),
            netns=str(namespace or self.namespace()),
            **fields,
        )
        state = self.driver.connect(network, spec)
        self.endpoints.append((network, state))
        return state

    def forget(self, endpoint: EndpointState) -> None:
        self.endpoints = [(n, e) for n, e in self.endpoints if e.id != endpoint.id]

    def clean(self, driver: NetworkDriver | None = None) -> None:
        driver = driver or self.driver
        for network, endpoint in reversed(self.endpoints):
            driver.disconnect(network, endpoint)
        self.endpoints.clear()
        for network in reversed(self.networks):
            driver.delete_network(network)
        self.networks.clear()
        for path in self.namespaces:
            netns.remove(path)
        self.namespaces.clear()


class NetworkDriverConformance:
    """What every network driver must do. Subclasses provide ``driver_factory``.

    Class attributes say what kind of driver it is; tests that do not apply are skipped:
    """

    #: ``connect`` gives the namespace an interface with an address on the network.
    PLUMBS = True
    #: ``publish`` makes ports reachable from the host (host and none publish nothing).
    PUBLISHES = True
    #: Networks take subnets (``--subnet``), and overlapping ones are refused.
    ADDRESSES = True

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        raise NotImplementedError("subclasses provide a driver_factory fixture")

    @pytest.fixture(autouse=True)
    def host_left_as_found(self) -> Iterator[None]:
        """Autouse, so it is set up first and checked last, after every clean-up."""
        with host_left_as_found():
            yield

    @pytest.fixture
    def driver(self, driver_factory: DriverFactory) -> NetworkDriver:
        return driver_factory()

    @pytest.fixture
    def lab(self, driver: NetworkDriver, tmp_path: Path) -> Iterator[Lab]:
        lab = Lab(driver, tmp_path)
        try:
            yield lab
        finally:
            lab.clean()

    def require(self, *flags: str) -> None:
        for flag in flags:
            if not getattr(self, flag):
                pytest.skip(f"this driver does not do {flag.lower()}")

    # ---------------------------------------------------------------- networks

    def test_the_driver_implements_the_protocol(self, driver: NetworkDriver) -> None:
        assert isinstance(driver, NetworkDriver)

    def test_create_and_delete_a_network(self, lab: Lab) -> None:
        network = lab.network()
        assert network.name.startswith("dyt-")
        if self.ADDRESSES:
            (subnet,) = network.subnets
            assert ipaddress.IPv4Address(subnet.gateway) in ipaddress.IPv4Network(subnet.subnet)
        lab.clean()  # the autouse check then finds the host as it was

    def test_deleting_twice_is_fine(self, lab: Lab) -> None:
        network = lab.network()
        lab.driver.delete_network(network)
        lab.driver.delete_network(network)

    def test_ipv6_is_refused(self, lab: Lab) -> None:
        with pytest.raises(InvalidParameter):
            lab.network(enable_ipv6=True)

    def test_an_unknown_option_is_refused(self, lab: Lab) -> None:
        with pytest.raises(InvalidParameter, match=r"dyt\.no-such-option"):
            lab.network(options={"dyt.no-such-option": "1"})

    def test_an_overlapping_subnet_is_refused(self, lab: Lab) -> None:
        self.require("ADDRESSES")
        first = lab.network()
        with pytest.raises(Conflict, match="overlaps"):
            lab.network(subnet=first.subnets[0].subnet)

    def test_a_subnet_asked_for_is_used(self, lab: Lab) -> None:
        self.require("ADDRESSES")
        # Free among this driver's networks and the host's routes: the driver's own pick.
        probe = lab.network()
        chosen = probe.subnets[0].subnet
        lab.clean()
        network = lab.network(subnet=chosen)
        assert network.subnets[0].subnet == chosen
        endpoint = lab.connect(network)
        assert ipaddress.IPv4Interface(endpoint.ipv4).network == ipaddress.IPv4Network(chosen)

    # ---------------------------------------------------------------- endpoints

    def test_a_missing_namespace_file_is_not_found(self, lab: Lab, tmp_path: Path) -> None:
        self.require("PLUMBS")
        network = lab.network()
        with pytest.raises(NotFound):
            lab.connect(network, namespace=tmp_path / "no-such-namespace")

    def test_two_endpoints_on_one_network_reach_each_other(self, lab: Lab) -> None:
        self.require("PLUMBS")
        network = lab.network()
        one, two = lab.connect(network), lab.connect(network)
        assert one.ipv4 != two.ipv4 and one.mac != two.mac
        assert one.interface_name == "eth0"
        for server, client in ((one, two), (two, one)):
            with echo_server(server.netns) as port:
                address = server.ipv4.partition("/")[0]
                assert exchange(client.netns, address, port) == b"echo:hello"

    def test_the_host_reaches_an_endpoint_through_the_gateway(self, lab: Lab) -> None:
        self.require("PLUMBS")
        network = lab.network()
        endpoint = lab.connect(network)
        with echo_server(endpoint.netns) as port:
            assert exchange(None, endpoint.ipv4.partition("/")[0], port) == b"echo:hello"

    def test_a_requested_address_and_mac_are_used_and_a_taken_one_refused(self, lab: Lab) -> None:
        self.require("PLUMBS")
        network = lab.network()
        subnet = ipaddress.IPv4Network(network.subnets[0].subnet)
        wanted = str(subnet.network_address + 9)
        endpoint = lab.connect(network, ipv4=wanted, mac="02:42:de:ad:00:09")
        assert endpoint.ipv4 == f"{wanted}/{subnet.prefixlen}"
        assert endpoint.mac == "02:42:de:ad:00:09"
        with pytest.raises(Conflict, match="Address already in use"):
            lab.connect(network, ipv4=wanted)
        with pytest.raises(InvalidParameter):
            lab.connect(network, ipv4="203.0.113.9")

    def test_networks_are_isolated_from_each_other(self, lab: Lab) -> None:
        self.require("PLUMBS")
        if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
            pytest.skip("the host does not forward: no network could reach another anyway")
        red, blue = lab.network(), lab.network()
        on_red, on_blue = lab.connect(red), lab.connect(blue)
        with echo_server(on_blue.netns) as port:
            assert unreachable(on_red.netns, on_blue.ipv4.partition("/")[0], port)
            # ... while the same server answers its own network.
            other = lab.connect(blue)
            assert exchange(other.netns, on_blue.ipv4.partition("/")[0], port) == b"echo:hello"

    def test_disconnect_removes_the_interface(self, lab: Lab) -> None:
        self.require("PLUMBS")
        network = lab.network()
        endpoint = lab.connect(network)
        lab.driver.disconnect(network, endpoint)
        lab.forget(endpoint)
        names = netns.run_in(endpoint.netns, lambda: [n for _, n in socket.if_nameindex()])
        assert names == ["lo"]
        lab.driver.disconnect(network, endpoint)  # twice is fine

    def test_connect_without_plumbing_leaves_loopback_only(self, lab: Lab) -> None:
        if self.PLUMBS:
            pytest.skip("this driver plumbs interfaces")
        network = lab.network()
        endpoint = lab.connect(network)
        assert endpoint.ipv4 == "" and endpoint.host_interface == ""
        names = netns.run_in(endpoint.netns, lambda: [n for _, n in socket.if_nameindex()])
        assert names == ["lo"]
        assert lab.driver.publish(network, endpoint, [PortBinding("tcp", 80)]) == []

    def test_concurrent_connects_get_different_addresses(self, lab: Lab) -> None:
        self.require("PLUMBS")
        network = lab.network()
        namespaces = [lab.namespace() for _ in range(6)]
        made: list[EndpointState] = []

        def connect(namespace: Path) -> None:
            made.append(lab.connect(network, namespace=namespace))

        threads = [threading.Thread(target=connect, args=(path,)) for path in namespaces]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(made) == 6
        assert len({endpoint.ipv4 for endpoint in made}) == 6

    # ---------------------------------------------------------------- ports

    def test_a_published_udp_port(self, lab: Lab) -> None:
        self.require("PUBLISHES")
        network = lab.network()
        endpoint = lab.connect(network)

        def bound_udp() -> socket.socket:
            server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            server.bind(("0.0.0.0", 0))
            server.settimeout(CONNECT_TIMEOUT)
            return server

        with netns.run_in(endpoint.netns, bound_udp) as server:
            container_port = server.getsockname()[1]
            (bound,) = lab.driver.publish(network, endpoint, [PortBinding("udp", container_port)])
            assert bound.protocol == "udp" and bound.host_port > 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.sendto(b"datagram", ("127.0.0.1", bound.host_port))
                data, _ = server.recvfrom(64)
            assert data == b"datagram"

    def test_a_published_port_is_reached_from_127_0_0_1(self, lab: Lab) -> None:
        self.require("PUBLISHES")
        network = lab.network()
        endpoint = lab.connect(network)
        with echo_server(endpoint.netns) as container_port:
            (bound,) = lab.driver.publish(network, endpoint, [PortBinding("tcp", container_port)])
            assert bound.host_port > 0 and bound.container_port == container_port
            assert exchange(None, "127.0.0.1", bound.host_port) == b"echo:hello"
            # From another endpoint of the network, through the host's address on it.
            other = lab.connect(network)
            gateway = network.subnets[0].gateway
            assert exchange(other.netns, gateway, bound.host_port) == b"echo:hello"
            lab.driver.unpublish(network, endpoint, [bound])
            assert unreachable(None, "127.0.0.1", bound.host_port)

    def test_a_port_published_on_127_0_0_1_and_a_chosen_host_port(self, lab: Lab) -> None:
        self.require("PUBLISHES")
        network = lab.network()
        endpoint = lab.connect(network)
        with echo_server(endpoint.netns) as container_port:
            host_port = _free_host_port()
            asked = PortBinding("tcp", container_port, "127.0.0.1", host_port)
            assert lab.driver.publish(network, endpoint, [asked]) == [asked]
            assert exchange(None, "127.0.0.1", host_port) == b"echo:hello"

    def test_a_port_already_allocated_is_refused_and_nothing_published(self, lab: Lab) -> None:
        self.require("PUBLISHES")
        network = lab.network()
        first, second = lab.connect(network), lab.connect(network)
        (bound,) = lab.driver.publish(network, first, [PortBinding("tcp", 80)])
        spare = _free_host_port()
        with pytest.raises(Conflict, match=r"port is already allocated"):
            clashing = PortBinding("tcp", 80, "", bound.host_port)
            lab.driver.publish(network, second, [PortBinding("tcp", 81, "", spare), clashing])
        # All or nothing: the spare port was not taken by the failed call.
        assert lab.driver.publish(network, second, [PortBinding("tcp", 81, "", spare)])
        # A port a host process listens on is taken too.
        with listen_in(None) as server:
            taken = server.getsockname()[1]
            message = rf"Bind for 0\.0\.0\.0:{taken} failed: port is already allocated"
            with pytest.raises(Conflict, match=message):
                lab.driver.publish(network, second, [PortBinding("tcp", 82, "", taken)])

    def test_a_bad_port_is_refused(self, lab: Lab) -> None:
        self.require("PUBLISHES")
        network = lab.network()
        endpoint = lab.connect(network)
        for bad in (PortBinding("sctp", 80), PortBinding("tcp", 0), PortBinding("tcp", 80, "nope")):
            with pytest.raises(InvalidParameter):
                lab.driver.publish(network, endpoint, [bad])

    # ---------------------------------------------------------------- restart

    def test_restore_recreates_what_is_missing_and_removes_what_nobody_owns(
        self, lab: Lab, driver_factory: DriverFactory
    ) -> None:
        self.require("PLUMBS", "PUBLISHES")
        network = lab.network()
        kept, dropped = lab.connect(network), lab.connect(network)
        (bound,) = lab.driver.publish(network, kept, [PortBinding("tcp", 80)])
        # The kept endpoint's interface is lost while the daemon is down.
        lab.driver.disconnect(network, kept)
        restarted = driver_factory()
        restarted.restore([network], [kept], {kept.id: [bound]})
        lab.forget(dropped)  # restore removed it: nobody owns it any more
        names = netns.run_in(dropped.netns, lambda: [n for _, n in socket.if_nameindex()])
        assert names == ["lo"]
        with echo_server(kept.netns, 80):
            assert exchange(None, "127.0.0.1", bound.host_port) == b"echo:hello"
        lab.clean(restarted)

    def test_restore_keeps_running_endpoints_working(
        self, lab: Lab, driver_factory: DriverFactory
    ) -> None:
        self.require("PLUMBS", "PUBLISHES")
        network = lab.network()
        endpoint = lab.connect(network)
        (bound,) = lab.driver.publish(network, endpoint, [PortBinding("tcp", 80)])
        with echo_server(endpoint.netns, 80):
            driver_factory().restore([network], [endpoint], {endpoint.id: [bound]})
            assert exchange(None, "127.0.0.1", bound.host_port) == b"echo:hello"

    def test_restore_with_no_records_removes_everything(
        self, lab: Lab, driver_factory: DriverFactory
    ) -> None:
        network = lab.network()
        lab.connect(network)
        driver_factory().restore([], [], {})
        lab.endpoints.clear()
        lab.networks.clear()  # the autouse check finds the host clean without our clean-up


def _free_host_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
