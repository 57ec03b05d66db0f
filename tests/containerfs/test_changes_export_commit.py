"""GET /containers/{id}/changes, GET /containers/{id}/export and POST /commit on a real daemon."""

from __future__ import annotations

import io
import json
import tarfile
import time
from urllib.parse import quote

import pytest

from tests.containerfs.conftest import start_ready
from tests.containers.engine_api import Api

SCRIPT = (
    "mkdir -p /tmp/dir/sub; echo x > /tmp/dir/x.txt; echo y > /tmp/dir/sub/y.txt; "
    "rm /etc/group; echo mod >> /etc/passwd; rm -r /srv/data/sub; "
)


@pytest.fixture(scope="module")
def changed(api: Api) -> str:
    container = start_ready(api, SCRIPT)
    yield container
    api.call("DELETE", f"/containers/{container}?force=1")


EXPECTED = {
    ("/tmp", 0),
    ("/tmp/dir", 1),
    ("/tmp/dir/sub", 1),
    ("/tmp/dir/sub/y.txt", 1),
    ("/tmp/dir/x.txt", 1),
    ("/etc", 0),
    ("/etc/passwd", 0),
    ("/etc/group", 2),
    ("/srv", 0),
    ("/srv/data", 0),
    ("/srv/data/sub", 2),
    ("/ready", 1),
}


def test_changes_kinds_parents_and_whiteouts(api, changed):
    reply = api.call("GET", f"/containers/{changed}/changes")
    assert reply.status == 200, reply.body
    found = [(c["Path"], c["Kind"]) for c in reply.json()]
    assert set(found) == EXPECTED
    paths = [path for path, _kind in found]
    for path in paths:  # parents come before what changed below them
        parent = path.rpartition("/")[0]
        assert not parent or paths.index(parent) < paths.index(path)


def test_changes_of_a_stopped_container_and_an_unknown_one(api):
    container = api.create(["sh", "-c", "echo new > /srv/new.txt"])
    api.start(container)
    assert api.wait(container)["StatusCode"] == 0
    reply = api.call("GET", f"/containers/{container}/changes")
    assert reply.json() == [{"Path": "/srv", "Kind": 0}, {"Path": "/srv/new.txt", "Kind": 1}]
    api.call("DELETE", f"/containers/{container}")
    reply = api.call("GET", "/containers/nosuch/changes")
    assert reply.status == 404 and reply.json() == {"message": "No such container: nosuch"}


def test_export_is_the_root_filesystem_without_mounts(api, changed):
    reply = api.call("GET", f"/containers/{changed}/export")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.headers.get("transfer-encoding") == "chunked"
    with tarfile.open(fileobj=io.BytesIO(reply.body)) as archive:
        names = {m.name.rstrip("/"): m for m in archive.getmembers()}
        passwd = archive.extractfile("etc/passwd")
        assert passwd is not None and passwd.read().endswith(b"mod\n")
        assert "etc/group" not in names and "tmp/dir/sub/y.txt" in names
        assert names["bin/sh"].issym()
        # the kernel's mounts are there as directories, never their contents
        assert not any(name.startswith(("proc/", "sys/")) for name in names)
        hosts = names.get("etc/hosts")
        assert hosts is None or hosts.size == 0


def test_commit_makes_a_child_image(api, changed):
    cmd, env = quote('CMD ["x"]'), quote("ENV Z=1")
    query = (
        f"container={changed}&repo=cimg&tag=v1&author=me&comment=msg&changes={cmd}&changes={env}"
    )
    since = time.time() - 1
    reply = api.call("POST", f"/commit?{query}")
    assert reply.status == 201, reply.body
    filters = quote(json.dumps({"container": [changed]}))
    events = api.call("GET", f"/events?since={since}&until={time.time() + 1}&filters={filters}")
    actions = [json.loads(line)["Action"] for line in events.body.splitlines() if line]
    # Paused while committing, with dockerd's commit event between.
    assert actions[-3:] == ["pause", "commit", "unpause"]
    image_id = reply.json()["Id"]
    image = api.call("GET", "/images/cimg:v1/json").json()
    assert image["Id"] == image_id
    assert image["Author"] == "me" and image["Comment"] == "msg"
    assert image["Config"]["Cmd"] == ["x"] and "Z=1" in image["Config"]["Env"]
    assert image["Container"] == changed
    assert image["ContainerConfig"]["Cmd"][:2] == ["sh", "-c"]
    assert api.inspect(changed)["State"]["Status"] == "running"  # paused and resumed
    # the new image has the container's files
    run = api.create(["cat", "/tmp/dir/sub/y.txt"], Image="cimg:v1")
    api.start(run)
    assert api.wait(run)["StatusCode"] == 0
    assert api.logs(run) == b"y\n"
    api.call("DELETE", f"/containers/{run}")


def test_commit_bad_input(api, changed):
    reply = api.call("POST", f"/commit?container={changed}&changes={quote('FROB x')}")
    assert reply.status == 400 and "frob is not a valid change command" in reply.json()["message"]
    reply = api.call("POST", f"/commit?container={changed}", {"Cmd": "not-a-list", "Env": 3})
    assert reply.status == 400 and "Env" in reply.json()["message"]
    reply = api.call("POST", "/commit?container=nosuch")
    assert reply.status == 404
    reply = api.call("POST", f"/commit?container={changed}&repo=Bad%20Name")
    assert reply.status == 400


def test_commit_body_overrides_and_is_merged(api, changed):
    body = {"Cmd": ["echo", "hi"], "Env": ["A=1"], "Labels": {"k": "v"}}
    reply = api.call("POST", f"/commit?container={changed}&pause=0", body)
    assert reply.status == 201, reply.body
    image = api.call("GET", f"/images/{reply.json()['Id']}/json").json()
    assert image["Config"]["Cmd"] == ["echo", "hi"]
    assert image["Config"]["Labels"] == {"k": "v"}
    assert "A=1" in image["Config"]["Env"]


def commit_of(api: Api, cmd: list[str], image: str, query: str = "") -> str:
    container = api.create(cmd, Image=image)
    api.start(container)
    assert api.wait(container)["StatusCode"] == 0
    reply = api.call("POST", f"/commit?container={container}{query}")
    assert reply.status == 201, reply.body
    api.call("DELETE", f"/containers/{container}")
    return reply.json()["Id"]


def test_parents_are_kept_for_their_children_and_deleted_with_them(api):
    middle = commit_of(api, ["sh", "-c", "echo 1 > /one"], "busybox")
    child = commit_of(api, ["sh", "-c", "echo 2 > /two"], middle, "&repo=chain&tag=1")
    assert api.call("GET", f"/images/{middle}/json").json()["Id"] == middle
    assert api.call("GET", "/images/chain:1/json").json()["Parent"] == middle
    listed = {image["Id"] for image in api.call("GET", "/images/json").json()}
    assert child in listed and middle not in listed  # intermediate: hidden without all
    listed = {image["Id"] for image in api.call("GET", "/images/json?all=1").json()}
    assert middle in listed
    reply = api.call("DELETE", f"/images/{middle}?force=1")
    assert reply.status == 409
    short = middle.removeprefix("sha256:")[:12]
    assert reply.json()["message"] == (
        f"conflict: unable to delete {short} (cannot be forced) - image has dependent child images"
    )
    reply = api.call("DELETE", "/images/chain:1")
    assert reply.status == 200, reply.body
    images = [d for d in reply.json() if d.get("Deleted") in (child, middle) or "Untagged" in d]
    assert images == [{"Untagged": "chain:1"}, {"Deleted": child}, {"Deleted": middle}]
    assert api.call("GET", "/images/busybox/json").status == 200


def test_deleting_the_last_tag_of_a_parent_only_untags_it(api):
    parent = commit_of(api, ["sh", "-c", "echo p > /p"], "busybox", "&repo=parent&tag=1")
    child = commit_of(api, ["sh", "-c", "echo c > /c"], "parent:1", "&repo=kid&tag=1")
    reply = api.call("DELETE", "/images/parent:1")
    assert reply.json() == [{"Untagged": "parent:1"}]
    assert api.call("GET", f"/images/{parent}/json").status == 200
    reply = api.call("DELETE", "/images/kid:1?noprune=1")
    assert reply.json()[:2] == [{"Untagged": "kid:1"}, {"Deleted": child}]  # then its layer
    assert api.call("DELETE", f"/images/{parent}").status == 200
