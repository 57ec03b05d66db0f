"""Image routes through a real daemon: what docker clients send, what they get back."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import tarfile
import time
import urllib.parse

import pytest

from tests.conftest import UnixHTTPConnection, http_request, restarted
from tests.images.conftest import busybox_rootfs, docker_archive, layer_tar, sha256


def messages(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.split(b"\r\n") if line.strip()]


def import_image(daemon, data: bytes, query: str) -> dict:
    reply = daemon.request(
        "POST",
        f"/v1.41/images/create?fromSrc=-&{query}",
        {"Content-Type": "application/x-tar"},
        data,
    )
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/json"
    return messages(reply.body)[-1]


def test_import_with_repo_carrying_tag_and_changes(daemon):
    query = urllib.parse.urlencode(
        [
            ("repo", "127.0.0.1:5001/research:v1"),
            ("changes", 'CMD ["/bin/sh"]'),
            ("changes", "ENV A=1"),
            ("message", "hi"),
        ]
    )
    status = import_image(daemon, busybox_rootfs(compress=True), query)["status"]
    assert status.startswith("sha256:")
    inspect = daemon.request("GET", "/v1.41/images/127.0.0.1:5001/research:v1/json").json()
    assert inspect["Id"] == status
    assert inspect["RepoTags"] == ["127.0.0.1:5001/research:v1"]
    # The whole container config, as dockerd writes it for an import with changes.
    assert {key: value for key, value in inspect["Config"].items() if value} == {
        "Cmd": ["/bin/sh"],
        "Env": ["A=1"],
    }
    assert inspect["Comment"] == "hi"
    assert inspect["RootFS"] == {"Type": "layers", "Layers": [sha256(busybox_rootfs())]}
    assert inspect["GraphDriver"]["Name"] in ("overlay", "vfs")
    # short id, bare hex and sha256: forms
    for name in (status, status.removeprefix("sha256:"), status.removeprefix("sha256:")[:12]):
        assert daemon.request("GET", f"/v1.41/images/{name}/json").json()["Id"] == status


def test_chunked_import_of_each_compression(daemon):
    for compression, payload in (
        ("plain", busybox_rootfs()),
        ("gzip", busybox_rootfs(compress=True)),
    ):
        connection = UnixHTTPConnection(daemon.socket_path)
        connection.putrequest(
            "POST", f"/v1.41/images/create?fromSrc=-&repo=chunked&tag={compression}"
        )
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for start in range(0, len(payload), 65536):
            piece = payload[start : start + 65536]
            connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("transfer-encoding") == "chunked"
        assert messages(response.read())[0]["status"].startswith("sha256:")
        connection.close()
    names = {
        tag for item in daemon.request("GET", "/images/json").json() for tag in item["RepoTags"]
    }
    assert names == {"chunked:plain", "chunked:gzip"}


def test_list_filters(daemon):
    import_image(daemon, busybox_rootfs(), "repo=alpha&tag=1")
    import_image(
        daemon, busybox_rootfs(extra={"x": b"x"}), "repo=beta&tag=2&changes=LABEL%20team%3Dinfra"
    )

    def names(filters):
        query = urllib.parse.urlencode({"filters": json.dumps(filters)})
        return sorted(
            t for i in daemon.request("GET", f"/images/json?{query}").json() for t in i["RepoTags"]
        )

    assert names({"reference": {"alpha": True}}) == ["alpha:1"]
    assert names({"reference": ["b*"]}) == ["beta:2"]
    assert names({"label": ["team=infra"]}) == ["beta:2"]
    assert names({"dangling": ["false"]}) == ["alpha:1", "beta:2"]
    bad = daemon.request("GET", "/images/json?filters=" + urllib.parse.quote('{"colour":["red"]}'))
    assert bad.status == 400 and bad.json() == {"message": "Invalid filter 'colour'"}
    listed = daemon.request("GET", "/images/json").json()
    assert {"Id", "RepoTags", "Created", "Size", "Labels"} <= set(listed[0])


def test_tag_is_201_and_rmi_reports_untagged_and_deleted(daemon):
    image_id = import_image(daemon, busybox_rootfs(), "repo=t1")["status"]
    reply = daemon.request("POST", "/v1.41/images/t1/tag?repo=docker.io%2Flibrary%2Ft2&tag=x")
    assert reply.status == 201 and reply.body == b""
    assert daemon.request("DELETE", "/v1.41/images/t2:x").json() == [{"Untagged": "t2:x"}]
    conflict = daemon.request("POST", "/v1.41/images/t1/tag?repo=t3")
    assert conflict.status == 201
    refused = daemon.request("DELETE", f"/v1.41/images/{image_id[7:19]}")
    assert refused.status == 409 and "must be forced" in refused.json()["message"]
    done = daemon.request("DELETE", f"/v1.41/images/{image_id[7:19]}?force=1").json()
    assert done[:3] == [{"Untagged": "t1:latest"}, {"Untagged": "t3:latest"}, {"Deleted": image_id}]
    assert all(set(item) == {"Deleted"} for item in done[3:])  # and its layers, as dockerd
    missing = daemon.request("DELETE", "/v1.41/images/t1")
    assert missing.status == 404 and missing.json() == {"message": "No such image: t1:latest"}


def test_bad_references_are_400(daemon):
    assert (
        daemon.request(
            "POST", "/v1.41/images/create?fromSrc=-&repo=UPPER", body=busybox_rootfs()
        ).status
        == 400
    )
    reply = daemon.request("POST", "/v1.41/images/nothing/tag?repo=x")
    assert reply.status == 404 and reply.json()["message"] == "No such image: nothing:latest"
    bad_change = daemon.request(
        "POST", "/v1.41/images/create?fromSrc=-&changes=RUN%20rm", body=busybox_rootfs()
    )
    assert (
        bad_change.status == 400
        and "run is not a valid change command" in bad_change.json()["message"]
    )
    assert daemon.request("GET", "/v1.41/images/json").json() == []


def test_history_newest_first(daemon):
    data = docker_archive([layer_tar({"a": b"1"}), layer_tar({"b": b"2"})], ["hist:1"])
    daemon.request("POST", "/v1.41/images/load", body=data)
    rows = daemon.request("GET", "/v1.41/images/hist:1/history").json()
    assert [row["CreatedBy"] for row in rows] == ["layer 1", "layer 0"]
    assert rows[0]["Id"].startswith("sha256:") and rows[1]["Id"] == "<missing>"
    assert rows[0]["Tags"] == ["hist:1"]


@pytest.mark.parametrize("layout", ["docker", "oci", "both"])
def test_load_messages_docker_py_parses(daemon, layout):
    data = docker_archive([layer_tar({"a": b"1"})], ["loaded:1"], layout=layout)
    reply = daemon.request("POST", "/v1.41/images/load?quiet=1", body=data)
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    assert messages(reply.body) == [{"stream": "Loaded image: loaded:1\n"}]
    untagged = docker_archive([layer_tar({"u": b"1"})], [], layout=layout)
    (message,) = messages(daemon.request("POST", "/v1.41/images/load", body=untagged).body)
    assert message["stream"].startswith("Loaded image ID: sha256:")


def test_load_of_a_hostile_layer_is_refused_and_leaves_nothing(daemon):
    data = docker_archive([layer_tar({"../../../tmp/owned": b"x"})], ["evil:1"])
    reply = daemon.request("POST", "/v1.41/images/load", body=data)
    # As dockerd: 200, and the error in the stream (docker-py's ImageLoadError).
    assert reply.status == 200
    error = reply.json()["errorDetail"]["message"]
    assert "outside" in error or ".." in error
    assert daemon.request("GET", "/images/json").json() == []
    assert not os.path.exists("/tmp/owned")
    driver_dirs = list((daemon.data_root / "storage").glob("*/*"))
    assert all(not any(p.iterdir()) for p in driver_dirs if p.name in ("layers", "snapshots"))


def test_save_streams_an_archive_that_loads_back(daemon):
    import_image(daemon, busybox_rootfs(), "repo=sv&tag=1")
    daemon.request("POST", "/v1.41/images/sv:1/tag?repo=sv&tag=2")
    body = daemon.request("GET", "/v1.41/images/get?names=sv").body
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        manifest = json.loads(archive.extractfile("manifest.json").read())
        assert sorted(manifest[0]["RepoTags"]) == ["sv:1", "sv:2"]
        assert archive.extractfile("oci-layout").read() == b'{"imageLayoutVersion":"1.0.0"}'
    single = daemon.request("GET", "/v1.41/images/sv:1/get").body
    with tarfile.open(fileobj=io.BytesIO(single)) as archive:
        assert json.loads(archive.extractfile("manifest.json").read())[0]["RepoTags"] == ["sv:1"]
    assert daemon.request("GET", "/v1.41/images/get?names=nope").status == 404
    daemon.request("DELETE", "/v1.41/images/sv:1")
    daemon.request("DELETE", "/v1.41/images/sv:2")
    assert daemon.request("GET", "/images/json").json() == []
    loaded = messages(daemon.request("POST", "/v1.41/images/load", body=body).body)
    assert {m["stream"] for m in loaded} == {"Loaded image: sv:1\n", "Loaded image: sv:2\n"}


def test_prune_removes_dangling_only(daemon):
    keep = import_image(daemon, busybox_rootfs(), "repo=keep")["status"]
    daemon.request("POST", "/v1.41/images/load", body=docker_archive([layer_tar({"d": b"1"})], []))
    reply = daemon.request("POST", "/v1.41/images/prune").json()
    assert len([d for d in reply["ImagesDeleted"] if "Deleted" in d]) == 2  # image and layer
    assert reply["SpaceReclaimed"] > 0
    assert [i["Id"] for i in daemon.request("GET", "/images/json").json()] == [keep]
    everything = daemon.request(
        "POST", "/v1.41/images/prune?filters=" + urllib.parse.quote('{"dangling":["false"]}')
    ).json()
    assert {"Deleted": keep} in everything["ImagesDeleted"]


def test_events_for_image_changes(daemon):
    since = time.time()
    image_id = import_image(daemon, busybox_rootfs(), "repo=ev")["status"]
    daemon.request("DELETE", "/v1.41/images/ev")
    body = daemon.request(
        "GET",
        f"/v1.41/events?since={since:.3f}&until={time.time() + 0.2:.3f}&filters="
        + urllib.parse.quote('{"type":["image"]}'),
    ).body
    actions = [(e["Action"], e["Actor"]["ID"]) for e in map(json.loads, body.splitlines())]
    assert actions == [("tag", image_id), ("untag", image_id), ("delete", image_id)]


def test_killed_mid_load_restarts_consistent(start_daemon):
    """SIGKILL while a large load streams in: after restart no half image, no stray files."""
    daemon = start_daemon()
    big = layer_tar({"big": os.urandom(48 << 20)})
    data = docker_archive([layer_tar({"base": b"b"}), big], ["half:1"])
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(daemon.socket_path)
    sock.sendall(
        b"POST /v1.41/images/load HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data)
    )
    sock.sendall(data[: len(data) * 3 // 4])  # most of it, then the daemon dies
    time.sleep(0.3)
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait()
    sock.close()
    content = daemon.data_root / "content"
    # restart on the same data root
    with restarted(daemon):
        assert http_request(daemon.socket_path, "GET", "/images/json").json() == []
        assert list((content / "ingest").iterdir()) == []
        assert list((content / "blobs" / "sha256").iterdir()) == []
        driver_root = next((daemon.data_root / "storage").iterdir())
        from dockyard.testing.storage import stored_files

        assert stored_files(driver_root) == []
        # and the store still works
        ok = http_request(
            daemon.socket_path,
            "POST",
            "/v1.41/images/load",
            body=docker_archive([layer_tar({"a": b"1"})], ["after:1"]),
        )
        assert ok.status == 200


def test_import_refuses_a_digest_reference(daemon):
    reply = daemon.request(
        "POST",
        "/v1.41/images/create?fromSrc=-&repo=x%40sha256%3A" + "0" * 64,
        body=busybox_rootfs(),
    )
    assert reply.status == 400 and reply.json() == {"message": "cannot import digest reference"}
    assert daemon.request("GET", "/images/json").json() == []


def test_prune_filters_by_label_and_age(daemon):
    daemon.request(
        "POST",
        "/v1.41/images/load",
        body=docker_archive(
            [layer_tar({"a": b"1"})], [], config_extra={"config": {"Labels": {"keep": "yes"}}}
        ),
    )
    daemon.request("POST", "/v1.41/images/load", body=docker_archive([layer_tar({"b": b"2"})], []))
    assert len(daemon.request("GET", "/images/json").json()) == 2
    # until compares with the images' creation dates (2024-01-02 in these archives), as dockerd
    older = '{"until":["2024-01-01T00:00:00Z"]}'
    young = daemon.request("POST", "/v1.41/images/prune?filters=" + urllib.parse.quote(older))
    assert young.json()["ImagesDeleted"] is None
    kept = daemon.request(
        "POST", "/v1.41/images/prune?filters=" + urllib.parse.quote('{"label!":["keep=yes"]}')
    ).json()
    assert len([d for d in kept["ImagesDeleted"] if "Deleted" in d]) == 2  # image and layer
    (left,) = daemon.request("GET", "/images/json").json()
    assert left["Labels"] == {"keep": "yes"}
    bad = daemon.request(
        "POST", "/v1.41/images/prune?filters=" + urllib.parse.quote('{"colour":["x"]}')
    )
    assert bad.status == 400
