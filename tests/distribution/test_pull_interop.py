"""Pulls side by side with a real dockerd 20.10 from the same registry, and the real docker
CLI 28 and docker-py 7 pulling (and running a missing image) through our daemon."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import docker
import pytest
import requests

from dockyard.plugins.registries.filesystem import FilesystemBackend
from dockyard.registry.store import RegistryStore
from dockyard.testing.peers import real_dockerd as real_dockerd_of
from tests.conftest import http_request
from tests.distribution.conftest import PASSWORD, USER, dead_port
from tests.distribution.images import StubRegistry, busybox_image, push
from tests.distribution.test_pull import registry_auth
from tests.registry.conftest import ThreadedRegistry, serve_in_thread
from tests.registry.test_interop_auth import docker_cli_storing_logins_in_a_file

pytestmark = pytest.mark.interop

NO_AUTH = {"X-Registry-Auth": "e30="}
# Statuses dockerd may skip: it hands a watcher a transfer's latest progress, so a status that
# lasts only a moment can be overwritten before it is sent.
TRANSIENT = {"Downloading", "Verifying Checksum"}


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[ThreadedRegistry]:
    server = serve_in_thread(RegistryStore(FilesystemBackend(tmp_path / "ours")))
    yield server
    server.stop()


def pull_over(socket_path: str, image: str, tag: str):
    query = urlencode({"fromImage": image, "tag": tag})
    return http_request(socket_path, "POST", f"/v1.41/images/create?{query}", NO_AUTH, timeout=120)


def decoded(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.split(b"\r\n") if line.strip()]


def shape(found: list[dict]) -> tuple[list[tuple], dict[str, list[str]]]:
    """What must agree between two daemons: the messages about no layer, in order, and each
    layer's statuses, in order, with runs of the same progress status counted once (their
    number depends on timing). dockerd may skip a short-lived status (``Verifying Checksum``
    in about one run of three; ``Downloading`` of a small layer now and then), so these are
    left out here; ``assert_every_download_reported`` checks that ours sends them."""
    general = [tuple(sorted(m.items())) for m in found if "progressDetail" not in m]
    layers: dict[str, list[str]] = {}
    for message in found:
        if "progressDetail" in message and message["status"] not in TRANSIENT:
            seen = layers.setdefault(message["id"], [])
            if not seen or seen[-1] != message["status"]:
                seen.append(message["status"])
    return general, layers


def assert_every_download_reported(found: list[dict]) -> None:
    """Ours sends every status: each layer it downloads shows ``Downloading`` with a byte count
    before ``Download complete``."""
    for message in found:
        if message.get("status") == "Download complete":
            before = found[: found.index(message)]
            downloading = [
                m for m in before if m.get("id") == message["id"] and m["status"] == "Downloading"
            ]
            assert downloading, f"no Downloading for layer {message['id']}"
            assert downloading[-1]["progressDetail"]["current"] > 0


def pull_events(socket_path: str, since: float) -> list[tuple]:
    """The ``image pull`` events since ``since``: type, action and actor."""
    query = f"since={since:.3f}&until={time.time() + 0.3:.3f}"
    body = http_request(socket_path, "GET", f"/v1.41/events?{query}").body
    found = [json.loads(line) for line in body.splitlines() if line.strip()]
    return [(e["Type"], e["Action"], e["Actor"]) for e in found if e["Action"] == "pull"]


def socket_of(host: str) -> str:
    return host.removeprefix("unix://")


def remove_in_dockerd(real_dockerd, *names: str) -> None:
    real_dockerd.docker("rmi", "-f", *names, check=False)


def test_the_pull_stream_and_errors_match_dockerds(daemon, real_dockerd, ours):
    image = busybox_image(extra=1)
    push(ours.url, "x/busybox", "1", image)
    name = f"{ours.host}/x/busybox"
    started = time.time()
    try:
        theirs = pull_over(socket_of(real_dockerd.host), name, "1")
        mine = pull_over(daemon.socket_path, name, "1")
        assert (mine.status, mine.headers["content-type"]) == (200, "application/json")
        assert theirs.status == 200
        assert shape(decoded(mine.body)) == shape(decoded(theirs.body))
        assert_every_download_reported(decoded(mine.body))
        # Bars drawn alike: the last Extracting of a layer is a full bar in both.
        for found in (decoded(mine.body), decoded(theirs.body)):
            full = [m for m in found if m.get("status") == "Extracting"][-1]
            assert full["progress"].startswith("[" + "=" * 50 + ">]")
        assert pull_events(daemon.socket_path, started) == pull_events(
            socket_of(real_dockerd.host), started
        )
        again_theirs = pull_over(socket_of(real_dockerd.host), name, "1")
        again_mine = pull_over(daemon.socket_path, name, "1")
        assert decoded(again_mine.body) == decoded(again_theirs.body)
        for tag in ("nope",):
            missing_theirs = pull_over(socket_of(real_dockerd.host), name, tag)
            missing_mine = pull_over(daemon.socket_path, name, tag)
            assert missing_mine.status == missing_theirs.status == 404
            assert missing_mine.json() == missing_theirs.json()
        repo_theirs = pull_over(socket_of(real_dockerd.host), f"{ours.host}/nosuch/repo", "1")
        repo_mine = pull_over(daemon.socket_path, f"{ours.host}/nosuch/repo", "1")
        assert (repo_mine.status, repo_mine.json()) == (repo_theirs.status, repo_theirs.json())
    finally:
        remove_in_dockerd(real_dockerd, f"{name}:1")


def test_a_partly_present_image_pulls_alike(daemon, real_dockerd, ours):
    base = busybox_image()
    more = busybox_image(extra=4)
    push(ours.url, "x/base", "1", base)
    push(ours.url, "x/more", "1", more)
    try:
        for socket_path in (socket_of(real_dockerd.host), daemon.socket_path):
            assert pull_over(socket_path, f"{ours.host}/x/base", "1").status == 200
        theirs = decoded(pull_over(socket_of(real_dockerd.host), f"{ours.host}/x/more", "1").body)
        mine = decoded(pull_over(daemon.socket_path, f"{ours.host}/x/more", "1").body)
        assert shape(mine)[0] == shape(theirs)[0]
        assert sorted(shape(mine)[1].items()) == sorted(shape(theirs)[1].items())
        assert_every_download_reported(mine)
        assert [m for m in mine if m.get("status") == "Already exists"] == [
            m for m in theirs if m.get("status") == "Already exists"
        ]
    finally:
        remove_in_dockerd(real_dockerd, f"{ours.host}/x/base:1", f"{ours.host}/x/more:1")


def test_docker_cli_pull_and_run_of_a_missing_image(daemon, ours, tmp_path):
    push(ours.url, "x/busybox", "1", busybox_image())
    docker_cli = docker_cli_storing_logins_in_a_file(daemon.host, tmp_path)
    pulled = docker_cli("pull", f"{ours.host}/x/busybox:1")
    assert pulled.stdout.splitlines()[0] == "1: Pulling from x/busybox"
    assert pulled.stdout.splitlines()[-1] == f"{ours.host}/x/busybox:1"
    assert f"Status: Downloaded newer image for {ours.host}/x/busybox:1" in pulled.stdout
    missing = docker_cli("pull", f"{ours.host}/x/busybox:nope", check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        f"Error response from daemon: manifest for {ours.host}/x/busybox:nope not found: "
    )
    push(ours.url, "x/other", "2", busybox_image(cmd="echo run pulled me"))
    ran = docker_cli("run", "--rm", f"{ours.host}/x/other:2")
    assert ran.stdout == "run pulled me\n"
    assert f"Unable to find image '{ours.host}/x/other:2' locally" in ran.stderr


def test_docker_cli_login_then_pull_from_a_basic_auth_registry(daemon, basic_registry, tmp_path):
    host = f"127.0.0.1:{basic_registry.port}"
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    push(f"http://{host}", "x/busybox", "1", busybox_image(), session)
    docker_cli = docker_cli_storing_logins_in_a_file(daemon.host, tmp_path)
    refused = docker_cli("pull", f"{host}/x/busybox:1", check=False)
    assert refused.returncode == 1
    assert "no basic auth credentials" in refused.stderr
    docker_cli("login", "-u", USER, "--password-stdin", host, input=PASSWORD)
    pulled = docker_cli("pull", f"{host}/x/busybox:1")
    assert pulled.stdout.splitlines()[-1] == f"{host}/x/busybox:1"


def test_docker_py_images_pull(daemon, ours):
    image = busybox_image()
    push(ours.url, "x/busybox", "1", image)
    client = docker.DockerClient(base_url=daemon.host, version="1.41")
    try:
        pulled = client.images.pull(f"{ours.host}/x/busybox", tag="1")
        assert pulled.id == image.image_id
        assert pulled.tags == [f"{ours.host}/x/busybox:1"]
        with pytest.raises(docker.errors.NotFound, match="manifest unknown"):
            client.images.pull(f"{ours.host}/x/busybox", tag="nope")
        output = client.containers.run(f"{ours.host}/x/busybox:1", remove=True)
        assert output == b"hello from dockyard\n"
    finally:
        client.close()


def test_distribution_inspect_answers_as_dockerds(daemon, real_dockerd, ours):
    image = busybox_image()
    push(ours.url, "x/busybox", "1", image)
    for name in (f"{ours.host}/x/busybox:1", f"{ours.host}/x/busybox@{image.digest}"):
        path = f"/v1.41/distribution/{name}/json"
        theirs = http_request(socket_of(real_dockerd.host), "GET", path, NO_AUTH)
        mine = http_request(daemon.socket_path, "GET", path, NO_AUTH)
        assert (mine.status, mine.json()) == (theirs.status, theirs.json())
        assert mine.json()["Descriptor"]["digest"] == image.digest
    path = f"/v1.41/distribution/{ours.host}/x/busybox:nope/json"
    theirs = http_request(socket_of(real_dockerd.host), "GET", path, NO_AUTH)
    mine = http_request(daemon.socket_path, "GET", path, NO_AUTH)
    assert (mine.status, mine.json()) == (theirs.status, theirs.json())


def test_a_mirror_that_asks_is_sent_what_dockerd_sends_it(start_daemon, tmp_path):
    """The credentials of ``X-Registry-Auth`` (for the default registry) answer a mirror's
    Basic challenge, from dockerd 20.10 and from ours alike; its ping gets none."""
    mirror = StubRegistry()
    try:
        mirror.serve_image("library/mirrored", "1", busybox_image(cmd="echo from the mirror"))

        def basic_challenge(handler) -> bool:
            if handler.headers.get("Authorization"):
                return False
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="mirror"')
            handler.send_header("Docker-Distribution-API-Version", "registry/2.0")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return True

        for path in ["/v2/", *mirror.routes]:
            mirror.hooks[path] = basic_challenge
        credentials = registry_auth("hubuser", "hubpass", "https://index.docker.io/v1/")
        query = urlencode({"fromImage": "mirrored", "tag": "1"})
        sent = {}
        with real_dockerd_of(
            tmp_path / "dockerd", extra_args=["--registry-mirror", mirror.url]
        ) as peer:
            reply = http_request(
                socket_of(peer.host),
                "POST",
                f"/v1.41/images/create?{query}",
                credentials,
                None,
                120,
            )
            assert not [m for m in decoded(reply.body) if "error" in m], reply.body
        sent["dockerd"] = authorizations(mirror.requests)
        mirror.requests.clear()
        config = (
            "[daemon]\n"
            f'default-registry = "127.0.0.1:{dead_port()}"\n'
            f'registry-mirrors = ["{mirror.url}"]\n'
        )
        daemon = start_daemon(config=config)
        reply = http_request(
            str(daemon.socket_path), "POST", f"/v1.41/images/create?{query}", credentials, None, 120
        )
        assert not [m for m in decoded(reply.body) if "error" in m], reply.body
        sent["ours"] = authorizations(mirror.requests)
        basic = "Basic " + base64.b64encode(b"hubuser:hubpass").decode()
        assert sent["ours"] == sent["dockerd"] == {"ping": {None}, "image": {basic}}
    finally:
        mirror.stop()


def authorizations(requests_seen: list[tuple[str, str, dict[str, str]]]) -> dict[str, set]:
    """The ``Authorization`` headers a mirror was sent, for its ping and for the image."""
    found: dict[str, set] = {"ping": set(), "image": set()}
    for _, path, headers in requests_seen:
        found["ping" if path == "/v2/" else "image"].add(headers.get("Authorization"))
    return found
