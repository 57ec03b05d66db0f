"""The registry as a pull-through cache of a remote registry (``[registry] proxy = {...}``).

Clients pull from us what the remote registry holds; we keep a copy in the store and serve it
from there afterwards. What each endpoint does:

* **manifest by digest**: from the store if present; else fetched from the remote, its digest
  checked, stored (before its blobs: they come when a client asks for them), then served;
* **manifest by tag**: from the store while the tag was checked at the remote less than
  ``tag-ttl`` seconds ago; else the remote is asked again (``HEAD``, then ``GET`` only when the
  digest moved) and the tag follows it. A remote that cannot be reached leaves a stale tag in
  service (with a warning), as the CNCF registry's proxy does; a remote 404 is a 404;
* **blob** ``GET``: from the store if present; else *one* fetch per digest at a time, an
  asyncio task of its own (:class:`BlobFetch`) that writes the bytes through the store's upload
  path (the digest is checked before the blob is committed) while handing them to the client
  that started it as they arrive. A client asking for the same blob meanwhile waits for that
  fetch to end and is served from the store; a client that goes away does not stop the fetch.
  A fetch whose bytes do not match the digest (or the size the remote announced) stores nothing
  and cuts the streaming client's connection before its last bytes; the next request retries;
* **blob** ``HEAD``: from the store, else from a remote ``HEAD`` (nothing is fetched);
* **tags/list**: the remote's list; the store's when the remote cannot be reached;
* the catalog and referrers: the store's;
* every ``POST``, ``PUT``, ``PATCH`` and ``DELETE`` under ``/v2/``: 405 ``UNSUPPORTED``.

The registry's own auth still applies to its clients; the remote is reached with the
configured credentials (token flow or Basic, as its challenge asks) through the shared
:class:`~dockyard.distribution.client.RegistryClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import ssl
import time
import weakref
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import attrs
import httpx
import structlog
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from dockyard.core.config import ProxyConfig
from dockyard.core.errors import ConfigError
from dockyard.distribution import errors as remote_errors
from dockyard.distribution.client import RegistryClient
from dockyard.distribution.credentials import Credentials
from dockyard.distribution.endpoints import Endpoint
from dockyard.distribution.reference import is_domain
from dockyard.distribution.remote import MANIFEST_ACCEPT, MAX_MANIFEST_SIZE, read_bounded
from dockyard.distribution.tokens import TokenCache
from dockyard.registry.app import (
    API_VERSION_HEADERS,
    Handlers,
    PipelinedWrites,
    RegistryApp,
    blob_headers,
)
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import Digest, check_tag, parse_digest
from dockyard.registry.store import ManifestRecord, RegistryStore

_log = structlog.get_logger("dockyard.registry.proxy")

#: The methods that change a registry: a cache refuses them all.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def remote_endpoint(config: ProxyConfig) -> Endpoint:
    """Where the remote is, from ``remote-url``; a URL we cannot use is a start-up error."""
    key = "[registry] proxy.remote-url"
    try:
        parts = urlsplit(config.remote_url)
        parts.port  # noqa: B018 -- a port that is not a number raises here
    except ValueError as exc:
        raise ConfigError(f"{key}: {config.remote_url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{key}: {config.remote_url!r} must start with http:// or https://")
    if not is_domain(parts.netloc) or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"{key}: {config.remote_url!r} must be http(s)://HOST[:PORT], without a path, "
            "a query or credentials (give those as username and password)"
        )
    if config.tag_ttl < 0:
        raise ConfigError(f"[registry] proxy.tag-ttl must be 0 or more, not {config.tag_ttl}")
    # https is checked against the system's CAs; plain http only when the operator wrote it.
    return Endpoint(parts.scheme, parts.netloc.lower(), verify=parts.scheme == "https")


class RemoteNotFound(Exception):
    """The remote answered 404."""


class RemoteUnavailable(Exception):
    """The remote could not be reached, or failed (a 5xx, refused credentials...)."""


def _bad_gateway(exc: BaseException) -> RegistryError:
    return RegistryError("UNKNOWN", status=502, message=f"the remote registry failed: {exc}")


class Remote:
    """The remote registry, as the cache's one client of it."""

    def __init__(self, config: ProxyConfig) -> None:
        self.endpoint = remote_endpoint(config)
        self.credentials = Credentials(config.username, config.password)
        self.tokens = TokenCache()
        self._client: RegistryClient | None = None
        self._pinged = False
        self._ping_lock = asyncio.Lock()

    async def client(self) -> RegistryClient:
        """The client, pinged once (again after a ping that failed)."""
        async with self._ping_lock:
            if self._client is None:
                tls = ssl.create_default_context() if self.endpoint.scheme == "https" else None
                self._client = RegistryClient(
                    self.endpoint, self.credentials, self.tokens, tls=tls, user_agent="dockyard"
                )
            if not self._pinged:
                try:
                    await self._client.ping()
                except remote_errors.RegistryError as exc:
                    raise RemoteUnavailable(str(exc)) from None
                self._pinged = True
            return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.http.aclose()

    async def send(
        self, method: str, name: str, path: str, headers: dict[str, str], stream: bool = False
    ) -> httpx.Response:
        """``method`` on ``/v2/{name}/{path}`` with pull rights on ``name``; a 2xx answer or
        :class:`RemoteNotFound` or :class:`RemoteUnavailable`."""
        url = f"/v2/{name}/{path}"
        response = await self._send(method, name, url, headers, stream)
        if response.status_code == 401:
            # Its challenges may have changed since the ping (auth turned on, another token
            # server): learn them again, and try once more.
            if stream:
                await response.aclose()
            self._pinged = False
            response = await self._send(method, name, url, headers, stream)
        if 200 <= response.status_code < 300:
            return response
        if stream:
            await response.aclose()
        if response.status_code == 404:
            raise RemoteNotFound()
        raise RemoteUnavailable(f"{method} {url}: the remote answered {response.status_code}")

    async def _send(
        self, method: str, name: str, url: str, headers: dict[str, str], stream: bool
    ) -> httpx.Response:
        client = await self.client()
        scopes = [f"repository:{name}:pull"]
        try:
            if stream:
                return await client.stream(method, url, scopes=scopes, headers=headers)
            return await client.request(method, url, scopes=scopes, headers=headers)
        except remote_errors.RegistryError as exc:
            raise RemoteUnavailable(str(exc)) from None

    async def manifest_digest(self, name: str, reference: str) -> str | None:
        """What ``HEAD`` of the manifest names as its digest (``None``: no header)."""
        response = await self.send("HEAD", name, f"manifests/{reference}", _MANIFEST_HEADERS)
        return response.headers.get("docker-content-digest")

    async def manifest(self, name: str, reference: str) -> tuple[bytes, str, str | None]:
        """The manifest's bytes, its content type and the digest the remote names. Streamed,
        so that a remote sending an endless one is cut off at the limit."""
        response = await self.send(
            "GET",
            name,
            f"manifests/{reference}",
            {**_MANIFEST_HEADERS, "Accept-Encoding": "identity"},
            stream=True,
        )
        try:
            data = await read_bounded(response, MAX_MANIFEST_SIZE)
        except remote_errors.RegistryError as exc:
            raise RemoteUnavailable(str(exc)) from None
        finally:
            await response.aclose()
        if data is None:
            raise RemoteUnavailable(f"the manifest is larger than {MAX_MANIFEST_SIZE} bytes")
        return (
            data,
            response.headers.get("content-type", ""),
            response.headers.get("docker-content-digest"),
        )


_MANIFEST_HEADERS = {"Accept": MANIFEST_ACCEPT}


#: How far (in bytes) the client streaming a fetch may fall behind the remote before it is
#: switched to reading the rest from the store once the fetch is done: the fetch never waits
#: for a client, and no client makes the registry hold a large blob in memory.
MAX_BEHIND = 32 * 1024 * 1024


class _FellBehind:
    """Put on a subscriber's queue instead of the chunks it can no longer keep up with."""


_FELL_BEHIND = _FellBehind()

_Item = bytes | BaseException | _FellBehind | None


@attrs.define
class Subscriber:
    """A client streaming a fetch: its queue of chunks and how much of them it has not read."""

    queue: asyncio.Queue[_Item] = attrs.field(factory=asyncio.Queue)
    queued: int = 0
    behind: bool = False


class BlobFetch:
    """One blob on its way from the remote into the store, run as a task of its own.

    Subscribers (the client that started the fetch) get the chunks as they arrive. The fetch
    never waits for a client: one that falls :data:`MAX_BEHIND` bytes behind gets the rest from
    the store once the blob is in it. The last chunk is held back until the digest is checked,
    so that a client never receives a whole blob that does not match it.
    """

    def __init__(self, store: RegistryStore, remote: Remote, name: str, digest: Digest) -> None:
        self.store = store
        self.remote = remote
        self.name = name
        self.digest = digest
        #: The size the remote announced, once :attr:`answered` is set (``None``: it did not).
        self.size: int | None = None
        self.answered = asyncio.Event()
        self.finished = asyncio.Event()
        self.error: BaseException | None = None
        self._subscribers: list[Subscriber] = []

    def subscribe(self) -> Subscriber:
        """A subscriber to the chunks to come: call before the task runs to see them all."""
        subscriber = Subscriber()
        self._subscribers.append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(subscriber)

    def _publish(self, item: bytes | BaseException | None) -> None:
        for subscriber in self._subscribers:
            if subscriber.behind:
                continue  # it waits for the fetch to finish, whatever the end
            if isinstance(item, bytes):
                if subscriber.queued + len(item) > MAX_BEHIND:
                    subscriber.behind = True
                    subscriber.queue.put_nowait(_FELL_BEHIND)
                    continue
                subscriber.queued += len(item)
            subscriber.queue.put_nowait(item)

    async def chunks(self, subscriber: Subscriber) -> AsyncIterator[bytes]:
        """The subscriber's chunks; the fetch's failure ends them with an error, which cuts
        the connection of a response already under way."""
        sent = 0
        try:
            while (item := await subscriber.queue.get()) is not None:
                if isinstance(item, _FellBehind):
                    await self.wait()
                    rest = await run_in_threadpool(self.store.read_blob, self.digest, sent, None)
                    async for chunk in iterate_in_threadpool(rest):
                        yield chunk
                    return
                if isinstance(item, BaseException):
                    raise item
                subscriber.queued -= len(item)
                sent += len(item)
                yield item
        finally:
            self.unsubscribe(subscriber)

    async def wait(self) -> None:
        """Until the blob is in the store; the fetch's failure as a registry error."""
        await self.finished.wait()
        if self.error is not None:
            raise self._as_registry_error(self.error)

    async def answer(self) -> int | None:
        """The size the remote announced, once it answered; its failure as a registry error."""
        await self.answered.wait()
        if self.error is not None:
            raise self._as_registry_error(self.error)
        return self.size

    def _as_registry_error(self, error: BaseException) -> RegistryError:
        # Whatever else went wrong (a digest that does not match, too big a blob) is the
        # remote's doing, not the client's: a 502, never a 4xx.
        if isinstance(error, RemoteNotFound):
            return RegistryError("BLOB_UNKNOWN", detail={"digest": str(self.digest)})
        return _bad_gateway(error)

    async def run(self) -> None:
        try:
            await self._fetch()
        except BaseException as exc:
            self.error = exc if isinstance(exc, Exception) else RemoteUnavailable("cancelled")
            _log.warning(
                "blob fetch from the remote failed",
                name=self.name,
                digest=str(self.digest),
                error=str(exc) or type(exc).__name__,
            )
            self._publish(self.error)
            if not isinstance(exc, Exception):
                raise
        else:
            self._publish(None)
        finally:
            self.answered.set()
            self.finished.set()

    async def _fetch(self) -> None:
        response = await self.remote.send(
            "GET", self.name, f"blobs/{self.digest}", {"Accept-Encoding": "identity"}, stream=True
        )
        try:
            length = response.headers.get("content-length")
            # ASCII digits only (str.isdigit() takes "²").
            self.size = int(length) if length and re.fullmatch("[0-9]{1,20}", length) else None
            if response.headers.get("content-type", "").startswith("text/html"):
                raise RemoteUnavailable("the remote answered an HTML page, not the blob")
            self.answered.set()
            await self._store(response)
        finally:
            await response.aclose()

    async def _store(self, response: httpx.Response) -> None:
        store = self.store
        session = await run_in_threadpool(store.start_upload, self.name, self.digest.algorithm)
        try:
            writer = await run_in_threadpool(store.open_upload, session)
            writes = PipelinedWrites(writer)
            held = b""
            received = 0
            try:
                async for chunk in _raw_chunks(response):
                    received += len(chunk)
                    if self.size is not None and received > self.size:
                        raise RemoteUnavailable(
                            f"the blob is longer than the {self.size} bytes announced"
                        )
                    if held:
                        self._publish(held)
                    held = chunk
                    await writes.add(chunk)
                await writes.flush()
            except BaseException:
                writer.failed = True
                await writes.settle()
                raise
            finally:
                await run_in_threadpool(writer.close)
            if self.size is not None and received != self.size:
                raise RemoteUnavailable(
                    f"the blob ended after {received} of the {self.size} bytes announced"
                )
            session = await run_in_threadpool(store.upload_session, self.name, session.upload_id)
            try:
                await run_in_threadpool(store.finish_upload, session, self.digest)
            except RegistryError as exc:
                if exc.code != "DIGEST_INVALID":
                    raise
                raise RemoteUnavailable(
                    f"the blob the remote sent does not match its digest {self.digest}"
                ) from None
        except BaseException:
            await run_in_threadpool(store.delete_upload, self.name, session.upload_id)
            raise
        if held:
            self._publish(held)


async def _raw_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            if chunk:
                yield chunk
    except (httpx.HTTPError, OSError) as exc:
        raise RemoteUnavailable(f"reading the blob: {exc}") from None


class PullThroughCache:
    """The cache's state: the remote, when each tag was last checked, the fetches under way."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.remote = Remote(config)
        self.tag_ttl = config.tag_ttl
        self._checked: dict[tuple[str, str], float] = {}
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._fetches: dict[Digest, BlobFetch] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def handlers(self, state: RegistryApp) -> ProxyHandlers:
        return ProxyHandlers(state, self)

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    # ------------------------------------------------------------------ manifests

    async def update_manifest(self, store: RegistryStore, name: str, reference: str) -> None:
        """Make the store hold what ``reference`` names at the remote (within the TTL)."""
        if ":" in reference:
            await self._manifest_by_digest(store, name, parse_digest(reference))
        else:
            await self._manifest_by_tag(store, name, check_tag(reference))

    async def _manifest_by_digest(self, store: RegistryStore, name: str, digest: Digest) -> None:
        if await run_in_threadpool(_local_manifest, store, name, str(digest)):
            return
        async with self._lock((name, str(digest))):
            if await run_in_threadpool(_local_manifest, store, name, str(digest)):
                return
            try:
                data, content_type, _ = await self.remote.manifest(name, str(digest))
            except RemoteNotFound:
                raise RegistryError(
                    "MANIFEST_UNKNOWN", detail={"name": name, "reference": str(digest)}
                ) from None
            except RemoteUnavailable as exc:
                raise _bad_gateway(exc) from None
            await self._store_manifest(store, name, str(digest), data, content_type, digest)

    async def _manifest_by_tag(self, store: RegistryStore, name: str, tag: str) -> None:
        key = (name, tag)
        async with self._lock(key):
            local = await run_in_threadpool(_local_manifest, store, name, tag)
            if (
                local is not None
                and time.monotonic() - self._checked.get(key, -math.inf) < self.tag_ttl
            ):
                return
            try:
                named = await self.remote.manifest_digest(name, tag)
                if local is None or named is None or named != str(local.digest):
                    data, content_type, named = await self.remote.manifest(name, tag)
                    expected = _remote_digest(named) if named else None
                    await self._store_manifest(store, name, tag, data, content_type, expected)
            except RemoteNotFound:
                self._checked.pop(key, None)
                raise RegistryError(
                    "MANIFEST_UNKNOWN", detail={"name": name, "reference": tag}
                ) from None
            except RemoteUnavailable as exc:
                if local is None:
                    raise _bad_gateway(exc) from None
                _log.warning(
                    "the remote registry failed: serving the tag as last seen",
                    name=name,
                    tag=tag,
                    digest=str(local.digest),
                    error=str(exc),
                )
                return
            self._checked[key] = time.monotonic()

    async def _store_manifest(
        self,
        store: RegistryStore,
        name: str,
        reference: str,
        data: bytes,
        content_type: str,
        expected: Digest | None,
    ) -> None:
        if expected is not None and Digest.of(data, expected.algorithm) != expected:
            raise _bad_gateway(
                RemoteUnavailable(
                    f"the manifest for {reference} does not match its digest {expected}"
                )
            )
        try:
            await run_in_threadpool(
                store.put_manifest, name, reference, data, content_type, [], check_references=False
            )
        except RegistryError as exc:
            # A manifest we would refuse from a client (not JSON, schema 1, an unknown media
            # type): the remote's fault, not the client's.
            raise _bad_gateway(
                RemoteUnavailable(f"its manifest for {reference} cannot be kept: {exc.message}")
            ) from None

    # ------------------------------------------------------------------ blobs

    def blob_fetch(self, store: RegistryStore, name: str, digest: Digest) -> tuple[BlobFetch, bool]:
        """The fetch of ``digest`` under way (for any repository), or a new one for ``name``
        (then ``True``), not yet running: subscribe to it before the caller next awaits."""
        key = digest
        fetch = self._fetches.get(key)
        if fetch is not None:
            return fetch, False
        fetch = BlobFetch(store, self.remote, name, digest)
        self._fetches[key] = fetch
        task = asyncio.create_task(fetch.run())
        self._tasks.add(task)

        def forget(_: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if self._fetches.get(key) is fetch:
                del self._fetches[key]

        task.add_done_callback(forget)
        return fetch, True


def _remote_digest(text: str) -> Digest:
    try:
        return parse_digest(text)
    except RegistryError:
        raise _bad_gateway(
            RemoteUnavailable(f"it named a digest we cannot check: {text[:100]!r}")
        ) from None


def _local_manifest(store: RegistryStore, name: str, reference: str) -> ManifestRecord | None:
    try:
        return store.resolve(name, reference)
    except RegistryError as exc:
        if exc.code == "MANIFEST_UNKNOWN":
            return None
        raise


class ProxyHandlers(Handlers):
    """The registry's handlers over a :class:`PullThroughCache`: reads fill the store from the
    remote first, writes are refused."""

    def __init__(self, state: RegistryApp, cache: PullThroughCache) -> None:
        super().__init__(state)
        self.cache = cache

    async def admit(self, request: Request) -> None:
        if request.method in WRITE_METHODS and request.url.path.startswith("/v2"):
            raise RegistryError(
                "UNSUPPORTED",
                message="this registry is a pull-through cache: pushes and deletes are refused",
            )

    async def serve_manifest(self, request: Request, name: str, reference: str) -> Response:
        await self.cache.update_manifest(self.store, name, reference)
        return await super().serve_manifest(request, name, reference)

    async def serve_blob(self, request: Request, name: str, digest: Digest) -> Response:
        if await self._have_blob(name, digest):
            return await super().serve_blob(request, name, digest)
        if request.method == "HEAD":
            try:
                response = await self.cache.remote.send("HEAD", name, f"blobs/{digest}", {})
            except RemoteNotFound:
                raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)}) from None
            except RemoteUnavailable as exc:
                raise _bad_gateway(exc) from None
            headers = blob_headers(digest)
            if "content-length" in response.headers:
                headers["Content-Length"] = response.headers["content-length"]
            return Response(status_code=200, headers=headers)
        fetch, started = self.cache.blob_fetch(self.store, name, digest)
        if not started or request.headers.get("range"):
            # Another client's fetch (or a part of the blob): served from the store once whole.
            await fetch.wait()
            if fetch.name != name and not await self._have_blob(name, digest):
                raise RegistryError("BLOB_UNKNOWN", detail={"digest": str(digest)})
            return await super().serve_blob(request, name, digest)
        subscriber = fetch.subscribe()
        try:
            size = await fetch.answer()
        except BaseException:
            fetch.unsubscribe(subscriber)
            raise
        headers = blob_headers(digest)
        if size is not None:
            headers["Content-Length"] = str(size)
        return StreamingResponse(fetch.chunks(subscriber), headers=headers)

    async def _have_blob(self, name: str, digest: Digest) -> bool:
        """Whether the store holds the blob for ``name``. Held for another repository only, it
        is linked here once the remote confirms that ``name`` has it (no bytes fetched)."""

        def local() -> tuple[bool, bool]:
            try:
                self.store.repository_blob_size(name, digest)
                return True, True
            except RegistryError:
                pass
            try:
                self.store.blob_size(digest)
                return False, True
            except RegistryError:
                return False, False

        linked, present = await run_in_threadpool(local)
        if linked or not present:
            return linked
        try:
            await self.cache.remote.send("HEAD", name, f"blobs/{digest}", {})
        except (RemoteNotFound, RemoteUnavailable):
            return False
        await run_in_threadpool(self.store.link_blob, name, digest)
        return True

    async def serve_tags(self, request: Request, name: str) -> Response:
        query = f"?{request.url.query}" if request.url.query else ""
        try:
            response = await self.cache.remote.send("GET", name, f"tags/list{query}", {})
            document = json.loads(response.content)
            tags = document.get("tags") or []
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise RemoteUnavailable("the remote's tag list is not a list of strings")
        except RemoteNotFound:
            raise RegistryError("NAME_UNKNOWN", detail={"name": name}) from None
        except (RemoteUnavailable, ValueError, AttributeError) as exc:
            _log.warning(
                "the remote registry failed: listing the tags held here", name=name, error=str(exc)
            )
            return await super().serve_tags(request, name)
        headers = dict(API_VERSION_HEADERS)
        if "link" in response.headers:
            headers["Link"] = response.headers["link"]
        return JSONResponse({"name": name, "tags": tags}, headers=headers)
