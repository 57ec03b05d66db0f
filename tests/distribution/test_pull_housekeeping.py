"""What a pull leaves behind and what it reads: downloads that are cleaned up (a finished
pull's, and stale ones at daemon start and after each pull, never one a running pull needs),
the per-blob lock table that only holds the blobs being downloaded, and manifests cut off at
their size limit."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

from dockyard.daemon.distribution.pull import STALE_DOWNLOAD_AGE, Puller
from dockyard.daemon.distribution.service import RegistryService
from dockyard.daemon.images.content import ContentStore
from dockyard.daemon.images.store import ImageStore
from dockyard.distribution.credentials import Credentials
from dockyard.distribution.endpoints import EndpointPolicy
from dockyard.distribution.reference import parse_reference
from dockyard.distribution.remote import MAX_MANIFEST_SIZE
from dockyard.plugins.storage.vfs import VfsDriver
from dockyard.testing.images import layer_tar
from tests.conftest import restarted
from tests.distribution.images import (
    DOCKER_MANIFEST,
    Served,
    StubRegistry,
    build_image,
    busybox_image,
    push,
    redirect_to,
    sha256,
)
from tests.distribution.test_pull import (
    drop_after,
    inspect,
    messages,
    ours,
    pull,
    stub,
    succeeded,
)

__all__ = ["ours", "stub"]  # fixtures of test_pull

#: An mtime old enough for a download to be stale.
LONG_AGO = time.time() - STALE_DOWNLOAD_AGE - 3600


def plant(downloads: Path, name: str, stale: bool, data: bytes = b"some bytes") -> Path:
    """A download as an earlier pull would have left it."""
    downloads.mkdir(parents=True, exist_ok=True)
    path = downloads / name
    path.write_bytes(data)
    if stale:
        os.utime(path, (LONG_AGO, LONG_AGO))
    return path


def hex_of(blob: bytes) -> str:
    return sha256(blob).removeprefix("sha256:")


def listing(downloads: Path) -> set[str]:
    return {path.name for path in downloads.iterdir()}


# --------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------


def test_stale_downloads_are_removed_when_the_daemon_starts_and_fresh_ones_kept(start_daemon):
    daemon = start_daemon()
    downloads = daemon.data_root / "downloads"
    plant(downloads, "a" * 64 + ".partial", stale=True)
    plant(downloads, "b" * 64, stale=True)  # verified, its image never recorded
    plant(downloads, "c" * 64 + ".partial", stale=False)
    daemon.process.kill()
    daemon.process.wait()
    with restarted(daemon):
        assert listing(downloads) == {"c" * 64 + ".partial"}


def test_a_pull_ending_removes_stale_downloads_and_keeps_fresh_ones(daemon, ours, stub):
    downloads = daemon.data_root / "downloads"
    plant(downloads, "a" * 64 + ".partial", stale=True)
    plant(downloads, "c" * 64 + ".partial", stale=False)
    image = busybox_image()
    push(ours.url, "x/busybox", "1", image)
    succeeded(messages(pull(daemon, f"{ours.host}/x/busybox", "1")))
    assert listing(downloads) == {"c" * 64 + ".partial"}
    # A pull that fails ends too, and keeps its own partial download to resume.
    plant(downloads, "d" * 64 + ".partial", stale=True)
    broken = busybox_image(extra=1, cmd="echo broken")  # only the layer above busybox to get
    stub.serve_image("x/broken", "1", broken)
    top = broken.blobs[1]
    stub.hooks[stub.blob_path("x/broken", top)] = drop_after(len(top) // 2, top, [])
    assert "errorDetail" in messages(pull(daemon, f"{stub.host}/x/broken", "1"))[-1]
    assert listing(downloads) == {"c" * 64 + ".partial", hex_of(top) + ".partial"}


def test_a_finished_pull_leaves_no_download_of_its_layers(daemon, ours):
    """Even of layers it did not download: an image already here, or a layer that already
    exists, leaves what an earlier, interrupted pull of another name had left."""
    downloads = daemon.data_root / "downloads"
    base = busybox_image()
    more = busybox_image(extra=1)
    push(ours.url, "x/base", "1", base)
    push(ours.url, "x/more", "1", more)
    succeeded(messages(pull(daemon, f"{ours.host}/x/base", "1")))
    shared = base.blobs[0]
    assert shared == more.blobs[0]
    leftover = hex_of(shared)
    plant(downloads, leftover + ".partial", stale=False, data=shared[:100])
    plant(downloads, leftover, stale=False, data=shared)
    found = messages(pull(daemon, f"{ours.host}/x/base", "1"))
    assert found[-1] == {"status": f"Status: Image is up to date for {ours.host}/x/base:1"}
    assert listing(downloads) == set()
    plant(downloads, leftover + ".partial", stale=False, data=shared[:100])
    found = messages(pull(daemon, f"{ours.host}/x/more", "1"))
    succeeded(found)
    assert {"status": "Already exists", "progressDetail": {}, "id": leftover[:12]} in found
    assert listing(downloads) == set()


def test_a_download_in_progress_is_never_removed_however_old_it_looks(daemon, stub, ours):
    image = busybox_image(cmd="echo still here")
    stub.serve_image("x/slow", "1", image)
    blob = image.blobs[0]
    half = len(blob) // 2
    release = threading.Event()

    def half_then_wait(handler) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(blob)))
        handler.end_headers()
        handler.wfile.write(blob[:half])
        handler.wfile.flush()
        release.wait(10)
        handler.wfile.write(blob[half:])
        return True

    stub.hooks[stub.blob_path("x/slow", blob)] = half_then_wait
    slow: dict[str, Any] = {}
    puller = threading.Thread(
        target=lambda: slow.update(reply=pull(daemon, f"{stub.host}/x/slow", "1"))
    )
    puller.start()
    try:
        partial = daemon.data_root / "downloads" / (hex_of(blob) + ".partial")
        deadline = time.monotonic() + 10
        while not partial.exists():  # the bytes come in batches: the file may still be empty
            assert time.monotonic() < deadline, "the download did not start"
            time.sleep(0.05)
        os.utime(partial, (LONG_AGO, LONG_AGO))
        # Another pull ends meanwhile, and removes stale downloads: not this one.
        other = build_image([layer_tar({"other": b"no layer in common\n"})])
        push(ours.url, "x/other", "1", other)
        succeeded(messages(pull(daemon, f"{ours.host}/x/other", "1")))
        assert partial.exists()
    finally:
        release.set()
        puller.join(30)
    succeeded(messages(slow["reply"]))
    assert inspect(daemon, f"{stub.host}/x/slow:1")["Id"] == image.image_id
    assert listing(daemon.data_root / "downloads") == set()


# --------------------------------------------------------------------------------------------
# The per-blob locks, in-process
# --------------------------------------------------------------------------------------------


def in_process_puller(root: Path) -> Puller:
    store = ImageStore(root / "image", ContentStore(root / "content"), VfsDriver(root / "driver"))
    registries = RegistryService(EndpointPolicy(), "127.0.0.1:5000")
    return Puller(registries, store, root / "downloads")


def test_blob_locks_live_while_held_and_one_blob_is_downloaded_once(tmp_path, stub):
    image = busybox_image(extra=1)
    stub.serve_image("x/a", "1", image)
    stub.serve_image("x/b", "1", image)
    puller = in_process_puller(tmp_path)
    big = stub.blob_path("x/a", image.blobs[0])
    started = threading.Event()
    release = threading.Event()

    def stall(handler) -> bool:
        started.set()
        release.wait(10)
        return False  # then served as usual

    stub.hooks[big] = stall
    stub.hooks[stub.blob_path("x/b", image.blobs[0])] = stall
    held_while_downloading: list[int] = []

    async def one(name: str) -> list[dict]:
        found: list[dict] = []
        reference = parse_reference(f"{stub.host}/{name}:1")
        resolved = await puller.resolve(reference, Credentials())
        await puller.pull(resolved, found.append)
        return found

    async def both() -> tuple[list[dict], list[dict]]:
        pulls = asyncio.gather(one("x/a"), one("x/b"))
        while not started.is_set():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # the other pull is waiting for the blob by now
        held_while_downloading.append(len(puller._blob_locks))
        release.set()
        return await pulls

    first, second = asyncio.run(both())
    for found in (first, second):
        assert not [m for m in found if "error" in m], found
    assert held_while_downloading == [1]  # the big blob's; the small one's is done
    gets = [r[1] for r in stub.requests if r[0] == "GET" and "/blobs/" in r[1]]
    blob_digests = {path.rpartition("/")[2] for path in gets}
    assert blob_digests == {sha256(b) for b in image.blob_map().values()}
    for layer in image.blobs:  # the config is read whole by each pull, the layers once
        assert len([path for path in gets if sha256(layer) in path]) == 1, gets
    assert len(puller._blob_locks) == 0
    assert list((tmp_path / "downloads").iterdir()) == []


# --------------------------------------------------------------------------------------------
# Manifests: at most MAX_MANIFEST_SIZE bytes read
# --------------------------------------------------------------------------------------------


def test_a_manifest_declaring_more_than_the_limit_is_refused_before_it_is_read(daemon, stub):
    def oversized(handler) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Type", DOCKER_MANIFEST)
        handler.send_header("Content-Length", str(MAX_MANIFEST_SIZE + 1))
        handler.send_header("Docker-Distribution-API-Version", "registry/2.0")
        handler.end_headers()
        handler.wfile.write(b"{")
        handler.wfile.flush()
        time.sleep(5)  # the rest never comes: a reader would wait for it
        handler.close_connection = True
        return True

    stub.hooks["/v2/x/huge/manifests/1"] = oversized
    started = time.monotonic()
    reply = pull(daemon, f"{stub.host}/x/huge", "1")
    assert time.monotonic() - started < 4
    assert reply.status == 400, reply.body
    assert reply.json() == {
        "message": f"manifest for {stub.host}/x/huge:1 is larger than {MAX_MANIFEST_SIZE} bytes"
    }


def test_a_manifest_without_a_length_is_cut_off_at_the_limit(daemon, stub):
    sent: list[int] = []
    endless = 64 * MAX_MANIFEST_SIZE

    def chunked(handler) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Type", DOCKER_MANIFEST)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Docker-Distribution-API-Version", "registry/2.0")
        handler.end_headers()
        piece = b" " * (1 << 16)
        total = 0
        try:
            while total < endless:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                total += len(piece)
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the daemon hung up
        sent.append(total)
        handler.close_connection = True
        return True

    stub.hooks["/v2/x/endless/manifests/1"] = chunked
    reply = pull(daemon, f"{stub.host}/x/endless", "1")
    assert reply.status == 400, reply.body
    assert "is larger than" in reply.json()["message"]
    deadline = time.monotonic() + 10
    while not sent and time.monotonic() < deadline:
        time.sleep(0.05)
    # Socket buffers hold a few MiB more than the daemon read, never the rest.
    assert sent and sent[0] < 4 * MAX_MANIFEST_SIZE, sent


def test_a_manifest_redirected_elsewhere_is_followed(daemon, stub):
    """As dockerd's registry client follows a manifest's redirect (now that manifests are
    streamed, through the same path as blobs)."""
    image = busybox_image()
    stub.serve_image("x/moved", "1", image)
    elsewhere = StubRegistry("127.0.0.2")
    try:
        elsewhere.routes["/elsewhere/manifest"] = Served(image.manifest, DOCKER_MANIFEST)
        stub.hooks["/v2/x/moved/manifests/1"] = redirect_to(f"{elsewhere.url}/elsewhere/manifest")
        succeeded(messages(pull(daemon, f"{stub.host}/x/moved", "1")))
        assert inspect(daemon, f"{stub.host}/x/moved:1")["Id"] == image.image_id
        assert [r[1] for r in elsewhere.requests] == ["/elsewhere/manifest"]
    finally:
        elsewhere.stop()
