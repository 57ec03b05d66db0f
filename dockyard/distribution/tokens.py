"""Bearer tokens from a registry's token server, and the cache that keeps them per scope.

docker's token authentication: a registry's ``Bearer realm=...,service=...`` challenge sends
the client to the realm for a token covering the scopes it needs
(``repository:NAME:pull,push``). The client asks with

* ``GET realm?service=&scope=...&account=USER`` and the password as HTTP Basic credentials
  (anonymously without them); with ``offline_token=true&client_id=docker`` the answer also
  carries a ``refresh_token``, which a login hands back as its ``IdentityToken``;
* or, holding such a refresh token (the ``identitytoken`` of a later request), the OAuth2 form
  ``POST realm`` with ``grant_type=refresh_token``. Realms that only speak OAuth2 (they answer
  the GET with 404 or 405) get ``grant_type=password`` with the username and password.

The answer's ``token`` (or ``access_token``) is good for ``expires_in`` seconds (60 when not
given, as docker assumes); the cache keeps it that long, less a margin, keyed by realm,
service, scopes and (a salted digest of) the credentials, so no caller ever gets a token that
other credentials earned.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import attrs
import httpx

from dockyard.core.decoding import DecodeError, Decoder, parse_json
from dockyard.core.errors import InvalidParameter
from dockyard.core.httpauth import Challenge
from dockyard.distribution.credentials import Credentials
from dockyard.distribution.errors import describe_error_response

#: The client id docker's daemon gives token servers.
CLIENT_ID = "docker"
#: docker's assumption for a token without ``expires_in`` (and its floor for older servers).
DEFAULT_LIFETIME = 60
#: A token is given up this long before it expires (at most a tenth of its life).
EXPIRY_MARGIN = 10.0

#: Token server answers use snake_case keys; decoded as strictly as Engine API bodies.
_ANSWERS = Decoder(key_style=str)


@attrs.frozen
class TokenAnswer:
    """A token server's JSON answer (both the GET and the OAuth2 form)."""

    token: str = ""
    access_token: str = attrs.field(default="", repr=False)
    expires_in: int = 0
    issued_at: str = ""
    refresh_token: str = attrs.field(default="", repr=False)


@attrs.frozen
class Token:
    """A bearer token and when (``time.monotonic()``) to stop using it."""

    value: str = attrs.field(repr=False)
    usable_until: float
    #: The refresh token the server handed out with it, if it did.
    refresh_token: str = attrs.field(default="", repr=False)


@attrs.frozen
class TokenKey:
    realm: str
    service: str
    scopes: tuple[str, ...]
    credentials: str


class TokenFetchError(Exception):
    """The token server did not hand out a token; ``unauthorized``: dockerd answers 401."""

    def __init__(self, reason: str, unauthorized: bool = False) -> None:
        super().__init__(reason)
        self.unauthorized = unauthorized


class TokenCache:
    """Tokens until they expire, at most ``capacity`` of them (the least recently used go).

    One fetch per key at a time: concurrent requests for the same scope wait for it.
    """

    def __init__(self, capacity: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.clock = clock
        self._tokens: OrderedDict[TokenKey, Token] = OrderedDict()
        self._locks: dict[TokenKey, asyncio.Lock] = {}

    def get(self, key: TokenKey) -> Token | None:
        token = self._tokens.get(key)
        if token is None:
            return None
        if token.usable_until <= self.clock():
            del self._tokens[key]
            return None
        self._tokens.move_to_end(key)
        return token

    def put(self, key: TokenKey, token: Token) -> None:
        self._tokens[key] = token
        self._tokens.move_to_end(key)
        while len(self._tokens) > self.capacity:
            self._tokens.popitem(last=False)

    def drop(self, key: TokenKey) -> None:
        self._tokens.pop(key, None)

    def lock(self, key: TokenKey) -> asyncio.Lock:
        if len(self._locks) > self.capacity:  # bounded: idle locks are dropped
            for stale in [k for k, lock in self._locks.items() if not lock.locked()]:
                del self._locks[stale]
        return self._locks.setdefault(key, asyncio.Lock())

    def token_for(self, answer: TokenAnswer, value: str) -> Token:
        lifetime = answer.expires_in if answer.expires_in > 0 else DEFAULT_LIFETIME
        margin = min(EXPIRY_MARGIN, lifetime / 10)
        return Token(value, self.clock() + lifetime - margin, answer.refresh_token)


async def fetch_token(
    http: httpx.AsyncClient,
    cache: TokenCache,
    challenge: Challenge,
    scopes: Sequence[str],
    credentials: Credentials,
    offline: bool,
) -> Token:
    """A new token for ``scopes`` from the realm ``challenge`` names. Transport failures
    raise httpx's errors; a refusal raises :class:`TokenFetchError`."""
    realm = challenge.params.get("realm", "")
    if not realm:
        raise TokenFetchError("no realm specified for token auth challenge")
    parts = urlsplit(realm)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TokenFetchError(f"invalid token auth challenge realm: {realm!r}")
    service = challenge.params.get("service", "")
    if credentials.identity_token:
        form = {"grant_type": "refresh_token", "refresh_token": credentials.identity_token}
        response = await _post_form(http, realm, service, scopes, form)
    else:
        response = await _get(http, realm, service, scopes, credentials, offline)
        if response.status_code in (404, 405) and credentials.has_password:
            form = {
                "grant_type": "password",
                "username": credentials.username,
                "password": credentials.password,
            }
            if offline:
                form["access_type"] = "offline"
            response = await _post_form(http, realm, service, scopes, form)
    if not 200 <= response.status_code < 400:
        reason, unauthorized = describe_error_response(
            response.status_code, response.headers.get_list("www-authenticate"), response.content
        )
        raise TokenFetchError(reason, unauthorized)
    try:
        answer = _ANSWERS.decode(parse_json(response.content), TokenAnswer)
    except (DecodeError, InvalidParameter) as exc:
        raise TokenFetchError(f"unable to decode token response: {exc}") from None
    value = answer.access_token or answer.token
    if not value:
        raise TokenFetchError("authorization server did not include a token in the response")
    return cache.token_for(answer, value)


async def _get(
    http: httpx.AsyncClient,
    realm: str,
    service: str,
    scopes: Sequence[str],
    credentials: Credentials,
    offline: bool,
) -> httpx.Response:
    params: list[tuple[str, str | int | float | bool | None]] = []
    if service:
        params.append(("service", service))
    params.extend(("scope", scope) for scope in scopes)
    if offline:
        params += [("offline_token", "true"), ("client_id", CLIENT_ID)]
    headers = {}
    if credentials.has_password:
        params.append(("account", credentials.username))
        pair = f"{credentials.username}:{credentials.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    return await http.get(realm, params=params, headers=headers)


async def _post_form(
    http: httpx.AsyncClient, realm: str, service: str, scopes: Sequence[str], form: dict[str, str]
) -> httpx.Response:
    fields = {"scope": " ".join(scopes), "service": service, "client_id": CLIENT_ID, **form}
    return await http.post(realm, data=fields)
