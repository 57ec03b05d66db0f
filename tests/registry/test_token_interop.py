"""Real clients and a real verifier with token auth: the CNCF registry (distribution 2.8)
trusting our token service through ``rootcertbundle``, and skopeo ``--creds`` against both."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dockyard.testing.images import image_archive
from tests.registry.conftest import TokenClient
from tests.registry.test_interop import skopeo, three_layers
from tests.registry.test_interop_cncf import push_blob
from tests.registry.test_token_service import PASSWORDS, SERVICE, start

pytestmark = pytest.mark.interop


@pytest.fixture
def token_server(tmp_path: Path):
    server = start(tmp_path / "ours")
    yield server
    server.stop()


def cncf_auth(server, root: Path) -> str:
    bundle = root / "ours" / "state" / "auth" / "token" / "token-cert.pem"
    return (
        "auth:\n  token:\n"
        f"    realm: {server.url}/token\n"
        f"    service: {SERVICE}\n"
        "    issuer: dockyard\n"
        f"    rootcertbundle: {bundle}\n"
    )


def push_image(client: TokenClient, name: str, tag: str) -> bytes:
    """Push a small image the way the CNCF registry takes blobs (POST, then PUT)."""
    config, layer = b'{"architecture":"amd64","os":"linux"}', os.urandom(64)
    for blob in (config, layer):
        push_blob(client, name, blob)
    manifest = client.manifest_for(config, [layer])
    reply = client.put_manifest(name, tag, manifest)
    assert reply.status_code == 201, reply.text  # type: ignore[attr-defined]
    return manifest


def archive(tmp_path: Path) -> Path:
    path = tmp_path / "image.tar"
    path.write_bytes(image_archive(three_layers(), ["busy:1"], layout="docker"))
    return path


def test_the_cncf_registry_accepts_our_tokens(tmp_path, token_server, cncf_registry_with_auth):
    cncf = cncf_registry_with_auth(cncf_auth(token_server, tmp_path))
    # Our own client, following the CNCF registry's challenges to our token service.
    alice = TokenClient(cncf.url, ("alice", PASSWORDS["alice"]))
    assert alice.request("GET", "/v2/").status_code == 200
    manifest = push_image(alice, "alice/app", "v1")
    reply = alice.request("GET", "/v2/alice/app/manifests/v1", headers={"Accept": alice.MANIFEST})
    assert reply.status_code == 200 and reply.content == manifest
    # What the rules refuse, our tokens do not carry, and the CNCF registry refuses.
    bob = TokenClient(cncf.url, ("bob", PASSWORDS["bob"]))
    refused = bob.request("GET", "/v2/alice/app/manifests/v1")
    assert refused.status_code == 401
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    # A pull-only token cannot push there either.
    pull_only = alice.token_for(f"{token_server.url}/token", SERVICE, "repository:alice/app:pull")
    push = alice.http.post(
        f"{cncf.url}/v2/alice/app/blobs/uploads/",
        headers={"Authorization": f"Bearer {pull_only}"},
        timeout=30,
    )
    assert push.status_code == 401
    assert 'error="insufficient_scope"' in push.headers["WWW-Authenticate"]
    # Anonymous pull where our rules allow it.
    push_image(alice, "public/base", "v1")
    anonymous = TokenClient(cncf.url)
    accept = {"Accept": anonymous.MANIFEST}
    reply = anonymous.request("GET", "/v2/public/base/manifests/v1", headers=accept)
    assert reply.status_code == 200


def test_skopeo_creds_through_the_cncf_registry(tmp_path, token_server, cncf_registry_with_auth):
    cncf = cncf_registry_with_auth(cncf_auth(token_server, tmp_path))
    creds = f"alice:{PASSWORDS['alice']}"
    target = f"docker://{cncf.host}/alice/busy"
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds,
           f"docker-archive:{archive(tmp_path)}", f"{target}:1")  # fmt: skip
    tags = skopeo("list-tags", "--tls-verify=false", "--creds", creds, target).stdout
    assert json.loads(tags)["Tags"] == ["1"]
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", "--src-creds", creds, f"{target}:1", f"dir:{out}")
    assert (out / "manifest.json").exists()
    with pytest.raises(AssertionError) as wrong:
        skopeo("inspect", "--tls-verify=false", "--creds", "alice:wrong", f"{target}:1")
    assert "401" in str(wrong.value) or "unauthorized" in str(wrong.value).lower()


def test_skopeo_creds_against_our_registry_in_token_mode(tmp_path, token_server):
    creds = f"bob:{PASSWORDS['bob']}"
    target = f"docker://{token_server.host}/team/busy"
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds,
           f"docker-archive:{archive(tmp_path)}", f"{target}:1")  # fmt: skip
    inspect = json.loads(
        skopeo("inspect", "--tls-verify=false", "--creds", creds, f"{target}:1").stdout
    )
    assert len(inspect["Layers"]) == 3
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", "--src-creds", creds, f"{target}:1", f"dir:{out}")
    assert (out / "manifest.json").exists()
    # bob may pull and push team/**, not delete there: skopeo is refused.
    with pytest.raises(AssertionError) as denied:
        skopeo("delete", "--tls-verify=false", "--creds", creds, f"{target}:1")
    assert "denied" in str(denied.value).lower() or "403" in str(denied.value)
