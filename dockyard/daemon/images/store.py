"""Layers, images and references, on top of the content store and the storage driver."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import structlog

from dockyard.core import mediatypes
from dockyard.core.errors import Conflict, InvalidParameter, NotFound, Unavailable
from dockyard.core.interfaces import StorageDriver
from dockyard.daemon import modes
from dockyard.daemon.images.content import CHUNK, ContentStore, atomic_write, sha256_digest
from dockyard.distribution.reference import HEX_ID, Reference, parse_reference

_log = structlog.get_logger("dockyard.images")


def chain_id(parent: str | None, diff_id: str) -> str:
    """The OCI chain id: the digest of the layer stack up to and including ``diff_id``."""
    if parent is None:
        return diff_id
    return sha256_digest(f"{parent} {diff_id}".encode())


@attrs.frozen
class LayerRecord:
    """One unpacked layer. ``blob`` is the layer as stored (possibly compressed)."""

    chain_id: str
    diff_id: str
    parent: str | None
    blob: str
    media_type: str
    blob_size: int
    size: int

    @property
    def key(self) -> str:
        """The storage driver's key for this layer."""
        return self.chain_id.removeprefix("sha256:")


@attrs.frozen
class ImageRecord:
    """An image: its config blob (whose digest is the image id) over a chain of layers."""

    id: str
    layers: tuple[str, ...]  # chain ids, base first
    size: int
    created_at: float = attrs.field(factory=time.time)
    repo_digests: tuple[str, ...] = ()
    #: The image this one was committed over (a build step's previous image); "" for others.
    parent: str = ""

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


class HashingReader:
    """Passes reads through while hashing them (to check a layer's diff id as it unpacks)."""

    def __init__(self, source: BinaryIO, enabled: bool = True) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self._enabled = enabled
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if self._enabled:
            self._hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def check_tag_name(reference: Reference) -> None:
    """Refuse names dockerd's reference store refuses: ones that would read as an image id
    (64 hex digits) or as a digest (``sha256:...``) wherever a name or id is taken."""
    name = reference.familiar_name
    if name == "sha256":
        raise InvalidParameter("refusing to create an ambiguous tag using digest algorithm as name")
    if HEX_ID.fullmatch(name):
        raise InvalidParameter(
            f"invalid repository name ({name}), cannot specify 64-byte hexadecimal strings"
        )


class ImageStore:
    """The daemon's images. Thread-safe; every method may block (call it from a worker thread).

    Layout under ``root``: ``layers/<chain hex>.json``, ``images/<id hex>.json`` and
    ``repositories.json`` (reference → image id). Layers are counted by derivation: a layer is
    in use while any image lists it, so there is no counter to get out of step after a crash.
    """

    def __init__(
        self,
        root: Path,
        content: ContentStore,
        driver: StorageDriver | None,
        on_event: Callable[[str, str, dict[str, str]], None] | None = None,
    ) -> None:
        self.root = modes.make_dir(root, modes.IMAGES)
        self.content = content
        self._driver = driver
        self._on_event = on_event or (lambda action, image_id, attributes: None)
        self._layers_dir = root / "layers"
        self._images_dir = root / "images"
        self._references_path = root / "repositories.json"
        self._layers_dir.mkdir(parents=True, exist_ok=True)
        self._images_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        #: Each layer lock, and how many threads hold it or wait for it.
        self._layer_locks: dict[str, tuple[threading.Lock, int]] = {}
        #: Which containers use an image (so it is not deleted under them).
        self.in_use: Callable[[str], list[str]] = lambda image_id: []
        #: Which of those are running (they keep it even from a forced ``rmi``).
        self.running_users: Callable[[str], list[str]] = lambda image_id: []
        self._layers: dict[str, LayerRecord] = {}
        self._images: dict[str, ImageRecord] = {}
        self._references: dict[str, str] = {}
        self._load()

    @property
    def driver(self) -> StorageDriver:
        if self._driver is None:
            raise Unavailable("no storage driver is installed or usable on this machine")
        return self._driver

    # ---------------------------------------------------------------- persistence

    def _load(self) -> None:
        for path in self._layers_dir.glob("*.json"):
            record = LayerRecord(**json.loads(path.read_text()))
            self._layers[record.chain_id] = record
        for path in self._images_dir.glob("*.json"):
            raw = json.loads(path.read_text())
            raw["layers"] = tuple(raw["layers"])
            raw["repo_digests"] = tuple(raw.get("repo_digests", ()))
            image = ImageRecord(**raw)
            self._images[image.id] = image
        if self._references_path.exists():
            self._references = json.loads(self._references_path.read_text())

    def _save_layer(self, record: LayerRecord) -> None:
        atomic_write(
            self._layers_dir / f"{record.key}.json", json.dumps(attrs.asdict(record)).encode()
        )

    def _save_image(self, image: ImageRecord) -> None:
        path = self._images_dir / f"{image.id.removeprefix('sha256:')}.json"
        atomic_write(path, json.dumps(attrs.asdict(image)).encode())

    def _save_references(self) -> None:
        data = json.dumps(self._references, indent=1, sort_keys=True).encode()
        atomic_write(self._references_path, data)

    def reconcile(self, keep: Callable[[str], bool] = lambda key: False) -> dict[str, int]:
        """Make the store consistent after a crash; returns what was cleaned, by kind.

        ``keep`` names driver keys that belong to others (containers' snapshots).
        """
        with self._lock:
            cleaned = {"ingest": self.content.clean_ingest()}
            known_keys = {layer.key for layer in self._layers.values()}
            stray_keys = 0
            if self._driver is not None:
                for key in list(self._driver.keys()):
                    if not keep(key) and key not in known_keys:
                        self._driver.remove(key)  # unpacked, but its record never written
                        stray_keys += 1
                driver_keys = set(self._driver.keys())
                for record in list(self._layers.values()):
                    if record.key not in driver_keys:
                        self._forget_layer(record)
            cleaned["layers"] = stray_keys
            broken = [
                image
                for image in self._images.values()
                if any(chain not in self._layers for chain in image.layers)
                or not self.content.exists(image.id)
            ]
            for image in broken:
                self._forget_image(image)
            cleaned["images"] = len(broken)
            cleaned["layers"] += self._release_unused_layers()
            dangling = [
                ref for ref, image_id in self._references.items() if image_id not in self._images
            ]
            for ref in dangling:
                del self._references[ref]
            if dangling:
                self._save_references()
            cleaned["references"] = len(dangling)
            cleaned["blobs"] = self.discard_unreferenced(set(self.content.digests()))
            return cleaned

    def discard_unreferenced(self, digests: set[str]) -> int:
        """Delete those of ``digests`` that no image or layer refers to; returns how many."""
        with self._lock:
            wanted = set(self._images) | {layer.blob for layer in self._layers.values()}
            for image in self._images.values():
                wanted.update(self._manifest_digests(image))
        doomed = digests - wanted
        for digest in doomed:
            self.content.delete(digest)
        return len(doomed)

    def _manifest_digests(self, image: ImageRecord) -> list[str]:
        return [entry.split("@", 1)[1] for entry in image.repo_digests if "@" in entry]

    # ---------------------------------------------------------------- layers

    @contextlib.contextmanager
    def _layer_lock(self, chain: str) -> Iterator[None]:
        """One lock per layer being registered, kept only while some thread holds it or waits
        for it, so the table does not grow with every layer ever pulled."""
        with self._lock:
            lock, users = self._layer_locks.get(chain, (threading.Lock(), 0))
            self._layer_locks[chain] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, remaining = self._layer_locks[chain]
                if remaining == 1:
                    del self._layer_locks[chain]
                else:
                    self._layer_locks[chain] = (lock, remaining - 1)

    def layer(self, chain: str) -> LayerRecord:
        try:
            return self._layers[chain]
        except KeyError:
            raise NotFound(f"layer {chain} not found") from None

    def layers(self) -> list[LayerRecord]:
        with self._lock:
            return list(self._layers.values())

    def discard_layers(self, chains: tuple[str, ...]) -> None:
        """Remove those of ``chains`` no image uses (what a failed pull unpacked)."""
        with self._lock:
            self.release_layers(chains)

    def parents_of(self, chain: str | None) -> list[str]:
        """Driver keys of ``chain`` and everything below it, nearest first."""
        keys = []
        while chain is not None:
            record = self.layer(chain)
            keys.append(record.key)
            chain = record.parent
        return keys

    def layer_keys(self, image: ImageRecord | None) -> list[str]:
        """The driver keys of ``image``'s layers, top first: the parents of a snapshot made
        from it (none for no image, as over ``scratch``)."""
        return self.parents_of(image.layers[-1]) if image is not None and image.layers else []

    def register_layer(
        self,
        parent: str | None,
        diff_id: str,
        blob: str,
        media_type: str,
        open_diff: Callable[[], BinaryIO],
    ) -> LayerRecord:
        """Unpack a layer once; an identical stack already unpacked is shared, not redone.

        ``open_diff`` opens the layer as an uncompressed tar. Its bytes must hash to
        ``diff_id``; otherwise the unpacked layer is removed and nothing is recorded.
        """
        chain = chain_id(parent, diff_id)
        with self._layer_lock(chain):
            existing = self._layers.get(chain)
            if existing is not None:
                return existing
            parents = self.parents_of(parent)
            key = chain.removeprefix("sha256:")
            self.driver.remove(key)  # a leftover of an earlier failed attempt
            # An uncompressed blob was hashed when it was stored: its digest is the diff id.
            already_verified = blob == diff_id and media_type == mediatypes.OCI_LAYER
            with open_diff() as source:
                reader = HashingReader(source, enabled=not already_verified)
                try:
                    usage = self.driver.apply_layer(key, parents, reader)  # type: ignore[arg-type]
                    reader.drain()
                except BaseException:
                    self.driver.remove(key)
                    raise
            if not already_verified and reader.digest != diff_id:
                self.driver.remove(key)
                raise InvalidParameter(
                    f"layer content does not match its diff id: expected {diff_id}, "
                    f"got {reader.digest}"
                )
            record = LayerRecord(
                chain_id=chain,
                diff_id=diff_id,
                parent=parent,
                blob=blob,
                media_type=media_type,
                blob_size=self.content.size(blob),
                size=usage.size,
            )
            self._save_layer(record)
            with self._lock:
                self._layers[chain] = record
            return record

    def _forget_layer(self, record: LayerRecord) -> None:
        (self._layers_dir / f"{record.key}.json").unlink(missing_ok=True)
        self._layers.pop(record.chain_id, None)

    # ---------------------------------------------------------------- images

    def add_image(
        self,
        config: bytes,
        layers: list[LayerRecord],
        references: list[Reference] = (),  # type: ignore[assignment]
        repo_digests: tuple[str, ...] = (),
        parent: str = "",
    ) -> ImageRecord:
        """Record an image whose config blob is ``config``; tags it with ``references``.

        ``parent`` is the image it was committed over, as ``docker commit`` and the classic
        builder record it (an image pulled or loaded has none)."""
        image_id = self.content.write(config)
        config_doc = json.loads(config)
        diff_ids = config_doc.get("rootfs", {}).get("diff_ids", [])
        if diff_ids != [layer.diff_id for layer in layers]:
            raise InvalidParameter("image config's rootfs.diff_ids do not match its layers")
        with self._lock:
            existing = self._images.get(image_id)
            merged_digests = tuple(
                sorted(set(repo_digests) | set(existing.repo_digests if existing else ()))
            )
            image = ImageRecord(
                id=image_id,
                layers=tuple(layer.chain_id for layer in layers),
                size=sum(layer.size for layer in layers),
                created_at=existing.created_at if existing else time.time(),
                repo_digests=merged_digests,
                parent=existing.parent if existing else parent,
            )
            if existing != image:
                self._save_image(image)
                self._images[image_id] = image
        for reference in references:
            self.tag(image_id, reference)
        return image

    def images(self) -> list[ImageRecord]:
        with self._lock:
            return list(self._images.values())

    def config(self, image: ImageRecord) -> dict[str, Any]:
        config: dict[str, Any] = json.loads(self.content.read(image.id))
        return config

    def _labels(self, image: ImageRecord) -> dict[str, str]:
        """The image's labels (dockerd copies them into its image events)."""
        try:
            labels = (self.config(image).get("config") or {}).get("Labels") or {}
        except (OSError, ValueError, NotFound):
            return {}
        return {str(k): str(v) for k, v in labels.items()}

    def get(self, image_id: str) -> ImageRecord | None:
        """The image with this full id (``sha256:...``), if the store has it."""
        with self._lock:
            return self._images.get(image_id)

    def children_of(self, image_id: str) -> list[ImageRecord]:
        """The images committed over ``image_id``."""
        with self._lock:
            return [image for image in self._images.values() if image.parent == image_id]

    def references_of(self, image_id: str) -> list[Reference]:
        with self._lock:
            return sorted(
                (
                    parse_reference(ref, default_tag=None)
                    for ref, target in self._references.items()
                    if target == image_id
                ),
                key=str,
            )

    def resolve(self, name: str) -> ImageRecord:
        """Find an image by reference, ``sha256:`` id, full hex id or unique id prefix."""
        with self._lock:
            bare = name.removeprefix("sha256:")
            if HEX_ID.fullmatch(bare) and f"sha256:{bare}" in self._images:
                return self._images[f"sha256:{bare}"]
            if not name.startswith("sha256:"):
                try:
                    reference = parse_reference(name)
                except InvalidParameter:
                    reference = None
                if reference is not None and str(reference) in self._references:
                    return self._images[self._references[str(reference)]]
            if bare and all(c in "0123456789abcdef" for c in bare):
                matches = [i for i in self._images if i.removeprefix("sha256:").startswith(bare)]
                if len(matches) == 1:
                    return self._images[matches[0]]
                if len(matches) > 1:
                    raise InvalidParameter(f"ambiguous image id prefix {bare!r}")
        raise NotFound(f"No such image: {_familiar(name)}")

    def tag(self, image_id: str, reference: Reference) -> None:
        check_tag_name(reference)
        if reference.tag is None and reference.digest is None:
            reference = reference.with_tag("latest")
        with self._lock:
            if image_id not in self._images:
                raise NotFound(f"No such image: {image_id}")
            previous = self._references.get(str(reference))
            if previous == image_id:
                return
            self._references[str(reference)] = image_id
            self._save_references()
        self._on_event("tag", image_id, {"name": reference.familiar()})
        if previous is not None:
            self._on_event("untag", previous, {"name": previous})

    def delete(
        self, name: str, force: bool = False, prune_parents: bool = True
    ) -> list[dict[str, str]]:
        """``docker rmi``, by dockerd's rules. Returns the Engine API's
        ``[{"Untagged": ...}, {"Deleted": ...}]`` list.

        By reference: that reference goes, and the image with it when it was the last one
        (``409`` without ``force`` if a container uses an image it is the last name of; with
        ``force`` the image stays while a running container or a child image needs it).
        By id: an image with several tags needs ``force``; a running container or a child
        image is a conflict even then, a stopped container only without ``force``. A deleted
        image's untagged parents that nothing else needs go with it unless ``prune_parents``
        is false (``noprune``).
        """
        with self._lock:
            image = self.resolve(name)
            references = self.references_of(image.id)
            single = len(references) == 1 or (not references and bool(image.repo_digests))
            results: list[dict[str, str]] = []
            if not _looks_like_id(name, image):
                users = self.in_use(image.id)
                if users and single and not force:
                    raise Conflict(
                        f'conflict: unable to remove repository reference "{name}" (must force) '
                        f"- container {users[0][:12]} is using its referenced image "
                        f"{image.short_id}"
                    )
                reference = parse_reference(name)
                if str(reference) in self._references:
                    self._untag(image, [reference], results)
                    if len(references) > 1:
                        return results
                self._delete_unless_needed(image, force, prune_parents, True, results)
                return results
            if single:
                conflict = self._delete_conflict(image, force, by_id_of_single_reference=True)
                if conflict is not None:
                    raise Conflict(conflict[0])
                self._untag(image, references, results)
            self._delete_unless_needed(image, force, prune_parents, False, results)
            return results

    def _delete_conflict(
        self, image: ImageRecord, force: bool, by_id_of_single_reference: bool = False
    ) -> tuple[str, bool] | None:
        """Why ``image`` cannot be deleted, and whether a container uses it; ``None`` if it can.

        Child images and running containers stop even a forced delete; other references and
        stopped containers only an unforced one (references are not asked about when the
        image is deleted by id with one reference, which goes with it).
        """
        reason = ""
        used = False
        running = self.running_users(image.id)
        stopped = [c for c in self.in_use(image.id) if c not in running]
        if self.children_of(image.id):
            reason = "(cannot be forced) - image has dependent child images"
        elif running:
            reason = "(cannot be forced) - image is being used by running container "
            reason += running[0][:12]
            used = True
        elif not force and not by_id_of_single_reference and self.references_of(image.id):
            reason = "(must be forced) - image is referenced in multiple repositories"
        elif not force and stopped:
            reason = "(must be forced) - image is being used by stopped container "
            reason += stopped[0][:12]
            used = True
        if not reason:
            return None
        return f"conflict: unable to delete {image.short_id} {reason}", used

    def _delete_unless_needed(
        self,
        image: ImageRecord,
        force: bool,
        prune_parents: bool,
        quiet: bool,
        results: list[dict[str, str]],
    ) -> None:
        """Delete ``image`` and its remaining references; ``quiet`` (after its last reference
        went) keeps it without a word while a container or a child image still needs it."""
        conflict = self._delete_conflict(image, force)
        if conflict is not None:
            message, used = conflict
            dangling = not self.references_of(image.id) and not self.children_of(image.id)
            if quiet and (used or not dangling):
                return
            raise Conflict(message)
        self._untag(image, self.references_of(image.id), results)
        if self.in_use(image.id):
            # Forced past stopped containers: dockerd deletes the image and leaves its layers
            # to them. Here the image record is what holds the layers, so it stays, untagged,
            # until its containers go (an image prune takes it then).
            return
        results.extend({"Untagged": ref} for ref in image.repo_digests)
        results.extend(self._delete_image(image))
        if prune_parents:
            results.extend(self._delete_unused_parents(image))

    def _delete_unused_parents(self, image: ImageRecord) -> list[dict[str, str]]:
        """Delete the untagged parents of deleted ``image`` that nothing else needs (no
        other child, no container), nearest first, as dockerd's ``Deleted:`` lines show."""
        results: list[dict[str, str]] = []
        parent = self._images.get(image.parent) if image.parent else None
        while (
            parent is not None
            and not self.references_of(parent.id)
            and not self.children_of(parent.id)
            and not self.in_use(parent.id)
        ):
            results.extend(self._delete_image(parent))
            parent = self._images.get(parent.parent) if parent.parent else None
        return results

    def _untag(
        self, image: ImageRecord, references: list[Reference], results: list[dict[str, str]]
    ) -> None:
        for reference in references:
            del self._references[str(reference)]
            results.append({"Untagged": reference.familiar()})
            self._on_event("untag", image.id, {**self._labels(image), "name": image.id})
        if references:
            self._save_references()

    def _delete_image(self, image: ImageRecord) -> list[dict[str, str]]:
        self._forget_image(image)
        # Named by its id, without labels: dockerd logs it once the image is gone.
        self._on_event("delete", image.id, {"name": image.id})
        results = [{"Deleted": image.id}]
        results.extend({"Deleted": chain} for chain in self.release_layers(image.layers))
        self.content.delete(image.id)
        for digest in self._manifest_digests(image):
            if not any(digest in self._manifest_digests(i) for i in self._images.values()):
                self.content.delete(digest)
        return results

    def release_layers(self, chains: tuple[str, ...]) -> list[str]:
        """Remove the layers of ``chains`` that no image uses any more, topmost first; return
        the chain ids removed."""
        in_use = {chain for image in self._images.values() for chain in image.layers}
        removed = []
        for chain in reversed(chains):
            if chain in in_use or chain not in self._layers:
                continue
            record = self._layers[chain]
            self.driver.remove(record.key)
            self._forget_layer(record)
            if not any(layer.blob == record.blob for layer in self._layers.values()):
                self.content.delete(record.blob)
            removed.append(chain)
        return removed

    def _release_unused_layers(self) -> int:
        """Remove layers no image uses (an import or load that died before its image record)."""
        in_use = {chain for image in self._images.values() for chain in image.layers}
        removed = 0
        while True:
            parents = {layer.parent for layer in self._layers.values()}
            leaves = [c for c in self._layers if c not in in_use and c not in parents]
            if not leaves:
                return removed
            for chain in leaves:
                record = self._layers[chain]
                self.driver.remove(record.key)
                self._forget_layer(record)
                removed += 1

    def _forget_image(self, image: ImageRecord) -> None:
        (self._images_dir / f"{image.id.removeprefix('sha256:')}.json").unlink(missing_ok=True)
        self._images.pop(image.id, None)

    def prune(
        self,
        dangling_only: bool = True,
        selected: Callable[[ImageRecord], bool] = lambda image: True,
    ) -> tuple[list[dict[str, str]], int]:
        """Delete untagged images (all unused ones with ``dangling_only=False``) that
        ``selected`` accepts; images containers use are kept."""
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        with self._lock:
            tagged = set(self._references.values())
            for image in list(self._images.values()):
                if image.id not in self._images:
                    continue  # a parent already deleted with its child
                if dangling_only and image.id in tagged:
                    continue
                if self.in_use(image.id) or not selected(image) or self.children_of(image.id):
                    continue
                self._untag(image, self.references_of(image.id), deleted)
                before = sum(layer.size for layer in self._layers.values())
                deleted.extend(self._delete_image(image))
                deleted.extend(self._delete_unused_parents(image))
                reclaimed += before - sum(layer.size for layer in self._layers.values())
        return deleted, reclaimed


def _looks_like_id(name: str, image: ImageRecord) -> bool:
    bare = name.removeprefix("sha256:")
    return bool(bare) and image.id.removeprefix("sha256:").startswith(bare)


def _familiar(name: str) -> str:
    try:
        return parse_reference(name).familiar()
    except InvalidParameter:
        return name
