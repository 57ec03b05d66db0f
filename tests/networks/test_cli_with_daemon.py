"""Our client's networking commands and flags against our daemon with networking on: what the
flags ask for happens (a published port answers from the host, the DNS and host options land
in the container's files, aliases and connections show in inspect), and the commands print
what docker's print for it.

These tests need the host-network lock (``start_daemon(network=True)``)."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
import uuid

import pytest

from tests.containers.conftest import IMAGE, DockyardCLI, import_busybox


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture
def cli(start_daemon, tmp_path) -> DockyardCLI:
    """Our CLI against a daemon with the default bridge and busybox (httpd included)."""
    daemon = start_daemon(network=True)
    import_busybox(daemon, tmp_path / "rootfs.tar", ("httpd", "sleep", "hostname"))
    return DockyardCLI(daemon)


def fetch(url: str, timeout: float = 10) -> str:
    """``url``'s body, once something answers there."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: str = response.read().decode()
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_network_commands_create_list_inspect_and_remove(cli):
    name, other = unique("net"), unique("net")
    network_id = ok(cli("network", "create", "--label", "suite=cli", name)).strip()
    assert re.fullmatch("[0-9a-f]{64}", network_id)
    listing = ok(cli("network", "ls")).splitlines()
    assert listing[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert f"{network_id[:12]}   {name}   bridge    local" in listing
    assert ok(cli("network", "ls", "-q", "-f", f"name={name}")) == network_id[:12] + "\n"
    assert ok(cli("network", "ls", "-q", "--no-trunc", "-f", f"name={name}")) == network_id + "\n"
    (row,) = [json.loads(line) for line in ok(cli("network", "ls", "--format", "json")).splitlines()
              if json.loads(line)["Name"] == name]  # fmt: skip
    assert (row["Driver"], row["Labels"], row["Internal"]) == ("bridge", "suite=cli", "false")
    shown = ok(cli("network", "inspect", "-f", "{{.Name}} {{.Driver}} {{.Labels.suite}}", name))
    assert shown == f"{name} bridge cli\n"
    (document,) = json.loads(ok(cli("network", "inspect", name)))
    assert document["Id"] == network_id
    assert json.loads(ok(cli("inspect", "--type", "network", name)))[0]["Id"] == network_id

    again = cli("network", "create", name)
    assert again.returncode == 1
    assert again.stderr == f"Error response from daemon: network with name {name} already exists\n"

    removed = cli("network", "rm", name, "nosuchnet")
    assert removed.returncode == 1
    assert removed.stdout == f"{name}\n"
    assert removed.stderr == "Error response from daemon: network nosuchnet not found\n"

    ok(cli("network", "create", "--label", "prune=yes", other))
    pruned = ok(cli("network", "prune", "-f", "--filter", "label=prune=yes"))
    assert pruned == f"Deleted Networks:\n{other}\n\n"
    assert other not in ok(cli("network", "ls"))


def test_a_published_port_answers_and_is_reported_as_docker_reports_it(cli):
    web = unique("web")
    ok(cli("run", "-d", "--name", web, "-p", "127.0.0.1::80", "--expose", "81", IMAGE,
           "sh", "-c", "mkdir /www && echo hello > /www/index.html && httpd -f -p 80 -h /www"))  # fmt: skip
    (line,) = ok(cli("port", web)).splitlines()
    match = re.fullmatch(r"80/tcp -> 127\.0\.0\.1:(\d+)", line)
    assert match, line
    host_port = match.group(1)
    assert ok(cli("port", web, "80/tcp")) == f"127.0.0.1:{host_port}\n"
    unpublished = cli("port", web, "81")
    assert (unpublished.returncode, unpublished.stderr) == (
        1,
        f"Error: No public port '81' published for {web}\n",
    )
    (row,) = [
        json.loads(r) for r in ok(cli("ps", "--format", "json", "-f", f"name={web}")).splitlines()
    ]
    assert row["Ports"] == f"81/tcp, 127.0.0.1:{host_port}->80/tcp"
    assert fetch(f"http://127.0.0.1:{host_port}/") == "hello\n"

    everything = unique("all")
    ok(cli("run", "-d", "--name", everything, "-P", "--expose", "7000-7001", IMAGE, "sleep", "60"))
    lines = ok(cli("port", everything)).splitlines()
    assert {line.split(" -> ")[0] for line in lines} == {"7000/tcp", "7001/tcp"}, lines
    ok(cli("rm", "-f", web, everything))


def test_network_options_reach_the_container(cli):
    network = unique("net")
    ok(cli("network", "create", network))
    first = unique("c")
    ok(cli("run", "-d", "--name", first, "--network", network, "--network-alias", "alpha",
           "--dns-search", "example.com", "--dns-option", "ndots:2",
           "--add-host", "foo:192.0.2.7", "--add-host", "bar=192.0.2.8",
           "-h", "myhost", "--domainname", "example.org", IMAGE, "sleep", "60"))  # fmt: skip
    inside = ok(cli("exec", first, "cat", "/etc/resolv.conf", "/etc/hosts", "/etc/hostname"))
    assert "search example.com" in inside
    assert "options ndots:2" in inside
    assert re.search(r"^192\.0\.2\.7\s+foo$", inside, re.MULTILINE), inside
    assert re.search(r"^192\.0\.2\.8\s+bar$", inside, re.MULTILINE), inside
    assert inside.rstrip().endswith("myhost")
    networks = networks_of(cli, first)
    assert list(networks) == [network]
    assert "alpha" in networks[network]["Aliases"]

    ok(cli("rm", "-f", first))
    assert ok(cli("network", "rm", network)) == f"{network}\n"


def networks_of(cli: DockyardCLI, container: str) -> dict:
    return json.loads(ok(cli("inspect", "-f", "{{json .NetworkSettings.Networks}}", container)))


@pytest.mark.parametrize("running", [False, True])
def test_connect_adds_a_network_with_its_alias_and_disconnect_takes_it_away(cli, running):
    network, container = unique("net"), unique("c")
    ok(cli("network", "create", network))
    ok(cli("create", "--name", container, IMAGE, "sleep", "60"))
    if running:
        ok(cli("start", container))
    assert ok(cli("network", "connect", "--alias", "beta", network, container)) == ""
    if not running:
        ok(cli("start", container))
    networks = networks_of(cli, container)
    assert sorted(networks) == sorted(["bridge", network])
    assert "beta" in networks[network]["Aliases"]
    in_use = cli("network", "rm", network)
    assert in_use.returncode == 1
    assert "has active endpoints" in in_use.stderr
    assert ok(cli("network", "disconnect", network, container)) == ""
    assert list(networks_of(cli, container)) == ["bridge"]
    ok(cli("rm", "-f", container))
    assert ok(cli("network", "rm", network)) == f"{network}\n"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-p", "127.0.0.1:99999:80"], "dockyard: invalid hostPort: 99999"),
        # --pull never: the daemon's 404 is not taken for a missing image (docker's CLI would
        # pull then, as ours does; dockerd only finds out at start)
        (["--pull", "never", "--network", "nosuchnet"], "dockyard: Error response from daemon: network nosuchnet not found"),
        (["--network-alias", "a"], "dockyard: network-scoped aliases are only supported for user-defined networks"),
    ],
)  # fmt: skip
def test_bad_networking_flags_fail_run_with_docker_s_status(cli, flags, message):
    failed = cli("run", "--rm", *flags, IMAGE, "true")
    assert failed.returncode == 125
    assert failed.stderr.splitlines()[0] == message
