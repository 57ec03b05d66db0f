"""Getting images in and out: ``import`` of a root filesystem tar, ``save`` and ``load``.

``save`` writes what Docker 25+ writes, which every Docker since 1.10 and skopeo can read: an
OCI image layout (``oci-layout``, ``index.json``, ``blobs/``) plus Docker's ``manifest.json``.
``load`` reads that, the older Docker archive (``manifest.json`` with ``<id>/layer.tar``), and
plain OCI image layouts.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from typing import Any, BinaryIO

import attrs

from dockyard.core import mediatypes
from dockyard.core.errors import InvalidParameter
from dockyard.core.platforms import go_arch
from dockyard.core.timestamps import now_rfc3339
from dockyard.daemon.build.changes import apply_changes
from dockyard.daemon.images.compression import detect, open_decompressed
from dockyard.daemon.images.content import CHUNK
from dockyard.daemon.images.store import (
    ImageRecord,
    ImageStore,
    LayerRecord,
)
from dockyard.distribution.reference import Reference, parse_reference

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

#: Most bytes of JSON (manifest.json, index.json, configs) read from an archive.
MAX_JSON_SIZE = 8 << 20


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------


def import_rootfs(
    store: ImageStore,
    source: BinaryIO,
    reference: Reference | None,
    changes: list[str],
    message: str,
    source_name: str = "-",
) -> ImageRecord:
    """``docker import``: one layer from a root filesystem tar (plain, gzip, bzip2, xz, zstd).

    If the import fails after the layer's blob was stored (the tar cannot be unpacked, say),
    the blob is removed again, unless it was there before."""
    with store.content.writer() as blob:
        decompressed = open_decompressed(source)
        while chunk := decompressed.read(CHUNK):
            blob.write(chunk)
        if blob.size == 0:
            raise InvalidParameter("the imported archive is empty")
        is_new = not store.content.exists(blob.digest)
        digest = blob.commit()
    try:
        layer = store.register_layer(
            None, digest, digest, mediatypes.OCI_LAYER, lambda: store.content.open(digest)
        )
    except BaseException:
        if is_new:
            store.discard_unreferenced({digest})
        raise
    created = now_rfc3339()
    comment = message or f"Imported from {source_name}"
    config = {
        "architecture": go_arch(),
        "os": "linux",
        "created": created,
        "comment": message,
        "config": apply_changes({}, changes),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": created, "comment": comment}],
    }
    data = json.dumps(config, separators=(",", ":")).encode()
    return store.add_image(data, [layer], [reference] if reference else [])


# --------------------------------------------------------------------------------------------
# save
# --------------------------------------------------------------------------------------------


@attrs.frozen
class SaveItem:
    image: ImageRecord
    tags: tuple[Reference, ...]


def select_for_save(store: ImageStore, names: list[str]) -> list[SaveItem]:
    """Resolve ``docker save`` arguments: a tag saves that tag, a repository all its tags,
    an id the image untagged. Unknown names raise before anything is written."""
    items: dict[str, set[Reference]] = {}
    order: list[ImageRecord] = []
    for name in names:
        repository = None
        try:
            parsed = parse_reference(name, default_tag=None)
            if parsed.tag is None and parsed.digest is None:
                repository = parsed
        except InvalidParameter:
            pass
        matched: list[tuple[ImageRecord, Reference | None]] = []
        tagged: Reference | None
        if repository is not None:
            for image in store.images():
                for candidate in store.references_of(image.id):
                    if candidate.repository() == repository and candidate.tag is not None:
                        matched.append((image, candidate))
        if not matched:
            image = store.resolve(name)
            tagged = None
            if not image.id.removeprefix("sha256:").startswith(name.removeprefix("sha256:")):
                tagged = parse_reference(name)
            matched.append((image, tagged))
        for image, ref in matched:
            if image.id not in items:
                items[image.id] = set()
                order.append(image)
            if ref is not None and ref.tag is not None:
                items[image.id].add(ref)
    return [SaveItem(image, tuple(sorted(items[image.id], key=str))) for image in order]


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def _add_dir(archive: tarfile.TarFile, name: str, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(mtime)
    archive.addfile(info)


def save_images(store: ImageStore, items: list[SaveItem], out: BinaryIO) -> None:
    """Write the archive of ``items`` to ``out`` as a stream (no seeking)."""
    # A fixed time in every entry: saving the same images twice gives the same bytes.
    now = 0.0
    written: set[str] = set()
    manifest_json = []
    index_manifests = []
    repositories: dict[str, dict[str, str]] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        _add_dir(archive, "blobs", now)
        _add_dir(archive, "blobs/sha256", now)

        def add_blob(digest: str, source: Callable[[], BinaryIO]) -> str:
            path = "blobs/sha256/" + digest.removeprefix("sha256:")
            if path not in written:
                info = tarfile.TarInfo(path)
                info.size = store.content.size(digest)
                info.mtime = int(now)
                info.mode = 0o644
                with source() as data:
                    archive.addfile(info, data)
                written.add(path)
            return path

        for item in items:
            image = item.image
            config = store.content.read(image.id)
            config_path = add_blob(image.id, lambda digest=image.id: store.content.open(digest))  # type: ignore[misc]
            layers = [store.layer(chain) for chain in image.layers]
            layer_paths = [
                add_blob(layer.blob, lambda layer=layer: store.content.open(layer.blob))  # type: ignore[misc]
                for layer in layers
            ]
            manifest = _oci_manifest(image, config, layers)
            manifest_digest = store.content.write(manifest)
            add_blob(manifest_digest, lambda d=manifest_digest: store.content.open(d))  # type: ignore[misc]
            tags = [ref.familiar() for ref in item.tags]
            manifest_json.append({"Config": config_path, "RepoTags": tags, "Layers": layer_paths})
            descriptor = {
                "mediaType": mediatypes.OCI_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest),
            }
            for ref in item.tags or (None,):
                entry = dict(descriptor)
                if ref is not None:
                    entry["annotations"] = {
                        ANNOTATION_IMAGE_NAME: str(ref),
                        ANNOTATION_REF_NAME: ref.tag or "",
                    }
                    repositories.setdefault(ref.familiar_name, {})[ref.tag or "latest"] = (
                        layers[-1].key if layers else ""
                    )
                index_manifests.append(entry)
        _add_bytes(archive, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', now)
        index = {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": index_manifests,
        }
        _add_bytes(archive, "index.json", json.dumps(index).encode(), now)
        _add_bytes(archive, "manifest.json", json.dumps(manifest_json).encode(), now)
        if repositories:
            _add_bytes(archive, "repositories", json.dumps(repositories).encode(), now)


def _oci_manifest(image: ImageRecord, config: bytes, layers: list[LayerRecord]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": image.id, "size": len(config)},
        "layers": [
            {"mediaType": layer.media_type, "digest": layer.blob, "size": layer.blob_size}
            for layer in layers
        ],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------


@attrs.frozen
class ArchiveImage:
    """One image found in an archive: where its config and layers are, and its names."""

    config_path: str
    layer_paths: tuple[str, ...]
    names: tuple[Reference, ...]


@attrs.frozen
class LoadResult:
    image: ImageRecord
    names: tuple[Reference, ...]


class _Archive:
    """An archive's members, unpacked into the content store as the archive streams in.

    Docker archives may name ``manifest.json`` last, so nothing can be resolved before the
    whole archive is read; storing each member as a blob on the way (rather than spooling the
    archive and copying layers out later) writes every byte once.
    """

    MAX_MEMBERS = 100_000

    def __init__(self, store: ImageStore) -> None:
        self.content = store.content
        self._files: dict[str, str] = {}  # member name -> digest
        self._links: dict[str, str] = {}  # member name -> the member it points to
        self.created: set[str] = set()  # blobs this load added to the store

    @staticmethod
    def _normal(name: str) -> str:
        return os.path.normpath(name).lstrip("/")

    def ingest(self, source: BinaryIO) -> None:
        try:
            with tarfile.open(fileobj=source, mode="r|") as tar:
                for count, member in enumerate(tar):
                    if count >= self.MAX_MEMBERS:
                        raise InvalidParameter(f"invalid archive: more than {count} entries")
                    name = self._normal(member.name)
                    if member.isfile():
                        self._files[name] = self._store(tar, member)
                    elif member.issym():
                        target = os.path.join(os.path.dirname(name), member.linkname)
                        self._links[name] = self._normal(target)
                    elif member.islnk():
                        self._links[name] = self._normal(member.linkname)
        except tarfile.TarError as exc:
            raise InvalidParameter(f"invalid archive: {exc}") from None

    def _store(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
        data = tar.extractfile(member)
        assert data is not None
        with self.content.writer() as blob:
            while chunk := data.read(CHUNK):
                blob.write(chunk)
            is_new = not self.content.exists(blob.digest)
            digest = blob.commit()
        if is_new:
            self.created.add(digest)
        return digest

    def has(self, name: str) -> bool:
        name = self._normal(name)
        return name in self._files or name in self._links

    def digest(self, name: str) -> str:
        """The digest of member ``name``, following links inside the archive."""
        name = self._normal(name)
        for _ in range(16):
            if name in self._files:
                return self._files[name]
            if name not in self._links:
                break
            name = self._links[name]
        raise InvalidParameter(f"invalid archive: {name} is missing")

    def read(self, name: str, limit: int = MAX_JSON_SIZE) -> bytes:
        digest = self.digest(name)
        if self.content.size(digest) > limit:
            raise InvalidParameter(f"invalid archive: {name} is larger than {limit} bytes")
        return self.content.read(digest)

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidParameter(f"invalid archive: {name} is not valid JSON: {exc}") from None


def load_archive(store: ImageStore, source: BinaryIO) -> list[LoadResult]:
    """``docker load``: every image of the archive, layers verified against their diff ids."""
    archive = _Archive(store)
    try:
        archive.ingest(open_decompressed(source))
        if archive.has("manifest.json"):
            entries = _docker_manifest_entries(archive)
        elif archive.has("index.json"):
            entries = _oci_layout_entries(archive)
        else:
            raise InvalidParameter(
                "invalid archive: no manifest.json or index.json (not a docker or OCI archive)"
            )
        return [_load_one(store, archive, entry) for entry in entries]
    finally:
        # Members no image uses (manifest.json, legacy json files, a failed load's layers).
        store.discard_unreferenced(archive.created)


def _docker_manifest_entries(archive: _Archive) -> list[ArchiveImage]:
    manifest = archive.json("manifest.json")
    if not isinstance(manifest, list):
        raise InvalidParameter("invalid archive: manifest.json must be a list")
    entries = []
    for item in manifest:
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str):
            raise InvalidParameter("invalid archive: manifest.json entry without Config")
        layers = item.get("Layers") or []
        tags = item.get("RepoTags") or []
        if not all(isinstance(x, str) for x in [*layers, *tags]):
            raise InvalidParameter("invalid archive: manifest.json Layers and RepoTags are strings")
        entries.append(
            ArchiveImage(item["Config"], tuple(layers), tuple(parse_reference(t) for t in tags))
        )
    return entries


def _blob_path(descriptor: Any) -> str:
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("digest"), str):
        raise InvalidParameter("invalid archive: descriptor without a digest")
    algorithm, _, encoded = descriptor["digest"].partition(":")
    if not algorithm.isalnum() or not encoded.isalnum():
        raise InvalidParameter(f"invalid archive: bad digest {descriptor['digest']!r}")
    return f"blobs/{algorithm}/{encoded}"


def _oci_layout_entries(archive: _Archive) -> list[ArchiveImage]:
    entries = []

    def visit(descriptor: dict[str, Any], names: tuple[Reference, ...], depth: int) -> None:
        if depth > 4:
            raise InvalidParameter("invalid archive: indexes nested too deep")
        document = archive.json(_blob_path(descriptor))
        media_type = document.get("mediaType") or descriptor.get("mediaType")
        if media_type in (mediatypes.OCI_INDEX, mediatypes.DOCKER_LIST) or "manifests" in document:
            candidates = document.get("manifests") or []
            chosen = [d for d in candidates if _platform_matches(d.get("platform"))]
            if not chosen:
                raise InvalidParameter(f"invalid archive: no manifest for linux/{go_arch()}")
            visit(chosen[0], names, depth + 1)
            return
        layers = tuple(_blob_path(layer) for layer in document.get("layers") or [])
        entries.append(ArchiveImage(_blob_path(document.get("config")), layers, names))

    index = archive.json("index.json")
    for descriptor in index.get("manifests") or []:
        annotations = descriptor.get("annotations") or {}
        name = annotations.get(ANNOTATION_IMAGE_NAME) or annotations.get(ANNOTATION_REF_NAME)
        names: tuple[Reference, ...] = ()
        if name:
            try:
                names = (parse_reference(name),)
            except InvalidParameter:
                names = ()  # a bare tag such as "latest" names no repository
        visit(descriptor, names, 0)
    return entries


def _platform_matches(platform_spec: Any) -> bool:
    if not isinstance(platform_spec, dict):
        return True
    return (
        platform_spec.get("os", "linux") == "linux"
        and platform_spec.get("architecture", go_arch()) == go_arch()
    )


def _load_one(store: ImageStore, archive: _Archive, entry: ArchiveImage) -> LoadResult:
    config_bytes = archive.read(entry.config_path)
    _check_digest(archive, entry.config_path)
    try:
        config = json.loads(config_bytes)
        diff_ids = config["rootfs"]["diff_ids"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidParameter(
            f"invalid archive: {entry.config_path} is not an image config"
        ) from None
    if not isinstance(diff_ids, list) or len(diff_ids) != len(entry.layer_paths):
        raise InvalidParameter(
            f"invalid archive: {len(entry.layer_paths)} layers for {len(diff_ids)} diff ids"
        )
    layers: list[LayerRecord] = []
    parent = None
    for path, diff_id in zip(entry.layer_paths, diff_ids, strict=True):
        blob = _check_digest(archive, path)
        with store.content.open(blob) as head_reader:
            compression = detect(head_reader.read(8))
        record = store.register_layer(
            parent,
            diff_id,
            blob,
            mediatypes.oci_layer(compression.value),
            lambda blob=blob: open_decompressed(store.content.open(blob)),  # type: ignore[misc]
        )
        layers.append(record)
        parent = record.chain_id
    image = store.add_image(config_bytes, layers, list(entry.names))
    return LoadResult(image, entry.names)


def _check_digest(archive: _Archive, path: str) -> str:
    """The member's digest; a ``blobs/sha256/<hex>`` path must name its own content."""
    digest = archive.digest(path)
    expected = _expected_digest(path)
    if expected is not None and expected != digest:
        raise InvalidParameter(f"digest mismatch: {path} holds content {digest}")
    return digest


def _expected_digest(path: str) -> str | None:
    """``blobs/sha256/<hex>`` names its own digest; check it."""
    parts = os.path.normpath(path).split("/")
    if len(parts) == 3 and parts[0] == "blobs" and parts[1] == "sha256":
        return f"sha256:{parts[2]}"
    return None
