"""Garbage collection: what goes, what stays, and safety while pushes go on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from dockyard.registry import layout
from dockyard.registry.gc import GarbageCollector, GcPolicy
from dockyard.registry.names import parse_digest
from dockyard.registry.store import RegistryStore

HOUR = 3600.0


def backdate(root: Path, seconds: float) -> None:
    """Make everything stored look ``seconds`` old (as if pushed long ago)."""
    stamp = time.time() - seconds
    for directory, _, files in os.walk(root):
        for name in files:
            os.utime(os.path.join(directory, name), (stamp, stamp))


def blob_exists(store: RegistryStore, digest: str) -> bool:
    return store.exists(layout.blob_data(parse_digest(digest)))


def collect(store: RegistryStore, **policy: object):
    return GarbageCollector(store, GcPolicy(**policy)).run()  # type: ignore[arg-type]


def test_unreferenced_old_blobs_go_referenced_and_young_ones_stay(client, store, registry_root):
    image = client.push_image("app", "v1", layers=[b"kept layer"])
    orphan = client.push_blob("app", b"orphan")
    backdate(registry_root, 2 * HOUR)
    young = client.push_blob("app", b"young orphan")
    dry = collect(store, grace_period=HOUR, dry_run=True)
    assert dry.blobs == [orphan]
    assert blob_exists(store, orphan)
    report = collect(store, grace_period=HOUR)
    assert report.blobs == [orphan]
    assert report.bytes_freed == len(b"orphan")
    assert not blob_exists(store, orphan)
    assert blob_exists(store, young)
    for digest in (image.digest, client.digest(image.config), client.digest(b"kept layer")):
        assert blob_exists(store, digest)
    assert client.request("HEAD", f"/v2/app/blobs/{orphan}").status_code == 404
    assert client.request("GET", "/v2/app/manifests/v1").status_code == 200
    # The trash is gone and so is the stale link.
    assert not store.exists(layout.TRASH)
    assert not store.exists(layout.layer_link("app", parse_digest(orphan)))


def test_blob_referenced_from_another_repository_stays(client, store, registry_root):
    shared = b"shared layer"
    client.push_image("one", "v1", layers=[shared])
    client.push_blob("two", shared)
    layer = client.digest(shared)
    assert client.request("DELETE", f"/v2/two/blobs/{layer}").status_code == 202
    backdate(registry_root, 2 * HOUR)
    assert collect(store, grace_period=HOUR).blobs == []
    assert client.request("GET", f"/v2/one/blobs/{layer}").content == shared


def test_deleting_a_manifest_makes_its_blobs_garbage(client, store, registry_root):
    image = client.push_image("gone", "v1", layers=[b"doomed layer"])
    assert client.request("DELETE", f"/v2/gone/manifests/{image.digest}").status_code == 202
    backdate(registry_root, 2 * HOUR)
    report = collect(store, grace_period=HOUR)
    expected = {image.digest, client.digest(image.config), client.digest(b"doomed layer")}
    assert set(report.blobs) == expected
    assert not any(blob_exists(store, d) for d in expected)


def test_untagged_manifests_only_when_configured(client, store, registry_root):
    old = client.push_image("u", "v1", layers=[b"old"])
    new = client.push_image("u", "v1", layers=[b"new"])  # retags; "old" is now untagged
    subject = {"mediaType": client.MANIFEST, "digest": new.digest, "size": len(new.manifest)}
    client.push_blob("u", b"{}")
    signature = client.manifest_for(b"{}", [], subject=subject, artifact_type="x/sig")
    assert client.put_manifest("u", client.digest(signature), signature).status_code == 201
    backdate(registry_root, 2 * HOUR)
    kept = collect(store, grace_period=HOUR)
    assert kept.manifests == []
    assert client.request("GET", f"/v2/u/manifests/{old.digest}").status_code == 200
    report = collect(store, grace_period=HOUR, delete_untagged=True)
    assert report.manifests == [f"u@{old.digest}"]
    assert client.request("GET", f"/v2/u/manifests/{old.digest}").status_code == 404
    assert not blob_exists(store, client.digest(b"old"))
    assert not blob_exists(store, old.digest)
    # The tagged image and its (untagged) signature stay.
    assert client.request("GET", "/v2/u/manifests/v1").status_code == 200
    assert client.request("GET", f"/v2/u/manifests/{client.digest(signature)}").status_code == 200
    assert blob_exists(store, client.digest(b"new"))


def test_index_children_stay_when_untagged_manifests_are_collected(client, store, registry_root):
    child = client.push_image("multi", "child")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": client.INDEX,
            "manifests": [
                {"mediaType": client.MANIFEST, "digest": child.digest, "size": len(child.manifest)}
            ],
        }
    ).encode()
    assert client.put_manifest("multi", "latest", index, client.INDEX).status_code == 201
    assert client.request("DELETE", "/v2/multi/manifests/child").status_code == 202
    backdate(registry_root, 2 * HOUR)
    report = collect(store, grace_period=HOUR, delete_untagged=True)
    assert report.manifests == [] and report.blobs == []
    assert client.request("GET", f"/v2/multi/manifests/{child.digest}").status_code == 200


def test_expired_uploads_are_purged_active_ones_kept(client, store, registry_root):
    stale = client.request("POST", "/v2/up/blobs/uploads/").headers["Location"]
    client.request("PATCH", stale, data=b"abandoned", headers={"Content-Range": "0-8"})
    backdate(registry_root, 2 * 86400)
    active = client.request("POST", "/v2/up/blobs/uploads/").headers["Location"]
    client.request("PATCH", active, data=b"in flight", headers={"Content-Range": "0-8"})
    report = collect(store, upload_expiry=86400)
    assert report.uploads == [f"up/{stale.rsplit('/', 1)[1]}"]
    assert client.request("GET", stale).status_code == 404
    assert client.request("GET", active).headers["Range"] == "0-8"
    done = client.request("PUT", f"{active}?digest={client.digest(b'in flight')}")
    assert done.status_code == 201
    upload_dir = registry_root / "v2/repositories/up/_uploads"
    assert not upload_dir.exists() or list(upload_dir.iterdir()) == []


def test_a_crashed_gc_leaves_its_trash_to_be_put_back(client, store, registry_root):
    image = client.push_image("crash", "v1")
    layer = parse_digest(client.digest(image.layers[0]))
    # Simulate a gc killed after moving a (wrongly judged) blob to its trash.
    run = "1-deadbeef"
    store.write_bytes(
        f"{layout.TRASH}/{run}/index.json", json.dumps([layout.blob_data(layer)]).encode()
    )
    store.backend.move(layout.blob_data(layer), layout.trash(run, layout.blob_data(layer)))
    # The next gc puts back whatever an earlier, interrupted run left in its trash.
    report = collect(store, grace_period=HOUR)
    assert layout.blob_data(layer) in report.restored
    assert client.request("GET", f"/v2/crash/blobs/{layer}").content == image.layers[0]
    assert not store.exists(layout.TRASH)


def test_manifest_push_takes_a_blob_back_from_a_running_gc(client, store, registry_root):
    """The interleaving gc's second look cannot see: the push restores from the trash."""
    client.push_blob("race", b"{}")
    layer = client.push_blob("race", b"old layer")
    backdate(registry_root, 2 * HOUR)
    collector = GarbageCollector(store, GcPolicy(grace_period=HOUR))
    moved = collector._move_to_trash([layout.blob_data(parse_digest(layer))])
    assert moved and not blob_exists(store, layer)
    manifest = client.manifest_for(b"{}", [b"old layer"])
    assert client.put_manifest("race", "v1", manifest).status_code == 201
    assert blob_exists(store, layer)


def push_while_collecting(client, store, grace_period: float, shared: bytes):
    """Three clients push images (one layer shared and old) while gc runs over and over."""
    accepted: list[tuple[str, list[bytes]]] = []
    refused: list[str] = []
    errors: list[str] = []

    def pusher(worker: int) -> None:
        from requests import Session

        http = Session()
        for count in range(20):
            tag = f"g{int(grace_period)}-w{worker}-{count}"
            layers = [shared, os.urandom(512)]
            http.post(
                f"{client.url}/v2/busy/blobs/uploads/?digest={client.digest(layers[1])}",
                data=layers[1],
            )
            if http.head(f"{client.url}/v2/busy/blobs/{client.digest(shared)}").status_code != 200:
                http.post(
                    f"{client.url}/v2/busy/blobs/uploads/?digest={client.digest(shared)}",
                    data=shared,
                )
            http.post(
                f"{client.url}/v2/busy/blobs/uploads/?digest={client.digest(b'{}')}", data=b"{}"
            )
            manifest = client.manifest_for(b"{}", layers)
            reply = http.put(
                f"{client.url}/v2/busy/manifests/{tag}",
                data=manifest,
                headers={"Content-Type": client.MANIFEST},
            )
            if reply.status_code == 201:
                accepted.append((tag, layers))
            elif reply.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN":
                refused.append(tag)
            else:
                errors.append(reply.text)

    threads = [threading.Thread(target=pusher, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    runs = 0
    while any(t.is_alive() for t in threads):
        collect(store, grace_period=grace_period, upload_expiry=5)
        runs += 1
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert errors == []
    assert runs >= 2
    for tag, layers in accepted:
        assert client.request("GET", f"/v2/busy/manifests/{tag}").status_code == 200
        for layer in [b"{}", *layers]:
            assert blob_exists(store, client.digest(layer)), (tag, layer[:20])
    return accepted, refused


def test_gc_during_concurrent_pushes(client, store, registry_root):
    shared = b"a shared layer"
    base = client.push_image("busy", "base", layers=[shared])
    backdate(registry_root, 2 * HOUR)
    # With a grace period every push lands while gc keeps sweeping and expiring idle uploads.
    accepted, refused = push_while_collecting(client, store, 60, shared)
    assert len(accepted) == 60 and refused == []
    # With none at all, and the shared layer old and unreferenced, fresh blobs may be swept
    # before their manifest arrives: such pushes are refused (MANIFEST_BLOB_UNKNOWN), but an
    # accepted manifest is never left dangling.
    assert client.request("DELETE", f"/v2/busy/manifests/{base.digest}").status_code == 202
    backdate(registry_root, 2 * HOUR)
    push_while_collecting(client, store, 0, shared)


def test_gc_command_line(client, registry_root):
    client.push_image("cli", "v1")
    orphan = client.push_blob("cli", b"cli orphan")
    backdate(registry_root, 2 * HOUR)
    command = [sys.executable, "-m", "dockyard", "registry", "gc", "--root", str(registry_root)]
    env = {**os.environ, "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD": "1"}
    dry = subprocess.run(
        [*command, "--dry-run"], capture_output=True, text=True, env=env, check=True
    )
    assert "would delete 1 blob(s)" in dry.stdout and orphan in dry.stdout
    assert client.request("HEAD", f"/v2/cli/blobs/{orphan}").status_code == 200
    real = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    assert "deleted 1 blob(s)" in real.stdout
    assert client.request("HEAD", f"/v2/cli/blobs/{orphan}").status_code == 404
    assert client.request("GET", "/v2/cli/manifests/v1").status_code == 200


def test_gc_over_s3(moto_server, serve_registry, client_for):
    from dockyard.plugins.registries.s3 import S3Backend, S3Config

    bucket = moto_server.new_bucket()
    backend = S3Backend(
        S3Config(bucket=bucket, endpoint_url=moto_server.endpoint, region="us-east-1",
                 access_key_id="testing", secret_access_key="testing")
    )  # fmt: skip
    store = RegistryStore(backend)
    client = client_for(serve_registry(store).url)
    image = client.push_image("s3/app", "v1")
    orphan = client.push_blob("s3/app", b"s3 orphan")
    stale = client.request("POST", "/v2/s3/app/blobs/uploads/").headers["Location"]
    client.request("PATCH", stale, data=os.urandom(6 * 1024 * 1024))
    # S3 times cannot be backdated: a negative grace period makes everything "old".
    report = collect(store, grace_period=-5, upload_expiry=-5)
    assert report.blobs == [orphan]
    assert report.uploads == [f"s3/app/{stale.rsplit('/', 1)[1]}"]
    assert client.request("GET", "/v2/s3/app/manifests/v1").content == image.manifest
    assert client.request("HEAD", f"/v2/s3/app/blobs/{orphan}").status_code == 404
    objects = moto_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert not [o["Key"] for o in objects if "_uploads" in o["Key"] or "_trash" in o["Key"]]
    assert moto_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
