"""The OCI Distribution API over real HTTP, against the filesystem backend."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from dockyard.plugins.registries.filesystem import FilesystemBackend
from dockyard.registry.store import Limits, RegistryStore


def error_codes(reply) -> list[str]:
    return [e["code"] for e in reply.json()["errors"]]


def start_session(client, name: str, query: str = "") -> str:
    reply = client.request("POST", f"/v2/{name}/blobs/uploads/{query}")
    assert reply.status_code == 202, reply.text
    assert reply.headers["Range"] == "0-0"
    return reply.headers["Location"]


def test_base_endpoint_answers_200_with_api_version(client):
    reply = client.request("GET", "/v2/")
    assert reply.status_code == 200
    assert reply.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_monolithic_post_then_head_get_and_ranges(client):
    data = os.urandom(2048)
    digest = client.push_blob("lib/app", data)
    head = client.request("HEAD", f"/v2/lib/app/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "2048"
    assert head.headers["Docker-Content-Digest"] == digest
    whole = client.request("GET", f"/v2/lib/app/blobs/{digest}")
    assert whole.status_code == 200 and whole.content == data
    cases = {
        "bytes=500-1499": (500, 1499),
        "bytes=500-": (500, 2047),
        "bytes=-500": (1548, 2047),
        "bytes=2000-5000": (2000, 2047),
    }
    for header, (start, end) in cases.items():
        part = client.request("GET", f"/v2/lib/app/blobs/{digest}", headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == data[start : end + 1], header
        assert part.headers["Content-Range"] == f"bytes {start}-{end}/2048"
        assert part.headers["Content-Length"] == str(end - start + 1)
    for header in ("bytes=500-0", "bytes=5000-10000", "bytes=-0"):
        reply = client.request("GET", f"/v2/lib/app/blobs/{digest}", headers={"Range": header})
        assert reply.status_code == 416, header
        assert reply.headers["Content-Range"] == "bytes */2048"


def test_post_then_put_with_zero_length_blob(client):
    location = start_session(client, "empty")
    digest = client.digest(b"")
    reply = client.request("PUT", f"{location}?digest={digest}")
    assert reply.status_code == 201, reply.text
    assert reply.headers["Location"] == f"/v2/empty/blobs/{digest}"
    assert client.request("GET", f"/v2/empty/blobs/{digest}").content == b""


def test_chunked_upload_in_order_out_of_order_and_final_chunk_in_put(client):
    data = os.urandom(3000)
    location = start_session(client, "chunks")
    first = client.request(
        "PATCH",
        location,
        data=data[:1000],
        headers={"Content-Range": "0-999", "Content-Type": "application/octet-stream"},
    )
    assert first.status_code == 202, first.text
    assert first.headers["Range"] == "0-999"
    location = first.headers["Location"]
    # A chunk that skips ahead is refused with 416, and the session is unharmed.
    skipped = client.request(
        "PATCH", location, data=data[2000:], headers={"Content-Range": "2000-2999"}
    )
    assert skipped.status_code == 416
    assert error_codes(skipped) == ["BLOB_UPLOAD_INVALID"]
    assert skipped.headers["Range"] == "0-999"
    repeated = client.request(
        "PATCH", location, data=data[:1000], headers={"Content-Range": "0-999"}
    )
    assert repeated.status_code == 416
    status = client.request("GET", location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-999"
    second = client.request(
        "PATCH", location, data=data[1000:2000], headers={"Content-Range": "1000-1999"}
    )
    assert second.status_code == 202 and second.headers["Range"] == "0-1999"
    digest = client.digest(data)
    wrong_put = client.request(
        "PUT",
        f"{location}?digest={digest}",
        data=data[2500:],
        headers={"Content-Range": "2500-2999"},
    )
    assert wrong_put.status_code == 416
    done = client.request(
        "PUT",
        f"{location}?digest={digest}",
        data=data[2000:],
        headers={"Content-Range": "2000-2999"},
    )
    assert done.status_code == 201, done.text
    assert client.request("GET", f"/v2/chunks/blobs/{digest}").content == data


def test_streamed_patch_without_content_range(client):
    data = os.urandom(5 * 1024 * 1024 + 17)
    location = start_session(client, "stream")

    def body():
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    reply = client.request("PATCH", location, data=body())
    assert reply.status_code == 202, reply.text
    assert reply.headers["Range"] == f"0-{len(data) - 1}"
    digest = client.digest(data)
    assert client.request("PUT", f"{reply.headers['Location']}?digest={digest}").status_code == 201
    assert client.request("GET", f"/v2/stream/blobs/{digest}").content == data


def test_wrong_digest_is_refused_and_the_session_keeps_its_bytes(client):
    data = b"hello world"
    location = start_session(client, "wrong")
    client.request("PATCH", location, data=data, headers={"Content-Range": "0-10"})
    bad = client.request("PUT", f"{location}?digest={client.digest(b'other')}")
    assert bad.status_code == 400 and error_codes(bad) == ["DIGEST_INVALID"]
    assert client.request("GET", location).headers["Range"] == "0-10"
    good = client.request("PUT", f"{location}?digest={client.digest(data)}")
    assert good.status_code == 201
    # Monolithic POST with the wrong digest stores nothing.
    reply = client.request(
        "POST", f"/v2/wrong/blobs/uploads/?digest={client.digest(b'x')}", data=b"y"
    )
    assert reply.status_code == 400 and error_codes(reply) == ["DIGEST_INVALID"]
    assert client.request("HEAD", f"/v2/wrong/blobs/{client.digest(b'y')}").status_code == 404


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:xyz",
        "sha256:baddigeststring",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nocolon",
        "sha256:" + "A" * 64,
        "sha512:" + "a" * 64,
    ],
)
def test_malformed_digests_are_400_never_500(client, digest):
    for method in ("GET", "HEAD", "DELETE"):
        reply = client.request(method, f"/v2/repo/blobs/{digest}")
        assert reply.status_code == 400, (method, digest)
    assert error_codes(client.request("GET", f"/v2/repo/blobs/{digest}")) == ["DIGEST_INVALID"]
    post = client.request("POST", f"/v2/repo/blobs/uploads/?digest={digest}", data=b"x")
    assert post.status_code == 400
    manifest = client.request("GET", f"/v2/repo/manifests/{digest}")
    assert manifest.status_code in (400, 404)
    assert client.request("GET", f"/v2/repo/referrers/{digest}").status_code == 400


@pytest.mark.parametrize(
    "name", ["UPPER", "a//b", "-lead", "trail-", "a/_private", "x" * 201, "a..b"]
)
def test_invalid_repository_names_are_name_invalid(client, name):
    reply = client.request("GET", f"/v2/{name}/tags/list")
    assert reply.status_code == 400
    assert error_codes(reply) == ["NAME_INVALID"]


def test_invalid_tags_are_refused(client):
    image = client.push_image("tags/bad", "ok")
    for tag in ("-dash", ".dot", "t" * 129, "a+b"):
        reply = client.put_manifest("tags/bad", tag, image.manifest)
        assert reply.status_code == 400, tag
        assert error_codes(reply) == ["MANIFEST_INVALID"]
    reply = client.request(
        "PUT",
        f"/v2/tags/bad/manifests/{image.digest}?tag=-x",
        data=image.manifest,
        headers={"Content-Type": client.MANIFEST},
    )
    assert reply.status_code == 400
    assert client.request("GET", "/v2/tags/bad/tags/list").json()["tags"] == ["ok"]


def test_upload_cancel_and_unknown_sessions(client):
    location = start_session(client, "cancel")
    assert client.request("DELETE", location).status_code == 204
    gone = client.request("GET", location)
    assert gone.status_code == 404 and error_codes(gone) == ["BLOB_UPLOAD_UNKNOWN"]
    for upload_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            reply = client.request(method, f"/v2/cancel/blobs/uploads/{upload_id}")
            assert reply.status_code == 404, (method, upload_id)


def test_cross_repository_mount(client):
    data = os.urandom(100)
    digest = client.push_blob("source/repo", data)
    mounted = client.request(
        "POST", f"/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo"
    )
    assert mounted.status_code == 201
    assert mounted.headers["Docker-Content-Digest"] == digest
    assert client.request("GET", f"/v2/target/repo/blobs/{digest}").content == data
    anonymous = client.request("POST", f"/v2/third/blobs/uploads/?mount={digest}")
    assert anonymous.status_code == 201
    missing = client.request("POST", f"/v2/fourth/blobs/uploads/?mount={digest}&from=nowhere")
    assert missing.status_code == 202 and "Location" in missing.headers
    unknown = client.digest(b"never pushed")
    fallback = client.request("POST", f"/v2/fourth/blobs/uploads/?mount={unknown}&from=source/repo")
    assert fallback.status_code == 202
    bad_from = client.request("POST", f"/v2/fourth/blobs/uploads/?mount={digest}&from=BAD")
    assert bad_from.status_code == 400 and error_codes(bad_from) == ["NAME_INVALID"]


def test_blob_not_in_repository_is_unknown_there(client):
    digest = client.push_blob("owner/a", b"private")
    reply = client.request("GET", f"/v2/owner/b/blobs/{digest}")
    assert reply.status_code == 404 and error_codes(reply) == ["BLOB_UNKNOWN"]


def test_manifest_push_pull_by_tag_and_digest(client):
    image = client.push_image("img", "v1", layers=[b"layer one", b"layer two"])
    for reference in ("v1", image.digest):
        reply = client.request(
            "GET", f"/v2/img/manifests/{reference}", headers={"Accept": client.MANIFEST}
        )
        assert reply.status_code == 200
        assert reply.content == image.manifest
        assert reply.headers["Content-Type"] == client.MANIFEST
        assert reply.headers["Docker-Content-Digest"] == image.digest
        head = client.request("HEAD", f"/v2/img/manifests/{reference}")
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(len(image.manifest))
    missing = client.request("GET", "/v2/img/manifests/nope")
    assert missing.status_code == 404 and error_codes(missing) == ["MANIFEST_UNKNOWN"]
    assert client.request("HEAD", "/v2/img/manifests/nope").status_code == 404


def test_manifest_put_by_digest_with_tags_and_wrong_digest(client):
    image = client.push_image("multi", "first")
    reply = client.request(
        "PUT",
        f"/v2/multi/manifests/{image.digest}?tag=1.0&tag=latest",
        data=image.manifest,
        headers={"Content-Type": client.MANIFEST},
    )
    assert reply.status_code == 201
    assert sorted(reply.headers["OCI-Tag"].replace(" ", "").split(",")) == ["1.0", "latest"]
    assert client.request("GET", "/v2/multi/tags/list").json()["tags"] == ["1.0", "first", "latest"]
    wrong = client.put_manifest("multi", client.digest(b"something else"), image.manifest)
    assert wrong.status_code == 400 and error_codes(wrong) == ["DIGEST_INVALID"]
    sha512 = client.put_manifest("multi", client.digest(image.manifest, "sha512"), image.manifest)
    assert sha512.status_code == 201
    got = client.request("GET", f"/v2/multi/manifests/{client.digest(image.manifest, 'sha512')}")
    assert got.content == image.manifest


def test_manifest_with_missing_blobs_is_refused_and_stores_nothing(client):
    config = b"{}"
    client.push_blob("refs", config)
    manifest = client.manifest_for(config, [b"not uploaded"])
    reply = client.put_manifest("refs", "latest", manifest)
    assert reply.status_code == 400
    assert error_codes(reply) == ["MANIFEST_BLOB_UNKNOWN"]
    assert client.digest(b"not uploaded") in reply.text
    assert client.request("GET", "/v2/refs/manifests/latest").status_code == 404
    assert client.request("GET", f"/v2/refs/manifests/{client.digest(manifest)}").status_code == 404


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/vnd.oci.image.manifest.v1+json"),
        (b"[]", "application/vnd.oci.image.manifest.v1+json"),
        (b'{"schemaVersion": 1, "config": {}}', "application/vnd.oci.image.manifest.v1+json"),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [],
                }
            ).encode(),
            "application/vnd.oci.image.manifest.v1+json",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "config": {"mediaType": "x", "digest": "sha256:zz", "size": 1},
                    "layers": [],
                }
            ).encode(),
            "application/vnd.oci.image.manifest.v1+json",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "config": {"mediaType": "x", "digest": "sha256:" + "a" * 64, "size": -1},
                    "layers": [],
                }
            ).encode(),
            "application/vnd.oci.image.manifest.v1+json",
        ),
        (
            b'{"schemaVersion": 1, "fsLayers": []}',
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
        (b'{"schemaVersion": 2}', "text/plain"),
        (b"[" * 200_000 + b"]" * 200_000, "application/vnd.oci.image.manifest.v1+json"),
        (
            b'{"schemaVersion": 2, "config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "application/vnd.oci.image.manifest.v1+json",
        ),
        (b"\xff\xfe not utf-8", "application/vnd.oci.image.manifest.v1+json"),
    ],
)
def test_invalid_manifests_are_manifest_invalid(client, body, content_type):
    good = client.push_image("bad", "latest")
    reply = client.request(
        "PUT", "/v2/bad/manifests/latest", data=body, headers={"Content-Type": content_type}
    )
    assert reply.status_code == 400, reply.text
    assert error_codes(reply) == ["MANIFEST_INVALID"]
    # The tag still names the manifest it named before.
    assert client.request("GET", "/v2/bad/manifests/latest").content == good.manifest
    assert client.request("GET", "/v2/bad/tags/list").json()["tags"] == ["latest"]


def test_index_needs_its_manifests_and_accept_negotiation(client):
    child = client.push_image("idx", "child")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": client.INDEX,
            "manifests": [
                {
                    "mediaType": client.MANIFEST,
                    "digest": child.digest,
                    "size": len(child.manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        }
    ).encode()
    missing_child = index.replace(child.digest.encode(), client.digest(b"nothing").encode())
    refused = client.put_manifest("idx", "bad", missing_child, client.INDEX)
    assert refused.status_code == 400 and error_codes(refused) == ["MANIFEST_BLOB_UNKNOWN"]
    assert client.put_manifest("idx", "multi", index, client.INDEX).status_code == 201
    got = client.request("GET", "/v2/idx/manifests/multi", headers={"Accept": client.INDEX})
    assert got.headers["Content-Type"] == client.INDEX and got.content == index
    legacy = client.request(
        "GET",
        "/v2/idx/manifests/multi",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert legacy.status_code == 404 and error_codes(legacy) == ["MANIFEST_UNKNOWN"]
    anything = client.request("GET", "/v2/idx/manifests/multi", headers={"Accept": "*/*"})
    assert anything.status_code == 200


def test_manifest_size_limit_is_413(client):
    big = b'{"schemaVersion": 2, "padding": "' + b"x" * (4 * 1024 * 1024 + 70000) + b'"}'
    reply = client.put_manifest("huge", "latest", big)
    assert reply.status_code == 413
    assert error_codes(reply) == ["SIZE_INVALID"]


def test_large_manifest_of_four_megabytes_is_accepted(client):
    config = b"{}"
    client.push_blob("large", config)
    annotations = {f"large-annotation-{i}": "A" * 10000 for i in range(390)}
    manifest = client.manifest_for(config, [], annotations=annotations)
    assert len(manifest) > 3_900_000
    assert client.put_manifest("large", "big", manifest).status_code == 201
    assert client.request("GET", "/v2/large/manifests/big").content == manifest


def test_tags_list_sorted_with_pagination(client):
    image = client.push_image("paged", "b")
    for tag in ("a", "C", "d", "e", "B"):
        assert client.put_manifest("paged", tag, image.manifest).status_code == 201
    everything = client.request("GET", "/v2/paged/tags/list").json()
    assert everything == {"name": "paged", "tags": ["B", "C", "a", "b", "d", "e"]}
    first = client.request("GET", "/v2/paged/tags/list?n=2")
    assert first.json()["tags"] == ["B", "C"]
    assert first.headers["Link"] == '</v2/paged/tags/list?n=2&last=C>; rel="next"'
    second = client.request("GET", "/v2/paged/tags/list?n=2&last=C")
    assert second.json()["tags"] == ["a", "b"]
    last = client.request("GET", "/v2/paged/tags/list?n=10&last=b")
    assert last.json()["tags"] == ["d", "e"] and "Link" not in last.headers
    assert client.request("GET", "/v2/paged/tags/list?last=b").json()["tags"] == ["d", "e"]
    zero = client.request("GET", "/v2/paged/tags/list?n=0")
    assert zero.json()["tags"] == [] and "Link" not in zero.headers
    bad = client.request("GET", "/v2/paged/tags/list?n=-1")
    assert bad.status_code == 400
    unknown = client.request("GET", "/v2/never/pushed/tags/list")
    assert unknown.status_code == 404 and error_codes(unknown) == ["NAME_UNKNOWN"]


def test_catalog_with_pagination(client):
    for name in ("zeta", "alpha/one", "alpha/two", "mid"):
        client.push_blob(name, name.encode())
    assert client.request("GET", "/v2/_catalog").json() == {
        "repositories": ["alpha/one", "alpha/two", "mid", "zeta"]
    }
    page = client.request("GET", "/v2/_catalog?n=3")
    assert page.json()["repositories"] == ["alpha/one", "alpha/two", "mid"]
    assert page.headers["Link"] == '</v2/_catalog?n=3&last=mid>; rel="next"'
    rest = client.request("GET", "/v2/_catalog?n=3&last=mid")
    assert rest.json()["repositories"] == ["zeta"] and "Link" not in rest.headers


def test_referrers_api_and_oci_subject(client):
    subject = client.push_image("ref", "image")
    subject_descriptor = {
        "mediaType": client.MANIFEST,
        "digest": subject.digest,
        "size": len(subject.manifest),
    }
    empty = b"{}"
    client.push_blob("ref", empty)
    signature = client.manifest_for(
        empty,
        [],
        subject=subject_descriptor,
        artifact_type="application/vnd.example.sig",
        annotations={"org.example": "signed"},
        config_type="application/vnd.oci.empty.v1+json",
    )
    reply = client.put_manifest("ref", client.digest(signature), signature)
    assert reply.status_code == 201
    assert reply.headers["OCI-Subject"] == subject.digest
    sbom = client.manifest_for(
        b"{}", [], subject=subject_descriptor, config_type="application/vnd.example.sbom"
    )
    assert client.put_manifest("ref", client.digest(sbom), sbom).status_code == 201
    # A subject that does not exist (yet) is accepted.
    dangling = client.manifest_for(
        b"{}", [], subject={**subject_descriptor, "digest": client.digest(b"future")}
    )
    assert client.put_manifest("ref", client.digest(dangling), dangling).status_code == 201
    listing = client.request("GET", f"/v2/ref/referrers/{subject.digest}")
    assert listing.status_code == 200
    assert listing.headers["Content-Type"] == client.INDEX
    manifests = {m["digest"]: m for m in listing.json()["manifests"]}
    assert manifests[client.digest(signature)]["artifactType"] == "application/vnd.example.sig"
    assert manifests[client.digest(signature)]["annotations"] == {"org.example": "signed"}
    assert manifests[client.digest(sbom)]["artifactType"] == "application/vnd.example.sbom"
    assert len(manifests) == 2
    filtered = client.request(
        "GET", f"/v2/ref/referrers/{subject.digest}?artifactType=application/vnd.example.sig"
    )
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in filtered.json()["manifests"]] == [client.digest(signature)]
    none = client.request("GET", f"/v2/nobody/referrers/{subject.digest}")
    assert none.status_code == 200 and none.json()["manifests"] == []
    # Deleting a referrer takes it out of the list.
    assert client.request("DELETE", f"/v2/ref/manifests/{client.digest(sbom)}").status_code == 202
    again = client.request("GET", f"/v2/ref/referrers/{subject.digest}").json()["manifests"]
    assert [m["digest"] for m in again] == [client.digest(signature)]


def test_deletes(client):
    image = client.push_image("del", "v1")
    assert client.put_manifest("del", "v2", image.manifest).status_code == 201
    assert client.request("DELETE", "/v2/del/manifests/v1").status_code == 202
    assert client.request("GET", "/v2/del/manifests/v1").status_code == 404
    assert client.request("GET", "/v2/del/manifests/v2").status_code == 200
    assert client.request("DELETE", f"/v2/del/manifests/{image.digest}").status_code == 202
    assert client.request("GET", "/v2/del/manifests/v2").status_code == 404
    assert client.request("HEAD", f"/v2/del/manifests/{image.digest}").status_code == 404
    again = client.request("DELETE", f"/v2/del/manifests/{image.digest}")
    assert again.status_code == 404 and error_codes(again) == ["MANIFEST_UNKNOWN"]
    assert client.request("DELETE", "/v2/del/manifests/v1").status_code == 404
    layer = client.digest(image.layers[0])
    assert client.request("DELETE", f"/v2/del/blobs/{layer}").status_code == 202
    assert client.request("HEAD", f"/v2/del/blobs/{layer}").status_code == 404
    gone = client.request("DELETE", f"/v2/del/blobs/{layer}")
    assert gone.status_code == 404 and error_codes(gone) == ["BLOB_UNKNOWN"]


def test_sha512_uploads(client):
    data = os.urandom(1000)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    location = start_session(client, "five12", "?digest-algorithm=sha512")
    client.request("PATCH", location, data=data, headers={"Content-Range": "0-999"})
    assert client.request("PUT", f"{location}?digest={digest}").status_code == 201
    assert client.request("GET", f"/v2/five12/blobs/{digest}").content == data
    other = os.urandom(10)
    other_digest = "sha512:" + hashlib.sha512(other).hexdigest()
    reply = client.request("POST", f"/v2/five12/blobs/uploads/?digest={other_digest}", data=other)
    assert reply.status_code == 201
    bad_algorithm = client.request("POST", "/v2/five12/blobs/uploads/?digest-algorithm=md5")
    assert bad_algorithm.status_code == 400


def test_bad_content_range_and_length(client):
    location = start_session(client, "ranges")
    malformed = client.request("PATCH", location, data=b"abc", headers={"Content-Range": "zero-2"})
    assert malformed.status_code == 400 and error_codes(malformed) == ["BLOB_UPLOAD_INVALID"]
    mismatch = client.request("PATCH", location, data=b"abc", headers={"Content-Range": "0-9"})
    assert mismatch.status_code == 400 and error_codes(mismatch) == ["SIZE_INVALID"]
    backwards = client.request("PATCH", location, data=b"abc", headers={"Content-Range": "0-0"})
    assert backwards.status_code == 400
    assert client.request("GET", location).headers["Range"] == "0-0"
    assert (
        client.request("PATCH", location, data=b"abc", headers={"Content-Range": "0-2"}).status_code
        == 202
    )
    no_digest = client.request("PUT", location)
    assert no_digest.status_code == 400 and error_codes(no_digest) == ["DIGEST_INVALID"]
    assert client.request("GET", location).headers["Range"] == "0-2"


def test_unsupported_methods_and_paths(client):
    reply = client.request("POST", "/v2/x/manifests/latest")
    assert reply.status_code == 405 and error_codes(reply) == ["UNSUPPORTED"]
    assert client.request("DELETE", "/v2/x/tags/list").status_code == 405
    unknown = client.request("GET", "/v2/x/unknown-endpoint")
    assert unknown.status_code == 404


def test_blob_size_limit(registry_root, serve_registry, client_for):
    store = RegistryStore(FilesystemBackend(registry_root), Limits(max_blob_size=1000))
    client = client_for(serve_registry(store).url)
    data = os.urandom(1001)
    monolithic = client.request(
        "POST", f"/v2/lim/blobs/uploads/?digest={client.digest(data)}", data=data
    )
    assert monolithic.status_code == 413 and error_codes(monolithic) == ["SIZE_INVALID"]
    location = start_session(client, "lim")
    assert (
        client.request(
            "PATCH", location, data=data[:600], headers={"Content-Range": "0-599"}
        ).status_code
        == 202
    )
    over = client.request("PATCH", location, data=data[600:], headers={"Content-Range": "600-1000"})
    assert over.status_code == 413
    assert client.request("GET", location).headers["Range"] == "0-599"

    def stream():
        yield data

    streamed_location = start_session(client, "lim")
    streamed = client.request("PATCH", streamed_location, data=stream())
    assert streamed.status_code == 413
    assert client.request("GET", streamed_location).status_code == 404
    assert (
        client.request("PUT", f"{location}?digest={client.digest(data[:600])}").status_code == 201
    )


def test_upload_resumes_in_another_registry_process(
    store, registry_root, serve_registry, client_for
):
    """The running hash lives in one process; another one rebuilds it from the stored bytes."""
    data = os.urandom(300_000)
    first = client_for(serve_registry(store).url)
    location = start_session(first, "resume")
    assert (
        first.request(
            "PATCH", location, data=data[:100_000], headers={"Content-Range": "0-99999"}
        ).status_code
        == 202
    )
    other_store = RegistryStore(FilesystemBackend(registry_root))
    second = client_for(serve_registry(other_store).url)
    status = second.request("GET", location)
    assert status.status_code == 204 and status.headers["Range"] == "0-99999"
    assert (
        second.request(
            "PATCH",
            location,
            data=data[100_000:200_000],
            headers={"Content-Range": "100000-199999"},
        ).status_code
        == 202
    )
    # Back to the first process, whose running hash is now stale.
    bad = first.request(
        "PUT",
        f"{location}?digest={first.digest(b'nope')}",
        data=data[200_000:],
        headers={"Content-Range": "200000-299999"},
    )
    assert bad.status_code == 400 and error_codes(bad) == ["DIGEST_INVALID"]
    assert first.request("GET", location).headers["Range"] == "0-299999"
    good = second.request("PUT", f"{location}?digest={first.digest(data)}")
    assert good.status_code == 201, good.text
    assert first.request("GET", f"/v2/resume/blobs/{first.digest(data)}").content == data


def test_docker_schema2_manifest_and_manifest_list(client):
    docker_manifest = "application/vnd.docker.distribution.manifest.v2+json"
    docker_list = "application/vnd.docker.distribution.manifest.list.v2+json"
    config, layer = b'{"os":"linux"}', b"docker layer"
    client.push_blob("dock", config)
    client.push_blob("dock", layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": docker_manifest,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": client.digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": client.digest(layer), "size": len(layer)}],
    }).encode()  # fmt: skip
    assert client.put_manifest("dock", "amd64", manifest, docker_manifest).status_code == 201
    listing = json.dumps({
        "schemaVersion": 2, "mediaType": docker_list,
        "manifests": [{"mediaType": docker_manifest, "digest": client.digest(manifest),
                       "size": len(manifest), "platform": {"architecture": "amd64", "os": "linux"}}],
    }).encode()  # fmt: skip
    assert client.put_manifest("dock", "multi", listing, docker_list).status_code == 201
    got = client.request("GET", "/v2/dock/manifests/multi",
                         headers={"Accept": f"{docker_list}, {docker_manifest}"})  # fmt: skip
    assert got.headers["Content-Type"] == docker_list and got.content == listing
    single = client.request("GET", "/v2/dock/manifests/amd64", headers={"Accept": docker_manifest})
    assert single.headers["Content-Type"] == docker_manifest
    # An OCI manifest may leave out mediaType; Content-Type says what it is.
    bare = json.dumps({"schemaVersion": 2, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": client.digest(config), "size": len(config)}, "layers": []}).encode()  # fmt: skip
    assert client.put_manifest("dock", "bare", bare).status_code == 201
    assert client.request("HEAD", "/v2/dock/manifests/bare").headers["Content-Type"] == (
        client.MANIFEST
    )


def test_client_disconnect_mid_chunk_keeps_what_arrived(client, registry):
    import socket
    import time

    data = os.urandom(12 * 1024 * 1024)
    location = start_session(client, "cut")
    with socket.create_connection(("127.0.0.1", registry.port)) as sock:
        sock.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: {registry.host}\r\n"
            f"Content-Length: {len(data)}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        )
        sock.sendall(data[: 9 * 1024 * 1024])
    deadline = time.monotonic() + 10
    while True:  # the server notices the disconnect a moment later
        status = client.request("GET", location)
        have = int(status.headers["Range"].split("-")[1]) + 1
        if have > 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert 0 < have <= 9 * 1024 * 1024
    rest = client.request(
        "PUT", f"{location}?digest={client.digest(data)}", data=data[have:],
        headers={"Content-Range": f"{have}-{len(data) - 1}"},
    )  # fmt: skip
    assert rest.status_code == 201, rest.text
    assert client.request("GET", f"/v2/cut/blobs/{client.digest(data)}").content == data
