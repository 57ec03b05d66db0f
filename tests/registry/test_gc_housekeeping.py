"""gc's housekeeping: what interrupted writes leave behind (temporary files, half-deleted trees,
multipart uploads nobody can resume) and empty directories go once idle for upload-expiry;
one gc at a time per storage (a second is refused, naming the first); a blob being pushed
while gc sweeps is not lost."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from dockyard.registry import layout
from dockyard.registry.gc import GarbageCollector, GcPolicy, GcRunning, exclusive_run
from tests.registry.test_gc import HOUR, backdate, blob_exists, collect


def age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_leftovers_and_empty_directories_are_swept(client, store, registry_root):
    image = client.push_image("kept/app", "v1")
    blobs = registry_root / "v2" / "blobs" / "sha256"
    stale_temp = blobs / "00" / ".data.0123456789abcdef.tmp"
    stale_temp.parent.mkdir(parents=True)
    stale_temp.write_bytes(b"a write a crash interrupted")
    half_deleted = registry_root / "v2/repositories/.old.0123456789abcdef.deleting"
    (half_deleted / "_layers").mkdir(parents=True)
    (half_deleted / "_layers" / "link").write_text("x")
    empty = registry_root / "v2/repositories/gone/_layers/sha256"
    empty.mkdir(parents=True)
    resumable = registry_root / "v2/repositories/kept/app/.data.partial"
    resumable.write_bytes(b"parked bytes of an upload session")
    backdate(registry_root, 2 * HOUR)
    for directory in (
        stale_temp.parent,
        half_deleted,
        half_deleted / "_layers",
        empty,
        *empty.parents,
    ):
        if registry_root in directory.parents:
            age(directory, 2 * HOUR)
    fresh_temp = blobs / "00" / ".data.fedcba9876543210.tmp"
    fresh_temp.write_bytes(b"a write going on now")

    dry = collect(store, upload_expiry=HOUR, dry_run=True)
    assert stale_temp.exists() and half_deleted.exists() and empty.exists()
    assert set(dry.swept) >= {
        "temporary /v2/blobs/sha256/00/.data.0123456789abcdef.tmp",
        "temporary /v2/repositories/.old.0123456789abcdef.deleting",
        "empty directory /v2/repositories/gone/_layers/sha256",
        "empty directory /v2/repositories/gone",
    }

    report = collect(store, upload_expiry=HOUR)
    assert not stale_temp.exists() and not half_deleted.exists()
    assert not (registry_root / "v2/repositories/gone").exists()
    assert "empty directory /v2/repositories/gone" in report.swept
    assert fresh_temp.exists() and resumable.exists()  # in use, or an upload's to expire
    assert client.request("GET", "/v2/kept/app/manifests/v1").content == image.manifest
    for blob in [image.config, *image.layers]:
        assert blob_exists(store, client.digest(blob))


def test_a_second_gc_is_refused_while_one_runs(client, store, registry_root):
    client.push_image("locked", "v1")
    command = [sys.executable, "-m", "dockyard", "registry", "gc", "--root", str(registry_root)]
    env = {**os.environ, "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD": "1"}
    with exclusive_run(store, "first"):
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "another gc is running on this storage" in lines[0]
        assert f"pid {os.getpid()}" in lines[0]
        with pytest.raises(GcRunning):
            GarbageCollector(store, GcPolicy()).run()
        # A dry run changes nothing and may look while a gc runs.
        GarbageCollector(store, GcPolicy(dry_run=True)).run()
    assert not store.exists(layout.GC_LOCK)
    GarbageCollector(store, GcPolicy()).run()  # free again, and each run lets go
    assert not store.exists(layout.GC_LOCK)


def test_the_lock_of_a_gc_that_died_here_is_taken_over(store):
    dead = subprocess.Popen(["true"])
    dead.wait()
    holder = {"run": "dead", "host": socket.gethostname(), "pid": dead.pid, "started": 0}
    store.write_bytes(layout.GC_LOCK, json.dumps(holder).encode())
    GarbageCollector(store, GcPolicy()).run()
    assert not store.exists(layout.GC_LOCK)
    # One from another machine is not guessed at.
    store.write_bytes(layout.GC_LOCK, json.dumps({**holder, "host": "elsewhere"}).encode())
    with pytest.raises(GcRunning, match="elsewhere"):
        GarbageCollector(store, GcPolicy()).run()


def test_a_blob_pushed_slowly_while_leftovers_are_swept_is_kept(client, store, registry_root):
    """A monolithic PUT streaming for seconds while the backend's sweep runs again and again
    with a 1 s idle limit: its temporary file keeps being written, so it is never idle, and
    the directories it writes in are never empty. (Whole gcs during pushes, sessions expiring
    meanwhile: test_gc.py's test_gc_during_concurrent_pushes, which sweeps too.)"""
    data = os.urandom(64 * 1024)
    location = client.request("POST", "/v2/slow/blobs/uploads/").headers["Location"]
    if not location.startswith("http"):
        location = client.url + location

    def slowly():
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]
            time.sleep(0.15)

    result = {}

    def push():
        result["reply"] = requests.put(
            f"{location}{'&' if '?' in location else '?'}digest={client.digest(data)}",
            data=slowly(),
        )

    pusher = threading.Thread(target=push)
    pusher.start()
    swept = []
    while pusher.is_alive():
        swept += store.backend.sweep(time.time() - 1)
        time.sleep(0.05)
    pusher.join()
    assert len(swept) == 0 or all("empty directory" in line for line in swept), swept
    assert result["reply"].status_code == 201, result["reply"].text
    assert client.request("GET", f"/v2/slow/blobs/{client.digest(data)}").content == data


def test_s3_unfinished_uploads_and_the_lock(moto_server, serve_registry, client_for):
    from dockyard.plugins.registries.s3 import S3Backend, S3Config
    from dockyard.registry.store import RegistryStore

    bucket = moto_server.new_bucket()
    backend = S3Backend(
        S3Config(bucket=bucket, prefix="reg", endpoint_url=moto_server.endpoint,
                 region="us-east-1", access_key_id="testing", secret_access_key="testing")
    )  # fmt: skip
    store = RegistryStore(backend)
    client = client_for(serve_registry(store).url)
    image = client.push_image("s3/keep", "v1")
    s3 = moto_server.client()
    # A writer that died before parking its tail: an upload nobody can resume.
    s3.create_multipart_upload(Bucket=bucket, Key="reg/v2/blobs/sha256/00/dead/data")
    # A resumable session (over 5 MiB, so its bytes are in a multipart upload) stays.
    live = client.request("POST", "/v2/s3/keep/blobs/uploads/").headers["Location"]
    client.request("PATCH", live, data=os.urandom(6 * 1024 * 1024))

    with exclusive_run(store, "first"), pytest.raises(GcRunning):
        GarbageCollector(store, GcPolicy(grace_period=-5, upload_expiry=HOUR)).run()
    # S3 times cannot be backdated: "idle since" is judged against a cutoff in the future.
    report = GarbageCollector(store, GcPolicy(upload_expiry=-5 * 60)).run()
    assert report.swept == ["unfinished multipart upload /v2/blobs/sha256/00/dead/data"]
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == []  # the live session expired too (expiry < 0)
    assert report.uploads == [f"s3/keep/{live.rsplit('/', 1)[1]}"]
    assert client.request("GET", "/v2/s3/keep/manifests/v1").content == image.manifest
    assert not store.exists(layout.GC_LOCK)
