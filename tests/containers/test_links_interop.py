"""Legacy links side by side: the docker CLI against our daemon and a dockerd 20.10 of this
module's own, each with a default bridge.

The session's dockerd has no bridge (``--bridge=none``), where links do nothing; this one
runs on a bridge the module makes (``links-br0``, removed after), without iptables. Addresses
differ between the two daemons, so outputs are compared with each child's address as ``IP``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator

import pytest

from dockyard.testing.networks import host_left_as_found
from dockyard.testing.peers import docker_cli, docker_env, real_dockerd
from tests.conftest import busybox_archive, daemon_in, docker_load, serving, shut_down

pytestmark = pytest.mark.interop

BRIDGE = "links-br0"
BRIDGE_ADDRESS = "10.231.77.1/24"
#: The child: ports whose variables show every rule (a first port, a run of three, TCP and
#: UDP), variables of its own (HOME is not passed on) and a hostname.
CHILD = ("--expose", "80", "--expose", "53/udp", "--expose", "8000-8002", "-e", "FOO=bar",
         "-e", "HOME=/h", "-e", "EMPTY=", "--hostname", "webhost")  # fmt: skip
#: The parent's variables and the link lines of its /etc/hosts (not its own, the last).
SHOW = "env | grep -v HOSTNAME | sort; echo ---; tail -n +7 /etc/hosts | sed '$d'"


class Both:
    def __init__(self, ours: str, theirs: tuple[str, str]) -> None:
        self.hosts = {"ours": (ours, None), "theirs": theirs}

    def one(self, which: str, *args: str) -> subprocess.CompletedProcess[str]:
        host, config = self.hosts[which]
        return subprocess.run(
            [docker_cli(), *args], env=docker_env(host, config),  # type: ignore[arg-type]
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def ok(self, which: str, *args: str) -> str:
        done = self.one(which, *args)
        assert done.returncode == 0, (which, args, done.stderr)
        return done.stdout

    def each(self, *args: str) -> tuple[str, str]:
        """``docker ARGS`` on both, each succeeding: the outputs."""
        return self.ok("ours", *args), self.ok("theirs", *args)

    def failing(self, *args: str) -> tuple[str, str]:
        """``docker ARGS`` failing on both: the daemons' messages."""
        found = []
        for which in ("ours", "theirs"):
            done = self.one(which, *args)
            assert done.returncode != 0, (which, done.stdout)
            found.append(_message(done.stderr))
        return found[0], found[1]

    def seen(self, child: str, output: Callable[[str], str]) -> list[str]:
        """``output(which)`` of each daemon, normalised with ``child``'s address there: the
        same on both."""
        ours, theirs = (
            _normal(output(which), self.address(which, child)) for which in ("ours", "theirs")
        )
        assert ours == theirs
        return ours

    def address(self, which: str, container: str) -> str:
        return self.ok(which, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", container).strip()

    def links(self, container: str) -> list[str]:
        """``HostConfig.Links`` of ``container``, the same on both (sorted: dockerd's order
        is a map's)."""
        shown = [
            sorted(json.loads(
                self.ok(which, "inspect", "-f", "{{json .HostConfig.Links}}", container)
            ))
            for which in ("ours", "theirs")
        ]  # fmt: skip
        assert shown[0] == shown[1]
        return shown[0]

    def clean(self, *names: str) -> None:
        for which in ("ours", "theirs"):
            self.one(which, "rm", "-f", *names)


def _message(stderr: str) -> str:
    first = stderr.strip().splitlines()[0]
    return first.removeprefix("docker: ").removeprefix("Error response from daemon: ")


def _normal(output: str, address: str) -> list[str]:
    """Lines with the child's address as ``IP``, sorted (dockerd's link order is a map's)."""
    return sorted(output.replace(address, "IP").splitlines())


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> Iterator[Both]:
    base = tmp_path_factory.mktemp("links")
    archive = busybox_archive(base)
    with host_left_as_found():
        subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
        try:
            subprocess.run(["ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE], check=True)
            subprocess.run(["ip", "link", "set", BRIDGE, "up"], check=True)
            (base / "ours").mkdir()
            ours = serving(daemon_in(base / "ours", network=True))
            try:
                docker_load(ours.host, archive)
                # The later --bridge wins over real_dockerd's --bridge=none.
                with real_dockerd(base / "dockerd", extra_args=[f"--bridge={BRIDGE}"]) as peer:
                    peer.docker("load", "-i", str(archive))
                    yield Both(ours.host, (peer.host, str(peer.root / "client-config")))
                    for name in peer.docker("ps", "-aq").stdout.split():
                        peer.docker("rm", "-f", name, check=False)
            finally:
                shut_down(ours)
        finally:
            subprocess.run(["ip", "link", "del", BRIDGE], check=False)


def test_variables_hosts_inspect_and_names_as_dockerd(both: Both) -> None:
    try:
        both.each("run", "-d", "--name", "links-web", *CHILD, "busybox", "sleep", "60")
        seen = both.seen(
            "links-web",
            lambda which: both.ok(which, "run", "--name", "links-app", "--link", "links-web:db",
                                  "--link", "links-web", "busybox", "sh", "-c", SHOW),
        )  # fmt: skip
        assert "DB_PORT_8000_TCP_PORT_END=8002" in seen
        assert "IP\tdb webhost links-web" in seen
        assert both.links("links-app") == [
            "/links-web:/links-app/db", "/links-web:/links-app/links-web",
        ]  # fmt: skip
        names = both.each("ps", "-a", "--no-trunc", "--filter", "name=links-web",
                          "--format", "{{.Names}}")  # fmt: skip
        assert names[0] == names[1] == "links-app/db,links-app/links-web,links-web\n"

        # Links survive a rename of either side: the names of now, in inspect and at start.
        both.each("rename", "links-web", "links-web2")
        both.each("rename", "links-app", "links-app2")
        seen = both.seen("links-web2", lambda which: both.ok(which, "start", "-a", "links-app2"))
        assert "DB_NAME=/links-app2/db" in seen
        assert "IP\tlinks-web webhost links-web2" in seen
        assert both.links("links-app2") == [
            "/links-web2:/links-app2/db", "/links-web2:/links-app2/links-web",
        ]  # fmt: skip

        # docker rm --link removes the link only; a link's name or a container's own is not one.
        assert both.each("rm", "--link", "links-app2/db") == ("links-app2/db\n",) * 2
        assert both.links("links-app2") == ["/links-web2:/links-app2/links-web"]
        ours, theirs = both.failing("rm", "--link", "links-app2/db")
        assert ours == theirs == "No such container: links-app2/db"
        ours, theirs = both.failing("rm", "--link", "links-web2")
        assert ours == theirs == "Conflict, cannot remove the default link name of the container"
        both.each("inspect", "links-web2", "links-app2")  # both still there
    finally:
        both.clean("links-web", "links-app", "links-web2", "links-app2")


def test_links_refused_as_dockerd_refuses_them(both: Both) -> None:
    try:
        both.each("create", "--name", "links-stopped", "busybox", "true")
        ours, theirs = both.failing("create", "--link", "links-missing:x", "busybox", "true")
        assert (
            ours
            == theirs
            == ("could not get container for links-missing: No such container: links-missing")
        )
        for network, kind in (("host", "host type networking"),
                              ("container:links-stopped", "container type network")):  # fmt: skip
            ours, theirs = both.failing(
                "create", "--network", network, "--link", "links-stopped:x", "busybox", "true"
            )
            assert (
                ours
                == theirs
                == (
                    f"conflicting options: {kind} can't be used with links. "
                    "This would result in undefined behavior"
                )
            )
        # Linking to a stopped container is taken at create and refused at start.
        both.each("create", "--name", "links-late", "--link", "links-stopped:x", "busybox", "true")
        ours, theirs = both.failing("start", "links-late")
        assert (
            ours
            == theirs
            == ("Cannot link to a non running container: /links-stopped AS /links-late/x")
        )
        # On none, links are kept and do nothing.
        outputs = both.each("run", "--rm", "--network", "none", "--link", "links-stopped:x",
                            "busybox", "sh", "-c", "env | grep ^X_; tail -n +7 /etc/hosts")  # fmt: skip
        assert outputs == ("", "")
        # A link outlives its child, shown with the child's last name.
        both.each("rename", "links-stopped", "links-gone")
        both.each("rm", "links-gone")
        assert both.links("links-late") == ["/links-gone:/links-late/x"]
    finally:
        both.clean("links-stopped", "links-late", "links-gone")


def test_a_running_parent_learns_the_new_address_of_its_child(both: Both) -> None:
    try:
        both.each("run", "-d", "--name", "links-child", "--hostname", "kidhost", "busybox",
                  "sleep", "60")  # fmt: skip
        both.each("run", "-d", "--name", "links-parent", "--link", "links-child:kid",
                  "busybox", "sleep", "60")  # fmt: skip
        both.each("stop", "-t", "0", "links-child")
        # Another container takes the child's address, so it comes back with a new one.
        both.each("run", "-d", "--name", "links-filler", "busybox", "sleep", "60")
        both.each("start", "links-child")
        seen = both.seen(
            "links-child",
            lambda which: both.ok(which, "exec", "links-parent", "sh", "-c",
                                  "grep kid /etc/hosts; env | grep KID_NAME"),
        )  # fmt: skip
        assert seen == ["IP\tkid kidhost links-child", "KID_NAME=/links-parent/kid"]
    finally:
        both.clean("links-child", "links-parent", "links-filler")
