"""The bridge driver's own ways, beyond the conformance suite: its firewall table, its pools,
the default network, internal networks and the options it refuses."""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import subprocess
from pathlib import Path

import cattrs
import pytest

from dockyard.core.config import Config
from dockyard.core.drivers import DriverContext, DriverKind
from dockyard.core.errors import ConfigError, Conflict, InvalidParameter
from dockyard.core.interfaces import PortBinding
from dockyard.core.plugins import PluginHost
from dockyard.linux import netns
from dockyard.plugins.networks.bridge import ipam
from dockyard.plugins.networks.bridge.plugin import (
    OPTION_DEFAULT,
    OPTION_MTU,
    OPTION_NAME,
    BridgeConfig,
    BridgeNetwork,
    build,
)
from dockyard.testing.networks import (
    Lab,
    echo_server,
    exchange,
    host_left_as_found,
    unreachable,
)


@pytest.fixture(autouse=True)
def host_left_alone():
    with host_left_as_found():
        yield


def config(**fields) -> BridgeConfig:
    fields.setdefault("instance", f"dyt{secrets.token_hex(4)}")
    return BridgeConfig(ip_forward=False, **fields)


@pytest.fixture
def lab(tmp_path):
    lab = Lab(BridgeNetwork(config()), tmp_path)
    try:
        yield lab
    finally:
        lab.clean()


def table_rules(driver: BridgeNetwork) -> list[str]:
    listed = subprocess.run(
        ["nft", "list", "table", "ip", driver.firewall.table], capture_output=True, text=True
    )
    return [line.strip() for line in listed.stdout.splitlines()]


def host_routes() -> list[ipaddress.IPv4Network]:
    listed = json.loads(
        subprocess.run(
            ["ip", "-j", "-4", "route"], capture_output=True, text=True, check=True
        ).stdout
    )
    return [
        ipaddress.IPv4Network(r["dst"]) for r in listed if r["dst"] != "default" and "/" in r["dst"]
    ]


def test_outbound_traffic_is_masqueraded_and_the_table_is_the_drivers_own(lab):
    network = lab.network()
    subnet, bridge = network.subnets[0].subnet, network.interface
    rules = table_rules(lab.driver)
    assert f'ip saddr {subnet} oifname != "{bridge}" masquerade comment "net:{network.id}"' in rules
    assert any(
        f'iifname "{bridge}" oifname @bridges oifname != "{bridge}" drop' in r for r in rules
    )
    assert bridge.startswith("dy-") and network.id.startswith(bridge[3:])
    # route_localnet on this bridge only, so 127.0.0.1 can be DNATed to it.
    assert Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").read_text().strip() == "1"
    lab.clean()
    assert table_rules(lab.driver) == []  # the last network takes the table with it


def test_an_internal_network_has_no_way_out_and_publishes_nothing(lab):
    network = lab.network(internal=True)
    bridge = network.interface
    rules = table_rules(lab.driver)
    assert not any("masquerade" in r and network.subnets[0].subnet in r for r in rules)
    assert any(f'iifname "{bridge}" oifname != "{bridge}" drop' in r for r in rules)
    assert any(f'oifname "{bridge}" iifname != "{bridge}" drop' in r for r in rules)
    endpoint = lab.connect(network)
    assert endpoint.gateway == ""
    routes = netns.run_in(
        endpoint.netns, lambda: Path("/proc/thread-self/net/route").read_text().splitlines()[1:]
    )
    assert all(line.split()[1] != "00000000" for line in routes)  # no default route
    with pytest.raises(InvalidParameter, match="internal"):
        lab.driver.publish(network, endpoint, [PortBinding("tcp", 80)])


def test_deleting_one_network_leaves_the_others_rules(lab):
    first, second = lab.network(), lab.network()
    lab.driver.delete_network(first)
    lab.networks.remove(first)
    rules = "\n".join(table_rules(lab.driver))
    assert f"net:{first.id}" not in rules and f"net:{second.id}" in rules
    assert f'"{first.interface}"' not in rules


def test_the_endpoint_inside_its_namespace(lab):
    network = lab.network(options={OPTION_MTU: "1400"})
    endpoint = lab.connect(network, interface_name="eth3")
    address = ipaddress.IPv4Interface(endpoint.ipv4)
    # The first address after the gateway, and docker's MAC made of it.
    assert address.ip == ipaddress.IPv4Address(network.subnets[0].gateway) + 1
    assert endpoint.mac == "02:42:" + ":".join(f"{b:02x}" for b in address.ip.packed)

    def look():
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            (link,) = [link for link in ipr.get_links() if link.get_attr("IFLA_IFNAME") == "eth3"]
            default = [
                r.get_attr("RTA_GATEWAY")
                for r in ipr.get_routes(family=socket.AF_INET)
                if r["dst_len"] == 0
            ]
            return link.get_attr("IFLA_ADDRESS"), link.get_attr("IFLA_MTU"), default

    assert netns.run_in(endpoint.netns, look) == (endpoint.mac, 1400, [network.subnets[0].gateway])


def test_the_default_pools_avoid_the_hosts_routes(lab):
    routes = [r for r in host_routes() if 8 < r.prefixlen <= 30]
    if not routes:
        pytest.skip("the host has no route to avoid")
    taken = routes[0]
    pool = taken.supernet()  # the taken half first, then the free one
    free = next(s for s in pool.subnets(new_prefix=taken.prefixlen) if s != taken)
    if any(free.overlaps(r) for r in host_routes()):
        pytest.skip(f"both halves of {pool} are routed on this host")
    lab.driver = BridgeNetwork(
        config(default_address_pools=[{"base": str(pool), "size": taken.prefixlen}])
    )
    network = lab.network()
    assert network.subnets[0].subnet == str(free)
    with pytest.raises(Conflict, match="non-overlapping"):
        lab.network()  # the pool is used up


def test_the_default_network_takes_bip(lab):
    lab.driver = BridgeNetwork(config(bip="198.18.77.1/24"))
    name = f"dyt{secrets.token_hex(4)}"
    network = lab.network(options={OPTION_DEFAULT: "true", OPTION_NAME: name})
    assert network.interface == name
    assert (network.subnets[0].subnet, network.subnets[0].gateway) == (
        "198.18.77.0/24",
        "198.18.77.1",
    )
    addresses = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", name], capture_output=True, text=True
    ).stdout
    assert "198.18.77.1/24" in addresses


def test_a_requested_range_and_gateway(lab):
    probe = lab.network()
    subnet = ipaddress.IPv4Network(probe.subnets[0].subnet)
    lab.clean()
    span = next(subnet.subnets(new_prefix=subnet.prefixlen + 2))
    gateway = subnet.network_address + 200
    network = lab.driver.create_network(
        lab_spec(
            subnet=str(subnet),
            ip_range=str(next(span.subnets(new_prefix=span.prefixlen + 1)).supernet()),
            gateway=str(gateway),
        )
    )
    lab.networks.append(network)
    assert network.subnets[0].gateway == str(gateway)
    endpoint = lab.connect(network)
    assert ipaddress.IPv4Interface(endpoint.ipv4).ip in span


def lab_spec(**ipam_fields):
    from dockyard.core.interfaces import IpamRequest, NetworkSpec

    return NetworkSpec(
        id=secrets.token_hex(32), name="dyt-ranged", ipam=(IpamRequest(**ipam_fields),)
    )


@pytest.mark.parametrize(
    ("options", "ipam_fields", "message"),
    [
        ({OPTION_NAME: "a-name-much-too-long"}, {}, "at most 15 bytes"),
        ({OPTION_MTU: "9x"}, {}, "driver.mtu"),
        ({}, {"subnet": "10.1.2.3/16"}, "host bits"),
        ({}, {"subnet": "fd00::/64"}, "not an IPv4 CIDR"),
        ({}, {"subnet": "10.251.0.0/31"}, "too small"),
        ({}, {"gateway": "10.251.0.1"}, "needs a subnet"),
        ({}, {"subnet": "10.251.0.0/24", "gateway": "10.252.0.1"}, "not a host address"),
        ({}, {"subnet": "10.251.0.0/24", "ip_range": "10.252.0.0/25"}, "not inside subnet"),
    ],
)
def test_bad_network_requests_are_refused_and_nothing_is_made(lab, options, ipam_fields, message):
    from dockyard.core.interfaces import IpamRequest, NetworkSpec

    ipam_request = (IpamRequest(**ipam_fields),) if ipam_fields else ()
    spec = NetworkSpec(id=secrets.token_hex(32), name="dyt-bad", options=options, ipam=ipam_request)
    with pytest.raises(InvalidParameter, match=message):
        lab.driver.create_network(spec)


def test_a_bridge_name_in_use_is_a_conflict(lab):
    first = lab.network()
    with pytest.raises(Conflict, match="already exists"):
        lab.network(options={OPTION_NAME: first.interface})


def test_bad_pools_are_a_config_error(tmp_path):
    context = DriverContext(state_dir=tmp_path)
    for pools, message in (
        ([{"base": "10.0.0.0/8"}], "each pool is"),
        ([{"base": "10.0.0.0/16", "size": 8}], "must be between"),
        ([{"base": "nope", "size": 24}], "not an IPv4 CIDR"),
    ):
        with pytest.raises(ConfigError, match=message):
            build(config(default_address_pools=pools), context)


def test_addresses_are_picked_in_the_range_and_run_out():
    subnet = ipaddress.IPv4Network("10.9.0.0/29")
    gateway = ipaddress.IPv4Address("10.9.0.1")
    picked = []
    for _ in range(5):  # .2 to .6: .0 is the network, .1 the gateway, .7 the broadcast
        picked.append(ipam.pick_address(subnet, None, gateway, picked))
    assert [str(a) for a in picked] == [f"10.9.0.{n}" for n in range(2, 7)]
    with pytest.raises(Conflict, match="no available IPv4 addresses"):
        ipam.pick_address(subnet, None, gateway, picked)
    span = ipaddress.IPv4Network("10.9.0.4/30")
    assert str(ipam.pick_address(subnet, span, gateway, [])) == "10.9.0.5"


def test_the_plugin_host_builds_the_built_in_network_drivers(tmp_path):
    host = PluginHost(Config(), "daemon").load()
    built = host.build_every(DriverKind.NETWORK, tmp_path)
    assert {name: type(driver).__name__ for name, driver in built.items()} == {
        "bridge": "BridgeNetwork",
        "cni": "CniNetwork",
        "host": "HostNetwork",
        "null": "NoNetwork",
    }


def test_states_are_plain_data_the_core_can_persist(lab):
    from dockyard.core.interfaces import EndpointState, NetworkState

    converter = cattrs.Converter()
    network = lab.network()
    endpoint = lab.connect(network)
    for record, cls in ((network, NetworkState), (endpoint, EndpointState)):
        text = json.dumps(converter.unstructure(record))
        assert converter.structure(json.loads(text), cls) == record


def test_restore_makes_again_a_bridge_and_a_table_lost_while_the_daemon_was_down(lab):
    from pyroute2 import IPRoute

    network = lab.network()
    endpoint = lab.connect(network)
    (bound,) = lab.driver.publish(network, endpoint, [PortBinding("tcp", 80)])
    with IPRoute() as ipr:
        ipr.link("del", index=ipr.link_lookup(ifname=network.interface)[0])
    subprocess.run(["nft", "delete", "table", "ip", lab.driver.firewall.table], check=True)
    with echo_server(endpoint.netns, 80):
        assert unreachable(None, "127.0.0.1", bound.host_port)
        restarted = BridgeNetwork(config(instance=lab.driver.instance))
        restarted.restore([network], [endpoint], {endpoint.id: [bound]})
        assert exchange(None, "127.0.0.1", bound.host_port) == b"echo:hello"
        assert exchange(None, endpoint.ipv4.partition("/")[0], 80) == b"echo:hello"
    rules = "\n".join(table_rules(lab.driver))
    assert f"net:{network.id}" in rules and f"port:{endpoint.id}" in rules
