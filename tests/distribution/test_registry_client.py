"""The daemon's registry client on its own: challenges, endpoints, the token cache, and the
retry with a fresh token that pull and push will lean on."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl

import pytest

from dockyard.core.errors import ConfigError, InvalidParameter
from dockyard.core.httpauth import Challenge
from dockyard.daemon.distribution.service import RegistryService
from dockyard.distribution.challenges import is_scheme, read_challenges
from dockyard.distribution.client import RegistryClient, default_tls
from dockyard.distribution.credentials import Credentials
from dockyard.distribution.endpoints import (
    Endpoint,
    EndpointPolicy,
    index_server_address,
    registry_host,
)
from dockyard.distribution.errors import RegistryError, describe_error_response
from dockyard.distribution.tokens import TokenAnswer, TokenCache, TokenKey
from tests.conftest import run_dockyard
from tests.distribution import conftest as logins
from tests.distribution.test_login import login

# --------------------------------------------------------------------------------------------
# WWW-Authenticate
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (['Basic realm="hf-realm"'], [Challenge("Basic", {"realm": "hf-realm"})]),
        (
            ['Bearer realm="https://a/token",service="reg",scope="repository:a/b:pull,push"'],
            [
                Challenge(
                    "Bearer",
                    {
                        "realm": "https://a/token",
                        "service": "reg",
                        "scope": "repository:a/b:pull,push",
                    },
                )
            ],
        ),
        (
            ['Basic realm="unterminated', 'BEARER realm=x, Basic realm="r"'],
            [Challenge("BEARER", {"realm": "x"}), Challenge("Basic", {"realm": "r"})],
        ),
        (["", "   ", ",,"], []),
    ],
)
def test_every_challenge_header_that_can_be_read_is_read(headers, expected):
    found = read_challenges(headers)
    assert found == expected
    assert [is_scheme(c, "bearer") for c in found] == [
        c.scheme.lower() == "bearer" for c in expected
    ]


# --------------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------------


def test_connects_reuse_their_tls_contexts_rather_than_build_them_each_time():
    """Building a context loads every CA (30 to 80 ms): an insecure registry's, which checks
    nothing, and the default one of plain-HTTP clients are built once per process."""
    policy = EndpointPolicy([])
    insecure = Endpoint("https", "127.0.0.1:5000", verify=False)
    context = policy.ssl_context(insecure)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)
    assert policy.ssl_context(insecure) is context
    secure = Endpoint("https", "registry.example:5000", verify=True)
    assert policy.ssl_context(secure).verify_mode == ssl.CERT_REQUIRED
    assert default_tls() is default_tls()
    assert default_tls().verify_mode == ssl.CERT_REQUIRED


def test_https_first_and_plain_http_only_for_insecure_registries():
    policy = EndpointPolicy(["registry.internal:5000", "10.20.0.0/16"])
    assert policy.endpoints("127.0.0.1:5000") == [
        Endpoint("https", "127.0.0.1:5000", verify=False),
        Endpoint("http", "127.0.0.1:5000", verify=False),
    ]
    assert policy.endpoints("localhost:5000")[-1].scheme == "http"  # resolved to loopback
    assert policy.endpoints("registry.internal:5000")[-1].scheme == "http"
    assert policy.endpoints("10.20.3.4")[-1].scheme == "http"
    assert policy.endpoints("10.21.3.4") == [Endpoint("https", "10.21.3.4", verify=True)]
    # ::1 is not in 127.0.0.0/8: dockerd holds it to HTTPS, and so do we.
    assert policy.endpoints("[::1]:5000") == [Endpoint("https", "[::1]:5000", verify=True)]
    assert policy.endpoints("docker.io") == [Endpoint("https", "registry-1.docker.io", verify=True)]
    assert policy.insecure_networks == [
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("10.20.0.0/16"),
    ]
    info = policy.registry_config()
    assert info["InsecureRegistryCIDRs"] == ["127.0.0.0/8", "10.20.0.0/16"]
    assert info["IndexConfigs"]["registry.internal:5000"]["Secure"] is False  # type: ignore[index]


@pytest.mark.parametrize("entry", ["ftp://x", "a b", "10.0.0.0/99", "host/path"])
def test_insecure_registries_that_are_neither_host_nor_cidr_are_refused(entry):
    with pytest.raises(ConfigError, match="insecure-registries"):
        EndpointPolicy([entry])


def test_a_scheme_on_an_insecure_registry_is_dropped_as_dockerd_does():
    assert EndpointPolicy(["http://myreg:5000"]).insecure_hosts == {"myreg:5000"}


def test_the_daemon_refuses_to_start_with_a_bad_insecure_registry(tmp_path):
    done = run_dockyard(
        [
            "daemon",
            "--data-root", str(tmp_path / "root"),
            "-H", f"unix://{tmp_path}/d.sock",
            "--insecure-registry", "10.0.0.0/8",
            "--insecure-registry", "not a host",
        ]
    )  # fmt: skip
    assert done.returncode == 1
    assert "insecure-registries: 'not a host' is neither HOST[:PORT] nor a CIDR" in done.stderr


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("https://Registry.Example:443/v1/", "registry.example:443"),
        ("http://[::1]:5000", "[::1]:5000"),
        ("docker.io", "docker.io"),
    ],
)
def test_a_server_address_names_a_registry_host(address, host):
    assert registry_host(address) == host


def test_docker_hub_keeps_dockerds_index_server_address():
    assert index_server_address("docker.io") == "https://index.docker.io/v1/"
    assert index_server_address("127.0.0.1:5000") == "127.0.0.1:5000"
    with pytest.raises(InvalidParameter):
        registry_host("https://user@host:5000")


# --------------------------------------------------------------------------------------------
# Registry error bodies
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "challenge", "body", "expected"),
    [
        (
            404,
            [],
            b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}',
            ("manifest unknown: manifest unknown", False),
        ),
        (
            401,
            [],
            b'{"errors":[{"code":"UNAUTHORIZED"}]}',
            ("unauthorized: authentication required", False),
        ),
        (401, [], b"<html>no</html>", ("unauthorized: authentication required", True)),
        (
            403,
            ['Bearer realm="r",error="insufficient_scope"'],
            b"",
            ("denied: requested access to the resource is denied", False),
        ),
        (401, [], b'{"details":"token expired"}', ("unauthorized: token expired", False)),
        (
            400,
            [],
            b'{"errors":[{"code":"WHATEVER","message":"m"},{"code":"DENIED","message":"n"}]}',
            ("errors:\nunknown: m\ndenied: n\n", False),
        ),
        (503, [], b"down", ("received unexpected HTTP status: 503 Service Unavailable", False)),
    ],
)
def test_registry_errors_read_as_distributions_client_words_them(status, challenge, body, expected):
    assert describe_error_response(status, challenge, body) == expected


# --------------------------------------------------------------------------------------------
# The token cache
# --------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(scope: str = "repository:a:pull", who: Credentials | None = None) -> TokenKey:
    return TokenKey(
        "https://auth/token", "reg", (scope,), (who or Credentials("u", "p")).cache_key()
    )


def test_tokens_are_kept_until_expires_in_less_a_margin():
    clock = Clock()
    cache = TokenCache(clock=clock)
    cache.put(key(), cache.token_for(TokenAnswer(expires_in=300), "t1"))
    clock.now += 289
    assert cache.get(key()).value == "t1"  # type: ignore[union-attr]
    clock.now += 2
    assert cache.get(key()) is None
    cache.put(key(), cache.token_for(TokenAnswer(), "t2"))  # no expires_in: docker's 60 s
    clock.now += 53
    assert cache.get(key()) is not None
    clock.now += 2
    assert cache.get(key()) is None


def test_tokens_are_per_scope_and_per_credentials_and_bounded():
    cache = TokenCache(capacity=2)
    token = cache.token_for(TokenAnswer(expires_in=300), "t")
    cache.put(key("repository:a:pull"), token)
    assert cache.get(key("repository:a:pull,push")) is None
    assert cache.get(key(who=Credentials("u", "other password"))) is None
    assert cache.get(key(who=Credentials("u", "p"))) is token
    cache.put(key("b"), token)
    cache.put(key("c"), token)
    assert cache.get(key("repository:a:pull")) is None  # the least recently used went
    assert "p" not in repr(Credentials("u", "p")) and "secret" not in repr(token)


# --------------------------------------------------------------------------------------------
# The client against our registry and the token server
# --------------------------------------------------------------------------------------------


def test_tokens_are_reused_and_a_refused_one_is_replaced_once(
    our_token_registry, token_server, token_provider
):
    async def scenario() -> None:
        endpoint = Endpoint("http", our_token_registry.host, verify=False)
        cache = TokenCache()
        credentials = Credentials(logins.TOKEN_USER, logins.TOKEN_PASSWORD)
        async with RegistryClient(endpoint, credentials, cache) as client:
            assert (await client.ping()).status_code == 401
            scopes = ["repository:x/y:pull"]
            assert (await client.request("GET", "/v2/", scopes=scopes)).status_code == 200
            assert (await client.request("GET", "/v2/", scopes=scopes)).status_code == 200
            assert len(token_server.requests) == 1  # the second request reused the token
            token_provider.revoked = True
            refused = await client.request("GET", "/v2/", scopes=scopes)
            assert refused.status_code == 401
            assert len(token_server.requests) == 2  # one fresh token, then no more tries
            token_provider.revoked = False
            assert (await client.request("GET", "/v2/", scopes=scopes)).status_code == 200
            assert len(token_server.requests) == 2  # the fresh one went into the cache

    asyncio.run(scenario())
    assert all(r.query["scope"] == ["repository:x/y:pull"] for r in token_server.requests)
    assert all("offline_token" not in r.query for r in token_server.requests)


def test_an_oauth_only_token_server_gets_the_password_grant(
    daemon, our_token_registry, token_server
):
    token_server.refuse_get = True
    body = logins.token_login(our_token_registry)
    reply = login(daemon, body)
    assert reply.status == 200, reply.body
    assert token_server.refresh_tokens[reply.json()["IdentityToken"]] == logins.TOKEN_USER
    get, post = token_server.requests
    assert (get.method, get.status, post.method, post.status) == ("GET", 405, "POST", 200)
    assert post.form["grant_type"] == ["password"] and post.form["access_type"] == ["offline"]
    assert post.form["username"] == [logins.TOKEN_USER] and post.form["client_id"] == ["docker"]


def test_connect_finds_the_endpoint_that_answers(our_basic_registry):
    """What pull and push start with: HTTPS refused by a plain-HTTP loopback registry, then
    HTTP; the challenge known before the first real request."""

    async def scenario() -> None:
        service = RegistryService(EndpointPolicy(), "127.0.0.1:5000")
        credentials = Credentials(logins.USER, logins.PASSWORD)
        async with await service.connect(our_basic_registry.host, credentials, "agent/1") as client:
            assert client.endpoint == Endpoint("http", our_basic_registry.host, verify=False)
            assert client.found_v2
            assert [c.scheme for c in client.challenges] == ["Basic"]
            assert (await client.request("GET", "/v2/")).status_code == 200
            agent = client.http.headers["user-agent"]
            assert agent.startswith("dockyard/") and agent.endswith(" UpstreamClient(agent/1)")
        with pytest.raises(RegistryError, match="connect: connection refused"):
            await service.connect(f"127.0.0.1:{logins.dead_port()}", credentials)

    asyncio.run(scenario())
