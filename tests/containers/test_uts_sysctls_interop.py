"""``Domainname``, dockerd's default network sysctls and the IPC modes, side by side: the
docker CLI against our daemon on each runtime and against the session's dockerd 20.10.

No daemon here has a bridge: containers get a network namespace of their own (``none``),
which is where dockerd sets its default sysctls; ``host`` and ``container:`` get none of them.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from dockyard.testing.peers import RealDockerd, docker_cli, docker_env
from tests.conftest import busybox_archive, docker_load
from tests.containers.conftest import runtime_daemon

pytestmark = pytest.mark.interop

SYSCTLS = "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/net/ipv4/ping_group_range"


@pytest.fixture(scope="module", params=["namespaces", "runc"])
def ours(request, tmp_path_factory) -> Iterator[str]:
    """Our daemon's host, on each runtime, with busybox."""
    base = tmp_path_factory.mktemp(f"uts-{request.param}")
    with runtime_daemon(base, request.param, "uts") as (daemon, _parent):
        docker_load(daemon.host, busybox_archive(base))
        yield daemon.host


@pytest.fixture(scope="module")
def dockerd(real_dockerd: RealDockerd, tmp_path_factory) -> RealDockerd:
    archive = busybox_archive(tmp_path_factory.mktemp("uts-dockerd"))
    real_dockerd.docker("load", "-i", str(archive))
    return real_dockerd


def _ours(host: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [docker_cli(), *args], env=docker_env(host), capture_output=True, text=True, timeout=60
    )


def _both(ours: str, dockerd: RealDockerd, *args: str) -> tuple[str, str]:
    """``docker ARGS`` on both, each succeeding: the outputs."""
    mine, theirs = _ours(ours, *args), dockerd.docker(*args, check=False)
    assert mine.returncode == 0, mine.stderr
    assert theirs.returncode == 0, theirs.stderr
    return mine.stdout, theirs.stdout


def test_domainname_is_the_uts_namespaces_as_under_dockerd(ours, dockerd) -> None:
    shown = "cat /proc/sys/kernel/domainname; hostname"
    mine, theirs = _both(ours, dockerd, "run", "--rm", "--domainname", "example.org",
                         "--hostname", "h", "busybox", "sh", "-c", shown)  # fmt: skip
    assert mine == theirs == "example.org\nh\n"
    # Without one, the kernel's "(none)" of a new UTS namespace.
    assert _both(ours, dockerd, "run", "--rm", "busybox", "cat", "/proc/sys/kernel/domainname")[
        0
    ] == ("(none)\n")
    # dockerd lets it through to a start runc fails; here create refuses it.
    refused = _ours(ours, "create", "--uts", "host", "--domainname", "x", "busybox", "true")
    assert refused.returncode != 0
    assert "conflicting options: domainname and the UTS mode" in refused.stderr


def test_default_network_sysctls_as_under_dockerd(ours, dockerd) -> None:
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as knob:
        host_port_start = knob.read()
    # Their own namespace: dockerd's defaults; a user's --sysctl wins over one of them.
    own = _both(ours, dockerd, "run", "--rm", "busybox", "sh", "-c", SYSCTLS)
    assert own[0] == own[1] == "0\n0\t2147483647\n"
    given = _both(ours, dockerd, "run", "--rm", "--sysctl",
                  "net.ipv4.ip_unprivileged_port_start=1000", "busybox", "sh", "-c", SYSCTLS)  # fmt: skip
    assert given[0] == given[1] == "1000\n0\t2147483647\n"
    # The host's: nothing set (the host keeps its values).
    host = _both(ours, dockerd, "run", "--rm", "--network", "host", "busybox", "sh", "-c", SYSCTLS)
    assert host[0] == host[1]
    assert host[0].startswith(host_port_start)
    # Another container's: nothing set over what that one has.
    outputs = []
    for run in (lambda *a: _ours(ours, *a), lambda *a: dockerd.docker(*a, check=False)):
        donor = run("run", "-d", "--sysctl", "net.ipv4.ip_unprivileged_port_start=1000",
                    "busybox", "sleep", "30").stdout.strip()  # fmt: skip
        try:
            joined = run("run", "--rm", "--network", f"container:{donor}", "busybox",
                         "sh", "-c", SYSCTLS)  # fmt: skip
            assert joined.returncode == 0, joined.stderr
            outputs.append(joined.stdout)
        finally:
            run("rm", "-f", donor)
    assert outputs[0] == outputs[1] == "1000\n0\t2147483647\n"


def test_ipc_modes_reported_and_host_shm_shared_as_under_dockerd(ours, dockerd) -> None:
    for mode in ("private", "host", "none", "shareable"):
        shown = []
        for run in (lambda *a: _ours(ours, *a), lambda *a: dockerd.docker(*a, check=False)):
            made = run("create", "--ipc", mode, "busybox", "true").stdout.strip()
            try:
                shown.append(json.loads(run("inspect", made).stdout)[0]["HostConfig"]["IpcMode"])
            finally:
                run("rm", "-f", made)
        assert shown == [mode, mode]
    # --ipc host: the host's /dev/shm.
    marker = f"uts-ipc-{secrets.token_hex(4)}"
    with open(f"/dev/shm/{marker}", "w") as file:
        file.write("host\n")
    try:
        seen = _both(ours, dockerd, "run", "--rm", "--ipc", "host", "busybox",
                     "cat", f"/dev/shm/{marker}")  # fmt: skip
        assert seen == ("host\n", "host\n")
    finally:
        os.unlink(f"/dev/shm/{marker}")
