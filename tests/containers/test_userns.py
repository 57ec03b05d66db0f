"""``userns-remap`` through the daemon: remapped containers on real namespaces, both runtimes.

One daemon per (runtime, storage driver) for the module, remapping to the ``daemon`` user
with ranges from temporary subordinate id files (uids from 100000, gids from 200000, so a
mix-up of the two shows). The namespaces runtime's data root sits below pytest's 0700 temp
dirs, which it must cope with; runc reaches the root filesystem by path from inside the user
namespace, so its data root is in a directory anyone may search (as dockerd requires).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from dockyard.plugins.storage.overlay import OverlayDriver
from dockyard.plugins.storage.vfs import VfsDriver
from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import Daemon, plugin_env, run_dockyard, serving, shut_down, spawn_daemon
from tests.containers.engine_api import Api, frames
from tests.containers.test_lifecycle import assert_nothing_left, cgroup_dirs
from tests.core.test_userns import restoring_dockremap

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

UID_BASE, GID_BASE, SIZE = 100000, 200000, 65536
SUBUID = f"daemon:{UID_BASE}:{SIZE}\n"
SUBGID = f"daemon:{GID_BASE}:{SIZE}\n"
HAS_RUNC = shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin:/bin") is not None


@attrs.frozen
class Remapped:
    api: Api
    runtime: str
    storage: str


def start_remapped(base: Path, runtime: str, storage: str, *extra: str) -> Daemon:
    """A daemon remapping to ``daemon`` (or as ``extra`` flags say) in ``base``."""
    (base / "subuid").write_text(SUBUID)
    (base / "subgid").write_text(SUBGID)
    socket_path = str(base / "dockyard.sock")
    log_path = base / "daemon.log"
    args = [
        "daemon", "--data-root", str(base / "root"), "-H", f"unix://{socket_path}",
        "--runtime", runtime, "--storage-driver", storage,
        "--userns-remap", "daemon",
        "--subuid-file", str(base / "subuid"), "--subgid-file", str(base / "subgid"),
        "--config", str(base / "config.toml"), *extra,
    ]  # fmt: skip
    return serving(spawn_daemon(args, plugin_env([]), socket_path, base / "root", log_path))


@pytest.fixture(
    scope="module",
    params=[("namespaces", "overlay"), ("runc", "overlay"), ("namespaces", "vfs")],
    ids=lambda p: "-".join(p),
)
def remapped(request, tmp_path_factory) -> Iterator[Remapped]:
    runtime, storage = request.param
    if runtime == "runc" and not HAS_RUNC:
        pytest.skip("the runc binary is not installed")
    if runtime == "runc":
        base = Path(tempfile.mkdtemp(prefix="dockyard-userns-"))
        base.chmod(0o711)
    else:
        base = tmp_path_factory.mktemp(f"userns-{runtime}-{storage}")
    parent = f"dockyard-test-{secrets.token_hex(4)}"
    (base / "config.toml").write_text(f'[runtimes.{runtime}]\ncgroup-parent = "{parent}"\n')
    daemon = start_remapped(base, runtime, storage)
    try:
        extra = {f"bin/{applet}": "->busybox" for applet in ("stat", "chown", "ls")}
        archive = image_archive([busybox_rootfs(extra)], ["busybox:latest"])
        assert daemon.request("POST", "/v1.41/images/load", body=archive).status == 200
        yield Remapped(Api(daemon, cgroup_parent=parent), runtime, storage)
    finally:
        shut_down(daemon)
        for directory in Path("/sys/fs/cgroup").glob(f"*/{parent}"):
            with contextlib.suppress(OSError):
                directory.rmdir()
        if runtime == "runc":
            shutil.rmtree(base, ignore_errors=True)


def status_ids(pid: int) -> tuple[str, str]:
    """The real uid and gid of host process ``pid``."""
    text = Path(f"/proc/{pid}/status").read_text()
    uid = re.search(r"^Uid:\s+(\d+)", text, re.MULTILINE)
    gid = re.search(r"^Gid:\s+(\d+)", text, re.MULTILINE)
    assert uid and gid, text
    return uid.group(1), gid.group(1)


def wait_for_sleep(pid: int) -> None:
    deadline = time.monotonic() + 20
    while not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0"):
        assert time.monotonic() < deadline, "the container never reached its sleep"
        time.sleep(0.01)


def logs_of(api: Api, container: str, lines: int) -> bytes:
    """The container's logs once they hold ``lines`` lines: its supervisor writes them a moment
    after the process does, so a process that has gone on to its sleep may not be in them yet."""
    deadline = time.monotonic() + 20
    while (logs := api.logs(container)).count(b"\n") < lines and time.monotonic() < deadline:
        time.sleep(0.05)
    return logs


def exec_output(api: Api, container: str, cmd: list[str]) -> str:
    created = api.call("POST", f"/containers/{container}/exec", {"Cmd": cmd, "AttachStdout": True})
    assert created.status == 201, created.body
    started = api.call("POST", f"/exec/{created.json()['Id']}/start", {"Detach": False})
    assert started.status == 200, started.body
    return b"".join(payload for _kind, payload in frames(started.body)).decode()


def snapshot_diff(remapped: Remapped, container: str) -> dict[str, tarfile.TarInfo]:
    """The storage driver's diff of the container's snapshot, as ``commit`` would take it."""
    root = remapped.api.daemon.data_root / "storage" / remapped.storage
    driver = OverlayDriver(root) if remapped.storage == "overlay" else VfsDriver(root)
    stored = driver.keys()  # the image's one layer, and the containers' snapshots
    parents = [key for key in stored if not key.startswith("container-")]
    out = io.BytesIO()
    driver.diff(f"container-{container}", parents, out)
    out.seek(0)
    with tarfile.open(fileobj=out) as archive:
        return {member.name.removeprefix("./"): member for member in archive.getmembers()}


def remove(api: Api, container: str) -> None:
    assert api.call("DELETE", f"/containers/{container}?force=1&v=1").status == 204


def run(api: Api, cmd: list[str], **config) -> tuple[int, bytes, bytes]:  # type: ignore[no-untyped-def]
    """Run a container to its end and remove it: (exit code, stdout, stderr)."""
    container = api.create(cmd, **config)
    api.start(container)
    code = api.wait(container)["StatusCode"]
    out, err = api.logs(container, "stdout"), api.logs(container, "stderr")
    remove(api, container)
    return code, out, err


# --------------------------------------------------------------------------------------------
# The remapped root
# --------------------------------------------------------------------------------------------


def test_root_inside_is_the_remapped_base_outside(remapped):
    api = remapped.api
    script = (
        "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; "
        "stat -c %u:%g /bin/busybox /etc /etc/hostname; "
        "touch /made && mkdir /dir && chown 1000:1000 /dir && rm /bin/ls && exec sleep 30"
    )
    container = api.create(["sh", "-c", script])
    api.start(container)
    pid = api.inspect(container)["State"]["Pid"]
    wait_for_sleep(pid)
    assert status_ids(pid) == (str(UID_BASE), str(GID_BASE))
    lines = [line.split() for line in logs_of(api, container, 7).decode().splitlines()]
    assert lines == [
        ["0"], ["0"], ["0", str(UID_BASE), str(SIZE)], ["0", str(GID_BASE), str(SIZE)],
        ["0:0"], ["0:0"], ["0:0"],
    ], api.logs(container, "stderr")  # fmt: skip
    assert api.inspect(container)["HostConfig"]["UsernsMode"] == ""
    # An exec joins the same user namespace.
    output = exec_output(api, container, ["sh", "-c", "id -u; cat /proc/self/uid_map"])
    assert output.split() == ["0", "0", str(UID_BASE), str(SIZE)]
    # Nothing of the container is mounted on the host, the idmapped clones included: only its
    # network namespace file (<data root>/netns/<id>, nsfs), which the daemon keeps.
    with open("/proc/self/mountinfo") as mountinfo:
        mounted = [line for line in mountinfo if str(api.daemon.data_root) in line]
    assert [line.split()[4] for line in mounted] == [
        str(api.daemon.data_root / "netns" / container)
    ]
    # What the container's root wrote is stored with the container's ids: the diff is the
    # same as without remapping (the deleted file is a whiteout, the chowned dir is 1000).
    diff = snapshot_diff(remapped, container)
    assert (diff["made"].uid, diff["made"].gid) == (0, 0)
    assert (diff["dir"].uid, diff["dir"].gid) == (1000, 1000)
    assert "bin/.wh.ls" in diff
    remove(api, container)


def test_userns_host_opts_out(remapped):
    api = remapped.api
    container = api.create(
        ["sh", "-c", "cat /proc/self/uid_map; exec sleep 30"], HostConfig={"UsernsMode": "host"}
    )
    api.start(container)
    pid = api.inspect(container)["State"]["Pid"]
    wait_for_sleep(pid)
    assert status_ids(pid) == ("0", "0")
    assert logs_of(api, container, 1).split() == [b"0", b"0", b"4294967295"]
    assert api.inspect(container)["HostConfig"]["UsernsMode"] == "host"
    remove(api, container)


@pytest.mark.parametrize(
    ("host_config", "message"),
    [
        (
            {"Privileged": True},
            "privileged mode is incompatible with user namespaces.  You must run the container "
            "in the host namespace when running privileged mode",
        ),
        (
            {"NetworkMode": "host"},
            "cannot share the host's network namespace when user namespaces are enabled",
        ),
        ({"UsernsMode": "private"}, "invalid USER mode: private"),
        ({"UsernsMode": "host", "Privileged": True}, None),
        ({"UsernsMode": "host", "NetworkMode": "host"}, None),
    ],
)
def test_privileged_and_host_network_need_userns_host(remapped, host_config, message):
    api = remapped.api
    before = {p.name for p in (api.daemon.data_root / "containers").iterdir()}
    reply = api.call("POST", "/containers/create", {"Image": "busybox", "HostConfig": host_config})
    if message is None:
        assert reply.status == 201, reply.body
        remove(api, reply.json()["Id"])
        return
    assert reply.status == 400, reply.body
    assert reply.json()["message"].startswith(message)
    assert {p.name for p in (api.daemon.data_root / "containers").iterdir()} == before


# --------------------------------------------------------------------------------------------
# Bind mounts and volumes
# --------------------------------------------------------------------------------------------


def test_host_bind_mounts_are_not_remapped(remapped, tmp_path):
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    (host_dir / "file").write_text("host's\n")
    api = remapped.api
    code, out, err = run(
        api,
        ["sh", "-c", "stat -c %u:%g /h /h/file; cat /h/file; touch /h/new || echo refused"],
        HostConfig={"Binds": [f"{host_dir}:/h"]},
    )
    assert code == 0, err
    # Root's files are nobody's to the remapped root, as with docker.
    assert out.decode().splitlines() == ["65534:65534", "65534:65534", "host's", "refused"]
    assert not (host_dir / "new").exists()


def test_named_volume_ownership_round_trips(remapped):
    api = remapped.api
    name = f"v{secrets.token_hex(6)}"
    script = "touch /v/by-root && mkdir /v/app && chown 1000:1000 /v/app && stat -c %u /v"
    code, out, err = run(api, ["sh", "-c", script], HostConfig={"Binds": [f"{name}:/v"]})
    assert (code, out) == (0, b"0\n"), err
    data = api.daemon.data_root / "volumes" / name / "_data"
    # Stored with the container's ids, as a volume of a container without remapping.
    assert (os.stat(data / "by-root").st_uid, os.stat(data / "app").st_uid) == (0, 1000)
    os.chown(data / "app", 1234, 1234)
    code, out, err = run(
        api,
        ["stat", "-c", "%u:%g %n", "/v/by-root", "/v/app"],
        HostConfig={"Binds": [f"{name}:/v"]},
    )
    assert out.decode().splitlines() == ["0:0 /v/by-root", "1234:1234 /v/app"], err
    assert api.call("DELETE", f"/volumes/{name}").status == 204


def test_anonymous_volumes_are_remapped_too(remapped):
    api = remapped.api
    container = api.create(["sh", "-c", "touch /anon/x && stat -c %u /anon"], Volumes={"/anon": {}})
    api.start(container)
    assert api.wait(container)["StatusCode"] == 0, api.logs(container, "stderr")
    assert api.logs(container) == b"0\n"
    (mount,) = api.inspect(container)["Mounts"]
    assert os.stat(Path(mount["Source"]) / "x").st_uid == 0
    remove(api, container)


def test_a_restart_mounts_it_all_again(remapped):
    api = remapped.api
    container = api.create(
        ["sh", "-c", "touch /v/run-$(ls /v | wc -l); exec sleep 30"],
        HostConfig={"Binds": ["again:/v"]},
    )
    api.start(container)
    wait_for_sleep(api.inspect(container)["State"]["Pid"])  # the first run has made its file
    assert api.call("POST", f"/containers/{container}/restart?t=0").status == 204
    pid = api.inspect(container)["State"]["Pid"]
    wait_for_sleep(pid)
    assert status_ids(pid) == (str(UID_BASE), str(GID_BASE))
    output = exec_output(api, container, ["sh", "-c", "stat -c %u /bin/busybox; ls /v | wc -l"])
    assert output.split() == ["0", "2"]  # the volume is there, with both runs' files
    remove(api, container)
    assert api.call("DELETE", "/volumes/again").status == 204


# --------------------------------------------------------------------------------------------
# Clean-up and reporting
# --------------------------------------------------------------------------------------------


def test_nothing_left_after_rm(remapped):
    api = remapped.api
    before = {p.name for p in (api.daemon.data_root / "containers").iterdir()}
    before_cgroups = cgroup_dirs(api)
    ran = api.create(["sh", "-c", "touch /x"], HostConfig={"Binds": ["scratch:/v"]})
    api.start(ran)
    assert api.wait(ran)["StatusCode"] == 0
    failed = api.create(["nosuchcommand"])
    assert api.call("POST", f"/containers/{failed}/start").status == 400
    remove(api, ran)
    remove(api, failed)
    assert_nothing_left(api, before, before_cgroups)
    assert api.call("DELETE", "/volumes/scratch").status == 204


def test_info_lists_userns_among_security_options(remapped):
    body = remapped.api.call("GET", "/info").json()
    assert body["SecurityOptions"] == ["name=seccomp,profile=default", "name=userns"]


@pytest.mark.interop
def test_docker_cli_runs_remapped_and_opts_out(remapped):
    def docker(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [docker_cli(), *args],
            env=docker_env(remapped.api.daemon.host),
            capture_output=True,
            text=True,
            timeout=60,
        )

    result = docker("run", "--rm", "busybox", "id", "-u")
    assert (result.returncode, result.stdout, result.stderr) == (0, "0\n", "")
    result = docker("run", "--rm", "busybox", "cat", "/proc/self/uid_map")
    assert result.stdout.split() == ["0", str(UID_BASE), str(SIZE)], result.stderr
    result = docker("run", "--rm", "--userns=host", "busybox", "cat", "/proc/self/uid_map")
    assert result.stdout.split() == ["0", "0", "4294967295"], result.stderr
    result = docker("run", "--rm", "--privileged", "busybox", "true")
    assert result.returncode == 125
    assert "privileged mode is incompatible with user namespaces" in result.stderr
    result = docker("run", "--rm", "--userns=host", "--privileged", "busybox", "id", "-u")
    assert (result.returncode, result.stdout) == (0, "0\n"), result.stderr
    options = docker("info", "--format", "{{.SecurityOptions}}").stdout.strip()
    assert options == "[name=seccomp,profile=default name=userns]"
    assert docker("ps", "-aq").stdout == ""


# --------------------------------------------------------------------------------------------
# The daemon's setting
# --------------------------------------------------------------------------------------------


@pytest.fixture
def dockremap() -> Iterator[None]:
    with restoring_dockremap():
        yield


def test_default_creates_dockremap_with_the_first_free_range(tmp_path, dockremap):
    base = tmp_path / "daemon"
    base.mkdir()
    (base / "config.toml").write_text("")
    daemon = start_remapped(base, "namespaces", "overlay", "--userns-remap", "default")
    try:
        assert (base / "subuid").read_text() == SUBUID + "dockremap:165536:65536\n"
        assert (base / "subgid").read_text() == SUBGID + "dockremap:100000:65536\n"
        api = Api.with_busybox(daemon)
        code, out, err = run(api, ["cat", "/proc/self/uid_map", "/proc/self/gid_map"])
        assert code == 0, err
        # daemon's ranges hold uids from 100000 and gids from 200000: dockremap's uids start
        # after those, its gids at 100000, below them.
        assert out.split() == [b"0", b"165536", b"65536", b"0", b"100000", b"65536"]
    finally:
        shut_down(daemon)


@pytest.mark.parametrize(
    ("flags", "config", "subuid", "message"),
    [
        (
            ["--userns-remap", "nosuchuser"],
            "",
            SUBUID,
            "userns-remap: user 'nosuchuser' does not exist (no passwd entry)",
        ),
        (
            ["--userns-remap", "bin"],
            "",
            SUBUID,
            "userns-remap: no subordinate uid range for user 'bin' in {subuid}",
        ),
        (["--userns-remap", "daemon"], "", "daemon:100000\n", "{subuid}:1: malformed line"),
        (["--userns-remap", "a:b:c"], "", SUBUID, "userns-remap: invalid value 'a:b:c'"),
        ([], "[daemon]\nuserns-remap = 1\n", SUBUID, "key 'daemon.userns-remap' must be a string"),
        ([], "[daemon]\nuserns_remap = 'default'\n", SUBUID, "unknown key 'daemon.userns_remap'"),
    ],
)
def test_bad_settings_stop_the_daemon_with_one_line(tmp_path, flags, config, subuid, message):
    (tmp_path / "subuid").write_text(subuid)
    (tmp_path / "subgid").write_text(SUBGID)
    (tmp_path / "config.toml").write_text(config)
    result = run_dockyard(
        [
            "daemon", "--data-root", str(tmp_path / "root"),
            "-H", f"unix://{tmp_path / 'dockyard.sock'}", "--config", str(tmp_path / "config.toml"),
            "--subuid-file", str(tmp_path / "subuid"), "--subgid-file", str(tmp_path / "subgid"),
            *flags,
        ]
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert message.format(subuid=tmp_path / "subuid") in line
    assert not (tmp_path / "dockyard.sock").exists()


def test_only_the_remapped_root_may_search_to_a_root_filesystem(remapped):
    # dockerd's rule: 0710 and the group of the containers' root, all the way down (runc
    # reaches the root filesystem by its path from inside the user namespace).
    api = remapped.api
    container = api.create(["true"])
    root = api.daemon.data_root
    for directory in (root, root / "containers", root / "containers" / container):
        info = directory.stat()
        assert (oct(stat.S_IMODE(info.st_mode)), info.st_uid, info.st_gid) == (
            oct(0o710),
            0,
            GID_BASE,
        ), directory
    remove(api, container)
