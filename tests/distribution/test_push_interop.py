"""Push side by side with a real dockerd 20.10, and through real clients: the docker CLI 28,
docker-py and skopeo (which reads what we pushed). The registries are ours and the CNCF
registry, on loopback ports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import docker
import httpx
import pytest

from dockyard.plugins.registries.filesystem import FilesystemBackend
from dockyard.registry.store import Limits, RegistryStore
from dockyard.testing.images import busybox_rootfs, image_archive, layer_tar
from dockyard.testing.peers import docker_env
from tests.conftest import http_request
from tests.distribution.conftest import PASSWORD, USER, dead_port
from tests.distribution.test_push import (
    fetch_manifest,
    image_layers,
    load,
    messages,
    push,
    registry_auth,
)
from tests.registry.conftest import registry, registry_root, serve_in_thread, store
from tests.registry.test_interop_auth import docker_cli_storing_logins_in_a_file

__all__ = ["registry", "registry_root", "store"]  # fixtures of tests/registry

pytestmark = pytest.mark.interop


def dockerd_request(real_dockerd, method: str, path: str, headers=None, body=None):
    return http_request(real_dockerd.host.removeprefix("unix://"), method, path, headers, body)


def dockerd_load(real_dockerd, tags: list[str]) -> None:
    archive = image_archive(
        [busybox_rootfs(), layer_tar({"hello": b"hello from dockyard\n"})], tags
    )
    reply = dockerd_request(real_dockerd, "POST", "/v1.41/images/load", {}, archive)
    assert reply.status == 200, reply.body


def dockerd_push(real_dockerd, name: str, tag: str, auth: str = "e30=") -> list[dict]:
    reply = dockerd_request(
        real_dockerd, "POST", f"/v1.41/images/{name}/push?tag={tag}", {"X-Registry-Auth": auth}, b""
    )
    assert reply.status == 200, reply.body
    return messages(reply.body)


def shape(stream: list[dict], repository: str) -> list[tuple]:
    """A stream with what legitimately differs taken out: the repository's name, digests and
    sizes (Go's gzip and zlib compress differently), the order in which concurrent layers
    finish, and the counts of Pushing."""
    shaped: list[tuple] = []
    for message in stream:
        if message.get("status") == "Pushing":
            continue
        if "aux" in message:
            shaped.append(("aux", tuple(sorted(message["aux"])), tuple(message)))
            continue
        text = message.get("status") or message.get("error", "")
        text = text.replace(repository, "REPO")
        text = re.sub(r"sha256:[0-9a-f]{64} size: \d+", "DIGEST size: N", text)
        shaped.append((text, message.get("id", ""), tuple(sorted(message))))
    # Layers finish in any order: compare their final states as a set, in place.
    finals = sorted(
        m
        for m in shaped
        if m[0] in ("Pushed", "Layer already exists") or m[0].startswith("Mounted")
    )
    others = [m for m in shaped if m not in finals]
    return others + finals


def both_push(daemon, real_dockerd, host: str, tag: str = "1", auth: str = "e30="):
    """The same image loaded into both daemons as HOST/ours/x and HOST/theirs/x, pushed with
    ``tag`` by each: the two streams' shapes."""
    ours, theirs = f"{host}/ours/x", f"{host}/theirs/x"
    load(daemon, [f"{ours}:1"])
    dockerd_load(real_dockerd, [f"{theirs}:1"])
    our_stream = push(daemon, ours, tag, auth)
    return shape(our_stream, ours), shape(dockerd_push(real_dockerd, theirs, tag, auth), theirs)


def test_push_streams_as_dockerds_do(daemon, real_dockerd, registry):
    """A first push, a second one (everything exists), and a push to another repository of
    the registry (everything mounted): the same messages from both daemons."""
    ours, theirs = f"{registry.host}/ours/busybox", f"{registry.host}/theirs/busybox"
    load(daemon, [f"{ours}:1"])
    dockerd_load(real_dockerd, [f"{theirs}:1"])
    for label in ("first push", "second push"):
        our_stream = push(daemon, ours, "1")
        their_stream = dockerd_push(real_dockerd, theirs, "1")
        assert shape(our_stream, ours) == shape(their_stream, theirs), label
    daemon.request("POST", f"/v1.41/images/{ours}:1/tag?repo={ours}-copy&tag=2")
    dockerd_request(real_dockerd, "POST", f"/v1.41/images/{theirs}:1/tag?repo={theirs}-copy&tag=2")
    our_stream = push(daemon, f"{ours}-copy", "2")
    their_stream = dockerd_push(real_dockerd, f"{theirs}-copy", "2")
    their_shape = [
        (m[0].replace("theirs/", "ours/"), *m[1:]) for m in shape(their_stream, f"{theirs}-copy")
    ]
    assert shape(our_stream, f"{ours}-copy") == their_shape


def test_pushing_messages_have_dockerds_fields_and_bar(daemon, real_dockerd, registry):
    ours, theirs = f"{registry.host}/ours/bar", f"{registry.host}/theirs/bar"
    load(daemon, [f"{ours}:1"])
    dockerd_load(real_dockerd, [f"{theirs}:1"])
    our_pushing = [m for m in push(daemon, ours, "1") if m.get("status") == "Pushing"]
    their_pushing = [
        m for m in dockerd_push(real_dockerd, theirs, "1") if m.get("status") == "Pushing"
    ]
    assert {tuple(sorted(m)) for m in our_pushing} == {tuple(sorted(m)) for m in their_pushing}
    bar = re.compile(r"\[=*>? *\] +[0-9.]+[kMG]?B(/[0-9.]+[kMG]?B)?")
    for message in our_pushing + their_pushing:
        assert bar.fullmatch(message["progress"]), message["progress"]
    # The total is the layer's size, the same for both.
    totals = lambda stream: {m["id"]: m["progressDetail"]["total"] for m in stream}  # noqa: E731
    assert totals(our_pushing).keys() == totals(their_pushing).keys()


def test_unknown_images_and_missing_credentials_fail_as_dockerds_do(
    daemon, real_dockerd, registry, our_basic_registry
):
    name = f"{registry.host}/nosuch/image"
    assert push(daemon, name, "1") == dockerd_push(real_dockerd, name, "1")
    ours, theirs = both_push(daemon, real_dockerd, our_basic_registry.host)
    assert ours == theirs


def test_distribution_inspect_answers_as_dockerds(daemon, real_dockerd, registry):
    name = f"{registry.host}/x/inspected"
    load(daemon, [f"{name}:1"])
    push(daemon, name, "1")
    ours = daemon.request("GET", f"/v1.41/distribution/{name}:1/json")
    theirs = dockerd_request(real_dockerd, "GET", f"/v1.41/distribution/{name}:1/json")
    assert (ours.status, ours.json()) == (theirs.status, theirs.json())
    missing = f"/v1.41/distribution/{registry.host}/x/none:1/json"
    ours, theirs = daemon.request("GET", missing), dockerd_request(real_dockerd, "GET", missing)
    assert (ours.status, ours.json()) == (theirs.status, theirs.json())


# --------------------------------------------------------------------------------------------
# Real clients against our daemon
# --------------------------------------------------------------------------------------------


def cli_lines(output: str, repository: str) -> list[str]:
    """The CLI's lines with the repository and digest taken out, layers' lines sorted (they
    finish in any order)."""
    lines = [
        re.sub(r"sha256:[0-9a-f]{64} size: \d+", "DIGEST", line.replace(repository, "REPO"))
        for line in output.splitlines()
    ]
    head = [line for line in lines if not re.match(r"[0-9a-f]{12}: ", line)]
    return head[:1] + sorted(set(lines) - set(head)) + head[1:]


def test_the_docker_cli_pushes_through_our_daemon_as_through_dockerd(
    daemon, real_dockerd, registry
):
    ours, theirs = f"{registry.host}/x/busybox", f"{registry.host}/y/busybox"
    load(daemon, [f"{ours}:1"])
    dockerd_load(real_dockerd, [f"{theirs}:1"])
    layers = image_layers(daemon, f"{ours}:1")

    def our_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [shutil.which("docker") or "docker", *args],
            env=docker_env(daemon.host), capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    for _ in range(2):  # pushed, then already there
        mine, real = our_cli("push", f"{ours}:1"), real_dockerd.docker("push", f"{theirs}:1")
        assert mine.returncode == 0, mine.stderr
        assert cli_lines(mine.stdout, ours) == cli_lines(real.stdout, theirs)
    assert f"{layers[0]}: Layer already exists" in mine.stdout
    # What we pushed runs on a real dockerd.
    run = real_dockerd.docker("run", "--rm", f"{ours}:1", "cat", "/hello")
    assert run.stdout == "hello from dockyard\n"
    real_dockerd.docker("rmi", f"{ours}:1")


def test_the_docker_cli_logs_in_and_pushes_to_an_htpasswd_registry(
    tmp_path, daemon, our_basic_registry
):
    docker_cli = docker_cli_storing_logins_in_a_file(daemon.host, tmp_path)
    name = f"{our_basic_registry.host}/x/busybox:1"
    load(daemon, [name])
    denied = docker_cli("push", name, check=False)
    assert denied.returncode == 1 and "no basic auth credentials" in denied.stderr
    docker_cli("login", "-u", USER, "--password-stdin", our_basic_registry.host, input=PASSWORD)
    pushed = docker_cli("push", name)
    assert re.search(r"1: digest: sha256:[0-9a-f]{64}", pushed.stdout), pushed.stdout


def test_docker_py_pushes_through_our_daemon(daemon, registry):
    repository = f"{registry.host}/x/py"
    load(daemon, [f"{repository}:1"])
    client = docker.DockerClient(base_url=daemon.host, version="1.41")
    try:
        text = client.images.push(repository, tag="1")
        stream = list(client.images.push(repository, tag="1", stream=True, decode=True))
    finally:
        client.close()
    assert '"aux"' in text and "Pushed" in text
    assert [m["status"] for m in stream if m.get("id")].count("Layer already exists") == 2
    fetch_manifest(registry.url, "x/py", "1")


def test_skopeo_reads_what_we_pushed(tmp_path, daemon, registry):
    name = f"{registry.host}/x/skopeo"
    load(daemon, [f"{name}:1"])
    digest = push(daemon, name, "1")[-1]["aux"]["Digest"]
    inspect = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{name}:1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Digest"] == digest
    copy = subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", f"docker://{name}:1", f"oci:{tmp_path}/oci:1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert copy.returncode == 0, copy.stderr


def test_skopeo_reads_what_we_pushed_to_the_cncf_registry(tmp_path, daemon, basic_registry):
    name = f"{basic_registry.host}/x/skopeo"
    load(daemon, [f"{name}:1"])
    digest = push(daemon, name, "1", registry_auth(USER, PASSWORD, basic_registry.host))[-1]
    inspect = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
         f"docker://{name}:1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Digest"] == digest["aux"]["Digest"]


def test_a_missing_tag_of_a_known_repository_fails_as_dockerds_does(daemon, real_dockerd, registry):
    ours, theirs = both_push(daemon, real_dockerd, registry.host, tag="nope")
    assert ours == theirs


def test_more_layers_than_uploads_at_once_wait_as_with_dockerd(daemon, real_dockerd, registry):
    layers = [layer_tar({f"file{i}": f"content {i}\n".encode() * (i + 1)}) for i in range(7)]
    ours, theirs = f"{registry.host}/ours/seven", f"{registry.host}/theirs/seven"
    load(daemon, [f"{ours}:1"], layers)
    archive = image_archive(layers, [f"{theirs}:1"])
    assert dockerd_request(real_dockerd, "POST", "/v1.41/images/load", {}, archive).status == 200
    our_stream, their_stream = push(daemon, ours, "1"), dockerd_push(real_dockerd, theirs, "1")
    # dockerd's Waiting comes right after its Preparing or after all of them (goroutines):
    # the same messages, in an order that may differ.
    assert sorted(shape(our_stream, ours)) == sorted(shape(their_stream, theirs))
    assert [m.get("status") for m in our_stream].count("Waiting") == 2


def test_an_unreachable_registry_fails_as_dockerd_says(daemon, real_dockerd):
    ours, theirs = both_push(daemon, real_dockerd, f"127.0.0.1:{dead_port()}")
    assert ours == theirs


def test_a_registry_refusing_a_layer_fails_the_push_as_with_dockerd(
    tmp_path, start_daemon, real_dockerd
):
    """The same words, after the same retries: dockerd tries a layer five times, counting
    down 5, 10, 15 and 20 seconds between tries. Ours tries twice here (max-upload-attempts),
    to keep the test short: its countdown is dockerd's first one."""
    daemon = start_daemon(config="[daemon]\nmax-upload-attempts = 2\n")
    small = serve_in_thread(
        RegistryStore(FilesystemBackend(tmp_path / "small"), Limits(max_blob_size=4096))
    )
    try:
        ours, theirs = both_push(daemon, real_dockerd, small.host)
    finally:
        small.stop()
    countdown = [f"Retrying in {n} second{'s' if n > 1 else ''}" for n in range(5, 0, -1)]
    assert [m[0] for m in theirs if m[0].startswith("Retrying")][:5] == countdown
    assert [m[0] for m in ours if m[0].startswith("Retrying")] == countdown
    assert [m for m in ours if not m[0].startswith("Retrying")] == [
        m for m in theirs if not m[0].startswith("Retrying")
    ]
    assert [m for m in ours if "error" in m[2]]


def test_distribution_inspect_of_an_index_lists_its_platforms_as_dockerd(
    daemon, real_dockerd, registry
):
    name = f"{registry.host}/x/index"
    load(daemon, [f"{name}:1"])
    aux = push(daemon, name, "1")[-1]["aux"]
    entry = {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
             "digest": aux["Digest"], "size": aux["Size"]}  # fmt: skip
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {**entry, "platform": {"architecture": "amd64", "os": "linux"}},
            {**entry, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    }
    put = httpx.put(
        f"{registry.url}/v2/x/index/manifests/multi",
        content=json.dumps(index).encode(),
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
    )
    assert put.status_code == 201, put.text
    path = f"/v1.41/distribution/{name}:multi/json"
    ours, theirs = daemon.request("GET", path), dockerd_request(real_dockerd, "GET", path)
    assert (ours.status, ours.json()) == (theirs.status, theirs.json())
    assert len(ours.json()["Platforms"]) == 2


def test_skopeo_copies_what_we_pushed_with_zstd(tmp_path, start_daemon, registry):
    daemon = start_daemon(config='[daemon]\npush-compression = "zstd"\n')
    name = f"{registry.host}/x/zstd"
    load(daemon, [f"{name}:1"])
    push(daemon, name, "1")
    copy = subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", f"docker://{name}:1", f"oci:{tmp_path}/oci:1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert copy.returncode == 0, copy.stderr


def test_distribution_inspect_without_credentials_fails_as_dockerds(
    daemon, real_dockerd, our_basic_registry
):
    path = f"/v1.41/distribution/{our_basic_registry.host}/x/any:1/json"
    ours, theirs = daemon.request("GET", path), dockerd_request(real_dockerd, "GET", path)
    assert (ours.status, ours.json()) == (theirs.status, theirs.json())
