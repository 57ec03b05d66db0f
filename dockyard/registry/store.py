"""The registry's storage model over a byte-storing backend: blobs, uploads, manifests, tags.

Every method here blocks (it calls the backend) and is called from a worker thread by the app or
directly by ``dockyard registry gc``. The layout is in :mod:`.layout`; the rules that make
garbage collection safe while pushes go on are described in :mod:`.gc` and kept here:

* finishing an upload writes the repository's link to the blob *before* it makes sure the blob's
  data is in place, so a freshly pushed blob always has a fresh link (gc's grace period counts
  from the newest of the data and its links);
* a manifest push makes the manifest visible first and checks its references *afterwards*,
  restoring from gc's trash whatever a running collection has just set aside, and undoes itself
  if a reference is really gone.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import attrs

from dockyard.core.errors import InvalidParameter, NotFound
from dockyard.core.interfaces import BlobWriter, RegistryBackend
from dockyard.registry import layout
from dockyard.registry.errors import RegistryError
from dockyard.registry.manifests import (
    Descriptor,
    ManifestInfo,
    MediaType,
    Size,
    parse_manifest,
    read_stored_manifest,
)
from dockyard.registry.names import ALGORITHMS, Digest, check_tag, parse_digest

#: Reads and copies move this much at a time: large enough to keep thread hops rare, small
#: enough that a multi-GB blob never sits in memory.
CHUNK_SIZE = 4 * 1024 * 1024

#: Upload sessions whose running hash one process keeps.
MAX_RUNNING_HASHES = 4096

#: Seconds within which an upload session's activity mark is not refreshed again.
ACTIVITY_PRECISION = 60.0


@attrs.frozen
class Limits:
    """Size limits; 0 means unlimited."""

    max_blob_size: int = 0
    max_manifest_size: int = 8 * 1024 * 1024


@attrs.frozen
class ManifestRecord:
    """A manifest as a tag or revision link describes it."""

    digest: Digest
    media_type: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"digest": str(self.digest), "mediaType": self.media_type, "size": self.size}

    @classmethod
    def from_json(cls, data: bytes) -> ManifestRecord:
        document = json.loads(data)
        return cls(parse_digest(document["digest"]), document["mediaType"], document["size"])


@attrs.frozen
class UploadSession:
    """An upload in progress: where it is and how many bytes it holds."""

    name: str
    upload_id: str
    algorithm: str
    started: float
    offset: int


@attrs.define
class _ManifestPushUndo:
    """What a manifest push changed, to put back if it fails half-way."""

    name: str
    digest: Digest
    info: ManifestInfo
    had_revision: bool
    #: Each tag written so far, with the manifest it named before (``None``: a new tag).
    previous_tags: dict[str, ManifestRecord | None] = attrs.field(factory=dict)


@attrs.frozen
class PutManifestResult:
    digest: Digest
    info: ManifestInfo
    tags: tuple[str, ...]


class _HashState:
    """The running hash of one upload, valid while ``offset`` equals the stored size."""

    def __init__(self, algorithm: str) -> None:
        self.hasher = Digest(algorithm, "").hasher()
        self.offset = 0


class UploadWriter:
    """Appends one request's bytes to an upload session, hashing as it goes."""

    def __init__(
        self,
        store: RegistryStore,
        session: UploadSession,
        writer: BlobWriter,
        state: _HashState | None,
    ) -> None:
        self.store = store
        self.session = session
        self.writer = writer
        #: ``None`` when this process has no running hash: finishing will re-read the bytes.
        self.state = state
        self.offset = session.offset
        self.failed = False

    def write_parts(self, parts: list[bytes]) -> None:
        """Append the pieces of a request body as one write (called in a worker thread)."""
        self.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        limit = self.store.limits.max_blob_size
        if limit and self.offset + len(data) > limit:
            raise RegistryError(
                "SIZE_INVALID",
                message=f"blob exceeds the registry's limit of {limit} bytes",
                status=413,
            )
        try:
            self.writer.write(data)
        except BaseException:
            self.failed = True
            raise
        self.offset += len(data)
        if self.state is not None:
            self.state.hasher.update(data)
            self.state.offset += len(data)

    def close(self) -> None:
        """Persist the bytes so far; the session can take more requests."""
        self.writer.close()
        if self.failed:
            # The hash may have missed bytes the backend kept: rebuild it from storage next time.
            self.store.forget_hash(self.session.upload_id)


class RegistryStore:
    """Blocking operations on the registry layout, shared by the app and the collector."""

    def __init__(self, backend: RegistryBackend, limits: Limits | None = None) -> None:
        self.backend = backend
        self.limits = limits or Limits()
        # Running hashes of uploads in progress, oldest first; abandoned sessions fall off the
        # end (a session whose hash is gone is re-read when it finishes, so nothing breaks).
        self._hashes: OrderedDict[str, _HashState] = OrderedDict()
        self._hash_lock = threading.Lock()
        # Manifest bytes by digest: content-addressed, so a cached copy can never be stale.
        self._manifest_cache: OrderedDict[Digest, bytes] = OrderedDict()
        self._manifest_cache_bytes = 0
        self._cache_lock = threading.Lock()

    # ------------------------------------------------------------------ small files

    def read_bytes(self, path: str) -> bytes:
        return b"".join(self.backend.read(path))

    def write_bytes(self, path: str, data: bytes) -> None:
        writer = self.backend.writer(path)
        try:
            writer.write(data)
            writer.commit()
        except BaseException:
            writer.cancel()
            raise

    def exists(self, path: str) -> bool:
        try:
            self.backend.stat(path)
        except NotFound:
            return False
        return True

    def list_dir(self, path: str) -> list[str]:
        try:
            return self.backend.list(path)
        except NotFound:
            return []

    def delete_quietly(self, path: str) -> None:
        # InvalidParameter: a path too long for the backend, which therefore cannot exist.
        with contextlib.suppress(NotFound, InvalidParameter):
            self.backend.delete(path)

    def restore(self, path: str) -> bool:
        """Make ``path`` exist again if a running gc has just moved it to its trash."""
        if self.exists(path):
            return True
        for run_dir in self.list_dir(layout.TRASH):
            candidate = layout.trash(layout.child_name(run_dir), path)
            try:
                self.backend.move(candidate, path)
            except NotFound:
                continue
            return True
        return False

    # ------------------------------------------------------------------ blobs

    def blob_size(self, digest: Digest) -> int:
        """Size of a blob's content in the store; ``BLOB_UNKNOWN`` if absent."""
        try:
            return self.backend.stat(layout.blob_data(digest)).size
        except NotFound:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None

    def repository_blob_size(self, name: str, digest: Digest) -> int:
        """Size of a blob that belongs to repository ``name``; ``BLOB_UNKNOWN`` otherwise."""
        if not self.exists(layout.layer_link(name, digest)) and not self._is_manifest_of(
            name, digest
        ):
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)})
        return self.blob_size(digest)

    def _is_manifest_of(self, name: str, digest: Digest) -> bool:
        # Clients may fetch a manifest through the blob endpoint (the spec allows it).
        return self.exists(layout.revision_link(name, digest))

    def link_blob(self, name: str, digest: Digest) -> None:
        self.write_bytes(layout.layer_link(name, digest), str(digest).encode())

    def unlink_blob(self, name: str, digest: Digest) -> None:
        """Remove the blob from ``name`` (its content stays for other repositories until gc)."""
        try:
            self.backend.delete(layout.layer_link(name, digest).rsplit("/", 1)[0])
        except NotFound:
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None

    def read_blob(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> Iterator[bytes]:
        return self.backend.read(layout.blob_data(digest), offset, length)

    def blob_redirect(self, digest: Digest) -> str | None:
        return self.backend.redirect_url(layout.blob_data(digest))

    def mount_blob(self, name: str, source: str | None, digest: Digest) -> bool:
        """Link a blob of ``source`` (any repository when ``None``) into ``name``."""
        if source is not None and not self.exists(layout.layer_link(source, digest)):
            return False
        if not self.exists(layout.blob_data(digest)):
            return False
        self.link_blob(name, digest)
        # Re-check after linking: a gc may have set the data aside meanwhile.
        return self.restore(layout.blob_data(digest))

    # ------------------------------------------------------------------ uploads

    def start_upload(self, name: str, algorithm: str = "sha256") -> UploadSession:
        if algorithm not in ALGORITHMS:
            raise RegistryError(
                "DIGEST_INVALID",
                message=f"unsupported digest algorithm {algorithm!r}",
                detail={"supported": sorted(ALGORITHMS)},
            )
        upload_id = str(uuid.uuid4())
        started = time.time()
        info = {"algorithm": algorithm, "started": started}
        self.write_bytes(layout.upload_info(name, upload_id), json.dumps(info).encode())
        self._keep_hash(upload_id, _HashState(algorithm))
        return UploadSession(name, upload_id, algorithm, started, 0)

    def upload_session(self, name: str, upload_id: str) -> UploadSession:
        """The session's state; ``BLOB_UPLOAD_UNKNOWN`` if there is no such session."""
        unknown = RegistryError("BLOB_UPLOAD_UNKNOWN", detail={"uuid": upload_id[:100]})
        try:
            # Only the form we hand out: uuid.UUID also takes braces, "urn:uuid:", no dashes.
            if str(uuid.UUID(upload_id)) != upload_id:
                raise unknown
            info = json.loads(self.read_bytes(layout.upload_info(name, upload_id)))
            algorithm, started = info["algorithm"], float(info["started"])
        except (ValueError, TypeError, KeyError, NotFound):
            raise unknown from None
        if algorithm not in ALGORITHMS:
            raise unknown
        offset = self._stored_size(name, upload_id)
        return UploadSession(name, upload_id, algorithm, started, offset)

    def _stored_size(self, name: str, upload_id: str) -> int:
        path = layout.upload_data(name, upload_id)
        try:
            writer = self.backend.writer(path, append=True)
        except NotFound:
            try:
                return self.backend.stat(path).size
            except NotFound:
                return 0
        size = writer.size
        writer.close()
        return size

    def _keep_hash(self, upload_id: str, state: _HashState) -> None:
        with self._hash_lock:
            self._hashes[upload_id] = state
            while len(self._hashes) > MAX_RUNNING_HASHES:
                self._hashes.popitem(last=False)

    def forget_hash(self, upload_id: str) -> None:
        with self._hash_lock:
            self._hashes.pop(upload_id, None)

    def _cached_hash(self, session: UploadSession, algorithm: str) -> _HashState | None:
        """The running hash if this process holds it at the session's offset, else ``None``
        (another registry process took earlier chunks, or this one restarted)."""
        with self._hash_lock:
            state = self._hashes.get(session.upload_id)
        if state is None or state.offset != session.offset or state.hasher.name != algorithm:
            return None
        return state

    def _resume_writer(self, session: UploadSession) -> BlobWriter:
        path = layout.upload_data(session.name, session.upload_id)
        try:
            return self.backend.writer(path, append=True)
        except NotFound:
            pass
        writer = self.backend.writer(path)
        # After a failed verification the bytes were committed to be re-read; carry them over.
        try:
            for chunk in self.backend.read(path):
                writer.write(chunk)
        except NotFound:
            pass
        except BaseException:
            writer.cancel()
            raise
        return writer

    def _mark_active(self, session: UploadSession) -> None:
        """Rewrite the info file so gc does not expire a session in use (gc.py).

        Gc counts idle time in hours, so a minute's precision is plenty: a session that was
        marked less than a minute ago is left alone, sparing most chunks a synced write.
        """
        path = layout.upload_info(session.name, session.upload_id)
        try:
            if time.time() - self.backend.stat(path).modified < ACTIVITY_PRECISION:
                return
        except NotFound:
            pass
        info = {"algorithm": session.algorithm, "started": session.started}
        self.write_bytes(path, json.dumps(info).encode())

    def open_upload(self, session: UploadSession) -> UploadWriter:
        """A writer appending to the session (the caller closes it)."""
        self._mark_active(session)
        state = self._cached_hash(session, session.algorithm)
        if state is None and session.offset == 0:
            state = _HashState(session.algorithm)
            self._keep_hash(session.upload_id, state)
        elif state is None:
            self.forget_hash(session.upload_id)
        return UploadWriter(self, session, self._resume_writer(session), state)

    def finish_upload(self, session: UploadSession, expected: Digest) -> Digest:
        """Verify the session's bytes against ``expected`` and make them the blob's content.

        On a mismatch the session keeps its bytes (``DIGEST_INVALID``), so nothing is lost.
        """
        path = layout.upload_data(session.name, session.upload_id)
        state = self._cached_hash(session, expected.algorithm)
        if state is not None:
            actual = Digest(expected.algorithm, state.hasher.hexdigest())
            if actual != expected:
                raise _digest_mismatch(expected, actual, session.offset)
            self._resume_writer(session).commit()
        else:
            # No running hash here: commit the bytes so they can be read back and hashed.
            self._resume_writer(session).commit()
            hasher = expected.hasher()
            for chunk in self.backend.read(path):
                hasher.update(chunk)
            actual = Digest(expected.algorithm, hasher.hexdigest())
            if actual != expected:
                raise _digest_mismatch(expected, actual, session.offset)
        # Link first, then place the data: see the module docstring (gc safety).
        self.link_blob(session.name, expected)
        target = layout.blob_data(expected)
        if self.restore(target):
            self.delete_quietly(path)
        else:
            self.backend.move(path, target)
        self.delete_upload(session.name, session.upload_id)
        return expected

    def delete_upload(self, name: str, upload_id: str) -> None:
        """Cancel a session: its uncommitted bytes and its directory go."""
        self.forget_hash(upload_id)
        with contextlib.suppress(NotFound):
            self.backend.writer(layout.upload_data(name, upload_id), append=True).cancel()
        self.delete_quietly(layout.upload_dir(name, upload_id))

    # ------------------------------------------------------------------ manifests

    def _read_record(self, path: str) -> ManifestRecord | None:
        try:
            return ManifestRecord.from_json(self.read_bytes(path))
        except NotFound:
            return None

    def resolve(self, name: str, reference: str) -> ManifestRecord:
        """The manifest a tag or digest names in ``name``; ``MANIFEST_UNKNOWN`` if none."""
        if ":" in reference:
            digest = parse_digest(reference)
            record = self._read_record(layout.revision_link(name, digest))
        else:
            check_tag(reference)
            record = self._read_record(layout.tag_link(name, reference))
        if record is None:
            raise RegistryError(
                "MANIFEST_UNKNOWN", detail={"name": name, "reference": reference[:300]}
            )
        return record

    def manifest_bytes(self, record: ManifestRecord) -> bytes:
        with self._cache_lock:
            cached = self._manifest_cache.get(record.digest)
            if cached is not None:
                self._manifest_cache.move_to_end(record.digest)
                return cached
        try:
            data = self.read_bytes(layout.blob_data(record.digest))
        except NotFound:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"digest": str(record.digest)}) from None
        with self._cache_lock:
            self._manifest_cache[record.digest] = data
            self._manifest_cache_bytes += len(data)
            while self._manifest_cache_bytes > 64 * 1024 * 1024:
                _, evicted = self._manifest_cache.popitem(last=False)
                self._manifest_cache_bytes -= len(evicted)
        return data

    def get_manifest(self, name: str, reference: str) -> tuple[ManifestRecord, bytes]:
        record = self.resolve(name, reference)
        return record, self.manifest_bytes(record)

    def _missing_references(self, name: str, info: ManifestInfo) -> list[Descriptor]:
        missing = []
        for blob in info.blobs:
            linked = self.exists(layout.layer_link(name, blob.digest))
            if not linked or not self.restore(layout.blob_data(blob.digest)):
                missing.append(blob)
        for child in info.manifests:
            if not self.restore(layout.revision_link(name, child.digest)) or not self.restore(
                layout.blob_data(child.digest)
            ):
                missing.append(child)
        return missing

    def put_manifest(
        self,
        name: str,
        reference: str,
        body: bytes,
        content_type: str,
        extra_tags: list[str],
        check_references: bool = True,
    ) -> PutManifestResult:
        """Store a pushed manifest under its digest and tags, after validating it.

        ``check_references=False`` stores it before what it references (a pull-through cache
        holds a manifest whose blobs it fetches only when a client asks for them)."""
        if ":" in reference:
            given = parse_digest(reference)
            digest = Digest.of(body, given.algorithm)
            if digest != given:
                raise RegistryError(
                    "DIGEST_INVALID", detail={"expected": str(given), "actual": str(digest)}
                )
            tags = [check_tag(t) for t in extra_tags]
        else:
            digest = Digest.of(body)
            tags = [check_tag(reference), *(check_tag(t) for t in extra_tags)]
        info = parse_manifest(body, content_type)
        missing = self._missing_references(name, info) if check_references else []
        if missing:
            raise _blob_unknown(missing)
        record = ManifestRecord(digest, info.media_type, len(body))
        record_bytes = json.dumps(record.to_json()).encode()
        data_path = layout.blob_data(digest)
        if not self.restore(data_path):
            self.write_bytes(data_path, body)
        revision = layout.revision_link(name, digest)
        undo = _ManifestPushUndo(name, digest, info, had_revision=self.exists(revision))
        try:
            self.write_bytes(revision, record_bytes)
            if info.subject is not None:
                self.write_bytes(
                    layout.referrer_link(name, info.subject.digest, digest),
                    json.dumps(_referrer_descriptor(record, info)).encode(),
                )
            for tag in tags:
                previous = self._read_record(layout.tag_link(name, tag))
                self.write_bytes(layout.tag_link(name, tag), record_bytes)
                undo.previous_tags[tag] = previous
            # Visible now; check again in case a gc set a reference aside in between (gc.py).
            missing = self._missing_references(name, info) if check_references else []
            if not self.restore(data_path):
                missing.append(Descriptor(MediaType(info.media_type), digest, Size(len(body))))
            if missing:
                raise _blob_unknown(missing)
        except BaseException:
            # Half a push (a reference gone, a tag path the backend cannot hold) is no push.
            self._undo_manifest_push(undo)
            raise
        return PutManifestResult(digest, info, tuple(tags))

    def _undo_manifest_push(self, undo: _ManifestPushUndo) -> None:
        name = undo.name
        for tag, previous in undo.previous_tags.items():
            if previous is None:
                self.delete_quietly(layout.tag_link(name, tag).rsplit("/", 1)[0])
            else:
                self.write_bytes(
                    layout.tag_link(name, tag), json.dumps(previous.to_json()).encode()
                )
        if not undo.had_revision:
            if undo.info.subject is not None:
                link = layout.referrer_link(name, undo.info.subject.digest, undo.digest)
                self.delete_quietly(link.rsplit("/", 1)[0])
            self.delete_quietly(layout.revision_link(name, undo.digest).rsplit("/", 1)[0])

    def delete_manifest(self, name: str, reference: str) -> None:
        """Delete a tag, or a manifest with every tag and referrer entry that points to it."""
        if ":" not in reference:
            check_tag(reference)
            tag_dir = layout.tag_link(name, reference).rsplit("/", 1)[0]
            try:
                self.backend.delete(tag_dir)
            except NotFound:
                raise RegistryError(
                    "MANIFEST_UNKNOWN", detail={"name": name, "tag": reference}
                ) from None
            return
        digest = parse_digest(reference)
        revision = layout.revision_link(name, digest)
        record = self._read_record(revision)
        if record is None:
            raise RegistryError("MANIFEST_UNKNOWN", detail={"name": name, "digest": str(digest)})
        for tag in self.tags(name):
            tagged = self._read_record(layout.tag_link(name, tag))
            if tagged is not None and tagged.digest == digest:
                self.delete_quietly(layout.tag_link(name, tag).rsplit("/", 1)[0])
        try:
            body = self.read_bytes(layout.blob_data(digest))
        except NotFound:
            body = b""
        info = read_stored_manifest(body, record.media_type)
        if info is not None and info.subject is not None:
            link = layout.referrer_link(name, info.subject.digest, digest)
            self.delete_quietly(link.rsplit("/", 1)[0])
        self.delete_quietly(revision.rsplit("/", 1)[0])

    # ------------------------------------------------------------------ discovery

    def repository_exists(self, name: str) -> bool:
        return self.exists(layout.repository(name))

    def tags(self, name: str) -> list[str]:
        return sorted(layout.child_name(p) for p in self.list_dir(layout.tags(name)))

    def referrers(self, name: str, subject: Digest) -> list[dict[str, Any]]:
        descriptors = []
        for algorithm_dir in self.list_dir(layout.referrers(name, subject)):
            for digest_dir in self.list_dir(algorithm_dir):
                try:
                    descriptors.append(json.loads(self.read_bytes(f"{digest_dir}/link")))
                except NotFound:
                    continue  # deleted while we listed
        descriptors.sort(key=lambda d: d["digest"])
        return descriptors

    def repositories(self, with_uploads_only: bool = False) -> list[str]:
        """Every repository name, sorted (a walk of the repositories directory).

        A repository that holds nothing but upload sessions is not listed unless
        ``with_uploads_only`` (gc wants it, to expire the sessions).
        """
        markers = (
            {"_manifests", "_layers", "_uploads"}
            if with_uploads_only
            else {"_manifests", "_layers"}
        )
        found: list[str] = []
        pending = [layout.REPOSITORIES]
        while pending:
            path = pending.pop()
            children = self.list_dir(path)
            names = {layout.child_name(c) for c in children}
            if path != layout.REPOSITORIES and names & markers:
                found.append(path[len(layout.REPOSITORIES) + 1 :])
            pending.extend(c for c in children if not layout.child_name(c).startswith("_"))
        return sorted(found)


def _digest_mismatch(expected: Digest, actual: Digest, size: int) -> RegistryError:
    return RegistryError(
        "DIGEST_INVALID", detail={"expected": str(expected), "actual": str(actual), "size": size}
    )


def _blob_unknown(missing: list[Descriptor]) -> RegistryError:
    first = missing[0]
    return RegistryError(
        "MANIFEST_BLOB_UNKNOWN",
        message=f"manifest references {len(missing)} unknown blob(s) or manifest(s), "
        f"first {first.digest}",
        detail={"digests": [str(d.digest) for d in missing]},
    )


def _referrer_descriptor(record: ManifestRecord, info: ManifestInfo) -> dict[str, Any]:
    descriptor: dict[str, Any] = record.to_json()
    if info.artifact_type:
        descriptor["artifactType"] = info.artifact_type
    if info.annotations:
        descriptor["annotations"] = info.annotations
    return descriptor
