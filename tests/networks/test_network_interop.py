"""The daemon's networking driven by real clients: docker-py, docker-compose 1.29 (Debian's)
and testcontainers-python, with the docker CLI beside them where both report the same thing.

Images are never pulled: the module's daemon has a local busybox (``Api.with_busybox``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker as docker_sdk
import pytest

from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import free_port
from tests.containers.engine_api import Api
from tests.networks.conftest import fetch

pytestmark = pytest.mark.interop

#: busybox httpd serving a page that names its server, in the foreground.
SERVE = "echo served-by-$(hostname) > /tmp/index.html && exec httpd -f -p 80 -h /tmp"


def docker(api: Api, *args: str) -> str:
    """The docker CLI's output against the test daemon; it must succeed."""
    done = subprocess.run(
        [docker_cli(), *args],
        env=docker_env(api.daemon.host),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def docker_fails(api: Api, *args: str) -> str:
    """The docker CLI's error output against the test daemon; it must fail."""
    done = subprocess.run(
        [docker_cli(), *args], env=docker_env(api.daemon.host), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout
    return done.stderr


def test_the_docker_cli_publishes_ports_and_manages_networks(api: Api) -> None:
    port = free_port()
    web = docker(api, "run", "-d", "-p", f"{port}:80", "busybox", "sh", "-c", SERVE).strip()
    try:
        assert docker(api, "port", web).strip() == f"80/tcp -> 0.0.0.0:{port}"
        assert fetch(f"http://127.0.0.1:{port}/").startswith(b"served-by-")
        assert f"0.0.0.0:{port}->80/tcp" in docker(api, "ps", "--filter", f"id={web}")
        # The docker CLI creates, then fails to start: the container stays, as with dockerd.
        taken = docker_fails(
            api, "run", "-d", "--name", "port-taken", "-p", f"{port}:80", "busybox", "true"
        )
        assert "port is already allocated" in taken
    finally:
        docker(api, "rm", "-f", web)
        subprocess.run(
            [docker_cli(), "rm", "-f", "port-taken"], env=docker_env(api.daemon.host),
            capture_output=True, check=False,
        )  # fmt: skip
    picked = docker(api, "run", "-d", "-P", "--expose", "80", "busybox", "sh", "-c", SERVE).strip()
    try:
        mapping = docker(api, "port", picked, "80/tcp").strip()
        assert mapping.startswith("0.0.0.0:")
        assert fetch(f"http://127.0.0.1:{mapping.rpartition(':')[2]}/").startswith(b"served-by-")
    finally:
        docker(api, "rm", "-f", picked)
    docker(api, "network", "create", "--subnet", "10.234.5.0/24", "--label", "k=v", "clinet")
    try:
        listed = docker(api, "network", "ls", "--filter", "label=k=v", "--format", "{{.Name}}")
        assert listed.split() == ["clinet"]
        inspected = json.loads(docker(api, "network", "inspect", "clinet"))[0]
        assert inspected["IPAM"]["Config"][0]["Subnet"] == "10.234.5.0/24"
        box = docker(api, "run", "-d", "--network", "clinet", "--ip", "10.234.5.9",
                     "--network-alias", "box", "busybox", "sleep", "60").strip()  # fmt: skip
        try:
            out = docker(api, "run", "--rm", "--network", "clinet", "busybox", "ping", "-c1", "box")
            assert "10.234.5.9" in out
            docker(api, "network", "disconnect", "clinet", box)
            docker(api, "network", "connect", "--alias", "again", "clinet", box)
            out = docker(
                api, "run", "--rm", "--network", "clinet", "busybox", "ping", "-c1", "again"
            )
            assert "1 packets received" in out
            assert "active endpoints" in docker_fails(api, "network", "rm", "clinet")
        finally:
            docker(api, "rm", "-f", box)
        assert "not found" in docker_fails(
            api, "run", "--rm", "--network", "nosuch", "busybox", "true"
        )
    finally:
        docker(api, "network", "rm", "clinet")
    assert "clinet" not in docker(api, "network", "ls")
    assert docker(api, "ps", "-aq") == ""  # the module's later tests expect no container


@pytest.fixture
def client(api: Api) -> Iterator[docker_sdk.DockerClient]:
    client = docker_sdk.DockerClient(base_url=api.daemon.host, version="1.41")
    try:
        yield client
    finally:
        client.close()


# --------------------------------------------------------------------------------------------
# docker-py
# --------------------------------------------------------------------------------------------


def test_docker_py_publishes_ports_and_reports_them_as_the_docker_cli_does(
    api: Api, client: docker_sdk.DockerClient
) -> None:
    host_port = free_port()
    container = client.containers.run(
        "busybox", ["sh", "-c", SERVE], detach=True, ports={"80/tcp": host_port}
    )
    try:
        container.reload()
        assert container.ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(host_port)}]}
        assert docker(api, "port", container.id).splitlines()[0] == f"80/tcp -> 0.0.0.0:{host_port}"
        assert fetch(f"http://127.0.0.1:{host_port}/index.html") == (
            f"served-by-{container.id[:12]}\n".encode()
        )
        address = container.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        assert (
            address
            == docker(
                api, "inspect", "-f", "{{.NetworkSettings.Networks.bridge.IPAddress}}", container.id
            ).strip()
        )
        code, output = container.exec_run(["ip", "-4", "-o", "addr", "show", "eth0"])
        assert code == 0 and f"inet {address}/".encode() in output
    finally:
        container.remove(force=True)


def test_docker_py_networks_create_get_list_connect_disconnect_remove_prune(
    api: Api, client: docker_sdk.DockerClient
) -> None:
    network = client.networks.create("nipy-front", driver="bridge", labels={"tier": "front"})
    container = client.containers.run("busybox", ["sleep", "60"], detach=True, name="nipy-box")
    try:
        assert client.networks.get("nipy-front").id == network.id
        assert client.networks.get(network.id[:12]).name == "nipy-front"
        listed = {n.name for n in client.networks.list()}
        assert {"bridge", "host", "none", "nipy-front"} <= listed
        assert [n.id for n in client.networks.list(names=["nipy-front"])] == [network.id]
        assert [n.id for n in client.networks.list(filters={"label": "tier=front"})] == [network.id]
        assert client.networks.list(filters={"label": "tier=back"}) == []

        network.connect(container, aliases=["nipy-alias"])
        container.reload()
        endpoint = container.attrs["NetworkSettings"]["Networks"]["nipy-front"]
        assert endpoint["NetworkID"] == network.id
        assert "nipy-alias" in endpoint["Aliases"]
        network.reload()
        assert [c.id for c in network.containers] == [container.id]
        # The new interface is there, with the address inspect reports.
        code, output = container.exec_run(["ip", "-4", "-o", "addr"])
        assert code == 0 and f"inet {endpoint['IPAddress']}/".encode() in output

        with pytest.raises(docker_sdk.errors.APIError) as in_use:
            network.remove()
        assert in_use.value.status_code == 403 and "active endpoints" in str(in_use.value)

        network.disconnect(container)
        container.reload()
        assert set(container.attrs["NetworkSettings"]["Networks"]) == {"bridge"}
        code, output = container.exec_run(["ip", "-4", "-o", "addr"])
        assert f"inet {endpoint['IPAddress']}/".encode() not in output
    finally:
        container.remove(force=True)
        network.remove()
    with pytest.raises(docker_sdk.errors.NotFound):
        client.networks.get("nipy-front")

    unused = client.networks.create("nipy-unused")
    kept = client.networks.create("nipy-kept")
    holder = client.containers.create("busybox", ["true"], network="nipy-kept")
    try:
        assert client.networks.prune() == {"NetworksDeleted": ["nipy-unused"]}
        assert {n.name for n in client.networks.list()} >= {"bridge", "host", "none", "nipy-kept"}
        with pytest.raises(docker_sdk.errors.NotFound):
            client.networks.get(unused.id)
    finally:
        holder.remove(force=True)
        kept.remove()


# --------------------------------------------------------------------------------------------
# docker-compose 1.29
# --------------------------------------------------------------------------------------------

#: A web server with a published port, and a client that fetches from it by service name;
#: the client is on a second network too, with a link (compose sends the links with each
#: network it connects a container to).
COMPOSE_FILE = """\
version: "3.8"
services:
  web:
    image: busybox
    command: ["sh", "-c", "{serve}"]  # with $$ for $, as compose interpolates $
    ports: ["{port}:80"]
  client:
    image: busybox
    command: ["sh", "-c", "until wget -q -O - http://web/index.html; do sleep 0.2; done; sleep 600"]
    depends_on: [web]
    links: ["web:webby"]
    networks: [default, back]
networks:
  back: {{}}
"""


def compose_cli() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is not installed (apt-get install docker-compose)")
    return found


@pytest.fixture
def compose(api: Api, tmp_path: Path) -> Iterator:
    """``compose(*args)``: docker-compose in a project directory with COMPOSE_FILE, against
    the test daemon; the project is brought down afterwards, whatever happened."""
    port = free_port()
    (tmp_path / "docker-compose.yml").write_text(
        COMPOSE_FILE.format(serve=SERVE.replace("$", "$$"), port=port)
    )
    env = {**docker_env(api.daemon.host), "COMPOSE_PROJECT_NAME": "nicompose"}

    def run(*args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [compose_cli(), "--ansi", "never", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert not check or done.returncode == 0, f"compose {args}: {done.stdout}{done.stderr}"
        return done

    run.port = port  # type: ignore[attr-defined]
    try:
        yield run
    finally:
        run("down", "--remove-orphans", check=False)


def test_compose_up_ps_port_run_logs_and_down(api: Api, compose) -> None:
    compose("up", "-d")
    network = json.loads(docker(api, "network", "inspect", "nicompose_default"))[0]
    assert network["Labels"]["com.docker.compose.project"] == "nicompose"
    assert network["Labels"]["com.docker.compose.network"] == "default"
    web = json.loads(docker(api, "inspect", "nicompose_web_1"))[0]
    endpoint = web["NetworkSettings"]["Networks"]["nicompose_default"]
    assert "web" in endpoint["Aliases"]
    assert network["Containers"][web["Id"]]["IPv4Address"] == (
        f"{endpoint['IPAddress']}/{endpoint['IPPrefixLen']}"
    )

    listing = compose("ps").stdout
    assert f"0.0.0.0:{compose.port}->80/tcp" in listing
    assert compose("port", "web", "80").stdout.strip() == f"0.0.0.0:{compose.port}"
    assert docker(api, "port", "nicompose_web_1", "80").splitlines()[0] == (
        f"0.0.0.0:{compose.port}"
    )
    assert fetch(f"http://127.0.0.1:{compose.port}/index.html") == (
        f"served-by-{web['Config']['Hostname']}\n".encode()
    )

    client = json.loads(docker(api, "inspect", "nicompose_client_1"))[0]
    networks = client["NetworkSettings"]["Networks"]
    assert set(networks) == {"nicompose_default", "nicompose_back"}
    # Links on each network, as with dockerd: compose connects the second network with them,
    # and reconnects the first (its endpoint had no short id alias yet) to send them.
    for endpoint in networks.values():
        assert "nicompose_web_1:webby" in endpoint["Links"]

    ran = compose("run", "--rm", "-T", "client", "sh", "-c", "ip -4 -o addr; echo ran")
    assert ran.stdout.endswith("ran\n") and ran.stdout.count(" inet ") == 3  # lo, eth0, eth1

    compose("down")
    left = docker(api, "network", "ls", "--format", "{{.Name}}").split()
    assert sorted(left) == ["bridge", "host", "none"]
    assert docker(api, "ps", "-aq") == ""


def test_compose_services_reach_each_other_by_service_name(api: Api, compose) -> None:
    compose("up", "-d")
    web = json.loads(docker(api, "inspect", "nicompose_web_1"))[0]
    expected = f"served-by-{web['Config']['Hostname']}"
    deadline = time.monotonic() + 15
    while expected not in (logs := compose("logs", "--no-color", "client").stdout):
        assert time.monotonic() < deadline, logs[-2000:]
        time.sleep(0.2)
    for name in ("web", "webby"):  # the service, and the client's link alias for it
        ran = compose(
            "run", "--rm", "-T", "client", "wget", "-q", "-O", "-", f"http://{name}/index.html"
        )
        assert ran.stdout == expected + "\n"
        ran = compose("exec", "-T", "client", "wget", "-q", "-O", "-", f"http://{name}/index.html")
        assert ran.stdout == expected + "\n"
    # The link is the client's: web itself does not know the alias.
    assert compose("exec", "-T", "web", "nslookup", "webby", check=False).returncode != 0


# --------------------------------------------------------------------------------------------
# testcontainers-python
# --------------------------------------------------------------------------------------------


def test_testcontainers_serves_a_busybox_httpd_on_its_exposed_port(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from testcontainers.core.config import testcontainers_config
    from testcontainers.core.container import DockerContainer

    monkeypatch.setenv("DOCKER_HOST", api.daemon.host)
    # Ryuk, testcontainers' reaper, is an image it pulls (testcontainers/ryuk): not offline.
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)
    container = DockerContainer("busybox").with_command(["sh", "-c", SERVE]).with_exposed_ports(80)
    with container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(80)
        served = fetch(f"http://{host}:{port}/index.html")
        assert served == f"served-by-{container.get_wrapped_container().id[:12]}\n".encode()
        assert (
            docker(api, "port", container.get_wrapped_container().id, "80/tcp").splitlines()[0]
            == f"0.0.0.0:{port}"
        )
    assert docker(api, "ps", "-aq") == ""


def test_testcontainers_network_with_aliases(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from testcontainers.core.config import testcontainers_config
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    monkeypatch.setenv("DOCKER_HOST", api.daemon.host)
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)
    with Network() as network:
        server = (
            DockerContainer("busybox")
            .with_command(["sh", "-c", SERVE])
            .with_network(network)
            .with_network_aliases("tcweb")
        )
        with server:
            settings = server.get_wrapped_container().attrs["NetworkSettings"]["Networks"]
            assert "tcweb" in settings[network.name]["Aliases"]
            name = network.name
            # Another container on the network reaches the server by its alias.
            fetcher = (
                DockerContainer("busybox")
                .with_command(
                    ["sh", "-c", "until wget -qO- http://tcweb/index.html; do sleep 0.2; done"]
                )
                .with_network(network)
            )
            with fetcher:
                wrapped = fetcher.get_wrapped_container()
                assert wrapped.wait(timeout=15)["StatusCode"] == 0
                served = wrapped.logs().decode()
                assert served == f"served-by-{server.get_wrapped_container().id[:12]}\n"
        assert docker(api, "network", "inspect", "-f", "{{len .Containers}}", name).strip() == "0"
    assert name not in docker(api, "network", "ls", "--format", "{{.Name}}")


def test_compose_up_on_a_port_already_allocated_fails_as_with_dockerd(api: Api, compose) -> None:
    blocker = api.create(
        ["sleep", "60"], HostConfig={"PortBindings": {"80/tcp": [{"HostPort": str(compose.port)}]}}
    )
    try:
        api.start(blocker)
        failed = compose("up", "-d", "web", check=False)
        assert failed.returncode != 0
        assert f"Bind for 0.0.0.0:{compose.port} failed: port is already allocated" in (
            failed.stderr
        )
        # dockerd's state for a start that failed: created, exit code 128, the reason kept.
        assert "Exit 128" in compose("ps", "web").stdout
        state = json.loads(docker(api, "inspect", "nicompose_web_1"))[0]["State"]
        assert state["Status"] == "created" and "port is already allocated" in state["Error"]
    finally:
        api.call("DELETE", f"/containers/{blocker}?force=1")
    compose("up", "-d", "web")
    assert fetch(f"http://127.0.0.1:{compose.port}/index.html").startswith(b"served-by-")
