"""Who may do what: the registry's side of the auth contract, for every request.

The provider says who the caller is and what its rules grant; a bearer token may grant less
(its ``access`` claim). This module turns those answers into the spec's replies, as
:class:`~dockyard.core.interfaces.AuthProvider` documents them: pass, 401 with a challenge
(anonymous, wrong credentials, or a token too narrow for what the rules would allow), 403
``DENIED``, or 429 once an address or a user has failed too often.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from dockyard.core.errors import InvalidCredentials
from dockyard.core.interfaces import Access, AuthProvider, AuthRequest, Identity
from dockyard.registry.errors import RegistryError
from dockyard.registry.ratelimit import RateLimiter, limit_keys

_log = structlog.get_logger("dockyard.registry.auth")

T = TypeVar("T")


def auth_request(request: Request) -> AuthRequest:
    """The parts of a starlette request a provider may look at (read from the ASGI scope:
    ``request.url`` builds a whole URL, a noticeable cost on every request)."""
    scope = request.scope
    client = scope.get("client")
    return AuthRequest(
        method=scope["method"],
        path=scope["path"],
        headers=dict(request.headers),
        client_address=client[0] if client else "",
        scheme=scope.get("scheme", "http"),
    )


def too_many_requests(limiter: RateLimiter) -> RegistryError:
    return RegistryError(
        "TOOMANYREQUESTS",
        message="too many failed attempts; try again later",
        headers={"Retry-After": str(limiter.retry_after())},
    )


def _detail(wanted: Sequence[Access]) -> list[dict[str, str]]:
    """The error detail distribution gives: one entry per action asked for."""
    return [
        {"Type": a.type, "Name": a.name, "Action": action} for a in wanted for action in a.actions
    ]


def _by_rules(
    provider: AuthProvider, identity: Identity | None, wanted: Sequence[Access]
) -> list[set[str]]:
    """The actions of each of ``wanted`` the provider's rules grant (``*`` spelled out)."""
    granted = []
    for access in wanted:
        rules = provider.authorize(identity, access)
        granted.append(set(access.actions) if "*" in rules else set(rules) & set(access.actions))
    return granted


def _covered(
    identity: Identity | None, wanted: Sequence[Access], by_rules: Sequence[set[str]]
) -> bool:
    """Whether the rules and, for a token, what it carries allow every action wanted."""
    for access, rules in zip(wanted, by_rules, strict=True):
        carried = set(identity.carried(access)) if identity else set(access.actions)
        if not set(access.actions) <= rules & carried:
            return False
    return True


#: The capability an auth provider's ``DriverInfo`` declares when its methods never block (no
#: password hashing, no I/O): the registry then calls them on its event loop. A hop to a worker
#: thread and back costs more than verifying a cached token.
NONBLOCKING = "nonblocking"


class Gatekeeper:
    """Checks one request's needs against the provider; ``None`` provider: everyone may.

    ``nonblocking`` says the provider declared :data:`NONBLOCKING`; otherwise each of its calls
    runs in a worker thread, since checking a password hash takes tens of milliseconds.
    """

    def __init__(
        self, provider: AuthProvider | None, failures: RateLimiter, nonblocking: bool = False
    ) -> None:
        self.provider = provider
        self.failures = failures
        self.nonblocking = nonblocking

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        if self.nonblocking:
            return function(*args)
        return await run_in_threadpool(function, *args)

    async def check(
        self,
        request: Request,
        wanted: Sequence[Access],
        also_challenge: Sequence[Access] = (),
    ) -> Identity | None:
        """Return the caller (``None``: anonymous) when ``wanted`` is allowed; raise the
        :class:`RegistryError` to answer otherwise. Empty ``wanted`` asks only that the caller
        be known (``GET /v2/``, the spec's version check, answers 401 to anonymous callers).
        A challenge also names ``also_challenge``: what the request would like besides (a
        mount's source), so that the client's next token covers it."""
        provider = self.provider
        if provider is None:
            return None
        asked = auth_request(request)
        if self.failures.exhausted(limit_keys(asked.client_address)):
            raise too_many_requests(self.failures)
        scope = [*wanted, *also_challenge]
        try:
            identity = await self._call(provider.authenticate, asked)
        except InvalidCredentials as exc:
            raise self._failed(provider, asked, scope, exc) from None
        if identity is not None and self.failures.exhausted(limit_keys(subject=identity.subject)):
            # Locked after failures: right credentials must not tell a guesser they were right.
            raise too_many_requests(self.failures)
        if not wanted:
            if identity is None:
                raise self._challenge(provider, asked, scope)
            return identity
        by_rules = await self._call(_by_rules, provider, identity, wanted)
        if _covered(identity, wanted, by_rules):
            return identity
        if identity is None or not identity.subject:
            # Anonymous, perhaps holding an anonymous token: logging in may help.
            raise self._challenge(provider, asked, scope)
        if identity.granted is not None and _covered(None, wanted, by_rules):
            # The rules allow it; this token was issued for less. A wider token will do.
            raise self._challenge(provider, asked, scope, error="insufficient_scope")
        _log.info(
            "access denied",
            subject=identity.subject,
            address=asked.client_address,
            wanted=[str(a) for a in wanted],
        )
        raise RegistryError("DENIED", detail=_detail(wanted))

    async def permits(self, identity: Identity | None, wanted: Sequence[Access]) -> bool:
        """Whether a caller :meth:`check` let in may also do ``wanted`` (a mount's source);
        nothing is answered for it."""
        if self.provider is None:
            return True
        by_rules = await self._call(_by_rules, self.provider, identity, wanted)
        return _covered(identity, wanted, by_rules)

    def _failed(
        self,
        provider: AuthProvider,
        asked: AuthRequest,
        wanted: Sequence[Access],
        exc: InvalidCredentials,
    ) -> RegistryError:
        # The reason is the provider's, written to be safe to log: never a password or token.
        _log.warning(
            "authentication failed",
            reason=str(exc),
            subject=exc.subject,
            address=asked.client_address,
        )
        if not self.failures.take(limit_keys(asked.client_address, exc.subject)):
            return too_many_requests(self.failures)
        bearer = asked.headers.get("authorization", "")[:7].lower() == "bearer "
        return self._challenge(provider, asked, wanted, error="invalid_token" if bearer else "")

    @staticmethod
    def _challenge(
        provider: AuthProvider, asked: AuthRequest, wanted: Sequence[Access], error: str = ""
    ) -> RegistryError:
        headers = provider.challenge(asked, wanted, error)
        return RegistryError("UNAUTHORIZED", detail=_detail(wanted) or None, headers=headers)
