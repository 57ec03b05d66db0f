"""``POST /images/create?fromImage=`` on a real daemon, from registries on loopback ports: our
registry, the CNCF registry (with Basic and token auth), and a stub for misbehaviour no real
registry shows (wrong digests, HTML, dropped connections, redirects to another host).

Side by side with a real dockerd, and with the docker CLI and docker-py, in
``test_pull_interop.py``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from dockyard.plugins.registries.filesystem import FilesystemBackend
from dockyard.registry.store import RegistryStore
from dockyard.testing.images import busybox_rootfs
from tests.conftest import restarted
from tests.distribution.conftest import PASSWORD, TOKEN_PASSWORD, TOKEN_USER, USER, dead_port
from tests.distribution.images import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    BuiltImage,
    Served,
    StubRegistry,
    build_image,
    busybox_image,
    index_of,
    push,
    put_manifest,
    redirect_to,
    sha256,
)
from tests.registry.conftest import ThreadedRegistry, TokenClient, cncf_registry, serve_in_thread

NO_AUTH = {"X-Registry-Auth": "e30="}


def registry_auth(user: str, password: str, server: str) -> dict[str, str]:
    document = json.dumps({"username": user, "password": password, "serveraddress": server})
    return {"X-Registry-Auth": base64.urlsafe_b64encode(document.encode()).decode()}


def pull(daemon, image: str, tag: str | None = None, headers=None, **params: str):
    query = {"fromImage": image, **({"tag": tag} if tag else {}), **params}
    return daemon.request(
        "POST", f"/v1.41/images/create?{urlencode(query)}", {**NO_AUTH, **(headers or {})}
    )


def messages(reply) -> list[dict]:
    assert reply.status == 200, reply.body
    return [json.loads(line) for line in reply.body.split(b"\r\n") if line.strip()]


def statuses(found: list[dict], layer: str | None = None) -> list[str]:
    return [m["status"] for m in found if "status" in m and m.get("id") == layer]


def decoded_events(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def succeeded(found: list[dict]) -> None:
    errors = [m for m in found if "error" in m or "errorDetail" in m]
    assert not errors, errors


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[ThreadedRegistry]:
    server = serve_in_thread(RegistryStore(FilesystemBackend(tmp_path / "ours")))
    yield server
    server.stop()


@pytest.fixture
def stub() -> Iterator[StubRegistry]:
    server = StubRegistry()
    yield server
    server.stop()


def inspect(daemon, name: str) -> dict:
    reply = daemon.request("GET", f"/v1.41/images/{name}/json")
    assert reply.status == 200, reply.body
    return reply.json()


def run_echo(daemon, image: str) -> str:
    """The output of a container of ``image`` running its default command."""
    created = daemon.request(
        "POST",
        "/v1.41/containers/create",
        {"Content-Type": "application/json"},
        json.dumps({"Image": image}).encode(),
    )
    assert created.status == 201, created.body
    container = created.json()["Id"]
    try:
        assert daemon.request("POST", f"/v1.41/containers/{container}/start").status == 204
        waited = daemon.request("POST", f"/v1.41/containers/{container}/wait")
        assert waited.json()["StatusCode"] == 0
        logs = daemon.request("GET", f"/v1.41/containers/{container}/logs?stdout=1")
        return logs.body[8:].decode()
    finally:
        daemon.request("DELETE", f"/v1.41/containers/{container}?force=1")


# --------------------------------------------------------------------------------------------
# From our registry
# --------------------------------------------------------------------------------------------


def test_a_pull_stores_the_image_streams_dockerds_messages_and_runs(daemon, ours):
    image = busybox_image(extra=1)
    push(ours.url, "x/busybox", "1", image)
    found = messages(pull(daemon, f"{ours.host}/x/busybox", "1"))
    succeeded(found)
    layers = [sha256(blob).removeprefix("sha256:")[:12] for blob in image.blobs]
    assert found[0] == {"status": "Pulling from x/busybox", "id": "1"}
    for layer in layers:
        seen = statuses(found, layer)
        assert seen[0] == "Pulling fs layer"
        assert seen[-3:] == ["Download complete", "Extracting", "Pull complete"] or seen[-2:] == [
            "Extracting",
            "Pull complete",
        ]
        assert "Verifying Checksum" in seen
    progress = [m for m in found if m.get("status") == "Downloading"]
    assert all(
        set(m["progressDetail"]) == {"current", "total"} and m["progress"].startswith("[")
        for m in progress
    )
    assert found[-2:] == [
        {"status": f"Digest: {image.digest}"},
        {"status": f"Status: Downloaded newer image for {ours.host}/x/busybox:1"},
    ]
    # Extraction strictly in layer order.
    completes = [m["id"] for m in found if m.get("status") == "Pull complete"]
    assert completes == layers
    details = inspect(daemon, f"{ours.host}/x/busybox:1")
    assert details["Id"] == image.image_id
    assert details["RepoTags"] == [f"{ours.host}/x/busybox:1"]
    assert details["RepoDigests"] == [f"{ours.host}/x/busybox@{image.digest}"]
    assert run_echo(daemon, f"{ours.host}/x/busybox:1") == "hello from dockyard\n"
    events = daemon.request("GET", f"/v1.41/events?since=0&until={time.time() + 0.3:.3f}")
    pulls = [e for e in decoded_events(events.body) if e["Action"] == "pull"]
    assert [(e["Type"], e["Actor"]) for e in pulls] == [
        (
            "image",
            {"ID": f"{ours.host}/x/busybox:1", "Attributes": {"name": f"{ours.host}/x/busybox"}},
        )
    ]


def test_pulling_again_is_up_to_date_and_a_new_name_needs_no_layers(daemon, ours):
    image = busybox_image()
    push(ours.url, "x/busybox", "1", image)
    push(ours.url, "y/other", "2", image)
    succeeded(messages(pull(daemon, f"{ours.host}/x/busybox", "1")))
    again = messages(pull(daemon, f"{ours.host}/x/busybox", "1"))
    assert again == [
        {"status": "Pulling from x/busybox", "id": "1"},
        {"status": f"Digest: {image.digest}"},
        {"status": f"Status: Image is up to date for {ours.host}/x/busybox:1"},
    ]
    other = messages(pull(daemon, f"{ours.host}/y/other", "2"))
    assert other[-1] == {"status": f"Status: Downloaded newer image for {ours.host}/y/other:2"}
    assert not [m for m in other if "id" in m and m["id"] != "2"]
    assert sorted(inspect(daemon, image.image_id)["RepoTags"]) == [
        f"{ours.host}/x/busybox:1",
        f"{ours.host}/y/other:2",
    ]


def test_layers_already_present_are_not_downloaded_again(daemon, ours):
    base = busybox_image()
    more = busybox_image(extra=2)
    push(ours.url, "x/base", "1", base)
    push(ours.url, "x/more", "1", more)
    succeeded(messages(pull(daemon, f"{ours.host}/x/base", "1")))
    found = messages(pull(daemon, f"{ours.host}/x/more", "1"))
    succeeded(found)
    shared = sha256(more.blobs[0]).removeprefix("sha256:")[:12]
    assert statuses(found, shared) == ["Already exists"]
    assert found[1] == {"status": "Already exists", "progressDetail": {}, "id": shared}


def test_a_pull_by_digest_records_the_digest_reference(daemon, ours):
    image = busybox_image()
    push(ours.url, "x/busybox", "1", image)
    found = messages(pull(daemon, f"{ours.host}/x/busybox", image.digest))
    succeeded(found)
    assert found[0] == {"status": "Pulling from x/busybox", "id": image.digest}
    assert found[-1] == {
        "status": f"Status: Downloaded newer image for {ours.host}/x/busybox@{image.digest}"
    }
    assert inspect(daemon, f"{ours.host}/x/busybox@{image.digest}")["Id"] == image.image_id


def test_zstd_layers_are_decompressed_while_they_unpack(daemon, ours):
    image = build_image([busybox_rootfs()], compression="zstd")
    push(ours.url, "x/zstd", "1", image)
    succeeded(messages(pull(daemon, f"{ours.host}/x/zstd", "1")))
    assert inspect(daemon, f"{ours.host}/x/zstd:1")["Id"] == image.image_id


def test_an_index_gives_this_machines_image_and_platform_picks_another(daemon, ours):
    amd64 = busybox_image(cmd="echo amd64")
    arm64 = build_image([busybox_rootfs()], architecture="arm64", cmd="echo arm64")
    push(ours.url, "x/multi", "amd64", amd64)
    push(ours.url, "x/multi", "arm64", arm64)
    index = index_of({"amd64": amd64, "arm64": arm64})
    put_manifest(ours.url, "x/multi", "1", index, OCI_INDEX)
    found = messages(pull(daemon, f"{ours.host}/x/multi", "1"))
    succeeded(found)
    assert found[-2]["status"] == f"Digest: {sha256(index)}"  # the index's, as dockerd's
    assert inspect(daemon, f"{ours.host}/x/multi:1")["Id"] == amd64.image_id
    found = messages(pull(daemon, f"{ours.host}/x/multi", "1", platform="linux/arm64"))
    succeeded(found)
    assert inspect(daemon, f"{ours.host}/x/multi:1")["Id"] == arm64.image_id
    missing = pull(daemon, f"{ours.host}/x/multi", "1", platform="linux/s390x")
    assert missing.status == 404
    assert missing.json() == {
        "message": "no matching manifest for linux/s390x in the manifest list entries"
    }


# --------------------------------------------------------------------------------------------
# Errors before the stream: HTTP statuses, as clients expect
# --------------------------------------------------------------------------------------------


def test_an_unknown_tag_or_repository_is_a_404_before_any_output(daemon, ours):
    push(ours.url, "x/busybox", "1", busybox_image())
    reply = pull(daemon, f"{ours.host}/x/busybox", "nope")
    assert reply.status == 404
    # Our registry's own words after the code (the CNCF registry's test has dockerd's whole text).
    assert reply.json()["message"].startswith(
        f"manifest for {ours.host}/x/busybox:nope not found: manifest unknown: "
    )
    reply = pull(daemon, f"{ours.host}/nosuch/repo", "1")
    assert reply.status == 404
    assert reply.json()["message"].startswith(f"manifest for {ours.host}/nosuch/repo:1 not found: ")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"fromImage": "UPPER/case"}, "invalid reference format"),
        ({"fromImage": "127.0.0.1:1/x", "tag": "bad tag"}, "invalid tag format"),
        ({"fromImage": "127.0.0.1:1/x", "platform": "linux"}, "invalid platform"),
        ({"fromImage": "127.0.0.1:1/x", "fromSrc": "-"}, "fromSrc"),
        ({"fromImage": "127.0.0.1:1/x", "repo": "y"}, "repo"),
    ],
)
def test_bad_parameters_are_400s_naming_them(daemon, query, field):
    reply = daemon.request("POST", f"/v1.41/images/create?{urlencode(query)}", NO_AUTH)
    assert reply.status == 400, reply.body
    assert field in reply.json()["message"]


def test_a_bad_registry_auth_header_is_a_400(daemon, ours):
    reply = pull(daemon, f"{ours.host}/x/busybox", "1", {"X-Registry-Auth": "!!!"})
    assert reply.status == 400
    assert "X-Registry-Auth" in reply.json()["message"]


def test_an_unreachable_registry_is_a_500_in_gos_words(daemon):
    reply = pull(daemon, "127.0.0.1:1/x/busybox", "1")
    assert reply.status == 500
    assert "connection refused" in reply.json()["message"]


# --------------------------------------------------------------------------------------------
# Misbehaving registries: a clear error, nothing half-stored
# --------------------------------------------------------------------------------------------


def nothing_stored(daemon) -> None:
    assert daemon.request("GET", "/v1.41/images/json").json() == []
    layers = list((daemon.data_root / "image" / "layers").glob("*.json"))
    assert layers == []


def test_a_manifest_that_does_not_match_its_digest_is_refused(daemon, stub):
    image = busybox_image()
    stub.serve_image("x/bad", "1", image)
    stub.routes["/v2/x/bad/manifests/1"] = Served(
        image.manifest, DOCKER_MANIFEST, digest=sha256(b"something else")
    )
    reply = pull(daemon, f"{stub.host}/x/bad", "1")
    assert reply.status == 400
    assert "manifest verification failed" in reply.json()["message"]
    nothing_stored(daemon)


def test_a_layer_whose_bytes_do_not_match_its_digest_ends_the_stream_with_an_error(daemon, stub):
    image = busybox_image(extra=1)
    stub.serve_image("x/bad", "1", image)
    top = image.blobs[1]
    stub.routes[stub.blob_path("x/bad", top)] = Served(top[:-1] + bytes([top[-1] ^ 1]))
    found = messages(pull(daemon, f"{stub.host}/x/bad", "1"))
    digest = sha256(top)
    assert found[-1] == {
        "errorDetail": {"message": f"filesystem layer verification failed for digest {digest}"},
        "error": f"filesystem layer verification failed for digest {digest}",
    }
    nothing_stored(daemon)


def test_a_layer_longer_than_its_size_is_refused(daemon, stub):
    image = busybox_image()
    stub.serve_image("x/long", "1", image)
    stub.routes[stub.blob_path("x/long", image.blobs[0])] = Served(image.blobs[0] + b"more")
    found = messages(pull(daemon, f"{stub.host}/x/long", "1"))
    assert "sent more than its size" in found[-1]["error"]
    nothing_stored(daemon)


def test_an_unknown_layer_media_type_is_refused_before_output(daemon, stub):
    image = busybox_image()
    document = json.loads(image.manifest)
    document["layers"][0]["mediaType"] = "application/vnd.example.layer"
    manifest = json.dumps(document).encode()
    stub.routes["/v2/x/odd/manifests/1"] = Served(manifest, DOCKER_MANIFEST)
    reply = pull(daemon, f"{stub.host}/x/odd", "1")
    assert reply.status == 400
    assert reply.json() == {
        "message": "unsupported layer media type 'application/vnd.example.layer'"
    }


def test_a_registry_answering_html_is_a_clear_error(daemon, stub):
    stub.routes["/v2/x/html/manifests/1"] = Served(b"<html>login here</html>", "text/html")
    reply = pull(daemon, f"{stub.host}/x/html", "1")
    assert reply.status == 400
    assert reply.json() == {"message": "the registry's manifest is not JSON (text/html)"}
    image = busybox_image()
    stub.serve_image("x/htmlblob", "1", image)
    stub.routes[stub.blob_path("x/htmlblob", image.blobs[0])] = Served(b"<html/>", "text/html")
    found = messages(pull(daemon, f"{stub.host}/x/htmlblob", "1"))
    assert "HTML page" in found[-1]["error"]
    nothing_stored(daemon)


def test_a_blob_missing_from_the_registry_ends_the_stream(daemon, stub):
    image = busybox_image()
    stub.serve_image("x/gone", "1", image)
    del stub.routes[stub.blob_path("x/gone", image.blobs[0])]
    found = messages(pull(daemon, f"{stub.host}/x/gone", "1"))
    assert "errorDetail" in found[-1]
    nothing_stored(daemon)


def test_blob_redirects_are_followed_to_another_host_without_credentials(daemon, stub):
    image = busybox_image()
    elsewhere = StubRegistry("127.0.0.2")
    try:
        stub.serve_image("x/moved", "1", image)
        path = stub.blob_path("x/moved", image.blobs[0])
        elsewhere.routes["/bucket/layer"] = Served(image.blobs[0])
        stub.hooks[path] = redirect_to(f"{elsewhere.url}/bucket/layer")
        found = messages(
            pull(daemon, f"{stub.host}/x/moved", "1", registry_auth("u", "p", stub.host))
        )
        succeeded(found)
        assert [r[1] for r in elsewhere.requests] == ["/bucket/layer"]
        assert "Authorization" not in elsewhere.requests[0][2]
    finally:
        elsewhere.stop()


def test_a_slow_registry_times_out_as_configured(start_daemon, stub):
    daemon = start_daemon(config="[daemon]\nregistry-timeout = 1.0\n")
    image = busybox_image()
    stub.serve_image("x/slow", "1", image)

    def stall(handler) -> bool:
        time.sleep(3)
        return False

    stub.hooks["/v2/x/slow/manifests/1"] = stall
    started = time.monotonic()
    reply = pull(daemon, f"{stub.host}/x/slow", "1")
    assert reply.status == 500
    assert "timeout" in reply.json()["message"].lower()
    assert time.monotonic() - started < 3


# --------------------------------------------------------------------------------------------
# Interrupted pulls
# --------------------------------------------------------------------------------------------


def drop_after(count: int, body: bytes, dropped: list[int]):
    """A hook sending the first ``count`` bytes of ``body`` and closing the connection, once."""

    def hook(handler) -> bool:
        if dropped:
            return False
        dropped.append(1)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        handler.wfile.write(body[:count])
        handler.wfile.flush()
        handler.close_connection = True
        return True

    return hook


def test_a_dropped_connection_fails_cleanly_and_the_next_pull_resumes_with_range(daemon, stub):
    image = busybox_image(extra=1)
    stub.serve_image("x/drop", "1", image)
    blob = image.blobs[0]
    path = stub.blob_path("x/drop", blob)
    dropped: list[int] = []
    drop = drop_after(len(blob) // 2, blob, dropped)
    small_blob = image.blobs[1]
    small = stub.blob_path("x/drop", small_blob)
    small_sent = threading.Event()

    def send_small(handler) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(small_blob)))
        handler.end_headers()
        handler.wfile.write(small_blob)
        handler.wfile.flush()
        small_sent.set()
        return True

    def drop_once_the_small_layer_is_sent(handler) -> bool:
        # The drop fails the pull and cancels what is still downloading: give the small layer
        # the time to finish first, so that there is a finished layer to reuse.
        if not dropped and small_sent.wait(10):
            time.sleep(1)
        return drop(handler)

    stub.hooks[path] = drop_once_the_small_layer_is_sent
    stub.hooks[small] = send_small
    first = messages(pull(daemon, f"{stub.host}/x/drop", "1"))
    assert "errorDetail" in first[-1], first[-3:]
    nothing_stored(daemon)
    found = messages(pull(daemon, f"{stub.host}/x/drop", "1"))
    succeeded(found)
    ranges = [r[2].get("Range") for r in stub.requests if r[1] == path]
    assert ranges[0] is None
    assert ranges[-1] == f"bytes={len(blob) // 2}-"
    # A layer that finished the first time is not downloaded again. (On a very loaded machine
    # the small one may still have been cancelled: then it is fetched twice, rightly.)
    small_id = sha256(small_blob).split(":")[1][:12]
    finished = {"status": "Download complete", "id": small_id} in [
        {k: m.get(k) for k in ("status", "id")} for m in first
    ]
    assert [r[1] for r in stub.requests].count(small) == (1 if finished else 2)
    assert inspect(daemon, f"{stub.host}/x/drop:1")["Id"] == image.image_id
    assert run_echo(daemon, f"{stub.host}/x/drop:1") == "hello from dockyard\n"


def test_a_registry_ignoring_range_gets_the_download_started_over(daemon, stub):
    image = busybox_image()
    stub.serve_image("x/norange", "1", image)
    blob = image.blobs[0]
    path = stub.blob_path("x/norange", blob)
    dropped: list[int] = []
    drop = drop_after(len(blob) // 2, blob, dropped)

    def whole_blob_always(handler) -> bool:
        if not dropped:
            return drop(handler)
        del handler.headers["Range"]  # as a registry without range support: all of it, 200
        return False

    stub.hooks[path] = whole_blob_always
    assert "errorDetail" in messages(pull(daemon, f"{stub.host}/x/norange", "1"))[-1]
    found = messages(pull(daemon, f"{stub.host}/x/norange", "1"))
    succeeded(found)
    assert [r[2].get("Range") for r in stub.requests if r[1] == path][-1] is not None
    assert inspect(daemon, f"{stub.host}/x/norange:1")["Id"] == image.image_id


def test_a_daemon_killed_mid_pull_keeps_a_consistent_store_and_resumes(start_daemon, stub):
    daemon = start_daemon()
    image = busybox_image(extra=1)
    stub.serve_image("x/kill", "1", image)
    big = image.blobs[0]
    path = stub.blob_path("x/kill", big)
    sent = len(big) // 3
    stalled: list[int] = []

    def stall(handler) -> bool:
        if stalled:
            return False
        stalled.append(1)
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(big)))
        handler.end_headers()
        handler.wfile.write(big[:sent])
        handler.wfile.flush()
        time.sleep(30)  # the daemon is killed meanwhile
        return True

    stub.hooks[path] = stall

    def kill_when_partial() -> None:
        partial = (
            daemon.data_root / "downloads" / (sha256(big).removeprefix("sha256:") + ".partial")
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if partial.exists() and partial.stat().st_size >= sent:
                break
            time.sleep(0.05)
        daemon.process.kill()

    killer = threading.Thread(target=kill_when_partial)
    killer.start()
    with contextlib.suppress(OSError, http.client.HTTPException):  # the daemon died mid-answer
        pull(daemon, f"{stub.host}/x/kill", "1")
    killer.join()
    daemon.process.wait()
    with restarted(daemon) as again:
        nothing_stored(again)
        found = messages(pull(again, f"{stub.host}/x/kill", "1"))
        succeeded(found)
        ranges = [r[2].get("Range") for r in stub.requests if r[1] == path]
        assert ranges[-1] == f"bytes={sent}-"
        assert inspect(again, f"{stub.host}/x/kill:1")["Id"] == image.image_id
        assert run_echo(again, f"{stub.host}/x/kill:1") == "hello from dockyard\n"
        leftovers = list((again.data_root / "downloads").iterdir())
        assert leftovers == []


# --------------------------------------------------------------------------------------------
# Credentials: our registry and the CNCF registry, Basic and token
# --------------------------------------------------------------------------------------------


def test_basic_auth_on_our_registry(daemon, our_basic_registry):
    image = busybox_image()
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    push(our_basic_registry.url, "x/busybox", "1", image, session)
    host = our_basic_registry.host
    refused = pull(daemon, f"{host}/x/busybox", "1")
    assert refused.status == 500
    assert refused.json()["message"].endswith("no basic auth credentials")
    found = messages(pull(daemon, f"{host}/x/busybox", "1", registry_auth(USER, PASSWORD, host)))
    succeeded(found)
    assert inspect(daemon, f"{host}/x/busybox:1")["Id"] == image.image_id


def test_basic_auth_on_the_cncf_registry(daemon, basic_registry):
    image = busybox_image()
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    url = f"http://127.0.0.1:{basic_registry.port}"
    push(url, "x/busybox", "1", image, session)
    host = f"127.0.0.1:{basic_registry.port}"
    refused = pull(daemon, f"{host}/x/busybox", "1")
    assert refused.status == 500
    assert refused.json() == {
        "message": f'Get "{url}/v2/x/busybox/manifests/1": no basic auth credentials'
    }
    found = messages(pull(daemon, f"{host}/x/busybox", "1", registry_auth(USER, PASSWORD, host)))
    succeeded(found)
    assert inspect(daemon, f"{host}/x/busybox:1")["Id"] == image.image_id


def test_token_auth_on_the_cncf_registry(daemon, token_registry):
    image = busybox_image()
    url = f"http://127.0.0.1:{token_registry.port}"
    push(url, "x/busybox", "1", image, TokenClient(url, (TOKEN_USER, TOKEN_PASSWORD)))
    host = f"127.0.0.1:{token_registry.port}"
    auth = registry_auth(TOKEN_USER, TOKEN_PASSWORD, host)
    found = messages(pull(daemon, f"{host}/x/busybox", "1", auth))
    succeeded(found)
    assert inspect(daemon, f"{host}/x/busybox:1")["Id"] == image.image_id


def test_from_the_cncf_registry_without_auth(daemon, cncf_registry):
    image = busybox_image(extra=1)
    url = f"http://127.0.0.1:{cncf_registry.port}"
    push(url, "x/busybox", "1", image)
    host = f"127.0.0.1:{cncf_registry.port}"
    found = messages(pull(daemon, f"{host}/x/busybox", "1"))
    succeeded(found)
    assert run_echo(daemon, f"{host}/x/busybox:1") == "hello from dockyard\n"
    missing = pull(daemon, f"{host}/x/busybox", "nope")
    assert missing.status == 404
    assert missing.json() == {
        "message": f"manifest for {host}/x/busybox:nope not found: "
        "manifest unknown: manifest unknown"
    }


__all__ = ["BuiltImage", "cncf_registry"]  # a fixture of tests/registry


def test_docker_hub_names_are_pulled_from_the_default_registry(start_daemon, ours):
    daemon = start_daemon(config=f'[daemon]\ndefault-registry = "{ours.host}"\n')
    image = busybox_image()
    push(ours.url, "library/busybox", "latest", image)
    found = messages(pull(daemon, "docker.io/library/busybox", "latest"))
    succeeded(found)
    assert found[0] == {"status": "Pulling from library/busybox", "id": "latest"}
    assert found[-1] == {"status": "Status: Downloaded newer image for busybox:latest"}
    details = inspect(daemon, "busybox")
    assert details["RepoTags"] == ["busybox:latest"]
    assert details["RepoDigests"] == [f"busybox@{image.digest}"]


def test_registry_mirrors_are_tried_first_and_give_way_when_they_fail(start_daemon, ours, stub):
    image = busybox_image()
    push(ours.url, "library/busybox", "latest", image)
    mirrored = busybox_image(cmd="echo from the mirror")
    stub.serve_image("library/mirrored", "1", mirrored)
    config = (
        "[daemon]\n"
        f'default-registry = "{ours.host}"\n'
        f'registry-mirrors = ["http://127.0.0.1:1", "{stub.url}"]\n'
    )
    daemon = start_daemon(config=config)
    succeeded(messages(pull(daemon, "mirrored", "1")))
    assert run_echo(daemon, "mirrored:1") == "from the mirror\n"
    # Not on the mirror: from the default registry itself.
    succeeded(messages(pull(daemon, "busybox", "latest")))
    assert inspect(daemon, "busybox")["Id"] == image.image_id
    assert "/v2/library/busybox/manifests/latest" in [r[1] for r in stub.requests]
    # Other registries' images never go to a mirror.
    push(ours.url, "x/direct", "1", image)
    before = len(stub.requests)
    succeeded(messages(pull(daemon, f"{ours.host}/x/direct", "1")))
    assert len(stub.requests) == before


def test_a_mirror_that_asks_gets_the_clients_credentials_as_dockerd_sends_them(
    start_daemon, our_basic_registry, stub
):
    """dockerd 20.10 makes one AuthConfig of ``X-Registry-Auth`` for every endpoint of a pull
    (mirrors first, then the registry) and answers each one's challenge with it: a mirror that
    asks gets the credentials the client chose for the default registry, as
    ``test_pull_interop.py`` sees dockerd do. One that does not ask gets none."""
    mirrored = busybox_image(cmd="echo from the mirror")
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    push(our_basic_registry.url, "library/mirrored", "1", mirrored, session)
    stub.serve_image("library/open", "1", busybox_image(cmd="echo from the open mirror"))
    config = (
        "[daemon]\n"
        f'default-registry = "{dead_host()}"\n'
        f'registry-mirrors = ["{our_basic_registry.url}", "{stub.url}"]\n'
    )
    daemon = start_daemon(config=config)
    # Without credentials the mirror refuses, the other lacks the image, the registry is down.
    assert pull(daemon, "mirrored", "1").status == 500
    credentials = registry_auth(USER, PASSWORD, "https://index.docker.io/v1/")
    succeeded(messages(pull(daemon, "mirrored", "1", credentials)))
    assert run_echo(daemon, "mirrored:1") == "from the mirror\n"
    succeeded(messages(pull(daemon, "open", "1", credentials)))
    assert run_echo(daemon, "open:1") == "from the open mirror\n"
    assert stub.requests
    assert [r for r in stub.requests if "Authorization" in r[2]] == []


def dead_host() -> str:
    return f"127.0.0.1:{dead_port()}"


def test_distribution_inspect_names_the_descriptor_and_the_platforms(daemon, ours):
    amd64 = busybox_image()
    arm64 = build_image([busybox_rootfs()], architecture="arm64")
    push(ours.url, "x/multi", "amd64", amd64)
    push(ours.url, "x/multi", "arm64", arm64)
    index = index_of({"amd64": amd64, "arm64": arm64})
    put_manifest(ours.url, "x/multi", "1", index, OCI_INDEX)
    reply = daemon.request("GET", f"/v1.41/distribution/{ours.host}/x/multi:1/json", NO_AUTH)
    assert reply.status == 200, reply.body
    assert reply.json() == {
        "Descriptor": {"mediaType": OCI_INDEX, "digest": sha256(index), "size": len(index)},
        "Platforms": [
            {"architecture": "amd64", "os": "linux"},
            {"architecture": "arm64", "os": "linux"},
        ],
    }
    missing = daemon.request("GET", f"/v1.41/distribution/{ours.host}/x/multi:2/json", NO_AUTH)
    assert missing.status == 404
    bad = daemon.request("GET", "/v1.41/distribution/UPPER/json", NO_AUTH)
    assert bad.status == 400
