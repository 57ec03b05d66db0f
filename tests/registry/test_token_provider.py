"""The ``token`` auth provider on its own: its files, its rules, and every way a bearer token
can be wrong. Tokens are forged here with pyjwt and the provider's real key (or another)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import stat
import time
from pathlib import Path

import bcrypt
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.core.errors import ConfigError, InvalidCredentials, InvalidParameter, NotFound
from dockyard.core.interfaces import (
    Access,
    AuthProvider,
    AuthRequest,
    Identity,
    TokenIssuer,
    UserManager,
)
from dockyard.plugins.auth.token import accounts
from dockyard.plugins.auth.token.config import TokenConfig
from dockyard.plugins.auth.token.keys import libtrust_key_id
from dockyard.plugins.auth.token.provider import TokenProvider

SERVICE = "dockyard-registry"
ISSUER = "dockyard"


def make(tmp_path: Path, rules: str | None = None, **options: object) -> TokenProvider:
    if rules is not None:
        (tmp_path / "rules.toml").write_text(rules)
        options["rules_file"] = str(tmp_path / "rules.toml")
    options.setdefault("hash_cost", 4)
    return TokenProvider(TokenConfig(**options), tmp_path / "state")  # type: ignore[arg-type]


@pytest.fixture
def provider(tmp_path: Path) -> TokenProvider:
    made = make(tmp_path)
    made.add_user("alice", "wonderland")
    return made


def bearer(token: str) -> AuthRequest:
    return AuthRequest("GET", "/v2/", {"authorization": f"Bearer {token}", "host": "reg:5000"})


def private_key(provider: TokenProvider) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(
        (provider_state(provider) / "signing-key.pem").read_bytes(), None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def provider_state(provider: TokenProvider) -> Path:
    return provider.users_path.parent


def claims(**changes: object) -> dict:
    now = int(time.time())
    document: dict = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "j1",
        "access": [{"type": "repository", "name": "alice/app", "actions": ["pull"]}],
    }
    for key, value in changes.items():
        if value is ...:
            document.pop(key)
        else:
            document[key] = value
    return document


def forge(provider: TokenProvider, key: object = None, headers: dict | None = None, **changes):
    key = key if key is not None else private_key(provider)
    kid = libtrust_key_id(key.public_key())  # type: ignore[attr-defined]
    return jwt.encode(claims(**changes), key, "ES256", headers={"kid": kid, **(headers or {})})  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def refused(provider: TokenProvider, token: str) -> str:
    with pytest.raises(InvalidCredentials) as caught:
        provider.authenticate(bearer(token))
    assert token not in str(caught.value)
    return str(caught.value)


# ------------------------------------------------------------------------------ the contract


def test_it_is_an_auth_provider_a_token_issuer_and_a_user_manager(provider):
    assert isinstance(provider, AuthProvider)
    assert isinstance(provider, TokenIssuer)
    assert isinstance(provider, UserManager)


def test_a_minted_token_carries_the_spec_claims_and_verifies(provider):
    identity = provider.login("alice", "wonderland")
    granted = [Access("repository", "alice/app", ("pull", "push"))]
    issued = provider.issue(identity, granted, SERVICE, client_id="test")
    header = jwt.get_unverified_header(issued.token)
    cert = x509.load_pem_x509_certificate(provider.signing_certificates().encode())
    assert header == {"alg": "ES256", "typ": "JWT", "kid": libtrust_key_id(cert.public_key())}
    decoded = jwt.decode(
        issued.token, cert.public_key(), algorithms=["ES256"], audience=SERVICE, issuer=ISSUER
    )
    assert set(decoded) == {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"}
    assert decoded["sub"] == "alice" and decoded["aud"] == SERVICE
    assert decoded["exp"] - decoded["iat"] == issued.expires_in == 300
    assert decoded["access"] == [
        {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}
    ]
    assert issued.refresh_token == ""
    again = provider.authenticate(bearer(issued.token))
    assert again == Identity("alice", (), tuple(granted))


def test_the_libtrust_key_id_is_twelve_groups_of_the_spki_digest(provider):
    cert = x509.load_pem_x509_certificate(provider.signing_certificates().encode())
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    groups = libtrust_key_id(cert.public_key()).split(":")
    assert len(groups) == 12 and all(len(g) == 4 for g in groups)
    assert base64.b32decode("".join(groups)) == hashlib.sha256(der).digest()[:30]


def test_the_key_is_generated_once_private_and_its_certificate_published(tmp_path):
    first = make(tmp_path)
    state = tmp_path / "state"
    assert stat.S_IMODE((state / "signing-key.pem").stat().st_mode) == 0o600
    assert (state / "token-cert.pem").read_text() == first.signing_certificates()
    second = make(tmp_path)
    assert second.signer.key.key_id == first.signer.key.key_id


def test_rs256_keys_and_a_given_key(tmp_path):
    rsa_provider = make(tmp_path / "a", algorithm="RS256")
    rsa_provider.add_user("alice", "pw")
    token = rsa_provider.issue(None, [], SERVICE).token
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert rsa_provider.authenticate(bearer(token)) == Identity("", (), ())
    given = tmp_path / "given.pem"
    given.write_bytes((tmp_path / "a" / "state" / "signing-key.pem").read_bytes())
    with pytest.raises(ConfigError, match="the signing key is for RS256 but algorithm is ES256"):
        make(tmp_path / "b", signing_key=str(given))
    same = make(tmp_path / "c", signing_key=str(given), algorithm="RS256")
    assert same.signer.key.key_id == rsa_provider.signer.key.key_id


# ------------------------------------------------------------------------------ bad tokens


def test_expired_and_not_yet_valid_tokens_are_refused(provider):
    long_ago = int(time.time()) - 3600
    assert refused(provider, forge(provider, exp=long_ago, iat=long_ago - 60)) == "token expired"
    later = int(time.time()) + 3600
    assert refused(provider, forge(provider, nbf=later)) == "token not valid yet"
    # Within the leeway (30 s) a skewed clock is forgiven.
    assert provider.authenticate(bearer(forge(provider, nbf=int(time.time()) + 10)))


def test_a_token_signed_by_another_key_is_refused(provider, tmp_path):
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert refused(provider, forge(provider, key=stranger)) == "token signed by an unknown key"
    # Claiming our key ID does not help either.
    ours = {"kid": provider.signer.key.key_id}
    token = jwt.encode(claims(), stranger, "ES256", headers=ours)
    assert refused(provider, token) == "token signature does not verify"
    # Nor does carrying the stranger's certificate chain in x5c.
    token = forge(provider, key=stranger, headers={"x5c": ["MIIB"], "kid": "nope"})
    assert refused(provider, token) == "token signed by an unknown key"


def test_alg_none_is_refused(provider):
    header = {"alg": "none", "typ": "JWT", "kid": provider.signer.key.key_id}
    token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}."
    assert refused(provider, token) == "token algorithm not allowed for its key"


def test_hs256_keyed_with_the_public_key_is_refused(provider):
    public_pem = provider_state(provider).joinpath("token-cert.pem").read_bytes()
    cert = x509.load_pem_x509_certificate(public_pem)
    for secret in (
        public_pem,
        cert.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ):
        header = {"alg": "HS256", "typ": "JWT", "kid": provider.signer.key.key_id}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{b64(signature)}"
        assert refused(provider, token) == "token algorithm not allowed for its key"


def test_tampered_claims_are_refused(provider):
    token = forge(provider)
    head, _, signature = token.split(".")
    wider = claims(access=[{"type": "repository", "name": "alice/app", "actions": ["push"]}])
    tampered = f"{head}.{b64(json.dumps(wider).encode())}.{signature}"
    assert refused(provider, tampered) == "token signature does not verify"
    # A cached verification is of the whole token: the same signature on other claims is
    # checked anew.
    assert provider.authenticate(bearer(token))
    assert refused(provider, tampered) == "token signature does not verify"


def test_another_service_or_issuer_is_refused(provider):
    assert refused(provider, forge(provider, aud="other-registry")) == "token for another service"
    assert refused(provider, forge(provider, aud=[SERVICE, "x"])) == "token for another service"
    assert refused(provider, forge(provider, iss="somebody")) == "token from another issuer"


def test_missing_claims_and_malformed_access_are_refused(provider):
    for claim in ("exp", "nbf", "iss", "sub", "jti"):
        assert refused(provider, forge(provider, **{claim: ...})).startswith("token lacks")
    assert refused(provider, forge(provider, access="everything")) == "malformed access claim"
    bad = [{"type": "repository", "name": "x", "actions": "pull"}]
    assert refused(provider, forge(provider, access=bad)) == "malformed access claim"
    for garbage in ("a.b.c", "x" * 20000, "a.b", "..."):
        assert refused(provider, garbage) == "malformed token"


def test_refresh_and_access_tokens_cannot_stand_for_each_other(provider):
    identity = provider.login("alice", "wonderland")
    issued = provider.issue(identity, [], SERVICE, offline=True)
    assert refused(provider, issued.refresh_token) == "token for another service"
    with pytest.raises(InvalidCredentials):
        provider.refresh(issued.token)
    # A refresh token's audience is never a registry's: the CNCF registry refuses it too.
    assert jwt.decode(issued.refresh_token, options={"verify_signature": False})["aud"] != SERVICE


def test_trusted_certificates_of_another_token_server(tmp_path):
    other = make(tmp_path / "other")
    other.add_user("alice", "pw")
    token = other.issue(other.login("alice", "pw"), [], SERVICE).token
    alone = make(tmp_path / "alone")
    assert refused(alone, token) == "token signed by an unknown key"
    trusting = make(tmp_path / "trusting", trusted_certs=[str(other.certificate_path)])
    assert trusting.authenticate(bearer(token)) == Identity("alice", (), ())


def test_basic_credentials_are_not_bearer_credentials(provider):
    basic = base64.b64encode(b"alice:wonderland").decode()
    request = AuthRequest("GET", "/v2/", {"authorization": f"Basic {basic}"})
    assert provider.authenticate(request) is None
    assert provider.authenticate(AuthRequest("GET", "/v2/", {})) is None
    with pytest.raises(InvalidCredentials, match="malformed bearer token"):
        provider.authenticate(AuthRequest("GET", "/v2/", {"authorization": "Bearer a b"}))


# ------------------------------------------------------------------------------ passwords


def test_passwords_are_stored_as_bcrypt_hashes_only(provider):
    text = provider.users_path.read_text()
    assert "wonderland" not in text
    stored = accounts.Users.parse(accounts.read_toml(provider.users_path), provider.users_path)
    assert bcrypt.checkpw(b"wonderland", stored.hashes["alice"].encode())
    assert stat.S_IMODE(provider.users_path.stat().st_mode) == 0o600


def test_wrong_passwords_and_unknown_users_are_refused_alike(provider):
    with pytest.raises(InvalidCredentials) as wrong:
        provider.login("alice", "nope")
    with pytest.raises(InvalidCredentials) as unknown:
        provider.login("mallory", "nope")
    assert str(wrong.value) == str(unknown.value) == "wrong user name or password"
    assert (wrong.value.subject, unknown.value.subject) == ("alice", "mallory")
    with pytest.raises(InvalidCredentials):
        provider.login("alice", "x" * 100)


def test_an_unknown_user_costs_a_hash_check_too(tmp_path):
    slow = make(tmp_path, hash_cost=12)
    slow.add_user("alice", "pw")

    def timed(user: str) -> float:
        started = time.perf_counter()
        with pytest.raises(InvalidCredentials):
            slow.login(user, "wrong")
        return time.perf_counter() - started

    timed("nobody")  # the first one makes the stand-in hash
    known, unknown = min(timed("alice") for _ in range(2)), min(timed("bob") for _ in range(2))
    assert unknown > known / 2, (known, unknown)


def test_htpasswd_bcrypt_hashes_work(tmp_path):
    import shutil
    import subprocess

    if shutil.which("htpasswd") is None:
        pytest.fail("htpasswd is not installed (apt-get install apache2-utils)")
    line = subprocess.run(
        ["htpasswd", "-nbB", "-C", "5", "carol", "s3cret"], capture_output=True, text=True
    ).stdout.strip()
    name, _, hashed = line.partition(":")
    assert hashed.startswith("$2y$")
    users = tmp_path / "users.toml"
    users.write_text(f'[users.{name}]\npassword = "{hashed}"\n')
    provider = make(tmp_path, users_file=str(users))
    assert provider.login("carol", "s3cret") == Identity("carol")


def test_user_management(provider):
    assert provider.users() == ["alice"]
    assert provider.add_user("bob", "builder") is True
    assert provider.add_user("bob", "rebuilt") is False
    assert provider.users() == ["alice", "bob"]
    provider.login("bob", "rebuilt")
    provider.remove_user("bob")
    assert provider.users() == ["alice"]
    with pytest.raises(NotFound):
        provider.remove_user("bob")
    for name, password, message in [
        ("", "pw", "invalid user name"),
        ("anonymous", "pw", "reserved"),
        ("a:b", "pw", "invalid user name"),
        ("carol", "", "must not be empty"),
        ("carol", "é" * 40, "longer than bcrypt's 72 bytes"),
    ]:
        with pytest.raises(InvalidParameter, match=message):
            provider.add_user(name, password)


def test_refresh_tokens_die_with_the_password_or_the_user(provider):
    identity = provider.login("alice", "wonderland")
    refresh = provider.issue(identity, [], SERVICE, offline=True).refresh_token
    assert provider.refresh(refresh) == Identity("alice")
    provider.add_user("alice", "new password")
    with pytest.raises(InvalidCredentials, match="revoked"):
        provider.refresh(refresh)
    refresh = provider.issue(identity, [], SERVICE, offline=True).refresh_token
    provider.remove_user("alice")
    with pytest.raises(InvalidCredentials, match="revoked"):
        provider.refresh(refresh)


def test_a_serving_provider_sees_users_added_elsewhere(provider, tmp_path, monkeypatch):
    # Another process (`dockyard registry user add`) writes the file; within a second the
    # serving provider reads it again.
    other = make(tmp_path)
    other.add_user("dave", "pw")
    monkeypatch.setattr(accounts, "RECHECK_INTERVAL", 0.0)
    assert provider.login("dave", "pw") == Identity("dave")
    other.remove_user("dave")
    with pytest.raises(InvalidCredentials):
        provider.login("dave", "pw")


# ------------------------------------------------------------------------------ rules

RULES = """
[groups]
dev = ["alice", "bob"]

[[rules]]
subjects = ["anonymous"]
repositories = ["public/*"]
actions = ["pull"]

[[rules]]
subjects = ["group:dev"]
repositories = ["team/**"]
actions = ["pull", "push"]

[[rules]]
subjects = ["*"]
repositories = ["{user}/**"]
actions = ["*"]

[[rules]]
subjects = ["alice"]
catalog = true
"""


def allowed(provider: TokenProvider, user: str | None, scope: str) -> tuple[str, ...]:
    identity = Identity(user) if user is not None else None
    return provider.authorize(identity, Access.parse(scope))


def test_rules_by_subject_glob_and_action(tmp_path):
    provider = make(tmp_path, RULES)
    for name in ("alice", "bob", "carol"):
        provider.add_user(name, "pw")
    assert allowed(provider, None, "repository:public/base:pull,push") == ("pull",)
    assert allowed(provider, None, "repository:public/a/b:pull") == ()  # "*" stays in a part
    assert allowed(provider, "carol", "repository:public/base:pull") == ("pull",)
    assert allowed(provider, "bob", "repository:team/x/y:pull,push,delete") == ("pull", "push")
    assert allowed(provider, "carol", "repository:team/x:pull") == ()
    assert allowed(provider, "carol", "repository:carol/app:delete,pull") == ("delete", "pull")
    assert allowed(provider, "carol", "repository:bob/app:pull") == ()
    assert allowed(provider, None, "repository:carol/app:pull") == ()
    assert allowed(provider, "alice", "registry:catalog:*") == ("*",)
    assert allowed(provider, "bob", "registry:catalog:*") == ()
    assert allowed(provider, "alice", "repository(plugin):alice/p:pull") == ("pull",)
    assert allowed(provider, "alice", "whatever:alice/p:pull") == ()
    # A token's subject that is no longer a user gets what anonymous gets.
    assert allowed(provider, "zed", "repository:zed/app:pull") == ()
    assert allowed(provider, "zed", "repository:public/x:pull") == ("pull",)


@pytest.mark.parametrize(
    "name",
    [
        "carol/../alice/app",
        "carol//app",
        "Carol/app",
        "carol%2fapp",
        "carol/app/",
        "/carol/app",
        "carol/./app",
        "carol/app\n",
        "carol/" + "a" * 300,
    ],
)
def test_path_tricks_in_scope_names_get_nothing(tmp_path, name):
    provider = make(tmp_path)  # without rules: every user may do everything...
    provider.add_user("carol", "pw")
    access = Access("repository", name, ("pull", "push"))
    assert provider.authorize(Identity("carol"), access) == ()  # ...with valid names only
    assert provider.authorize(Identity("carol"), Access("repository", "ok/app", ("pull",)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rules]]\nsubjects = ['*']\nrepositories = ['**']\nactions = ['pull']\nextra = 1\n",
         "unknown key 'rules[0].extra'"),
        ("[rule]\n", "unknown key 'rule'"),
        ("[[rules]]\nsubjects = ['*']\nrepositories = ['**']\nactions = ['fly']\n",
         "'rules[0].actions' must be"),
        ("[[rules]]\nsubjects = ['group:ops']\ncatalog = true\n", "which [groups] does not"),
        ("[[rules]]\nsubjects = []\ncatalog = true\n", "'rules[0].subjects' must be"),
        ("[[rules]]\nsubjects = ['*']\nrepositories = ['Team/*']\nactions = ['pull']\n",
         "can match no repository name"),
        ("[[rules]]\nsubjects = ['*']\ncatalog = true\nactions = ['pull']\n",
         "in a rule of its own"),
        ("[groups]\nops = 'alice'\n", "'groups.ops' must be a list"),
        ("rules = 3\n", "'rules' must be an array"),
        ("[[rules]\n", "invalid TOML"),
    ],
)  # fmt: skip
def test_bad_rules_files_are_refused_naming_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        make(tmp_path, text)
    assert str(tmp_path / "rules.toml") in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[users.alice]\npassword = "plain"\n', "must be a bcrypt hash"),
        ('[users.alice]\npasswd = "x"\n', "unknown key 'users.alice.passwd'"),
        ('[user.alice]\npassword = "x"\n', "unknown key 'user'"),
        ("users = 1\n", "'users' must be a table"),
    ],
)
def test_bad_users_files_are_refused_naming_file_and_key(tmp_path, text, message):
    users = tmp_path / "users.toml"
    users.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        make(tmp_path, users_file=str(users))
    assert str(users) in str(caught.value)


def test_a_file_that_turns_bad_while_serving_keeps_the_last_good_rules(tmp_path, monkeypatch):
    provider = make(tmp_path, RULES)
    monkeypatch.setattr(accounts, "RECHECK_INTERVAL", 0.0)
    (tmp_path / "rules.toml").write_text("[[rules]]\nbogus = 1\n")
    os.utime(tmp_path / "rules.toml", (1, 1))
    assert allowed(provider, None, "repository:public/base:pull") == ("pull",)


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="lifetime must be at least 60"):
        make(tmp_path, lifetime=30)
    with pytest.raises(ConfigError, match="hash-cost must be 4-16"):
        make(tmp_path, hash_cost=40)
    with pytest.raises(ConfigError, match=r"rules-file .* does not exist"):
        make(tmp_path, rules_file=str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="cannot read"):
        make(tmp_path, signing_key=str(tmp_path / "missing.pem"))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="certificate: cannot write"):
        make(tmp_path, certificate=str(tmp_path / "a-file" / "cert.pem"))
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(ConfigError, match="no PEM certificate or public key"):
        make(tmp_path, trusted_certs=[str(tmp_path / "junk.pem")])


def test_challenges_name_realm_service_scope_and_error(tmp_path):
    provider = make(tmp_path)
    request = AuthRequest("GET", "/v2/", {"host": "reg.example:5000"}, scheme="https")
    wanted = [Access("repository", "a/b", ("pull", "push")), Access("repository", "c", ("pull",))]
    assert provider.challenge(request, wanted, "insufficient_scope") == {
        "WWW-Authenticate": 'Bearer realm="https://reg.example:5000/token",'
        'service="dockyard-registry",scope="repository:a/b:pull,push repository:c:pull",'
        'error="insufficient_scope"'
    }
    hostile = AuthRequest("GET", "/v2/", {"host": 'x",service="evil'})
    assert 'realm="http://localhost/token"' in provider.challenge(hostile, [])["WWW-Authenticate"]
    configured = make(tmp_path / "b", realm="https://auth.example/token", service="reg")
    assert configured.challenge(request, []) == {
        "WWW-Authenticate": 'Bearer realm="https://auth.example/token",service="reg"'
    }
