"""Hosts whose iptables ``FORWARD`` policy is ``DROP`` (as dockerd leaves it): the bridge driver
accepts its own bridges' traffic in a chain of its own, and takes the chain away with its last
network.

The policy is set through ``iptables-nft`` (its chains are in the nftables ruleset that
``host_left_as_found`` compares) and put back, table and all, even when a test fails. Traffic
goes only to containers the tests made and to their gateways.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.core.interfaces import PortBinding
from dockyard.plugins.networks.bridge.forward import ForwardAccepts
from dockyard.plugins.networks.bridge.plugin import BridgeConfig, BridgeNetwork, instance_for
from dockyard.testing.networks import Lab, echo_server, exchange, host_left_as_found
from tests.conftest import free_port
from tests.containers.engine_api import Api

IPTABLES = "iptables-nft"
HTTPD = ["httpd", "-f", "-p", "80", "-h", "/etc"]

pytestmark = pytest.mark.skipif(
    shutil.which(IPTABLES) is None, reason="iptables-nft is not installed"
)


def _nft_has(*what: str) -> bool:
    return subprocess.run(["nft", "list", *what], capture_output=True).returncode == 0


@contextlib.contextmanager
def forward_policy_drop() -> Iterator[None]:
    """``FORWARD`` policy ``DROP`` for the block, then the host as it was: the policy put back,
    or the chain or table that setting it made removed."""
    had_table = _nft_has("table", "ip", "filter")
    had_chain = had_table and _nft_has("chain", "ip", "filter", "FORWARD")
    listed = subprocess.run(
        [IPTABLES, "-w", "-S", "FORWARD"], capture_output=True, text=True, check=True
    ).stdout
    policy = (
        os.environ.get("DYT_POLICY") or "DROP"
        if "-P FORWARD DROP" in listed.splitlines()
        else "ACCEPT"
    )
    subprocess.run(
        [IPTABLES, "-w", "-P", "FORWARD", os.environ.get("DYT_POLICY", "DROP")], check=True
    )
    try:
        yield
    finally:
        if not had_table:
            subprocess.run(["nft", "delete", "table", "ip", "filter"], check=True)
        elif not had_chain:
            subprocess.run(["nft", "delete", "chain", "ip", "filter", "FORWARD"], check=True)
        else:
            subprocess.run([IPTABLES, "-w", "-P", "FORWARD", policy], check=True)


@pytest.fixture
def dropping() -> Iterator[None]:
    """Requested before ``start_daemon``, so that the daemon (and its own check of the host)
    ends first; the whole test holds the host-network lock, since the policy is the host's."""
    with host_left_as_found(), forward_policy_drop():
        yield


def chain_rules(instance: str) -> list[str]:
    listed = subprocess.run(
        [IPTABLES, "-w", "-S", ForwardAccepts(instance).chain], capture_output=True, text=True
    )
    return listed.stdout.splitlines() if listed.returncode == 0 else []


def test_containers_reach_each_other_and_published_ports_through_a_dropping_forward_chain(
    dropping, start_daemon
) -> None:
    daemon = start_daemon(network=True)
    api = Api.with_busybox(daemon)
    port = free_port()
    published = {"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": str(port)}]}}}
    server = api.create(HTTPD, ExposedPorts={"80/tcp": {}}, **published)
    api.start(server)
    settings = api.inspect(server)["NetworkSettings"]
    # Container to container on the default bridge (bridged frames pass FORWARD through
    # br_netfilter), and to the published port through the gateway (routed, DNAT).
    for url in (
        f"http://{settings['IPAddress']}/hostname",
        f"http://{settings['Gateway']}:{port}/hostname",
    ):
        code, out, err = api.run(["wget", "-qO-", url])
        assert (code, out) == (0, f"{server[:12]}\n".encode()), err
    # A user network made while the policy drops, and its containers.
    reply = api.call("POST", "/networks/create", {"Name": "dropped-net"})
    assert reply.status == 201, reply.body
    peer = api.create(HTTPD, HostConfig={"NetworkMode": "dropped-net"})
    api.start(peer)
    address = api.inspect(peer)["NetworkSettings"]["Networks"]["dropped-net"]["IPAddress"]
    code, out, err = api.run(
        ["wget", "-qO-", f"http://{address}/hostname"],
        HostConfig={"NetworkMode": "dropped-net"},
    )
    assert (code, out) == (0, f"{peer[:12]}\n".encode()), err
    instance = instance_for(daemon.data_root / "network" / "bridge")
    comments = {line.partition("--comment ")[2].split(" -j")[0] for line in chain_rules(instance)}
    assert len(comments - {""}) == 2  # one network's rules each
    for container in api.call("GET", "/containers/json?all=1").json():
        api.call("DELETE", f"/containers/{container['Id']}?force=1")
    assert api.call("DELETE", "/networks/dropped-net").status == 204
    assert len({line for line in chain_rules(instance) if "--comment" in line}) == 3


def test_the_chain_comes_with_the_first_network_and_goes_with_the_last(
    dropping, tmp_path: Path
) -> None:
    instance = f"dyt{secrets.token_hex(4)}"
    lab = Lab(BridgeNetwork(BridgeConfig(instance=instance, ip_forward=False)), tmp_path)
    try:
        first, second = lab.network(), lab.network()
        assert len(chain_rules(instance)) == 1 + 6  # -N, and three rules a network
        client, server = lab.connect(first), lab.connect(first)
        gateway = first.subnets[0].gateway
        with echo_server(server.netns) as port:
            # Bridged, from one container to another of the same network.
            assert exchange(client.netns, server.ipv4.partition("/")[0], port) == b"echo:hello"
            # Routed: to its published port through the gateway (DNAT).
            (bound,) = lab.driver.publish(first, server, [PortBinding("tcp", port)])
            assert exchange(client.netns, gateway, bound.host_port) == b"echo:hello"
        lab.driver.delete_network(second)
        lab.networks.remove(second)
        assert len(chain_rules(instance)) == 1 + 3
        # A restart finds the chain as the driver's networks need it.
        lab.driver.restore([first], [client, server], {})
        assert len(chain_rules(instance)) == 1 + 3
    finally:
        lab.clean()
    assert chain_rules(instance) == []
