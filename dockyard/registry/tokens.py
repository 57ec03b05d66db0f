"""The token endpoint (``/token``): Docker's registry token service, for a provider that is a
:class:`~dockyard.core.interfaces.TokenIssuer`.

* ``GET /token?service=S&scope=...&scope=...&account=&client_id=&offline_token=true`` with HTTP
  Basic credentials or none (anonymous), as in distribution's ``token.md``;
* ``POST /token`` with an ``application/x-www-form-urlencoded`` body, the OAuth2 form of
  ``oauth.md``: ``grant_type=password`` (``username``, ``password``) or
  ``grant_type=refresh_token`` (``refresh_token``), ``service``, ``client_id``,
  ``access_type=offline``, ``scope`` (space-separated).

The answer is ``token``/``access_token``, ``expires_in``, ``issued_at`` and, when asked for,
``refresh_token`` (``POST`` adds the granted ``scope``). Each scope gets what the rules allow,
possibly nothing: that is not an error, as the spec says; a scope naming an invalid repository
gets nothing either, as the CNCF auth servers do. What cannot be read at all (a scope without
three parts, an unknown parameter, a parameter given twice) is a 400 naming it. Wrong
credentials are a 401. Requests are rate-limited per address and per user name, and failed
logins more tightly (429 ``TOOMANYREQUESTS`` with ``Retry-After``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl

import attrs
import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dockyard.core.config import RegistryConfig
from dockyard.core.errors import InvalidCredentials, InvalidParameter
from dockyard.core.httpauth import basic_credentials
from dockyard.core.interfaces import Access, AuthProvider, Identity, TokenIssuer
from dockyard.core.repository_names import is_repository_name
from dockyard.registry.errors import RegistryError
from dockyard.registry.ratelimit import RateLimiter, limit_keys

_log = structlog.get_logger("dockyard.registry.tokens")

#: Most scopes one request may ask for.
MAX_SCOPES = 64
#: Largest ``POST`` body read.
MAX_FORM_BYTES = 64 * 1024

_GET_PARAMETERS = ("service", "scope", "account", "client_id", "offline_token")
_POST_FIELDS = (
    "grant_type",
    "service",
    "client_id",
    "access_type",
    "scope",
    "refresh_token",
    "username",
    "password",
)
_BOOLEANS = {"true": True, "false": False}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class IssuingProvider(AuthProvider, TokenIssuer, Protocol):
    """What the endpoint needs: an auth provider that also issues tokens."""


@attrs.frozen
class TokenRequest:
    """One token request, decoded and checked."""

    grant: str  # "anonymous", "password", "refresh_token"
    service: str
    scopes: tuple[Access, ...]
    username: str = attrs.field(default="", repr=False)
    password: str = attrs.field(default="", repr=False)
    refresh_token: str = attrs.field(default="", repr=False)
    client_id: str = ""
    offline: bool = False
    oauth: bool = False  # the POST form: answers carry "scope" and OAuth2 error names


class TokenRefusal(Exception):
    """A token request answered with an error: its status, code, and OAuth2 error name."""

    def __init__(
        self,
        error: RegistryError,
        oauth_error: str = "invalid_request",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.oauth_error = oauth_error
        self.headers = dict(headers or {})


def _bad_request(message: str, field: str, oauth_error: str = "invalid_request") -> TokenRefusal:
    error = RegistryError("UNSUPPORTED", message=message, status=400, detail={"field": field})
    return TokenRefusal(error, oauth_error)


def parse_scopes(values: Sequence[str]) -> tuple[Access, ...]:
    """Scope strings (each may hold several, space-separated) as records; a malformed one is a
    400. Names are not judged here: an invalid repository name is granted nothing."""
    scopes: list[Access] = []
    for value in values:
        for scope in value.split(" "):
            if not scope:
                continue
            try:
                scopes.append(Access.parse(scope))
            except ValueError as exc:
                raise _bad_request(str(exc), "scope") from None
    if len(scopes) > MAX_SCOPES:
        raise _bad_request(f"too many scopes: at most {MAX_SCOPES}", "scope")
    return tuple(scopes)


def _single(values: Mapping[str, list[str]], name: str) -> str | None:
    found = values.get(name, [])
    if len(found) > 1:
        raise _bad_request(f"{name!r} given {len(found)} times; give it once", name)
    return found[0] if found else None


def _grouped(
    pairs: Sequence[tuple[str, str]], allowed: Sequence[str], what: str
) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        if key not in allowed:
            raise _bad_request(
                f"unknown {what} {key[:50]!r}; known: {', '.join(allowed)}", key[:50]
            )
        grouped.setdefault(key, []).append(value)
    return grouped


def _basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """User and password of a Basic ``Authorization`` header; ``None`` without one."""
    header = headers.get("authorization", "")
    if header and header.strip().partition(" ")[0].lower() != "basic":
        raise _bad_request(
            "the token endpoint takes Basic credentials (or none) on GET", "Authorization"
        )
    try:
        credentials = basic_credentials(headers)
    except InvalidCredentials as exc:
        raise _bad_request(str(exc), "Authorization") from None
    if credentials is not None and not credentials.username:
        raise _bad_request("Basic credentials need a user name", "Authorization")
    return (credentials.username, credentials.password) if credentials else None


def decode_get(request: Request) -> TokenRequest:
    values = _grouped(request.query_params.multi_items(), _GET_PARAMETERS, "query parameter")
    credentials = _basic_credentials(request.headers)
    account = _single(values, "account")
    offline_text = _single(values, "offline_token")
    offline = False
    if offline_text is not None:
        if offline_text not in _BOOLEANS:
            raise _bad_request("offline_token must be true or false", "offline_token")
        offline = _BOOLEANS[offline_text]
    if credentials is None:
        if offline:
            raise _bad_request("offline_token needs credentials to bind it to", "offline_token")
        username, password, grant = "", "", "anonymous"
    else:
        (username, password), grant = credentials, "password"
        if account is not None and account != username:
            raise _bad_request("account does not match the credentials' user name", "account")
    service = _single(values, "service")
    if not service:
        raise _bad_request("query parameter 'service' is required", "service")
    return TokenRequest(
        grant=grant,
        service=service,
        scopes=parse_scopes(values.get("scope", [])),
        username=username,
        password=password,
        client_id=_single(values, "client_id") or "",
        offline=offline,
    )


async def decode_post(request: Request) -> TokenRequest:
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise _bad_request(
            "POST /token takes an application/x-www-form-urlencoded form", "Content-Type"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _bad_request(f"the form is larger than {MAX_FORM_BYTES} bytes", "body")
    try:
        pairs = parse_qsl(bytes(body).decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise _bad_request("the form is not UTF-8", "body") from None
    values = _grouped(pairs, _POST_FIELDS, "form field")

    def required(name: str) -> str:
        value = _single(values, name)
        if not value:
            raise _bad_request(f"form field {name!r} is required", name)
        return value

    grant = required("grant_type")
    if grant not in ("password", "refresh_token"):
        raise _bad_request(
            f"unsupported grant_type {grant[:50]!r}: password or refresh_token",
            "grant_type",
            "unsupported_grant_type",
        )
    access_type = _single(values, "access_type") or "online"
    if access_type not in ("online", "offline"):
        raise _bad_request("access_type must be online or offline", "access_type")
    return TokenRequest(
        grant=grant,
        service=required("service"),
        scopes=parse_scopes(values.get("scope", [])),
        username=required("username") if grant == "password" else "",
        password=required("password") if grant == "password" else "",
        refresh_token=required("refresh_token") if grant == "refresh_token" else "",
        client_id=required("client_id"),
        offline=access_type == "offline",
        oauth=True,
    )


class TokenEndpoint:
    """``/token`` for one provider, with its rate limits."""

    def __init__(
        self,
        provider: IssuingProvider,
        settings: RegistryConfig,
        failures: RateLimiter | None = None,
    ) -> None:
        self.provider = provider
        self.requests = RateLimiter.minutely(settings.token_requests_per_minute)
        self.failures = failures or RateLimiter.minutely(settings.auth_failures_per_minute)

    async def handle(self, request: Request) -> Response:
        oauth = request.method == "POST"
        try:
            token_request = await decode_post(request) if oauth else decode_get(request)
            return await self.answer(request, token_request)
        except TokenRefusal as refusal:
            return _refusal_response(refusal, oauth)

    def _throttled(self, limiter: RateLimiter) -> TokenRefusal:
        error = RegistryError("TOOMANYREQUESTS", message="too many token requests; retry later")
        return TokenRefusal(error, "slow_down", headers={"Retry-After": str(limiter.retry_after())})

    async def answer(self, request: Request, wanted: TokenRequest) -> Response:
        address = request.client.host if request.client else ""
        keys = limit_keys(address, wanted.username)
        if not self.requests.take(keys):
            raise self._throttled(self.requests)
        if self.failures.exhausted(keys):
            raise self._throttled(self.failures)
        try:
            identity = await run_in_threadpool(self._identity, wanted)
        except InvalidCredentials as exc:
            self.failures.take(limit_keys(address, exc.subject or wanted.username))
            _log.info(
                "token request refused",
                reason=str(exc),
                user=(exc.subject or wanted.username)[:100],
                address=address,
                grant=wanted.grant,
            )
            error = RegistryError("UNAUTHORIZED", message=str(exc))
            challenge = {} if wanted.oauth else {"WWW-Authenticate": 'Basic realm="dockyard"'}
            raise TokenRefusal(error, "invalid_grant", challenge) from None
        if identity is not None and self.failures.exhausted(limit_keys(subject=identity.subject)):
            # A user locked after failures stays locked, whichever way it came (a refresh
            # token names its user only once verified).
            raise self._throttled(self.failures)
        try:
            granted = await run_in_threadpool(self._grant, identity, wanted.scopes)
            issued = await run_in_threadpool(
                self.provider.issue,
                identity,
                granted,
                wanted.service,
                wanted.client_id,
                # oauth.md: a refresh grant never mints a new refresh token.
                wanted.offline and wanted.grant != "refresh_token",
            )
        except InvalidParameter as exc:
            raise _bad_request(str(exc), "service") from None
        except InvalidCredentials as exc:
            error = RegistryError("UNAUTHORIZED", message=str(exc))
            raise TokenRefusal(error, "invalid_grant") from None
        document: dict[str, Any] = {
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": issued.issued_at,
        }
        if issued.refresh_token:
            document["refresh_token"] = issued.refresh_token
        elif wanted.grant == "refresh_token" and wanted.offline:
            # ...but with access_type=offline it answers the one it was given.
            document["refresh_token"] = wanted.refresh_token
        if wanted.oauth:
            document["scope"] = " ".join(str(a) for a in granted)
        return Response(json.dumps(document), media_type="application/json", headers=dict(NO_STORE))

    def _identity(self, wanted: TokenRequest) -> Identity | None:
        if wanted.grant == "password":
            return self.provider.login(wanted.username, wanted.password)
        if wanted.grant == "refresh_token":
            return self.provider.refresh(wanted.refresh_token)
        return None

    def _grant(self, identity: Identity | None, scopes: Sequence[Access]) -> list[Access]:
        """What the rules give ``identity`` of each scope (an invalid repository: nothing)."""
        granted = []
        for scope in scopes:
            if scope.type == "repository" and not is_repository_name(scope.name):
                continue
            allowed = self.provider.authorize(identity, scope)
            actions = scope.actions if "*" in allowed else allowed
            if actions:
                granted.append(Access(scope.type, scope.name, tuple(actions)))
        return granted


def _refusal_response(refusal: TokenRefusal, oauth: bool) -> Response:
    document = refusal.error.to_json()
    if oauth:
        document["error"] = refusal.oauth_error
        document["error_description"] = refusal.error.message
    return Response(
        json.dumps(document),
        status_code=refusal.error.status,
        media_type="application/json",
        headers={**NO_STORE, **refusal.headers},
    )


def token_routes(
    provider: AuthProvider, settings: RegistryConfig, failures: RateLimiter | None = None
) -> list[BaseRoute]:
    """The ``/token`` route when ``provider`` issues tokens; nothing otherwise. ``failures``
    is the registry's limiter of failed logins, shared so that both doors count alike."""
    if not isinstance(provider, TokenIssuer):
        return []
    endpoint = TokenEndpoint(cast(IssuingProvider, provider), settings, failures)
    return [Route("/token", endpoint.handle, methods=["GET", "POST"])]
