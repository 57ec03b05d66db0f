"""The registry as a pull-through cache: our registry as the remote, ours as the proxy, both on
loopback over real HTTP. The remote counts the requests it gets, so that a test sees what the
proxy asked it for."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import requests

from dockyard.core.config import ProxyConfig, RegistryConfig, parse_config, render_table, toml_value
from dockyard.core.errors import ConfigError
from dockyard.plugins.auth.htpasswd import HtpasswdAuth, HtpasswdConfig
from dockyard.plugins.registries.filesystem import FilesystemBackend
from dockyard.registry import layout
from dockyard.registry import proxy as proxy_module
from dockyard.registry.names import parse_digest
from dockyard.registry.proxy import PullThroughCache
from dockyard.registry.store import RegistryStore
from dockyard.testing.images import layer_tar, sha256
from tests.core.test_tls import SERVER_NAMES, make_ca, make_signed
from tests.distribution.conftest import SERVICE, TOKEN_PASSWORD, TOKEN_USER, TokenProvider
from tests.distribution.images import (
    DOCKER_MANIFEST,
    BuiltImage,
    Served,
    StubRegistry,
    build_image,
    busybox_image,
    push,
)
from tests.distribution.tokenserver import TokenServer
from tests.registry.conftest import ThreadedRegistry, htpasswd_file, serve_in_thread

NAME = "x/busybox"


class Counting:
    """ASGI middleware recording ``(method, path)`` of each request; ``delay`` seconds before
    answering a blob ``GET`` (so that concurrent clients surely overlap one fetch)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []
        self.delay = 0.0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["method"], scope["path"]))
            if self.delay and scope["method"] == "GET" and "/blobs/" in scope["path"]:
                await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)

    def count(self, method: str, fragment: str) -> int:
        return sum(1 for m, p in self.requests if m == method and fragment in p)


@attrs.define
class Chain:
    """The remote, its request counter, and the proxy in front of it."""

    remote: ThreadedRegistry
    counter: Counting
    proxy: ThreadedRegistry
    proxy_store: RegistryStore
    remote_root: Path
    proxy_root: Path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.proxy.url}{path}", timeout=30, **kwargs)


def make_chain(
    tmp_path: Path,
    ttl: int = 300,
    remote_auth: object = None,
    proxy_auth: object = None,
    username: str = "",
    password: str = "",
) -> Chain:
    counters: list[Counting] = []

    def wrap(app: Any) -> Counting:
        counters.append(Counting(app))
        return counters[0]

    remote_root = tmp_path / "remote"
    remote = serve_in_thread(RegistryStore(FilesystemBackend(remote_root)), remote_auth, wrap=wrap)
    cache = PullThroughCache(
        ProxyConfig(remote_url=remote.url, username=username, password=password, tag_ttl=ttl)
    )
    proxy_store = RegistryStore(FilesystemBackend(tmp_path / "proxy"))
    proxy = serve_in_thread(proxy_store, proxy_auth, proxy=cache)
    return Chain(remote, counters[0], proxy, proxy_store, remote_root, tmp_path / "proxy")


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    made = make_chain(tmp_path)
    yield made
    made.proxy.stop()
    made.remote.stop()


@pytest.fixture
def short_ttl(tmp_path: Path) -> Iterator[Chain]:
    made = make_chain(tmp_path, ttl=1)
    yield made
    made.proxy.stop()
    made.remote.stop()


def random_image(size: int, layers: int = 1) -> BuiltImage:
    """An image whose layers hold ``size`` incompressible bytes each."""
    return build_image([layer_tar({f"data{i}": os.urandom(size)}) for i in range(layers)])


def manifest_of(chain: Chain, reference: str, method: str = "GET") -> requests.Response:
    return requests.request(
        method,
        f"{chain.proxy.url}/v2/{NAME}/manifests/{reference}",
        headers={"Accept": DOCKER_MANIFEST},
        timeout=30,
    )


def stored_blob(store: RegistryStore, digest: str) -> bool:
    return store.exists(layout.blob_data(parse_digest(digest)))


def no_uploads_left(root: Path) -> bool:
    return not any(p.name == "_uploads" and any(p.iterdir()) for p in root.rglob("_uploads"))


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def test_the_proxy_table_is_read_and_unknown_keys_are_refused_by_name():
    config = parse_config(
        '[registry]\nproxy = { remote-url = "https://r.example:5000", username = "u", '
        'password = "s3cret", tag-ttl = 60 }\n',
        "test.toml",
    )
    assert config.registry.proxy == ProxyConfig("https://r.example:5000", "u", "s3cret", 60)
    assert "s3cret" not in repr(config.registry.proxy)
    assert parse_config("[registry]\n", "t").registry.proxy is None
    assert parse_config('[registry.proxy]\nremote-url = "http://h"\n', "t").registry.proxy == (
        ProxyConfig("http://h")
    )
    # `dockyard config default` shows the table commented out; what it writes reads back.
    shown = render_table(RegistryConfig(), "registry")
    assert '# proxy = { remote-url = "", username = "", password = "", tag-ttl = 300 }' in shown
    written = f"[registry]\nproxy = {toml_value(config.registry.proxy)}\n"
    assert parse_config(written, "t").registry.proxy == config.registry.proxy
    with pytest.raises(ConfigError, match=r"unknown key 'registry\.proxy\.ttl'.*tag-ttl"):
        parse_config('[registry]\nproxy = { remote-url = "http://h", ttl = 5 }\n', "t")
    with pytest.raises(ConfigError, match=r"'registry\.proxy\.tag-ttl' must be an integer"):
        parse_config('[registry]\nproxy = { tag-ttl = "5" }\n', "t")
    with pytest.raises(ConfigError, match=r"'registry\.proxy' must be a table"):
        parse_config('[registry]\nproxy = "http://h"\n', "t")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://h",
        "h:5000",
        "http://",
        "http://h/v2",
        "http://u:p@h",
        "http://h:port",
        "http://h?x",
    ],
)
def test_a_remote_url_we_cannot_use_is_a_start_up_error_naming_the_key(url):
    with pytest.raises(ConfigError, match=r"\[registry\] proxy\.remote-url"):
        PullThroughCache(ProxyConfig(remote_url=url))


def test_a_negative_tag_ttl_is_a_start_up_error():
    with pytest.raises(ConfigError, match=r"proxy\.tag-ttl"):
        PullThroughCache(ProxyConfig(remote_url="http://h", tag_ttl=-1))


# --------------------------------------------------------------------------------------------
# Pulling through the proxy
# --------------------------------------------------------------------------------------------


def test_an_image_pulled_through_is_kept_and_served_when_the_remote_is_gone(chain):
    image = busybox_image(extra=1)
    push(chain.remote.url, NAME, "1", image)
    reply = manifest_of(chain, "1")
    assert reply.status_code == 200, reply.text
    assert reply.content == image.manifest
    assert reply.headers["Docker-Content-Digest"] == image.digest
    for digest, data in image.blob_map().items():
        got = chain.get(f"/v2/{NAME}/blobs/{digest}")
        assert got.status_code == 200 and got.content == data
        assert got.headers["Docker-Content-Digest"] == digest
        assert stored_blob(chain.proxy_store, digest)
    assert chain.get("/v2/_catalog").json() == {"repositories": [NAME]}
    chain.remote.stop()
    # Everything from the store now: by digest, and by tag within its TTL.
    assert manifest_of(chain, image.digest).content == image.manifest
    assert manifest_of(chain, image.digest, "HEAD").status_code == 200
    assert manifest_of(chain, "1").content == image.manifest
    for digest, data in image.blob_map().items():
        assert chain.get(f"/v2/{NAME}/blobs/{digest}").content == data


def test_a_manifest_by_digest_is_fetched_once_then_served_locally(chain):
    image = busybox_image()
    push(chain.remote.url, NAME, "1", image)
    assert manifest_of(chain, image.digest, "HEAD").status_code == 200
    assert manifest_of(chain, image.digest).content == image.manifest
    assert chain.counter.count("GET", f"/manifests/{image.digest}") == 1
    assert manifest_of(chain, "sha256:" + "0" * 64).status_code == 404
    assert manifest_of(chain, "nope").json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_concurrent_gets_of_one_blob_make_one_remote_fetch(chain):
    image = random_image(4 << 20)
    push(chain.remote.url, NAME, "1", image)
    layer = sha256(image.blobs[0])
    chain.counter.delay = 0.3
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: chain.get(f"/v2/{NAME}/blobs/{layer}"), range(6)))
    assert [r.status_code for r in replies] == [200] * 6
    assert all(r.content == image.blobs[0] for r in replies)
    assert chain.counter.count("GET", f"/blobs/{layer}") == 1
    # A range of it, later: from the store.
    part = chain.get(f"/v2/{NAME}/blobs/{layer}", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == image.blobs[0][10:20]
    assert chain.counter.count("GET", f"/blobs/{layer}") == 1


def test_the_first_client_gets_the_bytes_as_they_arrive(chain):
    """The remote sends the first part of the blob, then stalls: the client that started the
    fetch has that part before the remote sends the rest."""
    image = random_image(2 << 20)
    push(chain.remote.url, NAME, "1", image)
    layer = sha256(image.blobs[0])
    release = threading.Event()
    inner = chain.counter.app

    async def stalling(scope: dict, receive: Any, send: Any) -> None:
        async def paused(message: dict) -> None:
            if message["type"] == "http.response.body" and message.get("more_body"):
                await send(message)
                while not release.is_set():
                    await asyncio.sleep(0.01)
                return
            await send(message)

        await inner(scope, receive, paused if "/blobs/" in scope["path"] else send)

    chain.counter.app = stalling
    with requests.get(f"{chain.proxy.url}/v2/{NAME}/blobs/{layer}", stream=True, timeout=30) as got:
        first = next(got.iter_content(4096))
        assert first == image.blobs[0][: len(first)]
        release.set()
        rest = b"".join(got.iter_content(1 << 16))
    assert first + rest == image.blobs[0]


def test_a_client_that_falls_behind_gets_the_rest_from_the_store(chain, monkeypatch):
    """The fetch does not wait for a slow client, and the registry does not queue a whole blob
    in memory for it: past the limit, the client reads the rest from the store."""
    monkeypatch.setattr(proxy_module, "MAX_BEHIND", 256 << 10)
    image = random_image(16 << 20)  # more than loopback's socket buffers hold
    push(chain.remote.url, NAME, "1", image)
    layer = sha256(image.blobs[0])
    read_from = []
    read_blob = chain.proxy_store.read_blob

    def recording_read_blob(digest, offset=0, length=None):
        read_from.append(offset)
        return read_blob(digest, offset, length)

    monkeypatch.setattr(chain.proxy_store, "read_blob", recording_read_blob)
    with requests.get(f"{chain.proxy.url}/v2/{NAME}/blobs/{layer}", stream=True, timeout=30) as got:
        received = got.raw.read(1)
        deadline = time.monotonic() + 20
        while not stored_blob(chain.proxy_store, layer):  # the fetch finishes without us
            assert time.monotonic() < deadline
            time.sleep(0.05)
        received += got.raw.read()
    assert received == image.blobs[0]
    assert chain.counter.count("GET", f"/blobs/{layer}") == 1
    # It had at most the limit (and what the sockets buffer) from memory; the rest came from
    # the store.
    (offset,) = read_from
    assert 0 < offset < 12 << 20


def test_a_client_that_goes_away_does_not_stop_the_fetch_others_wait_for(chain):
    image = random_image(4 << 20)
    push(chain.remote.url, NAME, "1", image)
    layer = sha256(image.blobs[0])
    chain.counter.delay = 0.3
    first = requests.get(f"{chain.proxy.url}/v2/{NAME}/blobs/{layer}", stream=True, timeout=30)
    with first, concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(chain.get, f"/v2/{NAME}/blobs/{layer}")
        time.sleep(0.1)
        next(first.iter_content(1024))
        first.raw.close()  # the first client hangs up mid-blob
        assert waiter.result().content == image.blobs[0]
    assert chain.counter.count("GET", f"/blobs/{layer}") == 1
    assert stored_blob(chain.proxy_store, layer)


def test_head_of_a_blob_not_held_asks_the_remote_and_fetches_nothing(chain):
    image = busybox_image()
    push(chain.remote.url, NAME, "1", image)
    layer = sha256(image.blobs[0])
    reply = requests.head(f"{chain.proxy.url}/v2/{NAME}/blobs/{layer}", timeout=30)
    assert reply.status_code == 200
    assert reply.headers["Content-Length"] == str(len(image.blobs[0]))
    assert reply.headers["Docker-Content-Digest"] == layer
    assert chain.counter.count("GET", "/blobs/") == 0
    assert not stored_blob(chain.proxy_store, layer)
    missing = "sha256:" + "1" * 64
    assert (
        requests.head(f"{chain.proxy.url}/v2/{NAME}/blobs/{missing}", timeout=30).status_code == 404
    )
    assert chain.get(f"/v2/{NAME}/blobs/{missing}").json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_a_blob_held_for_another_repository_is_linked_without_fetching(chain):
    image = busybox_image()
    push(chain.remote.url, NAME, "1", image)
    push(chain.remote.url, "y/other", "1", image)
    layer = sha256(image.blobs[0])
    assert chain.get(f"/v2/{NAME}/blobs/{layer}").status_code == 200
    assert chain.get(f"/v2/y/other/blobs/{layer}").content == image.blobs[0]
    assert chain.counter.count("GET", "/blobs/") == 1
    assert chain.counter.count("HEAD", f"/v2/y/other/blobs/{layer}") == 1


def test_a_blob_that_does_not_match_its_digest_is_refused_and_nothing_is_stored(chain):
    image = random_image(1 << 20)
    push(chain.remote.url, NAME, "1", image)
    layer = sha256(image.blobs[0])
    # The remote's copy goes bad: same size, one byte changed.
    data_path = chain.remote_root / layout.blob_data(parse_digest(layer)).lstrip("/")
    corrupt = bytearray(data_path.read_bytes())
    corrupt[-1] ^= 0xFF
    data_path.write_bytes(bytes(corrupt))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        chain.get(f"/v2/{NAME}/blobs/{layer}")
    assert not stored_blob(chain.proxy_store, layer)
    assert no_uploads_left(chain.proxy_root)
    # Later requests try again (and wait for the fetch if they cannot stream it).
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        chain.get(f"/v2/{NAME}/blobs/{layer}")
    assert chain.counter.count("GET", f"/blobs/{layer}") == 2
    # A client that waits for another's fetch of it gets a 502: its status is not sent yet.
    chain.counter.delay = 1.0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        streaming = pool.submit(chain.get, f"/v2/{NAME}/blobs/{layer}")
        while chain.counter.count("GET", f"/blobs/{layer}") < 3:
            time.sleep(0.01)
        waiting = chain.get(f"/v2/{NAME}/blobs/{layer}")
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            streaming.result()
    assert waiting.status_code == 502 and "does not match" in waiting.text, waiting.text
    chain.counter.delay = 0
    data_path.write_bytes(image.blobs[0])  # repaired
    assert chain.get(f"/v2/{NAME}/blobs/{layer}").content == image.blobs[0]
    assert stored_blob(chain.proxy_store, layer)
    assert chain.counter.count("GET", f"/blobs/{layer}") == 4


def test_a_manifest_the_registry_would_refuse_is_a_502_and_not_kept(tmp_path):
    stub = StubRegistry()
    cache = PullThroughCache(ProxyConfig(remote_url=stub.url))
    proxy = serve_in_thread(RegistryStore(FilesystemBackend(tmp_path / "proxy")), proxy=cache)
    try:
        stub.routes[f"/v2/{NAME}/manifests/1"] = Served(b"not json", DOCKER_MANIFEST)
        stub.routes[f"/v2/{NAME}/manifests/2"] = Served(b"{}", DOCKER_MANIFEST, "md5:abc")
        huge = b" " * (8 << 20) + b"{}"  # read no further than the limit
        stub.routes[f"/v2/{NAME}/manifests/3"] = Served(huge, DOCKER_MANIFEST)
        for tag, words in (("1", "cannot be kept"), ("2", "cannot check"), ("3", "larger than")):
            reply = requests.get(f"{proxy.url}/v2/{NAME}/manifests/{tag}", timeout=30)
            assert reply.status_code == 502 and words in reply.text, reply.text
        assert proxy.store.tags(NAME) == []
    finally:
        proxy.stop()
        stub.stop()


# --------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------


def test_a_tag_is_trusted_for_its_ttl_then_follows_the_remote(short_ttl):
    chain = short_ttl
    first, second = busybox_image(), busybox_image(extra=1)
    push(chain.remote.url, NAME, "1", first)
    assert manifest_of(chain, "1").content == first.manifest
    push(chain.remote.url, NAME, "1", second)
    assert manifest_of(chain, "1").content == first.manifest  # within the TTL
    time.sleep(1.1)
    assert manifest_of(chain, "1").content == second.manifest
    assert chain.counter.count("HEAD", "/manifests/1") == 2


def test_a_stale_tag_is_served_while_the_remote_is_down(tmp_path):
    """With a TTL of 0, every request asks the remote again."""
    chain = make_chain(tmp_path, ttl=0)
    try:
        image = busybox_image()
        push(chain.remote.url, NAME, "1", image)
        assert manifest_of(chain, "1").content == image.manifest
        # Every request asks again (a TTL of 0); an unchanged tag costs a HEAD only.
        assert manifest_of(chain, "1").content == image.manifest
        assert chain.counter.count("HEAD", "/manifests/1") == 2
        assert chain.counter.count("GET", "/manifests/1") == 1
        reply = requests.get(f"{chain.proxy.url}/v2/{NAME}/manifests/missing", timeout=30)
        assert reply.status_code == 404
        assert reply.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        chain.remote.stop()
        assert manifest_of(chain, "1").content == image.manifest
        assert manifest_of(chain, "1", "HEAD").status_code == 200
        unknown = manifest_of(chain, "2")
        assert unknown.status_code == 502
        assert unknown.json()["errors"][0]["code"] == "UNKNOWN"
    finally:
        chain.proxy.stop()
        chain.remote.stop()


def test_tags_are_listed_from_the_remote_or_from_the_store_when_it_is_down(chain):
    image = busybox_image()
    push(chain.remote.url, NAME, "1", image)
    push(chain.remote.url, NAME, "2", image)
    assert chain.get(f"/v2/{NAME}/tags/list").json() == {"name": NAME, "tags": ["1", "2"]}
    page = chain.get(f"/v2/{NAME}/tags/list?n=1")
    assert page.json()["tags"] == ["1"] and "last=1" in page.headers["Link"]
    assert chain.get("/v2/nope/tags/list").json()["errors"][0]["code"] == "NAME_UNKNOWN"
    manifest_of(chain, "2")
    chain.remote.stop()
    assert chain.get(f"/v2/{NAME}/tags/list").json() == {"name": NAME, "tags": ["2"]}


# --------------------------------------------------------------------------------------------
# Writes, auth
# --------------------------------------------------------------------------------------------


def test_pushes_and_deletes_are_refused_with_405(chain):
    image = busybox_image()
    push(chain.remote.url, NAME, "1", image)
    manifest_of(chain, "1")
    layer = sha256(image.blobs[0])
    url = f"{chain.proxy.url}/v2/{NAME}"
    attempts = [
        ("POST", f"{url}/blobs/uploads/"),
        ("PATCH", f"{url}/blobs/uploads/0e6f7a5c-2b1e-4f43-9d0a-1c3f1b2a3d4e"),
        ("PUT", f"{url}/manifests/1"),
        ("DELETE", f"{url}/manifests/1"),
        ("DELETE", f"{url}/blobs/{layer}"),
    ]
    for method, target in attempts:
        reply = requests.request(method, target, data=b"{}", timeout=30)
        assert reply.status_code == 405, (method, target)
        assert reply.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert manifest_of(chain, "1").status_code == 200


def test_a_remote_asking_for_tokens_is_reached_with_the_configured_credentials(tmp_path):
    server = TokenServer({TOKEN_USER: TOKEN_PASSWORD}, service=SERVICE).start()
    provider = TokenProvider(server)
    chain = make_chain(tmp_path, remote_auth=provider, username=TOKEN_USER, password=TOKEN_PASSWORD)
    wrong = make_chain(tmp_path / "wrong", remote_auth=provider, username=TOKEN_USER, password="x")
    try:
        image = busybox_image()
        token = server.issue(TOKEN_USER, [f"repository:{NAME}:pull,push"])
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        push(chain.remote.url, NAME, "1", image, session)
        assert manifest_of(chain, "1").content == image.manifest
        layer = sha256(image.blobs[0])
        assert chain.get(f"/v2/{NAME}/blobs/{layer}").content == image.blobs[0]
        assert {r.basic_user for r in server.requests} == {TOKEN_USER}
        refused = requests.get(f"{wrong.proxy.url}/v2/{NAME}/manifests/1", timeout=30)
        assert refused.status_code == 502 and "unauthorized" in refused.text
    finally:
        for made in (chain, wrong):
            made.proxy.stop()
            made.remote.stop()
        server.stop()


def test_a_remote_that_starts_asking_for_tokens_is_answered_with_them(tmp_path):
    """The proxy pinged an anonymous remote; once the remote wants tokens, its first 401 makes
    the proxy learn the new challenge and ask again, with the configured credentials."""
    server = TokenServer({TOKEN_USER: TOKEN_PASSWORD}, service=SERVICE).start()
    chain = make_chain(tmp_path, username=TOKEN_USER, password=TOKEN_PASSWORD)
    try:
        first, second = busybox_image(), busybox_image(extra=1)
        push(chain.remote.url, NAME, "1", first)
        push(chain.remote.url, NAME, "2", second)
        assert manifest_of(chain, "1").content == first.manifest
        chain.counter.app.state.registry.gatekeeper.provider = TokenProvider(server)
        assert requests.get(f"{chain.remote.url}/v2/", timeout=30).status_code == 401
        assert manifest_of(chain, "2").content == second.manifest
        assert {r.basic_user for r in server.requests} == {TOKEN_USER}
    finally:
        chain.proxy.stop()
        chain.remote.stop()
        server.stop()


def test_the_proxys_own_auth_still_applies_to_its_clients(tmp_path):
    htpasswd = htpasswd_file(tmp_path / "htpasswd", {"alice": "secret"})
    provider = HtpasswdAuth(HtpasswdConfig(path=str(htpasswd), realm="proxy"))
    chain = make_chain(tmp_path, proxy_auth=provider)
    try:
        image = busybox_image()
        push(chain.remote.url, NAME, "1", image)
        assert manifest_of(chain, "1").status_code == 401
        assert chain.counter.count("GET", "/manifests/") == 0  # nothing fetched for a stranger
        reply = chain.get(f"/v2/{NAME}/manifests/1", auth=("alice", "secret"))
        assert reply.status_code == 200 and reply.content == image.manifest
    finally:
        chain.proxy.stop()
        chain.remote.stop()


def test_an_https_remote_is_checked_against_the_systems_cas(
    tmp_path, monkeypatch, registry_process
):
    """A remote whose CA the system does not trust is refused; trusted (``SSL_CERT_FILE``,
    which OpenSSL's default paths honour, as a CA added to the system's store would be), the
    same remote serves."""
    ca = make_ca(tmp_path, "ca")
    server = make_signed(tmp_path, "server", ca, SERVER_NAMES)
    remote = registry_process(
        f'[registry]\ndata-root = "{tmp_path}/remote/state"\n'
        f'tlscert = "{server.cert}"\ntlskey = "{server.key}"\n'
        f'[registries.filesystem]\nroot = "{tmp_path}/remote/data"\n'
    )
    url = f"https://127.0.0.1:{remote.port}"
    image = busybox_image()
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)  # requests would prefer them to session.verify
    session = requests.Session()
    session.verify = ca.cert
    push(url, NAME, "1", image, session)
    session.close()
    untrusted = serve_in_thread(
        RegistryStore(FilesystemBackend(tmp_path / "p1")),
        proxy=PullThroughCache(ProxyConfig(remote_url=url)),
    )
    try:
        refused = requests.get(f"{untrusted.url}/v2/{NAME}/manifests/1", timeout=30)
        assert refused.status_code == 502 and "certificate" in refused.text, refused.text
    finally:
        untrusted.stop()
    monkeypatch.setenv("SSL_CERT_FILE", ca.cert)
    trusted = serve_in_thread(
        RegistryStore(FilesystemBackend(tmp_path / "p2")),
        proxy=PullThroughCache(ProxyConfig(remote_url=url)),
    )
    try:
        reply = requests.get(
            f"{trusted.url}/v2/{NAME}/manifests/1", headers={"Accept": DOCKER_MANIFEST}, timeout=30
        )
        assert reply.status_code == 200 and reply.content == image.manifest
    finally:
        trusted.stop()
        # Killed: a TLS registry waits out its 10 s grace for the proxy's idle connection.
        remote.process.kill()
        remote.process.wait()
