"""Every documented filter of ps, volume ls and the prunes, unknown ones refused; what prunes
reclaim; system df and system prune (side by side with dockerd in
tests/images/test_tags_filters_interop.py)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from collections.abc import Iterator

import docker
import pytest

from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import Daemon, docker_load


@pytest.fixture(scope="module")
def daemon(busybox_served) -> Daemon:
    return busybox_served.daemon


@pytest.fixture
def client(daemon) -> Iterator[docker.DockerClient]:
    api = docker.DockerClient(base_url=daemon.host, version="1.41")
    try:
        yield api
        for container in api.containers.list(all=True):
            container.remove(force=True)
        api.volumes.prune()
    finally:
        api.close()


def docker_cli_lines(daemon: Daemon, *args: str) -> list[str]:
    result = subprocess.run(
        [docker_cli(), *args], env=docker_env(daemon.host), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def names(client: docker.DockerClient, **filters) -> list[str]:
    return sorted(c.name for c in client.containers.list(all=True, filters=filters))


def refused(daemon: Daemon, method: str, path: str, filters: dict) -> str:
    query = urllib.parse.urlencode({"filters": json.dumps(filters)})
    reply = daemon.request(method, f"/v1.41{path}?{query}")
    assert reply.status == 400, reply.body
    return reply.json()["message"]


def test_ps_filters(daemon, client, tmp_path):
    client.volumes.create("va")
    first = client.containers.run(
        "busybox", "sleep 60", name="f1", detach=True, volumes={"va": {"bind": "/data"}}
    )
    client.containers.run(
        "busybox", "sleep 60", name="f2", detach=True, volumes={str(tmp_path): {"bind": "/h"}}
    )
    client.containers.create("busybox", "true", name="f3x", ports={"80/tcp": None})
    assert names(client, volume="va") == names(client, volume="/data") == ["f1"]
    assert names(client, volume=str(tmp_path)) == names(client, volume="/h") == ["f2"]
    assert names(client, volume="nothing") == []
    # name and id are regular expressions, as dockerd's
    assert names(client, name="^f[0-9]$") == ["f1", "f2"]
    assert names(client, name="x$") == names(client, name="/f3") == ["f3x"]
    assert names(client, id=f"^{first.id[:6]}") == ["f1"]
    network = client.networks.get("none")
    assert names(client, network="none") == names(client, network=network.id[:10])
    assert names(client, network="none") == ["f1", "f2", "f3x"]
    assert names(client, network="nonesuch") == []
    assert names(client, since="f1") == ["f2", "f3x"]
    assert names(client, before="f3x") == ["f1", "f2"]
    assert names(client, **{"is-task": "false"}) == ["f1", "f2", "f3x"]
    assert names(client, **{"is-task": "true"}) == []
    # What ps lists, as dockerd: a container that is not running lists no ports (the ports
    # of running ones: tests/containers/test_checks.py, on a daemon with the default bridge).
    assert names(client, expose="80") == names(client, expose="79-81/tcp") == []
    assert names(client, publish="80") == []
    # dockerd weighs isolation on Windows only
    assert names(client, isolation="default") == names(client, isolation="hyperv")
    assert names(client, isolation="hyperv") == ["f1", "f2", "f3x"]
    assert names(client, name="[") == []  # no error either, as dockerd
    assert refused(daemon, "GET", "/containers/json", {"status": ["bogus"]}) == (
        "Invalid filter 'status=bogus'"
    )
    assert "exited" in refused(daemon, "GET", "/containers/json", {"exited": ["abc"]})
    assert "port filter" in refused(daemon, "GET", "/containers/json", {"publish": ["abc"]})
    assert refused(daemon, "GET", "/containers/json", {"colour": ["red"]}) == (
        "Invalid filter 'colour'"
    )


def test_volume_ls_filters(daemon, client):
    client.volumes.create("la", labels={"team": "a"})
    client.volumes.create("lb", labels={"team": "b"})
    client.volumes.create("lc")
    client.containers.create("busybox", "true", volumes={"la": {"bind": "/d"}})

    def listed(**filters) -> list[str]:
        return sorted(v.name for v in client.volumes.list(filters=filters))

    assert listed(label="team") == ["la", "lb"]
    assert listed(label="team=b") == ["lb"]
    assert listed(dangling="true") == ["lb", "lc"]
    assert listed(dangling="false") == ["la"]
    assert listed(driver="local") == ["la", "lb", "lc"]
    assert listed(driver="loc") == []
    assert listed(name="l[ab]") == ["la", "lb"]
    assert refused(daemon, "GET", "/volumes", {"colour": ["red"]}) == "Invalid filter 'colour'"
    assert refused(daemon, "GET", "/volumes", {"dangling": ["maybe"]}) == (
        "Invalid filter 'dangling=[maybe]'"
    )


def test_container_prune_filters_and_reclaimed_space(daemon, client):
    kept = client.containers.create("busybox", "true", labels={"keep": "yes"})
    written = client.containers.run(
        "busybox", "sh -c 'head -c 300000 /dev/zero > /big'", labels={"keep": "no"}, detach=True
    )
    written.wait()
    assert client.containers.prune(filters={"until": "1h"}) == {
        "ContainersDeleted": None,
        "SpaceReclaimed": 0,
    }
    pruned = client.containers.prune(filters={"label!": "keep=yes"})
    assert pruned["ContainersDeleted"] == [written.id]
    assert pruned["SpaceReclaimed"] >= 300000
    assert client.containers.prune(filters={"label": "keep=no"})["ContainersDeleted"] is None
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    assert client.containers.prune(filters={"until": future})["ContainersDeleted"] == [kept.id]
    assert refused(daemon, "POST", "/containers/prune", {"colour": ["red"]}) == (
        "Invalid filter 'colour'"
    )


def test_volume_prune_at_141_takes_named_volumes_too(daemon, client):
    client.volumes.create("named", labels={"team": "a"})
    client.volumes.create("other")
    client.containers.run(
        "busybox", "sh -c 'head -c 200000 /dev/zero > /v/f'", volumes={"named": {"bind": "/v"}}
    )
    client.containers.prune()
    assert client.volumes.prune(filters={"label": "team=b"}) == {
        "VolumesDeleted": [],  # a list, never null
        "SpaceReclaimed": 0,
    }
    pruned = client.volumes.prune(filters={"label": "team"})
    assert pruned == {"VolumesDeleted": ["named"], "SpaceReclaimed": 200000}
    assert client.volumes.prune(filters={"all": "true"})["VolumesDeleted"] == ["other"]
    for bad in ({"until": ["1h"]}, {"colour": ["red"]}):
        assert (
            refused(daemon, "POST", "/volumes/prune", bad) == f"Invalid filter '{next(iter(bad))}'"
        )


def test_image_prune_filters(daemon, client, busybox_served):
    assert refused(daemon, "POST", "/images/prune", {"colour": ["red"]}) == (
        "Invalid filter 'colour'"
    )
    assert refused(daemon, "GET", "/images/json", {"dangling": ["maybe"]}) == (
        "Invalid filter 'dangling=[maybe]'"
    )
    # dockerd's rule: a false value prunes every unused image, else a true one must be there
    assert refused(daemon, "POST", "/images/prune", {"dangling": ["maybe"]}) == (
        "Invalid filter 'dangling=[maybe]'"
    )
    assert client.images.prune(filters={"dangling": ["maybe", "true"]})["ImagesDeleted"] is None
    image = client.images.get("busybox")
    image.tag("spare", "1")
    # until compares with the image's creation date (2024-01-02 for this busybox)
    assert client.images.prune(filters={"dangling": False, "until": "2024-01-01T00:00:00Z"}) == {
        "ImagesDeleted": None,
        "SpaceReclaimed": 0,
    }
    assert client.images.prune(filters={"dangling": False, "label": "x"})["ImagesDeleted"] is None
    try:
        pruned = client.images.prune(filters={"dangling": False, "label!": "x", "until": "1h"})
        assert pruned["ImagesDeleted"][:3] == [
            {"Untagged": "busybox:latest"},
            {"Untagged": "spare:1"},
            {"Deleted": image.id},
        ]
        assert pruned["SpaceReclaimed"] == image.attrs["Size"]
    finally:
        docker_load(daemon.host, busybox_served.archive)


def test_system_df_and_prune(daemon, client, busybox_served):
    client.volumes.create("vd")
    client.containers.run(
        "busybox", "sh -c 'head -c 100000 /dev/zero > /data/f; head -c 50000 /dev/zero > /big'",
        name="w1", volumes={"vd": {"bind": "/data"}},
    )  # fmt: skip
    client.containers.run("busybox", "sleep 60", name="w2", detach=True)
    usage = client.df()
    assert set(usage) == {
        "LayersSize", "Images", "Containers", "Volumes", "BuildCache", "BuilderSize",
    }  # fmt: skip
    image = client.images.get("busybox")
    assert usage["LayersSize"] == image.attrs["Size"]
    [listed] = usage["Images"]
    assert listed["Containers"] == 2 and listed["SharedSize"] == 0
    by_name = {c["Names"][0]: c for c in usage["Containers"]}
    assert by_name["/w1"]["SizeRw"] >= 50000
    assert by_name["/w1"]["SizeRootFs"] == by_name["/w1"]["SizeRw"] + image.attrs["Size"]
    assert "SizeRw" not in by_name["/w2"]  # nothing written: left out, as dockerd does
    [volume] = usage["Volumes"]
    assert volume["UsageData"] == {"Size": 100000, "RefCount": 1}
    assert usage["BuildCache"] == [] and usage["BuilderSize"] == 0
    verbose = docker_cli_lines(daemon, "system", "df", "-v", "--format", "{{json .}}")
    assert verbose  # the CLI reads every section
    [sized] = client.api.containers(all=True, size=True, filters={"name": "w1"})
    assert (sized["SizeRw"], sized["SizeRootFs"]) == (
        by_name["/w1"]["SizeRw"],
        by_name["/w1"]["SizeRootFs"],
    )
    # system prune -a --volumes: every step completes
    client.containers.get("w2").remove(force=True)
    prune = subprocess.run(
        [docker_cli(), "system", "prune", "-a", "-f", "--volumes"],
        env=docker_env(daemon.host), capture_output=True, text=True,
    )  # fmt: skip
    assert prune.returncode == 0, prune.stderr
    assert "Deleted Containers:" in prune.stdout and "Deleted Volumes:\nvd\n" in prune.stdout
    assert f"deleted: {image.id}" in prune.stdout
    assert client.images.list(all=True) == [] and client.volumes.list() == []
    docker_load(daemon.host, busybox_served.archive)
