"""The auth-provider conformance suite (``dockyard.testing.auth``), run against the built-in
providers and a third-party one, each built by the plugin host as ``dockyard registry`` does."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import attrs
import pytest

from dockyard.core.config import Config, RegistryConfig
from dockyard.core.drivers import DriverKind
from dockyard.core.interfaces import Access, AuthProvider, Identity
from dockyard.core.plugins import PluginHost
from dockyard.plugins.auth.none import ANYONE
from dockyard.testing.auth import (
    SAMPLE_ACCESSES,
    AuthProviderSuite,
    AuthSubject,
    basic_auth,
    bearer_auth,
    check_challenge,
)
from tests.conftest import builtin_driver_names, run_authors_tests

from .conftest import build_auth_provider, htpasswd_file

KIND = DriverKind.AUTH

#: Built-in providers and the test class that runs the suite for each (a guard below keeps
#: this complete, so a new provider cannot go unchecked).
COVERED = {"none": "TestNone", "htpasswd": "TestHtpasswd", "token": "TestToken"}


def test_every_builtin_auth_provider_runs_the_suite() -> None:
    builtin = builtin_driver_names(KIND)
    assert builtin == set(COVERED), f"add a suite class for {builtin - set(COVERED)}"
    for class_name in COVERED.values():
        assert issubclass(globals()[class_name], AuthProviderSuite)


def test_auth_must_be_named() -> None:
    from dockyard.core.errors import ConfigError

    config = attrs.evolve(Config(), registry=RegistryConfig(auth=""))
    with pytest.raises(ConfigError, match=r"\[registry\] auth is empty.*'none' lets anyone in"):
        PluginHost(config, "registry").load()
    assert RegistryConfig().auth == "none"


class TestHtpasswd(AuthProviderSuite):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> AuthProvider:
        users = {"alice": "wonderland-42", "bob": "bu1lder!"}
        path = htpasswd_file(tmp_path / "users.htpasswd", users)
        return build_auth_provider(
            "htpasswd", {"path": str(path), "realm": "suite"}, tmp_path / "state"
        )

    @pytest.fixture
    def subject(self) -> AuthSubject:
        return AuthSubject(
            identity=Identity("alice"),
            headers=basic_auth("alice", "wonderland-42"),
            wrong_headers=basic_auth("alice", "bu1lder!"),  # bob's: right for someone else
            unknown_headers=basic_auth("carroll", "wonderland-42"),
            # As the CNCF registry: whoever logs in may do everything.
            grants=[(access, access.actions) for access in SAMPLE_ACCESSES],
        )

    @pytest.fixture
    def anonymous_grants(self) -> list[tuple[Access, tuple[str, ...]]]:
        return [(access, ()) for access in SAMPLE_ACCESSES]


class TestNone(AuthProviderSuite):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> AuthProvider:
        return build_auth_provider("none", {}, tmp_path / "state")

    @pytest.fixture
    def identity_without_credentials(self) -> Identity:
        return ANYONE

    @pytest.fixture
    def subject(self) -> AuthSubject:
        # Credentials are not looked at: whatever a client sends, it is the same caller.
        return AuthSubject(
            identity=ANYONE,
            headers=basic_auth("alice", "anything-at-all"),
            grants=[(access, access.actions) for access in SAMPLE_ACCESSES],
        )

    @pytest.fixture
    def anonymous_grants(self) -> list[tuple[Access, tuple[str, ...]]]:
        return [(access, access.actions) for access in SAMPLE_ACCESSES]


class TestToken(AuthProviderSuite):
    """Bearer tokens minted by the provider itself; wrong ones are expired or forged."""

    GRANTED = (Access("repository", "team/app", ("pull", "push")),)

    @pytest.fixture
    def provider(self, tmp_path: Path) -> AuthProvider:
        provider = build_auth_provider("token", {"hash-cost": 4}, tmp_path / "state")
        provider.add_user("alice", "wonderland-42")  # type: ignore[attr-defined]
        return provider

    @staticmethod
    def forged(provider: AuthProvider, subject: str, key: object, **changes: int) -> str:
        import jwt

        from dockyard.plugins.auth.token.keys import libtrust_key_id

        now = int(time.time())
        claims = {"iss": "dockyard", "sub": subject, "aud": "dockyard-registry",
                  "exp": now + 300, "nbf": now, "iat": now, "jti": "suite", "access": [],
                  **changes}  # fmt: skip
        kid = libtrust_key_id(key.public_key())  # type: ignore[attr-defined]
        return jwt.encode(claims, key, "ES256", headers={"kid": kid})  # type: ignore[arg-type]

    @pytest.fixture
    def subject(self, provider: AuthProvider) -> AuthSubject:
        from cryptography.hazmat.primitives.asymmetric import ec

        issuer = provider  # the token provider is its own token service
        identity = issuer.login("alice", "wonderland-42")  # type: ignore[attr-defined]
        token = issuer.issue(identity, self.GRANTED, "dockyard-registry").token  # type: ignore[attr-defined]
        own_key = issuer.signer.key.private_key  # type: ignore[attr-defined]
        long_ago = int(time.time()) - 3600
        return AuthSubject(
            identity=Identity("alice", (), self.GRANTED),
            headers=bearer_auth(token),
            # alice's own token, expired: signed by the right key, so it is checked in full.
            wrong_headers=bearer_auth(
                self.forged(provider, "alice", own_key, exp=long_ago, iat=long_ago)
            ),
            unknown_headers=bearer_auth(
                self.forged(provider, "carroll", ec.generate_private_key(ec.SECP256R1()))
            ),
            # Without a rules file every user may do everything with a valid repository name.
            grants=[
                (access, () if ":" in access.name else access.actions) for access in SAMPLE_ACCESSES
            ],
        )

    @pytest.fixture
    def anonymous_grants(self) -> list[tuple[Access, tuple[str, ...]]]:
        return [(access, ()) for access in SAMPLE_ACCESSES]


class TestThirdPartyStatic(AuthProviderSuite):
    """The example third-party distribution's ``static`` provider, loaded by entry point."""

    @pytest.fixture
    def provider(
        self, plugin_sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> AuthProvider:
        monkeypatch.syspath_prepend(str(plugin_sites["dockyard-test-plugins"]))
        monkeypatch.delenv("DOCKYARD_DISABLE_PLUGIN_AUTOLOAD", raising=False)
        return build_auth_provider(
            "static", {"users": {"alice": "looking-glass"}}, tmp_path / "state"
        )

    @pytest.fixture
    def subject(self) -> AuthSubject:
        return AuthSubject(
            identity=Identity("alice"),
            headers=basic_auth("alice", "looking-glass"),
            wrong_headers=basic_auth("alice", "looking-GLASS"),
            unknown_headers=basic_auth("mad-hatter", "looking-glass"),
        )

    @pytest.fixture
    def anonymous_grants(self) -> list[tuple[Access, tuple[str, ...]]]:
        push = Access("repository", "team/app", ("pull", "push"))
        return [(push, ("pull",)), (Access("repository", "team/app", ("delete",)), ())]


AUTHORS_TESTS = textwrap.dedent(
    """
    import pytest

    from dockyard.core.config import Config, RegistryConfig
    from dockyard.core.drivers import DriverKind
    from dockyard.core.interfaces import Identity
    from dockyard.core.plugins import PluginHost
    from dockyard.testing.auth import AuthProviderSuite, AuthSubject, basic_auth

    USERS = {"alice": "looking-glass"}


    class TestMyProvider(AuthProviderSuite):
        @pytest.fixture
        def provider(self, tmp_path):
            config = Config(registry=RegistryConfig(auth="static"),
                            driver_tables={(DriverKind.AUTH, "static"): {"users": USERS}})
            return PluginHost(config, "registry").load().build(DriverKind.AUTH, tmp_path)

        @pytest.fixture
        def subject(self):
            return AuthSubject(
                identity=Identity("alice"),
                headers=basic_auth("alice", "looking-glass"),
                wrong_headers=basic_auth("alice", "through-the"),
                unknown_headers=basic_auth("nobody-here", "looking-glass"),
            )
    """
)


def test_a_provider_authors_tests_run_the_suite(tmp_path: Path, plugin_sites) -> None:
    """A plugin author's test module, in a directory of its own, subclasses the suite and
    passes it: nothing in the suite depends on this repository's tests."""
    sites = [plugin_sites["dockyard-test-plugins"]]
    run_authors_tests(tmp_path, AUTHORS_TESTS, sites=sites, min_passed=20)


# The suite's challenge check, on challenges no built-in provider sends yet (Bearer).
PULL = Access("repository", "library/busybox", ("pull",))
PUSH = Access("repository", "team/app", ("pull", "push"))
REALM = 'realm="https://auth.example/token",service="registry.example"'


@pytest.mark.parametrize(
    ("value", "wanted", "error"),
    [
        ('Basic realm="r"', [PULL], "insufficient_scope"),  # Basic carries no error
        ('Basic realm="r",charset="UTF-8"', [], ""),
        (f"Bearer {REALM}", [], ""),
        (f'Bearer {REALM},scope="repository:library/busybox:pull"', [PULL], ""),
        (
            f'Bearer {REALM},scope="repository:team/app:pull,push '
            f'repository:library/busybox:pull",error="insufficient_scope"',
            [PUSH, PULL],
            "insufficient_scope",
        ),
        (f'Basic realm="r", Bearer {REALM},error="invalid_token"', [], "invalid_token"),
    ],
)
def test_challenge_check_accepts(value: str, wanted: list[Access], error: str) -> None:
    check_challenge(value, wanted, error)


@pytest.mark.parametrize(
    ("value", "wanted", "error"),
    [
        ("Basic realm=unquoted stuff", [], ""),
        ("Basic", [], ""),
        ('Basic realm="r",error="invalid_token"', [], "invalid_token"),
        ('Digest realm="r"', [], ""),
        ('Bearer realm="r"', [], ""),  # no service
        (f'Bearer {REALM},scope="repository:team/app:pull"', [PUSH], ""),
        (f'Bearer {REALM},scope="repository:library/busybox:pull"', [PULL, PUSH], ""),
        (f'Bearer {REALM},scope=""', [], ""),
        (f'Bearer {REALM},scope="repository:library/busybox:pull"', [PULL], "invalid_token"),
        (f'Bearer {REALM},error="invalid_token"', [], ""),
        (f'Bearer {REALM},realm="twice"', [], ""),
    ],
)
def test_challenge_check_refuses(value: str, wanted: list[Access], error: str) -> None:
    with pytest.raises((AssertionError, ValueError)):
        check_challenge(value, wanted, error)
