"""The OCI Distribution API as a starlette app over a :class:`~.store.RegistryStore`.

Handlers are async; every backend call runs in a worker thread (``run_in_threadpool``), and
request and response bodies stream through in bounded chunks, hashed as they pass.

:class:`Handlers` answers from the store. Its read paths (``serve_manifest``, ``serve_blob``,
``serve_tags``) run once the caller is authorized, and ``admit`` sees every request first: the
seams :class:`~.proxy.ProxyHandlers` overrides to make the registry a pull-through cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import weakref
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import attrs
import structlog
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from dockyard.core.config import RegistryConfig
from dockyard.core.errors import InvalidParameter, NotFound, RequestTimeout
from dockyard.core.interfaces import Access, AuthProvider
from dockyard.core.mediatypes import INDEXES, OCI_INDEX
from dockyard.registry.errors import RegistryError
from dockyard.registry.gatekeeper import Gatekeeper
from dockyard.registry.manifests import accepts, is_media_type
from dockyard.registry.names import ALGORITHMS, Digest, check_name, is_reference, parse_digest
from dockyard.registry.ratelimit import RateLimiter
from dockyard.registry.store import CHUNK_SIZE, RegistryStore, UploadSession, UploadWriter

if TYPE_CHECKING:
    from dockyard.registry.proxy import PullThroughCache

_log = structlog.get_logger("dockyard.registry")

API_VERSION_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}

#: Most tags or repositories one page holds; a larger ``n`` gets this many and a ``Link``.
MAX_PAGE = 10000

# Routes, tried in order. Names may contain "/", so the fixed suffix decides.
_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?P<name>.+)/blobs/uploads/?"), "uploads"),
    (re.compile(r"(?P<name>.+)/blobs/uploads/(?P<upload_id>[^/]+)"), "upload"),
    (re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)"), "blob"),
    (re.compile(r"(?P<name>.+)/manifests/(?P<reference>[^/]+)"), "manifest"),
    (re.compile(r"(?P<name>.+)/tags/list"), "tags"),
    (re.compile(r"(?P<name>.+)/referrers/(?P<digest>[^/]+)"), "referrers"),
]

_METHODS = {
    "uploads": ("POST",),
    "upload": ("GET", "PATCH", "PUT", "DELETE"),
    "blob": ("GET", "HEAD", "DELETE"),
    "manifest": ("GET", "HEAD", "PUT", "DELETE"),
    "tags": ("GET",),
    "referrers": ("GET",),
}

# ASCII digits only: "\d" would take any script's digits, and str.isdigit() even "²".
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_DIGITS = re.compile(r"[0-9]+")

#: Stands for any number a client sends beyond 64 bits: larger than every size we hold.
_HUGE = 2**64


@attrs.define
class RegistryApp:
    """Shared state of the app: the store, the auth provider, per-upload locks."""

    store: RegistryStore
    gatekeeper: Gatekeeper
    _upload_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = attrs.field(
        factory=weakref.WeakValueDictionary
    )

    def upload_lock(self, upload_id: str) -> asyncio.Lock:
        lock = self._upload_locks.get(upload_id)
        if lock is None:
            lock = asyncio.Lock()
            self._upload_locks[upload_id] = lock
        return lock


def _json_body(document: object) -> bytes:
    # ASCII-escaped: details may quote a client's text, lone surrogates ("\ud800") included,
    # which UTF-8 cannot encode.
    return json.dumps(document).encode()


def _error_response(error: RegistryError, head: bool = False) -> Response:
    headers = {**API_VERSION_HEADERS, **error.headers}
    if head:
        # A HEAD answer has no body; the status says it all.
        return Response(status_code=error.status, headers=headers)
    return Response(
        _json_body(error.to_json()),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )


def _number(digits: str) -> int:
    """A decimal a client sent, of any length (Python refuses to convert over 4300 digits):
    past 64 bits only its hugeness matters."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 20 else _HUGE


def _query_param(request: Request, name: str, code: str = "UNSUPPORTED") -> str | None:
    """The one value of query parameter ``name``; given twice it is ambiguous, so refused."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise RegistryError(
            code,
            status=400,
            message=f"query parameter {name!r} given {len(values)} times; give it once",
            detail={"parameter": name},
        )
    return values[0] if values else None


def _digest_param(request: Request, name: str) -> Digest | None:
    """Query parameter ``name`` as a digest; a bad one is a 400 naming the parameter."""
    text = _query_param(request, name, "DIGEST_INVALID")
    if text is None:
        return None
    try:
        return parse_digest(text)
    except RegistryError as exc:
        raise RegistryError(
            exc.code,
            message=f"query parameter {name!r}: {exc.message}",
            detail={"parameter": name, "value": text[:300]},
        ) from None


def _upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def _range_header(offset: int) -> str:
    # "0-<last byte>"; an empty session reports 0-0 as distribution does.
    return f"0-{max(offset - 1, 0)}"


def _upload_headers(session_name: str, upload_id: str, offset: int) -> dict[str, str]:
    return {
        **API_VERSION_HEADERS,
        "Location": _upload_location(session_name, upload_id),
        "Range": _range_header(offset),
        "Docker-Upload-UUID": upload_id,
    }


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not _DIGITS.fullmatch(value):
        raise RegistryError("SIZE_INVALID", message=f"invalid Content-Length {value[:50]!r}")
    return _number(value)


def _link_header(path: str, params: dict[str, str]) -> str:
    return f'<{path}?{urlencode(params)}>; rel="next"'


def _page_size(request: Request) -> int | None:
    text = _query_param(request, "n")
    if text is None:
        return None
    if not _DIGITS.fullmatch(text):
        raise RegistryError(
            "UNSUPPORTED",
            message="query parameter 'n' must be a non-negative integer",
            status=400,
            detail={"parameter": "n", "value": text[:50]},
        )
    return _number(text)


def _paginate(items: list[str], request: Request, path: str) -> tuple[list[str], dict[str, str]]:
    """One page of sorted ``items`` after ``last``, with a ``Link`` to the next page."""
    size = _page_size(request)
    last = _query_param(request, "last")
    if last is not None:
        items = [item for item in items if item > last]
    headers: dict[str, str] = {}
    if size is None and len(items) <= MAX_PAGE:
        return items, headers
    size = MAX_PAGE if size is None else min(size, MAX_PAGE)
    page = items[:size]
    if size and len(items) > size:
        headers["Link"] = _link_header(path, {"n": str(size), "last": page[-1]})
    return page, headers


class PipelinedWrites:
    """Chunks gathered into buffers of :data:`CHUNK_SIZE`, each appended to an upload by a
    worker thread while the next one is received: the two overlap, since hashing and writing
    release the GIL."""

    def __init__(self, writer: UploadWriter) -> None:
        self.writer = writer
        self._parts: list[bytes] = []
        self._buffered = 0
        self._pending: asyncio.Future[None] | None = None

    async def add(self, chunk: bytes) -> None:
        # Collected, not concatenated: the worker joins them with a single copy.
        self._parts.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= CHUNK_SIZE:
            if self._pending is not None:
                await self._pending
            parts, self._parts, self._buffered = self._parts, [], 0
            self._pending = asyncio.ensure_future(run_in_threadpool(self.writer.write_parts, parts))

    async def flush(self) -> None:
        """Write what is left, and wait for every write."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending
        if self._parts:
            parts, self._parts = self._parts, []
            await run_in_threadpool(self.writer.write_parts, parts)

    async def settle(self) -> None:
        """Wait for a write under way, whatever its outcome: never leave one running behind
        the writer's ``close()``."""
        if self._pending is not None:
            with contextlib.suppress(BaseException):
                await self._pending


class _BodyReader:
    """Feeds a request body to an upload writer in large chunks, off the event loop."""

    def __init__(self, request: Request, writer: UploadWriter, limit: int | None) -> None:
        self.request = request
        self.writer = writer
        self.limit = limit
        self.received = 0

    async def run(self) -> None:
        writes = PipelinedWrites(self.writer)
        try:
            async for chunk in self.request.stream():
                if not chunk:
                    continue
                self.received += len(chunk)
                if self.limit is not None and self.received > self.limit:
                    raise RegistryError(
                        "SIZE_INVALID", message="body is longer than the range it declared"
                    )
                await writes.add(chunk)
            await writes.flush()
        finally:
            await writes.settle()


def _unsatisfiable(size: int) -> RegistryError:
    return RegistryError(
        "SIZE_INVALID",
        message=f"range not satisfiable: the blob has {size} bytes",
        status=416,
        headers={"Content-Range": f"bytes */{size}"},
    )


def blob_headers(digest: Digest) -> dict[str, str]:
    """The headers of every answer about a blob's content."""
    return {
        **API_VERSION_HEADERS,
        "Docker-Content-Digest": str(digest),
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000",
    }


def _parse_blob_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a ``Range`` header asks for; ``None``: serve everything."""
    match = _RANGE.fullmatch(header.strip())
    if not match:
        return None  # multiple ranges or another unit: RFC 9110 lets us ignore it
    first, last = match.groups()
    if not first:
        if not last or _number(last) == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(size - _number(last), 0), size - 1
    start = _number(first)
    end = _number(last) if last else size - 1
    if start >= size or end < start:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


class Handlers:
    """One method per endpoint; each returns a response or raises :class:`RegistryError`."""

    def __init__(self, state: RegistryApp) -> None:
        self.state = state
        self.store = state.store

    # ------------------------------------------------------------------ auth

    async def authorize(self, request: Request, *wanted: Access) -> None:
        await self.state.gatekeeper.check(request, wanted)

    async def admit(self, request: Request) -> None:
        """Called for every request before it is routed: a subclass may refuse it outright
        (the pull-through cache refuses every write)."""

    # ------------------------------------------------------------------ base and catalog

    async def base(self, request: Request) -> Response:
        await self.authorize(request)
        return JSONResponse({}, headers=API_VERSION_HEADERS)

    async def catalog(self, request: Request) -> Response:
        await self.authorize(request, Access("registry", "catalog", ("*",)))
        names = await run_in_threadpool(self.store.repositories)
        page, headers = _paginate(names, request, "/v2/_catalog")
        return JSONResponse({"repositories": page}, headers={**API_VERSION_HEADERS, **headers})

    # ------------------------------------------------------------------ blobs

    async def blob(self, request: Request, name: str, digest_text: str) -> Response:
        digest = parse_digest(digest_text)
        if request.method == "DELETE":
            await self.authorize(request, Access("repository", name, ("delete",)))
            await run_in_threadpool(self.store.unlink_blob, name, digest)
            return Response(status_code=202, headers=API_VERSION_HEADERS)
        await self.authorize(request, Access("repository", name, ("pull",)))
        return await self.serve_blob(request, name, digest)

    async def serve_blob(self, request: Request, name: str, digest: Digest) -> Response:
        """``GET`` or ``HEAD`` of a blob the caller may pull, from the store."""
        size = await run_in_threadpool(self.store.repository_blob_size, name, digest)
        headers = blob_headers(digest)
        if request.method == "HEAD":
            return Response(status_code=200, headers={**headers, "Content-Length": str(size)})
        redirect = await run_in_threadpool(self.store.blob_redirect, digest)
        if redirect:
            return Response(
                status_code=307,
                headers={
                    **API_VERSION_HEADERS,
                    "Location": redirect,
                    "Docker-Content-Digest": str(digest),
                },
            )
        wanted = request.headers.get("range")
        span = _parse_blob_range(wanted, size) if wanted else None
        if span is None:
            chunks = await self._open_blob(digest, 0, None)
            return StreamingResponse(
                iterate_in_threadpool(chunks), headers={**headers, "Content-Length": str(size)}
            )
        start, end = span
        chunks = await self._open_blob(digest, start, end - start + 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        return StreamingResponse(iterate_in_threadpool(chunks), status_code=206, headers=headers)

    async def _open_blob(self, digest: Digest, offset: int, length: int | None) -> Iterator[bytes]:
        try:
            return await run_in_threadpool(self.store.read_blob, digest, offset, length)
        except NotFound:
            # Deleted (by a gc, say) between the size check and now.
            raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None

    # ------------------------------------------------------------------ uploads

    async def start_upload(self, request: Request, name: str) -> Response:
        target = Access("repository", name, ("pull", "push"))
        mount = _digest_param(request, "mount")
        source = _query_param(request, "from", "NAME_INVALID")
        source_pull = None
        if mount is not None and source is not None:
            check_name(source)
            source_pull = Access("repository", source, ("pull",))
        # A challenge for a mount names its source too, so that one token covers both.
        caller = await self.state.gatekeeper.check(
            request, [target], also_challenge=[source_pull] if source_pull else []
        )
        if mount is not None:
            # Without "from" any blob could be mounted by digest: only when nobody checks
            # access. A source the caller may not pull gets a plain upload, as the spec allows.
            if source_pull is None:
                may_read = self.state.gatekeeper.provider is None
            else:
                may_read = await self.state.gatekeeper.permits(caller, [source_pull])
            if may_read and await run_in_threadpool(self.store.mount_blob, name, source, mount):
                return self._blob_created(name, mount)
        algorithm = _query_param(request, "digest-algorithm", "DIGEST_INVALID") or "sha256"
        if algorithm not in ALGORITHMS:
            raise RegistryError(
                "DIGEST_INVALID",
                message=f"unsupported digest algorithm {algorithm[:50]!r}",
                detail={"parameter": "digest-algorithm", "supported": sorted(ALGORITHMS)},
            )
        expected = _digest_param(request, "digest")
        length = _content_length(request)
        limit = self.store.limits.max_blob_size
        if limit and length is not None and length > limit:
            raise RegistryError(
                "SIZE_INVALID",
                status=413,
                message=f"blob exceeds the registry's limit of {limit} bytes",
            )
        session = await run_in_threadpool(
            self.store.start_upload, name, expected.algorithm if expected else algorithm
        )
        if expected is None:
            return Response(status_code=202, headers=_upload_headers(name, session.upload_id, 0))
        # Monolithic push in one POST: the session lives only for this request.
        try:
            await self._receive(request, session, None)
            session = await run_in_threadpool(self.store.upload_session, name, session.upload_id)
            await run_in_threadpool(self.store.finish_upload, session, expected)
        except BaseException:
            await run_in_threadpool(self.store.delete_upload, name, session.upload_id)
            raise
        return self._blob_created(name, expected)

    def _blob_created(self, name: str, digest: Digest) -> Response:
        return Response(
            status_code=201,
            headers={
                **API_VERSION_HEADERS,
                "Location": f"/v2/{name}/blobs/{digest}",
                "Docker-Content-Digest": str(digest),
            },
        )

    async def _receive(self, request: Request, session: UploadSession, limit: int | None) -> int:
        """Append the request body to ``session``; return the new offset."""
        writer = await run_in_threadpool(self.store.open_upload, session)
        try:
            await _BodyReader(request, writer, limit).run()
        except ClientDisconnect:
            writer.failed = True
            raise
        finally:
            await run_in_threadpool(writer.close)
        return writer.offset

    def _check_content_range(self, request: Request, session: UploadSession) -> int | None:
        """Validate ``Content-Range`` against the session; return the declared length."""
        header = request.headers.get("content-range")
        length = _content_length(request)
        if header is None:
            return length
        match = _CONTENT_RANGE.fullmatch(header.strip())
        if not match:
            raise RegistryError(
                "BLOB_UPLOAD_INVALID",
                message=f"invalid Content-Range {header[:80]!r}: expected <start>-<end>",
            )
        start, end = _number(match.group(1)), _number(match.group(2))
        if start != session.offset or end < start:
            raise RegistryError(
                "BLOB_UPLOAD_INVALID",
                message=f"chunk out of order: the upload has {session.offset} bytes, the chunk "
                f"covers {start}-{end}",
                status=416,
                headers=_upload_headers(session.name, session.upload_id, session.offset),
            )
        declared = end - start + 1
        if length is not None and length != declared:
            raise RegistryError(
                "SIZE_INVALID",
                message=f"Content-Length {length} does not match Content-Range {header[:80]}",
            )
        return declared

    async def upload(self, request: Request, name: str, upload_id: str) -> Response:
        method = request.method
        action = ("pull",) if method == "GET" else ("pull", "push")
        await self.authorize(request, Access("repository", name, action))
        async with self.state.upload_lock(upload_id):
            session = await run_in_threadpool(self.store.upload_session, name, upload_id)
            if method == "GET":
                return Response(
                    status_code=204, headers=_upload_headers(name, upload_id, session.offset)
                )
            if method == "DELETE":
                await run_in_threadpool(self.store.delete_upload, name, upload_id)
                return Response(status_code=204, headers=API_VERSION_HEADERS)
            expected = None
            if method == "PUT":
                expected = _digest_param(request, "digest")
                if expected is None:
                    raise RegistryError("DIGEST_INVALID", message="PUT needs ?digest=")
            declared = self._check_content_range(request, session)
            limit = self.store.limits.max_blob_size
            if limit and declared is not None and session.offset + declared > limit:
                raise RegistryError(
                    "SIZE_INVALID",
                    status=413,
                    message=f"blob exceeds the registry's limit of {limit} bytes",
                )
            has_body = declared != 0 and (
                declared is not None or "chunked" in request.headers.get("transfer-encoding", "")
            )
            if has_body:
                try:
                    offset = await self._receive(request, session, declared)
                except RegistryError as error:
                    if error.status == 413:
                        # This blob can never fit: drop the session rather than keep a part.
                        await run_in_threadpool(self.store.delete_upload, name, upload_id)
                    raise
                session = attrs.evolve(session, offset=offset)
            if expected is None:
                return Response(
                    status_code=202, headers=_upload_headers(name, upload_id, session.offset)
                )
            await run_in_threadpool(self.store.finish_upload, session, expected)
            return self._blob_created(name, expected)

    # ------------------------------------------------------------------ manifests

    async def manifest(self, request: Request, name: str, reference: str) -> Response:
        method = request.method
        if method == "PUT":
            return await self.put_manifest(request, name, reference)
        if method == "DELETE":
            await self.authorize(request, Access("repository", name, ("delete",)))
            await run_in_threadpool(self.store.delete_manifest, name, reference)
            return Response(status_code=202, headers=API_VERSION_HEADERS)
        await self.authorize(request, Access("repository", name, ("pull",)))
        if not is_reference(reference):
            # Nothing can be stored under it, so it names no manifest: 404 (as the CNCF
            # registry answers, and conformance suites expect), not a 400 for its syntax.
            raise RegistryError(
                "MANIFEST_UNKNOWN",
                message="manifest unknown: the reference is neither a tag nor a digest",
                detail={"name": name, "reference": reference[:300]},
            )
        return await self.serve_manifest(request, name, reference)

    async def serve_manifest(self, request: Request, name: str, reference: str) -> Response:
        """``GET`` or ``HEAD`` of a manifest the caller may pull, from the store."""
        record, body = await run_in_threadpool(self.store.get_manifest, name, reference)
        accept = ", ".join(request.headers.getlist("accept"))
        if record.media_type in INDEXES and not accepts(accept, record.media_type):
            # An old client that knows no indexes: distribution's answer is "not found".
            raise RegistryError(
                "MANIFEST_UNKNOWN",
                message=f"{record.media_type} found, but the Accept header does not allow it",
                detail={"mediaType": record.media_type},
            )
        headers = {
            **API_VERSION_HEADERS,
            "Content-Type": record.media_type,
            "Docker-Content-Digest": str(record.digest),
            "ETag": f'"{record.digest}"',
            "Content-Length": str(len(body)),
        }
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        return Response(body, status_code=200, headers=headers)

    async def put_manifest(self, request: Request, name: str, reference: str) -> Response:
        await self.authorize(request, Access("repository", name, ("pull", "push")))
        limit = self.store.limits.max_manifest_size
        length = _content_length(request)
        too_big = RegistryError(
            "SIZE_INVALID", status=413, message=f"manifest exceeds the limit of {limit} bytes"
        )
        if length is not None and length > limit:
            raise too_big
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_big
        extra_tags = request.query_params.getlist("tag")
        result = await run_in_threadpool(
            self.store.put_manifest,
            name,
            reference,
            bytes(body),
            request.headers.get("content-type", ""),
            extra_tags,
        )
        headers = {
            **API_VERSION_HEADERS,
            "Location": f"/v2/{name}/manifests/{result.digest}",
            "Docker-Content-Digest": str(result.digest),
        }
        if result.info.subject is not None:
            headers["OCI-Subject"] = str(result.info.subject.digest)
        response = Response(status_code=201, headers=headers)
        for tag in extra_tags:
            response.headers.append("OCI-Tag", tag)
        return response

    # ------------------------------------------------------------------ discovery

    async def tags(self, request: Request, name: str) -> Response:
        await self.authorize(request, Access("repository", name, ("pull",)))
        return await self.serve_tags(request, name)

    async def serve_tags(self, request: Request, name: str) -> Response:
        """The tags of a repository the caller may pull, from the store."""

        def load() -> list[str] | None:
            if not self.store.repository_exists(name):
                return None
            return self.store.tags(name)

        tags = await run_in_threadpool(load)
        if tags is None:
            raise RegistryError("NAME_UNKNOWN", detail={"name": name})
        page, headers = _paginate(tags, request, f"/v2/{name}/tags/list")
        return JSONResponse(
            {"name": name, "tags": page}, headers={**API_VERSION_HEADERS, **headers}
        )

    async def referrers(self, request: Request, name: str, digest_text: str) -> Response:
        subject = parse_digest(digest_text)
        await self.authorize(request, Access("repository", name, ("pull",)))
        descriptors = await run_in_threadpool(self.store.referrers, name, subject)
        headers = dict(API_VERSION_HEADERS)
        wanted = request.query_params.getlist("artifactType")
        for artifact_type in wanted:
            if not is_media_type(artifact_type):
                raise RegistryError(
                    "UNSUPPORTED",
                    status=400,
                    message="query parameter 'artifactType' must be a media type",
                    detail={"parameter": "artifactType", "value": artifact_type[:300]},
                )
        if wanted:
            descriptors = [d for d in descriptors if d.get("artifactType") in wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        return Response(_json_body(body), media_type=OCI_INDEX, headers=headers)


async def _dispatch(handlers: Handlers, request: Request) -> Response:
    await handlers.admit(request)
    path = request.url.path
    if path in ("/v2", "/v2/"):
        if request.method not in ("GET", "HEAD"):
            raise RegistryError("UNSUPPORTED", message=f"{request.method} not allowed here")
        return await handlers.base(request)
    rest = path[len("/v2/") :]
    if rest == "_catalog":
        if request.method != "GET":
            raise RegistryError("UNSUPPORTED", message=f"{request.method} not allowed here")
        return await handlers.catalog(request)
    for pattern, endpoint in _ROUTES:
        match = pattern.fullmatch(rest)
        if match is None:
            continue
        if request.method not in _METHODS[endpoint]:
            raise RegistryError(
                "UNSUPPORTED",
                message=f"{request.method} is not allowed on this endpoint",
                headers={"Allow": ", ".join(_METHODS[endpoint])},
            )
        params = match.groupdict()
        name = check_name(params.pop("name"))
        if endpoint == "uploads":
            return await handlers.start_upload(request, name)
        if endpoint == "upload":
            return await handlers.upload(request, name, params["upload_id"])
        if endpoint == "blob":
            return await handlers.blob(request, name, params["digest"])
        if endpoint == "manifest":
            return await handlers.manifest(request, name, params["reference"])
        if endpoint == "tags":
            return await handlers.tags(request, name)
        return await handlers.referrers(request, name, params["digest"])
    raise RegistryError("UNSUPPORTED", message=f"no such endpoint: {path[:200]}", status=404)


def create_registry_app(
    store: RegistryStore,
    auth: AuthProvider | None = None,
    extra_routes: list[BaseRoute] | None = None,
    failures: RateLimiter | None = None,
    auth_nonblocking: bool = False,
    proxy: PullThroughCache | None = None,
) -> Starlette:
    """The registry's ASGI app; ``extra_routes`` (the token endpoint, plugins') come after.

    With ``proxy`` the registry is a pull-through cache of a remote registry: its handlers
    are :class:`~.proxy.ProxyHandlers`, which fill the store from the remote and refuse writes.

    ``failures`` limits failed logins per address and user; pass the token endpoint's limiter
    so that guesses count the same wherever they are made. ``auth_nonblocking``: the provider
    declared the ``nonblocking`` capability (see :mod:`.gatekeeper`).
    """
    if failures is None:
        failures = RateLimiter.minutely(RegistryConfig().auth_failures_per_minute)
    state = RegistryApp(store, Gatekeeper(auth, failures, auth_nonblocking))
    handlers = Handlers(state) if proxy is None else proxy.handlers(state)

    async def endpoint(request: Request) -> Response:
        try:
            return await handlers_call(request)
        except RegistryError as error:
            return _error_response(error, head=request.method == "HEAD")
        except InvalidParameter as exc:
            # A backend refusing a path it cannot hold (too long for its storage): the name
            # or reference the client chose is what must change.
            refusal = RegistryError("NAME_INVALID", message=exc.message)
            return _error_response(refusal, head=request.method == "HEAD")
        except ClientDisconnect:
            return Response(status_code=400)
        except RequestTimeout as exc:
            # The client stopped sending the body (see core.server's read timeouts): no spec
            # code fits; the CNCF registry's catch-all with the status that says what happened.
            stalled = RegistryError("UNKNOWN", message=exc.message, status=408)
            return _error_response(stalled, head=request.method == "HEAD")
        except Exception as exc:
            _log.exception("unexpected error", error=repr(exc), path=request.url.path)
            return Response(
                _json_body({"errors": [{"code": "UNKNOWN", "message": f"internal error: {exc}"}]}),
                status_code=500,
                headers=API_VERSION_HEADERS,
                media_type="application/json",
            )

    def handlers_call(r: Request) -> Awaitable[Response]:
        return _dispatch(handlers, r)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    routes: list[BaseRoute] = [
        Route("/v2", endpoint, methods=methods),
        Route("/v2/{rest:path}", endpoint, methods=methods),
        *(extra_routes or []),
    ]

    async def routing_error(request: Request, exc: Exception) -> Response:
        # Starlette's own 404 (a path outside /v2) and 405 (a method no route takes, such as
        # OPTIONS), answered in the spec's error form like everything else.
        assert isinstance(exc, HTTPException)
        what = "no such endpoint" if exc.status_code == 404 else f"{request.method} not allowed"
        error = RegistryError(
            "UNSUPPORTED", message=what, status=exc.status_code, headers=dict(exc.headers or {})
        )
        return _error_response(error, head=request.method == "HEAD")

    app = Starlette(routes=routes, exception_handlers={404: routing_error, 405: routing_error})
    app.state.registry = handlers.state
    return app
