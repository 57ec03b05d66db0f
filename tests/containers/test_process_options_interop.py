"""Process options side by side: the docker CLI against our daemon and a real dockerd 20.10.

The same commands, the same image, the same answers: what inspect fills in, what the container
sees (``--init``'s pid 1, ``-t``'s terminal, joined namespaces, ``/dev/shm``, sysctls, groups),
and the messages of what both refuse. Our daemon runs the namespaces runtime (runc's are in
tests/containers/test_process_options.py).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import RealDockerd, docker_cli, docker_env
from tests.conftest import Daemon, plugin_env, serving, shut_down, spawn_daemon
from tests.containers.test_process_options import GROUPS

pytestmark = pytest.mark.interop

IMAGE = "process-busybox:latest"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("process-interop") / "busybox.tar"
    path.write_bytes(image_archive([busybox_rootfs({"etc/group": GROUPS})], [IMAGE]))
    return path


@pytest.fixture(scope="module")
def dockerd(real_dockerd, archive) -> RealDockerd:
    real_dockerd.docker("load", "-i", str(archive))
    return real_dockerd


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, archive) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("process-ours")
    socket_path = str(base / "dockyard.sock")
    args = ["daemon", "--data-root", str(base / "root"), "-H", f"unix://{socket_path}",
            "--runtime", "namespaces"]  # fmt: skip
    ours = serving(
        spawn_daemon(args, plugin_env([]), socket_path, base / "root", base / "daemon.log")
    )
    try:
        loaded = subprocess.run([docker_cli(), "load", "-i", str(archive)],
                                env=docker_env(ours.host), capture_output=True)  # fmt: skip
        assert loaded.returncode == 0, loaded.stderr
        yield ours
    finally:
        shut_down(ours)


class Both:
    """One docker CLI command run against both daemons."""

    def __init__(self, daemon: Daemon, dockerd: RealDockerd) -> None:
        self.hosts = {"ours": daemon.host, "theirs": dockerd.host}
        self.configs = {"ours": None, "theirs": dockerd.root / "client-config"}

    def one(self, which: str, *args: str) -> subprocess.CompletedProcess[str]:
        config = self.configs[which]
        return subprocess.run(
            [docker_cli(), *args],
            env=docker_env(self.hosts[which], config),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def __call__(self, *args: str) -> tuple[subprocess.CompletedProcess[str], ...]:
        return self.one("ours", *args), self.one("theirs", *args)

    def run(self, *args: str) -> tuple[str, str]:
        """``docker run --rm ARGS``: both outputs, each run having succeeded."""
        ours, theirs = self("run", "--rm", *args)
        assert ours.returncode == 0, ours.stderr
        assert theirs.returncode == 0, theirs.stderr
        return ours.stdout, theirs.stdout

    def refused(self, *args: str) -> tuple[str, str]:
        """``docker run --rm ARGS`` failing with 125 on both: the daemons' messages."""
        ours, theirs = self("run", "--rm", *args)
        assert (ours.returncode, theirs.returncode) == (125, 125), (ours.stderr, theirs.stderr)
        return _message(ours.stderr), _message(theirs.stderr)

    def host_config(self, *create: str) -> tuple[dict, dict]:
        found = []
        for which in ("ours", "theirs"):
            made = self.one(which, "create", *create)
            assert made.returncode == 0, made.stderr
            shown = self.one(which, "inspect", made.stdout.strip())
            found.append(json.loads(shown.stdout)[0])
            self.one(which, "rm", "-f", made.stdout.strip())
        return found[0], found[1]


def _message(stderr: str) -> str:
    return stderr.strip().splitlines()[0].removeprefix("docker: Error response from daemon: ")


@pytest.fixture
def both(daemon, dockerd) -> Iterator[Both]:
    pair = Both(daemon, dockerd)
    yield pair
    for which in ("ours", "theirs"):
        left = pair.one(which, "ps", "-aq", "--filter", "label=process-test").stdout.split()
        if left:
            pair.one(which, "rm", "-f", *left)


FIELDS = ("IpcMode", "PidMode", "UTSMode", "ShmSize", "CgroupnsMode", "GroupAdd", "Sysctls",
          "ReadonlyPaths")  # fmt: skip


def test_inspect_fills_the_process_fields_as_dockerd(both):
    ours, theirs = both.host_config(IMAGE, "true")
    assert {f: ours["HostConfig"].get(f) for f in FIELDS} == {
        f: theirs["HostConfig"].get(f) for f in FIELDS
    }
    # dockerd 20.10's list, and the one path later releases mask as well.
    masked = [*theirs["HostConfig"]["MaskedPaths"], "/sys/devices/virtual/powercap"]
    assert ours["HostConfig"]["MaskedPaths"] == masked
    assert (ours["HostConfig"]["Runtime"], theirs["HostConfig"]["Runtime"]) == (
        "namespaces", "runc",
    )  # fmt: skip
    ours, theirs = both.host_config("--init", "--shm-size", "1m", "--ipc", "shareable",
                                    "--cgroupns", "private", "--group-add", "audio",
                                    "--sysctl", "net.ipv4.ip_forward=1", IMAGE, "sleep", "5")  # fmt: skip
    fields = (*FIELDS, "Init")
    assert {f: ours["HostConfig"].get(f) for f in fields} == {
        f: theirs["HostConfig"].get(f) for f in fields
    }
    assert (ours["Path"], ours["Args"]) == (theirs["Path"], theirs["Args"]) == ("sleep", ["5"])


def test_config_env_lists_the_requests_variables_first_as_dockerd(both):
    # docker-py: the docker CLI sends -e variables in a random order (a Go map).
    import docker as docker_sdk

    env = ["ZED=1", "HOME=/h", "ALPHA=2"]
    seen = {}
    for which, host in both.hosts.items():
        client = docker_sdk.DockerClient(base_url=host)
        try:
            container = client.containers.create(IMAGE, "env", environment=env, hostname="h")
            try:
                shown = container.attrs["Config"]["Env"]
                container.start()
                container.wait(timeout=30)
                printed = container.logs().decode()
                tty = client.containers.run(
                    IMAGE, "env", environment=env, hostname="h", tty=True, remove=True
                )
            finally:
                container.remove(force=True)
            seen[which] = (shown, printed, tty.decode())
        finally:
            client.close()
    assert seen["ours"] == seen["theirs"]
    assert seen["ours"][0][:3] == env


def test_init_runs_as_pid_1_as_under_dockerd(both):
    ours, theirs = both.run("--init", IMAGE, "sh", "-c", "ps -o pid,args | awk '$1 == 1'")
    assert ours == theirs == "    1 /sbin/docker-init -- sh -c ps -o pid,args | awk '$1 == 1'\n"


def test_a_terminal_is_the_containers_own_pts(both):
    ours, theirs = both.run("-t", IMAGE, "tty")
    assert ours == theirs == "/dev/pts/0\n"  # text mode: the terminal's \r\n read as \n


def test_joined_namespaces_and_dev_shm_as_under_dockerd(both):
    outputs = []
    for which in ("ours", "theirs"):
        started = both.one(which, "run", "-d", "--label", "process-test", "--ipc", "shareable",
                           IMAGE, "sh", "-c", "echo shared > /dev/shm/mark; exec sleep 60")  # fmt: skip
        assert started.returncode == 0, started.stderr
        donor = started.stdout.strip()
        mode = f"container:{donor}"
        joined = both.one(which, "run", "--rm", "--pid", mode, "--ipc", mode, IMAGE, "sh", "-c",
                          "sleep 0.2; cat /dev/shm/mark; ps -o pid,args | awk '$1 == 1'")  # fmt: skip
        assert joined.returncode == 0, joined.stderr
        outputs.append(joined.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].splitlines()[0] == "shared"


def test_shm_size_and_ipc_none_as_under_dockerd(both):
    ours, theirs = both.run("--shm-size", "1m", IMAGE, "grep", " /dev/shm ", "/proc/mounts")
    assert ours == theirs
    ours, theirs = both("run", "--rm", "--ipc", "none", IMAGE, "ls", "/dev/shm")
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr) != (0, "")


def test_cgroup_namespaces_as_under_dockerd(both):
    script = "grep -c ':/$' /proc/self/cgroup; wc -l < /proc/self/cgroup"
    ours, theirs = both.run("--cgroupns", "private", IMAGE, "sh", "-c", script)
    assert ours.split()[0] == ours.split()[1] and theirs.split()[0] == theirs.split()[1]
    ours, theirs = both.run("--cgroupns", "host", IMAGE, "grep", "memory", "/proc/self/cgroup")
    assert ours.strip().split(":")[2] != "/" and theirs.strip().split(":")[2] != "/"


def test_sysctls_and_groups_as_under_dockerd(both):
    script = "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax; id -G"
    ours, theirs = both.run("--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmax=4096",
                            "--group-add", "audio", "--group-add", "1234", IMAGE, "sh", "-c",
                            script)  # fmt: skip
    assert ours == theirs == "1\n4096\n0 29 1234\n"


def test_refusals_say_what_dockerd_says(both):
    ours, theirs = both.refused("--runtime", "bogus", IMAGE, "true")
    assert ours == theirs == "Unknown runtime specified bogus"
    ours, theirs = both.refused("--group-add", "nosuch", IMAGE, "true")
    assert ours == theirs == "Unable to find group nosuch: no matching entries in group file"
    ours, theirs = both.refused("--uts", "host", "-h", "name", IMAGE, "true")
    assert ours == theirs
    ours, theirs = both.refused("--ipc", "container:nosuch", IMAGE, "true")
    assert ours == theirs == "No such container: nosuch"
    # dockerd lets these through to runc, which fails the start; we refuse them at create,
    # with runc's words.
    ours, theirs = both.refused("--ipc", "host", "--sysctl", "kernel.shmmax=1", IMAGE, "true")
    assert ours.rstrip(".") in theirs
    for which in ("ours", "theirs"):
        private = both.one(which, "run", "-d", "--label", "process-test", IMAGE, "sleep", "60")
        donor = private.stdout.strip()
        joined = both.one(which, "run", "--rm", "--ipc", f"container:{donor}", IMAGE, "true")
        assert joined.returncode == 125
        assert _message(joined.stderr) == (
            f"can't join IPC of container {donor}: non-shareable IPC "
            "(hint: use IpcMode:shareable for the donor container)"
        )
