"""Our client's networking: ``-p``/``--expose`` and the other networking flags of
``run``/``create``, the ``network`` commands, ``port`` and the PORTS column of ``ps``.

The parsing and formatting functions are checked against what the docker CLI 28 writes (the
expected strings below are its output). The interop tests then run the docker CLI and ours
with the same flags against one stub Engine API (engine_stub.py) and compare the request
bodies each built, and what each printed from the same replies.
"""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from dockyard.commands.ports import (
    PortSpecError,
    displayable_ports,
    natural_less,
    natural_sort_key,
    parse_publish,
    port_fields,
    port_lines,
)
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import plugin_env, run_dockyard
from tests.networks.engine_stub import EngineStub, engine_stub

# --------------------------------------------------------------------------------------------
# Client-side parsing and formatting (no server)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [("80/tcp", "", "")]),
        ("8080:80", [("80/tcp", "", "8080")]),
        ("127.0.0.1::53/udp", [("53/udp", "127.0.0.1", "")]),
        ("8000-8001:80-81", [("80/tcp", "", "8000"), ("81/tcp", "", "8001")]),
        ("9000-9005:443", [("443/tcp", "", "9000-9005")]),  # a range to pick one port from
        ("[::1]:7:7", [("7/tcp", "::1", "7")]),
        ("::80", [("80/tcp", "", "")]),
        ("[::1]::80", [("80/tcp", "::1", "")]),
        ("080", [("80/tcp", "", "")]),  # numbers are written back plainly
        ("8080:80/UDP", [("80/udp", "", "8080")]),
        ("80/", [("80/tcp", "", "")]),
        ("80/udp/x", [("80/udp", "", "")]),
        ("0", [("0/tcp", "", "")]),
        ("target=80,published=8080,protocol=udp", [("80/udp", "", "8080")]),
        ("mode=host,target=80", [("80/tcp", "", "")]),
    ],
)
def test_publish_specs_parse_as_the_docker_cli_parses_them(spec, expected):
    parsed = [(port, b["HostIp"], b["HostPort"]) for port, b in parse_publish(spec)]
    assert parsed == expected


@pytest.mark.parametrize(
    ("flag", "spec", "message"),
    [
        ("-p", "abc", "invalid containerPort: abc"),
        ("-p", "80/xyz", "invalid proto: xyz"),
        ("-p", "1:2:3:4:5", "invalid IP address: 1:2:3"),
        ("-p", "", "no port specified: <empty>"),
        ("-p", "80:", "no port specified: 80:<empty>"),
        ("-p", "/tcp", "no port specified: /tcp<empty>"),
        ("-p", "80-81:8000-8002", "invalid ranges specified for container and host Ports: 8000-8002 and 80-81"),
        ("-p", "a::80", "invalid IP address: a"),
        ("-p", "1.2.3.4:80", "invalid hostPort: 1.2.3.4"),
        ("-p", "70000", "invalid containerPort: 70000"),
        ("-p", "80-70", "invalid containerPort: 80-70"),
        ("-p", " 80", "invalid containerPort:  80"),
        ("-p", "localhost:80:80", "invalid IP address: localhost"),
        ("-p", "target=80,published", "invalid publish opts format (should be name=value but got 'published')"),
        ("--expose", "80:80", "invalid port format for --expose: 80:80"),
        ("--expose", "abc", 'invalid range format for --expose: abc, error: strconv.ParseUint: parsing "abc": invalid syntax'),
        ("--expose", "80-70", "invalid range format for --expose: 80-70, error: invalid range specified for port: 80-70"),
    ],
)  # fmt: skip
def test_bad_port_values_get_the_docker_cli_s_message(flag, spec, message):
    with pytest.raises(PortSpecError) as caught:
        port_fields([spec] if flag == "-p" else [], [spec] if flag == "--expose" else [])
    assert str(caught.value) == message


def test_published_ports_are_exposed_and_expose_takes_ranges():
    exposed, bindings = port_fields(["8080:80", "8000:80", "53/udp"], ["7000-7001", "80"])
    assert exposed == {"80/tcp": {}, "53/udp": {}, "7000/tcp": {}, "7001/tcp": {}}
    assert bindings["80/tcp"] == [
        {"HostIp": "", "HostPort": "8080"},
        {"HostIp": "", "HostPort": "8000"},
    ]
    assert bindings["53/udp"] == [{"HostIp": "", "HostPort": ""}]


#: /containers/json's Ports for one container, in no particular order.
LISTED_PORTS = [
    {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
    {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
    {"PrivatePort": 443, "Type": "tcp"},
    {"IP": "0.0.0.0", "PrivatePort": 8000, "PublicPort": 9000, "Type": "tcp"},
    {"IP": "0.0.0.0", "PrivatePort": 8001, "PublicPort": 9001, "Type": "tcp"},
    {"PrivatePort": 7000, "Type": "udp"},
    {"PrivatePort": 7001, "Type": "udp"},
    {"PrivatePort": 7003, "Type": "udp"},
    {"IP": "127.0.0.1", "PrivatePort": 53, "PublicPort": 32768, "Type": "udp"},
]


@pytest.mark.parametrize(
    ("ports", "column"),
    [
        ([], ""),
        ([{"PrivatePort": 443, "Type": "tcp"}], "443/tcp"),
        (
            LISTED_PORTS,
            "7000-7001/udp, 443/tcp, 7003/udp, 127.0.0.1:32768->53/udp, 0.0.0.0:8080->80/tcp, "
            "[::]:8080->80/tcp, 0.0.0.0:9000->8000/tcp, 0.0.0.0:9001->8001/tcp",
        ),
        (  # published as themselves: collapsed like unpublished ones, per address
            [
                {"IP": "0.0.0.0", "PrivatePort": 81, "PublicPort": 81, "Type": "tcp"},
                {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 80, "Type": "tcp"},
                {"IP": "::", "PrivatePort": 80, "PublicPort": 80, "Type": "tcp"},
            ],
            "0.0.0.0:80-81->80-81/tcp, :::80->80/tcp",
        ),
    ],
)
def test_ps_ports_column_is_written_as_the_docker_cli_writes_it(ports, column):
    assert displayable_ports(ports) == column


INSPECTED = {
    "NetworkSettings": {
        "Ports": {
            "80/tcp": [
                {"HostIp": "0.0.0.0", "HostPort": "8080"},
                {"HostIp": "::", "HostPort": "8080"},
            ],
            "443/tcp": None,
            "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}],
        }
    }
}


@pytest.mark.parametrize(
    ("wanted", "lines"),
    [
        (None, ["53/udp -> 127.0.0.1:32768", "80/tcp -> 0.0.0.0:8080", "80/tcp -> [::]:8080"]),
        ("80", ["0.0.0.0:8080", "[::]:8080"]),
        ("80/tcp", ["0.0.0.0:8080", "[::]:8080"]),
        ("53/udp", ["127.0.0.1:32768"]),
    ],
)
def test_port_lists_bindings_as_the_docker_cli_does(wanted, lines):
    assert port_lines(INSPECTED, wanted, "web") == lines


@pytest.mark.parametrize(
    ("wanted", "message"),
    [
        ("443", "Error: No public port '443' published for web"),
        ("81/xyz", "Error: No public port '81/xyz' published for web"),
        ("abc", 'Error: invalid port (abc): strconv.ParseUint: parsing "abc": invalid syntax'),
    ],
)
def test_port_refuses_an_unpublished_or_bad_port_in_docker_s_words(wanted, message):
    with pytest.raises(PortSpecError) as caught:
        port_lines(INSPECTED, wanted, "web")
    assert str(caught.value) == message


def test_natural_order_compares_numbers_as_numbers():
    names = ["net10", "bridge", "net9", "net09", "host", "a1b", "a01b", "net", "9"]
    assert sorted(names, key=natural_sort_key) == [
        "9",
        "a1b",
        "a01b",
        "bridge",
        "host",
        "net",
        "net9",
        "net09",
        "net10",
    ]
    assert natural_less("net9", "net10") and not natural_less("net10", "net9")


# --------------------------------------------------------------------------------------------
# Side by side with the docker CLI, against one stub Engine API
# --------------------------------------------------------------------------------------------


@pytest.fixture
def stub(tmp_path) -> Iterator[EngineStub]:
    with engine_stub(str(tmp_path / "engine.sock")) as server:
        yield server


def run_docker(stub: EngineStub, words: list[str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_cli(), *words],
        capture_output=True,
        text=True,
        env=docker_env(stub.host, tmp_path / "docker-config"),
        timeout=30,
    )


def run_ours(stub: EngineStub, words: list[str]) -> subprocess.CompletedProcess:
    return run_dockyard(["-H", stub.host, *words], env=plugin_env([]))


def both_clients(
    stub: EngineStub, args: str, tmp_path
) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """The docker CLI's and our result for the same command line against ``stub``."""
    words = shlex.split(args)
    return run_docker(stub, words, tmp_path), run_ours(stub, words)


Sent = tuple[list[Any], subprocess.CompletedProcess]


def bodies_from_both(stub: EngineStub, args: str, tmp_path, path: str) -> tuple[Sent, Sent]:
    """What the docker CLI and ours each POSTed to ``path`` for ``args``, with their results."""
    words = shlex.split(args)
    sent = []
    for run in (lambda: run_docker(stub, words, tmp_path), lambda: run_ours(stub, words)):
        stub.requests.clear()
        result = run()
        sent.append((stub.bodies("POST", path), result))
    return sent[0], sent[1]


def _endpoint(settings: dict[str, Any] | None) -> dict[str, Any]:
    """An endpoint's settings with the empty fields left out (docker 28 sends every field
    of its newer struct; API 1.41 has fewer, and empty ones mean nothing)."""
    return {k: v for k, v in (settings or {}).items() if v not in (None, "", 0, [], {})}


def networking_of(body: dict[str, Any]) -> dict[str, Any]:
    """The networking fields of a create body, empty values made alike."""
    host = body["HostConfig"]
    endpoints = body["NetworkingConfig"]["EndpointsConfig"] or {}
    return {
        "Hostname": body.get("Hostname"),
        "Domainname": body.get("Domainname"),
        "ExposedPorts": body.get("ExposedPorts") or {},
        "NetworkMode": host.get("NetworkMode"),
        "PortBindings": host.get("PortBindings") or {},
        "PublishAllPorts": host.get("PublishAllPorts"),
        "Dns": host.get("Dns") or [],
        "DnsOptions": host.get("DnsOptions") or [],
        "DnsSearch": host.get("DnsSearch") or [],
        "ExtraHosts": host.get("ExtraHosts") or [],
        "Endpoints": {name: _endpoint(s) for name, s in endpoints.items()},
    }


CREATE_FLAGS = [
    "",
    "-p 8080:80",
    "-p 8080:80 -p 8000:80 -p 127.0.0.1::53/udp -p 8000-8001:80-81 -p 9000-9005:443",
    "-p [::1]:7:7 -p ::80 -p 080 -p 8080:81/UDP -p target=82,published=8082,protocol=udp",
    "-P --expose 7000-7001 --expose 5000/udp --expose 80",
    "--network mynet --network-alias web --network-alias www --ip 10.0.0.5 --ip6 fd00::5",
    "--network a --network b",
    "--network host -p 80",
    "--net none -h box",
    "--network container:other --dns 1.1.1.1",
    "--ip 10.1.1.1",
    "--dns 1.1.1.1 --dns ::1 --dns-search example.com --dns-search . --dns-option ndots:2",
    "--add-host foo:1.2.3.4 --add-host bar=::1 --add-host gw:host-gateway --add-host v6:[::2]",
    "-h myhost --domainname example.org",
    "--network name=n1,alias=a,alias=b,ip=10.0.0.2,ip6=fd00::2,driver-opt=k=v,"
    "link-local-ip=169.254.1.1",
    "--network name=n1 --network-alias b --ip 10.0.0.9 --link-local-ip 169.254.3.3",
    "--network n1 --network name=n2,alias=x --network-alias b",
    "--network 'name=n1,alias=x y'",
]


BAD_CREATE_FLAGS = [
    "-p abc",
    "-p 80/xyz",
    "-p 1:2:3:4:5",
    "-p 80-81:8000-8002",
    "-p localhost:80:80",
    "-p target=80,published",
    "--expose 80:80",
    "--expose 80-70",
    "--dns nope",
    "--add-host foo",
    "--add-host foo:nope",
    "--dns-search .bad",
    "--mac-address zz",
    "--network-alias a --network host",
    "--network-alias a",
    "--network a --network host",
    "--network host --network host",
    "--network alias=x",
    "--network name=n1,foo=bar",
    "--network name=n1,alias=a --network-alias b",
    "--network name=host,alias=x",
    "--network name=n1,link-local-ip=169.254.1.1 --link-local-ip 169.254.3.3",
    "--network name=n1,ip=10.0.0.2 --ip 10.0.0.3",
    "--network name=n1,ip6=fd00::2 --ip6 fd00::3",
]


@pytest.mark.interop
@pytest.mark.parametrize("command", ["create", "run"])
@pytest.mark.parametrize("flags", BAD_CREATE_FLAGS)
def test_bad_networking_flags_are_refused_before_any_request(stub, tmp_path, command, flags):
    (docker_bodies, docker), (our_bodies, ours) = bodies_from_both(
        stub, f"{command} {flags} busybox", tmp_path, "/containers/create"
    )
    assert docker_bodies == our_bodies == []
    assert ours.returncode == docker.returncode == 125
    docker_says = docker.stderr.splitlines()[0].removeprefix("docker: ")
    assert ours.stderr.splitlines()[0].removeprefix("dockyard: ") == docker_says


@pytest.mark.interop
def test_mac_address_goes_in_config_at_api_1_41(stub, tmp_path):
    """docker 28 refuses ``--mac-address`` below API 1.44 (it sends it per endpoint); the
    1.41 field is Config.MacAddress, where the docker CLI of dockerd 20.10 put it."""
    ours = run_dockyard(
        ["-H", stub.host, "create", "--mac-address", "02:42:ac:11:00:02", "busybox"],
        env=plugin_env([]),
    )
    assert ours.returncode == 0, ours.stderr
    (body,) = stub.bodies("POST", "/containers/create")
    assert body["MacAddress"] == "02:42:ac:11:00:02"


NETWORK_CREATE_FLAGS = [
    "n1",
    "-d bridge --subnet 10.5.0.0/16 --gateway 10.5.0.1 --ip-range 10.5.1.0/24 --internal "
    "--label a=b --label c -o com.docker.network.bridge.name=br5 -o x --attachable --ipv6 n2",
    "--subnet 10.5.0.0/16 --subnet fd00::/64 --gateway fd00::1 n3",
    "--aux-address a=10.0.0.5 --subnet 10.0.0.0/8 n4",
    "--ipam-driver x --ipam-opt a=b n5",
    "--ipv6=false n6",
    "--subnet nope n7",
]


@pytest.mark.interop
@pytest.mark.parametrize(
    "flags",
    [
        "--gateway 10.0.0.1 n",
        "--subnet 10.0.0.0/8 --gateway 10.0.0.1 --gateway 10.0.0.2 n",
        "--subnet 10.0.0.0/8 --subnet 10.0.0.0/16 n",
        "--subnet 10.0.0.0/8 --ip-range 11.0.0.0/24 n",
        "--subnet 10.0.0.0/8 --gateway 11.0.0.1 n",
        "--subnet 10.0.0.0/8 --subnet 11.0.0.0/8 --ip-range 10.1.0.0/16 --ip-range 10.2.0.0/16 n",
        "--subnet 10.0.0.0/8 --aux-address a=11.0.0.1 n",
        "--subnet nope --subnet 10.0.0.0/8 n",
    ],
)
def test_network_create_refuses_what_the_docker_cli_refuses(stub, tmp_path, flags):
    (docker_bodies, docker), (our_bodies, ours) = bodies_from_both(
        stub, f"network create {flags}", tmp_path, "/networks/create"
    )
    assert docker_bodies == our_bodies == []
    assert ours.returncode == docker.returncode == 1
    assert ours.stderr.strip().removeprefix("dockyard network: ") == docker.stderr.strip()


def network_document(name: str, id_digit: str, created: str, **changes: Any) -> dict[str, Any]:
    """A network as /networks answers it (dockerd 20.10's keys), with ``changes``."""
    document = {
        "Name": name,
        "Id": id_digit * 64,
        "Created": created,
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": []},
        "Internal": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": {},
        "Labels": {},
    }
    return {**document, **changes}


NETWORKS = [
    network_document(
        "bridge",
        "a",
        "2026-12-05T10:00:00.123456789Z",
        IPAM={
            "Driver": "default",
            "Options": None,
            "Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}],
        },
        Options={"com.docker.network.bridge.default_bridge": "true"},
    ),
    network_document(
        "net10",
        "b",
        "2026-12-05T10:00:00.5+02:00",
        EnableIPv6=True,
        Internal=True,
        Labels={"z": "<1>"},
    ),
    network_document(
        "net9",
        "c",
        "2026-12-05T10:00:00Z",
        Driver="host",
        IPAM={"Driver": "default", "Options": None, "Config": None},
    ),
]

LISTED_CONTAINER = {
    "Id": "d" * 64,
    "Names": ["/web"],
    "Image": "busybox",
    "Command": "sh",
    "Created": 1764900000,
    "State": "running",
    "Status": "Up 2 minutes",
    "Ports": LISTED_PORTS,
    "Labels": {},
    "NetworkSettings": {"Networks": {"bridge": {}}},
    "Mounts": [],
}


@pytest.fixture
def answering_stub(stub) -> EngineStub:
    stub.answer("GET", "/networks", 200, NETWORKS)
    for network in NETWORKS:
        stub.answer("GET", f"/networks/{network['Name']}", 200, network)
    stub.answer("GET", "/containers/json", 200, [LISTED_CONTAINER])
    stub.answer("GET", "/containers/web/json", 200, {"Id": "d" * 64, **copy.deepcopy(INSPECTED)})
    stub.answer("POST", "/networks/prune", 200, {"NetworksDeleted": ["n1", "n2"]})
    stub.answer("DELETE", "/networks/nope", 404, {"message": "network nope not found"})
    stub.answer("DELETE", "/networks/[^/]+", 204)
    stub.answer("POST", "/networks/[^/]+/(connect|disconnect)", 200)
    stub.answer("POST", "/containers/[^/]+/start", 204)
    return stub


@pytest.mark.interop
@pytest.mark.parametrize(
    "args",
    [
        "network ls",
        "network ls -q",
        "network ls --no-trunc",
        "network ls --format json",
        "network inspect bridge net10",
        "network inspect bridge nope",
        "network inspect -f {{.Name}} net9",
        "network prune -f",
        "network rm a nope b",
        "inspect --type network bridge",
        "ps",
        "ps --format json",
        "port web",
        "port web 80",
        "port web 53/udp",
        "port web 443",
        "port web abc",
        "port nope",
    ],
)
def test_output_from_the_same_replies_is_the_docker_cli_s(answering_stub, tmp_path, args):
    docker, ours = both_clients(answering_stub, args, tmp_path)
    assert (ours.returncode, ours.stdout) == (docker.returncode, docker.stdout)
    if args.startswith("port"):  # its own messages, and the daemon's
        assert ours.stderr == docker.stderr


@pytest.mark.interop
@pytest.mark.parametrize(
    ("args", "path"),
    [
        ("network ls -f driver=bridge -f name=x", "/networks"),
        ("network prune -f --filter until=1h --filter label=a", "/networks/prune"),
    ],
)
def test_filters_are_sent_as_the_docker_cli_sends_them(answering_stub, tmp_path, args, path):
    stub = answering_stub
    words = shlex.split(args)
    filters = []
    for run in (lambda: run_docker(stub, words, tmp_path), lambda: run_ours(stub, words)):
        stub.requests.clear()
        assert run().returncode == 0
        (query,) = [r.query for r in stub.requests if r.path == path]
        filters.append(json.loads(parse_qs(query)["filters"][0]))
    assert filters[0] == filters[1]


CONNECT_ARGS = [
    "network connect --alias x --alias y --ip 10.0.0.3 n web",
    "network connect n web",
    "network connect --ip6 fd00::3 --link a:b --link-local-ip 169.254.0.9 --driver-opt k=v n web",
    "network disconnect n web",
    "network disconnect -f n web",
]


#: An endpoint's fields in API 1.41 (docker 28 sends newer ones too).
ENDPOINT_FIELDS_1_41 = ("IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts")


def _connection(body: dict[str, Any]) -> dict[str, Any]:
    """A connect body as API 1.41 has it, empty values as sent ({} and null differ)."""
    if "EndpointConfig" not in body:  # disconnect
        return body
    endpoint = body["EndpointConfig"]
    return {**body, "EndpointConfig": {k: endpoint.get(k) for k in ENDPOINT_FIELDS_1_41}}


#: (command line, the path its body goes to, what of the body to compare)
SENT_BODIES = [
    *[(f"create {flags} busybox", "/containers/create", networking_of) for flags in CREATE_FLAGS],
    (
        "run -d -p 127.0.0.1:8080:80/tcp --network net1 --network-alias a --dns 9.9.9.9 busybox",
        "/containers/create",
        networking_of,
    ),
    *[(f"network create {flags}", "/networks/create", None) for flags in NETWORK_CREATE_FLAGS],
    *[(args, f"/networks/n/{args.split()[1]}", _connection) for args in CONNECT_ARGS],
]


@pytest.mark.interop
@pytest.mark.parametrize(("args", "path", "compared"), SENT_BODIES, ids=[c[0] for c in SENT_BODIES])
def test_requests_carry_what_the_docker_cli_sends(answering_stub, tmp_path, args, path, compared):
    (docker_bodies, docker), (our_bodies, ours) = bodies_from_both(
        answering_stub, args, tmp_path, path
    )
    assert docker.returncode == 0, docker.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == docker.stdout  # the id printed, or nothing
    assert len(our_bodies) == len(docker_bodies) == 1
    if compared is not None:
        our_bodies, docker_bodies = [compared(our_bodies[0])], [compared(docker_bodies[0])]
    assert [_ipam_unordered(body) for body in our_bodies] == [
        _ipam_unordered(body) for body in docker_bodies
    ]


def _ipam_unordered(body: Any) -> Any:
    """The docker CLI lists several subnets in the order of a Go map: any order."""
    if not isinstance(body, dict) or not isinstance(body.get("IPAM"), dict):
        return body
    configs = body["IPAM"].get("Config")
    if not isinstance(configs, list):
        return body
    ordered = sorted(configs, key=lambda config: json.dumps(config, sort_keys=True))
    return {**body, "IPAM": {**body["IPAM"], "Config": ordered}}
