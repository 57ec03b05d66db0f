"""docker cp of a user-namespaced container (``userns-remap``): ids are the container's both ways.

A running container is read through its idmapped root (where files show host ids), a stopped
one through its snapshot (where they are stored with container ids): either way the archive
shows, and an upload gets, the ids the container sees.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator

import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from tests.conftest import shut_down
from tests.containerfs.conftest import start_ready
from tests.containers.engine_api import Api
from tests.containers.test_userns import start_remapped

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")


@pytest.fixture(scope="module", params=["overlay", "vfs"])
def api(request, tmp_path_factory) -> Iterator[Api]:
    base = tmp_path_factory.mktemp(f"userns-cp-{request.param}")
    (base / "config.toml").write_text("")
    daemon = start_remapped(base, "namespaces", request.param)
    try:
        extra = {f"bin/{applet}": "->busybox" for applet in ("stat", "chown", "touch")}
        archive = image_archive([busybox_rootfs(extra)], ["busybox:latest"])
        assert daemon.request("POST", "/v1.41/images/load", body=archive).status == 200
        yield Api(daemon)
    finally:
        shut_down(daemon)


def owners(reply_body: bytes) -> dict[str, tuple[int, int]]:
    with tarfile.open(fileobj=io.BytesIO(reply_body)) as archive:
        return {m.name: (m.uid, m.gid) for m in archive.getmembers()}


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_ids_are_the_containers_both_ways(api, state):
    script = "mkdir -p /tmp/d; touch /tmp/d/root /tmp/d/user; chown 1000:1000 /tmp/d/user; "
    container = start_ready(api, script)
    if state == "stopped":
        assert api.call("POST", f"/containers/{container}/stop?t=0").status == 204
    try:
        reply = api.call("GET", f"/containers/{container}/archive?path=/tmp/d")
        assert reply.status == 200, reply.body
        assert owners(reply.body) == {"d": (0, 0), "d/root": (0, 0), "d/user": (1000, 1000)}
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name, uid in (("up-root", 0), ("up-user", 7)):
                info = tarfile.TarInfo(name)
                info.size, info.uid, info.gid = 1, uid, uid
                archive.addfile(info, io.BytesIO(b"x"))
        reply = api.daemon.request(
            "PUT", f"/v1.41/containers/{container}/archive?path=/tmp/d", {}, buffer.getvalue()
        )
        assert reply.status == 200, reply.body
        reply = api.call("GET", f"/containers/{container}/archive?path=/tmp/d")
        found = owners(reply.body)
        assert found["d/up-root"] == (0, 0) and found["d/up-user"] == (7, 7)
        if state == "stopped":
            api.start(container)  # to look from inside
        code, out, _ = api.exec(
            container, ["stat", "-c", "%n %u %g", "/tmp/d/up-root", "/tmp/d/up-user"]
        )
        assert code == 0
        assert out.decode().split("\n")[:2] == ["/tmp/d/up-root 0 0", "/tmp/d/up-user 7 7"]
    finally:
        api.call("DELETE", f"/containers/{container}?force=1")
