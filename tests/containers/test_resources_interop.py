"""Limits, devices, ulimits, ``docker update``, kill and stop signals with the docker CLI and
docker-py, on our daemon and on a real dockerd 20.10 side by side: same output, same answers."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator

import docker as docker_sdk
import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import children, docker_load, eventually, module_daemon

pytestmark = pytest.mark.interop

MB = 1024 * 1024


@pytest.fixture(scope="module")
def sides(real_dockerd, tmp_path_factory) -> Iterator[dict[str, str]]:
    """``{"ours": host, "theirs": host}``, both with busybox."""
    base = tmp_path_factory.mktemp("resources-interop")
    archive = base / "busybox.tar"
    archive.write_bytes(image_archive([busybox_rootfs()], ["busybox:latest"]))
    real_dockerd.docker("load", "-i", str(archive))
    # An image whose STOPSIGNAL is SIGUSR1.
    stopsig = base / "stopsig.tar"
    image_config = {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "StopSignal": "SIGUSR1"}
    stopsig.write_bytes(
        image_archive([busybox_rootfs()], ["stopsig:latest"], config_extra={"config": image_config})
    )
    real_dockerd.docker("load", "-i", str(stopsig))
    with module_daemon(base) as daemon:
        docker_load(daemon.host, archive)
        docker_load(daemon.host, stopsig)
        yield {"ours": daemon.host, "theirs": real_dockerd.host}


def docker(host: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_cli(), *args], env=docker_env(host), capture_output=True, text=True, timeout=60
    )


def both(sides: dict[str, str], *args: str) -> dict[str, subprocess.CompletedProcess]:
    return {side: docker(host, *args) for side, host in sides.items()}


def name() -> str:
    return f"lc-{secrets.token_hex(4)}"


def run_both(sides, *args: str) -> dict[str, str]:
    results = both(sides, "run", "--rm", "--network", "none", *args)
    for side, result in results.items():
        assert result.returncode == 0, (side, result.stderr)
    return {side: result.stdout for side, result in results.items()}


def test_cgroup_limits_as_dockerd(sides):
    script = (
        "cd /sys/fs/cgroup; cat cpu/cpu.shares cpuset/cpuset.cpus memory/memory.limit_in_bytes "
        "memory/memory.memsw.limit_in_bytes memory/memory.soft_limit_in_bytes "
        "memory/memory.swappiness; grep oom_kill_disable memory/memory.oom_control"
    )
    outputs = run_both(
        sides, "--cpu-shares", "512", "--cpuset-cpus", "0", "--memory", "64m",
        "--memory-swap", "96m", "--memory-reservation", "32m", "--memory-swappiness", "10",
        "--oom-kill-disable", "busybox", "sh", "-c", script,
    )  # fmt: skip
    assert outputs["ours"] == outputs["theirs"]
    assert outputs["ours"].split()[:3] == ["512", "0", str(64 * MB)]


def test_inspect_shows_the_limits_as_dockerd(sides):
    fields = ("{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.CpuShares}} "
              "{{.HostConfig.CpusetCpus}} {{.HostConfig.CpuQuota}} {{.HostConfig.NanoCpus}} "
              "{{json .HostConfig.Ulimits}} {{.HostConfig.OomScoreAdj}} "
              "{{json .HostConfig.Devices}}")  # fmt: skip
    shown = {}
    for side, host in sides.items():
        container = name()
        created = docker(host, "create", "--name", container, "--network", "none",
                         "--memory", "32m", "--cpu-shares", "100", "--cpuset-cpus", "0",
                         "--cpu-quota", "50000", "--ulimit", "nofile=100:200",
                         "--oom-score-adj", "5", "--device", "/dev/null:/dev/mynull:r",
                         "busybox", "true")  # fmt: skip
        assert created.returncode == 0, (side, created.stderr)
        shown[side] = docker(host, "inspect", "-f", fields, container).stdout
        docker(host, "rm", container)
    assert shown["ours"] == shown["theirs"]


def test_ulimits_oom_score_and_devices_as_dockerd(sides):
    script = "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj; stat -c '%t:%T' /dev/mynull"
    outputs = run_both(
        sides, "--ulimit", "nofile=512:1024", "--oom-score-adj", "300",
        "--device", "/dev/null:/dev/mynull", "busybox", "sh", "-c", script,
    )  # fmt: skip
    null = os.stat("/dev/null").st_rdev
    assert outputs["ours"] == outputs["theirs"]
    assert outputs["ours"].split() == [
        "512",
        "1024",
        "300",
        f"{os.major(null):x}:{os.minor(null):x}",
    ]


@pytest.mark.parametrize(
    "options",
    [
        ["--memory", "64m", "--memory-swap", "32m"],
        ["--cpuset-cpus", "0-99"],
        ["--cpuset-mems", "5"],
        ["--memory-swappiness", "101"],
        ["--oom-score-adj", "1001"],
        ["--memory", "32m", "--memory-reservation", "64m"],
        ["--cpu-period", "500"],
        ["--cpu-quota", "500"],
        ["--cpus", "1", "--cpu-quota", "50000"],
    ],
)
def test_bad_limits_are_refused_as_dockerd_refuses_them(sides, options):
    results = both(sides, "create", "--network", "none", *options, "busybox", "true")
    messages = {}
    for side, result in results.items():
        assert result.returncode != 0, (side, result.stdout)
        text = result.stderr.strip()
        # The CLI checks some itself (swappiness): then both say the same thing.
        messages[side] = text.partition("Error response from daemon: ")[2] or text
    # dockerd adds what its platform check wrapped the message in; the message itself is ours.
    assert messages["ours"] and messages["ours"] in messages["theirs"], messages


def test_docker_update_as_dockerd(sides):
    fields = ("{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} "
              "{{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}} {{.HostConfig.CpusetCpus}} "
              "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}")  # fmt: skip
    script = (
        "cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes "
        "cpu/cpu.cfs_quota_us cpu/cpu.shares pids/pids.max cpuset/cpuset.cpus"
    )
    seen = {}
    for side, host in sides.items():
        container = name()
        started = docker(host, "run", "-d", "--name", container, "--network", "none",
                         "--memory", "64m", "busybox", "sleep", "60")  # fmt: skip
        assert started.returncode == 0, (side, started.stderr)
        too_big = docker(host, "update", "--memory", "256m", container)
        updated = docker(host, "update", "--memory", "96m", "--memory-swap", "192m",
                         "--cpus", "0.5", "--cpu-shares", "256", "--pids-limit", "40",
                         "--cpuset-cpus", "0", "--restart", "on-failure:2", container)  # fmt: skip
        assert updated.returncode == 0, (side, updated.stderr)
        inside = docker(host, "exec", container, "sh", "-c", script).stdout
        shown = docker(host, "inspect", "-f", fields, container).stdout
        seen[side] = (too_big.returncode, too_big.stderr.replace(container, "NAME"),
                      updated.stdout.replace(container, "NAME"), inside, shown)  # fmt: skip
        docker(host, "rm", "-f", container)
    assert seen["ours"][0] == seen["theirs"][0] == 1
    assert "Memory limit should be smaller than already set memoryswap limit" in seen["ours"][1]
    assert seen["ours"][2:] == seen["theirs"][2:]


def test_docker_py_update_and_restart_policy(sides):
    seen = {}
    for side, host in sides.items():
        client = docker_sdk.DockerClient(base_url=host, version="1.41")
        try:
            container = client.containers.run("busybox", ["sleep", "60"], detach=True,
                                               network_mode="none", mem_limit="32m")  # fmt: skip
            try:
                answer = container.update(mem_limit="48m", memswap_limit="96m", cpu_shares=300,
                                          restart_policy={"Name": "always"})  # fmt: skip
                container.reload()
                host_config = container.attrs["HostConfig"]
                with pytest.raises(docker_sdk.errors.APIError) as too_small:
                    container.update(mem_limit=1024)
                seen[side] = (
                    answer, host_config["Memory"], host_config["MemorySwap"],
                    host_config["CpuShares"], host_config["RestartPolicy"],
                    too_small.value.status_code, too_small.value.explanation,
                )  # fmt: skip
            finally:
                container.remove(force=True)
        finally:
            client.close()
    assert seen["ours"] == seen["theirs"]
    assert seen["ours"][1:4] == (48 * MB, 96 * MB, 300)


def test_kill_then_inspect_and_events_as_dockerd(sides):
    seen = {}
    for side, host in sides.items():
        container = name()
        since = str(time.time())
        assert docker(host, "run", "-d", "--name", container, "--network", "none",
                      "--label", "tier=web", "busybox", "sleep", "60").returncode == 0  # fmt: skip
        assert docker(host, "kill", container).returncode == 0
        state = docker(host, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", container)
        events = docker(host, "events", "--since", since, "--until", str(time.time() + 0.5),
                        "--filter", f"container={container}",
                        "--format", "{{.Action}} {{.Actor.Attributes.signal}} "
                        "{{.Actor.Attributes.tier}}")  # fmt: skip
        seen[side] = (state.stdout, events.stdout.replace("exec_", "").split("\n"))
        docker(host, "rm", "-f", container)
    assert seen["ours"] == seen["theirs"]
    assert seen["ours"][0] == "exited 137\n"


@pytest.mark.parametrize(
    ("options", "shown"),
    [(["--stop-signal", "USR1", "busybox"], "USR1"), (["stopsig"], "SIGUSR1")],
)
def test_stop_signal_as_dockerd(sides, options, shown):
    """``--stop-signal``, or else the image's STOPSIGNAL, is what ``docker stop`` sends."""
    script = "trap 'echo got USR1; exit 7' USR1; while true; do sleep 0.1; done"
    seen = {}
    for side, host in sides.items():
        container = name()
        since = str(time.time())
        assert docker(host, "run", "-d", "--name", container, "--network", "none",
                      *options, "sh", "-c", script).returncode == 0  # fmt: skip
        # The trap is set once the loop's first sleep runs.
        pid = int(docker(host, "inspect", "-f", "{{.State.Pid}}", container).stdout)
        eventually(lambda pid=pid: children(pid), what="the loop")
        assert docker(host, "stop", container).returncode == 0
        state = docker(
            host, "inspect", "-f", "{{.State.ExitCode}} {{.Config.StopSignal}}", container
        )
        events = docker(host, "events", "--since", since, "--until", str(time.time() + 0.5),
                        "--filter", f"container={container}",
                        "--format", "{{.Action}} {{.Actor.Attributes.signal}}")  # fmt: skip
        seen[side] = (state.stdout, docker(host, "logs", container).stdout, events.stdout)
        docker(host, "rm", "-f", container)
    assert seen["ours"] == seen["theirs"]
    assert seen["ours"][:2] == (f"7 {shown}\n", "got USR1\n")


def test_a_missing_device_fails_the_run_with_dockerds_message(sides):
    # dockerd finds out at start, we at create: `docker run` fails with the same words.
    results = both(sides, "run", "--rm", "--network", "none", "--device", "/dev/nosuchdevice",
                   "busybox", "true")  # fmt: skip
    messages = {
        side: r.stderr.partition("Error response from daemon: ")[2].split("\n")[0].rstrip(".")
        for side, r in results.items()
    }
    # 127: the CLI reads "no such file" in the error as a missing command, on both.
    assert results["ours"].returncode == results["theirs"].returncode == 127
    assert messages["ours"] == (
        'error gathering device information while adding custom device "/dev/nosuchdevice": '
        "no such file or directory"
    )
    assert messages["ours"] in messages["theirs"]
