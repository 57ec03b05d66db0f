"""The image store in-process, over each built-in storage driver (real unpacking, no mocks)."""

from __future__ import annotations

import io
import json
import threading

import pytest

from dockyard.core.errors import Conflict, InvalidParameter, NotFound
from dockyard.daemon.images import archive
from dockyard.daemon.images.content import ContentStore
from dockyard.daemon.images.store import ImageStore, chain_id
from dockyard.distribution.reference import parse_reference
from dockyard.plugins.storage.overlay import OverlayDriver
from dockyard.plugins.storage.vfs import VfsDriver
from dockyard.testing.storage import mounted
from tests.images.conftest import busybox_rootfs, docker_archive, layer_tar, sha256

DRIVERS = {"vfs": VfsDriver, "overlay": OverlayDriver}


@pytest.fixture(params=sorted(DRIVERS))
def store(request, tmp_path) -> ImageStore:
    driver = DRIVERS[request.param](tmp_path / "driver")
    events: list[tuple[str, str, dict]] = []
    image_store = ImageStore(
        tmp_path / "image", ContentStore(tmp_path / "content"), driver, lambda *e: events.append(e)
    )
    image_store.events = events  # type: ignore[attr-defined]
    return image_store


def reopen(store: ImageStore) -> ImageStore:
    return ImageStore(store.root, ContentStore(store.content.root), store.driver)


def test_import_unpacks_one_layer_and_tags(store):
    image = archive.import_rootfs(
        store,
        io.BytesIO(busybox_rootfs(compress=True)),
        parse_reference("bb:1"),
        ['CMD ["/bin/sh"]'],
        "hello",
    )
    assert store.resolve("bb:1") == image
    assert store.resolve("docker.io/library/bb:1") == image
    assert store.resolve(image.id) == image
    assert store.resolve(image.id.removeprefix("sha256:")[:12]) == image
    assert store.resolve("sha256:" + image.id.removeprefix("sha256:")[:10]) == image
    config = store.config(image)
    assert config["config"]["Cmd"] == ["/bin/sh"]
    assert config["comment"] == "hello"
    assert config["rootfs"]["diff_ids"] == [sha256(busybox_rootfs())]
    assert image.id == sha256(store.content.read(image.id))
    (layer,) = [store.layer(chain) for chain in image.layers]
    assert list(store.driver.keys()) == [layer.key]
    assert ("tag", image.id, {"name": "bb:1"}) in store.events
    with pytest.raises(NotFound, match="No such image: bb:2"):
        store.resolve("bb:2")


def test_shared_base_layer_is_stored_once_and_outlives_one_image(store):
    base = layer_tar({"etc": None, "etc/os": b"base\n"})
    top_a = layer_tar({"etc/a": b"a\n"})
    top_b = layer_tar({"etc/b": b"b\n"})
    for tag, layers in (("a:1", [base, top_a]), ("b:1", [base, top_b])):
        archive.load_archive(store, io.BytesIO(docker_archive(layers, [tag])))
    image_a, image_b = store.resolve("a:1"), store.resolve("b:1")
    assert image_a.layers[0] == image_b.layers[0] == sha256(base)
    assert image_a.layers[1] == chain_id(sha256(base), sha256(top_a))
    assert len(set(store.driver.keys())) == 3
    store.delete("a:1")
    assert set(store.driver.keys()) == {store.layer(c).key for c in image_b.layers}
    store.delete("b:1")
    assert list(store.driver.keys()) == []
    assert store.content.digests() == []
    assert store.images() == []


def test_untag_then_delete_semantics(store):
    image = archive.import_rootfs(
        store, io.BytesIO(busybox_rootfs()), parse_reference("x:1"), [], ""
    )
    store.tag(image.id, parse_reference("x:2"))
    with pytest.raises(Conflict, match="must be forced"):
        store.delete(image.short_id)
    assert store.delete("x:1") == [{"Untagged": "x:1"}]
    assert store.resolve("x:2") == image
    result = store.delete("x:2")
    # the image, then its layers no other image uses (dockerd lists them too)
    layers = [{"Deleted": chain} for chain in reversed(image.layers)]
    assert result == [{"Untagged": "x:2"}, {"Deleted": image.id}, *layers]
    with pytest.raises(NotFound):
        store.resolve(image.id)


def test_forced_delete_by_id_removes_every_tag(store):
    image = archive.import_rootfs(
        store, io.BytesIO(busybox_rootfs()), parse_reference("y:1"), [], ""
    )
    store.tag(image.id, parse_reference("127.0.0.1:5000/y:1"))
    result = store.delete(image.id, force=True)
    assert {"Untagged": "y:1"} in result and {"Untagged": "127.0.0.1:5000/y:1"} in result
    assert result[2:] == [{"Deleted": image.id}, *({"Deleted": c} for c in reversed(image.layers))]


def test_store_survives_reopening(store):
    image = archive.import_rootfs(
        store, io.BytesIO(busybox_rootfs()), parse_reference("keep:me"), [], ""
    )
    again = reopen(store)
    assert again.resolve("keep:me") == image
    assert again.reconcile() == {"ingest": 0, "layers": 0, "images": 0, "references": 0, "blobs": 0}


def test_load_with_a_wrong_diff_id_keeps_nothing(store):
    good = layer_tar({"ok": b"1"})
    data = docker_archive(
        [good],
        ["bad:1"],
        config_extra={"rootfs": {"type": "layers", "diff_ids": [sha256(b"not the layer")]}},
    )
    with pytest.raises(InvalidParameter, match="does not match its diff id"):
        archive.load_archive(store, io.BytesIO(data))
    assert list(store.driver.keys()) == []
    assert store.images() == []
    reopen(store).reconcile()
    assert store.content.digests() == []


def test_load_oci_layout_with_wrong_blob_digest_is_refused(store):
    data = docker_archive([layer_tar({"f": b"x"})], ["oci:1"], layout="oci")
    # Corrupt one layer blob's bytes while keeping its file name (its digest).
    import tarfile

    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(data)) as source,
        tarfile.open(fileobj=out, mode="w") as rewritten,
    ):
        for member in source.getmembers():
            content = source.extractfile(member).read()
            if member.name.startswith("blobs/") and b"ustar" in content[:512]:
                content = layer_tar({"f": b"tampered"})
                member.size = len(content)
            rewritten.addfile(member, io.BytesIO(content))
    with pytest.raises(InvalidParameter, match="digest mismatch"):
        archive.load_archive(store, io.BytesIO(out.getvalue()))
    assert store.images() == [] and list(store.driver.keys()) == []


@pytest.mark.parametrize("layout", ["docker", "oci", "both"])
def test_load_layouts_and_whiteouts_across_layers(store, layout, tmp_path):
    base = layer_tar(
        {"etc": None, "etc/gone": b"x", "etc/kept": b"k", "opt": None, "opt/old": b"o"}
    )
    upper = layer_tar(
        {"etc/.wh.gone": b"", "opt/.wh..wh..opq": b"", "opt/new": b"n"}, compress=True
    )
    (result,) = archive.load_archive(
        store, io.BytesIO(docker_archive([base, upper], ["wh:1"], layout=layout))
    )
    assert [str(n) for n in result.names] == ["docker.io/library/wh:1"]
    image = store.resolve("wh:1")
    mounts = store.driver.prepare("snap", store.parents_of(image.layers[-1]))
    target = tmp_path / "mnt"
    target.mkdir()
    try:
        with mounted(mounts, target):
            assert sorted(p.name for p in (target / "etc").iterdir()) == ["kept"]
            assert sorted(p.name for p in (target / "opt").iterdir()) == ["new"]
    finally:
        store.driver.remove("snap")


def test_save_then_load_into_a_fresh_store_round_trips(store, tmp_path):
    layers = [layer_tar({"a": b"1"}), layer_tar({"b": b"2"}, compress=True)]
    archive.load_archive(store, io.BytesIO(docker_archive(layers, ["rt:1", "rt:2"])))
    image = store.resolve("rt:1")
    out = io.BytesIO()
    archive.save_images(store, archive.select_for_save(store, ["rt"]), out)
    fresh = ImageStore(
        tmp_path / "fresh-image",
        ContentStore(tmp_path / "fresh-content"),
        type(store.driver)(tmp_path / "fresh-driver"),
    )
    results = archive.load_archive(fresh, io.BytesIO(out.getvalue()))
    assert {str(n) for r in results for n in r.names} == {
        "docker.io/library/rt:1",
        "docker.io/library/rt:2",
    }
    assert fresh.resolve("rt:2").id == image.id
    index = json.loads(
        __import__("tarfile")
        .open(fileobj=io.BytesIO(out.getvalue()))
        .extractfile("index.json")
        .read()
    )
    assert {m["annotations"]["io.containerd.image.name"] for m in index["manifests"]} == {
        "docker.io/library/rt:1",
        "docker.io/library/rt:2",
    }


def test_save_by_id_is_untagged(store):
    image = archive.import_rootfs(
        store, io.BytesIO(busybox_rootfs()), parse_reference("id:1"), [], ""
    )
    (item,) = archive.select_for_save(store, [image.short_id])
    assert item.tags == ()
    with pytest.raises(NotFound):
        archive.select_for_save(store, ["nope:1"])


@pytest.mark.parametrize(
    "change,message",
    [
        # dockerd 20.10's words (it parses the changes as a Dockerfile).
        ("FROM busybox", "from is not a valid change command"),
        ("EXPOSE eighty", "Invalid containerPort: eighty"),
        ("ENV", "ENV requires at least one argument"),
        ("LABEL novalue", "LABEL must have two arguments"),
    ],
)
def test_bad_changes_are_refused(change, message):
    with pytest.raises(InvalidParameter, match=message):
        archive.apply_changes({}, [change])


def test_changes_apply_like_docker():
    config = archive.apply_changes(
        {},
        [
            'CMD ["echo", "hi"]',
            "ENTRYPOINT /bin/sh -c",
            "ENV A=1 B='two words'",
            "ENV A 3",
            "EXPOSE 80 53/udp",
            "LABEL k=v",
            "USER 1000:1000",
            "WORKDIR /srv",
            "VOLUME /data /logs",
        ],
    )
    assert {key: value for key, value in config.items() if value} == {
        "Cmd": ["echo", "hi"],
        "Entrypoint": ["/bin/sh", "-c", "/bin/sh -c"],
        "Env": ["B=two words", "A=3"],
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Labels": {"k": "v"},
        "User": "1000:1000",
        "WorkingDir": "/srv",
        "Volumes": {"/data": {}, "/logs": {}},
    }


def test_hostile_layer_in_an_import_leaves_nothing(store):
    evil = layer_tar({"../../escape": b"boom"})
    with pytest.raises(InvalidParameter):
        archive.import_rootfs(store, io.BytesIO(evil), parse_reference("evil:1"), [], "")
    assert store.images() == []
    assert list(store.driver.keys()) == []
    # The failed import removed the blob it had spooled; nothing is left for reconcile.
    assert store.content.digests() == []
    assert reopen(store).reconcile()["blobs"] == 0


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "the imported archive is empty"),
        (b"this is not a tar file at all" * 40, "layer is not a valid tar archive: invalid header"),
    ],
    ids=["empty", "not-a-tar"],
)
def test_import_of_garbage_is_refused(store, data, message):
    with pytest.raises(InvalidParameter, match=message):
        archive.import_rootfs(store, io.BytesIO(data), None, [], "")
    assert store.images() == []


@pytest.mark.parametrize(
    "files,message",
    [
        ({"random.txt": b"hi"}, "no manifest.json or index.json"),
        ({"manifest.json": b"{not json"}, "manifest.json is not valid JSON"),
        ({"manifest.json": b'{"Config": 1}'}, "manifest.json must be a list"),
        (
            {
                "manifest.json": b'[{"Config": "c.json", "Layers": ["missing.tar"]}]',
                "c.json": b'{"rootfs": {"diff_ids": ["sha256:00"]}}',
            },
            "missing.tar is missing",
        ),
        (
            {"manifest.json": b'[{"Config": "c.json", "Layers": []}]', "c.json": b'"x"'},
            "not an image config",
        ),
    ],
)
def test_malformed_archives_are_refused_clearly(store, files, message):
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(InvalidParameter, match=message):
        archive.load_archive(store, io.BytesIO(out.getvalue()))
    assert store.images() == []


def test_reconcile_repairs_every_crash_point(store):
    """Each step of an import or load can be the last before a crash; reopening repairs it."""
    kept = archive.import_rootfs(
        store, io.BytesIO(busybox_rootfs()), parse_reference("kept:1"), [], ""
    )
    # 1. a layer unpacked by the driver whose record was never written
    store.driver.apply_layer("f" * 64, [], io.BytesIO(layer_tar({"half": b"1"})))
    # 2. a blob whose image never got recorded, and a write still in ingest
    orphan_blob = store.content.write(b"orphan")
    (store.content.ingest / "blob-crashed").write_bytes(b"partial")
    # 3. a layer record (and unpacked layer) that no image uses
    lonely = layer_tar({"lonely": b"1"})
    lonely_blob = store.content.write(lonely)
    store.register_layer(
        None,
        sha256(lonely),
        lonely_blob,
        "application/vnd.oci.image.layer.v1.tar",
        lambda: store.content.open(lonely_blob),
    )
    # 4. a reference to an image whose record is gone
    store._references["docker.io/library/ghost:1"] = "sha256:" + "e" * 64
    store._save_references()

    again = reopen(store)
    cleaned = again.reconcile()
    assert cleaned["ingest"] == 1 and cleaned["layers"] == 2 and cleaned["references"] == 1
    assert not again.content.exists(orphan_blob)
    assert {again.layer(c).key for c in kept.layers} == set(again.driver.keys())
    assert again.resolve("kept:1") == kept
    with pytest.raises(NotFound):
        again.resolve("ghost:1")
    assert again.reconcile() == {"ingest": 0, "layers": 0, "images": 0, "references": 0, "blobs": 0}


def test_saving_twice_gives_the_same_bytes(store):
    archive.import_rootfs(store, io.BytesIO(busybox_rootfs()), parse_reference("same:1"), [], "")
    first, second = io.BytesIO(), io.BytesIO()
    archive.save_images(store, archive.select_for_save(store, ["same:1"]), first)
    __import__("time").sleep(1.1)
    archive.save_images(store, archive.select_for_save(store, ["same:1"]), second)
    assert first.getvalue() == second.getvalue()


def test_one_layer_registered_by_many_threads_is_unpacked_once_and_its_lock_goes(store):

    tar = layer_tar({"shared": b"1"})
    blob = store.content.write(tar)
    opened: list[int] = []
    start = threading.Barrier(4)

    def open_diff():
        opened.append(1)
        return store.content.open(blob)

    def register() -> None:
        start.wait()
        store.register_layer(
            None, sha256(tar), blob, "application/vnd.oci.image.layer.v1.tar", open_diff
        )

    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(opened) == 1
    assert list(store.driver.keys()) == [store.layer(chain_id(None, sha256(tar))).key]
    assert store._layer_locks == {}  # kept only while wanted
