"""``POST /images/{name}/push`` and ``GET /distribution/{name}/json`` on a real daemon, against
our registry and the CNCF registry on loopback ports: what is sent, what is skipped or
mounted, the progress stream, and failures in dockerd's words.

Side by side with a real dockerd and with the docker CLI, docker-py and skopeo:
``test_push_interop.py``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import itertools
import json
import os
import socket
import time

import httpx

from dockyard.daemon.distribution.progress import progress_bar
from dockyard.plugins.registries.filesystem import FilesystemBackend
from dockyard.registry.store import Limits, RegistryStore
from dockyard.testing.images import busybox_rootfs, image_archive, layer_tar
from tests.distribution.conftest import PASSWORD, TOKEN_PASSWORD, TOKEN_USER, USER
from tests.registry.conftest import registry, registry_root, serve_in_thread, store

__all__ = ["registry", "registry_root", "store"]  # fixtures of tests/registry


def messages(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def registry_auth(username: str = "", password: str = "", server: str = "") -> str:
    config = {"username": username, "password": password, "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(config).encode()).decode()


def load(daemon, tags: list[str], layers: list[bytes] | None = None) -> None:
    layers = layers or [busybox_rootfs(), layer_tar({"hello": b"hello from dockyard\n"})]
    reply = daemon.request("POST", "/v1.41/images/load", body=image_archive(layers, tags))
    assert reply.status == 200, reply.body


def push(daemon, name: str, tag: str | None = None, auth: str = "e30=") -> list[dict]:
    query = f"?tag={tag}" if tag is not None else ""
    headers = {"X-Registry-Auth": auth} if auth else {}
    reply = daemon.request("POST", f"/v1.41/images/{name}/push{query}", headers, b"")
    assert reply.status == 200, reply.body
    assert reply.headers.get("content-type") == "application/json"
    return messages(reply.body)


def statuses(stream: list[dict]) -> list[tuple[str, str]]:
    """(status, id) of the messages a non-TTY CLI prints (those without a count)."""
    return [
        (m["status"], m.get("id", ""))
        for m in stream
        if "status" in m and not m.get("progressDetail")
    ]


def image_layers(daemon, name: str) -> list[str]:
    inspect = daemon.request("GET", f"/v1.41/images/{name}/json").json()
    return [d.removeprefix("sha256:")[:12] for d in inspect["RootFS"]["Layers"]]


def fetch_manifest(url: str, repository: str, tag: str, auth=None) -> tuple[dict, bytes]:
    response = httpx.get(
        f"{url}/v2/{repository}/manifests/{tag}",
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
            "application/vnd.oci.image.manifest.v1+json"
        },
        auth=auth,
    )
    assert response.status_code == 200, response.text
    return response.json(), response.content


def fetch_blob(url: str, repository: str, digest: str, auth=None) -> bytes:
    response = httpx.get(f"{url}/v2/{repository}/blobs/{digest}", auth=auth, follow_redirects=True)
    assert response.status_code == 200, response.text
    return response.content


def test_push_sends_layers_config_and_manifest_and_reports_as_dockerd(daemon, registry):
    name = f"{registry.host}/x/busybox"
    load(daemon, [f"{name}:1"])
    layers = image_layers(daemon, f"{name}:1")
    stream = push(daemon, name, "1")
    assert stream[0] == {"status": f"The push refers to repository [{name}]"}
    top_first = list(reversed(layers))
    assert statuses(stream)[1:3] == [("Preparing", layer) for layer in top_first]
    assert sorted(statuses(stream)[3:5]) == sorted(("Pushed", layer) for layer in layers)
    pushing = [m for m in stream if m.get("status") == "Pushing"]
    assert {m["id"] for m in pushing} == set(layers)
    assert all(m["progressDetail"]["current"] > 0 and m["progress"] for m in pushing)

    manifest, body = fetch_manifest(registry.url, "x/busybox", "1")
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert stream[-2] == {"status": f"1: digest: {digest} size: {len(body)}"}
    assert stream[-1] == {
        "progressDetail": {},
        "aux": {"Tag": "1", "Digest": digest, "Size": len(body)},
    }
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert body.startswith(b'{\n   "schemaVersion": 2,')  # dockerd's 3-space indentation
    inspect = daemon.request("GET", f"/v1.41/images/{name}:1/json").json()
    assert manifest["config"]["digest"] == inspect["Id"]
    assert inspect["RepoDigests"] == [f"{name}@{digest}"]
    # Each layer is gzip whose content is the layer: its digest is the manifest's.
    for descriptor, diff_id in zip(manifest["layers"], inspect["RootFS"]["Layers"], strict=True):
        assert descriptor["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
        blob = fetch_blob(registry.url, "x/busybox", descriptor["digest"])
        assert (len(blob), "sha256:" + hashlib.sha256(blob).hexdigest()) == (
            descriptor["size"],
            descriptor["digest"],
        )
        assert "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() == diff_id
        assert blob[8] == 0  # gzip's XFL: neither the fastest level nor the best, dockerd's 6


def test_a_second_push_sends_nothing_but_the_manifest(daemon, registry):
    name = f"{registry.host}/x/busybox"
    load(daemon, [f"{name}:1"])
    layers = image_layers(daemon, f"{name}:1")
    first = push(daemon, name, "1")
    second = push(daemon, name, "1")
    assert sorted(statuses(second)[3:5]) == sorted(
        ("Layer already exists", layer) for layer in layers
    )
    assert not [m for m in second if m.get("status") == "Pushing"]
    assert second[-1] == first[-1]  # the same manifest: the compression is reproducible


def test_a_push_to_another_repository_of_the_registry_mounts_the_layers(daemon, registry):
    load(daemon, [f"{registry.host}/x/busybox:1"])
    layers = image_layers(daemon, f"{registry.host}/x/busybox:1")
    push(daemon, f"{registry.host}/x/busybox", "1")
    tag = daemon.request(
        "POST", f"/v1.41/images/{registry.host}/x/busybox:1/tag?repo={registry.host}/y/other&tag=2"
    )
    assert tag.status == 201
    stream = push(daemon, f"{registry.host}/y/other", "2")
    assert sorted(statuses(stream)[3:5]) == sorted(
        ("Mounted from x/busybox", layer) for layer in layers
    )
    manifest, _ = fetch_manifest(registry.url, "y/other", "2")
    for descriptor in manifest["layers"]:
        fetch_blob(registry.url, "y/other", descriptor["digest"])


def test_without_a_tag_every_tag_of_the_repository_is_pushed(daemon, registry):
    name = f"{registry.host}/x/multi"
    load(daemon, [f"{name}:a", f"{name}:b", f"{registry.host}/x/elsewhere:c"])
    stream = push(daemon, name)
    tags = [m["aux"]["Tag"] for m in stream if "aux" in m]
    assert tags == ["a", "b"]
    listing = httpx.get(f"{registry.url}/v2/x/multi/tags/list").json()
    assert sorted(listing["tags"]) == ["a", "b"]


def test_an_image_not_in_the_store_is_an_error_in_the_stream_as_dockerd_says_it(daemon, registry):
    stream = push(daemon, f"{registry.host}/nosuch/image", "1")
    message = f"An image does not exist locally with the tag: {registry.host}/nosuch/image"
    assert stream == [
        {"status": f"The push refers to repository [{registry.host}/nosuch/image]"},
        {"errorDetail": {"message": message}, "error": message},
    ]


def test_bad_push_requests_are_refused_by_name(daemon, registry):
    reply = daemon.request("POST", f"/v1.41/images/{registry.host}/x/busybox/push?tag=bad%20tag")
    assert reply.status == 400 and "invalid reference format" in reply.json()["message"]
    reply = daemon.request(
        "POST", f"/v1.41/images/{registry.host}/x/busybox/push", {"X-Registry-Auth": "%%%"}
    )
    assert reply.status == 400 and "X-Registry-Auth" in reply.json()["message"]


def test_zstd_compression_is_a_configuration_choice(start_daemon, registry):
    daemon = start_daemon(config='[daemon]\npush-compression = "zstd"\n')
    name = f"{registry.host}/x/zstd"
    load(daemon, [f"{name}:1"])
    push(daemon, name, "1")
    manifest, _ = fetch_manifest(registry.url, "x/zstd", "1")
    # Schema 2 has no zstd layers: an OCI manifest carries them.
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    for descriptor in manifest["layers"]:
        assert descriptor["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
        assert fetch_blob(registry.url, "x/zstd", descriptor["digest"])[:4] == b"\x28\xb5\x2f\xfd"


# --------------------------------------------------------------------------------------------
# Auth
# --------------------------------------------------------------------------------------------


def test_a_basic_registry_without_credentials_stops_after_preparing(daemon, our_basic_registry):
    name = f"{our_basic_registry.host}/x/busybox"
    load(daemon, [f"{name}:1"])
    stream = push(daemon, name, "1")
    assert [m.get("status") for m in stream[:3]] == [
        f"The push refers to repository [{name}]",
        "Preparing",
        "Preparing",
    ]
    assert stream[3:] == [
        {
            "errorDetail": {"message": "no basic auth credentials"},
            "error": "no basic auth credentials",
        }
    ]


def test_a_basic_registry_with_credentials(daemon, our_basic_registry):
    name = f"{our_basic_registry.host}/x/busybox"
    load(daemon, [f"{name}:1"])
    stream = push(daemon, name, "1", registry_auth(USER, PASSWORD, our_basic_registry.host))
    assert "aux" in stream[-1], stream
    fetch_manifest(our_basic_registry.url, "x/busybox", "1", auth=(USER, PASSWORD))


def pushed_with_token(daemon, registry) -> tuple[str, str, list[dict]]:
    """The test image pushed to ``registry`` as the token server's user: the name, the
    ``X-Registry-Auth`` and the stream."""
    name = f"{registry.host}/x/busybox"
    load(daemon, [f"{name}:1"])
    auth = registry_auth(TOKEN_USER, TOKEN_PASSWORD, registry.host)
    stream = push(daemon, name, "1", auth)
    assert "aux" in stream[-1], stream
    return name, auth, stream


def test_a_token_registry_with_credentials(daemon, our_token_registry):
    name, auth, _ = pushed_with_token(daemon, our_token_registry)
    again = push(daemon, name, "1", auth)
    assert [m["status"] for m in again if m.get("id")].count("Layer already exists") == 2


def test_the_cncf_registry_with_token_auth(daemon, token_registry):
    name, auth, stream = pushed_with_token(daemon, token_registry)
    reply = daemon.request("GET", f"/v1.41/distribution/{name}:1/json", {"X-Registry-Auth": auth})
    assert reply.status == 200, reply.body
    assert reply.json()["Descriptor"]["digest"] == stream[-1]["aux"]["Digest"]


def test_the_cncf_registry_with_htpasswd(daemon, basic_registry):
    name = f"{basic_registry.host}/x/busybox"
    load(daemon, [f"{name}:1"])
    stream = push(daemon, name, "1", registry_auth(USER, PASSWORD, basic_registry.host))
    assert "aux" in stream[-1], stream
    second = f"{basic_registry.host}/y/copy"
    daemon.request("POST", f"/v1.41/images/{name}:1/tag?repo={second}&tag=1")
    stream = push(daemon, second, "1", registry_auth(USER, PASSWORD, basic_registry.host))
    assert [m["status"] for m in stream if m.get("id")].count("Mounted from x/busybox") == 2


# --------------------------------------------------------------------------------------------
# GET /distribution/{name}/json
# --------------------------------------------------------------------------------------------


def test_distribution_inspect_names_the_manifest_and_its_platform(daemon, registry):
    name = f"{registry.host}/x/busybox"
    load(daemon, [f"{name}:1"])
    stream = push(daemon, name, "1")
    reply = daemon.request("GET", f"/v1.41/distribution/{name}:1/json")
    assert reply.status == 200, reply.body
    aux = stream[-1]["aux"]
    assert reply.json() == {
        "Descriptor": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": aux["Digest"],
            "size": aux["Size"],
        },
        "Platforms": [{"architecture": "amd64", "os": "linux"}],
    }
    by_digest = daemon.request("GET", f"/v1.41/distribution/{name}@{aux['Digest']}/json")
    assert by_digest.json() == reply.json()


def test_distribution_inspect_of_an_unknown_tag_is_a_404(daemon, registry):
    reply = daemon.request("GET", f"/v1.41/distribution/{registry.host}/x/none:1/json")
    assert reply.status == 404, reply.body


def test_gzip_layers_in_the_store_are_sent_as_they_are(start_daemon, registry):
    """A layer stored gzip-compressed (loaded so) is not compressed again: its blob is the
    one pushed, and a registry that has it is asked with HEAD first."""
    layers = [busybox_rootfs(compress=True), layer_tar({"g": b"gzip\n"}, compress=True)]
    name = f"{registry.host}/x/gzipped"
    first = start_daemon(name="first")
    load(first, [f"{name}:1"], layers)
    push(first, name, "1")
    manifest, _ = fetch_manifest(registry.url, "x/gzipped", "1")
    assert [d["digest"] for d in manifest["layers"]] == [
        "sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers
    ]
    # Another daemon, which never pushed there, finds them with HEAD.
    second = start_daemon(name="second")
    load(second, [f"{name}:1"], layers)
    stream = push(second, name, "1")
    assert [m["status"] for m in stream if m.get("id")].count("Layer already exists") == 2


def test_progress_bar_is_dockerds():
    assert progress_bar(33280, 3000000) == "[>" + " " * 50 + "]  33.28kB/3MB"
    assert progress_bar(3001856, 3000000) == "[" + "=" * 50 + ">]  3.002MB"
    assert progress_bar(1500000, 3000000) == "[" + "=" * 25 + ">" + " " * 25 + "]    1.5MB/3MB"
    assert progress_bar(512, 0) == "    512B"
    assert progress_bar(0, 0) == ""


def test_a_refused_layer_is_tried_again_then_fails_in_the_registrys_words(tmp_path, start_daemon):
    daemon = start_daemon(config="[daemon]\nmax-upload-attempts = 2\n")
    small = serve_in_thread(
        RegistryStore(FilesystemBackend(tmp_path / "small"), Limits(max_blob_size=4096))
    )
    try:
        name = f"{small.host}/x/busybox"
        load(daemon, [f"{name}:1"])
        stream = push(daemon, name, "1")
    finally:
        small.stop()
    big = image_layers(daemon, f"{name}:1")[0]  # busybox's layer: over the limit
    retries = [m for m in stream if m.get("status", "").startswith("Retrying")]
    assert [(m["status"], m["id"]) for m in retries] == [
        (f"Retrying in {n} second{'s' if n > 1 else ''}", big) for n in range(5, 0, -1)
    ]
    message = "size invalid: blob exceeds the registry's limit of 4096 bytes"
    assert {"errorDetail": {"message": message}, "error": message} in stream
    assert "aux" not in stream[-1]


def test_max_concurrent_uploads_bounds_the_layers_sent_at_once(start_daemon, registry):
    """One at a time: the layers past the first wait, as dockerd's do, and each is sent only
    once the one before it (top layer first) was pushed."""
    daemon = start_daemon(config="[daemon]\nmax-concurrent-uploads = 1\n")
    name = f"{registry.host}/x/onebyone"
    layers = [busybox_rootfs(), *(layer_tar({f"f{i}": os.urandom(4096)}) for i in range(2))]
    load(daemon, [f"{name}:1"], layers)
    top_first = list(reversed(image_layers(daemon, f"{name}:1")))
    stream = push(daemon, name, "1")
    assert [m["id"] for m in stream if m.get("status") == "Waiting"] == top_first[1:]
    sent = [m["id"] for m in stream if m.get("status") in ("Pushing", "Pushed")]
    # Each layer's messages in one run, none interleaved with another's.
    assert [layer for layer, _ in itertools.groupby(sent)] == top_first
    assert "aux" in stream[-1]


def test_a_client_that_goes_away_stops_the_push_and_the_daemon_carries_on(daemon, registry):
    name = f"{registry.host}/x/big"
    big = layer_tar({"random.bin": os.urandom(24 << 20)})
    load(daemon, [f"{name}:1"], [busybox_rootfs(), big])
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(daemon.socket_path)
        client.sendall(
            f"POST /v1.41/images/{name}/push?tag=1 HTTP/1.1\r\nHost: d\r\n"
            "X-Registry-Auth: e30=\r\nContent-Length: 0\r\n\r\n".encode()
        )
        received = b""
        while b"Pushing" not in received:
            chunk = client.recv(65536)
            assert chunk, received
            received += chunk
    # Gone mid-push: that push writes no manifest (left to run on, it would have finished
    # within this wait), and the daemon serves a new push of the same image to the end.
    time.sleep(3)
    assert httpx.get(f"{registry.url}/v2/x/big/manifests/1").status_code == 404
    assert "aux" in push(daemon, name, "1")[-1]
    assert daemon.request("GET", "/_ping").status == 200
