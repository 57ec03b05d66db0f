"""Registers the ``token`` auth provider with the core."""

from __future__ import annotations

from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind
from dockyard.core.hookspecs import hookimpl
from dockyard.plugins.auth.token.config import TokenConfig
from dockyard.plugins.auth.token.provider import TokenProvider


def build(config: TokenConfig, context: DriverContext) -> TokenProvider:
    return TokenProvider(config, context.state_dir)


@hookimpl
def dockyard_auth_providers() -> DriverInfo:
    return DriverInfo(
        name="token",
        kind=DriverKind.AUTH,
        factory=build,
        config_class=TokenConfig,
        description="bearer tokens (Docker's registry token auth): users, rules, /token service",
        # authenticate/authorize check a remembered token (microseconds; a new token's
        # signature once, ~0.1 ms) and look at the users and rules files once a second:
        # cheaper on the event loop than a hop to a worker thread. login and refresh hash
        # passwords, but only the token endpoint calls them, in worker threads.
        capabilities=frozenset({"nonblocking", "token-service", "users"}),
    )
