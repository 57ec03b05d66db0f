"""Old API versions, raw HTTP side by side: our daemon and a real dockerd 20.10 asked the same
thing at the same version answer alike (status, content type, shape, values).

dockerd keeps behaviours for clients down to API 1.12 (its routers' ``versions.LessThan``
checks); each test takes one of them at versions on both sides of where it changes.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import tarfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import attrs
import docker as docker_sdk
import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import docker_env
from tests.conftest import Reply, docker_load, http_request, module_daemon

pytestmark = pytest.mark.interop

BUSYBOX = "busybox:latest"


@attrs.frozen
class Side:
    name: str
    host: str

    def request(
        self, method: str, path: str, body: object = None, media: str = "application/json"
    ) -> Reply:
        """``body``: bytes as they are, anything else as JSON."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        headers = {"Content-Type": media} if data is not None else {}
        return http_request(self.host.removeprefix("unix://"), method, path, headers, data)

    def create(self, version: str, name: str, body: dict | None = None) -> str:
        reply = self.request(
            "POST",
            f"/v{version}/containers/create?name={name}",
            {"Image": BUSYBOX, **(body or {})},
        )
        assert reply.status == 201, (self.name, reply.body)
        return reply.json()["Id"]

    def inspect(self, name: str, version: str = "1.41") -> dict:
        reply = self.request("GET", f"/v{version}/containers/{name}/json")
        assert reply.status == 200, (self.name, reply.body)
        return reply.json()


@pytest.fixture(scope="module")
def sides(real_dockerd, tmp_path_factory) -> Iterator[tuple[Side, Side]]:
    """``(ours, dockerd)``, both holding busybox."""
    base = tmp_path_factory.mktemp("versions-interop")
    archive = base / "busybox.tar"
    archive.write_bytes(image_archive([busybox_rootfs()], [BUSYBOX]))
    real_dockerd.docker("load", "-i", str(archive))
    with module_daemon(base) as daemon:
        docker_load(daemon.host, archive)
        pair = (Side("ours", daemon.host), Side("dockerd", real_dockerd.host))
        try:
            yield pair
        finally:
            for side in pair[1:]:  # ours goes with its daemon
                for container in side.request("GET", "/containers/json?all=1").json():
                    if any(n.startswith("/versions-") for n in container["Names"]):
                        side.request("DELETE", f"/containers/{container['Id']}?force=1&v=1")


def unique() -> str:
    return f"versions-{secrets.token_hex(4)}"


def without_ids(text: bytes) -> bytes:
    return re.sub(rb"[0-9a-f]{64}", b"<id>", text)


def test_version_bounds_and_error_forms_as_dockerd(sides):
    """1.12 is the oldest version served; up to 1.23 errors are plain text, after JSON."""
    cases = [
        ("GET", "/v1.11/version"),
        ("GET", "/v1.42/version"),
        ("GET", "/v1.12/versions-no-such-route"),
        ("GET", "/v1.23/containers/versions-missing/json"),
        ("GET", "/v1.24/containers/versions-missing/json"),
        ("GET", "/v1.12/containers/versions-missing/json"),
    ]
    for method, path in cases:
        ours, theirs = (side.request(method, path) for side in sides)
        assert (ours.status, ours.headers["content-type"]) == (
            theirs.status,
            theirs.headers["content-type"],
        ), path
        if "text/plain" in ours.headers["content-type"]:
            assert ours.body == theirs.body, path
        else:
            assert ours.json() == theirs.json(), path
    for side in sides:
        for version in ("1.12", "1.23"):
            reply = side.request("GET", f"/v{version}/version")
            assert reply.status == 200, side.name
            assert reply.json()["MinAPIVersion"] == "1.12", side.name


def test_kill_of_a_stopped_container_before_1_20(sides):
    name = unique()
    answers = []
    for side in sides:
        side.create("1.41", name, {"Cmd": ["true"]})
        old = side.request("POST", f"/v1.19/containers/{name}/kill")
        new = side.request("POST", f"/v1.20/containers/{name}/kill")
        bad = side.request("POST", f"/v1.19/containers/{name}/kill?signal=NOPE")
        answers.append([(r.status, without_ids(r.body)) for r in (old, new, bad)])
    assert answers[0] == answers[1]
    assert [status for status, _ in answers[0]] == [204, 409, 400]


def test_start_with_a_host_config_before_1_24(sides):
    """Before 1.24 a HostConfig on start replaces the container's (here its restart policy
    and memory limit); from 1.24 a body is refused."""
    name = unique()
    host_config = {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                   "Memory": 64 * 1024 * 1024}  # fmt: skip
    seen = []
    for side in sides:
        side.create("1.41", name, {"Cmd": ["sleep", "30"]})
        refused = side.request("POST", f"/v1.24/containers/{name}/start", host_config)
        started = side.request("POST", f"/v1.23/containers/{name}/start", host_config)
        host = side.inspect(name)["HostConfig"]
        limit = exec_output(
            side,
            name,
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
            "|| cat /sys/fs/cgroup/memory.max",
        )
        seen.append(
            (
                refused.status,
                refused.json(),
                started.status,
                host["RestartPolicy"],
                host["Memory"],
                host["MemorySwap"],
                limit.strip(),
            )
        )
        side.request("DELETE", f"/containers/{name}?force=1")
    assert seen[0] == seen[1]
    assert seen[0][0] == 400 and seen[0][2] == 204
    assert seen[0][6] == str(64 * 1024 * 1024).encode()


def exec_output(side: Side, name: str, script: str) -> bytes:
    created = side.request(
        "POST",
        f"/containers/{name}/exec",
        {"Cmd": ["sh", "-c", script], "AttachStdout": True, "AttachStderr": True},
    )
    started = side.request("POST", f"/exec/{created.json()['Id']}/start", {"Detach": False})
    # The multiplexed stream: each frame an 8-byte header (its size last), then its bytes.
    stream, output = started.body, b""
    while stream:
        size = int.from_bytes(stream[4:8], "big")
        output, stream = output + stream[8 : 8 + size], stream[8 + size :]
    return output


def test_binds_given_on_start_before_1_24(sides, tmp_path):
    """docker-py 1.x's ``start(container, binds=...)``: host paths bound on start."""
    (tmp_path / "note").write_text("from the host\n")
    seen = []
    for side in sides:
        name = unique()
        side.create("1.23", name, {"Cmd": ["sleep", "30"], "Volumes": {"/h": {}}})
        reply = side.request(
            "POST", f"/v1.23/containers/{name}/start", {"Binds": [f"{tmp_path}:/h:ro"]}
        )
        mounts = [(m["Destination"], m["Source"], m["RW"]) for m in side.inspect(name)["Mounts"]]
        output = exec_output(side, name, "cat /h/note; touch /h/x 2>/dev/null; echo $?")
        seen.append((reply.status, side.inspect(name)["HostConfig"]["Binds"], mounts, output))
        side.request("DELETE", f"/containers/{name}?force=1&v=1")
    assert seen[0] == seen[1]
    assert seen[0][2] == [("/h", str(tmp_path), False)]


def test_info_before_1_25_and_1_39(sides):
    ours, theirs = (side.request("GET", "/v1.24/info").json() for side in sides)
    assert ours["ExecutionDriver"] == theirs["ExecutionDriver"] == "<not supported>"
    assert ours["SecurityOptions"] == theirs["SecurityOptions"] == ["seccomp"]
    ours, theirs = (side.request("GET", "/v1.38/info").json() for side in sides)
    assert "ExecutionDriver" not in ours and "ExecutionDriver" not in theirs
    assert ours["SecurityOptions"] == theirs["SecurityOptions"]
    assert ours["KernelVersion"] == theirs["KernelVersion"]


#: /info keys that state this host, which our /info must state as dockerd does.
HOST_KEYS = (
    "MemoryLimit", "SwapLimit", "CpuCfsPeriod", "CpuCfsQuota", "CPUShares", "CPUSet",
    "PidsLimit", "OomKillDisable", "CgroupDriver", "CgroupVersion", "IPv4Forwarding",
    "BridgeNfIptables", "BridgeNfIp6tables", "KernelVersion", "OperatingSystem", "OSVersion",
    "OSType", "Architecture", "NCPU", "MemTotal", "GenericResources", "Isolation", "Name",
    "SecurityOptions", "HttpProxy", "HttpsProxy", "NoProxy", "Labels", "ExperimentalBuild",
    "Debug", "LoggingDriver",
)  # fmt: skip


def test_info_states_this_host_as_dockerd(sides):
    """Key by key with dockerd's /info on the same host. Kernel memory limits are refused by
    this engine (unapplied.py), so it reports them absent whatever the kernel has."""
    ours, theirs = (side.request("GET", "/info").json() for side in sides)
    assert set(theirs) - set(ours) == set()
    differing = {key: (ours[key], theirs[key]) for key in HOST_KEYS if ours[key] != theirs[key]}
    assert differing == {}
    assert ours["KernelMemory"] is False and ours["KernelMemoryTCP"] is False
    memory = "/sys/fs/cgroup/memory"
    if theirs["CgroupVersion"] == "1":
        assert theirs["KernelMemoryTCP"] == os.path.exists(
            f"{memory}/memory.kmem.tcp.limit_in_bytes"
        )
    # dockerd warns of what is missing; here what dockerd has and we refuse is the difference.
    refused = ["WARNING: No kernel memory TCP limit support"] if theirs["KernelMemoryTCP"] else []
    assert sorted(ours["Warnings"] or []) == sorted([*(theirs["Warnings"] or []), *refused])
    assert ours["Swarm"].keys() == theirs["Swarm"].keys()
    for key in ("ContainerdCommit", "RuncCommit", "InitCommit"):
        assert ours[key].keys() == theirs[key].keys() == {"ID", "Expected"}


def test_inspect_shapes_before_1_21(sides, tmp_path):
    name = unique()
    body = {
        "Cmd": ["true"],
        "HostConfig": {"Binds": [f"{tmp_path}:/h:ro", f"{name}:/data"], "Memory": 64 << 20,
                       "CpuShares": 512},
    }  # fmt: skip
    for side in sides:
        side.create("1.41", name, body)
    for version in ("1.19", "1.20", "1.21"):
        ours, theirs = (side.inspect(name, version) for side in sides)
        assert list(ours) == list(theirs), version
        assert set(ours["Config"]) == set(theirs["Config"]), version
        assert set(ours["NetworkSettings"]) == set(theirs["NetworkSettings"]), version
    ours, theirs = (side.inspect(name, "1.19") for side in sides)
    for key in ("Memory", "MemorySwap", "CpuShares", "Cpuset", "MacAddress", "VolumeDriver"):
        assert ours["Config"][key] == theirs["Config"][key], key
    assert ours["VolumesRW"] == theirs["VolumesRW"] == {"/h": False, "/data": True}
    assert ours["Volumes"]["/h"] == theirs["Volumes"]["/h"] == str(tmp_path)
    for side in sides:
        side.request("DELETE", f"/containers/{name}?v=1")
        side.request("DELETE", f"/volumes/{name}")


def test_create_defaults_of_older_clients(sides):
    """AutoRemove is the client's before 1.25, IPC is shareable by default before 1.40,
    CPU shares are clamped before 1.19, update ignores PidsLimit before 1.40."""
    cases = [
        ("1.24", {"AutoRemove": True}),
        ("1.25", {"AutoRemove": True}),
        ("1.39", {}),
        ("1.40", {}),
        ("1.18", {"CpuShares": 1}),
        ("1.19", {"CpuShares": 1}),
    ]
    seen: list[list[tuple]] = [[], []]
    for index, side in enumerate(sides):
        for version, host_config in cases:
            name = unique()
            side.create(version, name, {"Cmd": ["true"], "HostConfig": host_config})
            for update_version in ("1.39", "1.40"):
                reply = side.request(
                    "POST", f"/v{update_version}/containers/{name}/update", {"PidsLimit": 50}
                )
                host = side.inspect(name)["HostConfig"]
                seen[index].append((version, update_version, reply.status, host["PidsLimit"]))
            host = side.inspect(name)["HostConfig"]
            seen[index].append((version, host["AutoRemove"], host["IpcMode"], host["CpuShares"]))
            side.request("DELETE", f"/containers/{name}")
    assert seen[0] == seen[1]
    assert ("1.24", False, "shareable", 0) in seen[0]
    assert ("1.40", False, "private", 0) in seen[0]
    assert ("1.18", False, "shareable", 2) in seen[0]


def test_wait_images_and_commit_before_their_versions(sides):
    """wait takes no condition before 1.30; images' ``filter`` counts before 1.41 only;
    commit does not pause by default at 1.12."""
    name, tag = unique(), unique()
    seen = []
    for side in sides:
        side.create("1.41", name, {"Cmd": ["sh", "-c", "exit 3"]})
        assert side.request("POST", f"/containers/{name}/start").status == 204
        side.request("POST", f"/containers/{name}/wait")
        wait = side.request("POST", f"/v1.29/containers/{name}/wait?condition=versions-bogus")
        assert side.request("POST", f"/images/{BUSYBOX}/tag?repo={tag}&tag=x").status == 201
        old, new = [
            sorted(t for image in side.request("GET", path).json() for t in image["RepoTags"])
            for path in (f"/v1.40/images/json?filter={tag}", f"/v1.41/images/json?filter={tag}")
        ]
        # At 1.41 every image is listed: the session's dockerd holds other tests' images too.
        unfiltered = f"{tag}:x" in new and len(new) > 1
        seen.append((wait.status, wait.json()["StatusCode"], old, unfiltered))
        side.request("DELETE", f"/images/{tag}:x")
        side.request("DELETE", f"/containers/{name}")
    assert seen[0] == seen[1]
    assert seen[0][2:] == ([f"{tag}:x"], True)


def test_commit_pauses_from_1_13(sides):
    """At 1.12 commit does not pause by default, from 1.13 it does; the ``commit`` event
    comes between the pause and the unpause."""
    seen = []
    name = unique()
    for side in sides:
        side.create("1.41", name, {"Cmd": ["sleep", "30"]})
        side.request("POST", f"/containers/{name}/start")
        since = f"{time.time():.9f}"
        ids = []
        for version in ("1.12", "1.13"):
            path = f"/v{version}/commit?container={name}&repo={name}&tag={version}&comment=c"
            reply = side.request("POST", path, {})
            assert reply.status == 201, (side.name, reply.body)
            ids.append(reply.json()["Id"])
        until = f"{time.time() + 1:.9f}"
        filters = urllib.parse.quote(
            json.dumps({"container": [name], "event": ["pause", "unpause", "commit"]})
        )
        events = side.request("GET", f"/events?since={since}&until={until}&filters={filters}")
        actions = []
        for line in events.body.splitlines():
            event = json.loads(line)
            attributes = event["Actor"]["Attributes"]
            if event["Action"] == "commit":
                assert attributes["imageID"] == ids.pop(0), side.name
            actions.append((event["Action"], attributes.get("imageRef"), attributes.get("comment")))
        seen.append(actions)
        for version in ("1.12", "1.13"):
            side.request("DELETE", f"/images/{name}:{version}")
        side.request("DELETE", f"/containers/{name}?force=1")
    assert seen[0] == seen[1]
    assert [action for action, _, _ in seen[0]] == ["commit", "pause", "commit", "unpause"]


def test_stats_before_1_21(sides):
    name = unique()
    shapes = []
    for side in sides:
        side.create("1.41", name, {"Cmd": ["sleep", "30"]})
        side.request("POST", f"/containers/{name}/start")
        old = side.request("GET", f"/v1.20/containers/{name}/stats?stream=false").json()
        shapes.append((set(old), old["network"]))
        side.request("DELETE", f"/containers/{name}?force=1")
    assert shapes[0] == shapes[1]


def test_build_messages_before_1_30(sides, tmp_path):
    context = tmp_path / "context.tar"
    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL versions=1\n")
    subprocess.run(["tar", "-C", str(tmp_path), "-cf", str(context), "Dockerfile"], check=True)
    seen = []
    for side in sides:
        counts = []
        for version in ("1.29", "1.30"):
            reply = side.request(
                "POST", f"/v{version}/build", context.read_bytes(), "application/x-tar"
            )
            assert reply.status == 200, (side.name, reply.body)
            counts.append(sum(1 for line in reply.body.splitlines() if b'"aux"' in line))
        seen.append(counts)
    assert seen[0] == seen[1] == [0, 1]


def old_cli(host: str, version: str, *args: str) -> str:
    env = {**docker_env(host), "DOCKER_API_VERSION": version}
    result = subprocess.run(
        ["/usr/bin/docker", *args], env=env, capture_output=True, text=True, timeout=60
    )
    return f"{result.stdout}{result.stderr}exit {result.returncode}"


@pytest.mark.skipif(not Path("/usr/bin/docker").exists(), reason="Debian's docker.io CLI")
def test_docker_20_10_cli_at_old_versions(sides):
    """Debian's docker CLI 20.10 speaks any version from 1.12: run, ps, inspect, rm alike."""
    for version in ("1.12", "1.23"):
        outputs = []
        for side in sides:
            name = unique()
            lines = [
                old_cli(side.host, version, "run", "--name", name, BUSYBOX, "sh", "-c", "echo hi; exit 2"),
                # dockerd records the exit a moment after its old wait answers: wait again.
                old_cli(side.host, version, "wait", name),
                old_cli(side.host, version, "ps", "-a", "--filter", f"name={name}", "--format",
                        "{{.Status}}"),
                old_cli(side.host, version, "inspect", "-f", "{{.State.ExitCode}}", name),
                old_cli(side.host, version, "rm", name).replace(name, "<name>"),
            ]  # fmt: skip
            outputs.append(lines)
        assert outputs[0] == outputs[1], version


def test_docker_py_at_1_24(sides):
    """docker-py at the oldest version it speaks: ``remove=True`` is its own removal there
    (the daemon drops AutoRemove before 1.25), errors are JSON again."""
    seen = []
    name = unique()
    for side in sides:
        client = docker_sdk.DockerClient(base_url=side.host, version="1.24")
        try:
            output = client.containers.run(BUSYBOX, ["echo", "hi"], name=name, remove=True)
            left = client.containers.list(all=True, filters={"name": name})
            with pytest.raises(docker_sdk.errors.NotFound) as missing:
                client.containers.get(name)
            seen.append((output, left, str(missing.value.explanation)))
        finally:
            client.close()
    assert seen[0] == seen[1]
    assert seen[0][0] == b"hi\n" and seen[0][1] == []


def test_copy_before_1_24(sides):
    """``POST /containers/{id}/copy``, docker cp before 1.24: a tar of the path with its
    symlinks followed, a directory's contents at the top; from 1.24 an empty 404."""
    name = unique()
    seen = []
    for side in sides:
        side.create("1.41", name, {"Cmd": ["true"]})
        answers = []
        for resource in ("/bin/sh", "etc/passwd", "/bin"):
            reply = side.request("POST", f"/v1.23/containers/{name}/copy", {"Resource": resource})
            with tarfile.open(fileobj=io.BytesIO(reply.body)) as archive:
                members = [(m.name, m.type, m.size) for m in archive.getmembers()]
            answers.append((reply.status, reply.headers["content-type"], members[:3]))
        for version, resource in (("1.23", "/nope"), ("1.23", ""), ("1.24", "/bin")):
            reply = side.request(
                "POST", f"/v{version}/containers/{name}/copy", {"Resource": resource}
            )
            answers.append((reply.status, reply.body))
        seen.append(answers)
        side.request("DELETE", f"/containers/{name}")
    assert seen[0] == seen[1]
    assert seen[0][0][2][0][0] == "busybox"


def test_pull_platform_from_1_32(sides):
    """A pull's ``platform`` counts from 1.32: before, even one that cannot be parsed is not
    looked at (the pull fails on the registry that is not there instead)."""
    statuses = []
    for side in sides:
        statuses.append(
            [
                side.request(
                    "POST",
                    f"/v{version}/images/create?fromImage=127.0.0.1:1/versions&tag=1"
                    "&platform=bogus/x/y/z",
                ).status
                for version in ("1.31", "1.32")
            ]
        )
    assert statuses[0] == statuses[1] == [500, 400]
