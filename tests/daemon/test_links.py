"""Legacy links, default network sysctls and the domain name without a daemon: the variables
a link makes (dockerd 20.10's, as tests/containers/test_links_interop.py sees them), what
create refuses, and what the runtimes are given."""

from __future__ import annotations

import json

import pytest

from dockyard.core.errors import InvalidParameter, NotFound
from dockyard.core.interfaces import ContainerSpec, Mount, ProcessSpec
from dockyard.daemon.containers import links, process_modes
from dockyard.daemon.containers.config import ContainerConfig, HostConfig
from dockyard.daemon.containers.model import RECORD_NAME, Container
from dockyard.plugins.runtimes.runc.bundle import bundle_config, names_network_namespace
from tests.daemon.test_process_modes import modes

IP = "10.0.0.2"


def test_variables_of_a_link_as_dockerd_makes_them():
    exposed = {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}}
    env = links.environment("/app/my-db", IP, exposed, ["PATH=/bin", "HOME=/h", "A=1", "B"])
    assert env[0] == f"MY_DB_PORT=udp://{IP}:53"  # the lowest port, TCP first at a tie
    assert set(env) == {
        f"MY_DB_PORT=udp://{IP}:53",
        f"MY_DB_PORT_8000_TCP_START=tcp://{IP}:8000", f"MY_DB_PORT_8000_TCP_ADDR={IP}",
        "MY_DB_PORT_8000_TCP_PROTO=tcp", "MY_DB_PORT_8000_TCP_PORT_START=8000",
        f"MY_DB_PORT_8000_TCP_END=tcp://{IP}:8002", "MY_DB_PORT_8000_TCP_PORT_END=8002",
        *(
            entry
            for port, protocol in ((53, "udp"), (80, "tcp"), (8000, "tcp"), (8001, "tcp"),
                                   (8002, "tcp"))
            for entry in (
                f"MY_DB_PORT_{port}_{protocol.upper()}={protocol}://{IP}:{port}",
                f"MY_DB_PORT_{port}_{protocol.upper()}_ADDR={IP}",
                f"MY_DB_PORT_{port}_{protocol.upper()}_PORT={port}",
                f"MY_DB_PORT_{port}_{protocol.upper()}_PROTO={protocol}",
            )
        ),
        "MY_DB_NAME=/app/my-db",
        "MY_DB_ENV_A=1",
    }  # fmt: skip
    # Two ports in a row are no range; no port, no MY_DB_PORT.
    assert not any(
        "START" in e for e in links.environment("/a/x", IP, {"1/tcp": {}, "2/tcp": {}}, [])
    )
    assert links.environment("/a/x", IP, None, None) == ["X_NAME=/a/x"]


def test_a_restart_replaces_the_variables_of_the_last_start():
    first = ["DB_NAME=/app/db", f"DB_PORT=tcp://{IP}:80"]
    env = links.with_environment(["PATH=/bin", "DB_PORT=mine"], first, [])
    assert env == ["PATH=/bin", "DB_PORT=mine", "DB_NAME=/app/db"]  # the container's own wins
    again = links.with_environment(env, ["DB_NAME=/app2/db"], ["DB_NAME=/app/db"])
    assert again == ["PATH=/bin", "DB_PORT=mine", "DB_NAME=/app2/db"]


def _find(name: str) -> links.Child:
    if name == "web":
        return links.Child("w" * 64, "web", "default")
    if name == "on-host":
        return links.Child("h" * 64, "on-host", "host")
    raise NotFound(f"No such container: {name}")


def test_create_checks_links_as_dockerd():
    planned = links.plan(["web:db", "/web", ""], _find)
    assert [(link.child_id[:1], link.alias) for link in planned] == [("w", "db"), ("w", "web")]
    assert links.shown("app", planned, {"w" * 64: "web2"}) == ["/web2:/app/db", "/web2:/app/web"]
    for given, message in (
        (["gone:x"], "could not get container for gone: No such container: gone"),
        (["on-host:x"], "host type networking can't be used with links"),
        (["web:a:b"], "bad format for links: web:a:b"),
        (["web:x", "web:x"], "the alias x is given twice"),
    ):
        with pytest.raises(InvalidParameter, match=message):
            links.plan(given, _find)


@pytest.mark.parametrize(
    ("network_mode", "remapped", "expected"),
    [
        ("default", False, dict(process_modes.DEFAULT_NETWORK_SYSCTLS)),
        ("none", False, dict(process_modes.DEFAULT_NETWORK_SYSCTLS)),
        ("host", False, {}),
        ("container:donor", False, {}),
        ("default", True, {}),
    ],
)
def test_default_network_sysctls_for_a_namespace_of_its_own(network_mode, remapped, expected):
    found = modes(network_mode=network_mode, remapped=remapped).sysctls
    assert dict(found) == expected


def test_a_users_sysctl_wins_over_a_default():
    found = modes(sysctls={"net.ipv4.ip_unprivileged_port_start": "1000"}).sysctls
    assert dict(found)["net.ipv4.ip_unprivileged_port_start"] == "1000"
    assert [name for name, _ in found].count("net.ipv4.ip_unprivileged_port_start") == 1


def test_a_domain_name_needs_the_containers_own_uts_namespace():
    with pytest.raises(InvalidParameter, match="domainname and the UTS mode"):
        modes(uts_mode="host", domainname="example.org")


def test_runc_is_given_the_domain_name_as_dockerd_gives_it(tmp_path):
    spec = ContainerSpec(
        id="c", rootfs=(Mount("bind", str(tmp_path)),), process=ProcessSpec(args=("true",)),
        domainname="example.org", sysctls=(("net.ipv4.ip_unprivileged_port_start", "0"),),
        netns="/run/netns/x",
    )  # fmt: skip
    config = bundle_config(spec, "dockyard-links")
    assert config["linux"]["sysctl"]["kernel.domainname"] == "example.org"
    # With net.* sysctls runc must be told the namespace to write them in.
    assert names_network_namespace(spec)


def test_links_are_kept_with_the_container_and_old_records_have_none(tmp_path):
    spec = ContainerSpec(id="c", rootfs=(Mount("bind", "/x"),), process=ProcessSpec(args=("true",)))
    container = Container(
        id="a" * 64, name="app", created="2026-01-01T00:00:00Z", image_id="", image_name="busybox",
        config=ContainerConfig(), host_config=HostConfig(), spec=spec, snapshot="s", driver="vfs",
        links=[links.LegacyLink("b" * 64, "db", "web")], link_env=["DB_NAME=/app/db"],
    )  # fmt: skip
    container.save(tmp_path)
    loaded = Container.load(tmp_path)
    assert (loaded.links, loaded.link_env) == (container.links, container.link_env)
    record = json.loads((tmp_path / RECORD_NAME).read_text())
    del record["links"], record["link_env"]
    (tmp_path / RECORD_NAME).write_text(json.dumps(record))
    assert (Container.load(tmp_path).links, Container.load(tmp_path).link_env) == ([], [])
