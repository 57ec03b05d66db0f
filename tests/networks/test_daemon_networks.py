"""The daemon's networks through the Engine API: the default bridge, published ports, user
networks, connect and disconnect, ``container:`` mode, restarts, and the errors dockerd gives.

One daemon with networking for the module (it holds the host-network lock, and the module
must leave the host's links, addresses and ruleset as it found them); the restart test has
its own.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.testing.networks import host_left_as_found
from tests.conftest import (
    Daemon,
    free_port,
    plugin_env,
    restarted,
    serving,
    shut_down,
    spawn_daemon,
)
from tests.containers.engine_api import Api
from tests.networks.conftest import fetch

HTTPD = ["httpd", "-f", "-p", "80", "-h", "/etc"]


def host_address() -> str:
    """An address of the host's own, not loopback (traffic to it stays on the host)."""
    lines = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "scope", "global"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    ours = [line.split()[3].partition("/")[0] for line in lines if " dy" not in line]
    if not ours:
        pytest.skip("the host has no global IPv4 address")
    return ours[0]


@contextlib.contextmanager
def running(api: Api, cmd: list[str], name: str = "", **config) -> Iterator[str]:
    container = api.create(cmd, name=name or None, **config)
    try:
        api.start(container)
        yield container
    finally:
        api.call("DELETE", f"/containers/{container}?force=1")


@contextlib.contextmanager
def network(api: Api, name: str, **body) -> Iterator[dict]:
    reply = api.call("POST", "/networks/create", {"Name": name, **body})
    assert reply.status == 201, reply.body
    try:
        yield api.call("GET", f"/networks/{reply.json()['Id']}").json()
    finally:
        api.call("DELETE", f"/networks/{reply.json()['Id']}")


def test_a_container_on_the_default_bridge_is_reported_as_dockerd_reports_it(api: Api) -> None:
    bridge = api.call("GET", "/networks/bridge").json()
    gateway = bridge["IPAM"]["Config"][0]["Gateway"]
    with running(api, ["sleep", "30"]) as container:
        settings = api.inspect(container)["NetworkSettings"]
        endpoint = settings["Networks"]["bridge"]
        assert endpoint["NetworkID"] == bridge["Id"]
        assert endpoint["Gateway"] == settings["Gateway"] == gateway
        assert endpoint["IPAddress"] == settings["IPAddress"] != ""
        assert settings["IPPrefixLen"] == int(bridge["IPAM"]["Config"][0]["Subnet"].split("/")[1])
        assert settings["MacAddress"] == endpoint["MacAddress"]
        assert Path(settings["SandboxKey"]).exists()
        code, out, _ = api.exec(container, ["ip", "-4", "-o", "addr", "show", "eth0"])
        assert code == 0 and f"inet {settings['IPAddress']}/" in out.decode()
        code, out, _ = api.exec(container, ["ip", "route"])
        assert f"default via {gateway}" in out.decode()
        members = api.call("GET", "/networks/bridge").json()["Containers"]
        assert members[container]["IPv4Address"].startswith(settings["IPAddress"] + "/")
        hosts = api.exec(container, ["cat", "/etc/hosts"])[1].decode()
        assert f"{settings['IPAddress']}\t{container[:12]}" in hosts
    # Stopped, the endpoint and its address are gone, as in dockerd.
    assert container not in api.call("GET", "/networks/bridge").json()["Containers"]


def test_a_published_port_is_reached_from_loopback_the_host_address_and_containers(
    api: Api,
) -> None:
    port = free_port()
    config = {
        "ExposedPorts": {"80/tcp": {}},
        "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": str(port)}]}},
    }
    with running(api, HTTPD, **config) as container:
        assert fetch(f"http://127.0.0.1:{port}/hostname") == f"{container[:12]}\n".encode()
        assert fetch(f"http://{host_address()}:{port}/hostname").startswith(container[:12].encode())
        settings = api.inspect(container)["NetworkSettings"]
        assert settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
        listed = [c for c in api.call("GET", "/containers/json").json() if c["Id"] == container]
        assert listed[0]["Ports"] == [
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": port, "Type": "tcp"}
        ]
        gateway = settings["Gateway"]
        # Another container reaches it through the host's published port.
        code, out, err = api.run(["wget", "-qO-", f"http://{gateway}:{port}/hostname"])
        assert code == 0, err
        assert out == f"{container[:12]}\n".encode()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=1)


def test_publish_all_publishes_exposed_ports_on_picked_host_ports(api: Api) -> None:
    config = {"ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "HostConfig": {"PublishAllPorts": True}}
    with running(api, HTTPD, **config) as container:
        ports = api.inspect(container)["NetworkSettings"]["Ports"]
        assert set(ports) == {"80/tcp", "53/udp"}
        host_port = int(ports["80/tcp"][0]["HostPort"])
        assert host_port > 1024
        assert fetch(f"http://127.0.0.1:{host_port}/hostname").startswith(container[:12].encode())


def test_a_port_already_allocated_is_refused_and_the_container_does_not_start(api: Api) -> None:
    port = free_port()
    bindings = {"HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": str(port)}]}}}
    with running(api, HTTPD, **bindings):
        second = api.create(HTTPD, **bindings)
        try:
            reply = api.call("POST", f"/containers/{second}/start")
            assert reply.status == 409 or reply.status >= 400, reply.body
            assert "port is already allocated" in reply.json()["message"]
            state = api.inspect(second)["State"]
            # As dockerd: the reason kept, and 128 for the exit code nothing set.
            assert state["Status"] == "created" and state["ExitCode"] == 128
            assert "port is already allocated" in state["Error"]
            assert second not in api.call("GET", "/networks/bridge").json()["Containers"]
        finally:
            api.call("DELETE", f"/containers/{second}?force=1")


@pytest.mark.parametrize(
    ("host_config", "message"),
    [
        ({"PortBindings": {"http/tcp": [{"HostPort": "80"}]}}, "invalid containerPort: http"),
        ({"PortBindings": {"80/xyz": [{"HostPort": "80"}]}}, "invalid proto: xyz"),
        ({"PortBindings": {"80/tcp": [{"HostPort": "70000"}]}}, "invalid hostPort: 70000"),
        ({"PortBindings": {"80/tcp": [{"HostIp": "1.2.3", "HostPort": "80"}]}}, "1.2.3"),
        ({"PortBindings": {"80/tcp": [{"HostPort": 80}]}}, "HostPort"),
        ({"NetworkMode": "no-such-network"}, "network no-such-network not found"),
    ],
)
def test_bad_networking_requests_are_refused_at_create(
    api: Api, host_config: dict, message: str
) -> None:
    reply = api.call("POST", "/containers/create", {"Image": "busybox", "HostConfig": host_config})
    assert reply.status in (400, 404), reply.body
    assert message in reply.json()["message"]


def test_user_networks_are_created_listed_filtered_and_removed(api: Api) -> None:
    labels = {"com.example.team": "blue"}
    with network(
        api, "net-life", Labels=labels, IPAM={"Config": [{"Subnet": "10.231.0.0/24"}]}
    ) as created:
        assert created["Driver"] == "bridge"
        assert created["IPAM"]["Config"] == [{"Subnet": "10.231.0.0/24", "Gateway": "10.231.0.1"}]
        listed = api.call("GET", '/networks?filters={"label":["com.example.team=blue"]}').json()
        assert [n["Name"] for n in listed] == ["net-life"]
        custom = api.call("GET", '/networks?filters={"type":["custom"]}').json()
        assert "bridge" not in [n["Name"] for n in custom]
        again = api.call("POST", "/networks/create", {"Name": "net-life"})
        assert again.status == 409
        overlap = api.call(
            "POST", "/networks/create",
            {"Name": "net-overlap", "IPAM": {"Config": [{"Subnet": "10.231.0.128/25"}]}},
        )  # fmt: skip
        assert overlap.status in (400, 409) and "overlap" in overlap.json()["message"]
        assert api.call("GET", '/networks?filters={"nope":["x"]}').status == 400
        with running(api, ["sleep", "30"], HostConfig={"NetworkMode": "net-life"}):
            busy = api.call("DELETE", "/networks/net-life")
            assert busy.status == 403 and "active endpoints" in busy.json()["message"]
    assert api.call("GET", "/networks/net-life").status == 404
    assert api.call("DELETE", "/networks/bridge").status == 403
    assert api.call("DELETE", "/networks/no-such").status == 404


def test_prune_removes_unused_networks_only(api: Api) -> None:
    with network(api, "net-used"):
        api.call("POST", "/networks/create", {"Name": "net-unused"})
        with running(api, ["sleep", "30"], HostConfig={"NetworkMode": "net-used"}):
            pruned = api.call("POST", "/networks/prune").json()
            assert pruned["NetworksDeleted"] == ["net-unused"]
            assert api.call("GET", "/networks/net-used").status == 200


def test_user_networks_are_isolated_and_their_containers_reach_each_other(api: Api) -> None:
    with (
        network(api, "net-a"),
        network(api, "net-b"),
        running(api, HTTPD, HostConfig={"NetworkMode": "net-a"}) as server,
    ):
        address = api.inspect(server)["NetworkSettings"]["Networks"]["net-a"]["IPAddress"]
        code, out, err = api.run(
            ["wget", "-qO-", f"http://{address}/hostname"], HostConfig={"NetworkMode": "net-a"}
        )
        assert code == 0, err
        # busybox's wget -T crashes here: ping's deadline tells a dropped packet instead.
        code, _, err = api.run(["ping", "-c1", "-W1", address], HostConfig={"NetworkMode": "net-a"})
        assert code == 0, err
        code, out, _ = api.run(["ping", "-c1", "-W1", address], HostConfig={"NetworkMode": "net-b"})
        assert code != 0 and b"0 packets received" in out


def test_connect_and_disconnect_a_running_container(api: Api) -> None:
    with network(api, "net-join") as joined, running(api, ["sleep", "60"]) as container:
        reply = api.call("POST", "/networks/net-join/connect", {"Container": container})
        assert reply.status == 200, reply.body
        networks = api.inspect(container)["NetworkSettings"]["Networks"]
        assert set(networks) == {"bridge", "net-join"}
        address = networks["net-join"]["IPAddress"]
        assert address.startswith(joined["IPAM"]["Config"][0]["Subnet"].rsplit(".", 2)[0])
        code, out, _ = api.exec(container, ["ip", "-4", "-o", "addr", "show", "eth1"])
        assert code == 0 and address in out.decode()
        twice = api.call("POST", "/networks/net-join/connect", {"Container": container})
        assert twice.status == 403
        reply = api.call("POST", "/networks/net-join/disconnect", {"Container": container})
        assert reply.status == 200, reply.body
        assert set(api.inspect(container)["NetworkSettings"]["Networks"]) == {"bridge"}
        code, _, _ = api.exec(container, ["ip", "link", "show", "eth1"])
        assert code != 0


def test_container_mode_shares_the_other_containers_namespace(api: Api) -> None:
    with running(api, HTTPD, name="pod-owner") as owner:
        mode = {"NetworkMode": "container:pod-owner"}
        code, out, err = api.run(["wget", "-qO-", "http://127.0.0.1/hostname"], HostConfig=mode)
        assert code == 0, err
        assert out == f"{owner[:12]}\n".encode()
        refused = api.call(
            "POST", "/containers/create",
            {"Image": "busybox", "Hostname": "x", "HostConfig": mode},
        )  # fmt: skip
        assert refused.status == 400 and "conflicting options" in refused.json()["message"]


def test_an_internal_network_has_no_route_out(api: Api) -> None:
    with network(api, "net-internal", Internal=True):
        code, out, _ = api.run(["ip", "route"], HostConfig={"NetworkMode": "net-internal"})
        assert code == 0 and "default" not in out.decode()


def test_ip_and_aliases_are_refused_on_the_default_bridge(api: Api) -> None:
    body = {
        "Image": "busybox",
        "NetworkingConfig": {
            "EndpointsConfig": {"bridge": {"IPAMConfig": {"IPv4Address": "172.17.0.9"}}}
        },
    }
    reply = api.call("POST", "/containers/create", body)
    assert reply.status == 400
    assert "user defined networks only" in reply.json()["message"]


def test_a_requested_address_on_a_user_network(api: Api) -> None:
    with network(api, "net-fixed", IPAM={"Config": [{"Subnet": "10.232.0.0/24"}]}):
        endpoints = {"net-fixed": {"IPAMConfig": {"IPv4Address": "10.232.0.77"}}}
        config = {
            "HostConfig": {"NetworkMode": "net-fixed"},
            "NetworkingConfig": {"EndpointsConfig": endpoints},
        }
        code, out, _ = api.run(["ip", "-4", "-o", "addr", "show", "eth0"], **config)
        assert code == 0 and "10.232.0.77/24" in out.decode()
        endpoints["net-fixed"]["IPAMConfig"]["IPv4Address"] = "10.233.0.5"
        outside = api.call("POST", "/containers/create", {"Image": "busybox", **config})
        assert outside.status == 400
        assert "does not belong to the subnets of network net-fixed" in outside.json()["message"]


def test_names_resolve_on_user_networks_and_not_on_the_default_bridge(api: Api) -> None:
    on_net = {"HostConfig": {"NetworkMode": "net-dns"}}
    aliases = {"NetworkingConfig": {"EndpointsConfig": {"net-dns": {"Aliases": ["backend"]}}}}
    with (
        network(api, "net-dns"),
        running(api, HTTPD, name="dns-web", **on_net, **aliases) as web,
    ):
        for name in ("dns-web", "backend", web[:12], "DNS-WEB"):
            code, out, err = api.run(["wget", "-qO-", f"http://{name}/hostname"], **on_net)
            assert code == 0, (name, err)
            assert out == f"{web[:12]}\n".encode()
        code, out, _ = api.run(["cat", "/etc/resolv.conf"], **on_net)
        assert out.decode().startswith("nameserver 127.0.0.11\n")
        # A container started later is found too, from the one already running.
        with running(api, ["sleep", "30"], name="dns-late", **on_net):
            code, out, _ = api.exec(web, ["nslookup", "dns-late", "127.0.0.11"])
            assert code == 0 and "Address" in out.decode()
        code, out, _ = api.run(["cat", "/etc/resolv.conf"])
        assert "127.0.0.11" not in out.decode()
        # Another container may share the alias, not take dns-web's name.
        shared = {"NetworkingConfig": {"EndpointsConfig": {"net-dns": {"Aliases": ["backend"]}}}}
        with running(api, ["sleep", "30"], **on_net, **shared):
            pass
        taken = {"NetworkingConfig": {"EndpointsConfig": {"net-dns": {"Aliases": ["dns-web"]}}}}
        clash = api.create(["sleep", "30"], **on_net, **taken)
        try:
            reply = api.call("POST", f"/containers/{clash}/start")
            assert reply.status == 409, reply.body
            assert "conflicts with the name of container" in reply.json()["message"]
        finally:
            api.call("DELETE", f"/containers/{clash}?force=1")


def test_network_events(api: Api) -> None:
    since = time.time()
    with (
        network(api, "net-events"),
        running(api, ["true"], HostConfig={"NetworkMode": "net-events"}),
    ):
        pass
    until = time.time() + 1
    reply = api.call("GET", f'/events?since={since}&until={until}&filters={{"type":["network"]}}')
    actions = [json.loads(line)["Action"] for line in reply.body.splitlines() if line.strip()]
    assert actions[:1] == ["create"] and "connect" in actions and actions[-1] == "destroy"


def test_ports_work_while_the_daemon_is_down_and_after_it_restarts(tmp_path: Path) -> None:
    socket_path = str(tmp_path / "d.sock")
    args = ["daemon", "--data-root", str(tmp_path / "root"), "-H", f"unix://{socket_path}"]
    port = free_port()
    with host_left_as_found():
        daemon: Daemon = serving(
            spawn_daemon(args, plugin_env([]), socket_path, tmp_path / "root",
                         tmp_path / "d.log", network=True)
        )  # fmt: skip
        try:
            api = Api.with_busybox(daemon)
            container = api.create(
                HTTPD, HostConfig={"PortBindings": {"80/tcp": [{"HostPort": str(port)}]}}
            )
            api.start(container)
            assert api.call("POST", "/networks/create", {"Name": "net-kept"}).status == 201
            named = api.create(["sleep", "60"], name="kept", HostConfig={"NetworkMode": "net-kept"})
            api.start(named)
            before = api.inspect(container)["NetworkSettings"]
            assert fetch(f"http://127.0.0.1:{port}/hostname")
            daemon.stop()
            assert fetch(f"http://127.0.0.1:{port}/hostname")  # nobody serves it but the kernel
            with restarted(daemon) as again:
                after = Api(again).inspect(container)["NetworkSettings"]
                assert after["IPAddress"] == before["IPAddress"]
                assert after["Ports"] == before["Ports"]
                assert fetch(f"http://127.0.0.1:{port}/hostname")
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    pass
                # Names are served again to the containers that outlived the daemon.
                code, out, _ = Api(again).exec(named, ["nslookup", "kept", "127.0.0.11"])
                assert code == 0 and "Address" in out.decode(), out
                for leftover in (container, named):
                    Api(again).call("DELETE", f"/containers/{leftover}?force=1")
                Api(again).call("DELETE", "/networks/net-kept")
        finally:
            shut_down(daemon)


def test_a_cni_network_through_the_engine_api(start_daemon, tmp_path: Path) -> None:
    from tests.networks.test_cni import free_subnet, write_conflist

    conf_dir = tmp_path / "net.d"
    subnet = free_subnet([])
    write_conflist(conf_dir, "podnet", subnet)
    daemon = start_daemon(config=f'[networks.cni]\nconf-dir = "{conf_dir}"\n', network=True)
    api = Api.with_busybox(daemon)
    reply = api.call("POST", "/networks/create", {"Name": "podnet", "Driver": "cni"})
    assert reply.status == 201, reply.body
    port = free_port()
    config = {
        "HostConfig": {
            "NetworkMode": "podnet",
            "PortBindings": {"80/tcp": [{"HostPort": str(port)}]},
        }
    }
    with running(api, HTTPD, **config) as container:
        address = api.inspect(container)["NetworkSettings"]["Networks"]["podnet"]["IPAddress"]
        assert ipaddress.IPv4Address(address) in subnet
        assert fetch(f"http://127.0.0.1:{port}/hostname") == f"{container[:12]}\n".encode()
    assert api.call("DELETE", "/networks/podnet").status == 204


def test_endpoint_links_are_kept_and_reported(api: Api) -> None:
    # docker-compose 1.29 sends a service's links with every network it connects it to.
    with network(api, "net-links"), running(api, ["sleep", "60"], name="linked") as target:
        with running(api, ["sleep", "60"]) as container:
            reply = api.call(
                "POST", "/networks/net-links/connect",
                {"Container": container, "EndpointConfig": {"Links": ["linked:lnk", "/linked"]}},
            )  # fmt: skip
            assert reply.status == 200, reply.body
            endpoint = api.inspect(container)["NetworkSettings"]["Networks"]["net-links"]
            assert endpoint["Links"] == ["linked:lnk", "/linked"]
            assert api.inspect(target)["NetworkSettings"]["Networks"]["bridge"]["Links"] is None
        for links, message in (
            (["linked:a:b"], "bad format for links: linked:a:b"),
            (["linked:"], "bad format for links: linked:"),
        ):
            reply = api.call(
                "POST", "/containers/create",
                {"Image": "busybox", "HostConfig": {"NetworkMode": "net-links"},
                 "NetworkingConfig": {"EndpointsConfig": {"net-links": {"Links": links}}}},
            )  # fmt: skip
            assert reply.status == 400 and message in reply.json()["message"], reply.body
    # dockerd takes them on the default bridge too (docker-compose sends them there with
    # network_mode: bridge), where legacy links are HostConfig.Links.
    created = api.create(
        ["true"], NetworkingConfig={"EndpointsConfig": {"bridge": {"Links": ["x:y"]}}}
    )
    try:
        assert api.inspect(created)["NetworkSettings"]["Networks"]["bridge"]["Links"] == ["x:y"]
    finally:
        api.call("DELETE", f"/containers/{created}")


def test_the_short_id_is_an_alias_from_the_first_start_as_in_dockerd(api: Api) -> None:
    # docker-compose 1.29 reconnects a created container's network when its endpoint lacks
    # the short id, to send the service's links: dockerd adds it at the first start.
    with network(api, "net-short"):
        config = {"Aliases": ["web"]}
        created = api.create(
            ["sleep", "60"], HostConfig={"NetworkMode": "net-short"},
            NetworkingConfig={"EndpointsConfig": {"net-short": config}},
        )  # fmt: skip
        try:
            endpoint = api.inspect(created)["NetworkSettings"]["Networks"]["net-short"]
            assert endpoint["Aliases"] == ["web"]
            api.start(created)
            endpoint = api.inspect(created)["NetworkSettings"]["Networks"]["net-short"]
            assert endpoint["Aliases"] == ["web", created[:12]]
            api.call("POST", f"/containers/{created}/stop?t=0")
            endpoint = api.inspect(created)["NetworkSettings"]["Networks"]["net-short"]
            assert endpoint["Aliases"] == ["web", created[:12]]
        finally:
            api.call("DELETE", f"/containers/{created}?force=1")


def test_a_link_alias_resolves_for_the_linking_container_only(api: Api) -> None:
    on_net = {"HostConfig": {"NetworkMode": "net-lnk"}}
    linked = {"NetworkingConfig": {"EndpointsConfig": {"net-lnk": {"Links": ["lnk-web:webby"]}}}}
    with network(api, "net-lnk"), running(api, HTTPD, name="lnk-web", **on_net) as web:
        code, out, err = api.run(["wget", "-qO-", "http://WEBBY/hostname"], **on_net, **linked)
        assert (code, out) == (0, f"{web[:12]}\n".encode()), err
        code, out, _ = api.run(["nslookup", "webby", "127.0.0.11"], **on_net)
        assert code != 0, out
        # HostConfig.Links (docker-compose 1.29 sends them) are the endpoint's on a user network.
        legacy = {"HostConfig": {"NetworkMode": "net-lnk", "Links": ["lnk-web:legacy"]}}
        with running(api, ["sleep", "30"], **legacy) as container:
            endpoint = api.inspect(container)["NetworkSettings"]["Networks"]["net-lnk"]
            assert endpoint["Links"] == ["lnk-web:legacy"]
            code, out, err = api.exec(container, ["wget", "-qO-", "http://legacy/hostname"])
            assert (code, out) == (0, f"{web[:12]}\n".encode()), err
    # On the default bridge they are legacy links (tests/containers/test_links_interop.py),
    # to containers that exist.
    reply = api.call(
        "POST", "/containers/create", {"Image": "busybox", "HostConfig": {"Links": ["x:y"]}}
    )
    assert reply.status == 400, reply.body
    assert reply.json()["message"] == "could not get container for x: No such container: x"
