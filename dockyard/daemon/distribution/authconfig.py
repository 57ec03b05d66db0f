"""Registry credentials as clients hand them to the daemon: docker's ``AuthConfig``.

It comes as the JSON body of ``POST /auth``, and base64url-encoded in the ``X-Registry-Auth``
header of pull and push. Both are decoded here, strictly, by the Engine API's decoder: a value
of the wrong type is a 400 naming the field. Secrets never appear in a record's ``repr``, so a
log line or a traceback cannot carry them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import attrs

from dockyard.core.decoding import json_key, parse_json
from dockyard.core.errors import InvalidParameter
from dockyard.daemon.engine_api import ENGINE_API
from dockyard.distribution.credentials import Credentials


@attrs.frozen
class AuthConfig:
    """docker's ``AuthConfig``. ``email`` is accepted and unused, as dockerd does (it was
    Docker Hub's, long retired); ``auth`` is ``base64("user:password")``, as in a client's
    ``config.json``, and stands for ``username`` and ``password`` when they are not given."""

    username: str = json_key("username", default="")
    password: str = json_key("password", default="", repr=False)
    auth: str = json_key("auth", default="", repr=False)
    email: str = json_key("email", default="")
    server_address: str = json_key("serveraddress", default="")
    identity_token: str = json_key("identitytoken", default="", repr=False)
    registry_token: str = json_key("registrytoken", default="", repr=False)


def credentials_of(config: AuthConfig, where: str = "") -> Credentials:
    """The credentials ``config`` carries. ``auth`` that is not ``base64("user:password")``,
    or that names other credentials than ``username``/``password``, is a 400."""
    username, password = config.username, config.password
    if config.auth:
        field = f"{where}: auth" if where else "auth"
        try:
            decoded = base64.b64decode(config.auth, validate=True).decode()
        except (binascii.Error, ValueError):
            raise InvalidParameter(f"{field}: not base64 of user:password") from None
        user, colon, secret = decoded.partition(":")
        if not colon:
            raise InvalidParameter(f"{field}: not base64 of user:password")
        if (username or password) and (username, password) != (user, secret):
            raise InvalidParameter(f"{field}: names other credentials than username and password")
        username, password = user, secret
    return Credentials(username, password, config.identity_token, config.registry_token)


def decode_auth_body(raw: bytes) -> AuthConfig:
    """``POST /auth``'s body. It is required: an empty body is a 400, not an anonymous login."""
    if not raw.strip():
        raise InvalidParameter("the body must be a JSON AuthConfig object, and it is empty")
    config: AuthConfig = ENGINE_API.decode(parse_json(raw), AuthConfig)
    credentials_of(config)  # a bad "auth" is refused here, at the boundary
    return config


def decode_registry_auth(header: str | None) -> AuthConfig:
    """The ``X-Registry-Auth`` header: base64url of a JSON AuthConfig. Absent, empty or
    ``e30=`` (``{}``) means no credentials. The standard alphabet and missing padding are
    accepted, as clients differ; anything else is a 400 naming the header."""
    if not header or not header.strip():
        return AuthConfig()
    return _auth_config(_header_json(header, "X-Registry-Auth"), "X-Registry-Auth")


def decode_registry_config(header: str | None) -> dict[str, AuthConfig]:
    """The ``X-Registry-Config`` header of ``POST /build``: base64url of a JSON object from
    registry to ``AuthConfig``, every credential the client has (a build takes the one of
    each base image's registry). Absent or empty means none."""
    if not header or not header.strip():
        return {}
    document = _header_json(header, "X-Registry-Config")
    if not isinstance(document, dict):
        raise InvalidParameter("X-Registry-Config: not a JSON object of registries")
    return {
        registry: _auth_config(value, f"X-Registry-Config: {registry}")
        for registry, value in document.items()
    }


def _header_json(header: str, name: str) -> Any:
    text = header.strip()
    try:
        raw = base64.urlsafe_b64decode(_padded(text.replace("+", "-").replace("/", "_")))
    except (binascii.Error, ValueError):
        raise InvalidParameter(f"{name}: not base64url-encoded JSON") from None
    if not raw.strip():
        raise InvalidParameter(f"{name}: not base64url-encoded JSON")
    try:
        return parse_json(raw)
    except InvalidParameter as exc:
        raise InvalidParameter(f"{name}: {exc}") from None


def _auth_config(value: Any, where: str) -> AuthConfig:
    try:
        config: AuthConfig = ENGINE_API.decode(value, AuthConfig)
    except InvalidParameter as exc:
        raise InvalidParameter(f"{where}: {exc}") from None
    credentials_of(config, where)
    return config


def _padded(text: str) -> str:
    if any(not (c.isalnum() or c in "-_=") for c in text):
        raise ValueError("not base64url")
    stripped = text.rstrip("=")
    return stripped + "=" * (-len(stripped) % 4)
