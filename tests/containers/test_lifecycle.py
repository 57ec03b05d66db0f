"""The container lifecycle through the Engine API, on the real namespaces runtime."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.parse
from pathlib import Path

import pytest

from dockyard.daemon.containers.etc_files import hosts_file
from tests.conftest import http_request, restarted
from tests.containers.engine_api import Api, frames


def cgroup_dirs(api: Api) -> set[Path]:
    return {p for p in Path("/sys/fs/cgroup").glob(f"*/{api.cgroup_parent}/*") if p.is_dir()}


def assert_nothing_left(api, before_dirs: set[str], before_cgroups: set[Path]) -> None:
    """No container state dir, snapshot, mount or cgroup survives a failed or removed container."""
    root = api.daemon.data_root
    assert {p.name for p in (root / "containers").iterdir()} == before_dirs
    snapshots = [p for p in (root / "storage").rglob("*") if "container-" in p.name]
    assert snapshots == []
    with open("/proc/self/mountinfo") as mountinfo:
        assert str(root / "containers") not in mountinfo.read()
    assert cgroup_dirs(api) - before_cgroups == set()


def test_run_echo_in_its_own_namespaces(api):
    code, out, err = api.run(
        [
            "sh",
            "-c",
            "echo pid $$; hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /sys/class/net",
        ]
    )
    assert code == 0, err
    lines = out.decode().splitlines()
    assert lines[0] == "pid 1"
    assert len(lines[1]) == 12  # the short container id
    assert lines[2].startswith("sh -c")
    assert lines[3:] == ["lo"]  # network "none": loopback only


def test_etc_files_are_the_containers_own(api):
    # The daemon's files for this container, never the host's, at the usual paths.
    container = api.create(["sh", "-c", "cat /etc/hostname /etc/hosts"])
    api.start(container)
    assert api.wait(container)["StatusCode"] == 0, api.logs(container, "stderr")
    inspected = api.inspect(container)
    hostname = inspected["Config"]["Hostname"]
    # Network "none": no address, so no line names the container (as with dockerd).
    assert api.logs(container).decode() == f"{hostname}\n" + hosts_file(hostname)
    state_dir = api.daemon.data_root / "containers" / container
    assert inspected["HostsPath"] == str(state_dir / "hosts")
    assert inspected["HostnamePath"] == str(state_dir / "hostname")
    assert inspected["ResolvConfPath"] == str(state_dir / "resolv.conf")


def test_host_network_shares_the_hosts_interfaces_and_name(api):
    script = "ls /sys/class/net; hostname; echo 1.2.3.4 written-inside >> /etc/hosts && echo ok"
    code, out, err = api.run(["sh", "-c", script], HostConfig={"NetworkMode": "host"})
    assert code == 0, err
    lines = out.decode().splitlines()
    assert lines[:-2] == sorted(os.listdir("/sys/class/net"))
    assert lines[-2:] == [socket.gethostname(), "ok"]
    # The container wrote to a copy of the host's /etc/hosts, never to the host's.
    assert "written-inside" not in Path("/etc/hosts").read_text()
    assert (
        api.inspect(api.create(["true"], HostConfig={"NetworkMode": "host"}))["HostConfig"][
            "NetworkMode"
        ]
        == "host"
    )


def test_exit_codes_and_stderr(api):
    assert api.run(["sh", "-c", "echo oops >&2; exit 42"])[:3:2] == (42, b"oops\n")
    # A signal's death is 128 + its number (pid 1 ignores its own signals, so a child dies).
    code, _, _ = api.run(["sh", "-c", "sh -c 'kill -9 $$'; exit $?"])
    assert code == 137


@pytest.mark.parametrize(
    ("cmd", "status", "message"),
    [
        (["nosuchcommand"], 127, 'exec: "nosuchcommand": executable file not found in $PATH'),
        (["/no/such/file"], 127, "no such file or directory"),
        (["/etc"], 126, "permission denied"),
    ],
)
def test_start_errors_map_to_docker_codes(api, cmd, status, message):
    container = api.create(cmd)
    reply = api.call("POST", f"/containers/{container}/start")
    assert reply.status == 400
    assert message in reply.json()["message"]
    state = api.inspect(container)["State"]
    assert state["ExitCode"] == status and message in state["Error"]


def test_autoremove_after_failed_start_completes_the_removed_wait(api):
    before = {p.name for p in (api.daemon.data_root / "containers").iterdir()}
    before_cgroups = cgroup_dirs(api)
    container = api.create(["nosuchcommand"], HostConfig={"AutoRemove": True})
    assert api.call("POST", f"/containers/{container}/start").status == 400
    assert (
        api.wait(container, "removed") == {"StatusCode": 127, "Error": None}
        or api.call("GET", f"/containers/{container}/json").status == 404
    )
    assert api.call("GET", f"/containers/{container}/json").status == 404
    assert_nothing_left(api, before, before_cgroups)


@pytest.mark.parametrize(
    ("body", "query", "status", "message"),
    [
        ({"Image": "nothere"}, "", 404, "No such image: nothere:latest"),
        ({"Image": "busybox", "Cmd": [], "Entrypoint": [""]}, "", 400, "No command specified"),
        (
            {"Image": "busybox", "HostConfig": {"Memory": 1024}},
            "",
            400,
            "Minimum memory limit allowed is 6MB",
        ),
        (
            {"Image": "busybox", "HostConfig": {"Binds": ["/no/such/dir:/data"]}},
            "",
            400,
            "bind source path does not exist: /no/such/dir",
        ),
        (
            {"Image": "busybox", "User": "nobody-at-all"},
            "",
            400,
            "unable to find user nobody-at-all: no matching entries in passwd file",
        ),
        (
            {"Image": "busybox", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}},
            "",
            400,
            "invalid restart policy 'sometimes'",
        ),
        (
            {"Image": "busybox", "HostConfig": {"CapAdd": ["CAP_FLY"]}},
            "",
            400,
            "invalid capability: CAP_FLY",
        ),
        ({"Image": "busybox"}, "?name=bad%20name", 400, "Invalid container name (bad name)"),
    ],
)
def test_bad_create_requests_are_refused_and_leave_nothing(api, body, query, status, message):
    before = {p.name for p in (api.daemon.data_root / "containers").iterdir()}
    before_cgroups = cgroup_dirs(api)
    reply = api.call("POST", f"/containers/create{query}", body)
    assert reply.status == status, reply.body
    assert message in reply.json()["message"]
    assert reply.headers["content-type"] == "application/json"
    assert_nothing_left(api, before, before_cgroups)


def test_malformed_json_is_a_400(api):
    reply = api.daemon.request(
        "POST", "/v1.41/containers/create", {"Content-Type": "application/json"}, b"{not json"
    )
    assert reply.status == 400 and reply.json()["message"].startswith("invalid JSON")


def test_name_conflict_is_409(api):
    first = api.create(["true"], name="taken")
    reply = api.call("POST", "/containers/create?name=taken", {"Image": "busybox", "Cmd": ["true"]})
    assert reply.status == 409
    assert reply.json()["message"] == (
        f'Conflict. The container name "/taken" is already in use by container "{first}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    )


def test_default_seccomp_policy_and_its_lifting(api):
    script = "grep Seccomp: /proc/self/status; busybox unshare -U true 2>/dev/null; echo $?"
    assert api.run(["sh", "-c", script])[1].split() == [b"Seccomp:", b"2", b"1"]
    for host_config, state in (
        ({"SecurityOpt": ["seccomp=unconfined"]}, b"0"),  # no filter at all
        ({"Privileged": True}, b"0"),
        ({"CapAdd": ["SYS_ADMIN"]}, b"2"),  # filtered, but unshare is the capability's
    ):
        assert api.run(["sh", "-c", script], HostConfig=host_config)[1].split() == [
            b"Seccomp:",
            state,
            b"0",
        ], host_config
    # An exec gets the container's policy.
    container = api.create(["sleep", "30"])
    api.start(container)
    assert api.exec(container, ["sh", "-c", script])[1].split() == [b"Seccomp:", b"2", b"1"]
    api.call("DELETE", f"/containers/{container}?force=1")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["seccomp=/etc/profile.json"], "seccomp profiles are not supported"),
        (["apparmor=docker-default"], "apparmor profiles are not supported"),
        (["no-new-privileges=maybe"], 'invalid --security-opt 2: "no-new-privileges=maybe"'),
        (["bogus"], 'invalid --security-opt 2: "bogus"'),
    ],
)
def test_unsupported_security_options_are_refused(api, options, message):
    before = {p.name for p in (api.daemon.data_root / "containers").iterdir()}
    reply = api.call(
        "POST", "/containers/create", {"Image": "busybox", "HostConfig": {"SecurityOpt": options}}
    )
    assert reply.status == 400 and message in reply.json()["message"]
    assert {p.name for p in (api.daemon.data_root / "containers").iterdir()} == before


def test_home_comes_from_the_users_passwd_entry(api):
    assert api.run(["sh", "-c", "echo $HOME"])[1] == b"/root\n"
    assert api.run(["sh", "-c", "echo $HOME"], User="4242")[1] == b"/\n"
    assert api.run(["sh", "-c", "echo $HOME"], Env=["HOME=/mine"])[1] == b"/mine\n"
    container = api.create(["sleep", "30"])
    api.start(container)
    script = "echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd"
    assert api.exec(container, ["sh", "-c", script])[0] == 0
    assert api.exec(container, ["sh", "-c", "echo $HOME"])[1] == b"/root\n"
    assert api.exec(container, ["sh", "-c", "echo $HOME"], User="app")[1] == b"/home/app\n"
    api.call("DELETE", f"/containers/{container}?force=1")


def test_env_workdir_entrypoint_and_user_merge_like_docker(api):
    code, out, _ = api.run(
        ["-c", "echo $GREETING $PATH; pwd; id -u; id -g"],
        Entrypoint=["/bin/sh"],
        Env=["GREETING=hi"],
        WorkingDir="/tmp",
        User="1000:2000",
    )
    assert code == 0
    assert out.decode().splitlines() == ["hi /bin", "/tmp", "1000", "2000"]
    code, out, _ = api.run(["id", "-un"], User="root")
    assert out == b"root\n"


def test_exec_user_is_looked_up_in_the_running_container(api, tmp_path):
    container = api.create(["sleep", "30"])
    api.start(container)
    # A user the container added itself, after it started.
    script = "echo 'late:x:4321:4322::/:/bin/sh' >> /etc/passwd"
    assert api.exec(container, ["sh", "-c", script])[0] == 0
    late = b"uid=4321(late) gid=4322 groups=4322\n"  # docker adds the primary group
    assert api.exec(container, ["id"], User="late") == (0, late, b"")
    # The lookup leaves the container's filesystem whole: writes that copy a directory up
    # from the image still work afterwards.
    assert api.exec(container, ["mkdir", "/tmp/after-exec"]) == (0, b"", b"")
    # An image's /etc/passwd pointing outside its root is resolved inside it, never to a
    # host file.
    host_passwd = tmp_path / "passwd"
    host_passwd.write_text("hostonly:x:4242:4242::/:/bin/sh\n")
    escape = "../" * 12 + str(host_passwd).lstrip("/")
    assert api.exec(container, ["busybox", "ln", "-sf", escape, "/etc/passwd"])[0] == 0
    # As dockerd: the exec is created, and its start fails with 126 and the reason.
    code, out, _ = api.exec(container, ["id"], User="hostonly")
    assert (code, out) == (
        126,
        b"unable to find user hostonly: no matching entries in passwd file\r\n",
    )
    api.call("DELETE", f"/containers/{container}?force=1")


def test_capabilities_no_new_privs_and_privileged(api):
    code, out, _ = api.run(["sh", "-c", "grep -E 'CapEff|CapBnd|NoNewPrivs' /proc/self/status"])
    status = dict(line.split(":\t") for line in out.decode().splitlines())
    assert status["CapEff"] == "00000000a80425fb"  # docker's default set
    assert status["CapBnd"] == "00000000a80425fb"
    assert status["NoNewPrivs"] == "0"  # as docker: setuid programs work unless asked
    for option in ("no-new-privileges", "no-new-privileges=true", "no-new-privileges:true"):
        code, out, _ = api.run(
            ["grep", "NoNewPrivs", "/proc/self/status"], HostConfig={"SecurityOpt": [option]}
        )
        assert out.split() == [b"NoNewPrivs:", b"1"], option
    code, out, _ = api.run(
        ["sh", "-c", "grep CapEff /proc/self/status"],
        HostConfig={"CapDrop": ["ALL"], "CapAdd": ["NET_ADMIN"]},
    )
    assert out.decode().split()[1] == "0000000000001000"
    _code, out, _ = api.run(
        [
            "sh",
            "-c",
            "grep CapEff /proc/self/status; cat /proc/kcore >/dev/null && echo kcore-readable",
        ],
        HostConfig={"Privileged": True},
    )
    assert int(out.decode().split()[1], 16) >= 0x1FFFFFFFFF


def test_masked_and_read_only_paths(api):
    script = "grep -c ' /proc/keys ' /proc/self/mountinfo; grep -c ' /proc/sys .*ro,' /proc/self/mountinfo"
    code, out, err = api.run(["sh", "-c", script + "; touch /x && echo rw-root"])
    assert out.decode().split() == ["1", "1", "rw-root"]  # masked, read-only, root writable
    # systempaths=unconfined lifts both, as docker's does.
    code, out, err = api.run(
        ["sh", "-c", script], HostConfig={"SecurityOpt": ["systempaths=unconfined"]}
    )
    assert out.decode().split() == ["0", "0"], err
    _code, out, _err = api.run(
        ["sh", "-c", "touch /x || echo read-only-root"], HostConfig={"ReadonlyRootfs": True}
    )
    assert out == b"read-only-root\n"


def test_bind_mounts_and_named_volumes(api, tmp_path):
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    (host_dir / "in.txt").write_text("from host\n")
    code, out, _ = api.run(
        [
            "sh",
            "-c",
            "cat /data/in.txt; echo from container > /data/out.txt; touch /ro/x || echo ro-refused",
        ],
        HostConfig={"Binds": [f"{host_dir}:/data", f"{host_dir}:/ro:ro"]},
    )
    assert code == 0 and out.decode().splitlines() == ["from host", "ro-refused"]
    assert (host_dir / "out.txt").read_text() == "from container\n"

    assert api.call("POST", "/volumes/create", {"Name": "keep"}).status == 201
    api.run(["sh", "-c", "echo persisted > /v/file"], HostConfig={"Binds": ["keep:/v"]})
    code, out, _ = api.run(["cat", "/v/file"], HostConfig={"Binds": ["keep:/v"]})
    assert out == b"persisted\n"
    volume = api.call("GET", "/volumes/keep").json()
    assert volume["Name"] == "keep" and volume["Driver"] == "local"
    user = api.create(["sleep", "30"], HostConfig={"Binds": ["keep:/v"]})
    busy = api.call("DELETE", "/volumes/keep")
    assert busy.status == 409 and "volume is in use" in busy.json()["message"]
    api.call("DELETE", f"/containers/{user}?force=1")
    for container in api.call("GET", "/containers/json?all=1").json():
        api.call("DELETE", f"/containers/{container['Id']}")
    assert api.call("DELETE", "/volumes/keep").status == 204
    assert [v["Name"] for v in api.call("GET", "/volumes").json()["Volumes"]] == []


def test_stop_kill_and_their_status_codes(api):
    container = api.create(
        ["sh", "-c", "trap 'echo term; exit 9' TERM; while true; do sleep 0.1; done"]
    )
    api.start(container)
    reply = api.call("POST", f"/containers/{container}/stop?t=5")
    assert reply.status == 204
    state = api.inspect(container)["State"]
    assert state["ExitCode"] == 9 and state["Status"] == "exited"
    assert api.call("POST", f"/containers/{container}/stop").status == 304
    refused = api.call("POST", f"/containers/{container}/kill")
    assert refused.status == 409 and "is not running" in refused.json()["message"]
    sleeper = api.create(["sleep", "60"])
    api.start(sleeper)
    assert api.call("POST", f"/containers/{sleeper}/kill?signal=NOPE").status == 400
    assert api.call("POST", f"/containers/{sleeper}/kill?signal=SIGKILL").status == 204
    assert api.wait(sleeper)["StatusCode"] == 137


def test_remove_running_needs_force(api):
    container = api.create(["sleep", "60"])
    api.start(container)
    reply = api.call("DELETE", f"/containers/{container}")
    assert (
        reply.status == 409 and "You cannot remove a running container" in reply.json()["message"]
    )
    assert api.call("DELETE", f"/containers/{container}?force=1").status == 204
    assert api.call("GET", f"/containers/{container}/json").status == 404


def test_image_in_use_cannot_be_deleted(api):
    api.create(["true"])
    reply = api.call("DELETE", "/images/busybox")
    assert reply.status == 409 and "is using its referenced image" in reply.json()["message"]


def test_logs_tail_timestamps_and_follow_ends_at_exit(api):
    container = api.create(
        ["sh", "-c", "for i in 1 2 3; do echo out$i; echo err$i >&2; done; sleep 0.5; echo last"]
    )
    api.start(container)
    body = api.call("GET", f"/containers/{container}/logs?stdout=1&stderr=1&follow=1").body
    got = [(kind, data.decode()) for kind, data in frames(body)]
    assert (1, "out1\n") in got and (2, "err3\n") in got and got[-1] == (1, "last\n")
    tail = frames(
        api.call("GET", f"/containers/{container}/logs?stdout=1&tail=2&timestamps=1").body
    )
    assert [data.decode().split(" ", 1)[1] for _, data in tail] == ["out3\n", "last\n"]
    assert api.call("GET", f"/containers/{container}/logs").status == 400


def test_logs_survive_binary_output_exactly(api):
    container = api.create(["cat", "/bin/busybox"])
    api.start(container)
    api.wait(container)
    data = b"".join(
        p for _, p in frames(api.call("GET", f"/containers/{container}/logs?stdout=1").body)
    )
    assert data == Path("/bin/busybox").read_bytes()


def test_restart_policy_on_failure_counts(api):
    container = api.create(
        ["sh", "-c", "exit 3"],
        HostConfig={"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}},
    )
    api.start(container)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        info = api.inspect(container)
        if info["RestartCount"] == 2 and info["State"]["Status"] == "exited":
            break
        time.sleep(0.1)
    assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 3


def test_memory_limit_oom_kill_is_reported(api):
    container = api.create(
        ["sh", "-c", "x=a; while true; do x=$x$x; done"],
        HostConfig={"Memory": 16 * 1024 * 1024},
    )
    api.start(container)
    assert api.wait(container)["StatusCode"] == 137
    assert api.inspect(container)["State"]["OOMKilled"] is True


def test_pids_limit_caps_forks(api):
    _code, _out, err = api.run(
        ["sh", "-c", "for i in $(seq 1 30); do sleep 5 & done; echo forked"],
        HostConfig={"PidsLimit": 10},
    )
    assert b"can't fork" in err or b"Resource temporarily unavailable" in err
    unlimited = api.run(["sh", "-c", "for i in $(seq 1 30); do sleep 1 & done; wait; echo ok"])
    assert unlimited[1] == b"ok\n" and unlimited[2] == b""


def test_pause_unpause_top_stats_rename(api):
    container = api.create(["sh", "-c", "while true; do echo x > /dev/null; done"], name="busy")
    api.start(container)
    assert api.call("POST", "/containers/busy/pause").status == 204
    assert api.inspect(container)["State"]["Status"] == "paused"
    assert api.call("POST", "/containers/busy/unpause").status == 204
    top = api.call("GET", "/containers/busy/top").json()
    assert top["Titles"][1] == "PID" and any("while true" in row[-1] for row in top["Processes"])
    assert {row[0] for row in top["Processes"]} == {"root"}  # names from the image's passwd
    assert api.call("GET", "/containers/busy/top?ps_args=-ef").status == 200
    # Other options go to the host's ps, as in dockerd.
    aux = api.call("GET", "/containers/busy/top?ps_args=aux").json()
    assert aux["Titles"][:2] == ["USER", "PID"] and aux["Titles"][-1] == "COMMAND"
    assert any("while true" in row[-1] for row in aux["Processes"])
    stats = api.call("GET", "/containers/busy/stats?stream=0").json()
    assert stats["memory_stats"]["usage"] > 0 and stats["pids_stats"]["current"] >= 1
    assert (
        stats["cpu_stats"]["cpu_usage"]["total_usage"]
        >= stats["precpu_stats"]["cpu_usage"]["total_usage"]
        > 0
    )
    assert api.call("POST", "/containers/busy/rename?name=renamed").status == 204
    assert api.inspect("renamed")["Name"] == "/renamed"
    api.call("DELETE", "/containers/renamed?force=1")


def test_list_filters_and_prune(api):
    done = api.create(["true"], name="done", Labels={"team": "a"})
    api.start(done)
    api.wait(done)
    running = api.create(["sleep", "30"], name="running")
    api.start(running)

    def names(query):
        return sorted(c["Names"][0] for c in api.call("GET", "/containers/json?" + query).json())

    assert names("") == ["/running"]
    assert names("all=1") == ["/done", "/running"]
    assert names("all=1&filters=" + urllib.parse.quote(json.dumps({"status": ["exited"]}))) == [
        "/done"
    ]
    assert names(
        "all=1&filters=" + urllib.parse.quote(json.dumps({"label": {"team=a": True}}))
    ) == ["/done"]
    summary = api.call("GET", "/containers/json?all=1").json()[0]
    assert {"Id", "Names", "Image", "Command", "Created", "State", "Status"} <= set(summary)
    pruned = api.call("POST", "/containers/prune").json()
    assert pruned["ContainersDeleted"] == [done]
    api.call("DELETE", f"/containers/{running}?force=1")


def test_exec_inspect_reports_the_exit_code(api):
    container = api.create(["sleep", "30"])
    api.start(container)
    created = api.call(
        "POST",
        f"/containers/{container}/exec",
        {"Cmd": ["sh", "-c", "echo in; exit 4"], "AttachStdout": True},
    )
    exec_id = created.json()["Id"]
    output = api.call("POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": False}).body
    assert frames(output) == [(1, b"in\n")]
    assert api.call("GET", f"/exec/{exec_id}/json").json()["ExitCode"] == 4
    stopped = api.create(["true"])
    refused = api.call("POST", f"/containers/{stopped}/exec", {"Cmd": ["true"]})
    assert refused.status == 409 and "is not running" in refused.json()["message"]
    api.call("DELETE", f"/containers/{container}?force=1")


def test_containers_outlive_a_killed_daemon(api):
    daemon = api.daemon
    container = api.create(
        [
            "sh",
            "-c",
            "i=0; while [ $i -lt 40 ]; do echo line $i; i=$((i+1)); sleep 0.05; done; exit 6",
        ]
    )
    api.start(container)
    keeper = api.create(["sleep", "60"], HostConfig={"RestartPolicy": {"Name": "always"}})
    api.start(keeper)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait()
    time.sleep(2.5)  # the first container finishes while no daemon runs
    with restarted(daemon):
        inspect = http_request(daemon.socket_path, "GET", f"/containers/{container}/json").json()
        assert inspect["State"]["Status"] == "exited" and inspect["State"]["ExitCode"] == 6
        logs = http_request(
            daemon.socket_path, "GET", f"/containers/{container}/logs?stdout=1"
        ).body
        assert [p.decode() for _, p in frames(logs)] == [f"line {i}\n" for i in range(40)]
        still = http_request(daemon.socket_path, "GET", f"/containers/{keeper}/json").json()[
            "State"
        ]
        assert still["Status"] == "running" and os.path.exists(f"/proc/{still['Pid']}")
        # The restarted daemon found the init process again and signals it (by its pidfd).
        killed = http_request(daemon.socket_path, "POST", f"/containers/{keeper}/kill")
        assert killed.status == 204
        waited = http_request(daemon.socket_path, "POST", f"/containers/{keeper}/wait")
        assert waited.json()["StatusCode"] == 137
        http_request(daemon.socket_path, "DELETE", f"/containers/{keeper}?force=1")


def test_json_file_logs_rotate_by_size_and_count(api):
    code, out, _ = api.run(
        [
            "sh",
            "-c",
            "i=0; while [ $i -lt 400 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done",
        ],
        HostConfig={
            "LogConfig": {"Type": "json-file", "Config": {"max-size": "4k", "max-file": "3"}}
        },
    )
    assert code == 0
    lines = out.decode().splitlines()
    assert lines[-1] == "line-399-padding-padding-padding"
    assert "line-0-padding-padding-padding" not in lines  # rotated away
    containers = api.call("GET", "/containers/json?all=1").json()
    directory = api.daemon.data_root / "containers" / containers[0]["Id"]
    files = sorted(p.name for p in directory.glob("container.log*"))
    assert files == ["container.log", "container.log.1", "container.log.2"]
    assert all(p.stat().st_size <= 4096 for p in directory.glob("container.log*"))
    numbers = [int(line.split("-")[1]) for line in lines]
    assert numbers == list(range(numbers[0], 400))  # what is kept is whole and in order
    inspect = api.inspect(containers[0]["Id"])
    assert inspect["HostConfig"]["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "4k", "max-file": "3"},
    }
