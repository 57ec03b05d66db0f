"""docker-py against our daemon: the swarm endpoints answer as dockerd outside a swarm does,
``/plugins`` lists nothing, finds no plugin (404) and refuses the rest (501), a bad ``images/load`` archive is an error
in a 200 stream (docker-py's ImageLoadError), and a failed import leaves no blob behind.
The same beside dockerd: test_engine_endpoints_interop.py."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import docker
import pytest

from dockyard.daemon.api.swarm import NO_MANAGED_PLUGINS, NOT_A_MANAGER, NOT_IN_A_SWARM
from dockyard.testing.images import busybox_rootfs
from tests.conftest import Daemon, module_daemon

#: Not a tar, not compressed: what a user loads by mistake.
GARBAGE = b"this is not a tar archive at all" * 100


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    with module_daemon(tmp_path_factory.mktemp("endpoints")) as started:
        yield started


@pytest.fixture(scope="module")
def client(daemon: Daemon) -> docker.DockerClient:
    return docker.DockerClient(base_url=daemon.host, version="1.41")


def refusal(call, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(docker.errors.APIError) as refused:
        call(*args, **kwargs)
    return refused.value.response.status_code, refused.value.explanation


def test_swarm_endpoints_answer_as_a_dockerd_outside_a_swarm(client: docker.DockerClient) -> None:
    assert refusal(client.swarm.leave) == (503, NOT_IN_A_SWARM)
    # docker-py's teardown: a forced leave takes dockerd's 503 for "nothing to leave".
    assert client.swarm.leave(force=True) is True
    assert refusal(client.api.inspect_swarm) == (503, NOT_A_MANAGER)
    assert refusal(client.api.get_unlock_key) == (503, NOT_A_MANAGER)
    assert refusal(client.nodes.list) == (503, NOT_A_MANAGER)
    assert refusal(client.nodes.get, "x") == (503, NOT_A_MANAGER)
    assert refusal(client.services.list) == (503, NOT_A_MANAGER)
    assert refusal(client.api.tasks) == (503, NOT_A_MANAGER)
    assert refusal(client.secrets.list) == (503, NOT_A_MANAGER)
    assert refusal(client.configs.list) == (503, NOT_A_MANAGER)
    status, message = refusal(client.swarm.init)
    assert status == 501 and "no swarm mode" in message
    # The swarm does not exist, so /info says so too.
    assert client.info()["Swarm"]["LocalNodeState"] == "inactive"


def test_plugins_list_nothing_and_refuse_the_rest(client: docker.DockerClient) -> None:
    assert client.plugins.list() == []
    # An inspect finds nothing (docker inspect's "No such object" needs the 404).
    assert refusal(client.api.inspect_plugin, "x") == (404, 'plugin "x" not found')
    assert refusal(client.api.remove_plugin, "x") == (501, NO_MANAGED_PLUGINS)
    assert refusal(client.api.enable_plugin, "x") == (501, NO_MANAGED_PLUGINS)
    assert refusal(client.api.plugin_privileges, "x")[0] == 501


def test_a_bad_archive_is_a_load_error_in_a_200_stream(
    client: docker.DockerClient, daemon: Daemon
) -> None:
    with pytest.raises(docker.errors.ImageLoadError) as failed:
        client.images.load(GARBAGE)
    assert "invalid archive" in str(failed.value)
    reply = daemon.request("POST", "/v1.41/images/load", {}, GARBAGE)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    message = reply.json()
    assert message["error"] == message["errorDetail"]["message"]
    # A tar that is no image archive: the same.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member = tarfile.TarInfo("hello.txt")
        member.size = 2
        tar.addfile(member, io.BytesIO(b"hi"))
    with pytest.raises(docker.errors.ImageLoadError, match=r"no manifest\.json"):
        client.images.load(buffer.getvalue())


def test_a_failed_import_removes_the_blob_it_stored(
    client: docker.DockerClient, daemon: Daemon
) -> None:
    blobs = daemon.data_root / "content" / "blobs"
    before = set(blobs.rglob("*"))
    status, message = refusal(client.api.import_image_from_data, GARBAGE, repository="imp")
    assert status == 400, message
    assert set(blobs.rglob("*")) == before
    assert client.images.list(name="imp") == []
    # A good import keeps its blob; importing the same content again and failing later would
    # not remove it (it was there before).
    client.api.import_image_from_data(busybox_rootfs(), repository="imp", tag="good")
    kept = set(blobs.rglob("*")) - before
    assert len(kept) == 2  # the layer and the config
