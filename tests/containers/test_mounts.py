"""tmpfs mounts, the local volume driver's options, volumes filled from the image, ``--mount``
volume options, ``--volumes-from``, volume events, and ``-e VAR`` in our client.

The docker CLI (and our own) drive one daemon per runtime; what each check expects is what
a dockerd 20.10 does, which tests/containers/test_mounts_interop.py shows side by side.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.testing.images import busybox_rootfs
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import (
    Daemon,
    plugin_env,
    run_dockyard,
    serving,
    shut_down,
    spawn_daemon,
)

#: What the image has at /d, for the copy into a new volume (owners and modes differ from
#: what a new directory would get).
FILLED = "mounts-filled"


def filled_rootfs() -> bytes:
    """busybox with a /d directory of files of several owners, types and modes."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(busybox_rootfs())) as source,
        tarfile.open(fileobj=out, mode="w") as tar,
    ):
        for member in source.getmembers():
            tar.addfile(member, source.extractfile(member) if member.isfile() else None)

        def add(name: str, kind: bytes, mode: int, uid: int, gid: int, data: bytes = b"") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, uid, gid
            info.size = len(data)
            if kind == tarfile.SYMTYPE:
                info.linkname, info.size = data.decode(), 0
            if kind == tarfile.LNKTYPE:
                info.linkname, info.size = data.decode(), 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("d", tarfile.DIRTYPE, 0o710, 7, 8)
        add("d/f", tarfile.REGTYPE, 0o640, 5, 6, b"a\n")
        add("d/hard", tarfile.LNKTYPE, 0o640, 5, 6, b"d/f")
        add("d/link", tarfile.SYMTYPE, 0o777, 0, 0, b"f")
        add("d/fifo", tarfile.FIFOTYPE, 0o644, 0, 0)
        add("d/sub", tarfile.DIRTYPE, 0o755, 9, 9)
        add("d/sub/g", tarfile.REGTYPE, 0o644, 0, 0, b"b\n")
    return out.getvalue()


def import_filled(host: str, directory: Path) -> None:
    """The image FILLED, with ``VOLUME /d``, imported with the docker CLI."""
    archive = directory / "filled.tar"
    archive.write_bytes(filled_rootfs())
    docker = [docker_cli(), "import"]
    for change in ('CMD ["/bin/sh"]', "ENV PATH=/bin", 'VOLUME ["/d"]'):
        docker += ["-c", change]
    done = subprocess.run(
        [*docker, str(archive), FILLED], env=docker_env(host), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def docker(
    daemon_host: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_cli(), *args],
        env={**docker_env(daemon_host), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def mount_lines(output: str) -> dict[str, str]:
    """``/proc/self/mountinfo`` lines as {mount point: "options - fstype super-options"}."""
    found = {}
    for line in output.splitlines():
        fields = line.split()
        separator = fields.index("-")
        found[fields[4]] = " ".join([fields[5], "-", fields[separator + 1], fields[-1]])
    return found


@contextlib.contextmanager
def daemon_with_filled(base: Path, *args: str) -> Iterator[Daemon]:
    """Our daemon on ``base`` (with more ``args``), with FILLED."""
    socket_path = str(base / "dockyard.sock")
    command = ["daemon", "--data-root", str(base / "root"), "-H", f"unix://{socket_path}", *args]
    daemon = spawn_daemon(command, plugin_env([]), socket_path, base / "root", base / "daemon.log")
    serving(daemon)
    try:
        import_filled(daemon.host, base)
        yield daemon
    finally:
        shut_down(daemon)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    """The default runtime's (namespaces): for what does not depend on the runtime."""
    base = tmp_path_factory.mktemp("mounts")
    with daemon_with_filled(base, "--runtime", "namespaces") as serving_daemon:
        yield serving_daemon


@pytest.fixture(scope="module")
def runc_daemon(tmp_path_factory) -> Iterator[Daemon]:
    with daemon_with_filled(tmp_path_factory.mktemp("mounts-runc"), "--runtime", "runc") as d:
        yield d


@pytest.fixture(params=["daemon", "runc_daemon"])
def daemons(request) -> Daemon:
    """The two runtimes' daemons in turn."""
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------------------------------
# tmpfs
# --------------------------------------------------------------------------------------------

SHOW_MOUNTS = "grep -E ' /(t|u|v|w) ' /proc/self/mountinfo; echo ---; ls -nd /t /u /v /w"


def test_tmpfs_mounts_carry_dockerds_defaults_and_the_options_asked(daemons):
    shown = docker(
        daemons.host, "run", "--rm",
        "--tmpfs", "/t", "--tmpfs", "/u:size=1m,mode=700,exec,uid=5",
        "--mount", "type=tmpfs,dst=/v,tmpfs-size=2m,tmpfs-mode=1770",
        "--mount", "type=tmpfs,dst=/w,readonly",
        FILLED, "sh", "-c", SHOW_MOUNTS,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    # What dockerd 20.10 shows for the same flags (runc mounts the read-only one rw, then
    # remounts it read-only).
    mounted, listed = shown.stdout.split("---\n")
    assert mount_lines(mounted) == {
        "/t": "rw,nosuid,nodev,noexec,relatime - tmpfs rw",
        "/u": "rw,nosuid,nodev,relatime - tmpfs rw,size=1024k,mode=700,uid=5",
        "/v": "rw,nosuid,nodev,noexec,relatime - tmpfs rw,size=2048k,mode=1770",
        "/w": "ro,nosuid,nodev,noexec,relatime - tmpfs rw",
    }
    owners = [line.split()[0] + " " + line.split()[2] for line in listed.splitlines()]
    assert owners == ["drwxrwxrwt 0", "drwx------ 5", "drwxrwx--T 0", "drwxrwxrwt 0"]


def test_a_tmpfs_over_the_images_volume_replaces_it(daemons):
    created = docker(daemons.host, "create", "--tmpfs", "/d:exec", FILLED, "true")
    assert created.returncode == 0, created.stderr
    container = created.stdout.strip()
    try:
        inspected = json.loads(docker(daemons.host, "inspect", container).stdout)[0]
        assert inspected["Mounts"] == []  # no anonymous volume made for /d
        assert inspected["HostConfig"]["Tmpfs"] == {"/d": "exec"}
        shown = docker(daemons.host, "start", "-a", container)
        assert shown.returncode == 0, shown.stderr
    finally:
        docker(daemons.host, "rm", "-v", container)
    ran = docker(daemons.host, "run", "--rm", "--tmpfs", "/d", FILLED, "ls", "-A", "/d")
    assert (ran.returncode, ran.stdout) == (0, "")  # an empty tmpfs: nothing copied into it


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tmpfs", "t"], "invalid mount path: 't' mount path must be absolute"),
        (["--tmpfs", "/t:bogus"], "invalid tmpfs option 'bogus'"),
        (["--tmpfs", "/t:foo=bar"], "invalid tmpfs option 'foo=bar'"),
        (["--tmpfs", "/t:size=abc"], "invalid value for tmpfs option size: 'abc'"),
        (["--tmpfs", "/t:shared"], "invalid tmpfs option 'shared'"),
        (["--tmpfs", "/t", "-v", "/tmp:/t"], "Duplicate mount point: /t"),
        (
            ["--mount", "type=tmpfs,src=x,dst=/v"],
            'invalid mount config for type "tmpfs": field Source must not be specified',
        ),
    ],
)
def test_bad_tmpfs_requests_are_refused_by_name(daemon, flags, message):
    refused = docker(daemon.host, "create", *flags, FILLED, "true")
    assert refused.returncode != 0
    assert message in refused.stderr


# --------------------------------------------------------------------------------------------
# a new volume filled from the image
# --------------------------------------------------------------------------------------------

LIST_D = "ls -lnA /d /d/sub | sed -E 's/ [A-Z][a-z]{2} +[0-9]+ +[0-9:]+ / /'"


def test_a_new_volume_is_filled_with_the_images_files(daemon):
    filled = docker(daemon.host, "run", "--rm", "-v", "fill1:/d", FILLED, "sh", "-c", LIST_D)
    anonymous = docker(daemon.host, "run", "--rm", FILLED, "sh", "-c", LIST_D)
    try:
        assert filled.returncode == 0, filled.stderr
        assert "-rw-r-----    2 5        6" in filled.stdout  # f and its hard link, owners kept
        assert "prw-r--r--" in filled.stdout and "link -> f" in filled.stdout
        # The volume's root takes the image directory's owner and mode too.
        root = docker(daemon.host, "run", "--rm", "-v", "fill1:/d", FILLED, "ls", "-nd", "/d")
        assert root.stdout.split()[:4] == ["drwx--x---", "3", "7", "8"]
        assert filled.stdout == anonymous.stdout  # the image's anonymous volume: the same
    finally:
        docker(daemon.host, "volume", "rm", "fill1")


def test_a_volume_with_data_is_not_refilled_and_an_emptied_one_is(daemon):
    try:
        wrote = docker(daemon.host, "run", "--rm", "-v", "fill2:/d", FILLED, "sh", "-c",
                       "rm -rf /d/*; echo mine > /d/own")  # fmt: skip
        assert wrote.returncode == 0, wrote.stderr
        kept = docker(daemon.host, "run", "--rm", "-v", "fill2:/d", FILLED, "ls", "-A", "/d")
        assert kept.stdout.split() == ["own"]
        emptied = docker(daemon.host, "run", "--rm", "-v", "fill2:/d", FILLED, "rm", "/d/own")
        assert emptied.returncode == 0
        again = docker(daemon.host, "run", "--rm", "-v", "fill2:/d", FILLED, "ls", "-A", "/d")
        assert again.stdout.split() == ["f", "fifo", "hard", "link", "sub"]  # as dockerd does
    finally:
        docker(daemon.host, "volume", "rm", "fill2")


@pytest.mark.parametrize(
    "flags",
    [["-v", "nocopy1:/d:nocopy"], ["--mount", "type=volume,src=nocopy1,dst=/d,volume-nocopy"]],
)
def test_nocopy_leaves_a_new_volume_empty(daemon, flags):
    try:
        ran = docker(daemon.host, "run", "--rm", *flags, FILLED, "ls", "-A", "/d")
        assert (ran.returncode, ran.stdout) == (0, ""), ran.stderr
    finally:
        docker(daemon.host, "volume", "rm", "nocopy1")


# --------------------------------------------------------------------------------------------
# the local driver's options
# --------------------------------------------------------------------------------------------


def host_mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split()[4] for line in mountinfo if line.split()[4].startswith(str(root))]


def test_a_tmpfs_volume_is_mounted_while_a_container_uses_it(daemons):
    made = docker(daemons.host, "volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs",
                  "-o", "o=size=64m,uid=1000", "tmpvol")  # fmt: skip
    assert made.returncode == 0, made.stderr
    volumes = daemons.data_root / "volumes"
    try:
        inspected = json.loads(docker(daemons.host, "volume", "inspect", "tmpvol").stdout)[0]
        assert inspected["Options"] == {"device": "tmpfs", "o": "size=64m,uid=1000",
                                         "type": "tmpfs"}  # fmt: skip
        assert host_mounts_under(volumes) == []  # not before a container uses it
        ran = docker(daemons.host, "run", "-d", "--name", "tmpvol-user", "-v", "tmpvol:/t",
                     FILLED, "sh", "-c", "grep ' /t ' /proc/self/mountinfo; sleep 30")  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert host_mounts_under(volumes) == [str(volumes / "tmpvol" / "_data")]
        second = docker(daemons.host, "run", "--rm", "-v", "tmpvol:/t", FILLED, "ls", "-nd", "/t")
        assert second.stdout.split()[2] == "1000"
        assert host_mounts_under(volumes) == [str(volumes / "tmpvol" / "_data")]  # still used
        docker(daemons.host, "rm", "-f", "tmpvol-user")
        deadline = time.monotonic() + 10
        while host_mounts_under(volumes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert host_mounts_under(volumes) == []  # gone with its last user
    finally:
        docker(daemons.host, "rm", "-f", "tmpvol-user")
        docker(daemons.host, "volume", "rm", "tmpvol")


def test_a_bind_volume_shows_the_host_directory_and_keeps_it(daemon, tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "f").write_text("host\n")
    made = docker(daemon.host, "volume", "create", "-o", "type=none", "-o", "o=bind",
                  "-o", f"device={tmp_path / 'shared'}", "bindvol")  # fmt: skip
    assert made.returncode == 0, made.stderr
    try:
        ran = docker(daemon.host, "run", "--rm", "-v", "bindvol:/b", FILLED, "sh", "-c",
                     "cat /b/f; echo ctr > /b/g")  # fmt: skip
        assert (ran.returncode, ran.stdout) == (0, "host\n"), ran.stderr
        assert (tmp_path / "shared" / "g").read_text() == "ctr\n"
    finally:
        removed = docker(daemon.host, "volume", "rm", "bindvol")
    assert removed.returncode == 0, removed.stderr
    # Removing the volume unmounted it and left the host's files alone.
    assert sorted(os.listdir(tmp_path / "shared")) == ["f", "g"]


@pytest.mark.parametrize(
    "options, message",
    [
        (["-o", "foo=bar"], 'invalid option: "foo"'),
        (["-o", "type=tmpfs"], 'missing required option: "device"'),
        (["-o", "device=/tmp"], 'missing required option: "type"'),
        (["-o", "size=10m"], "quota size requested but no quota support"),
    ],
)
def test_bad_volume_options_are_refused_by_name(daemon, options, message):
    refused = docker(daemon.host, "volume", "create", *options, "badvol")
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    assert "badvol" not in docker(daemon.host, "volume", "ls", "-q").stdout


def test_a_volume_that_cannot_be_mounted_fails_the_start(daemon):
    docker(daemon.host, "volume", "create", "-o", "type=none", "-o", "o=bind",
           "-o", "device=/nonexistent-mounts-test", "missing-dir")  # fmt: skip
    try:
        ran = docker(daemon.host, "run", "--rm", "-v", "missing-dir:/n", FILLED, "true")
        assert ran.returncode == 125
        assert "error while mounting volume" in ran.stderr
        assert "No such file or directory" in ran.stderr
    finally:
        docker(daemon.host, "volume", "rm", "missing-dir")


# --------------------------------------------------------------------------------------------
# --mount volume options, VolumeDriver, --volumes-from
# --------------------------------------------------------------------------------------------


def test_mount_volume_options_make_the_volume(daemon):
    ran = docker(
        daemon.host, "run", "--rm", "--mount",
        "type=volume,src=labelled,dst=/x,volume-label=a=b,volume-driver=local,"
        "volume-opt=type=tmpfs,volume-opt=device=tmpfs",
        FILLED, "sh", "-c", "grep ' /x ' /proc/self/mountinfo",
    )  # fmt: skip
    try:
        assert ran.returncode == 0, ran.stderr
        assert mount_lines(ran.stdout)["/x"].endswith("- tmpfs rw")
        volume = json.loads(docker(daemon.host, "volume", "inspect", "labelled").stdout)[0]
        assert (volume["Labels"], volume["Options"]) == (
            {"a": "b"},
            {"device": "tmpfs", "type": "tmpfs"},
        )
    finally:
        docker(daemon.host, "volume", "rm", "labelled")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--volume-driver", "foo"], "HostConfig.VolumeDriver: volume driver 'foo'"),
        (["--mount", "type=volume,src=v,dst=/x,volume-driver=foo"], "volume driver 'foo'"),
        (["--mount", "type=volume,src=v,dst=/x,volume-opt=foo=bar"], 'invalid option: "foo"'),
        (["--volumes-from", "no-such-mounts-ctr"], "No such container: no-such-mounts-ctr"),
    ],
)
def test_bad_volume_requests_are_refused(daemon, flags, message):
    refused = docker(daemon.host, "create", *flags, FILLED, "true")
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr


@pytest.mark.parametrize(
    "host_config, message",
    [
        (
            {"Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "/x",
                         "VolumeOptions": {"NoCopy": True}}]},
            "VolumeOptions must not be specified on mount type 'bind'",
        ),
        (
            {"Mounts": [{"Type": "volume", "Target": "/x", "TmpfsOptions": {"SizeBytes": 1}}]},
            "TmpfsOptions must not be specified on mount type 'volume'",
        ),
        ({"VolumesFrom": ["somewhere:rx"]}, "HostConfig.VolumesFrom: invalid mode: rx"),
        ({"Tmpfs": {"/t": "mode=999"}}, "invalid value for tmpfs option mode: '999'"),
    ],
)  # fmt: skip
def test_bad_mount_fields_are_refused_by_name(daemon, host_config, message):
    body = json.dumps({"Image": FILLED, "HostConfig": host_config}).encode()
    reply = daemon.request(
        "POST", "/v1.41/containers/create", {"Content-Type": "application/json"}, body
    )
    assert (reply.status, message in reply.json()["message"]) == (400, True), reply.body


def test_volume_driver_local_is_accepted(daemon):
    ran = docker(daemon.host, "run", "--rm", "--volume-driver", "local", FILLED, "true")
    assert ran.returncode == 0, ran.stderr


def test_volumes_from_mounts_the_other_containers_volumes_and_binds(daemon, tmp_path):
    source = docker(daemon.host, "create", "--name", "vf-source", "-v", "vf-named:/a",
                    "-v", f"{tmp_path}:/h:ro", "-v", "/anon", FILLED, "true")  # fmt: skip
    assert source.returncode == 0, source.stderr
    show = "grep -E ' /(a|h|anon|d) ' /proc/self/mountinfo | cut -d' ' -f5,6 | cut -d, -f1"
    try:
        shared = docker(daemon.host, "run", "--rm", "--volumes-from", "vf-source", FILLED,
                        "sh", "-c", show)  # fmt: skip
        assert sorted(shared.stdout.splitlines()) == ["/a rw", "/anon rw", "/d rw", "/h ro"]
        # :rw cannot make a read-only bind writable; :ro makes every one read-only.
        writable = docker(daemon.host, "run", "--rm", "--volumes-from", "vf-source:rw",
                          FILLED, "sh", "-c", show)  # fmt: skip
        assert sorted(writable.stdout.splitlines()) == ["/a rw", "/anon rw", "/d rw", "/h ro"]
        read_only = docker(daemon.host, "run", "--rm", "--volumes-from", "vf-source:ro",
                           FILLED, "sh", "-c", show)  # fmt: skip
        assert sorted(read_only.stdout.splitlines()) == ["/a ro", "/anon ro", "/d ro", "/h ro"]
        # The same volume: what one writes, the other reads.
        docker(daemon.host, "run", "--rm", "--volumes-from", "vf-source", FILLED,
               "sh", "-c", "echo shared > /a/x")  # fmt: skip
        read = docker(daemon.host, "run", "--rm", "-v", "vf-named:/a", FILLED, "cat", "/a/x")
        assert read.stdout == "shared\n"
    finally:
        docker(daemon.host, "rm", "-v", "vf-source")
        docker(daemon.host, "volume", "rm", "vf-named")


# --------------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------------


def volume_events(host: str, since: int) -> list[str]:
    """``docker events --filter type=volume`` from ``since`` to now, container ids as CTR."""
    listed = docker(
        host, "events", "--since", str(since), "--until", str(int(time.time()) + 1),
        "--filter", "type=volume", "--format", "{{.Action}} {{.Actor.ID}} {{json .Actor.Attributes}}",
    )  # fmt: skip
    return [line for line in listed.stdout.splitlines() if " ev-" in line]


def event_sequence(host: str) -> list[str]:
    """Create, use and remove volumes; the volume events, container ids replaced by CTR."""
    since = int(time.time())
    docker(host, "volume", "create", "ev-named")
    ran = docker(host, "run", "-d", "-v", "ev-named:/a:ro", FILLED, "true")
    container = ran.stdout.strip()
    docker(host, "wait", container)
    docker(host, "rm", container)
    docker(host, "volume", "rm", "ev-named")
    return [line.replace(container, "CTR") for line in volume_events(host, since)]


EXPECTED_EVENTS = [
    'create ev-named {"driver":"local"}',
    'create ev-named {"driver":"local"}',
    'mount ev-named {"container":"CTR","destination":"/a","driver":"local",'
    '"propagation":"","read/write":"false"}',
    'unmount ev-named {"container":"CTR","driver":"local"}',
    'destroy ev-named {"driver":"local"}',
]


def test_volume_events_are_dockerds(daemon):
    assert event_sequence(daemon.host) == EXPECTED_EVENTS


# --------------------------------------------------------------------------------------------
# -e VAR in our client
# --------------------------------------------------------------------------------------------


def test_our_client_leaves_out_a_variable_it_does_not_have(daemon, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("FROM_FILE=1\nUNSET_IN_FILE\nSET_IN_FILE\n# comment\n\n  EMPTY=\n")
    environment = plugin_env([], SET_HERE="yes", SET_IN_FILE="x", SET_EMPTY="")
    environment.pop("UNSET_HERE", None)
    environment.pop("UNSET_IN_FILE", None)
    ran = run_dockyard(
        ["-H", daemon.host, "run", "--rm", "-e", "UNSET_HERE", "-e", "SET_HERE",
         "-e", "SET_EMPTY", "-e", "GIVEN=v", "--env-file", str(env_file), FILLED, "env"],
        env=environment,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    variables = [line for line in ran.stdout.splitlines() if not line.startswith(("HOSTNAME=",))]
    assert variables == [
        "PATH=/bin",
        "FROM_FILE=1",
        "SET_IN_FILE=x",
        "EMPTY=",
        "SET_HERE=yes",
        "SET_EMPTY=",
        "GIVEN=v",
        "HOME=/root",
    ]


def test_a_bare_name_from_another_client_is_no_variable_of_the_process(daemon):
    """The docker CLI sends ``-e VAR`` bare when it lacks VAR; dockerd keeps the name in
    Config.Env and sets nothing (runc would refuse the entry)."""
    env = {k: v for k, v in os.environ.items() if k != "MOUNTS_UNSET"}
    created = subprocess.run(
        [docker_cli(), "create", "-e", "MOUNTS_UNSET", FILLED, "env"],
        env={**env, **docker_env(daemon.host)}, capture_output=True, text=True,
    )  # fmt: skip
    container = created.stdout.strip()
    try:
        inspected = json.loads(docker(daemon.host, "inspect", container).stdout)[0]
        assert "MOUNTS_UNSET" in inspected["Config"]["Env"]
        ran = docker(daemon.host, "start", "-a", container)
        assert ran.returncode == 0 and "MOUNTS_UNSET" not in ran.stdout, ran
    finally:
        docker(daemon.host, "rm", container)


def test_our_client_sends_tmpfs_and_volumes_from(daemon):
    env = plugin_env([])
    source = run_dockyard(["-H", daemon.host, "create", "--name", "cli-vf", "-v", "cli-vf:/a",
                           FILLED, "true"], env=env)  # fmt: skip
    assert source.returncode == 0, source.stderr
    try:
        ran = run_dockyard(
            ["-H", daemon.host, "run", "--rm", "--tmpfs", "/t:size=1m", "--tmpfs", "/u",
             "--volumes-from", "cli-vf:ro", FILLED, "sh", "-c",
             "grep -E ' /(t|u|a) ' /proc/self/mountinfo"],
            env=env,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        shown = mount_lines(ran.stdout)
        assert shown["/t"].endswith("tmpfs rw,size=1024k") and shown["/u"].endswith("tmpfs rw")
        assert shown["/a"].startswith("ro,")
    finally:
        run_dockyard(["-H", daemon.host, "rm", "-v", "cli-vf"], env=env)
        run_dockyard(["-H", daemon.host, "volume", "rm", "cli-vf"], env=env)
