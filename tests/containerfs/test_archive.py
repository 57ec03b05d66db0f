"""GET/HEAD/PUT /containers/{id}/archive against a real daemon: docker cp's wire rules."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from urllib.parse import quote

import pytest

from tests.containerfs.conftest import container_in_state, start_ready
from tests.containers.engine_api import Api


def stat_of(reply) -> dict:
    return json.loads(base64.b64decode(reply.headers["x-docker-container-path-stat"]))


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {m.name.rstrip("/"): m for m in archive.getmembers()}


def contents(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        extracted = archive.extractfile(name)
        assert extracted is not None
        return extracted.read()


def get(api: Api, container: str, path: str, method: str = "GET"):
    return api.call(method, f"/containers/{container}/archive?path={quote(path)}")


@pytest.fixture(scope="module", params=["running", "stopped"])
def container(request, api) -> str:
    """A container that changed its files: running (read through /proc/PID/root) or stopped
    (its snapshot mounted for each request)."""
    script = (
        "echo mod >> /etc/passwd; mkdir -p /tmp/dir/sub; echo y > /tmp/dir/sub/y.txt; "
        "ln -s ../../../../../../etc/shadow /srv/out-rel; ln -s /../../../../etc /srv/dir-out; "
    )
    with container_in_state(api, request.param, script) as container:
        yield container


def test_file_is_one_entry_with_its_stat(api, container):
    reply = get(api, container, "/etc/passwd")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/x-tar"
    found = members(reply.body)
    assert list(found) == ["passwd"]
    assert contents(reply.body, "passwd").endswith(b"mod\n")
    stat = stat_of(reply)
    assert stat["name"] == "passwd" and stat["mode"] & ~0o7777 == 0 and stat["linkTarget"] == ""
    assert stat["size"] == len(contents(reply.body, "passwd"))


def test_directory_and_its_contents(api, container):
    reply = get(api, container, "/tmp/dir")
    assert reply.status == 200, reply.body
    assert sorted(members(reply.body)) == ["dir", "dir/sub", "dir/sub/y.txt"]
    assert stat_of(reply)["mode"] == (1 << 31) | 0o755
    dotted = get(api, container, "/tmp/dir/.")
    assert sorted(members(dotted.body)) == [".", "./sub", "./sub/y.txt"]
    assert stat_of(dotted)["name"] == "."
    tmp = stat_of(get(api, container, "/tmp/", "HEAD"))
    assert tmp["name"] == "tmp" and tmp["mode"] == (1 << 31) | (1 << 20) | 0o777


def test_symlink_is_not_followed_unless_asked(api, container):
    reply = get(api, container, "/bin/sh")
    found = members(reply.body)
    assert found["sh"].issym() and found["sh"].linkname == "busybox"
    stat = stat_of(reply)
    assert stat["mode"] == (1 << 27) | 0o777 and stat["linkTarget"] == "/bin/busybox"


def test_symlinks_out_of_the_container_resolve_inside_it(api, container):
    for link in ("/srv/out-abs/", "/srv/out-rel/"):
        reply = get(api, container, link)
        assert reply.status == 400, (link, reply.body)  # a file, not a directory
    for link in ("/srv/out-abs", "/srv/out-rel"):
        stat = stat_of(get(api, container, link, "HEAD"))
        assert stat["linkTarget"] == "/etc/shadow"
    reply = get(api, container, "/srv/dir-out/shadow")
    assert reply.status == 200, reply.body
    assert contents(reply.body, "shadow") == b"container-shadow\n"
    reply = get(api, container, "/../../../../etc/shadow")
    assert contents(reply.body, "shadow") == b"container-shadow\n"


def test_missing_path_and_missing_parameter(api, container):
    reply = get(api, container, "/nope")
    assert reply.status == 404
    assert reply.json() == {"message": f"Could not find the file /nope in container {container}"}
    assert get(api, container, "/nope", "HEAD").status == 404
    reply = api.call("GET", f"/containers/{container}/archive")
    assert reply.status == 400
    assert reply.json() == {"message": "bad parameter: pathcannot be empty"}
    reply = get(api, "nosuch", "/etc")
    assert reply.status == 404 and reply.json() == {"message": "No such container: nosuch"}


def test_the_whole_root_without_the_kernels_filesystems(api, container):
    reply = get(api, container, "/")
    assert reply.status == 200, reply.body
    names = set(members(reply.body))
    assert "./etc/passwd" in names and "./tmp/dir/sub/y.txt" in names
    assert not any(name.startswith(("./proc/", "./sys/")) for name in names)
    assert stat_of(reply)["mode"] & (1 << 31)


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_volumes_and_bind_mounts_are_part_of_what_cp_sees(api, state, tmp_path):
    (tmp_path / "note").write_text("from the host\n")
    binds = {"HostConfig": {"Binds": [f"cpvol-{state}:/vol", f"{tmp_path}:/bound:ro"]}}
    container = start_ready(api, "echo in-volume > /vol/f;", **binds)
    try:
        if state == "stopped":
            assert api.call("POST", f"/containers/{container}/stop?t=0").status == 204
        assert contents(get(api, container, "/vol/f").body, "f") == b"in-volume\n"
        assert contents(get(api, container, "/bound/note").body, "note") == b"from the host\n"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo("put")
            info.size = 2
            archive.addfile(info, io.BytesIO(b"p\n"))
        reply = api.daemon.request(
            "PUT", f"/v1.41/containers/{container}/archive?path=/vol", {}, buffer.getvalue()
        )
        assert reply.status == 200, reply.body
        assert contents(get(api, container, "/vol/put").body, "put") == b"p\n"
        # the read-only bind mount stays read-only
        reply = api.daemon.request(
            "PUT", f"/v1.41/containers/{container}/archive?path=/bound", {}, buffer.getvalue()
        )
        assert reply.status >= 400 and not (tmp_path / "put").exists()
    finally:
        api.call("DELETE", f"/containers/{container}?force=1&v=1")
        api.call("DELETE", f"/volumes/cpvol-{state}")
