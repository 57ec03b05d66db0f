"""``dockyard registry`` in token mode, as real processes over real HTTP: the token dance, the
``/token`` endpoint's GET and OAuth2 POST forms and their bad input, user commands, rate
limits, logs without secrets, and the token service on its own."""

from __future__ import annotations

import base64
import http.client
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import jwt
import pytest
import requests
from cryptography import x509

from dockyard.core.config import RegistryConfig
from dockyard.plugins.auth.token.config import TokenConfig
from dockyard.plugins.auth.token.provider import TokenProvider
from dockyard.registry.tokens import token_routes
from tests.registry.conftest import (
    RegistryProcess,
    TokenClient,
    free_port,
    start_registry_process,
    wait_for_port,
)
from tests.registry.test_token_provider import RULES as PROVIDER_RULES

SERVICE = "dockyard-registry"

# The provider tests' rules, and alice may push public images.
RULES = (
    PROVIDER_RULES
    + """
[[rules]]
subjects = ["alice"]
repositories = ["public/*"]
actions = ["push"]
"""
)

PASSWORDS = {"alice": "wonder land!", "bob": "b-u-i-l-d-e-r"}


def token_config(root: Path, extra: str = "") -> str:
    root.mkdir(parents=True, exist_ok=True)
    (root / "rules.toml").write_text(RULES)
    return (
        f'[registry]\ndata-root = "{root}/state"\nauth = "token"\n{extra}'
        f'[registries.filesystem]\nroot = "{root}/data"\n'
        f'[auth.token]\nhash-cost = 4\nrules-file = "{root}/rules.toml"\n'
    )


def dockyard(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env["DOCKYARD_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def add_users(config: Path, users: dict[str, str]) -> None:
    for name, password in users.items():
        result = dockyard(
            "registry", "user", "add", name, "--config", str(config), "--password-stdin",
            stdin=password + "\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"added user {name}\n"


def start(root: Path, extra: str = "", users: dict[str, str] | None = None) -> RegistryProcess:
    text = token_config(root, extra)
    config = root / "registry.toml"
    config.write_text(text)
    add_users(config, PASSWORDS if users is None else users)
    return start_registry_process(root / "process", text)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    # Failed logins are tested on processes of their own; here bad tokens must not run out
    # the address's budget for the other tests.
    process = start(tmp_path_factory.mktemp("token-registry"), "auth-failures-per-minute = 1000\n")
    yield process
    process.stop()


def get_token(server, params: dict | list, user: str | None = None, password: str = ""):
    auth = (user, password if password else PASSWORDS[user]) if user else None
    return requests.get(f"{server.url}/token", params=params, auth=auth, timeout=30)


def post_token(server, form: dict, **kwargs):
    return requests.post(f"{server.url}/token", data=form, timeout=30, **kwargs)


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def error_of(reply) -> tuple[int, str, str]:
    error = reply.json()["errors"][0]
    return reply.status_code, error["code"], error["message"]


# ------------------------------------------------------------------------------ start-up, users


def test_token_mode_with_no_users_refuses_to_start_and_says_how(tmp_path):
    text = token_config(tmp_path)
    config = tmp_path / "registry.toml"
    config.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "registry", "--config", str(config),
         "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "no users" in result.stderr
    assert "dockyard registry user add NAME" in result.stderr


def test_user_add_rm_ls(tmp_path):
    config = tmp_path / "registry.toml"
    config.write_text(token_config(tmp_path))
    add_users(config, {"alice": "pw one", "bob": "pw two"})
    users_file = tmp_path / "state" / "auth" / "token" / "users.toml"
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert "pw one" not in users_file.read_text()
    listed = dockyard("registry", "user", "ls", "--config", str(config))
    assert listed.stdout == "alice\nbob\n"
    again = dockyard(
        "registry", "user", "add", "bob", "--config", str(config), "--password-stdin",
        stdin="changed\n",
    )  # fmt: skip
    assert again.stdout == "changed the password of bob\n"
    removed = dockyard("registry", "user", "rm", "bob", "--config", str(config))
    assert (removed.returncode, removed.stdout) == (0, "removed user bob\n")
    missing = dockyard("registry", "user", "rm", "bob", "--config", str(config))
    assert missing.returncode == 1 and "no such user" in missing.stderr
    empty = dockyard(
        "registry", "user", "add", "carol", "--config", str(config), "--password-stdin",
        stdin="\n",
    )  # fmt: skip
    assert empty.returncode == 1 and "must not be empty" in empty.stderr
    assert dockyard("registry", "user", "ls", "--config", str(config)).stdout == "alice\n"
    # The default provider (none) keeps no users.
    plain = tmp_path / "plain.toml"
    plain.write_text(f'[registry]\ndata-root = "{tmp_path}/plain"\n')
    refused = dockyard("registry", "user", "ls", "--config", str(plain))
    assert refused.returncode == 1
    assert "the auth provider 'none' does not manage users" in refused.stderr


def test_token_cert_prints_the_certificate_the_tokens_are_signed_for(server, tmp_path):
    config = next(server.log.parent.glob("registry-*.toml"))
    printed = dockyard("registry", "token-cert", "--config", str(config))
    assert printed.returncode == 0, printed.stderr
    cert = x509.load_pem_x509_certificate(printed.stdout.encode())
    token = get_token(server, {"service": SERVICE}, "alice").json()["token"]
    decoded = jwt.decode(
        token, cert.public_key(), algorithms=["ES256"], audience=SERVICE, issuer="dockyard"
    )
    assert decoded["sub"] == "alice"


# ------------------------------------------------------------------------------ the dance


def test_the_full_token_dance_push_and_pull(server):
    alice = TokenClient(server.url, ("alice", PASSWORDS["alice"]))
    image = alice.push_image("alice/app", "v1")
    reply = alice.request("GET", "/v2/alice/app/manifests/v1", headers={"Accept": alice.MANIFEST})
    assert reply.status_code == 200 and reply.content == image.manifest
    # The tokens the client fetched carry what each request needed, for alice and our service.
    scopes = {tuple(a["actions"]) for t in alice.tokens for a in claims_of(t)["access"]}
    assert ("pull", "push") in scopes
    first = claims_of(alice.tokens[0])
    assert (first["iss"], first["sub"], first["aud"]) == ("dockyard", "alice", SERVICE)
    assert first["exp"] - first["iat"] == 300 and first["nbf"] == first["iat"]
    # Anonymous pull where a rule allows it; nothing where none does.
    alice.push_image("public/base", "v1")
    anonymous = TokenClient(server.url)
    pulled = anonymous.request("GET", "/v2/public/base/manifests/v1")
    assert pulled.status_code == 200
    private = anonymous.request("GET", "/v2/alice/app/manifests/v1")
    assert private.status_code in (401, 403)
    # The catalog for alice, who has a rule for it.
    listing = alice.request("GET", "/v2/_catalog")
    assert listing.status_code == 200
    assert {"alice/app", "public/base"} <= set(listing.json()["repositories"])


def test_get_grants_the_intersection_of_asked_and_allowed(server):
    reply = get_token(
        server,
        [
            ("service", SERVICE),
            ("scope", "repository:bob/app:pull,push,delete"),
            ("scope", "repository:team/x:pull,push,delete"),
            ("scope", "repository:alice/app:pull"),  # not bob's
            ("scope", "registry:catalog:*"),  # only alice's
            ("scope", "repository:bob/../alice/app:pull"),  # a path trick: nothing
            ("scope", "repository:Bob/app:pull"),
            ("scope", "repository:bob%2fapp:pull"),
        ],
        "bob",
    )
    assert reply.status_code == 200, reply.text
    document = reply.json()
    assert document["token"] == document["access_token"]
    assert document["expires_in"] == 300
    assert time.strptime(document["issued_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert "refresh_token" not in document
    assert reply.headers["Cache-Control"] == "no-store"
    assert claims_of(document["token"])["access"] == [
        {"type": "repository", "name": "bob/app", "actions": ["pull", "push", "delete"]},
        {"type": "repository", "name": "team/x", "actions": ["pull", "push"]},
    ]
    anonymous = get_token(server, {"service": SERVICE, "scope": "repository:bob/app:pull"})
    assert anonymous.status_code == 200
    assert claims_of(anonymous.json()["token"])["sub"] == ""
    assert claims_of(anonymous.json()["token"])["access"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"scope": "repository:a:pull"}, "service"),
        ({"service": SERVICE, "scope": "repository:pull"}, "scope"),
        ({"service": SERVICE, "scope": "repository:a:"}, "scope"),
        ({"service": SERVICE, "scope": ":a:pull"}, "scope"),
        ({"service": SERVICE, "color": "red"}, "color"),
        ([("service", SERVICE), ("service", SERVICE)], "service"),
        ({"service": SERVICE, "offline_token": "yes"}, "offline_token"),
        ({"service": SERVICE, "offline_token": "true"}, "offline_token"),  # anonymous
        ({"service": "somebody-else"}, "service"),
        ({"service": SERVICE, "scope": " ".join(["repository:a:pull"] * 65)}, "scope"),
    ],
)
def test_get_bad_input_is_a_400_naming_the_field(server, params, field):
    reply = get_token(server, params)
    status, code, message = error_of(reply)
    assert (status, code) == (400, "UNSUPPORTED"), message
    assert reply.json()["errors"][0]["detail"] == {"field": field}


def test_get_with_bad_credentials(server):
    wrong = get_token(server, {"service": SERVICE}, "alice", "not her password")
    assert error_of(wrong) == (401, "UNAUTHORIZED", "wrong user name or password")
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="dockyard"'
    mismatch = get_token(server, {"service": SERVICE, "account": "bob"}, "alice")
    assert error_of(mismatch)[:2] == (400, "UNSUPPORTED")
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(), "Digest x"):
        reply = requests.get(
            f"{server.url}/token", params={"service": SERVICE},
            headers={"Authorization": header}, timeout=30,
        )  # fmt: skip
        assert error_of(reply)[:2] == (400, "UNSUPPORTED"), header
        assert reply.json()["errors"][0]["detail"] == {"field": "Authorization"}


def test_offline_tokens_on_get(server):
    reply = get_token(server, {"service": SERVICE, "offline_token": "true"}, "bob")
    refresh = reply.json()["refresh_token"]
    again = post_token(
        server,
        {"grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE,
         "client_id": "test", "scope": "repository:bob/app:pull"},
    )  # fmt: skip
    assert again.status_code == 200, again.text
    assert claims_of(again.json()["access_token"])["sub"] == "bob"


# ------------------------------------------------------------------------------ OAuth2 POST


def test_oauth_password_and_refresh_grants(server):
    reply = post_token(
        server,
        {"grant_type": "password", "username": "alice", "password": PASSWORDS["alice"],
         "service": SERVICE, "client_id": "dockyard-tests", "access_type": "offline",
         "scope": "repository:alice/app:pull,push registry:catalog:*"},
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    document = reply.json()
    assert document["scope"] == "repository:alice/app:pull,push registry:catalog:*"
    assert document["access_token"] == document["token"]
    refresh = document["refresh_token"]
    assert claims_of(refresh)["sub"] == "alice"
    renewed = post_token(
        server,
        {"grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE,
         "client_id": "dockyard-tests", "access_type": "offline",
         "scope": "repository:alice/other:pull"},
    )  # fmt: skip
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["refresh_token"] == refresh
    assert renewed.json()["scope"] == "repository:alice/other:pull"
    # A refresh token for another service is refused, and a made-up one is a 401.
    other = post_token(
        server,
        {"grant_type": "refresh_token", "refresh_token": refresh, "service": "elsewhere",
         "client_id": "t"},
    )  # fmt: skip
    assert other.status_code == 400
    forged = post_token(
        server,
        {"grant_type": "refresh_token", "refresh_token": refresh[:-4] + "AAAA",
         "service": SERVICE, "client_id": "t"},
    )  # fmt: skip
    assert forged.status_code == 401 and forged.json()["error"] == "invalid_grant"


def test_a_refresh_token_dies_when_the_password_changes(tmp_path):
    server = start(tmp_path, users={"erin": "first"})
    try:
        reply = post_token(
            server,
            {"grant_type": "password", "username": "erin", "password": "first",
             "service": SERVICE, "client_id": "t", "access_type": "offline"},
        )  # fmt: skip
        refresh = reply.json()["refresh_token"]
        changed = dockyard(
            "registry", "user", "add", "erin", "--config", str(tmp_path / "registry.toml"),
            "--password-stdin", stdin="second\n",
        )  # fmt: skip
        assert changed.returncode == 0, changed.stderr
        time.sleep(1.1)  # the serving registry looks at the users file once a second
        form = {"grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE,
                "client_id": "t"}  # fmt: skip
        revoked = post_token(server, form)
        assert revoked.status_code == 401
        assert "revoked" in revoked.json()["error_description"]
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("form", "field", "oauth_error"),
    [
        ({"service": SERVICE, "client_id": "t"}, "grant_type", "invalid_request"),
        ({"grant_type": "client_credentials", "service": SERVICE, "client_id": "t"},
         "grant_type", "unsupported_grant_type"),
        ({"grant_type": "password", "username": "alice", "password": "x", "client_id": "t"},
         "service", "invalid_request"),
        ({"grant_type": "password", "username": "alice", "password": "x", "service": SERVICE},
         "client_id", "invalid_request"),
        ({"grant_type": "password", "password": "x", "service": SERVICE, "client_id": "t"},
         "username", "invalid_request"),
        ({"grant_type": "refresh_token", "service": SERVICE, "client_id": "t"},
         "refresh_token", "invalid_request"),
        ({"grant_type": "password", "username": "a", "password": "x", "service": SERVICE,
          "client_id": "t", "access_type": "forever"}, "access_type", "invalid_request"),
        ({"grant_type": "password", "username": "a", "password": "x", "service": SERVICE,
          "client_id": "t", "offline_token": "true"}, "offline_token", "invalid_request"),
    ],
)  # fmt: skip
def test_post_bad_input_is_a_400_naming_the_field(server, form, field, oauth_error):
    reply = post_token(server, form)
    assert reply.status_code == 400, reply.text
    assert reply.json()["errors"][0]["detail"] == {"field": field}
    assert reply.json()["error"] == oauth_error


def test_post_needs_a_form(server):
    reply = requests.post(f"{server.url}/token", json={"grant_type": "password"}, timeout=30)
    assert reply.status_code == 400
    assert reply.json()["errors"][0]["detail"] == {"field": "Content-Type"}
    huge = post_token(server, {"grant_type": "password", "scope": "x" * 70000})
    assert huge.status_code == 400 and huge.json()["errors"][0]["detail"] == {"field": "body"}
    wrong = post_token(
        server,
        {"grant_type": "password", "username": "alice", "password": "nope",
         "service": SERVICE, "client_id": "t"},
    )  # fmt: skip
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_grant"


# ------------------------------------------------------------------------------ enforcement


def signing_key(server: RegistryProcess) -> object:
    from cryptography.hazmat.primitives import serialization

    path = server.log.parent.parent / "state" / "auth" / "token" / "signing-key.pem"
    return serialization.load_pem_private_key(path.read_bytes(), None)


def forged(key: object, header: dict | None = None, **changes: object) -> str:
    from dockyard.plugins.auth.token.keys import libtrust_key_id

    now = int(time.time())
    claims = {
        "iss": "dockyard", "sub": "alice", "aud": SERVICE, "exp": now + 300, "nbf": now,
        "iat": now, "jti": "forged",
        "access": [{"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}],
    }  # fmt: skip
    claims.update(changes)
    kid = libtrust_key_id(key.public_key())  # type: ignore[attr-defined]
    return jwt.encode(claims, key, "ES256", headers={"kid": kid, **(header or {})})  # type: ignore[arg-type]


def with_token(server, method: str, path: str, token: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": TokenClient.MANIFEST}
    return requests.request(method, server.url + path, headers=headers, timeout=30)


def challenge_of(reply: requests.Response) -> dict[str, str]:
    assert reply.status_code == 401, (reply.status_code, reply.text)
    return TokenClient.challenge(reply.headers["WWW-Authenticate"])


def unsigned(header: dict, claims: dict) -> str:
    def b64(document: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(claims)}"


def test_bad_tokens_get_an_invalid_token_challenge(server):
    import hashlib
    import hmac

    from cryptography.hazmat.primitives.asymmetric import ec

    TokenClient(server.url, ("alice", PASSWORDS["alice"])).push_image("alice/app", "bad")
    key = signing_key(server)
    good = forged(key)
    assert with_token(server, "GET", "/v2/alice/app/manifests/bad", good).status_code == 200
    now = int(time.time())
    kid = forged(key).split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(kid + "=="))
    claims = claims_of(good)
    public_pem = (server.log.parent.parent / "state/auth/token/token-cert.pem").read_bytes()
    hs_input = unsigned({**header, "alg": "HS256"}, claims)
    hs256 = (
        hs_input
        + "."
        + base64.urlsafe_b64encode(hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest())
        .rstrip(b"=")
        .decode()
    )
    head, _, signature = good.split(".")
    wider = {**claims, "access": [{"type": "repository", "name": "bob/app", "actions": ["*"]}]}
    tampered = f"{head}.{unsigned({}, wider).split('.')[1]}.{signature}"
    bad = {
        "expired": forged(key, exp=now - 3600, iat=now - 4000, nbf=now - 4000),
        "not yet valid": forged(key, nbf=now + 3600),
        "another key": forged(ec.generate_private_key(ec.SECP256R1())),
        "alg none": unsigned({**header, "alg": "none"}, claims) + ".",
        "HS256 keyed with the public key": hs256,
        "tampered claims": tampered,
        "another service": forged(key, aud="elsewhere"),
        "another issuer": forged(key, iss="mallory"),
        "garbage": "not-a-token",
    }
    for case, token in bad.items():
        reply = with_token(server, "GET", "/v2/alice/app/manifests/bad", token)
        params = challenge_of(reply)
        assert params["error"] == "invalid_token", case
        assert params["scope"] == "repository:alice/app:pull", case
        assert params["service"] == SERVICE and params["realm"].endswith("/token"), case


def token_for(server, user: str | None, *scopes: str) -> str:
    params = [("service", SERVICE), *(("scope", s) for s in scopes)]
    reply = get_token(server, params, user)
    assert reply.status_code == 200, reply.text
    return reply.json()["token"]


def test_scope_escalation_is_refused(server):
    alice = TokenClient(server.url, ("alice", PASSWORDS["alice"]))
    image = alice.push_image("alice/app", "esc")
    pull_only = token_for(server, "alice", "repository:alice/app:pull")
    # Push with a pull token: the rules would allow it, so a wider token is what is missing.
    push = with_token(server, "POST", "/v2/alice/app/blobs/uploads/", pull_only)
    params = challenge_of(push)
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "repository:alice/app:pull,push"
    # Another repository with this token.
    other = with_token(server, "GET", "/v2/alice/other/tags/list", pull_only)
    assert challenge_of(other)["error"] == "insufficient_scope"
    # The catalog: alice may, with a token that says so; bob may not at all.
    assert challenge_of(with_token(server, "GET", "/v2/_catalog", pull_only))["error"] == (
        "insufficient_scope"
    )
    catalog = token_for(server, "alice", "registry:catalog:*")
    assert with_token(server, "GET", "/v2/_catalog", catalog).status_code == 200
    bobs = token_for(server, "bob", "registry:catalog:*", "repository:alice/app:pull,push")
    assert claims_of(bobs)["access"] == []
    denied = with_token(server, "GET", "/v2/_catalog", bobs)
    assert (denied.status_code, denied.json()["errors"][0]["code"]) == (403, "DENIED")
    denied = with_token(server, "POST", "/v2/alice/app/blobs/uploads/", bobs)
    assert (denied.status_code, denied.json()["errors"][0]["code"]) == (403, "DENIED")
    # A mount from a repository bob cannot pull does not happen: an ordinary upload starts.
    layer = image.layers[0]
    both = token_for(server, "bob", "repository:bob/app:pull,push", "repository:alice/app:pull")
    mount = with_token(
        server,
        "POST",
        f"/v2/bob/app/blobs/uploads/?mount={TokenClient.digest(layer)}&from=alice/app",
        both,
    )
    assert mount.status_code == 202, mount.text
    head = with_token(server, "HEAD", f"/v2/bob/app/blobs/{TokenClient.digest(layer)}", both)
    assert head.status_code == 404
    # An anonymous token for what anonymous may not do is a plain challenge: log in.
    anonymous = token_for(server, None, "repository:alice/app:pull")
    reply = with_token(server, "GET", "/v2/alice/app/manifests/esc", anonymous)
    assert "error" not in challenge_of(reply)


# ------------------------------------------------------------------------------ rate limits


def token_request(port: int, source: str, user: str = "", password: str = "") -> tuple[int, dict]:
    """GET /token from loopback address ``source``."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(source, 0)
    )
    headers = {}
    if user:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        )
    connection.request("GET", "/token?" + urlencode({"service": SERVICE}), headers=headers)
    reply = connection.getresponse()
    body = reply.read()
    connection.close()
    headers = {key.lower(): value for key, value in reply.getheaders()}
    return reply.status, {**headers, "body": body.decode()}


def test_failed_logins_are_limited_per_user_and_address_then_recover(tmp_path):
    server = start(
        tmp_path,
        "auth-failures-per-minute = 30\ntoken-requests-per-minute = 6000\n",
        users={"frank": "right"},
    )
    try:
        frank_refresh = get_token(
            server, {"service": SERVICE, "offline_token": "true"}, "frank", "right"
        ).json()["refresh_token"]
        # 30 a minute refills one failure every two seconds: a slow machine sending these may
        # earn a few more before the first refusal.
        began = time.monotonic()
        statuses: list[int] = []
        while 429 not in statuses and len(statuses) < 100:
            statuses.append(token_request(server.port, "127.0.0.2", "frank", "wrong")[0])
        earned = int((time.monotonic() - began) / 2) + 1
        refused_at = statuses.index(429)
        assert 30 <= refused_at <= 30 + earned and set(statuses[:refused_at]) == {401}
        status, reply = token_request(server.port, "127.0.0.2", "frank", "right")
        assert status == 429 and reply["retry-after"] == "2"
        assert json.loads(reply["body"])["errors"][0]["code"] == "TOOMANYREQUESTS"
        # The user's bucket is empty from every address, with a refresh token too; another
        # user from another address is fine.
        assert token_request(server.port, "127.0.0.3", "frank", "right")[0] == 429
        refresh = post_token(
            server,
            {"grant_type": "refresh_token", "refresh_token": frank_refresh, "service": SERVICE,
             "client_id": "t"},
        )  # fmt: skip
        assert refresh.status_code == 429
        assert token_request(server.port, "127.0.0.3")[0] == 200
        time.sleep(2.2)  # one failure's worth refills every two seconds
        assert token_request(server.port, "127.0.0.2", "frank", "right")[0] == 200
    finally:
        server.stop()


def test_token_requests_are_limited_per_address(tmp_path):
    server = start(tmp_path, "token-requests-per-minute = 120\n", users={"gina": "pw"})
    try:
        # 120 a minute refills one request every half second: a slow machine sending these
        # may earn a few more before the first refusal.
        began = time.monotonic()
        statuses = []
        while 429 not in statuses and len(statuses) < 200:
            statuses.append(token_request(server.port, "127.0.0.4")[0])
        earned = int((time.monotonic() - began) * 2) + 1
        refused_at = statuses.index(429)
        assert 120 <= refused_at <= 120 + earned and set(statuses[:refused_at]) == {200}
        assert token_request(server.port, "127.0.0.5")[0] == 200
        time.sleep(0.6)
        assert token_request(server.port, "127.0.0.4")[0] == 200
    finally:
        server.stop()


def test_rate_limit_memory_is_bounded_with_many_addresses(tmp_path, store, serve_registry):
    provider = TokenProvider(TokenConfig(hash_cost=4), tmp_path / "state")
    provider.add_user("hal", "pw")
    routes = token_routes(provider, RegistryConfig(auth_failures_per_minute=2))
    endpoint = routes[0].endpoint.__self__  # type: ignore[attr-defined]
    endpoint.requests.max_keys = endpoint.failures.max_keys = 50
    served = serve_registry(store, provider, extra_routes=routes)
    # Each try names another user from another address: a new key in both limiters.
    for index in range(200):
        source = f"127.0.{1 + index // 250}.{1 + index % 250}"
        assert token_request(served.port, source, f"user{index}", "wrong")[0] == 401
    assert len(endpoint.requests) <= 50 and len(endpoint.failures) <= 50
    assert token_request(served.port, "127.0.3.1", "hal", "pw")[0] == 200


# ------------------------------------------------------------------------------ logs


def test_logs_carry_no_secrets(server):
    password = PASSWORDS["bob"]
    get_token(server, {"service": SERVICE}, "bob", "a wrong secret 42")
    reply = post_token(
        server,
        {"grant_type": "password", "username": "bob", "password": password,
         "service": SERVICE, "client_id": "t", "access_type": "offline"},
    )  # fmt: skip
    token, refresh = reply.json()["access_token"], reply.json()["refresh_token"]
    requests.get(f"{server.url}/v2/", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    requests.get(f"{server.url}/v2/", headers={"Authorization": f"Bearer {token}x"}, timeout=30)
    time.sleep(0.2)
    log = server.log.read_text()
    assert '"token issued"' in log and '"token request refused"' in log
    for secret in (password, "a wrong secret 42", token, refresh, token.split(".")[2]):
        assert secret not in log
    basic = base64.b64encode(f"bob:{password}".encode()).decode()
    assert basic not in log


# ------------------------------------------------------------------------------ on its own


def test_the_token_service_on_its_own(tmp_path):
    root = tmp_path / "tokens"
    text = token_config(root)
    config = root / "registry.toml"
    config.write_text(text)
    add_users(config, {"ivy": "pw"})
    port = free_port()
    log = tmp_path / "token-server.log"
    env = {**os.environ, "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "registry", "token-server", "--config",
             str(config), "--listen", f"127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        wait_for_port(port, process=process)
        url = f"http://127.0.0.1:{port}"
        reply = requests.get(
            f"{url}/token", params={"service": SERVICE, "scope": "repository:ivy/x:push"},
            auth=("ivy", "pw"), timeout=30,
        )  # fmt: skip
        assert reply.status_code == 200, reply.text
        assert claims_of(reply.json()["token"])["access"][0]["actions"] == ["push"]
        assert requests.get(f"{url}/v2/", timeout=30).status_code == 404
    finally:
        process.terminate()
        process.wait(timeout=10)
