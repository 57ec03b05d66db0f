"""How a container's process is isolated, through the Engine API, on both runtimes.

``--pid/--ipc/--uts`` (host and ``container:NAME``), ``--shm-size``, ``--init``, ``--cgroupns``,
``--sysctl``, ``--group-add``, ``--runtime``, custom masked and read-only paths: each applied
(seen from inside the container) and shown by inspect as dockerd 20.10 shows it, and each bad
value refused with a 400 naming it. One daemon per runtime for the module.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.daemon.containers.process_modes import cgroup_version
from dockyard.testing.images import busybox_rootfs, image_archive
from tests.conftest import plugin_env, run_dockyard
from tests.containers.conftest import runtime_daemon
from tests.containers.engine_api import Api

GROUPS = b"root:x:0:\naudio:x:29:\nstaff:x:50:\n"
NAMESPACE_LINKS = "for kind in pid ipc uts; do readlink /proc/self/ns/$kind; done"


@pytest.fixture(scope="module", params=["namespaces", "runc"])
def api(request, tmp_path_factory) -> Iterator[Api]:
    """A daemon on ``request.param``'s runtime, with busybox (and an /etc/group)."""
    base = tmp_path_factory.mktemp(f"process-{request.param}")
    with runtime_daemon(base, request.param, "process") as (daemon, parent):
        archive = image_archive([busybox_rootfs({"etc/group": GROUPS})], ["busybox:latest"])
        assert daemon.request("POST", "/v1.41/images/load", body=archive).status == 200
        yield Api(daemon, cgroup_parent=parent)


def runtime_of(api: Api) -> str:
    return api.daemon.args[api.daemon.args.index("--runtime") + 1]


def run(api: Api, script: str, **host: Any) -> tuple[int, str, str]:
    code, out, err = api.run(["sh", "-c", script], HostConfig=host)
    return code, out.decode(), err.decode()


def refused(api: Api, **host: Any) -> str:
    """The message of a create refused with a 400."""
    reply = api.call("POST", "/containers/create", {"Image": "busybox", "HostConfig": host})
    assert reply.status == 400, reply.body
    return reply.json()["message"]


def donor(api: Api, script: str = "exec sleep 60", **host: Any) -> str:
    """A running container others join, once its script has done its work."""
    container = api.create(["sh", "-c", script], name=f"donor-{secrets.token_hex(4)}",
                           HostConfig=host)  # fmt: skip
    api.start(container)
    pid = api.inspect(container)["State"]["Pid"]
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"):
        assert time.monotonic() < deadline, "the donor never reached its sleep"
        time.sleep(0.02)
    return container


# --------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------


def test_inspect_fills_the_process_fields_as_dockerd(api):
    host = api.inspect(api.create(["true"]))["HostConfig"]
    assert (host["IpcMode"], host["PidMode"], host["UTSMode"]) == ("private", "", "")
    assert host["ShmSize"] == 64 * 1024 * 1024
    assert host["CgroupnsMode"] == ("host" if cgroup_version() == 1 else "private")
    assert host["Runtime"] == runtime_of(api)
    assert host["MaskedPaths"][:2] == ["/proc/asound", "/proc/acpi"]
    assert host["ReadonlyPaths"] == [
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
    ]  # fmt: skip
    # As dockerd's: Init and Sysctls are left out while unset, GroupAdd is null.
    assert ("Init" in host, host["GroupAdd"], host.get("Sysctls")) == (False, None, None)
    privileged = api.inspect(api.create(["true"], HostConfig={"Privileged": True}))
    assert privileged["HostConfig"]["MaskedPaths"] is None
    assert privileged["HostConfig"]["ReadonlyPaths"] is None


# --------------------------------------------------------------------------------------------
# namespaces
# --------------------------------------------------------------------------------------------


def test_host_pid_ipc_and_uts(api):
    code, out, err = run(api, NAMESPACE_LINKS + "; hostname",
                         PidMode="host", IpcMode="host", UTSMode="host")  # fmt: skip
    assert code == 0, err
    ours = [os.readlink(f"/proc/self/ns/{kind}") for kind in ("pid", "ipc", "uts")]
    assert out.splitlines() == [*ours, os.uname().nodename]
    assert "hostname and the UTS mode" in api.call(
        "POST", "/containers/create",
        {"Image": "busybox", "Hostname": "x", "HostConfig": {"UTSMode": "host"}},
    ).json()["message"]  # fmt: skip


def test_joining_another_containers_namespaces(api):
    other = donor(api, "echo shared > /dev/shm/mark; exec sleep 60", IpcMode="shareable")
    mode = f"container:{api.inspect(other)['Name'].lstrip('/')}"
    script = NAMESPACE_LINKS + "; cat /dev/shm/mark; ps -o pid,comm | grep -w 1"
    code, out, err = run(api, script, PidMode=mode, IpcMode=mode, UTSMode=mode)
    assert code == 0, err
    pid = api.inspect(other)["State"]["Pid"]
    lines = out.splitlines()
    assert lines[:3] == [os.readlink(f"/proc/{pid}/ns/{kind}") for kind in ("pid", "ipc", "uts")]
    assert lines[3] == "shared"  # its /dev/shm
    assert lines[4].split() == ["1", "sleep"]
    joined = api.inspect(api.create(["true"], HostConfig={"PidMode": mode}))
    assert joined["HostConfig"]["PidMode"] == f"container:{other}"  # by id, as dockerd


def test_joining_refused_as_dockerd_refuses_it(api):
    private = donor(api)
    container = api.create(["true"], HostConfig={"IpcMode": f"container:{private}"})
    reply = api.call("POST", f"/containers/{container}/start")
    assert reply.status == 409
    assert (
        "non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
        in (reply.json()["message"])
    )
    stopped = api.create(["true"], HostConfig={"IpcMode": "shareable"})
    container = api.create(["true"], HostConfig={"PidMode": f"container:{stopped}"})
    reply = api.call("POST", f"/containers/{container}/start")
    assert reply.status == 409
    assert reply.json()["message"] == f"container {stopped} is not running"
    assert refused(api, PidMode="container:nosuch") == "No such container: nosuch"
    assert refused(api, IpcMode="container:nosuch") == "No such container: nosuch"


def test_bad_modes_are_refused_by_name(api):
    assert refused(api, IpcMode="bogus") == "Invalid IPC mode: bogus"
    assert refused(api, PidMode="bogus").startswith("invalid PID mode: bogus")
    assert refused(api, UTSMode="bogus").startswith("invalid UTS mode: bogus")
    assert refused(api, CgroupnsMode="bogus") == "invalid cgroup namespace mode: bogus"
    assert refused(api, ShmSize=-1) == "SHM size can not be less than 0"
    assert refused(api, Runtime="bogus") == "Unknown runtime specified bogus"


def test_cgroup_namespace_host_and_private(api):
    code, out, _ = run(api, "readlink /proc/self/ns/cgroup", CgroupnsMode="host")
    assert (code, out.strip()) == (0, os.readlink("/proc/self/ns/cgroup"))
    code, out, _ = run(api, "cat /proc/self/cgroup", CgroupnsMode="private")
    assert {line.split(":", 2)[2] for line in out.splitlines()} == {"/"}
    container = api.create(["true"], HostConfig={"CgroupnsMode": "private"})
    assert api.inspect(container)["HostConfig"]["CgroupnsMode"] == "private"


# --------------------------------------------------------------------------------------------
# /dev/shm, sysctls, groups, init, runtime, paths
# --------------------------------------------------------------------------------------------


def test_shm_size_and_ipc_none(api):
    code, out, _ = run(api, "grep ' /dev/shm ' /proc/mounts", ShmSize=1 << 20)
    assert code == 0 and "size=1024k" in out
    container = api.create(["true"], HostConfig={"ShmSize": 1 << 20})
    assert api.inspect(container)["HostConfig"]["ShmSize"] == 1 << 20
    code, _, err = run(api, "ls /dev/shm", IpcMode="none")
    assert code == 1 and "No such file" in err


def test_namespaced_sysctls_apply_and_others_are_refused(api):
    sysctls = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "12345678", "fs.mqueue.msg_max": "20"}
    script = "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax /proc/sys/fs/mqueue/msg_max"
    code, out, err = run(api, script, Sysctls=sysctls)
    assert (code, out.split()) == (0, ["1", "12345678", "20"]), err
    assert refused(api, Sysctls={"vm.swappiness": "1"}) == (
        'sysctl "vm.swappiness" is not in a separate kernel namespace'
    )
    assert refused(api, Sysctls={"net.ipv4.ip_forward": "1"}, NetworkMode="host") == (
        'sysctl "net.ipv4.ip_forward" not allowed in host network namespace'
    )
    assert refused(api, Sysctls={"kernel.shmmax": "1"}, IpcMode="host") == (
        'sysctl "kernel.shmmax" is not allowed in the hosts ipc namespace'
    )


def test_group_add_by_name_and_number(api):
    code, out, _ = run(api, "id -G", GroupAdd=["audio", "1234"])
    assert (code, out.split()) == (0, ["0", "29", "1234"])
    # Refused at create: the image's /etc/group is read there.
    assert refused(api, GroupAdd=["nosuch"]) == (
        "Unable to find group nosuch: no matching entries in group file"
    )


def test_init_is_pid_1_and_inspect_shows_the_command(api):
    script = "ps -o pid,args | awk '$1 == 1'; grep -c docker-init /proc/mounts"
    code, out, err = run(api, script, Init=True)
    assert code == 0, err
    assert out.splitlines()[0].split()[1:3] == ["/sbin/docker-init", "--"]
    assert out.splitlines()[1] == "1"
    details = api.inspect(api.create(["sleep", "5"], HostConfig={"Init": True}))
    assert (details["Path"], details["Args"], details["HostConfig"]["Init"]) == (
        "sleep", ["5"], True,
    )  # fmt: skip
    assert details["Mounts"] == []


def test_runtime_by_its_name(api):
    name = runtime_of(api)
    code, _, _ = run(api, "true", Runtime=name)
    assert code == 0
    other = "runc" if name == "namespaces" else "namespaces"
    assert f"this daemon runs its containers with {name}" in refused(api, Runtime=other)


def test_custom_masked_and_readonly_paths(api):
    script = "wc -c < /etc/passwd; touch /tmp/x || echo REFUSED; head -c 1 /proc/timer_list"
    code, out, _ = run(api, script, MaskedPaths=["/etc/passwd"], ReadonlyPaths=["/tmp"])
    assert code == 0
    assert out.split()[:2] == ["0", "REFUSED"] and len(out.split()) == 3
    container = api.create(["true"], HostConfig={"MaskedPaths": [], "ReadonlyPaths": ["/tmp"]})
    host = api.inspect(container)["HostConfig"]
    assert (host["MaskedPaths"], host["ReadonlyPaths"]) == ([], ["/tmp"])


# --------------------------------------------------------------------------------------------
# our CLI
# --------------------------------------------------------------------------------------------


def test_our_cli_sends_every_process_flag(api):
    script = "id -G; grep ' /dev/shm ' /proc/mounts; cat /proc/sys/kernel/shmmax; hostname; " + (
        "ps -o pid,args | awk '$1 == 1'"
    )
    result = run_dockyard(
        ["-H", api.daemon.host, "run", "--rm", "--init", "--shm-size", "1m", "--ipc", "shareable",
         "--sysctl", "kernel.shmmax=4096", "--group-add", "audio", "--uts", "host",
         "--cgroupns", "private", "--runtime", runtime_of(api), "busybox", "sh", "-c", script],
        env=plugin_env([]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "0 29" and "size=1024k" in lines[1]
    assert lines[2:4] == ["4096", os.uname().nodename]
    assert lines[4].split()[1] == "/sbin/docker-init"
    bad = run_dockyard(["-H", api.daemon.host, "run", "--sysctl", "x", "busybox"],
                       env=plugin_env([]))  # fmt: skip
    assert bad.returncode == 125
    assert 'invalid argument "x" for "--sysctl" flag' in bad.stderr
