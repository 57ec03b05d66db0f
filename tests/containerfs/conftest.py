"""One daemon per test module with busybox (files under /etc and /data to copy and change)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from tests.conftest import Daemon, module_daemon
from tests.containers.engine_api import Api

#: Extra files of the test image: a directory tree, and a symlink to a file that exists on
#: the host too (the containers make the ones that climb out with ``..``, which a layer
#: cannot hold).
IMAGE_FILES: dict[str, bytes | str | None] = {
    "bin/cat": "->busybox",
    "bin/ls": "->busybox",
    "bin/mkdir": "->busybox",
    "bin/rm": "->busybox",
    "bin/sleep": "->busybox",
    "bin/sh": "->busybox",
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    "etc/group": b"root:x:0:\nnobody:x:65534:\n",
    "etc/shadow": b"container-shadow\n",
    "srv": None,
    "srv/data": None,
    "srv/data/a.txt": b"alpha\n",
    "srv/data/sub": None,
    "srv/data/sub/b.txt": b"beta\n",
    "srv/out-abs": "->/etc/shadow",
    "bin/ln": "->busybox",
}


def load_image(daemon: Daemon) -> Api:
    layer = busybox_rootfs(IMAGE_FILES)
    archive = image_archive([layer], ["busybox:latest"], config_extra={"config": {"Cmd": ["sh"]}})
    reply = daemon.request("POST", "/v1.41/images/load", body=archive)
    assert reply.status == 200, reply.body
    return Api(daemon)


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory) -> Iterator[Daemon]:
    with module_daemon(tmp_path_factory.mktemp("containerfs-daemon")) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def api(shared_daemon) -> Api:
    return load_image(shared_daemon)


def start_ready(api: Api, script: str, **config) -> str:  # type: ignore[no-untyped-def]
    """A running container that ran ``script`` (a shell line ending in ``;``), once it has."""
    container = api.create(["sh", "-c", script + " touch /ready; exec sleep 3600"], **config)
    api.start(container)
    deadline = time.monotonic() + 20
    while api.call("HEAD", f"/containers/{container}/archive?path=/ready").status != 200:
        assert time.monotonic() < deadline, "the container never got ready"
        time.sleep(0.05)
    return container


@contextlib.contextmanager
def container_in_state(api: Api, state: str, script: str) -> Iterator[str]:
    """A container that ran ``script``: ``running`` (read through /proc/PID/root) or
    ``stopped`` (its snapshot mounted for each request); removed afterwards."""
    if state == "running":
        container = start_ready(api, script)
    else:
        container = api.create(["sh", "-c", script])
        api.start(container)
        assert api.wait(container)["StatusCode"] == 0
    try:
        yield container
    finally:
        api.call("DELETE", f"/containers/{container}?force=1")
