"""Push: an image of the daemon's store to a registry, as dockerd 20.10 pushes it.

For each tag of the repository that is pushed (one, or all of them when none is named):

1. every layer, up to :attr:`PushSettings.concurrency` at once, top layer first:

   * a blob of the layer that the record (:mod:`~.blobsources`) places in the target
     repository, or the stored blob when it already has the wanted compression, is checked
     with ``HEAD``: present, it is ``Layer already exists``;
   * a blob the record places in another repository of the same registry is mounted
     (``POST uploads/?mount=&from=``): ``Mounted from x/other``;
   * otherwise the layer is compressed (gzip, or zstd by configuration) while it streams to
     the registry in one chunked ``PATCH``, its digest computed on the way, then ``PUT
     ?digest=``: ``Pushing`` with the bytes read, then ``Pushed``;

2. the config blob (``HEAD`` first), then the manifest under the tag: Docker v2 schema 2 for
   gzip layers, as dockerd 20.10 writes it (3-space indented JSON), OCI for zstd ones;
3. ``TAG: digest: sha256:... size: N`` and the ``aux`` message, and the image gains the
   repository digest.

Progress messages go to ``emit`` as they happen; a failure raises and the caller ends the
stream with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, BinaryIO

import attrs
import httpx
import zstandard
from zlib_ng import zlib_ng

from dockyard.core import mediatypes
from dockyard.daemon.distribution import progress
from dockyard.daemon.distribution.blobsources import BlobSource, BlobSources
from dockyard.daemon.distribution.service import RegistryService
from dockyard.daemon.images.compression import (
    Compression,
    compression_of_media_type,
    open_decompressed,
)
from dockyard.daemon.images.store import ImageRecord, ImageStore, LayerRecord
from dockyard.distribution.challenges import is_scheme
from dockyard.distribution.client import RegistryClient
from dockyard.distribution.credentials import Credentials
from dockyard.distribution.errors import (
    RegistryError,
    RegistryUnauthorized,
    describe_error_response,
)
from dockyard.distribution.reference import Reference

Emit = Callable[[dict[str, Any]], Awaitable[None]]

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@attrs.frozen
class ManifestFormat:
    """The media types of a pushed manifest, its config and its layers."""

    manifest: str
    config: str
    layer: str


#: By the layers' compression: gzip in Docker's schema 2, as dockerd 20.10 pushes; zstd in an
#: OCI manifest (schema 2 has no zstd layer type, and clients refuse one there).
FORMATS = {
    Compression.GZIP: ManifestFormat(mediatypes.DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP),
    Compression.ZSTD: ManifestFormat(
        mediatypes.OCI_MANIFEST, mediatypes.OCI_CONFIG, mediatypes.oci_layer("zstd")
    ),
}
#: Bytes read from a layer per chunk sent.
READ_SIZE = 1 << 18
#: dockerd 20.10 gzips a pushed layer at Go's default level, 6: so do we. zlib-ng's deflate
#: (same format, output within a few per cent of zlib's at the same level) runs 1.4 to 2.4
#: times as fast as the stdlib's zlib here, and compression is nearly all a push's work.
GZIP_LEVEL = 6
#: dockerd redraws a progress bar at most this often (seconds).
PROGRESS_INTERVAL = 0.1


#: Seconds added to the wait before each new attempt at a layer (dockerd's).
RETRY_STEP = 5
#: What distribution calls the refusals that trying again cannot change (dockerd gives up on
#: them at once).
_FINAL_REFUSALS = ("unauthorized:", "denied:", "unsupported:", "no basic auth credentials")


def retryable(exc: RegistryError) -> bool:
    return not isinstance(exc, RegistryUnauthorized) and not any(
        word in exc.message for word in _FINAL_REFUSALS
    )


@attrs.frozen
class PushSettings:
    compression: Compression = Compression.GZIP
    #: Layers worked on at once (dockerd's ``max-concurrent-uploads``: 5).
    concurrency: int = 5
    #: Tries at each layer (dockerd's ``max-upload-attempts``: 5).
    attempts: int = 5


@attrs.frozen
class Descriptor:
    media_type: str
    size: int
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "size": self.size, "digest": self.digest}


class NoLocalImage(Exception):
    """Nothing under the pushed name in the store (dockerd's words)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"An image does not exist locally with the tag: {name}")


def layer_id(layer: LayerRecord) -> str:
    """A push names a layer by its diff id's first 12 hex digits (a pull by its blob's)."""
    return layer.diff_id.removeprefix("sha256:")[:12]


class NoSuchTag(Exception):
    """The repository is in the store, but not with the pushed tag (dockerd's words)."""

    def __init__(self, reference: Reference) -> None:
        super().__init__(f"tag does not exist: {reference.familiar()}")


def tags_to_push(store: ImageStore, reference: Reference) -> list[tuple[str, ImageRecord]]:
    """Every tag of ``reference``'s repository, each with its image; :class:`NoLocalImage`
    when there is none. The caller picks the pushed one (:func:`pick_tag`)."""
    found = []
    for image in store.images():
        for ref in store.references_of(image.id):
            if ref.name == reference.name and ref.tag is not None:
                found.append((ref.tag, image))
    if not found:
        raise NoLocalImage(reference.name)
    return sorted(found, key=lambda pair: pair[0])


def pick_tag(
    tags: list[tuple[str, ImageRecord]], reference: Reference
) -> list[tuple[str, ImageRecord]]:
    """``reference``'s tag, or every tag when it names none, as dockerd 20.10 pushes them.
    dockerd finds a missing tag only once it reached the registry: so do we."""
    if reference.tag is None:
        return tags
    picked = [pair for pair in tags if pair[0] == reference.tag]
    if not picked:
        raise NoSuchTag(reference)
    return picked


class LayerEncoder:
    """A layer's bytes as they are sent: the stored blob, decompressed and compressed again
    when its compression is not the wanted one, hashed on the way. Blocking."""

    def __init__(self, store: ImageStore, layer: LayerRecord, compression: Compression) -> None:
        self._blob = store.content.open(layer.blob)
        self.reuses_blob = compression_of_media_type(layer.media_type) == compression
        self._source: BinaryIO = (
            self._blob if self.reuses_blob else open_decompressed(self._blob, layer.media_type)
        )
        self._compressor: Any = None
        if not self.reuses_blob:
            self._compressor = (
                # gzip framing, mtime 0: the same bytes every time
                zlib_ng.compressobj(GZIP_LEVEL, wbits=31)
                if compression is Compression.GZIP
                else zstandard.ZstdCompressor().compressobj()
            )
        self._hash = hashlib.sha256()
        self._finished = False
        #: Bytes read from the layer (uncompressed unless the blob is sent as it is).
        self.consumed = 0
        #: Bytes produced, to send.
        self.size = 0

    def read_chunk(self) -> bytes:
        """The next bytes to send; ``b""`` at the end."""
        while not self._finished:
            data = self._source.read(READ_SIZE)
            self.consumed += len(data)
            if self._compressor is None:
                out = data
                self._finished = not data
            elif data:
                out = self._compressor.compress(data)
            else:
                out = self._compressor.flush()
                self._finished = True
            if out:
                self._hash.update(out)
                self.size += len(out)
                return out
        return b""

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        self._source.close()
        self._blob.close()


@attrs.define
class Pusher:
    """One push of ``reference`` (its tag, or all its tags) through ``client``."""

    store: ImageStore
    client: RegistryClient
    sources: BlobSources
    reference: Reference
    settings: PushSettings
    emit: Emit
    _slots: asyncio.Semaphore = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.settings.concurrency)

    @property
    def registry(self) -> str:
        return self.reference.domain

    @property
    def repository(self) -> str:
        return self.reference.path

    @property
    def format(self) -> ManifestFormat:
        return FORMATS[self.settings.compression]

    @property
    def scopes(self) -> list[str]:
        return [f"repository:{self.repository}:pull,push"]

    def _path(self, tail: str) -> str:
        return f"/v2/{self.repository}/{tail}"

    async def push_tag(self, tag: str, image: ImageRecord) -> Descriptor:
        layers = [self.store.layer(chain) for chain in image.layers]
        top_first = list(reversed(layers))
        # As dockerd: top layer first, and those beyond the uploads at once wait their turn.
        for index, layer in enumerate(top_first):
            await self.emit(progress.status("Preparing", layer_id(layer)))
            if index >= self.settings.concurrency:
                await self.emit(progress.status("Waiting", layer_id(layer)))
        self._check_credentials()
        descriptors = list(reversed(await self._push_layers(top_first)))
        config = await asyncio.to_thread(self.store.content.read, image.id)
        config_descriptor = Descriptor(self.format.config, len(config), image.id)
        if not await self._blob_exists(image.id):
            await self._upload_bytes(config, image.id)
        manifest = {
            "schemaVersion": 2,
            "mediaType": self.format.manifest,
            "config": config_descriptor.to_json(),
            "layers": [d.to_json() for d in descriptors],
        }
        body = json.dumps(manifest, indent=3).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        response = await self.client.request(
            "PUT",
            self._path(f"manifests/{tag}"),
            scopes=self.scopes,
            headers={"Content-Type": self.format.manifest},
            content=body,
        )
        self._expect(response)
        await asyncio.to_thread(
            self.store.add_image,
            config,
            layers,
            repo_digests=(f"{self.reference.name}@{digest}",),
        )
        await self.emit(progress.status(f"{tag}: digest: {digest} size: {len(body)}"))
        await self.emit(
            {"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": len(body)}}
        )
        return Descriptor(self.format.manifest, len(body), digest)

    def _check_credentials(self) -> None:
        """A registry that wants Basic credentials, and none came: dockerd says so in these
        words (no URL), before any layer is sent."""
        bearer = any(is_scheme(c, "bearer") for c in self.client.challenges)
        basic = any(is_scheme(c, "basic") for c in self.client.challenges)
        if basic and not bearer and not self.client.credentials.has_password:
            raise RegistryError("no basic auth credentials")

    # ---------------------------------------------------------------- layers

    async def _push_layers(self, layers: list[LayerRecord]) -> list[Descriptor]:
        """All of ``layers``; the first failure stops the others (nobody would read their
        progress any more) and is raised."""
        tasks = [asyncio.ensure_future(self._push_layer(layer)) for layer in layers]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _push_layer(self, layer: LayerRecord) -> Descriptor:
        short = layer_id(layer)
        async with self._slots:  # taken in the order asked for: top layer first
            attempt = 1
            while True:
                try:
                    return await self._push_layer_now(layer, short)
                except RegistryError as exc:
                    if attempt >= self.settings.attempts or not retryable(exc):
                        raise
                # dockerd waits 5 s more after each failure, counting down each second.
                for remaining in range(RETRY_STEP * attempt, 0, -1):
                    unit = "second" if remaining == 1 else "seconds"
                    await self.emit(progress.status(f"Retrying in {remaining} {unit}", short))
                    await asyncio.sleep(1)
                attempt += 1

    async def _push_layer_now(self, layer: LayerRecord, short: str) -> Descriptor:
        wanted = self.settings.compression
        known = [
            source
            for source in self.sources.of(layer.diff_id, self.registry)
            if mediatypes.LAYER_COMPRESSION.get(source.media_type) == wanted.value
        ]
        here = [s for s in known if s.repository == self.repository]
        if compression_of_media_type(layer.media_type) == wanted:
            stored = BlobSource(
                layer.blob,
                self.format.layer,
                layer.blob_size,
                self.registry,
                self.repository,
            )
            here.append(stored)
        for source in here:
            if await self._blob_exists(source.digest):
                await self._remember(layer, source)
                await self.emit(progress.status("Layer already exists", short))
                return Descriptor(self.format.layer, source.size, source.digest)
        upload: str | None = None
        for source in known:
            if source.repository == self.repository:
                continue
            mounted, upload = await self._mount(source)
            if mounted:
                await self._remember(layer, source)
                await self.emit(progress.status(f"Mounted from {source.repository}", short))
                return Descriptor(self.format.layer, source.size, source.digest)
            if upload is not None:
                break  # the registry opened an upload instead: use it
        return await self._upload_layer(layer, short, upload)

    async def _mount(self, source: BlobSource) -> tuple[bool, str | None]:
        """Mount ``source``'s blob; (mounted, else the upload the registry opened)."""
        query = httpx.QueryParams({"mount": source.digest, "from": source.repository})
        response = await self.client.request(
            "POST",
            self._path(f"blobs/uploads/?{query}"),
            scopes=[*self.scopes, f"repository:{source.repository}:pull"],
            headers={"Content-Length": "0"},
            content=b"",
        )
        if response.status_code == 201:
            return True, None
        self._expect(response)
        return False, self._location(response)

    async def _upload_layer(self, layer: LayerRecord, short: str, upload: str | None) -> Descriptor:
        if upload is None:
            upload = await self._start_upload()
        encoder = await asyncio.to_thread(
            LayerEncoder, self.store, layer, self.settings.compression
        )
        try:
            response = await self.client.send_stream(
                "PATCH",
                upload,
                self._layer_bytes(encoder, short, layer.size),
                scopes=self.scopes,
            )
            self._expect(response)
            digest = encoder.digest
            await self._finish_upload(self._location(response), digest)
        finally:
            await asyncio.to_thread(encoder.close)
        media_type = self.format.layer
        source = BlobSource(digest, media_type, encoder.size, self.registry, self.repository)
        await self._remember(layer, source)
        await self.emit(progress.status("Pushed", short))
        return Descriptor(media_type, encoder.size, digest)

    async def _layer_bytes(
        self, encoder: LayerEncoder, short: str, total: int
    ) -> AsyncIterator[bytes]:
        shown = 0.0
        while chunk := await asyncio.to_thread(encoder.read_chunk):
            now = time.monotonic()
            if now - shown >= PROGRESS_INTERVAL:
                shown = now
                await self.emit(progress.progress("Pushing", short, encoder.consumed, total))
            yield chunk
        await self.emit(progress.progress("Pushing", short, encoder.consumed, total))

    async def _remember(self, layer: LayerRecord, source: BlobSource) -> None:
        await asyncio.to_thread(self.sources.add, layer.diff_id, source)

    # ---------------------------------------------------------------- blobs

    async def _blob_exists(self, digest: str) -> bool:
        response = await self.client.request(
            "HEAD", self._path(f"blobs/{digest}"), scopes=self.scopes
        )
        if response.status_code == 404:
            return False
        self._expect(response)
        return True

    async def _start_upload(self) -> str:
        response = await self.client.request(
            "POST",
            self._path("blobs/uploads/"),
            scopes=self.scopes,
            headers={"Content-Length": "0"},
            content=b"",
        )
        self._expect(response)
        return self._location(response)

    async def _finish_upload(self, location: str, digest: str) -> None:
        url = httpx.URL(location).copy_merge_params({"digest": digest})
        response = await self.client.request("PUT", str(url), scopes=self.scopes, content=b"")
        self._expect(response)

    async def _upload_bytes(self, data: bytes, digest: str) -> None:
        """A small blob (the config) in one ``PATCH``, then ``PUT``, as dockerd sends it."""
        location = await self._start_upload()
        response = await self.client.request("PATCH", location, scopes=self.scopes, content=data)
        self._expect(response)
        await self._finish_upload(self._location(response), digest)

    def _location(self, response: httpx.Response) -> str:
        """The response's ``Location``, made absolute against the request's URL."""
        location = response.headers.get("location")
        if not location:
            raise RegistryError(
                f"{response.request.method} {response.request.url}: the registry's answer "
                "has no Location"
            )
        return str(response.request.url.join(location))

    def _expect(self, response: httpx.Response) -> None:
        """A registry's refusal as distribution's client words it."""
        if response.is_success:
            return
        text, _ = describe_error_response(
            response.status_code, response.headers.get_list("www-authenticate"), response.content
        )
        raise RegistryError(text)


async def push(
    registries: RegistryService,
    store: ImageStore,
    sources: BlobSources,
    reference: Reference,
    credentials: Credentials,
    settings: PushSettings,
    emit: Emit,
    upstream_agent: str = "",
) -> None:
    """Push ``reference`` (its tag, or all its tags), reporting progress to ``emit``."""
    await emit(progress.status(f"The push refers to repository [{reference.name}]"))
    tags = await asyncio.to_thread(tags_to_push, store, reference)
    client = await registries.connect(reference.domain, credentials, upstream_agent)
    async with client:
        pusher = Pusher(store, client, sources, reference, settings, emit)
        for tag, image in pick_tag(tags, reference):
            await pusher.push_tag(tag, image)
