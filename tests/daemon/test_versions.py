"""Old API versions on our daemon alone (the side-by-side comparisons with dockerd are in
test_versions_interop.py): the bounds, plain-text errors, start's body, kill, ``/info``'s
capability fields against this host's cgroup files, and the version rules as functions."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import attrs
import pytest

from dockyard.daemon.api import versions
from dockyard.daemon.containers.config import BindOptions, CreateRequest, HostConfig, MountConfig
from dockyard.linux import cgroups

MB = 1024 * 1024


@pytest.fixture(scope="module")
def daemon(busybox_served):
    return busybox_served.daemon


def post(daemon, path: str, body: object = None):
    data = None if body is None else json.dumps(body).encode()
    return daemon.request("POST", path, {"Content-Type": "application/json"}, data)


def created(daemon, body: dict | None = None) -> str:
    name = f"versions-{secrets.token_hex(4)}"
    reply = post(daemon, f"/containers/create?name={name}", {"Image": "busybox", **(body or {})})
    assert reply.status == 201, reply.body
    return name


def test_versions_down_to_1_12(daemon):
    assert daemon.request("GET", "/version").json()["MinAPIVersion"] == "1.12"
    assert daemon.request("GET", "/v1.12/version").status == 200
    too_old = daemon.request("GET", "/v1.11/version")
    assert too_old.status == 400
    assert too_old.body == (
        b"client version 1.11 is too old. Minimum supported API version is 1.12, please "
        b"upgrade your client to a newer version\n"
    )


def test_errors_are_plain_text_up_to_1_23(daemon):
    old = daemon.request("GET", "/v1.23/containers/versions-missing/json")
    assert (old.status, old.body) == (404, b"No such container: versions-missing\n")
    assert old.headers["content-type"] == "text/plain; charset=utf-8"
    assert old.headers["x-content-type-options"] == "nosniff"
    new = daemon.request("GET", "/v1.24/containers/versions-missing/json")
    assert new.headers["content-type"] == "application/json"
    assert new.json() == {"message": "No such container: versions-missing"}
    # A success is untouched.
    assert daemon.request("GET", "/v1.23/containers/json").headers["content-type"] == (
        "application/json"
    )


def test_kill_of_a_stopped_container(daemon):
    name = created(daemon, {"Cmd": ["true"]})
    assert post(daemon, f"/v1.19/containers/{name}/kill").status == 204
    assert post(daemon, f"/v1.20/containers/{name}/kill").status == 409
    assert post(daemon, f"/v1.19/containers/{name}/kill?signal=NOPE").status == 400


def test_start_body_by_version(daemon):
    name = created(daemon, {"Cmd": ["sleep", "30"]})
    refused = post(daemon, f"/v1.24/containers/{name}/start", {"Privileged": True})
    assert refused.status == 400
    assert refused.json()["message"] == (
        "starting container with non-empty request body was deprecated since API v1.22 and "
        "removed in v1.24"
    )
    # A body too short to be dockerd's (``{}``, ``null``) is no HostConfig at any version.
    assert post(daemon, f"/v1.41/containers/{name}/start", {}).status == 204
    post(daemon, f"/containers/{name}/kill")
    changed = post(
        daemon, f"/v1.23/containers/{name}/start", {"Privileged": True, "Memory": 8 * MB}
    )
    assert changed.status == 400
    assert "HostConfig.Privileged" in changed.body.decode()
    assert "Memory" not in changed.body.decode()
    state = daemon.request("GET", f"/containers/{name}/json").json()
    assert state["State"]["Running"] is False and state["HostConfig"]["Privileged"] is False
    taken = post(
        daemon,
        f"/v1.23/containers/{name}/start",
        {"RestartPolicy": {"Name": "unless-stopped"}, "Memory": 64 * MB},
    )
    assert taken.status == 204, taken.body
    host = daemon.request("GET", f"/containers/{name}/json").json()["HostConfig"]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert (host["Memory"], host["MemorySwap"]) == (64 * MB, 128 * MB)
    daemon.request("DELETE", f"/containers/{name}?force=1")


def test_start_host_config_of_an_old_client(daemon):
    """A client of 1.23 creates and starts with the same HostConfig, ports added on start: the
    ports are taken, and the IPC mode it had by default at create (shareable) becomes the
    daemon's default (private), the start's HostConfig naming none (dockerd does the same)."""
    name = f"versions-{secrets.token_hex(4)}"
    host_config = {"Binds": ["/tmp:/h:ro"], "Memory": 32 * MB}
    body = {"Image": "busybox", "Cmd": ["sleep", "30"], "HostConfig": host_config}
    assert post(daemon, f"/v1.23/containers/create?name={name}", body).status == 201
    ports = {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": ""}]}}
    started = post(daemon, f"/v1.23/containers/{name}/start", {**host_config, **ports})
    assert started.status == 204, started.body
    host = daemon.request("GET", f"/containers/{name}/json").json()["HostConfig"]
    assert host["IpcMode"] == "private" and host["Binds"] == ["/tmp:/h:ro"]
    assert host["PortBindings"] == ports["PortBindings"]
    daemon.request("DELETE", f"/containers/{name}?force=1")


def _expected_capabilities() -> dict[str, bool]:
    """The cgroup files dockerd looks at, read here without the daemon's code."""
    if Path("/sys/fs/cgroup/memory").is_dir():
        memory, cpu = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/cpu")
        return {
            "MemoryLimit": True,
            "SwapLimit": (memory / "memory.memsw.limit_in_bytes").exists(),
            "OomKillDisable": (memory / "memory.oom_control").exists(),
            "CPUShares": (cpu / "cpu.shares").exists(),
            "CpuCfsQuota": (cpu / "cpu.cfs_quota_us").exists(),
            "CPUSet": Path("/sys/fs/cgroup/cpuset").is_dir(),
            "PidsLimit": Path("/sys/fs/cgroup/pids").is_dir(),
        }
    controllers = Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
    return {
        "MemoryLimit": "memory" in controllers,
        "OomKillDisable": False,
        "CPUShares": "cpu" in controllers,
        "CpuCfsQuota": "cpu" in controllers,
        "CPUSet": "cpuset" in controllers,
        "PidsLimit": "pids" in controllers,
    }


def test_info_states_the_cgroup_capabilities(daemon):
    info = daemon.request("GET", "/info").json()
    for key, value in _expected_capabilities().items():
        assert info[key] is value, key
    assert info["CpuCfsPeriod"] == info["CpuCfsQuota"]
    assert info["KernelMemory"] is False and info["KernelMemoryTCP"] is False
    assert info["CgroupVersion"] == str(cgroups.capabilities().version)
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    assert info["IPv4Forwarding"] is forwarding
    assert info["IPv4Forwarding"] or "WARNING: IPv4 forwarding is disabled" in info["Warnings"]
    assert isinstance(info["NEventsListener"], int)
    assert {"HttpProxy", "HttpsProxy", "NoProxy", "OSVersion", "GenericResources"} <= set(info)


def test_info_shapes_by_version(daemon):
    old = daemon.request("GET", "/v1.24/info").json()
    assert old["ExecutionDriver"] == "<not supported>"
    assert all("=" not in option for option in old["SecurityOptions"])
    assert "seccomp" in old["SecurityOptions"]
    new = daemon.request("GET", "/v1.25/info").json()
    assert "ExecutionDriver" not in new
    assert "name=seccomp,profile=default" in new["SecurityOptions"]


def _older_than(version: str):
    limit = tuple(int(p) for p in version.split("."))
    return lambda other: limit < tuple(int(p) for p in other.split("."))


def test_create_request_rules():
    request = CreateRequest(
        image="busybox",
        host_config=HostConfig(
            auto_remove=True,
            cpu_shares=1,
            kernel_memory_tcp=5,
            mounts=[MountConfig(type="bind", bind_options=BindOptions(non_recursive=True))],
        ),
    )
    oldest = versions.create_request(request, _older_than("1.12")).host_config
    assert (oldest.auto_remove, oldest.cpu_shares, oldest.ipc_mode) == (False, 2, "shareable")
    assert oldest.kernel_memory_tcp == 0
    assert oldest.mounts and oldest.mounts[0].bind_options
    assert oldest.mounts[0].bind_options.non_recursive is False
    at_1_40 = versions.create_request(request, _older_than("1.40")).host_config
    assert at_1_40 == request.host_config
    at_1_24 = versions.create_request(request, _older_than("1.24")).host_config
    assert (at_1_24.auto_remove, at_1_24.cpu_shares) == (False, 1)
    kept = attrs.evolve(request, host_config=attrs.evolve(request.host_config, ipc_mode="private"))
    assert versions.create_request(kept, _older_than("1.30")).host_config.ipc_mode == "private"
    update = HostConfig(pids_limit=10)
    assert versions.update_request(update, _older_than("1.39")).pids_limit is None
    assert versions.update_request(update, _older_than("1.40")).pids_limit == 10


def test_stats_answer_before_1_21():
    document = {
        "read": "t",
        "id": "x",
        "name": "/n",
        "networks": {"eth0": {"rx_bytes": 3, "tx_bytes": 4}, "eth1": {"rx_bytes": 5}},
    }
    old = versions.stats_answer(document, _older_than("1.20"))
    assert set(old) == {"read", "network"}
    assert old["network"]["rx_bytes"] == 8 and old["network"]["tx_bytes"] == 4
    assert versions.stats_answer(document, _older_than("1.21")) is document
