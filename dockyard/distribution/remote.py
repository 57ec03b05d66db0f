"""One repository on a registry, as pull (and push) see it: manifests and blobs.

:class:`RemoteRepository` wraps a pinged :class:`~.client.RegistryClient` for one repository
name, asking for the scopes it needs. Manifests are read into memory, streamed and cut off at
:data:`MAX_MANIFEST_SIZE` (one that declares more is refused before a byte of it is read), and
checked against the digest they were asked by or the one the registry names; blobs are
streamed, from an offset where the registry honours ``Range``.

Manifests are parsed into :class:`ImageManifest` or :class:`ImageIndex`; anything else (a
schema 1 manifest, an HTML page, an unknown media type) is refused here, before a pull starts
to write anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx

from dockyard.core import mediatypes
from dockyard.core.errors import InvalidParameter, NotFound
from dockyard.core.platforms import PlatformSpec
from dockyard.distribution.client import RegistryClient
from dockyard.distribution.errors import (
    RegistryError,
    describe_error_response,
    request_failed,
    transport_reason,
)
from dockyard.distribution.reference import HEX_ID

#: The most bytes of a manifest read (the CNCF registry's own limit is 4 MiB).
MAX_MANIFEST_SIZE = 8 << 20

#: What a manifest request accepts, as dockerd's six ``Accept`` lines.
MANIFEST_ACCEPT = ", ".join(
    [
        mediatypes.OCI_MANIFEST,
        mediatypes.DOCKER_MANIFEST,
        mediatypes.DOCKER_LIST,
        mediatypes.OCI_INDEX,
        *mediatypes.DOCKER_SCHEMA1[1:],
        "application/json",
    ]
)

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
CONFIG_TYPES = frozenset({mediatypes.OCI_CONFIG, DOCKER_CONFIG})


class ManifestUnknown(NotFound):
    """The registry does not know the manifest (or the repository): dockerd's 404."""


@attrs.frozen
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: PlatformSpec | None = None

    @property
    def short(self) -> str:
        """The 12 hex digits docker shows for a layer."""
        return self.digest.partition(":")[2][:12]


@attrs.frozen
class ImageManifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@attrs.frozen
class ImageIndex:
    media_type: str
    manifests: tuple[Descriptor, ...]


@attrs.frozen
class FetchedManifest:
    """A manifest's bytes as the registry served them, and their digest."""

    data: bytes
    digest: str
    document: ImageManifest | ImageIndex


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(text: Any, what: str) -> str:
    """``text`` if it is a ``sha256:<64 hex>`` digest (the only algorithm we store)."""
    if not isinstance(text, str):
        raise InvalidParameter(f"{what}: digest missing")
    algorithm, _, encoded = text.partition(":")
    if algorithm != "sha256" or not HEX_ID.fullmatch(encoded):
        raise InvalidParameter(f"{what}: unsupported digest {text!r}")
    return text


def _descriptor(raw: Any, what: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise InvalidParameter(f"{what}: not a descriptor")
    size = raw.get("size")
    media_type = raw.get("mediaType")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidParameter(f"{what}: size missing or invalid")
    if not isinstance(media_type, str):
        raise InvalidParameter(f"{what}: mediaType missing")
    platform = None
    if isinstance(raw.get("platform"), dict):
        spec = raw["platform"]
        platform = PlatformSpec(
            str(spec.get("os", "")), str(spec.get("architecture", "")), str(spec.get("variant", ""))
        )
    return Descriptor(media_type, check_digest(raw.get("digest"), what), size, platform)


def parse_manifest(data: bytes, content_type: str) -> ImageManifest | ImageIndex:
    """An image manifest or an index; other documents are refused (``InvalidParameter``)."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        shown = content_type or "no content type"
        raise InvalidParameter(f"the registry's manifest is not JSON ({shown})") from None
    if not isinstance(document, dict):
        raise InvalidParameter("the registry's manifest is not a JSON object")
    media_type = document.get("mediaType") or content_type.split(";")[0].strip()
    if media_type in mediatypes.DOCKER_SCHEMA1 or document.get("schemaVersion") == 1:
        raise InvalidParameter(
            "unsupported manifest media type: Docker Image manifest v2 schema 1 is not supported"
        )
    if media_type not in mediatypes.MANIFEST_TYPES:
        if "manifests" in document and media_type in ("", "application/json"):
            media_type = mediatypes.OCI_INDEX
        elif "config" in document and media_type in ("", "application/json"):
            media_type = mediatypes.OCI_MANIFEST
        else:
            raise InvalidParameter(f"unsupported manifest media type {media_type!r}")
    if media_type in mediatypes.INDEXES:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise InvalidParameter("image index: manifests missing")
        return ImageIndex(
            media_type,
            tuple(_descriptor(e, f"image index entry {i}") for i, e in enumerate(entries)),
        )
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise InvalidParameter("image manifest: layers missing")
    config = _descriptor(document.get("config"), "image manifest config")
    if config.media_type not in CONFIG_TYPES:
        raise InvalidParameter(
            f"unsupported image config media type {config.media_type!r}: not a container image"
        )
    parsed = tuple(_descriptor(layer, f"layer {i}") for i, layer in enumerate(layers))
    for layer in parsed:
        if layer.media_type not in mediatypes.LAYER_COMPRESSION:
            raise InvalidParameter(f"unsupported layer media type {layer.media_type!r}")
    return ImageManifest(media_type, config, parsed)


class RemoteRepository:
    """``name`` (``x/busybox``) on the registry ``client`` talks to."""

    def __init__(self, client: RegistryClient, name: str, actions: str = "pull") -> None:
        self.client = client
        self.name = name
        self.scopes = [f"repository:{name}:{actions}"]

    async def manifest(
        self, reference: str, shown: str, name_in_404: bool = True
    ) -> FetchedManifest:
        """The manifest ``reference`` (a tag or a digest) names; ``shown`` is the image as
        messages name it (``127.0.0.1:5000/x:1``), in a 404's too unless not ``name_in_404``
        (dockerd's distribution inspect passes the registry's words on alone)."""
        path = f"/v2/{self.name}/manifests/{reference}"
        # Streamed, so that a registry sending an endless manifest is cut off at the limit;
        # uncompressed, so that the limit (and a Content-Length) counts the manifest's own
        # bytes. A redirect is followed, as dockerd's client does (credentials stay home).
        headers = {"Accept": MANIFEST_ACCEPT, "Accept-Encoding": "identity"}
        response = await self.client.stream("GET", path, scopes=self.scopes, headers=headers)
        try:
            data = await read_bounded(response, MAX_MANIFEST_SIZE)
        finally:
            await response.aclose()
        if response.status_code == 404:
            reason, _ = describe_error_response(
                404, response.headers.get_list("www-authenticate"), data or b""
            )
            raise ManifestUnknown(
                f"manifest for {shown} not found: {reason}" if name_in_404 else reason
            )
        self._check_status(response, "GET", data or b"")
        if data is None:
            # dockerd 20.10 reads a manifest whole, whatever its size: no words of its to use.
            raise InvalidParameter(f"manifest for {shown} is larger than {MAX_MANIFEST_SIZE} bytes")
        digest = digest_of(data)
        expected = reference if reference.startswith("sha256:") else None
        expected = expected or response.headers.get("docker-content-digest")
        if expected and expected.startswith("sha256:") and expected != digest:
            raise InvalidParameter(
                f"manifest verification failed for {shown}: expected {expected}, "
                f"the registry sent {digest}"
            )
        document = parse_manifest(data, response.headers.get("content-type", ""))
        return FetchedManifest(data, digest, document)

    async def peek(self, reference: str) -> None:
        """``HEAD`` the manifest, as dockerd's distribution inspect starts: a registry that
        wants credentials we lack is refused in that request's words (``Head "..."``); any
        other answer is left for the ``GET`` that follows."""
        await self.client.request(
            "HEAD",
            f"/v2/{self.name}/manifests/{reference}",
            scopes=self.scopes,
            headers={"Accept": MANIFEST_ACCEPT},
        )

    async def blob(self, descriptor: Descriptor) -> bytes:
        """A small blob (a config) whole, its size and digest checked."""
        if descriptor.size > MAX_MANIFEST_SIZE:
            raise InvalidParameter(
                f"blob {descriptor.digest} is larger than {MAX_MANIFEST_SIZE} bytes"
            )
        chunks = []
        received = 0
        async for chunk in self.blob_chunks(descriptor, 0):
            received += len(chunk)
            if received > descriptor.size:
                break  # more than it should be: refused below, without reading it all
            chunks.append(chunk)
        data = b"".join(chunks)
        if len(data) != descriptor.size or digest_of(data) != descriptor.digest:
            raise InvalidParameter(f"blob {descriptor.digest} does not match its digest or size")
        return data

    async def blob_chunks(self, descriptor: Descriptor, offset: int) -> AsyncIterator[bytes]:
        """The blob's bytes from ``offset``; the first item is ``b""`` when the registry
        ignored the range and sends the blob from its start (the caller starts over)."""
        path = f"/v2/{self.name}/blobs/{descriptor.digest}"
        # The blob's own bytes: offsets of a resumed download count them, not a transfer
        # encoding's.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        response = await self.client.stream("GET", path, scopes=self.scopes, headers=headers)
        url = str(response.request.url)
        try:
            if offset and response.status_code == 200:
                yield b""  # the whole blob follows
            elif response.status_code not in (200, 206):
                await response.aread()
                self._check_status(response, "GET")
            kind = response.headers.get("content-type", "")
            if kind.startswith("text/html"):
                raise RegistryError(
                    request_failed("GET", url, "the registry answered an HTML page, not the blob")
                )
            try:
                # Chunks as they arrive: what came before a dropped connection is kept.
                async for chunk in response.aiter_raw():
                    yield chunk
            except (httpx.HTTPError, OSError) as exc:
                reason = transport_reason(exc, httpx.URL(url).netloc.decode())
                raise RegistryError(request_failed("GET", url, reason)) from None
        finally:
            await response.aclose()

    def _check_status(
        self, response: httpx.Response, method: str, body: bytes | None = None
    ) -> None:
        """Raises what a status other than 2xx means; ``body`` when the response was
        streamed (its ``content`` is then not there to read)."""
        if 200 <= response.status_code < 300:
            return
        reason, unauthorized = describe_error_response(
            response.status_code,
            response.headers.get_list("www-authenticate"),
            response.content if body is None else body,
        )
        error = RegistryError(reason)
        if unauthorized:
            error.status_code = 401
        raise error


async def read_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """A streamed response's body, or ``None`` as soon as it is more than ``limit`` bytes:
    one whose ``Content-Length`` says so is not read at all, and one that does not say is
    read no further than the limit (and a chunk)."""
    declared = response.headers.get("content-length", "")
    coded = response.headers.get("content-encoding", "identity").strip().lower()
    if coded in ("", "identity") and declared.isdigit() and int(declared) > limit:
        return None
    chunks = []
    received = 0
    try:
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if received > limit:
                return None
            chunks.append(chunk)
    except (httpx.HTTPError, OSError) as exc:
        url = response.request.url
        raise RegistryError(
            request_failed("GET", str(url), transport_reason(exc, url.netloc.decode()))
        ) from None
    return b"".join(chunks)
