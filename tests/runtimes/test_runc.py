"""The ``runc`` runtime: its OCI bundle, its private runc root and what it leaves behind.

The contract every runtime keeps is checked by the conformance suite (``test_conformance.py``),
on runc as on the namespaces runtime; these cover what is runc's own: the ``config.json`` it
writes, where runc keeps its state, the terminal relay and the ``runc exec`` stand-in. The daemon tests need root and the runc binary; elsewhere they skip.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from dockyard.core.errors import DriverUnavailable
from dockyard.core.interfaces import (
    DEFAULT_CAPABILITIES,
    BindMount,
    ContainerSpec,
    IdMapping,
    LaunchError,
    Mount,
    ProcessSpec,
    Resources,
)
from dockyard.plugins.runtimes.runc import plugin
from dockyard.plugins.runtimes.runc.bundle import bundle_config, process_config
from dockyard.plugins.runtimes.runc.launch import exit_code_for, last_error, launch
from tests.conftest import Daemon, plugin_env
from tests.containers.engine_api import Api, frames
from tests.runtimes.conftest import RUNC, needs_runc


def make_spec(**fields: Any) -> ContainerSpec:
    process = ProcessSpec(
        args=("sh", "-c", "true"),
        env=("PATH=/bin", "A=b"),
        cwd="/work",
        uid=1000,
        gid=1000,
        additional_gids=(10,),
        capabilities=DEFAULT_CAPABILITIES,
        **fields.pop("process", {}),
    )
    return ContainerSpec(
        id="c0ffee",
        rootfs=(Mount("overlay", "overlay", ("lowerdir=/l", "upperdir=/u", "workdir=/w")),),
        process=process,
        hostname="c0ffee",
        state_dir="/state/c0ffee",
        etc_files=(("/state/c0ffee/hosts", "/etc/hosts"),),
        **fields,
    )


# --------------------------------------------------------------------------------------------
# The bundle (no runc needed)
# --------------------------------------------------------------------------------------------


def test_bundle_carries_the_process_root_and_limits():
    spec = make_spec(
        read_only_rootfs=True,
        mounts=(BindMount("/srv/a", "/data/inner", True), BindMount("/srv/b", "/data")),
        resources=Resources(memory_bytes=64 << 20, nano_cpus=1_500_000_000, pids_limit=20),
        process={"terminal": True, "console_size": (30, 100)},
    )
    config = bundle_config(spec, "dockyard")
    assert config["root"] == {"path": "/state/c0ffee/rootfs", "readonly": True}
    assert config["hostname"] == "c0ffee"
    process = config["process"]
    assert process["args"] == ["sh", "-c", "true"] and process["cwd"] == "/work"
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10]}
    assert process["terminal"] is True
    assert process["consoleSize"] == {"height": 30, "width": 100}
    capabilities = process["capabilities"]
    assert capabilities["bounding"] == capabilities["effective"] == list(DEFAULT_CAPABILITIES)
    assert capabilities["inheritable"] == capabilities["ambient"] == []  # as docker, see bundle
    assert process["noNewPrivileges"] is True
    linux = config["linux"]
    # Absolute: below each hierarchy's root, where the cleanup and the tests look.
    assert linux["cgroupsPath"] == "/dockyard/c0ffee"
    assert linux["resources"]["memory"]["limit"] == 64 << 20
    assert linux["resources"]["cpu"] == {"quota": 150_000, "period": 100_000}
    assert linux["resources"]["pids"] == {"limit": 20}
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    kinds = [n["type"] for n in linux["namespaces"]]
    assert {"pid", "mount", "ipc", "uts", "network"} <= set(kinds)
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    by_destination = {m["destination"]: m for m in config["mounts"]}
    assert by_destination["/sys"]["options"][-1] == "ro"
    assert by_destination["/dev/pts"]["type"] == "devpts"
    assert by_destination["/etc/hosts"]["source"] == "/state/c0ffee/hosts"
    binds = [m["destination"] for m in config["mounts"] if m["type"] == "bind"]
    assert binds.index("/data") < binds.index("/data/inner")  # parents first
    assert "ro" in by_destination["/data/inner"]["options"]
    assert "ro" not in by_destination["/data"]["options"]


def test_privileged_host_network_bundle():
    spec = make_spec(privileged=True, network_mode="host")
    config = bundle_config(spec, "/custom/parent/")
    linux = config["linux"]
    assert linux["cgroupsPath"] == "/custom/parent/c0ffee"
    kinds = [n["type"] for n in linux["namespaces"]]
    assert "network" not in kinds and "pid" in kinds
    assert "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sysfs = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sysfs["options"]
    assert "CAP_SYS_ADMIN" in config["process"]["capabilities"]["bounding"]


def test_user_namespace_bundle_has_the_maps():
    spec = make_spec(
        uid_mappings=(IdMapping(0, 100000, 65536),),
        gid_mappings=(IdMapping(0, 200000, 1000), IdMapping(1000, 300000, 10)),
    )
    linux = bundle_config(spec, "dockyard")["linux"]
    assert linux["namespaces"][0] == {"type": "user"}
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert linux["gidMappings"] == [
        {"containerID": 0, "hostID": 200000, "size": 1000},
        {"containerID": 1000, "hostID": 300000, "size": 10},
    ]
    assert "uidMappings" not in bundle_config(make_spec(), "dockyard")["linux"]


def test_a_root_the_remapped_root_cannot_reach_is_refused_before_anything_is_made(tmp_path):
    # pytest's temporary tree is root's alone (0700): runc, which reaches the root filesystem
    # by its path from inside the user namespace, could not; the daemon tests show it works
    # below a directory anyone may search.
    spec = attrs.evolve(
        make_spec(),
        state_dir=str(tmp_path),
        uid_mappings=(IdMapping(0, 100000, 65536),),
        gid_mappings=(IdMapping(0, 100000, 65536),),
    )
    blocked = [str(p) for p in (*reversed(tmp_path.parents), tmp_path) if not p.stat().st_mode & 1]
    with pytest.raises(LaunchError) as refused:
        launch(spec, (0, 1, 2))
    assert blocked
    assert str(refused.value).startswith(
        f"{', '.join(blocked)} {'do' if len(blocked) > 1 else 'does'} not let the remapped root "
        "(uid 100000) search"
    )
    assert "allow o+x there" in str(refused.value)
    assert refused.value.exit_code == 125
    assert list(tmp_path.iterdir()) == []


def test_exec_process_needs_no_bundle():
    process = process_config(ProcessSpec(args=("id",), env=()), privileged=False)
    assert process["args"] == ["id"] and process["cwd"] == "/"
    assert process["env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert "consoleSize" not in process


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (
            'runc create failed: unable to start container process: exec: "nosuch": '
            "executable file not found in $PATH",
            127,
        ),
        (
            'runc create failed: unable to start container process: exec: "/no/such": '
            "stat /no/such: no such file or directory",
            127,
        ),
        (
            'runc create failed: unable to start container process: exec: "/etc": permission denied',
            126,
        ),
        (
            'exec failed: unable to start container process: exec: "nosuch": '
            "executable file not found in $PATH",
            127,
        ),
        # A missing bind source is not a missing command.
        (
            "runc create failed: unable to start container process: error during container init: "
            'error mounting "/gone" to rootfs at "/data": stat /gone: no such file or directory',
            125,
        ),
    ],
)
def test_runc_errors_map_to_docker_exit_codes(message, code):
    assert exit_code_for(message) == code


def test_last_error_reads_runcs_json_log(tmp_path):
    log = tmp_path / "runc.log"
    log.write_text(
        '{"level":"warning","msg":"ignored"}\nnot json\n{"level":"error","msg":"first"}\n'
        '{"level":"error","msg":"the last word"}\n'
    )
    assert last_error(str(log), "fallback") == "the last word"
    # Only what this call logged counts: the log holds every earlier call's too.
    assert last_error(str(log), "fallback", offset=log.stat().st_size) == "fallback"
    assert last_error(str(tmp_path / "missing.log"), "fallback") == "fallback"


def test_check_says_when_the_binary_is_missing(monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("without root the check stops at root")
    monkeypatch.setattr(plugin, "_CONFIGURED_BINARY", "runc-that-is-not-there")
    with pytest.raises(DriverUnavailable, match="the runc binary is not installed"):
        plugin.check()


# --------------------------------------------------------------------------------------------
# A daemon on runc
# --------------------------------------------------------------------------------------------


@pytest.fixture
def api(start_daemon: Callable[..., Daemon]) -> Api:
    return Api.with_busybox(start_daemon("--runtime", "runc"))


def runc_root(api: Api) -> Path:
    return api.daemon.data_root / "runtimes" / "runc" / "runc-root"


def container_cgroups(container: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/*/dockyard/{container}") + glob.glob(
        f"/sys/fs/cgroup/dockyard/{container}"
    )


def exec_in(api: Api, container: str, cmd: list[str]) -> tuple[int, bytes, bytes]:
    """Run an exec to its end: its exit code, its stdout and its stderr.

    The two streams come through separate pipes, so only the order within
    each is defined.
    """
    created = api.call(
        "POST",
        f"/containers/{container}/exec",
        {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True},
    )
    exec_id = created.json()["Id"]
    output = api.call("POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": False}).body
    code = api.call("GET", f"/exec/{exec_id}/json").json()["ExitCode"]
    received = frames(output)
    stdout = b"".join(payload for stream, payload in received if stream == 1)
    stderr = b"".join(payload for stream, payload in received if stream == 2)
    return code, stdout, stderr


@needs_runc
def test_state_in_a_private_runc_root_and_nothing_left_after_rm(api):
    container = api.create(["sleep", "30"])
    api.start(container)
    state_dir = api.daemon.data_root / "containers" / container
    state = json.loads((runc_root(api) / container / "state.json").read_text())
    assert state["init_process_pid"] == api.inspect(container)["State"]["Pid"]
    # Not in the system runc's root (where docker's or anyone's runc would look).
    listed = subprocess.run(
        [str(RUNC), "list", "-q"], capture_output=True, text=True
    ).stdout.split()
    assert container not in listed
    # The bundle runc ran.
    config = json.loads((state_dir / "config.json").read_text())
    assert config["root"]["path"] == str(state_dir / "rootfs")
    assert config["process"]["args"] == ["sleep", "30"]
    assert config["hostname"] == container[:12]
    # The root filesystem is mounted in the supervisor's mount namespace only.
    with open("/proc/self/mountinfo") as mountinfo:
        assert str(state_dir) not in mountinfo.read()
    cgroups = container_cgroups(container)
    assert any(path.startswith("/sys/fs/cgroup/memory/") for path in cgroups) or any(
        path.startswith("/sys/fs/cgroup/dockyard/") for path in cgroups
    )
    assert api.call("DELETE", f"/containers/{container}?force=1").status == 204
    assert not (runc_root(api) / container).exists()
    assert not state_dir.exists()
    assert container_cgroups(container) == []


@needs_runc
def test_exec_files_are_gone_once_it_started_or_failed(api):
    # (Exit codes, signals and failures of exec are the conformance suite's.)
    container = api.create(["sleep", "30"])
    api.start(container)
    assert exec_in(api, container, ["sh", "-c", "echo out; echo err >&2; exit 7"]) == (
        7,
        b"out\n",
        b"err\n",
    )
    # As moby does, a failed exec start is reported on the exec's stdout stream.
    code, stdout, _stderr = exec_in(api, container, ["nosuchcommand"])
    assert code == 126 and b"executable file not found in $PATH" in stdout  # as dockerd
    # Each exec's process.json, pid file and log are gone once it started or failed.
    state_dir = api.daemon.data_root / "containers" / container
    assert sorted(p.name for p in state_dir.glob("exec-*")) == []
    api.call("DELETE", f"/containers/{container}?force=1")


@needs_runc
def test_terminal_is_the_containers_controlling_tty(api):
    # tty_nr (field 7 of /proc/PID/stat) is set only for a controlling terminal: runc's own
    # pty gives job control and ^C, which a pty handed down as plain stdio would not.
    script = "tty; stty size; cut -d' ' -f7 /proc/$$/stat; cut -d' ' -f6 /proc/$$/stat"
    container = api.create(["sh", "-c", script], Tty=True, HostConfig={"ConsoleSize": [30, 100]})
    api.start(container)
    assert api.wait(container)["StatusCode"] == 0
    reply = api.call("GET", f"/containers/{container}/logs?stdout=1")
    lines = reply.body.decode().split("\r\n")
    assert lines[0] == "/dev/pts/0"
    assert lines[1] == "30 100"
    assert int(lines[2]) != 0
    assert lines[3] == "1"  # a session of its own, led by the container's init
    # The relay process has gone with the container.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _supervisor_children(api, container):
        time.sleep(0.05)
    assert _supervisor_children(api, container) == []


def _supervisor_children(api: Api, container: str) -> list[int]:
    pid_file = api.daemon.data_root / "containers" / container / "supervisor.pid"
    try:
        supervisor = int(pid_file.read_text())
        children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text()
    except (OSError, ValueError):
        return []
    return [int(pid) for pid in children.split()]


@needs_runc
def test_selected_by_config_with_its_own_root_and_binary(start_daemon, tmp_path):
    root = tmp_path / "my-runc-root"
    config = f'[daemon]\nruntime = "runc"\n\n[runtimes.runc]\nbinary = "{RUNC}"\nroot = "{root}"\n'
    api = Api.with_busybox(start_daemon(config=config))
    container = api.create(["sleep", "30"])
    api.start(container)
    assert (root / container / "state.json").is_file()
    assert not runc_root(api).exists()
    api.call("DELETE", f"/containers/{container}?force=1")
    assert list(root.iterdir()) == []


@needs_runc
def test_a_configured_binary_that_is_missing_stops_the_daemon(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[daemon]\nruntime = "runc"\n\n[runtimes.runc]\nbinary = "/no/such/runc"\n')
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "daemon", "--config", str(config),
         "--data-root", str(tmp_path / "root"), "-H", f"unix://{tmp_path}/d.sock"],
        capture_output=True, text=True, timeout=60, env=plugin_env([]),
    )  # fmt: skip
    assert result.returncode != 0
    assert "the runc binary '/no/such/runc' is not installed" in result.stderr


@needs_runc
def test_exec_terminal_starts_at_its_size_and_follows_a_resize(api):
    container = api.create(["sleep", "30"])
    api.start(container)
    created = api.call(
        "POST",
        f"/containers/{container}/exec",
        {
            "Cmd": ["sh", "-c", "stty size; sleep 1; stty size"],
            "Tty": True,
            "AttachStdout": True,
            "ConsoleSize": [24, 80],
        },
    )
    exec_id = created.json()["Id"]
    replies: list[bytes] = []
    starter = threading.Thread(
        target=lambda: replies.append(
            api.call("POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": True}).body
        )
    )
    starter.start()
    deadline = time.monotonic() + 10
    while not api.call("GET", f"/exec/{exec_id}/json").json()["Running"]:
        assert time.monotonic() < deadline, "the exec never ran"
        time.sleep(0.02)
    # runc hears of it by SIGWINCH only with the pty as its controlling terminal.
    assert api.call("POST", f"/exec/{exec_id}/resize?h=50&w=132").status in (200, 201)
    starter.join(15)
    # Line ends as they come: runc clears ONLCR on the container's terminal while it starts
    # relaying, so a line printed before that may carry one CR more than those after.
    lines = replies[0].replace(b"\r", b"").split(b"\n") if replies else []
    assert lines[:2] == [b"24 80", b"50 132"]
    api.call("DELETE", f"/containers/{container}?force=1")


def test_a_daemon_made_network_namespace_is_not_in_the_bundle_and_runc_runs_inside_it():
    from dockyard.plugins.runtimes.runc.launch import NSENTER, Runc

    spec = ContainerSpec(
        id="c0ffee", rootfs=(), process=ProcessSpec(args=("true",)), netns="/run/x/netns/c0ffee"
    )
    namespaces = bundle_config(spec, "/dockyard")["linux"]["namespaces"]
    assert "network" not in [n["type"] for n in namespaces]
    command = Runc("runc", "", "").command("create", "c0ffee", netns=spec.netns)
    assert command[:3] == [NSENTER, "--net=/run/x/netns/c0ffee", "--"]
