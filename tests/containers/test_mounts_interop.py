"""tmpfs mounts, volume options, volumes filled from the image, --volumes-from and volume
events: our daemon and a real dockerd 20.10, side by side through the docker CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon
from tests.containers.test_mounts import (
    FILLED,
    LIST_D,
    SHOW_MOUNTS,
    daemon_with_filled,
    docker,
    event_sequence,
    import_filled,
    mount_lines,
)

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> Iterator[Daemon]:
    with daemon_with_filled(tmp_path_factory.mktemp("mounts-interop")) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def hosts(ours, real_dockerd, tmp_path_factory) -> tuple[str, str]:
    """(our daemon's host, dockerd's), both with FILLED."""
    import_filled(real_dockerd.host, tmp_path_factory.mktemp("mounts-dockerd"))
    return ours.host, real_dockerd.host


def both(hosts: tuple[str, str], *args: str) -> tuple[str, str]:
    """The output of one docker command against each daemon (stdout, else stderr)."""
    outputs = []
    for host in hosts:
        done = docker(host, *args)
        outputs.append(done.stdout if done.returncode == 0 else "FAILED " + done.stderr)
    return outputs[0], outputs[1]


def test_tmpfs_mount_options_are_dockerds(hosts):
    flags = [
        "--tmpfs", "/t", "--tmpfs", "/u:size=1m,mode=700,exec,uid=5,size=3m",
        "--mount", "type=tmpfs,dst=/v,tmpfs-size=2m,tmpfs-mode=1770",
        "--mount", "type=tmpfs,dst=/w,readonly",
    ]  # fmt: skip
    ours, theirs = both(hosts, "run", "--rm", *flags, FILLED, "sh", "-c", SHOW_MOUNTS)
    mounted, listed = ours.split("---\n")
    their_mounted, their_listed = theirs.split("---\n")
    assert mount_lines(mounted) == mount_lines(their_mounted)
    strip_times = [line.split()[:4] for line in listed.splitlines()]
    assert strip_times == [line.split()[:4] for line in their_listed.splitlines()]


def test_tmpfs_in_inspect_is_dockerds(hosts):
    shown = []
    for host in hosts:
        created = docker(host, "create", "--tmpfs", "/t:size=1m",
                         "--mount", "type=tmpfs,dst=/v,tmpfs-size=2m", FILLED, "true")  # fmt: skip
        inspected = json.loads(docker(host, "inspect", created.stdout.strip()).stdout)[0]
        docker(host, "rm", "-v", created.stdout.strip())
        host_config = inspected["HostConfig"]
        tmpfs_mounts = [m for m in inspected["Mounts"] if m["Type"] == "tmpfs"]
        # (HostConfig.Mounts differs: ours lists every field of a mount, dockerd only those set.)
        shown.append((host_config["Tmpfs"], tmpfs_mounts))
    assert shown[0] == shown[1]


def test_a_new_volume_is_filled_as_dockerd_fills_it(hosts):
    try:
        for flags in (["-v", "ifill:/d"], [], ["-v", "inocopy:/d:nocopy"]):
            ours, theirs = both(hosts, "run", "--rm", *flags, FILLED, "sh", "-c", LIST_D)
            assert ours == theirs
        # Emptied, it is filled again by the next container; with data, it is left alone.
        both(hosts, "run", "--rm", "-v", "ifill:/d", FILLED, "sh", "-c", "rm -rf /d/*")
        ours, theirs = both(hosts, "run", "--rm", "-v", "ifill:/d", FILLED, "ls", "-A", "/d")
        assert ours == theirs == "f\nfifo\nhard\nlink\nsub\n"
    finally:
        both(hosts, "volume", "rm", "ifill", "inocopy")


def test_volume_options_and_their_errors_are_dockerds(hosts, tmp_path):
    (tmp_path / "f").write_text("x")
    try:
        for options in (
            ["-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=64m,uid=1000"],
            ["-o", "type=none", "-o", "o=bind", "-o", f"device={tmp_path}"],
        ):
            both(hosts, "volume", "create", *options, "iopts")
            ours, theirs = both(hosts, "volume", "inspect", "--format",
                                "{{json .Options}} {{json .Labels}}", "iopts")  # fmt: skip
            assert ours == theirs
            show = "grep ' /o ' /proc/self/mountinfo; echo ---; ls -n /o"
            ours, theirs = both(hosts, "run", "--rm", "-v", "iopts:/o", FILLED, "sh", "-c", show)
            mounted, listed = ours.split("---\n")
            their_mounted, their_listed = theirs.split("---\n")
            assert mount_lines(mounted) == mount_lines(their_mounted)
            assert [line.split()[:4] for line in listed.splitlines()] == [
                line.split()[:4] for line in their_listed.splitlines()
            ]
            both(hosts, "volume", "rm", "iopts")
        for options in (["-o", "foo=bar"], ["-o", "type=tmpfs"], ["-o", "device=/tmp"]):
            ours, theirs = both(hosts, "volume", "create", *options, "ibad")
            assert ours.startswith("FAILED ") and ours == theirs
    finally:
        both(hosts, "volume", "rm", "iopts", "ibad")


def test_mount_volume_options_are_dockerds(hosts):
    flag = (
        "type=volume,src=ilabel,dst=/x,volume-label=a=b,volume-driver=local,"
        "volume-opt=type=tmpfs,volume-opt=device=tmpfs"
    )
    try:
        both(hosts, "run", "--rm", "--mount", flag, FILLED, "true")
        ours, theirs = both(hosts, "volume", "inspect", "--format",
                            "{{json .Options}} {{json .Labels}} {{.Driver}}", "ilabel")  # fmt: skip
        assert ours == theirs
    finally:
        both(hosts, "volume", "rm", "ilabel")


def test_volumes_from_is_dockerds(hosts, tmp_path):
    show = "grep -E ' /(a|h|anon|d) ' /proc/self/mountinfo | cut -d' ' -f5,6 | sort"
    try:
        both(hosts, "create", "--name", "ivf", "-v", "ivf-named:/a", "-v", f"{tmp_path}:/h:ro",
             "-v", "/anon", FILLED, "true")  # fmt: skip
        for mode in ("", ":rw", ":ro"):
            ours, theirs = both(hosts, "run", "--rm", "--volumes-from", f"ivf{mode}", FILLED,
                                "sh", "-c", show)  # fmt: skip
            assert ours == theirs
        ours, theirs = both(hosts, "create", "--volumes-from", "ivf-none", FILLED, "true")
        assert ours == theirs
        assert "No such container: ivf-none" in ours
    finally:
        both(hosts, "rm", "-v", "ivf")
        both(hosts, "volume", "rm", "ivf-named")


def test_volume_events_are_dockerds(hosts):
    assert event_sequence(hosts[0]) == event_sequence(hosts[1])


def test_a_bare_variable_name_is_kept_out_as_dockerd_does(hosts):
    for host in hosts:
        created = docker(host, "create", "-e", "MOUNTS_SURELY_UNSET", FILLED, "env")
        container = created.stdout.strip()
        inspected = json.loads(docker(host, "inspect", container).stdout)[0]
        ran = docker(host, "start", "-a", container)
        docker(host, "rm", container)
        assert "MOUNTS_SURELY_UNSET" in inspected["Config"]["Env"]
        assert "MOUNTS_SURELY_UNSET" not in ran.stdout
