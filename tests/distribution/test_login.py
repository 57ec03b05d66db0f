"""``POST /auth`` on a real daemon, against our registry on loopback ports: Basic and the token
flow, refusals in dockerd's words, bad bodies refused by name, and no secret in the log.

The same cases against the CNCF registry, side by side with a real dockerd, are in
``test_login_interop.py``.
"""

from __future__ import annotations

import base64
import json

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.distribution.authconfig import AuthConfig, decode_registry_auth
from tests.distribution.conftest import (
    PASSWORD,
    TOKEN_PASSWORD,
    TOKEN_USER,
    USER,
    dead_port,
    token_login,
)
from tests.registry.conftest import registry_process
from tests.registry.test_interop_auth import registry_config_for_auth

__all__ = ["registry_config_for_auth", "registry_process"]  # fixtures of tests/registry


def login(daemon, body: object, raw: bytes | None = None):
    payload = raw if raw is not None else json.dumps(body).encode()
    return daemon.request("POST", "/v1.41/auth", {"Content-Type": "application/json"}, payload)


def succeeded(reply, identity_token: str = "") -> None:
    assert reply.status == 200, reply.body
    assert reply.json() == {"IdentityToken": identity_token, "Status": "Login Succeeded"}


# --------------------------------------------------------------------------------------------
# Basic
# --------------------------------------------------------------------------------------------


def test_basic_login_with_the_right_password_succeeds(daemon, our_basic_registry):
    body = {"username": USER, "password": PASSWORD, "serveraddress": our_basic_registry.host}
    succeeded(login(daemon, body))


def test_a_wrong_password_is_refused_as_dockerd_refuses_it(daemon, our_basic_registry):
    body = {"username": USER, "password": "wrong", "serveraddress": our_basic_registry.host}
    reply = login(daemon, body)
    assert reply.status == 500
    assert reply.json() == {
        "message": f"login attempt to {our_basic_registry.url}/v2/ failed with status: "
        "401 Unauthorized"
    }


def test_no_credentials_for_a_basic_registry(daemon, our_basic_registry):
    reply = login(daemon, {"serveraddress": our_basic_registry.host})
    assert (reply.status, reply.json()["message"]) == (
        500,
        f'Get "{our_basic_registry.url}/v2/": no basic auth credentials',
    )


def test_auth_stands_for_username_and_password(daemon, our_basic_registry):
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    succeeded(login(daemon, {"auth": auth, "serveraddress": our_basic_registry.host}))


def test_an_unreachable_registry_falls_back_to_http_and_says_why(daemon):
    port = dead_port()
    reply = login(daemon, {"username": "u", "password": "p", "serveraddress": f"127.0.0.1:{port}"})
    assert (reply.status, reply.json()["message"]) == (
        500,
        f'Get "http://127.0.0.1:{port}/v2/": dial tcp 127.0.0.1:{port}: connect: '
        "connection refused",
    )


def test_a_registry_without_auth_lets_any_credentials_in(daemon, tmp_path):
    from tests.distribution.conftest import our_registry

    server = our_registry(tmp_path, None)
    try:
        succeeded(login(daemon, {"username": "a", "password": "b", "serveraddress": server.url}))
    finally:
        server.stop()


def test_a_login_naming_no_registry_goes_to_the_default_registry(start_daemon, our_basic_registry):
    daemon = start_daemon(config=f'[daemon]\ndefault-registry = "{our_basic_registry.host}"\n')
    info = daemon.request("GET", "/v1.41/info").json()
    assert info["IndexServerAddress"] == our_basic_registry.host
    assert info["RegistryConfig"]["InsecureRegistryCIDRs"] == ["127.0.0.0/8"]
    succeeded(login(daemon, {"username": USER, "password": PASSWORD}))
    assert login(daemon, {"username": USER, "password": "wrong"}).status == 500


# --------------------------------------------------------------------------------------------
# The token flow
# --------------------------------------------------------------------------------------------


def test_token_login_returns_the_refresh_token_as_identity_token(
    daemon, our_token_registry, token_server
):
    body = token_login(our_token_registry)
    reply = login(daemon, body)
    assert reply.status == 200, reply.body
    identity = reply.json()["IdentityToken"]
    assert token_server.refresh_tokens[identity] == TOKEN_USER
    (fetch,) = token_server.requests
    # docker's token request: Basic credentials, the account, an offline token for "docker".
    assert (fetch.method, fetch.basic_user, fetch.status) == ("GET", TOKEN_USER, 200)
    assert fetch.query == {
        "service": ["dockyard-test-registry"],
        "offline_token": ["true"],
        "client_id": ["docker"],
        "account": [TOKEN_USER],
    }

    # The identity token stands for the password from now on: the OAuth2 refresh grant.
    token_server.requests.clear()
    again = login(daemon, {"identitytoken": identity, "serveraddress": our_token_registry.host})
    succeeded(again, identity)
    (refresh,) = token_server.requests
    assert refresh.method == "POST" and refresh.status == 200
    assert refresh.form["grant_type"] == ["refresh_token"]
    assert refresh.form["refresh_token"] == [identity]
    assert refresh.form["client_id"] == ["docker"]


def test_token_login_with_a_wrong_password_gives_the_token_servers_word(daemon, our_token_registry):
    body = {"username": TOKEN_USER, "password": "nope", "serveraddress": our_token_registry.host}
    reply = login(daemon, body)
    assert (reply.status, reply.json()["message"]) == (
        500,
        f'Get "{our_token_registry.url}/v2/": unauthorized: invalid credentials',
    )
    garbage = login(daemon, {"identitytoken": "garbage", "serveraddress": our_token_registry.host})
    assert garbage.status == 500
    assert garbage.json()["message"].endswith("unauthorized: invalid credentials")


def test_a_registry_token_is_passed_through(daemon, our_token_registry, token_server):
    token = token_server.issue(TOKEN_USER, [])
    body = {"registrytoken": token, "serveraddress": our_token_registry.host}
    succeeded(login(daemon, body))
    assert token_server.requests == []  # nothing asked of the token server
    refused = login(daemon, {"registrytoken": "x.y.z", "serveraddress": our_token_registry.host})
    assert refused.status == 500
    assert "failed with status: 401 Unauthorized" in refused.json()["message"]


# --------------------------------------------------------------------------------------------
# Bad input: a 400 naming what is wrong, never a 500
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"username": 5}, "username: expected a string, got an integer"),
        ({"password": ["x"]}, "password: expected a string, got an array"),
        ({"serveraddress": {"a": 1}}, "serveraddress: expected a string, got an object"),
        ({"identitytoken": True}, "identitytoken: expected a string, got a boolean"),
        ({"registrytoken": 1.5}, "registrytoken: expected a string, got a number"),
        ({"email": 0}, "email: expected a string, got an integer"),
        ({"auth": "%%%"}, "auth: not base64 of user:password"),
        ({"auth": base64.b64encode(b"nocolon").decode()}, "auth: not base64 of user:password"),
        (
            {"auth": base64.b64encode(b"a:b").decode(), "username": "c", "password": "d"},
            "auth: names other credentials than username and password",
        ),
        ([], "expected an object, got an array"),
        ("x", "expected an object, got a string"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(daemon, body, message):
    reply = login(daemon, body)
    assert (reply.status, reply.json()["message"]) == (400, message)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "the body must be a JSON AuthConfig object, and it is empty"),
        (b"null", "expected an object, got null"),
        (b"nope", "invalid JSON"),
        (b'{"username": "\\ud800"}', "username: expected valid Unicode text"),
        (b"\xff\xfe", "invalid JSON: the body is not UTF-8"),
    ],
)
def test_bodies_that_are_not_an_auth_config_are_refused(daemon, raw, message):
    reply = login(daemon, None, raw=raw)
    assert reply.status == 400
    assert reply.json()["message"].startswith(message)


@pytest.mark.parametrize(
    "address", ["ht tp://x y", "https://", "ftp://host", "[::1", "host:abc", "a@b"]
)
def test_a_server_address_that_names_no_registry_is_refused(daemon, address):
    reply = login(daemon, {"username": "u", "password": "p", "serveraddress": address})
    assert reply.status == 400
    assert reply.json()["message"].startswith("unable to parse server address")


def test_no_secret_reaches_the_log(start_daemon, our_token_registry, our_basic_registry):
    daemon = start_daemon("--log-level", "debug")
    secrets_seen = [PASSWORD, TOKEN_PASSWORD, "wrong-secret-value"]
    basic = {"username": USER, "password": PASSWORD, "serveraddress": our_basic_registry.host}
    succeeded(login(daemon, basic))
    login(daemon, {**basic, "password": "wrong-secret-value"})
    token = token_login(our_token_registry)
    identity = login(daemon, token).json()["IdentityToken"]
    login(daemon, {"identitytoken": identity, "serveraddress": our_token_registry.host})
    secrets_seen += [
        identity,
        base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        base64.b64encode(f"{TOKEN_USER}:{TOKEN_PASSWORD}".encode()).decode(),
    ]
    text = daemon.log_path.read_text()
    assert "registry login succeeded" in text and "registry login failed" in text
    for secret in secrets_seen:
        assert secret not in text


def _encoded(document: object, alphabet: str = "url", padded: bool = True) -> str:
    raw = json.dumps(document).encode()
    text = (base64.urlsafe_b64encode if alphabet == "url" else base64.b64encode)(raw).decode()
    return text if padded else text.rstrip("=")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "e30=",
        "e30",
        _encoded({"username": "u", "password": "p?>~", "email": None}, padded=False),
        _encoded({"username": "u", "password": "p?>~"}, alphabet="standard"),
    ],
)
def test_x_registry_auth_in_the_forms_clients_send(header):
    config = decode_registry_auth(header)
    if header and header.startswith("e30"):
        assert config == AuthConfig()
    elif header:
        assert (config.username, config.password) == ("u", "p?>~")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("!!!", "X-Registry-Auth: not base64url-encoded JSON"),
        ("====", "X-Registry-Auth: not base64url-encoded JSON"),
        ("bm9wZQ", "X-Registry-Auth: invalid JSON"),
        (_encoded([1]), "X-Registry-Auth: expected an object, got an array"),
        (_encoded({"username": 5}), "X-Registry-Auth: username: expected a string, got an integer"),
        (_encoded({"auth": "zz"}), "X-Registry-Auth: auth: not base64 of user:password"),
        ("ZXlK" * 5000 + "é", "X-Registry-Auth: not base64url-encoded JSON"),
    ],
)
def test_garbage_x_registry_auth_is_refused_naming_the_header(header, message):
    with pytest.raises(InvalidParameter) as refused:
        decode_registry_auth(header)
    assert str(refused.value).startswith(message)
    assert refused.value.status_code == 400


# --------------------------------------------------------------------------------------------
# ``dockyard registry`` with its own auth plugins (htpasswd, token)
# --------------------------------------------------------------------------------------------


def test_login_to_our_registry_in_each_auth_mode(
    daemon, registry_process, registry_config_for_auth
):
    config = registry_config_for_auth
    server = registry_process(config.text)
    body = {"username": config.user, "password": config.password, "serveraddress": server.host}
    reply = login(daemon, body)
    assert reply.status == 200, reply.body
    identity = reply.json()["IdentityToken"]
    # The token service hands out a refresh token when asked (offline_token=true); htpasswd
    # has none to give.
    assert bool(identity) == (config.mode == "token")
    if identity:
        again = login(daemon, {"identitytoken": identity, "serveraddress": server.host})
        assert again.json() == {"IdentityToken": identity, "Status": "Login Succeeded"}

    wrong = login(daemon, {**body, "password": "not-the-password"})
    assert wrong.status == 500
    if config.mode == "htpasswd":
        assert wrong.json()["message"] == (
            f"login attempt to {server.url}/v2/ failed with status: 401 Unauthorized"
        )
    else:  # the token service's refusal, as distribution's client words it
        assert wrong.json()["message"].startswith(f'Get "{server.url}/v2/": unauthorized: ')
    assert "not-the-password" not in daemon.log_path.read_text()
    assert server.server_errors() == []
