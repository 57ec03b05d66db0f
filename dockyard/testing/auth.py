"""A conformance suite for auth providers, importable by plugin authors.

It checks the contract of :class:`~dockyard.core.interfaces.AuthProvider` from the outside,
the way the registry uses a provider: who a request is, what they may do, and how a refusal
tells a client to log in. A provider author subclasses :class:`AuthProviderSuite` and provides
the provider and one user it knows::

    import pytest

    from dockyard.core.interfaces import Access, Identity
    from dockyard.testing.auth import AuthProviderSuite, AuthSubject, basic_auth

    class TestMyProvider(AuthProviderSuite):
        @pytest.fixture
        def provider(self, tmp_path):
            return MyProvider(users={"alice": "s3cret-pass"})

        @pytest.fixture
        def subject(self):
            return AuthSubject(
                identity=Identity("alice"),
                headers=basic_auth("alice", "s3cret-pass"),
                wrong_headers=basic_auth("alice", "not-her-pass"),
                unknown_headers=basic_auth("nobody-here", "s3cret-pass"),
                grants=[(Access("repository", "alice/app", ("pull", "push")), ("pull", "push"))],
            )

        # Optional: what anonymous callers get, checked exactly (default: only the shape).
        @pytest.fixture
        def anonymous_grants(self):
            return [(Access("repository", "alice/app", ("pull", "push")), ())]

Use secrets of six characters or more: the suite looks for them in error messages.
A provider that asks for no credentials at all (``none``) overrides
``identity_without_credentials`` with the identity it gives everyone, and leaves
``wrong_headers`` and ``unknown_headers`` out (the tests that need them are skipped).
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import pytest

from dockyard.core.errors import InvalidCredentials
from dockyard.core.httpauth import parse_challenges
from dockyard.core.interfaces import Access, AuthProvider, AuthRequest, Identity

#: Grants and the like: pairs of a permission asked for and the actions expected back.
Grants = Sequence[tuple[Access, tuple[str, ...]]]

#: Permissions the registry asks for, as its endpoints do.
SAMPLE_ACCESSES = (
    Access("repository", "library/busybox", ("pull",)),
    Access("repository", "library/busybox", ("pull", "push")),
    Access("repository", "team/app", ("push", "pull")),
    Access("repository", "team/app", ("delete",)),
    Access("repository", "127.0.0.1:5000/app", ("pull",)),
    Access("registry", "catalog", ("*",)),
)
#: The ``error`` values of RFC 6750 section 3.1 the registry uses.
BEARER_ERRORS = ("invalid_token", "insufficient_scope")
#: A scope token of RFC 6750 section 3: printable ASCII except space, '"' and '\'.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
#: Shortest piece of a credential looked for in error messages (shorter ones match by chance).
_SECRET_MIN = 6
#: A refusal may take up to twice as long as another one, plus this much (timer noise).
TIMING_SLACK = 0.0005


def basic_auth(user: str, password: str) -> dict[str, str]:
    """Headers carrying HTTP Basic credentials (lower-case names, as providers see them)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def bearer_auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@attrs.frozen
class AuthSubject:
    """A caller the provider under test knows, and how to present them.

    ``headers`` are right credentials and ``identity`` what they authenticate as.
    ``wrong_headers`` claim the same caller with a wrong secret (a wrong password, a forged or
    expired token); ``unknown_headers`` claim a caller the provider does not know. ``grants``
    pairs permissions with the actions :meth:`AuthProvider.authorize` must return for
    ``identity`` (``("*",)`` from the provider counts as all of them).
    """

    identity: Identity
    headers: Mapping[str, str]
    wrong_headers: Mapping[str, str] | None = None
    unknown_headers: Mapping[str, str] | None = None
    grants: Grants = ()


def request_with(headers: Mapping[str, str], path: str = "/v2/") -> AuthRequest:
    return AuthRequest(
        method="GET",
        path=path,
        headers={"host": "127.0.0.1:5000", "user-agent": "dockyard-auth-suite", **headers},
        client_address="127.0.0.1",
    )


def _granted(provider: AuthProvider, identity: Identity | None, access: Access) -> tuple[str, ...]:
    """What ``authorize`` returns, with ``("*",)`` read as every action asked for."""
    actions = provider.authorize(identity, access)
    return access.actions if tuple(actions) == ("*",) else tuple(actions)


def _secret_parts(headers: Mapping[str, str]) -> set[str]:
    """The pieces of a credential that must never show in an error: each word of the header
    value, and a Basic password."""
    parts: set[str] = set()
    for value in headers.values():
        words = value.split()
        parts.update(word for word in words[1:] if len(word) >= _SECRET_MIN)
        if len(words) == 2 and words[0].lower() == "basic":
            try:
                decoded = base64.b64decode(words[1], validate=True).decode()
            except (binascii.Error, ValueError):
                continue
            password = decoded.partition(":")[2]
            if len(password) >= _SECRET_MIN:
                parts.add(password)
    return parts


def _refusal(
    provider: AuthProvider, headers: Mapping[str, str], secrets: set[str]
) -> InvalidCredentials:
    with pytest.raises(InvalidCredentials) as caught:
        provider.authenticate(request_with(headers))
    error = caught.value
    shown = " ".join([str(error), repr(error), error.subject, *map(str, error.args)])
    leaked = sorted(part for part in secrets if part in shown)
    assert not leaked, f"the refusal quotes the credentials: {shown!r}"
    return error


def _is_subsequence(found: tuple[str, ...], asked: tuple[str, ...]) -> bool:
    remaining = iter(asked)
    return all(action in remaining for action in found)


class AuthProviderSuite:
    """The tests every :class:`~dockyard.core.interfaces.AuthProvider` must pass."""

    @pytest.fixture
    def provider(self) -> Any:
        raise NotImplementedError("provide a `provider` fixture returning the provider to test")

    @pytest.fixture
    def subject(self) -> AuthSubject:
        raise NotImplementedError("provide a `subject` fixture: an AuthSubject it knows")

    @pytest.fixture
    def anonymous_grants(self) -> Grants:
        """What anonymous callers must be granted, exactly; empty: only the shape is checked."""
        return ()

    @pytest.fixture
    def identity_without_credentials(self) -> Identity | None:
        """What a request without credentials authenticates as: ``None`` (anonymous) for every
        provider that asks for credentials."""
        return None

    # ------------------------------------------------------------------ who is asking

    def test_is_an_auth_provider(self, provider: AuthProvider) -> None:
        assert isinstance(provider, AuthProvider)

    def test_no_credentials(
        self, provider: AuthProvider, identity_without_credentials: Identity | None
    ) -> None:
        assert provider.authenticate(request_with({})) == identity_without_credentials
        unrelated = {"accept": "application/json", "cookie": "session=abcdef"}
        assert provider.authenticate(request_with(unrelated)) == identity_without_credentials

    def test_right_credentials_give_the_identity(
        self, provider: AuthProvider, subject: AuthSubject
    ) -> None:
        for _ in range(2):  # nothing is used up by a first success
            assert provider.authenticate(request_with(subject.headers)) == subject.identity

    def test_wrong_secret_is_invalid_credentials(
        self, provider: AuthProvider, subject: AuthSubject
    ) -> None:
        if subject.wrong_headers is None:
            pytest.skip("this provider checks no secret")
        secrets = _secret_parts(subject.wrong_headers) | _secret_parts(subject.headers)
        error = _refusal(provider, subject.wrong_headers, secrets)
        # The registry counts failures per user: the claimed user, or nobody in particular.
        assert error.subject in ("", subject.identity.subject)
        # A refusal changes nothing: the right secret still works.
        assert provider.authenticate(request_with(subject.headers)) == subject.identity

    def test_unknown_caller_is_invalid_credentials(
        self, provider: AuthProvider, subject: AuthSubject
    ) -> None:
        if subject.unknown_headers is None:
            pytest.skip("this provider knows no callers by name")
        _refusal(provider, subject.unknown_headers, _secret_parts(subject.unknown_headers))

    @pytest.mark.parametrize(
        "value",
        [
            "Basic !!!!not-base64!!!!",
            "Basic " + base64.b64encode(b"no-colon-here").decode(),
            "Basic " + base64.b64encode(b"\xff\xfe\xfd:\xfc\xfb").decode(),  # not UTF-8
            "Basic " + base64.b64encode(b"alice:" + b"p" * 100_000).decode(),
            "Basic " + "QUJD" * 250_000,  # a megabyte
            "Basic",
            "Basic ====",
            "Basic YWxpY2U6c2VjcmV0 trailing words",
            "Basic \xe9\xff\xfe",  # bytes that are not ASCII, as a server decodes them
            "Bearer",
            "Bearer not.a.token",
            "Bearer " + "x" * 100_000,
            "Bearer \xe9\xe9\xe9",
            'Digest username="alice", realm="x"',
            "",
            "   ",
            "\x00",
        ],
        ids=lambda value: repr(value[:24]),
    )
    def test_malformed_authorization_is_never_a_crash(
        self,
        provider: AuthProvider,
        identity_without_credentials: Identity | None,
        value: str,
    ) -> None:
        try:
            found = provider.authenticate(request_with({"authorization": value}))
        except InvalidCredentials:
            return
        assert found in (None, identity_without_credentials), f"{value[:40]!r} logged in"

    # ------------------------------------------------------------------ what they may do

    def test_authorize_returns_a_subset_in_order(
        self, provider: AuthProvider, subject: AuthSubject
    ) -> None:
        accesses = [*SAMPLE_ACCESSES, *(access for access, _ in subject.grants)]
        for identity in (None, subject.identity):
            for access in accesses:
                actions = provider.authorize(identity, access)
                assert isinstance(actions, tuple), f"authorize returned {type(actions).__name__}"
                if actions == ("*",):
                    continue
                assert len(set(actions)) == len(actions), f"{actions} repeats an action"
                assert _is_subsequence(actions, access.actions), (
                    f"authorize({identity}, {access}) gave {actions}: not a subset in order"
                )

    def test_grants(
        self, provider: AuthProvider, subject: AuthSubject, anonymous_grants: Grants
    ) -> None:
        for access, expected in subject.grants:
            assert _granted(provider, subject.identity, access) == expected, access
        for access, expected in anonymous_grants:
            assert _granted(provider, None, access) == expected, access

    def test_authorize_ignores_the_identitys_own_grants(
        self, provider: AuthProvider, subject: AuthSubject
    ) -> None:
        # The registry applies a token's `granted` itself; the rules must not look at it.
        limited = attrs.evolve(subject.identity, granted=())
        for access in SAMPLE_ACCESSES:
            assert _granted(provider, limited, access) == _granted(
                provider, subject.identity, access
            )

    # ------------------------------------------------------------------ how to log in

    @pytest.mark.parametrize(
        "wanted",
        [
            (),
            (Access("repository", "library/busybox", ("pull",)),),
            (
                Access("repository", "team/app", ("pull", "push")),
                Access("repository", "library/base", ("pull",)),
            ),
            (Access("registry", "catalog", ("*",)),),
        ],
        ids=["base", "pull", "mount", "catalog"],
    )
    @pytest.mark.parametrize("error", ["", *BEARER_ERRORS])
    def test_challenge_is_well_formed(
        self, provider: AuthProvider, wanted: tuple[Access, ...], error: str
    ) -> None:
        headers = provider.challenge(request_with({}), list(wanted), error)
        values = [v for k, v in headers.items() if k.lower() == "www-authenticate"]
        assert len(values) == 1, f"one WWW-Authenticate header, not {headers}"
        check_challenge(values[0], wanted, error)

    # ------------------------------------------------------------------ under load and attack

    def test_concurrent_calls(
        self,
        provider: AuthProvider,
        subject: AuthSubject,
        identity_without_credentials: Identity | None,
    ) -> None:
        access = SAMPLE_ACCESSES[1]
        expected_grant = _granted(provider, subject.identity, access)
        start = threading.Barrier(8)

        def worker(_: int) -> None:
            start.wait(timeout=30)
            for _ in range(5):
                assert provider.authenticate(request_with(subject.headers)) == subject.identity
                assert provider.authenticate(request_with({})) == identity_without_credentials
                if subject.wrong_headers is not None:
                    with pytest.raises(InvalidCredentials):
                        provider.authenticate(request_with(subject.wrong_headers))
                assert _granted(provider, subject.identity, access) == expected_grant
                provider.challenge(request_with({}), [access], "")

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(worker, range(8)))

    def test_a_wrong_secret_and_an_unknown_caller_take_the_same_time(
        self, provider: AuthProvider, subject: AuthSubject
    ) -> None:
        if subject.wrong_headers is None or subject.unknown_headers is None:
            pytest.skip("this provider has no wrong secrets or no callers by name")
        wrong = _refusal_timer(provider, subject.wrong_headers)
        unknown = _refusal_timer(provider, subject.unknown_headers)
        wrong(), unknown()  # warm up (a first call may read files or build caches)
        samples: dict[str, list[float]] = {"wrong secret": [], "unknown caller": []}
        for turn in range(20):
            # Interleaved, first one then the other first: a busy machine's scheduler can fall
            # into step with a loop and always preempt its first call.
            pair = [("wrong secret", wrong), ("unknown caller", unknown)]
            for name, timed in pair if turn % 2 else reversed(pair):
                samples[name].append(timed())
        # The fastest of each is its own cost; slower runs measure the machine's other work.
        fastest = {name: min(times) for name, times in samples.items()}
        slow, fast = max(fastest.values()), min(fastest.values())
        assert slow <= 2 * fast + TIMING_SLACK, (
            f"refusals differ in time, which tells whether a caller exists: {fastest}"
        )


def check_challenge(value: str, wanted: Sequence[Access], error: str) -> None:
    """Fail unless ``value`` is a ``WWW-Authenticate`` value a registry may send for a request
    that needs ``wanted`` (``error``: what the registry asked to be said): Basic or Bearer
    challenges in RFC 7235 syntax, each with a realm; Basic as RFC 7617 has it; Bearer as
    RFC 6750 and Docker's token spec have it."""
    challenges = parse_challenges(value)  # strict: ValueError names what is wrong
    for challenge in challenges:
        scheme = challenge.scheme.lower()
        assert scheme in ("basic", "bearer"), f"unknown scheme {challenge.scheme}"
        assert challenge.params.get("realm"), f"{challenge.scheme} names no realm"
        if scheme == "basic":
            # A realm and, optionally, the charset (UTF-8 is the only one there is).
            assert set(challenge.params) <= {"realm", "charset"}, challenge.params
            assert challenge.params.get("charset", "UTF-8").upper() == "UTF-8"
        else:
            _check_bearer(challenge.params, wanted, error)


def _check_bearer(params: Mapping[str, str], wanted: Sequence[Access], error: str) -> None:
    assert params.get("service"), f"a bearer challenge names the service: {params}"
    if wanted:
        scope = params.get("scope", "")
        tokens = scope.split(" ")
        assert all(_SCOPE_TOKEN.fullmatch(token) for token in tokens), f"scope {scope!r}"
        assert {Access.parse(token) for token in tokens} == set(wanted), (
            f"scope {scope!r} should name {[str(a) for a in wanted]}"
        )
    else:
        assert "scope" not in params, f"nothing was asked, yet the scope is {params['scope']!r}"
    if error:
        assert params.get("error") == error, f"error={error!r} not in {params}"
    else:
        assert "error" not in params, f"no error was given, yet the challenge has {params}"


def _refusal_timer(provider: AuthProvider, headers: Mapping[str, str]) -> Callable[[], float]:
    request = request_with(headers)

    def timed() -> float:
        started = time.perf_counter()
        try:
            provider.authenticate(request)
        except InvalidCredentials:
            return time.perf_counter() - started
        raise AssertionError(f"{dict(headers)} was let in")

    return timed
