"""Pulling an image from a registry into the daemon's image store (``docker pull``).

A pull has two phases, split so that the Engine API can answer an HTTP error before it
streams anything, as clients expect (the docker CLI's ``run`` pulls on create's 404, and
prints a pull's 404 as ``Error response from daemon``):

1. :meth:`Puller.resolve`: reach the registry, fetch the manifest the reference names and,
   for an index, the one for the wanted platform; check it (media types, digests). Failures
   raise.
2. :meth:`Puller.pull`: stream progress while the config and the layers download
   concurrently (``max-concurrent-downloads`` at a time), each layer's size and digest
   checked while it streams; unpack them in order through the storage driver; record the
   image and its tag last. Failures end the stream with an error message.

Downloads go to a private area under the data root (``downloads/``): ``<hex>.partial`` while
in progress, ``<hex>`` once verified. A dropped connection or a killed daemon leaves them
there, and the next pull resumes a partial blob with ``Range`` (when the registry honours it)
and reuses a verified one; the image store itself only ever holds whole layers and whole
images. A finished download enters the content store as a hard link.

What is left there does not stay for ever. A pull that ends well removes the downloads of all
its image's layers, and at daemon start and at the end of every pull, downloads untouched for
:data:`STALE_DOWNLOAD_AGE` (a pull nobody retried) are removed; never one a running pull
needs: each pull marks its layers in use (:class:`_InUse`) from before it touches a file until
it ends.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import structlog

from dockyard.core.errors import InvalidParameter, NotFound
from dockyard.core.platforms import PlatformSpec, go_arch
from dockyard.daemon.distribution import progress
from dockyard.daemon.distribution.service import RegistryService
from dockyard.daemon.images.compression import open_decompressed
from dockyard.daemon.images.store import ImageStore, LayerRecord, chain_id
from dockyard.distribution.client import RegistryClient
from dockyard.distribution.credentials import Credentials
from dockyard.distribution.endpoints import HUB_NAMES
from dockyard.distribution.errors import RegistryError
from dockyard.distribution.reference import Reference
from dockyard.distribution.remote import (
    Descriptor,
    FetchedManifest,
    ImageIndex,
    ImageManifest,
    RemoteRepository,
)
from dockyard.linux.syscalls import start_writeback

_log = structlog.get_logger("dockyard.distribution.pull")

DEFAULT_MAX_CONCURRENT_DOWNLOADS = 3

#: Seconds a download may lie untouched (no byte written) before it is taken for one nobody
#: will resume: a day, long enough for the retry of a pull cut off by a network outage.
STALE_DOWNLOAD_AGE = 24 * 3600

_PARTIAL = ".partial"

#: Sends one message of the stream (a dict, as :mod:`.progress` makes them).
Emit = Callable[[dict[str, Any]], None]


def this_platform() -> PlatformSpec:
    return PlatformSpec("linux", go_arch())


def parse_platform(text: str) -> PlatformSpec:
    """``os/arch[/variant]``, as ``docker pull --platform`` sends it."""
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidParameter(f"invalid platform {text!r}: want os/arch[/variant]")
    return PlatformSpec(*parts)


def _platform_matches(candidate: PlatformSpec | None, wanted: PlatformSpec) -> bool:
    if candidate is None:
        return False
    if (candidate.os, candidate.architecture) != (wanted.os, wanted.architecture):
        return False
    return not wanted.variant or candidate.variant == wanted.variant


@attrs.frozen
class ResolvedPull:
    """What :meth:`Puller.resolve` found; ``client`` is open until the pull ends."""

    reference: Reference
    client: RegistryClient
    repository: RemoteRepository
    #: The digest the reference resolved to (an index's, for a multi-platform image).
    digest: str
    top: FetchedManifest
    manifest: ImageManifest
    manifest_data: bytes


class Puller:
    """The daemon's pulls: one per daemon, shared by all requests."""

    def __init__(
        self,
        registries: RegistryService,
        store: ImageStore,
        downloads: Path,
        max_concurrent_downloads: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS,
        mirrors: Sequence[str] = (),
        on_pulled: Callable[[Reference], None] = lambda reference: None,
    ) -> None:
        self.registries = registries
        self.store = store
        self.downloads = downloads
        self.downloads.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.max_concurrent_downloads = max(1, max_concurrent_downloads)
        #: Registries (``HOST[:PORT]``) tried first for images of the default registry.
        self.mirrors = tuple(mirrors)
        #: Told of every pull that ended well (the daemon's ``image pull`` event).
        self.on_pulled = on_pulled
        #: One download of a blob at a time, whichever pulls want it.
        self._blob_locks = _BlobLocks()
        #: The blobs running pulls need: their downloads are not removed.
        self._in_use = _InUse()
        self._remove_stale_downloads()

    def registry_of(self, reference: Reference) -> str:
        """The registry host to pull ``reference`` from: Docker Hub's names mean the
        daemon's ``default-registry``."""
        return (
            self.registries.default_registry if reference.domain in HUB_NAMES else reference.domain
        )

    # ------------------------------------------------------------------ phase 1: resolve

    async def resolve(
        self,
        reference: Reference,
        credentials: Credentials,
        platform: PlatformSpec | None = None,
        upstream_agent: str = "",
    ) -> ResolvedPull:
        """The image ``reference`` names, from a mirror (for images of the default registry,
        tried first) or its own registry. A mirror that challenges gets ``credentials``, those
        the client sent for the default registry: dockerd 20.10 answers every endpoint of a
        pull, mirrors included, with the one ``X-Registry-Auth`` it was given."""
        if reference.domain in HUB_NAMES:
            for mirror in self.mirrors:
                try:
                    return await self._resolve_at(
                        mirror, reference, credentials, platform, upstream_agent
                    )
                except (RegistryError, NotFound, InvalidParameter) as exc:
                    _log.info("mirror failed, trying the next", mirror=mirror, error=str(exc))
        return await self._resolve_at(
            self.registry_of(reference), reference, credentials, platform, upstream_agent
        )

    async def _resolve_at(
        self,
        host: str,
        reference: Reference,
        credentials: Credentials,
        platform: PlatformSpec | None,
        upstream_agent: str,
    ) -> ResolvedPull:
        client = await self.registries.connect(host, credentials, upstream_agent)
        try:
            repository = RemoteRepository(client, reference.path)
            shown = reference.familiar()
            top = await repository.manifest(reference.digest or reference.tag or "latest", shown)
            document = top.document
            data = top.data
            if isinstance(document, ImageIndex):
                wanted = platform or this_platform()
                chosen = [d for d in document.manifests if _platform_matches(d.platform, wanted)]
                if not chosen:
                    raise NotFound(
                        f"no matching manifest for {wanted} in the manifest list entries"
                    )
                inner = await repository.manifest(chosen[0].digest, shown)
                if not isinstance(inner.document, ImageManifest):
                    raise InvalidParameter(
                        f"manifest {chosen[0].digest} of the index is not an image manifest"
                    )
                document, data = inner.document, inner.data
            assert isinstance(document, ImageManifest)
            return ResolvedPull(reference, client, repository, top.digest, top, document, data)
        except BaseException:
            await client.http.aclose()
            raise

    async def inspect(
        self, reference: Reference, credentials: Credentials, upstream_agent: str = ""
    ) -> dict[str, Any]:
        """``GET /distribution/{name}/json``: the descriptor the reference resolves to and
        the platforms it offers (an index's entries, or the image config's own)."""
        client = await self.registries.connect(
            self.registry_of(reference), credentials, upstream_agent
        )
        async with client:
            repository = RemoteRepository(client, reference.path)
            wanted = reference.digest or reference.tag or "latest"
            await repository.peek(wanted)
            top = await repository.manifest(wanted, reference.familiar(), name_in_404=False)
            document = top.document
            if isinstance(document, ImageIndex):
                platforms = [d.platform for d in document.manifests if d.platform is not None]
            else:
                config = json.loads(await repository.blob(document.config))
                platforms = [
                    PlatformSpec(
                        str(config.get("os", "")),
                        str(config.get("architecture", "")),
                        str(config.get("variant", "")),
                    )
                ]
        return {
            "Descriptor": {
                "mediaType": document.media_type,
                "digest": top.digest,
                "size": len(top.data),
            },
            "Platforms": [
                {
                    "architecture": p.architecture,
                    "os": p.os,
                    **({"variant": p.variant} if p.variant else {}),
                }
                for p in platforms
            ],
        }

    # ------------------------------------------------------------------ phase 2: pull

    async def pull(self, resolved: ResolvedPull, emit: Emit) -> None:
        """Download, unpack and record the image; progress and the outcome go to ``emit``.
        Raises what ended it (after which the store is as it was, downloads kept for a retry
        to resume, until they are stale)."""
        digests = [layer.digest for layer in resolved.manifest.layers]
        try:
            with self._in_use.marked(digests):
                async with resolved.client:
                    await self._pull(resolved, emit)
            # Recorded (or already here): nothing of this image's downloads is wanted now,
            # whatever pull left it; unless another running pull needs it.
            self._remove_downloads(digests)
        finally:
            self._remove_stale_downloads()

    async def _pull(self, resolved: ResolvedPull, emit: Emit) -> None:
        reference = resolved.reference
        manifest = resolved.manifest
        # The one status with an id and no progressDetail, as dockerd's.
        emit({"status": f"Pulling from {reference.path}", "id": reference.digest or reference.tag})
        image_id = manifest.config.digest
        present = await asyncio.to_thread(self._present, image_id)
        if not present:
            await self._fetch_image(resolved, emit)
        else:
            await asyncio.to_thread(self._record_digest, resolved)
        tagged_before = await asyncio.to_thread(self._tagged, reference, image_id)
        if not tagged_before:
            await asyncio.to_thread(self.store.tag, image_id, reference)
        self.on_pulled(reference)
        emit(progress.status(f"Digest: {resolved.digest}"))
        shown = reference.familiar()
        if present and tagged_before:
            emit(progress.status(f"Status: Image is up to date for {shown}"))
        else:
            emit(progress.status(f"Status: Downloaded newer image for {shown}"))

    def _present(self, image_id: str) -> bool:
        return any(image.id == image_id for image in self.store.images())

    def _tagged(self, reference: Reference, image_id: str) -> bool:
        try:
            return self.store.resolve(str(reference)).id == image_id
        except NotFound:
            return False

    def _repo_digest(self, resolved: ResolvedPull) -> str:
        return f"{resolved.reference.familiar_name}@{resolved.digest}"

    def _record_digest(self, resolved: ResolvedPull) -> None:
        """An image already here, pulled under another name: remember this repo digest."""
        self.store.content.write(resolved.top.data)
        image = self.store.resolve(resolved.manifest.config.digest)
        layers = [self.store.layer(chain) for chain in image.layers]
        config = self.store.content.read(image.id)
        self.store.add_image(config, layers, [], (self._repo_digest(resolved),))

    async def _fetch_image(self, resolved: ResolvedPull, emit: Emit) -> None:
        manifest = resolved.manifest
        # Layers already unpacked, bottom up, as long as the stack below them is the same
        # (one blob may be unpacked over several parents).
        known = {(r.blob, r.parent): r for r in await asyncio.to_thread(self.store.layers)}
        existing: list[LayerRecord] = []
        parent: str | None = None
        for layer in manifest.layers:
            record = known.get((layer.digest, parent))
            if record is None:
                break
            existing.append(record)
            parent = record.chain_id
        for layer in manifest.layers[: len(existing)]:
            emit(progress.status("Already exists", layer.short))
        missing = manifest.layers[len(existing) :]
        config_task = asyncio.ensure_future(resolved.repository.blob(manifest.config))
        for layer in missing:
            emit(progress.status("Pulling fs layer", layer.short))
        slots = asyncio.Semaphore(self.max_concurrent_downloads)
        downloads: dict[str, asyncio.Future[Path]] = {}
        for layer in missing:
            if layer.digest not in downloads:
                downloads[layer.digest] = asyncio.ensure_future(
                    self._download(resolved.repository, layer, slots, emit)
                )
        registered: list[str] = []
        try:
            config_data = await config_task
            diff_ids = _diff_ids(config_data, len(manifest.layers))
            records = list(existing)
            parent = existing[-1].chain_id if existing else None
            for index, layer in enumerate(missing, start=len(existing)):
                path = await downloads[layer.digest]
                unpacked, new = await asyncio.to_thread(
                    self._unpack, parent, diff_ids[index], layer, path, _threadsafe(emit)
                )
                if new:
                    registered.append(unpacked.chain_id)
                emit(progress.status("Pull complete", layer.short))
                records.append(unpacked)
                parent = unpacked.chain_id
            # Made durable only now, all at once: their write-back started as they arrived.
            fetched = [self._complete(layer) for layer in missing]
            await asyncio.gather(*(asyncio.to_thread(_fsync_file, path) for path in fetched))
            await asyncio.to_thread(self._record, resolved, config_data, records)
        except BaseException:
            config_task.cancel()
            for task in downloads.values():
                task.cancel()
            await asyncio.gather(config_task, *downloads.values(), return_exceptions=True)
            if registered:
                await asyncio.to_thread(self.store.discard_layers, tuple(registered))
            raise

    def _record(self, resolved: ResolvedPull, config: bytes, layers: list[LayerRecord]) -> None:
        self.store.content.write(resolved.top.data)
        if resolved.manifest_data is not resolved.top.data:
            self.store.content.write(resolved.manifest_data)
        self.store.add_image(config, layers, [], (self._repo_digest(resolved),))

    def _unpack(
        self,
        parent: str | None,
        diff_id: str,
        layer: Descriptor,
        path: Path,
        emit: Emit,
    ) -> tuple[LayerRecord, bool]:
        """Unpack one downloaded layer (in a worker thread); whether it is new."""
        chain = chain_id(parent, diff_id)
        try:
            return self.store.layer(chain), False
        except NotFound:
            pass  # not unpacked yet
        self.store.content.link(path, layer.digest)

        def open_diff() -> BinaryIO:
            counted = _CountingReader(self.store.content.open(layer.digest), layer, emit)
            return open_decompressed(counted, layer.media_type)  # type: ignore[arg-type]

        try:
            record = self.store.register_layer(
                parent, diff_id, layer.digest, layer.media_type, open_diff
            )
        except BaseException:
            self.store.discard_unreferenced({layer.digest})
            raise
        return record, True

    # ------------------------------------------------------------------ downloads

    def _complete(self, layer: Descriptor) -> Path:
        return self.downloads / layer.digest.partition(":")[2]

    # Both removals run on the event loop, not in a worker thread: a pull marks its blobs in
    # use on the loop before it opens a file, so no pull can start on a download between the
    # check and the unlink. They stat and unlink a few files: brief.

    def _remove_downloads(self, digests: Iterable[str]) -> None:
        """The downloads (whole or partial) of ``digests`` no running pull needs."""
        for digest in set(digests) - self._in_use.digests():
            name = digest.partition(":")[2]
            for path in (self.downloads / name, self.downloads / (name + _PARTIAL)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _remove_stale_downloads(self) -> None:
        """Downloads nobody touched for :data:`STALE_DOWNLOAD_AGE` and no running pull
        needs: left by pulls that were never retried."""
        in_use = {digest.partition(":")[2] for digest in self._in_use.digests()}
        oldest = time.time() - STALE_DOWNLOAD_AGE
        removed = []
        try:
            with os.scandir(self.downloads) as entries:
                for entry in entries:
                    if entry.name.removesuffix(_PARTIAL) in in_use:
                        continue
                    with contextlib.suppress(FileNotFoundError):  # gone meanwhile
                        if entry.stat(follow_symlinks=False).st_mtime < oldest:
                            os.unlink(entry.path)
                            removed.append(entry.name)
        except OSError as exc:  # a clean-up: it never fails a pull, or the daemon's start
            _log.warning("cannot remove stale downloads", error=str(exc))
        if removed:
            _log.info("removed stale downloads", downloads=sorted(removed))

    async def _download(
        self, repository: RemoteRepository, layer: Descriptor, slots: asyncio.Semaphore, emit: Emit
    ) -> Path:
        if slots.locked():
            emit(progress.status("Waiting", layer.short))
        async with slots, self._blob_locks.hold(layer.digest):
            return await self._download_blob(repository, layer, emit)

    async def _download_blob(
        self, repository: RemoteRepository, layer: Descriptor, emit: Emit
    ) -> Path:
        complete = self._complete(layer)
        if complete.exists() and complete.stat().st_size == layer.size:
            # Verified when it was downloaded (by an earlier, interrupted pull), but not synced
            # to disk then: checked again, in case the machine went down since.
            if await asyncio.to_thread(_file_digest, complete) == layer.digest:
                emit(progress.status("Download complete", layer.short))
                return complete
            complete.unlink()
        partial = complete.with_name(complete.name + ".partial")
        hasher = hashlib.sha256()
        offset = 0
        if partial.exists():
            offset = partial.stat().st_size
            if offset >= layer.size:
                offset = 0
                partial.unlink()
            else:
                await asyncio.to_thread(_hash_file, partial, hasher)
        throttle = progress.Throttle()
        received = offset
        with open(partial, "ab") as out:
            spool = _Spool(out, hasher)
            try:
                async for chunk in repository.blob_chunks(layer, offset):
                    if not chunk:  # the registry sends the whole blob: start over
                        spool.restart()
                        received = 0
                        continue
                    received += len(chunk)
                    if received > layer.size:
                        partial.unlink()
                        raise InvalidParameter(
                            f"layer {layer.digest}: the registry sent more than its size, "
                            f"{layer.size} bytes"
                        )
                    if spool.add(chunk):
                        await spool.flush()
                    if throttle.due():
                        emit(progress.progress("Downloading", layer.short, received, layer.size))
                await spool.flush()
            except BaseException:
                spool.flush_here()  # what arrived is kept for the next pull to resume from
                raise
            out.flush()
        hasher = spool.hasher
        if received != layer.size:
            raise RegistryError(
                f"layer {layer.digest}: the connection ended after {received} of {layer.size} bytes"
            )
        emit(progress.status("Verifying Checksum", layer.short))
        if "sha256:" + hasher.hexdigest() != layer.digest:
            partial.unlink()
            raise InvalidParameter(
                f"filesystem layer verification failed for digest {layer.digest}"
            )
        os.replace(partial, complete)
        emit(progress.status("Download complete", layer.short))
        return complete


class _BlobLocks:
    """One lock per blob, alive only while some pull holds it or waits for it: the table
    does not grow with every digest ever pulled."""

    def __init__(self) -> None:
        #: Each lock, and how many pulls hold it or wait for it.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, digest: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(digest, (asyncio.Lock(), 0))
        self._locks[digest] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            # Counted down whether the lock was had or the wait cancelled.
            lock, users = self._locks[digest]
            if users == 1:
                del self._locks[digest]
            else:
                self._locks[digest] = (lock, users - 1)


class _InUse:
    """The blobs running pulls need, counted per pull."""

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()

    def digests(self) -> set[str]:
        return set(self._counts)

    @contextlib.contextmanager
    def marked(self, digests: Iterable[str]) -> Iterator[None]:
        wanted = collections.Counter(set(digests))
        self._counts.update(wanted)
        try:
            yield
        finally:
            self._counts.subtract(wanted)
            for digest in wanted:
                if self._counts[digest] <= 0:
                    del self._counts[digest]


def _diff_ids(config: bytes, layer_count: int) -> list[str]:
    try:
        document = json.loads(config)
        diff_ids = document["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidParameter("the image config has no rootfs.diff_ids") from None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidParameter("the image config's rootfs.diff_ids are not a list of digests")
    if len(diff_ids) != layer_count:
        raise InvalidParameter(
            f"the manifest has {layer_count} layers and the image config {len(diff_ids)} diff ids"
        )
    return diff_ids


#: Downloaded bytes gathered before one write and hash in a worker thread: the event loop,
#: which also parses every download's HTTP, then spends its time receiving.
DOWNLOAD_BATCH = 1 << 20


class _Spool:
    """A download's bytes on their way into its partial file and its running hash."""

    def __init__(self, out: BinaryIO, hasher: Any) -> None:
        self.out = out
        self.hasher = hasher
        self._pending: list[bytes] = []
        self._pending_size = 0

    def add(self, chunk: bytes) -> bool:
        """Gather ``chunk``; whether enough is gathered to :meth:`flush`."""
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        return self._pending_size >= DOWNLOAD_BATCH

    def _take(self) -> list[bytes]:
        chunks = self._pending
        self._pending = []
        self._pending_size = 0
        return chunks

    async def flush(self) -> None:
        if self._pending:
            await asyncio.to_thread(self._write, self._take())

    def flush_here(self) -> None:
        """Write what is gathered in this thread (on the way out of a failed download)."""
        if self._pending:
            self._write(self._take())

    def _write(self, chunks: list[bytes]) -> None:
        start = self.out.tell()
        self.out.writelines(chunks)
        self.out.flush()
        # The download is fsynced before the image is recorded: have the disk start on this
        # part now, while the rest arrives.
        start_writeback(self.out.fileno(), start, self.out.tell() - start)
        for chunk in chunks:
            self.hasher.update(chunk)

    def restart(self) -> None:
        """Drop everything: the registry is sending the blob again from its start."""
        self._pending.clear()
        self._pending_size = 0
        self.out.seek(0)
        self.out.truncate()
        self.hasher = hashlib.sha256()


def _file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    _hash_file(path, hasher)
    return "sha256:" + hasher.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _hash_file(path: Path, hasher: Any) -> None:
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            hasher.update(chunk)


def _threadsafe(emit: Emit) -> Emit:
    """``emit`` callable from a worker thread (it runs on the event loop)."""
    loop = asyncio.get_running_loop()

    def threadsafe(message: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(emit, message)

    return threadsafe


class _CountingReader:
    """The compressed layer as it is unpacked, reporting ``Extracting`` progress."""

    def __init__(self, source: BinaryIO, layer: Descriptor, emit: Emit) -> None:
        self._source = source
        self._layer = layer
        self._emit = emit
        self._throttle = progress.Throttle()
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._read += len(data)
        if data and (self._throttle.due() or self._read == self._layer.size):
            self._emit(
                progress.progress("Extracting", self._layer.short, self._read, self._layer.size)
            )
        return data

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> _CountingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
