"""Auth provider ``none``, the default: no credentials are asked for or checked, and every
request may pull, push and delete, as a CNCF registry configured without auth.

Every request, with credentials or without, is the same caller, :data:`ANYONE`: an identity
rather than ``None`` because the registry asks for an identity where a request needs no
permission at all (``GET /v2/``, which docker's clients call to find out whether to log in),
and must answer 200 here. So the registry has one path: it always asks a provider.
"""

from __future__ import annotations

from collections.abc import Sequence

from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind, EmptyConfig
from dockyard.core.hookspecs import hookimpl
from dockyard.core.httpauth import format_challenge
from dockyard.core.interfaces import Access, AuthRequest, Identity

#: The caller every request is when nobody checks who it is.
ANYONE = Identity(subject="anonymous")


class NoAuth:
    """Lets everyone do everything. Stateless, so thread-safe."""

    def authenticate(self, request: AuthRequest) -> Identity | None:
        return ANYONE

    def authorize(self, identity: Identity | None, access: Access) -> tuple[str, ...]:
        return access.actions

    def challenge(
        self, request: AuthRequest, wanted: Sequence[Access], error: str = ""
    ) -> dict[str, str]:
        # Never sent (nothing is refused), but a 401 must say how to log in.
        return {"WWW-Authenticate": format_challenge("Basic", {"realm": "dockyard"})}


def build(config: EmptyConfig, context: DriverContext) -> NoAuth:
    return NoAuth()


@hookimpl
def dockyard_auth_providers() -> DriverInfo:
    return DriverInfo(
        name="none",
        kind=DriverKind.AUTH,
        factory=build,
        # Nothing here blocks: the registry may call it on its event loop.
        capabilities={"nonblocking"},
        description="no credentials checked: anyone may pull, push and delete (the default)",
    )
