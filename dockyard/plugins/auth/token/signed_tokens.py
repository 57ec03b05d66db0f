"""Minting and verifying the JWTs: bearer (access) tokens and refresh (identity) tokens.

A bearer token is what the token spec describes: header ``typ: JWT``, ``alg``, ``kid``; claims
``iss``, ``sub``, ``aud`` (one string: the CNCF registry compares it as one), ``exp``, ``nbf``,
``iat``, ``jti`` and ``access``. A refresh token is signed by the same key but can never pass
for a bearer token: its header says ``typ: dockyard-refresh+jwt``, its audience is the
service with ``#refresh`` appended (no registry is named that), it carries no ``access``, and
its ``pwd`` claim binds it to the user's current password hash.

Verification takes the key from the header's ``kid`` among the trusted keys only (an ``x5c``
or ``jwk`` header is never used to find one) and the algorithm from that key, never from the
token: ``alg: none`` and HS256 keyed with a public key fail as a wrong algorithm.
"""

from __future__ import annotations

import datetime
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import jwt

from dockyard.core.errors import InvalidCredentials
from dockyard.core.interfaces import Access
from dockyard.plugins.auth.token.keys import SigningKey, VerifyingKey

#: Seconds of clock skew forgiven on ``exp``, ``nbf`` and ``iat``.
LEEWAY = 30
#: Longer "tokens" are refused before any parsing.
MAX_TOKEN_LENGTH = 16 * 1024
#: Verified bearer tokens remembered, so a busy client's requests skip the signature check.
CACHE_SIZE = 4096

ACCESS_TYPE = "JWT"
REFRESH_TYPE = "dockyard-refresh+jwt"
REFRESH_AUDIENCE_SUFFIX = "#refresh"
_REQUIRED = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]

# The reasons a token is refused, by pyjwt's exceptions (most specific first). Each is safe to
# log and to answer with: none quotes the token.
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not valid yet"),
    (jwt.InvalidAudienceError, "token for another service"),
    (jwt.InvalidIssuerError, "token from another issuer"),
    (jwt.InvalidSignatureError, "token signature does not verify"),
    (jwt.InvalidAlgorithmError, "token algorithm not allowed for its key"),
    (jwt.InvalidKeyError, "token algorithm not allowed for its key"),
    (jwt.MissingRequiredClaimError, "token lacks a required claim"),
    (jwt.PyJWTError, "malformed token"),
)


def _reason(exc: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "malformed token"


def rfc3339(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(int(timestamp), datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.frozen
class VerifiedAccess:
    """What a verified bearer token says."""

    subject: str
    granted: tuple[Access, ...]
    expires: int


@attrs.frozen
class VerifiedRefresh:
    """What a verified refresh token says."""

    subject: str
    password_fingerprint: str


def _access_claim(value: Any) -> tuple[Access, ...]:
    """The ``access`` claim as records; anything but a list of {type, name, actions} (plus the
    deprecated ``class``) is a malformed token."""
    if not isinstance(value, list):
        raise InvalidCredentials("malformed access claim")
    granted = []
    for entry in value:
        if (
            not isinstance(entry, dict)
            or set(entry) - {"type", "name", "actions", "class"}
            or not isinstance(entry.get("type"), str)
            or not isinstance(entry.get("name"), str)
            or not isinstance(entry.get("actions"), list)
            or not all(isinstance(a, str) for a in entry["actions"])
        ):
            raise InvalidCredentials("malformed access claim")
        granted.append(Access(entry["type"], entry["name"], tuple(entry["actions"])))
    return tuple(granted)


class TokenSigner:
    """Signs tokens with one key and verifies them against the trusted keys."""

    def __init__(
        self,
        key: SigningKey,
        trusted: Iterable[VerifyingKey],
        issuer: str,
        service: str,
        lifetime: int,
        refresh_lifetime: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.service = service
        self.lifetime = lifetime
        self.refresh_lifetime = refresh_lifetime
        self.clock = clock
        keys = [key.verifying, *trusted]
        self._trusted: Mapping[str, VerifyingKey] = {k.key_id: k for k in keys}
        self._verified: dict[str, VerifiedAccess] = {}
        self._cache_lock = threading.Lock()

    # ------------------------------------------------------------------ minting

    def _sign(self, claims: dict[str, Any], token_type: str) -> str:
        headers = {"kid": self.key.key_id, "typ": token_type}
        return jwt.encode(claims, self.key.private_key, self.key.algorithm, headers=headers)

    def _claims(self, subject: str, audience: str, lifetime: int) -> dict[str, Any]:
        now = int(self.clock())
        return {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "exp": now + lifetime,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(18),
        }

    def access_token(self, subject: str, granted: Sequence[Access]) -> tuple[str, dict]:
        """A bearer token for ``subject`` (``""``: anonymous); also its claims."""
        claims = self._claims(subject, self.service, self.lifetime)
        claims["access"] = [
            {"type": a.type, "name": a.name, "actions": list(a.actions)} for a in granted
        ]
        return self._sign(claims, ACCESS_TYPE), claims

    def refresh_token(self, subject: str, password_fingerprint: str) -> str:
        audience = self.service + REFRESH_AUDIENCE_SUFFIX
        claims = self._claims(subject, audience, self.refresh_lifetime)
        claims["pwd"] = password_fingerprint
        return self._sign(claims, REFRESH_TYPE)

    # ------------------------------------------------------------------ verifying

    def _decode(
        self, token: str, token_type: str, audience: str, keys: Mapping[str, VerifyingKey]
    ) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidCredentials("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidCredentials("malformed token") from None
        key_id = header.get("kid")
        key = keys.get(key_id) if isinstance(key_id, str) else None
        if key is None:
            raise InvalidCredentials("token signed by an unknown key")
        try:
            decoded = jwt.decode_complete(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                audience=audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": _REQUIRED, "strict_aud": True},
            )
        except jwt.PyJWTError as exc:
            raise InvalidCredentials(_reason(exc)) from None
        # The header is signed too: only now may its type be believed.
        if decoded["header"].get("typ") != token_type:
            raise InvalidCredentials("wrong kind of token")
        claims: dict[str, Any] = decoded["payload"]
        if not isinstance(claims.get("sub"), str):
            raise InvalidCredentials("malformed token")
        return claims

    def verify_access(self, token: str) -> VerifiedAccess:
        """The subject and grants of a bearer token; raises ``InvalidCredentials``."""
        now = self.clock()
        cached = self._verified.get(token)
        if cached is not None and now <= cached.expires + LEEWAY:
            return cached
        claims = self._decode(token, ACCESS_TYPE, self.service, self._trusted)
        if "pwd" in claims:
            raise InvalidCredentials("wrong kind of token")
        granted = _access_claim(claims.get("access", []))
        verified = VerifiedAccess(claims["sub"], granted, int(claims["exp"]))
        with self._cache_lock:
            # Only a token valid now is remembered, until it expires: the key is the whole
            # token, so a cache hit is the same signed text and nothing else.
            if len(self._verified) >= CACHE_SIZE:
                self._verified = {
                    k: v for k, v in self._verified.items() if now <= v.expires + LEEWAY
                }
                while len(self._verified) >= CACHE_SIZE:
                    del self._verified[next(iter(self._verified))]
            self._verified[token] = verified
        return verified

    def verify_refresh(self, token: str) -> VerifiedRefresh:
        """The subject of a refresh token signed by our own key; raises
        ``InvalidCredentials``."""
        own = {self.key.key_id: self.key.verifying}
        claims = self._decode(token, REFRESH_TYPE, self.service + REFRESH_AUDIENCE_SUFFIX, own)
        fingerprint = claims.get("pwd")
        if not isinstance(fingerprint, str) or not claims["sub"]:
            raise InvalidCredentials("malformed refresh token")
        return VerifiedRefresh(claims["sub"], fingerprint)
