"""Registries that want credentials, on loopback ports: the CNCF registry with htpasswd (Basic)
or token auth (Bearer, our test token server), and our own registry with small providers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from dockyard.core.errors import InvalidCredentials
from dockyard.core.httpauth import format_challenge
from dockyard.core.interfaces import Access, AuthRequest, Identity
from dockyard.plugins.auth.htpasswd import HtpasswdAuth, HtpasswdConfig
from dockyard.plugins.registries.filesystem import FilesystemBackend
from dockyard.registry.store import RegistryStore
from tests.distribution.tokenserver import TokenServer
from tests.registry.conftest import (
    ChildServer,
    ThreadedRegistry,
    htpasswd_file,
    serve_in_thread,
    start_cncf_registry,
)

USER, PASSWORD = "hfuser", "hfpass"
TOKEN_USER, TOKEN_PASSWORD = "tokuser", "tokpass"
SERVICE = "dockyard-test-registry"


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[ChildServer]:
    """The CNCF registry asking for Basic credentials checked against an htpasswd file."""
    htpasswd = htpasswd_file(tmp_path / "htpasswd", {USER: PASSWORD})
    auth = f"auth:\n  htpasswd:\n    realm: hf-realm\n    path: {htpasswd}\n"
    registry = start_cncf_registry(tmp_path / "basic-registry", auth)
    yield registry
    registry.stop()


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    server = TokenServer({TOKEN_USER: TOKEN_PASSWORD}, service=SERVICE).start()
    yield server
    server.stop()


@pytest.fixture
def token_registry(tmp_path: Path, token_server: TokenServer) -> Iterator[ChildServer]:
    """The CNCF registry trusting ``token_server``'s tokens (``auth: token:``)."""
    bundle = token_server.write_certificate(tmp_path / "token-signer.crt")
    auth = (
        f"auth:\n  token:\n    realm: {token_server.realm}\n    service: {SERVICE}\n"
        f"    issuer: {token_server.issuer}\n    rootcertbundle: {bundle}\n"
    )
    registry = start_cncf_registry(tmp_path / "token-registry", auth)
    yield registry
    registry.stop()


# --------------------------------------------------------------------------------------------
# Our own registry: the htpasswd plugin for Basic, a small provider for the token server's JWTs
# --------------------------------------------------------------------------------------------


class TokenProvider:
    """Bearer tokens of ``server``: signature, issuer, audience and expiry checked; whoever
    holds one may do everything (the token plugin's own tests cover rules and scopes)."""

    def __init__(self, server: TokenServer) -> None:
        self.server = server
        self.public_key = server.key.public_key()
        #: Refuse every token (as a registry does once a token was revoked).
        self.revoked = False

    def authenticate(self, request: AuthRequest) -> Identity | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        if self.revoked:
            raise InvalidCredentials("revoked")
        try:
            claims = jwt.decode(
                header[7:],
                self.public_key,
                algorithms=["ES256"],
                audience=SERVICE,
                issuer=self.server.issuer,
                options={"require": ["exp", "nbf", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:  # a signature, expiry or claim that does not hold
            raise InvalidCredentials(str(exc)) from None
        return Identity(claims.get("sub") or "")

    def authorize(self, identity: Identity | None, access: Access) -> tuple[str, ...]:
        return access.actions if identity else ()

    def challenge(self, request: AuthRequest, wanted: object, error: str = "") -> dict[str, str]:
        params = {"realm": self.server.realm, "service": SERVICE}
        if error:
            params["error"] = error
        return {"WWW-Authenticate": format_challenge("Bearer", params)}


def our_registry(tmp_path: Path, provider: object) -> ThreadedRegistry:
    return serve_in_thread(RegistryStore(FilesystemBackend(tmp_path / "ours")), provider)


@pytest.fixture
def our_basic_registry(tmp_path: Path) -> Iterator[ThreadedRegistry]:
    """Ours, with the htpasswd plugin over a file made by ``htpasswd -B``."""
    htpasswd = htpasswd_file(tmp_path / "our-htpasswd", {USER: PASSWORD})
    provider = HtpasswdAuth(HtpasswdConfig(path=str(htpasswd), realm="dockyard-test"))
    server = our_registry(tmp_path, provider)
    yield server
    server.stop()


@pytest.fixture
def token_provider(token_server: TokenServer) -> TokenProvider:
    return TokenProvider(token_server)


@pytest.fixture
def our_token_registry(tmp_path: Path, token_provider: TokenProvider) -> Iterator[ThreadedRegistry]:
    """Ours, trusting the token server's tokens (through ``token_provider``)."""
    server = our_registry(tmp_path, token_provider)
    yield server
    server.stop()


def token_login(registry: ThreadedRegistry) -> dict[str, str]:
    """The body of a ``POST /auth`` with the token server's user, for ``registry``."""
    return {"username": TOKEN_USER, "password": TOKEN_PASSWORD, "serveraddress": registry.host}


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    from tests.registry.conftest import free_port

    return free_port()
