"""cgroup limits, devices, ulimits, ``docker update`` and kill through the Engine API, on both
runtimes: what a container sees of its limits from inside, and the requests refused by name."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import attrs
import pytest

from tests.conftest import children, eventually, restarted, runc_races_on_exec_nofile
from tests.containers.conftest import runtime_daemon
from tests.containers.engine_api import Api

MB = 1024 * 1024


@pytest.fixture(scope="module", params=["namespaces", "runc"])
def api(request, tmp_path_factory) -> Iterator[Api]:
    """One daemon per runtime for the module, its containers under a cgroup parent of its own."""
    base = tmp_path_factory.mktemp(f"resources-{request.param}")
    with runtime_daemon(base, request.param, "lifecycle") as (daemon, parent):
        yield attrs.evolve(Api.with_busybox(daemon), cgroup_parent=parent)


def host_cgroup(api: Api, container: str, controller: str, name: str) -> str:
    return (Path("/sys/fs/cgroup") / controller / api.cgroup_parent / container / name).read_text()


def run_output(api: Api, script: str, **config) -> str:
    code, out, err = api.run(["sh", "-c", script], **config)
    assert code == 0, (out, err)
    return out.decode()


def refused(api: Api, host_config: dict) -> str:
    reply = api.call("POST", "/containers/create", {"Image": "busybox", "HostConfig": host_config})
    assert reply.status == 400, reply.body
    return reply.json()["message"]


def events(api: Api, container: str, since: float) -> list[tuple[str, dict]]:
    filters = quote(json.dumps({"container": [container]}))
    reply = api.call("GET", f"/events?since={since:.3f}&until={time.time():.3f}&filters={filters}")
    found = [json.loads(line) for line in reply.body.splitlines() if line.strip()]
    return [(e["Action"], e["Actor"]["Attributes"]) for e in found]


# --------------------------------------------------------------------------------------------
# limits at create
# --------------------------------------------------------------------------------------------


def test_cgroup_limits_are_applied_and_visible_inside(api):
    script = (
        "cd /sys/fs/cgroup; cat cpu/cpu.shares cpuset/cpuset.cpus cpuset/cpuset.mems "
        "memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes "
        "memory/memory.soft_limit_in_bytes memory/memory.swappiness; "
        "grep oom_kill_disable memory/memory.oom_control"
    )
    host_config = {
        "CpuShares": 512, "CpusetCpus": "0", "CpusetMems": "0", "Memory": 64 * MB,
        "MemorySwap": 96 * MB, "MemoryReservation": 32 * MB, "MemorySwappiness": 10,
        "OomKillDisable": True,
    }  # fmt: skip
    output = run_output(api, script, HostConfig=host_config)
    assert output.split() == [
        "512", "0", "0", str(64 * MB), str(96 * MB), str(32 * MB), "10", "oom_kill_disable", "1",
    ]  # fmt: skip


def test_memory_swap_defaults_to_twice_memory_and_minus_one_is_unlimited(api):
    script = "cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
    default = api.create(["sh", "-c", script], HostConfig={"Memory": 32 * MB})
    assert api.inspect(default)["HostConfig"]["MemorySwap"] == 64 * MB  # as dockerd records it
    api.start(default)
    assert api.wait(default)["StatusCode"] == 0
    assert api.logs(default).split() == [str(64 * MB).encode()]
    unlimited = run_output(api, script, HostConfig={"Memory": 32 * MB, "MemorySwap": -1})
    assert int(unlimited) > 1 << 60


@pytest.mark.parametrize(
    ("host_config", "message"),
    [
        ({"MemorySwap": 64 * MB},
         "You should always set the Memory limit when using Memoryswap limit, see usage"),
        ({"Memory": 64 * MB, "MemorySwap": 32 * MB},
         "Minimum memoryswap limit should be larger than memory limit, see usage"),
        ({"Memory": 32 * MB, "MemoryReservation": 64 * MB},
         "Minimum memory limit can not be less than memory reservation limit, see usage"),
        ({"MemoryReservation": MB}, "Minimum memory reservation allowed is 6MB"),
        ({"MemorySwappiness": 101}, "Invalid value: 101, valid memory swappiness range is 0-100"),
        ({"CpusetCpus": "0-99"}, "Requested CPUs are not available - requested 0-99, available: "),
        ({"CpusetCpus": "a"}, "Invalid value a for cpuset cpus: invalid format: a"),
        ({"CpusetMems": "7"}, "Requested memory nodes are not available - requested 7"),
        ({"OomScoreAdj": 1001}, "Invalid value 1001, range for oom score adj is [-1000, 1000]"),
        ({"Ulimits": [{"Name": "nofile", "Soft": 20, "Hard": 10}]},
         "ulimit soft limit must be less than or equal to hard limit: 20 > 10"),
        ({"Ulimits": [{"Name": "nosuch", "Soft": 1, "Hard": 1}]}, "invalid ulimit type: nosuch"),
        ({"DeviceCgroupRules": ["c 1:3"]}, "invalid device cgroup rule format: 'c 1:3'"),
        ({"Devices": [{"PathOnHost": "/dev/nosuch", "PathInContainer": "/dev/x",
                       "CgroupPermissions": "rwm"}]},
         'error gathering device information while adding custom device "/dev/nosuch": '
         "no such file or directory"),
        ({"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/x",
                       "CgroupPermissions": "rwx"}]}, "invalid device mode: rwx"),
        ({"BlkioWeight": 300}, "HostConfig.BlkioWeight (--blkio-weight): the kernel's blkio controller has no"),
        ({"CpuPeriod": 500}, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger"),
        ({"CpuQuota": 500}, "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
        ({"NanoCpus": 10**9, "CpuQuota": 50000},
         "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
        ({"CpuShares": -2}, "invalid CPU shares: -2"),
    ],
)  # fmt: skip
def test_bad_limits_are_refused_with_dockerds_messages(api, host_config, message):
    assert message in refused(api, host_config)


def test_ulimits_and_oom_score_adj_reach_the_process_and_its_execs(api, request):
    host_config = {
        "Ulimits": [{"Name": "nofile", "Soft": 512, "Hard": 1024},
                    {"Name": "nproc", "Soft": 100, "Hard": 200}],
        "OomScoreAdj": 300,
    }  # fmt: skip
    container = api.create(["sleep", "30"], HostConfig=host_config)
    api.start(container)
    try:
        script = "ulimit -n; ulimit -Hn; ulimit -u; cat /proc/self/oom_score_adj"
        code, out, _ = api.exec(container, ["sh", "-c", script])
        soft, *rest = out.split()
        assert (code, rest) == (0, [b"1024", b"100", b"300"])
        if request.node.callspec.params["api"] != "runc" or not runc_races_on_exec_nofile():
            assert soft == b"512"
        init = api.inspect(container)["State"]["Pid"]
        assert Path(f"/proc/{init}/oom_score_adj").read_text().strip() == "300"
        limits = Path(f"/proc/{init}/limits").read_text()
        assert re.search(r"^Max open files +512 +1024 ", limits, re.MULTILINE), limits
    finally:
        api.call("DELETE", f"/containers/{container}?force=1")


def test_device_is_made_and_allowed_and_a_cgroup_rule_allows_more(api):
    null = os.stat("/dev/null").st_rdev
    device = {"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull",
              "CgroupPermissions": "rwm"}  # fmt: skip
    script = (
        "stat -c '%t:%T %a' /dev/mynull; echo hi > /dev/mynull && echo WROTE; "
        "grep -c 'c 1:11 r$' /sys/fs/cgroup/devices/devices.list"
    )
    output = run_output(
        api, script, HostConfig={"Devices": [device], "DeviceCgroupRules": ["c 1:11 r"]}
    )
    assert output.split() == [f"{os.major(null):x}:{os.minor(null):x}", "666", "WROTE", "1"]
    # Without the rule, only the default devices are allowed.
    code, out, _ = api.run(["grep", "-c", "c 1:11 r$", "/sys/fs/cgroup/devices/devices.list"])
    assert (code, out) == (1, b"0\n")


def test_blkio_throttle_is_written_for_the_device(api):
    disk = next((p for p in ("/dev/vda", "/dev/sda", "/dev/loop0") if os.path.exists(p)), None)
    if disk is None:
        pytest.skip("no block device to throttle")
    rdev = os.stat(disk).st_rdev
    host_config = {"BlkioDeviceReadBps": [{"Path": disk, "Rate": 1048576}]}
    output = run_output(
        api, "cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device", HostConfig=host_config
    )
    assert output.split() == [f"{os.major(rdev)}:{os.minor(rdev)}", "1048576"]


# --------------------------------------------------------------------------------------------
# docker update
# --------------------------------------------------------------------------------------------


def test_update_applies_live_persists_and_logs_an_event(api):
    since = time.time()
    container = api.create(["sleep", "60"], HostConfig={"Memory": 64 * MB})
    api.start(container)
    try:
        reply = api.call("POST", f"/containers/{container}/update", {
            "Memory": 96 * MB, "MemorySwap": 192 * MB, "NanoCpus": 500_000_000,
            "CpuShares": 256, "CpusetCpus": "0", "PidsLimit": 40,
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
        })  # fmt: skip
        assert reply.status == 200, reply.body
        assert reply.json() == {"Warnings": None}
        assert host_cgroup(api, container, "memory", "memory.limit_in_bytes") == f"{96 * MB}\n"
        assert host_cgroup(api, container, "memory", "memory.memsw.limit_in_bytes") == (
            f"{192 * MB}\n"
        )
        assert host_cgroup(api, container, "cpu", "cpu.cfs_quota_us") == "50000\n"
        assert host_cgroup(api, container, "cpu", "cpu.shares") == "256\n"
        assert host_cgroup(api, container, "cpuset", "cpuset.cpus") == "0\n"
        assert host_cgroup(api, container, "pids", "pids.max") == "40\n"
        host = api.inspect(container)["HostConfig"]
        assert (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["CpuShares"],
                host["CpusetCpus"], host["PidsLimit"]) == (
            96 * MB, 192 * MB, 500_000_000, 256, "0", 40)  # fmt: skip
        assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        assert ("update", {"name": api.inspect(container)["Name"][1:], "image": "busybox"}) in (
            events(api, container, since)
        )
    finally:
        api.call("DELETE", f"/containers/{container}?force=1")


def test_update_of_a_stopped_container_applies_at_its_next_start(api):
    container = api.create(["cat", "/sys/fs/cgroup/pids/pids.max"])
    reply = api.call("POST", f"/containers/{container}/update", {"PidsLimit": 33})
    assert reply.status == 200, reply.body
    api.start(container)
    assert api.wait(container)["StatusCode"] == 0
    assert api.logs(container) == b"33\n"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"Memory": "lots"}, 400, "Memory"),
        ({"Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 1}]}, 400,
         "Ulimits cannot be changed by docker update"),
        ({"Devices": [{"PathOnHost": "/dev/null"}]}, 400, "Devices cannot be changed"),
        ({"Memory": 1024}, 400, "Minimum memory limit allowed is 6MB"),
        ({"Memory": 128 * MB}, 409,
         "Memory limit should be smaller than already set memoryswap limit"),
        ({"CpuQuota": 50000}, 409,
         "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"),
        ({"RestartPolicy": {"Name": "sometimes"}}, 400, "invalid restart policy 'sometimes'"),
        ({"BlkioWeight": 500}, 400, "BlkioWeight"),
    ],
)  # fmt: skip
def test_update_refuses_bad_and_unsupported_fields_by_name(api, body, status, message):
    container = api.create(["true"], HostConfig={"Memory": 32 * MB, "NanoCpus": 10**9})
    reply = api.call("POST", f"/containers/{container}/update", body)
    assert reply.status == status, reply.body
    assert message in reply.json()["message"]
    assert api.inspect(container)["HostConfig"]["Memory"] == 32 * MB


def test_update_is_kept_across_a_daemon_restart(start_daemon):
    daemon = start_daemon()
    api = Api.with_busybox(daemon)
    container = api.create(["sleep", "60"])
    api.start(container)
    body = {"Memory": 48 * MB, "MemorySwap": 96 * MB, "CpuShares": 300, "PidsLimit": 20}
    assert api.call("POST", f"/containers/{container}/update", body).status == 200
    daemon.stop()
    with restarted(daemon) as again:
        api = Api(again)
        host = api.inspect(container)["HostConfig"]
        assert (host["Memory"], host["MemorySwap"], host["CpuShares"], host["PidsLimit"]) == (
            48 * MB, 96 * MB, 300, 20)  # fmt: skip
        api.call("POST", f"/containers/{container}/kill")
        api.start(container)  # started again with the updated limits
        code, out, _ = api.exec(container, ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                            "/sys/fs/cgroup/pids/pids.max"])  # fmt: skip
        assert (code, out.split()) == (0, [str(48 * MB).encode(), b"20"])
        api.call("DELETE", f"/containers/{container}?force=1")


def test_an_updated_restart_policy_restarts_the_container(api):
    container = api.create(["sh", "-c", "exit 3"])
    reply = api.call("POST", f"/containers/{container}/update",
                     {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 1}})  # fmt: skip
    assert reply.status == 200
    api.start(container)
    deadline = time.monotonic() + 10
    while api.inspect(container)["RestartCount"] < 1:
        assert time.monotonic() < deadline, "the updated restart policy never restarted it"
        time.sleep(0.05)
    api.wait_for(container, "exited")


# --------------------------------------------------------------------------------------------
# kill and stop
# --------------------------------------------------------------------------------------------


def test_kill_answers_once_the_exit_is_recorded_with_kill_before_die(api):
    since = time.time()
    container = api.create(["sleep", "60"])
    api.start(container)
    assert api.call("POST", f"/containers/{container}/kill").status == 204
    state = api.inspect(container)["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 137, False)
    actions = [(a, attributes.get("signal")) for a, attributes in events(api, container, since)]
    assert [a for a in actions if a[0] in ("kill", "die")] == [("kill", "9"), ("die", None)]


def test_stop_sends_the_stop_signal_of_the_container_then_of_the_image(api):
    script = "trap 'echo got USR1; exit 7' USR1; while true; do sleep 0.1; done"
    since = time.time()
    container = api.create(["sh", "-c", script], StopSignal="SIGUSR1")
    api.start(container)
    # The trap must be set before the signal comes: the loop's first sleep follows it.
    pid = api.inspect(container)["State"]["Pid"]
    eventually(lambda: children(pid), what="the loop")
    assert api.call("POST", f"/containers/{container}/stop?t=5").status == 204
    assert api.inspect(container)["State"]["ExitCode"] == 7
    assert api.logs(container) == b"got USR1\n"
    kills = [attributes["signal"] for action, attributes in events(api, container, since)
             if action == "kill"]  # fmt: skip
    assert kills == ["10"]
