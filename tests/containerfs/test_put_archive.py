"""PUT /containers/{id}/archive: extraction inside the container only, and every bad input."""

from __future__ import annotations

import io
import os
import secrets
import tarfile
from urllib.parse import quote

import pytest

from tests.containerfs.conftest import container_in_state
from tests.containers.engine_api import Api


def tar_of(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file_entry(name: str, data: bytes, uid: int = 0, gid: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode, info.uid, info.gid = 0o640, uid, gid
    return info, data


def link_entry(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def put(api: Api, container: str, path: str, body: bytes, query: str = "", **headers: str):
    return api.daemon.request(
        "PUT",
        f"/v1.41/containers/{container}/archive?path={quote(path)}{query}",
        {"Content-Type": "application/x-tar", **headers},
        body,
    )


def read(api: Api, container: str, path: str) -> tuple[int, bytes]:
    reply = api.call("GET", f"/containers/{container}/archive?path={quote(path)}")
    if reply.status != 200:
        return reply.status, reply.body
    with tarfile.open(fileobj=io.BytesIO(reply.body)) as archive:
        member = archive.next()
        assert member is not None
        extracted = archive.extractfile(member)
        return 200, extracted.read() if extracted else b""


@pytest.fixture(scope="module", params=["running", "stopped"])
def container(request, api):
    script = "ln -s /../../../../etc /srv/dir-out; ln -s ../../../../../tmp /srv/tmp-out; "
    with container_in_state(api, request.param, script) as container:
        yield container


def test_extracts_and_answers_like_dockerd(api, container):
    body = tar_of([file_entry("put.txt", b"hello\n")])
    # CLI 28 sends text/plain; dockerd answers 200 with an empty body
    reply = put(
        api, container, "/tmp", body, "&noOverwriteDirNonDir=true", **{"Content-Type": "text/plain"}
    )
    assert reply.status == 200, reply.body
    assert reply.headers["content-length"] == "0" and reply.body == b""
    assert read(api, container, "/tmp/put.txt") == (200, b"hello\n")


def test_ownership_comes_from_the_archive(api, container):
    body = tar_of([file_entry("owned.txt", b"x", uid=1234, gid=4321)])
    assert put(api, container, "/tmp", body).status == 200
    reply = api.call("GET", f"/containers/{container}/archive?path=/tmp/owned.txt")
    with tarfile.open(fileobj=io.BytesIO(reply.body)) as archive:
        member = archive.getmembers()[0]
    assert (member.uid, member.gid) == (1234, 4321)


def test_not_a_tar_is_refused_with_nothing_written(api, container):
    name = f"garbage-{secrets.token_hex(4)}"
    reply = put(api, container, "/tmp", b"this is not a tar archive at all\n" * 40)
    assert reply.status == 400
    assert "not a tar archive" in reply.json()["message"]
    # a tar cut short: its first file is whole, yet nothing at all may be written
    whole = tar_of([file_entry(name, b"a" * 600), file_entry("second", b"b" * 5000)])
    reply = put(api, container, "/tmp", whole[:2048])
    assert reply.status == 400, reply.body
    assert read(api, container, f"/tmp/{name}")[0] == 404


def test_missing_directory_and_a_file_as_directory(api, container):
    body = tar_of([file_entry("a", b"a")])
    reply = put(api, container, "/no/such/dir", body)
    assert reply.status == 404
    assert (
        reply.json()["message"] == f"Could not find the file /no/such/dir in container {container}"
    )
    reply = put(api, container, "/etc/passwd", body)
    assert reply.status == 400 and "not a directory" in reply.json()["message"]
    reply = api.daemon.request("PUT", f"/v1.41/containers/{container}/archive", {}, body)
    assert reply.status == 400
    assert put(api, "nosuch", "/tmp", body).status == 404


@pytest.mark.parametrize(
    "entries",
    [
        [file_entry("../../../../escape-dotdot", b"x")],
        [file_entry("/../../escape-abs/../../x", b"x")],
        [link_entry("out", "/"), file_entry("out/etc/escape-through-link", b"x")],
        [link_entry("up", "../../../../../../"), file_entry("up/escape-up", b"x")],
    ],
    ids=["dotdot", "absolute-dotdot", "through-symlink", "through-relative-symlink"],
)
def test_hostile_archives_never_reach_the_host(api, container, entries):
    before = set(os.listdir("/")), set(os.listdir("/etc"))
    reply = put(api, container, "/tmp", tar_of(entries))
    assert reply.status in (200, 400), reply.body
    assert (set(os.listdir("/")), set(os.listdir("/etc"))) == before


def test_destination_symlinks_resolve_inside_the_container(api, container):
    name = f"via-link-{secrets.token_hex(4)}"
    # /srv/dir-out -> /../../../../etc is the container's /etc, never the host's
    assert put(api, container, "/srv/dir-out", tar_of([file_entry(name, b"in\n")])).status == 200
    assert not os.path.exists(f"/etc/{name}")
    assert read(api, container, f"/etc/{name}") == (200, b"in\n")
    assert put(api, container, "/srv/tmp-out", tar_of([file_entry(name, b"t\n")])).status == 200
    assert not os.path.exists(f"/tmp/{name}")
    assert read(api, container, f"/tmp/{name}") == (200, b"t\n")


def test_copy_uid_gid_gives_the_container_user(api):
    container = api.create(["sh", "-c", "exec sleep 3600"], User="nobody")
    api.start(container)
    try:
        body = tar_of([file_entry("mine.txt", b"x", uid=7, gid=8)])
        assert put(api, container, "/tmp", body, "&copyUIDGID=1").status == 200
        reply = api.call("GET", f"/containers/{container}/archive?path=/tmp/mine.txt")
        with tarfile.open(fileobj=io.BytesIO(reply.body)) as archive:
            member = archive.getmembers()[0]
        assert (member.uid, member.gid) == (65534, 65534)
    finally:
        api.call("DELETE", f"/containers/{container}?force=1")


def test_no_overwrite_dir_non_dir(api, container):
    directory = tarfile.TarInfo("etc")
    directory.type, directory.mode = tarfile.DIRTYPE, 0o755
    onto_file = tar_of([file_entry("plainfile", b"f"), (directory, None)])
    assert put(api, container, "/tmp", tar_of([file_entry("plainfile", b"f")])).status == 200
    clash = tarfile.TarInfo("plainfile")
    clash.type, clash.mode = tarfile.DIRTYPE, 0o755
    reply = put(api, container, "/tmp", tar_of([(clash, None)]), "&noOverwriteDirNonDir=true")
    assert reply.status == 400, reply.body
    reply = put(
        api, container, "/", tar_of([file_entry("tmp", b"x")]), "&noOverwriteDirNonDir=true"
    )
    assert reply.status == 400, reply.body
    assert read(api, container, "/tmp/plainfile") == (200, b"f")
    assert put(api, container, "/tmp", onto_file).status == 200
