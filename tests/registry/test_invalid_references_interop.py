"""Invalid references beside the CNCF registry 2.8 (Debian's ``docker-registry``).

The reference routes a reference that is not a tag nowhere, and answers 404 (with its plain
"404 page not found": no route, so no error code); one that looks like a digest but is not a
valid one it takes for a tag and fails on with a 500. We answer 404 ``MANIFEST_UNKNOWN`` to
both: the same status where the reference's is a client's, the spec's error form always.
"""

from __future__ import annotations

import pytest

from tests.registry.test_interop_cncf import both_with_a_good_manifest

pytestmark = pytest.mark.interop

#: Not a tag: the reference has no route for them (404).
NOT_TAGS = ["bad!tag", "-leading-dash", ".leading-dot", "a" * 129]
#: Digest-shaped but invalid: the reference fails (500).
BAD_DIGESTS = ["sha256:abc", "sha256:" + "a" * 63, "md5:0123456789abcdef0123456789abcdef", "a:b"]


def test_invalid_references_side_by_side_with_the_cncf_registry(
    tmp_path, registry_process, cncf_registry, client_for
):
    ours, clients = both_with_a_good_manifest(
        tmp_path, registry_process, cncf_registry, client_for, "side/refs"
    )
    for reference in NOT_TAGS + BAD_DIGESTS:
        for method in ("GET", "HEAD"):
            got = {
                who: client.request(method, f"/v2/side/refs/manifests/{reference}")
                for who, client in clients.items()
            }
            expected_reference = 404 if reference in NOT_TAGS else 500
            assert got["cncf"].status_code == expected_reference, (reference, method)
            assert got["dockyard"].status_code == 404, (reference, method)
            if method == "GET":
                codes = [e["code"] for e in got["dockyard"].json()["errors"]]
                assert codes == ["MANIFEST_UNKNOWN"]
    # A valid tag that names nothing: both answer 404 MANIFEST_UNKNOWN.
    for client in clients.values():
        missing = client.request("GET", "/v2/side/refs/manifests/nosuch")
        assert missing.status_code == 404
        assert [e["code"] for e in missing.json()["errors"]] == ["MANIFEST_UNKNOWN"]
    assert ours.server_errors() == []
