"""The daemon's HTTP client for one registry endpoint: every distribution request goes here.

A client first pings ``GET /v2/`` without credentials, as docker's does. The answer tells
whether this is a v2 registry (``Docker-Distribution-API-Version: registry/2.0``) and, on a
401, which challenges to answer. Every later request carries what those challenges ask for:

* ``Bearer``: a token from the token server for the request's scopes, from the cache while it
  is good (a registry answering 401 to a cached token gets one fresh retry, with the scope
  its new challenge names added);
* ``Basic``: the username and password, or "no basic auth credentials" without them.

Failures are :class:`~dockyard.distribution.errors.RegistryError` with dockerd's text.
"""

from __future__ import annotations

import base64
import functools
import ssl
from collections.abc import AsyncIterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from dockyard.core.httpauth import Challenge
from dockyard.distribution.challenges import is_scheme, read_challenges
from dockyard.distribution.credentials import Credentials
from dockyard.distribution.endpoints import Endpoint
from dockyard.distribution.errors import (
    NoBasicCredentials,
    RegistryError,
    RegistryUnauthorized,
    request_failed,
    transport_reason,
)
from dockyard.distribution.tokens import (
    TokenCache,
    TokenFetchError,
    TokenKey,
    fetch_token,
)

#: dockerd's timeout for a registry's requests when logging in.
DEFAULT_TIMEOUT = 15.0
_V2_VERSION = "registry/2.0"


@functools.cache
def default_tls() -> ssl.SSLContext:
    """httpx's default TLS (its CA bundle), for a plain-HTTP endpoint's redirects to HTTPS:
    built once per process, for building it costs 30 to 80 ms, and a push or pull opens a
    client or two. A context serves any number of connections. Not from the environment's
    SSL_CERT_FILE either, as the client's ``trust_env=False`` says."""
    return httpx.create_ssl_context(trust_env=False)


class RegistryClient:
    """Requests to ``endpoint`` as ``credentials``; use as an async context manager.

    ``tokens`` is shared by the clients of one daemon so that pulls and pushes reuse their
    tokens; a login passes a cache of its own, so that it proves the credentials afresh.
    ``offline_token``: ask the token server for a refresh token (a login does).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        credentials: Credentials,
        tokens: TokenCache,
        *,
        tls: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        user_agent: str = "dockyard",
        offline_token: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.tokens = tokens
        self.offline_token = offline_token
        self.challenges: list[Challenge] = []
        self.found_v2 = False
        #: The refresh token a token server handed out for these credentials, if any.
        self.refresh_token = ""
        self.http = httpx.AsyncClient(
            verify=tls if tls is not None else default_tls(),
            timeout=timeout,
            headers={"User-Agent": user_agent},
            # No proxies or .netrc from the daemon's environment: credentials go where the
            # registry's challenge says, and nowhere else.
            trust_env=False,
            follow_redirects=False,
        )

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.http.aclose()

    async def ping(self) -> httpx.Response:
        """``GET /v2/`` without credentials; learns the challenges and whether it is v2."""
        url = self.endpoint.url("/v2/")
        response = await self._send("GET", url, {})
        versions = ",".join(response.headers.get_list("docker-distribution-api-version"))
        self.found_v2 = _V2_VERSION in {v.strip() for v in versions.split(",")}
        self.challenges = (
            read_challenges(response.headers.get_list("www-authenticate"))
            if response.status_code == 401
            else []
        )
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """``method`` on ``path`` (``/v2/...``, or a full URL the registry gave, such as an
        upload's ``Location``), authorized for ``scopes`` as the ping's challenges ask."""
        response, _ = await self._authorized(method, path, scopes, headers, content)
        return response

    async def stream(
        self,
        method: str,
        path: str,
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        max_redirects: int = 10,
    ) -> httpx.Response:
        """As :meth:`request`, but the body is left unread (the caller reads it with
        ``aiter_bytes`` and closes the response), and redirects are followed: blobs may live
        elsewhere (an S3-backed registry redirects to the bucket). The credentials go only to
        the registry's own origin, never to the host a redirect names."""
        response, authorization = await self._authorized(
            method, path, scopes, headers, None, stream=True
        )
        url = str(response.request.url)
        for _ in range(max_redirects):
            if not response.is_redirect or "location" not in response.headers:
                return response
            target = httpx.URL(url).join(response.headers["location"])
            await response.aclose()
            same_origin = target.scheme == httpx.URL(url).scheme and target.netloc == (
                httpx.URL(self.endpoint.base_url).netloc
            )
            url = str(target)
            sent = {**(headers or {}), **(authorization if same_origin else {})}
            response = await self._send(method, url, sent, stream=True)
        await response.aclose()
        raise RegistryError(request_failed(method, url, f"stopped after {max_redirects} redirects"))

    async def _authorized(
        self,
        method: str,
        path: str,
        scopes: Sequence[str],
        headers: Mapping[str, str] | None,
        content: bytes | None,
        stream: bool = False,
    ) -> tuple[httpx.Response, dict[str, str]]:
        """The response, and the ``Authorization`` it was sent with (retried once with a
        fresh token when the registry refused the cached one)."""
        url = path if "://" in path else self.endpoint.url(path)
        wanted = list(scopes)
        authorization = await self._authorization(method, url, wanted)
        response = await self._send(
            method, url, {**(headers or {}), **authorization}, content, stream
        )
        if response.status_code != 401 or not any(is_scheme(c, "bearer") for c in self.challenges):
            return response, authorization
        if stream:
            await response.aclose()
        # The token was refused (expired early, revoked) or too narrow: once more, fresh, with
        # what the registry's new challenge names.
        for challenge in read_challenges(response.headers.get_list("www-authenticate")):
            for scope in challenge.params.get("scope", "").split():
                if scope not in wanted:
                    wanted.append(scope)
        authorization = await self._authorization(method, url, wanted, fresh=True)
        retry = {**(headers or {}), **authorization}
        return await self._send(method, url, retry, content, stream), authorization

    async def send_stream(
        self,
        method: str,
        path: str,
        body: AsyncIterable[bytes],
        *,
        scopes: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """``method`` with a body streamed once (a blob upload, chunked). It cannot be sent
        again, so a refused token is not retried: the caller's earlier requests for the same
        scopes (the upload's ``POST``) got the token that this one reuses."""
        url = path if "://" in path else self.endpoint.url(path)
        sent = {**(headers or {}), **await self._authorization(method, url, list(scopes))}
        return await self._send(method, url, sent, body)

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | AsyncIterable[bytes] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        try:
            request = self.http.build_request(method, url, headers=headers, content=content)
            return await self.http.send(request, stream=stream)
        # httpx passes on an OSError (a TLS alert read after the handshake) as it is.
        except (httpx.HTTPError, OSError) as exc:
            reason = transport_reason(exc, httpx.URL(url).netloc.decode())
            raise RegistryError(request_failed(method, url, reason)) from None

    async def _authorization(
        self, method: str, url: str, scopes: Sequence[str], fresh: bool = False
    ) -> dict[str, str]:
        """The ``Authorization`` header the challenges ask for (token first, as docker's)."""
        try:
            for challenge in self.challenges:
                if is_scheme(challenge, "bearer"):
                    token = await self._token(challenge, scopes, fresh)
                    return {"Authorization": f"Bearer {token}"}
            for challenge in self.challenges:
                if is_scheme(challenge, "basic"):
                    if not self.credentials.has_password:
                        raise NoBasicCredentials()
                    pair = f"{self.credentials.username}:{self.credentials.password}"
                    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        except NoBasicCredentials as exc:
            raise RegistryError(request_failed(method, url, exc)) from None
        except TokenFetchError as exc:
            error = RegistryUnauthorized if exc.unauthorized else RegistryError
            raise error(request_failed(method, url, exc)) from None
        except (httpx.HTTPError, OSError) as exc:  # reaching the token server
            realm = httpx.URL(_request_url(exc, url))
            reason = transport_reason(exc, realm.netloc.decode())
            inner = request_failed("GET", str(realm.copy_with(query=None)), reason)
            raise RegistryError(request_failed(method, url, inner)) from None
        return {}

    async def _token(self, challenge: Challenge, scopes: Sequence[str], fresh: bool) -> str:
        if self.credentials.registry_token:  # a token the client holds: passed through
            return self.credentials.registry_token
        key = TokenKey(
            challenge.params.get("realm", ""),
            challenge.params.get("service", ""),
            tuple(sorted(set(scopes))),
            self.credentials.cache_key(),
        )
        async with self.tokens.lock(key):
            cached = None if fresh else self.tokens.get(key)
            if cached is not None:
                return cached.value
            token = await fetch_token(
                self.http, self.tokens, challenge, scopes, self.credentials, self.offline_token
            )
            self.tokens.put(key, token)
        if token.refresh_token:
            self.refresh_token = token.refresh_token
        return token.value


def _request_url(exc: Any, fallback: str) -> str:
    """The URL of the request that failed: httpx's errors know it (most of them)."""
    try:
        return str(exc.request.url)
    except (AttributeError, RuntimeError):  # an OSError, or an httpx error without one
        return fallback
