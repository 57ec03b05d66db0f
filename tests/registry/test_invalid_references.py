"""A GET or HEAD of a manifest under a reference that is neither a tag nor a digest names no
manifest: 404 MANIFEST_UNKNOWN, not a 400 for its syntax (the interop file compares with the
CNCF registry). A PUT under it is still refused as invalid."""

from __future__ import annotations

import pytest

INVALID = [
    "bad!tag",
    "-leading-dash",
    ".leading-dot",
    "a" * 129,
    "sha256:abc",
    "sha256:" + "A" * 64,
    "sha256:" + "a" * 63,
    "md5:0123456789abcdef0123456789abcdef",
    "a:b",
]


@pytest.mark.parametrize("reference", INVALID)
def test_an_invalid_reference_is_404_manifest_unknown(client, reference):
    image = client.push_image("refs/repo", "good")
    get = client.request("GET", f"/v2/refs/repo/manifests/{reference}")
    assert get.status_code == 404, get.text
    assert [e["code"] for e in get.json()["errors"]] == ["MANIFEST_UNKNOWN"]
    assert get.json()["errors"][0]["detail"]["reference"] == reference
    head = client.request("HEAD", f"/v2/refs/repo/manifests/{reference}")
    assert head.status_code == 404 and head.content == b""
    # In a repository that does not exist, the same.
    assert client.request("GET", f"/v2/refs/none/manifests/{reference}").status_code == 404
    # Writing under it is still a client error, and nothing changed.
    put = client.put_manifest("refs/repo", reference, image.manifest)
    assert put.status_code == 400
    assert client.request("GET", "/v2/refs/repo/manifests/good").content == image.manifest
