"""The daemon's registry service: the settings, the shared token cache, and login.

One per daemon (:attr:`dockyard.daemon.engine.Engine.registries`). ``POST /auth`` calls
:meth:`RegistryService.login`; pull and push open a client with :meth:`RegistryService.connect`
and make all their requests through it.
"""

from __future__ import annotations

import asyncio

import attrs
import structlog

import dockyard
from dockyard.daemon.distribution.authconfig import AuthConfig, credentials_of
from dockyard.distribution.client import DEFAULT_TIMEOUT, RegistryClient
from dockyard.distribution.credentials import Credentials
from dockyard.distribution.endpoints import (
    Endpoint,
    EndpointPolicy,
    index_server_address,
    registry_host,
)
from dockyard.distribution.errors import RegistryError, status_text
from dockyard.distribution.tokens import TokenCache

_log = structlog.get_logger("dockyard.distribution")

LOGIN_SUCCEEDED = "Login Succeeded"


@attrs.frozen
class LoginResult:
    """``POST /auth``'s answer: the status, and the refresh token to keep instead of the
    password (empty unless the registry's token server handed one out)."""

    status: str
    identity_token: str = attrs.field(default="", repr=False)


class RegistryService:
    def __init__(
        self,
        policy: EndpointPolicy,
        default_registry: str,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.policy = policy
        self.default_registry = default_registry
        self.timeout = timeout
        self.tokens = TokenCache()

    @property
    def index_server_address(self) -> str:
        return index_server_address(self.default_registry)

    def user_agent(self, upstream: str = "") -> str:
        """Ours, with the client's own in ``UpstreamClient(...)``, as dockerd forwards it."""
        agent = f"dockyard/{dockyard.__version__}"
        return f"{agent} UpstreamClient({upstream})" if upstream else agent

    def open(
        self,
        endpoint: Endpoint,
        credentials: Credentials,
        tokens: TokenCache | None = None,
        upstream_agent: str = "",
        offline_token: bool = False,
    ) -> RegistryClient:
        """A client of ``endpoint`` (not yet pinged). Reading the endpoint's certificate files
        blocks briefly: call from a worker thread, or accept that."""
        tls = self.policy.ssl_context(endpoint) if endpoint.scheme == "https" else None
        return RegistryClient(
            endpoint,
            credentials,
            tokens if tokens is not None else self.tokens,
            tls=tls,
            timeout=self.timeout,
            user_agent=self.user_agent(upstream_agent),
            offline_token=offline_token,
        )

    async def connect(
        self, host: str, credentials: Credentials, upstream_agent: str = ""
    ) -> RegistryClient:
        """A pinged client of ``host``: its endpoints in order (HTTPS, then plain HTTP for an
        insecure registry), the first that answers. The caller closes it (``async with``)."""
        endpoints = await asyncio.to_thread(self.policy.endpoints, host)
        error: RegistryError | None = None
        for endpoint in endpoints:
            client = await asyncio.to_thread(self.open, endpoint, credentials, None, upstream_agent)
            try:
                await client.ping()
                return client
            except RegistryError as exc:
                await client.http.aclose()
                error = exc
                _log.info("registry endpoint failed, trying the next", endpoint=endpoint.base_url)
        assert error is not None
        raise error

    async def login(self, config: AuthConfig, upstream_agent: str = "") -> LoginResult:
        """Check ``config``'s credentials against its registry (the default registry when it
        names none), as dockerd does: ping ``/v2/``, answer its challenge, ``GET /v2/`` again.

        An endpoint that failed before showing itself a v2 registry gives way to the next
        one; the last one's failure is the answer. A registry without authentication lets
        any credentials in, as it does for dockerd.
        """
        host = registry_host(config.server_address or self.default_registry)
        credentials = credentials_of(config)
        endpoints = await asyncio.to_thread(self.policy.endpoints, host)
        failure: RegistryError | None = None
        for endpoint in endpoints:
            # A cache of its own: a login proves the credentials, it does not reuse a token.
            client = await asyncio.to_thread(
                self.open, endpoint, credentials, TokenCache(), upstream_agent, True
            )
            async with client:
                try:
                    await client.ping()
                    url = endpoint.url("/v2/")
                    response = await client.request("GET", "/v2/")
                    if response.status_code == 200:
                        _log.info(
                            "registry login succeeded",
                            registry=host,
                            endpoint=endpoint.base_url,
                            user=credentials.username,
                        )
                        token = client.refresh_token or credentials.identity_token
                        return LoginResult(LOGIN_SUCCEEDED, token)
                    failure = RegistryError(
                        f"login attempt to {url} failed with status: "
                        f"{status_text(response.status_code)}"
                    )
                except RegistryError as exc:
                    failure = exc
                _log.info(
                    "registry login failed",
                    registry=host,
                    endpoint=endpoint.base_url,
                    user=credentials.username,
                    error=failure.message,
                )
                if client.found_v2:
                    break  # a v2 registry said no: another endpoint would not say otherwise
        assert failure is not None
        raise failure
