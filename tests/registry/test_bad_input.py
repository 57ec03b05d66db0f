"""Bad input gets a clear 4xx in the spec's error form, never a 500, and nothing is lost.

Each case here was a 201 that should have been refused, or a 500; the side-by-side comparison
with the CNCF registry is in test_interop_cncf.py.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from pathlib import Path

import pytest

from dockyard.plugins.registries.filesystem import FilesystemBackend
from dockyard.registry.manifests import read_stored_manifest
from dockyard.registry.store import RegistryStore

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def only_error(reply) -> dict:
    """The single error of an error reply, after checking the spec's form."""
    errors = reply.json()["errors"]
    assert len(errors) == 1, errors
    assert isinstance(errors[0]["code"], str) and isinstance(errors[0]["message"], str)
    return errors[0]


def edited(document: dict, path: str, value: object) -> dict:
    """A copy of ``document`` with the value at dotted ``path`` replaced (``...`` removes it)."""
    result = copy.deepcopy(document)
    *parents, last = path.split(".")
    target = result
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is ...:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return result


@pytest.fixture
def pushed(client):
    """An image in repository ``bad/input`` tagged ``good``, with its manifest as a dict."""
    image = client.push_image("bad/input", "good")
    return image, json.loads(image.manifest)


def assert_refused(client, pushed, body: bytes, content_type: str | None, field: str | None):
    image, _ = pushed
    headers = {} if content_type is None else {"Content-Type": content_type}
    reply = client.request("PUT", "/v2/bad/input/manifests/good", data=body, headers=headers)
    assert reply.status_code == 400, reply.text
    error = only_error(reply)
    assert error["code"] == "MANIFEST_INVALID"
    if field is not None:
        assert error["detail"]["field"] == field, error
        assert field in error["message"]
    # Nothing changed: the tag names what it named, and no other manifest was stored.
    assert client.request("GET", "/v2/bad/input/manifests/good").content == image.manifest
    if body != image.manifest:
        digest = client.digest(body)
        assert client.request("HEAD", f"/v2/bad/input/manifests/{digest}").status_code == 404
    return error


# ------------------------------------------------------------------ Content-Type vs media type


@pytest.mark.parametrize(
    ("edit", "content_type", "field"),
    [
        # The document says one type, the header another.
        ({"mediaType": OCI_MANIFEST}, DOCKER_MANIFEST, None),
        ({"mediaType": DOCKER_MANIFEST}, OCI_MANIFEST, None),
        ({"mediaType": OCI_MANIFEST}, OCI_INDEX, None),
        # No mediaType field: Docker's types require it.
        ({"mediaType": ...}, DOCKER_MANIFEST, "mediaType"),
        # The shape says manifest, the header says index; and the other way round.
        ({"mediaType": ...}, OCI_INDEX, "config"),
        ({"mediaType": DOCKER_LIST}, DOCKER_LIST, "config"),
        ({"manifests": []}, OCI_MANIFEST, "manifests"),
        # No Content-Type, a generic one, a malformed one.
        ({}, None, None),
        ({}, "application/json", None),
        ({}, "text/plain", None),
        ({}, "application/octet-stream", None),
        ({}, OCI_MANIFEST + "/x", None),
        ({}, OCI_MANIFEST + ",text/plain", None),
        ({}, OCI_MANIFEST + "; charset", None),
        ({}, OCI_MANIFEST + "; a=b; a=c", None),
        ({}, "application/vnd.docker.distribution.manifest.v1+prettyjws", None),
    ],
)
def test_content_type_must_match_the_manifest(client, pushed, edit, content_type, field):
    _, document = pushed
    for key, value in edit.items():
        document = edited(document, key, value)
    body = json.dumps(document).encode()
    assert_refused(client, pushed, body, content_type, field)


@pytest.mark.parametrize(
    "content_type",
    [OCI_MANIFEST, OCI_MANIFEST.upper(), OCI_MANIFEST + "; charset=utf-8", OCI_MANIFEST + ";"],
)
def test_oci_manifest_without_media_type_field_and_header_parameters_are_accepted(
    client, pushed, content_type
):
    _, document = pushed
    body = json.dumps(edited(document, "mediaType", ...)).encode()
    reply = client.put_manifest("bad/input", "plain", body, content_type)
    assert reply.status_code == 201, reply.text
    got = client.request("GET", "/v2/bad/input/manifests/plain")
    assert got.content == body and got.headers["Content-Type"] == OCI_MANIFEST


# ------------------------------------------------------------------ descriptor sizes and types


@pytest.mark.parametrize(
    "size", [10**400, 2**63, 2**64, -1, 1.5, 17.0, "17", True, None, ..., [], {}]
)
@pytest.mark.parametrize("where", ["config", "layers.0", "subject"])
def test_descriptor_size_must_be_a_64_bit_count(client, pushed, size, where):
    _, document = pushed
    if where == "subject":
        document["subject"] = dict(document["config"])
    body = json.dumps(edited(document, f"{where}.size", size)).encode()
    field = where.replace(".0", "[0]") + ".size"
    error = assert_refused(client, pushed, body, OCI_MANIFEST, field)
    if size is None or size is ...:
        assert "required" in error["message"]
    else:
        assert str(2**63 - 1) in error["message"]


def test_descriptor_size_at_the_int64_limit_is_accepted(client, pushed):
    _, document = pushed
    body = json.dumps(edited(document, "layers.0.size", 2**63 - 1)).encode()
    assert client.put_manifest("bad/input", "limit", body).status_code == 201


def test_index_entry_sizes_are_checked_too(client, pushed):
    image, _ = pushed
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": image.digest, "size": 10**400}],
    }
    assert_refused(client, pushed, json.dumps(index).encode(), OCI_INDEX, "manifests[0].size")


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("schemaVersion", 2.0, "schemaVersion"),
        ("schemaVersion", "2", "schemaVersion"),
        ("schemaVersion", True, "schemaVersion"),
        ("schemaVersion", 1, "schemaVersion"),
        ("schemaVersion", ..., "schemaVersion"),
        ("mediaType", 5, "mediaType"),
        ("config", [], "config"),
        ("config", "x", "config"),
        ("config", ..., "config"),
        ("config.digest", 5, "config.digest"),
        ("config.digest", ["sha256:" + "a" * 64], "config.digest"),
        ("config.digest", "sha256:abc", "config.digest"),
        ("config.digest", "md5:" + "a" * 32, "config.digest"),
        ("config.digest", "\ud800", "config.digest"),
        ("config.mediaType", 5, "config.mediaType"),
        ("config.mediaType", "", "config.mediaType"),
        ("config.mediaType", "not a media type", "config.mediaType"),
        ("config.mediaType", ..., "config.mediaType"),
        ("layers", {}, "layers"),
        ("layers", "abc", "layers"),
        ("layers.0", 5, "layers[0]"),
        ("layers.0", None, "layers[0]"),
        ("layers.0.urls", "http://example.com/x", "layers[0].urls"),
        ("layers.0.urls", [1], "layers[0].urls[0]"),
        ("layers.0.annotations", [], "layers[0].annotations"),
        ("layers.0.annotations", {"a": 1}, 'layers[0].annotations["a"]'),
        ("layers.0.annotations", {"a": None}, 'layers[0].annotations["a"]'),
        ("layers.0.platform", "linux/amd64", "layers[0].platform"),
        ("layers.0.platform", {"os": ["linux"]}, "layers[0].platform.os"),
        ("layers.0.platform", {"os.features": "x"}, "layers[0].platform.os.features"),
        ("layers.0.artifactType", 7, "layers[0].artifactType"),
        ("layers.0.data", 5, "layers[0].data"),
        ("layers.0.data", "not base64!", "layers[0].data"),
        ("layers.0.data", base64.b64encode(b"other content").decode(), "layers[0].data"),
        ("annotations", [], "annotations"),
        ("annotations", "x", "annotations"),
        ("annotations", {"a": {"b": "c"}}, 'annotations["a"]'),
        ("artifactType", 5, "artifactType"),
        ("artifactType", "no-slash", "artifactType"),
        ("subject", "sha256:" + "a" * 64, "subject"),
        ("subject", {"mediaType": OCI_MANIFEST, "size": 1}, "subject.digest"),
    ],
)
def test_wrong_json_types_anywhere_are_refused_naming_the_field(client, pushed, path, value, field):
    _, document = pushed
    body = json.dumps(edited(document, path, value)).encode()
    assert_refused(client, pushed, body, OCI_MANIFEST, field)


def test_embedded_data_that_matches_and_nulls_as_absent_are_accepted(client, pushed):
    image, document = pushed
    layer = image.layers[0]
    document["layers"][0]["data"] = base64.b64encode(layer).decode()
    document["annotations"] = None
    document["subject"] = None
    document["layers"][0]["urls"] = None
    body = json.dumps(document).encode()
    assert client.put_manifest("bad/input", "embedded", body).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        "utf-16",
        "bom",
        "nan",
        "infinity",
        "deep",
        "huge-int",
    ],
)
def test_bodies_that_are_not_strict_utf8_json_are_refused(client, pushed, body):
    _, document = pushed
    text = json.dumps(document)
    bodies = {
        "utf-16": text.encode("utf-16"),
        "bom": b"\xef\xbb\xbf" + text.encode(),
        "nan": text.replace('"schemaVersion": 2', '"schemaVersion": NaN').encode(),
        "infinity": text.replace('"size": ', '"size": -Infinity, "x": ', 1).encode(),
        "deep": b'{"schemaVersion": 2, "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        "huge-int": text.replace('"schemaVersion": 2', '"schemaVersion": ' + "9" * 5000).encode(),
    }
    assert_refused(client, pushed, bodies[body], OCI_MANIFEST, None)


def test_stored_manifests_an_older_version_accepted_still_keep_their_blobs():
    """The collector reads stored manifests: one that no longer decodes must not free blobs."""
    config, layer = "sha256:" + "c" * 64, "sha256:" + "d" * 64
    legacy = {
        "schemaVersion": 2,
        "config": {"mediaType": "application/x", "digest": config, "size": 10**400},
        "layers": [{"mediaType": "application/x", "digest": layer, "size": 1, "urls": "x"}],
    }
    info = read_stored_manifest(json.dumps(legacy).encode(), OCI_MANIFEST)
    assert info is not None
    assert {str(d.digest) for d in info.blobs} == {config, layer}
    assert {str(d.digest) for d in info.manifests} == {config, layer}
    assert read_stored_manifest(b"\xff not json") is None


# ------------------------------------------------------------------ paths too long to store


def deep_directory(base: Path, length: int) -> Path:
    """A directory whose absolute path is ``length`` characters long."""
    path = base
    while len(str(path)) < length - 102:
        path = path / ("d" * 100)
    path = path / ("e" * (length - len(str(path)) - 1))
    path.mkdir(parents=True)
    assert len(str(path)) == length
    return path


def test_paths_too_long_for_the_filesystem_are_name_invalid(tmp_path, serve_registry, client_for):
    # Paths stop at 4095 characters (PATH_MAX): under this root a 200-character repository
    # does not fit at all, a 40-character one holds blobs and revisions but no 128-character
    # tag (".../_manifests/tags/<tag>/link" is 30 characters longer than a revision link).
    root = deep_directory(tmp_path, 3890)
    store = RegistryStore(FilesystemBackend(root))
    client = client_for(serve_registry(store).url)
    image = client.push_image("short", "v1")
    long_name = "/".join(["n" * 99, "m" * 100])
    layer = os.urandom(32)
    digest = client.digest(layer)
    requests_to_try = [
        ("POST", f"/v2/{long_name}/blobs/uploads/?digest={digest}", layer),
        ("POST", f"/v2/{long_name}/blobs/uploads/", b""),
        ("POST", f"/v2/{long_name}/blobs/uploads/?mount={image.digest}&from=short", b""),
        ("GET", f"/v2/{long_name}/blobs/{digest}", b""),
        ("GET", f"/v2/{long_name}/manifests/v1", b""),
        ("PUT", f"/v2/{long_name}/manifests/v1", image.manifest),
        ("GET", f"/v2/{long_name}/tags/list", b""),
        ("GET", f"/v2/{long_name}/referrers/{image.digest}", b""),
        ("DELETE", f"/v2/{long_name}/manifests/{image.digest}", b""),
    ]
    for method, path, body in requests_to_try:
        reply = client.request(method, path, data=body, headers={"Content-Type": client.MANIFEST})
        assert reply.status_code == 400, (method, path, reply.status_code, reply.text)
        assert only_error(reply)["code"] == "NAME_INVALID", (method, path)
    # A tag path too long after the revision was written: the push is undone, not half kept.
    mid_name = "p" * 40
    for blob in (image.config, *image.layers):
        client.push_blob(mid_name, blob)
    tag = "t" * 128
    refused = client.put_manifest(mid_name, tag, image.manifest)
    assert refused.status_code == 400 and only_error(refused)["code"] == "NAME_INVALID"
    assert client.request("GET", f"/v2/{mid_name}/manifests/{image.digest}").status_code == 404
    # Everything else still works.
    got = client.request("GET", "/v2/short/manifests/v1")
    assert got.status_code == 200 and got.content == image.manifest
    assert client.request("GET", "/v2/_catalog").json()["repositories"] == [mid_name, "short"]


def test_paths_too_long_for_s3_keys_are_name_invalid(moto_server, serve_registry, client_for):
    from dockyard.plugins.registries.s3 import S3Backend, S3Config

    # A prefix that leaves room for short names only (S3 keys stop at 1024 bytes).
    config = S3Config(
        bucket=moto_server.new_bucket(),
        prefix="p" * 800,
        endpoint_url=moto_server.endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        region="us-east-1",
    )
    client = client_for(serve_registry(RegistryStore(S3Backend(config))).url)
    image = client.push_image("short", "v1")
    long_name = "/".join(["n" * 99, "m" * 100])
    reply = client.request("POST", f"/v2/{long_name}/blobs/uploads/")
    assert reply.status_code == 400 and only_error(reply)["code"] == "NAME_INVALID"
    reply = client.put_manifest(long_name, "v1", image.manifest)
    assert reply.status_code == 400 and only_error(reply)["code"] == "NAME_INVALID"
    assert client.request("GET", "/v2/short/manifests/v1").content == image.manifest


# ------------------------------------------------------------------ headers and query parameters


def test_numbers_of_any_length_and_script_in_headers_and_parameters(client, pushed):
    image, _ = pushed
    layer = image.layers[0]
    blob = f"/v2/bad/input/blobs/{client.digest(layer)}"
    huge = "9" * 5000
    for header in (
        f"bytes={huge}-",
        f"bytes=0-{huge}",
        f"bytes=-{huge}",
        "bytes=00000000000000000000000001-",
    ):
        reply = client.request("GET", blob, headers={"Range": header})
        assert reply.status_code in (206, 416), (header, reply.status_code)
    whole = client.request("GET", blob, headers={"Range": f"bytes=0-{huge}"})
    assert whole.status_code == 206 and whole.content == layer
    tail = client.request("GET", blob, headers={"Range": f"bytes=-{huge}"})
    assert tail.status_code == 206 and tail.content == layer
    leading_zeros = client.request("GET", blob, headers={"Range": "bytes=" + "0" * 30 + "1-"})
    assert leading_zeros.status_code == 206 and leading_zeros.content == layer[1:]
    for path in ("/v2/bad/input/tags/list", "/v2/_catalog"):
        for n in ("%C2%B2", "%D9%A3", "1.5", "-1", "", "abc", "0x10"):
            reply = client.request("GET", f"{path}?n={n}")
            assert reply.status_code == 400, (path, n)
            error = only_error(reply)
            assert error["detail"]["parameter"] == "n"
        many = client.request("GET", f"{path}?n={huge}")
        assert many.status_code == 200
        twice = client.request("GET", f"{path}?n=1&n=2")
        assert twice.status_code == 400 and only_error(twice)["detail"]["parameter"] == "n"
        twice = client.request("GET", f"{path}?last=a&last=b")
        assert twice.status_code == 400 and only_error(twice)["detail"]["parameter"] == "last"


def test_bad_content_range_on_uploads(client):
    location = client.request("POST", "/v2/ranges/blobs/uploads/").headers["Location"]
    huge = "9" * 5000
    cases = {
        f"0-{huge}": 400,  # longer than the body it came with
        f"{huge}-{huge}": 416,  # not where the upload is
        f"{huge}-2": 416,
        "-1-2": 400,
        "0x0-0x2": 400,
        "\u0660-\u0662": 400,  # Arabic-Indic digits, still not ASCII ones
        "0-2/" + huge: 202,  # last: a total is allowed (and not needed)
    }
    for header, status in cases.items():
        raw = header.encode("utf-8").decode("latin-1")  # as a client would send the bytes
        reply = client.request("PATCH", location, data=b"abc", headers={"Content-Range": raw})
        assert reply.status_code == status, (header, reply.status_code, reply.text)
        if status >= 400:
            only_error(reply)
            assert client.request("GET", location).headers["Range"] == "0-0"
    assert client.request("GET", location).headers["Range"] == "0-2"


def test_bad_digests_and_repeated_parameters_on_uploads(client):
    data = b"some bytes"
    digest = client.digest(data)
    for query in (
        "?digest=sha256:abc",
        "?digest=sha256:" + "A" * 64,
        "?digest=blake3:" + "a" * 64,
        "?digest=",
        f"?digest={digest}&digest={digest}",
        "?digest-algorithm=md5",
        "?digest-algorithm=sha256&digest-algorithm=sha512",
        "?mount=sha256:abc&from=other",
        "?mount=",
        f"?mount={digest}&mount={digest}",
    ):
        reply = client.request("POST", f"/v2/params/blobs/uploads/{query}", data=data)
        assert reply.status_code == 400, (query, reply.text)
        error = only_error(reply)
        assert error["code"] == "DIGEST_INVALID", query
    for query in (f"?mount={digest}&from=UPPER", f"?mount={digest}&from=" + "a" * 300):
        reply = client.request("POST", f"/v2/params/blobs/uploads/{query}")
        assert reply.status_code == 400 and only_error(reply)["code"] == "NAME_INVALID"
    location = client.request("POST", "/v2/params/blobs/uploads/").headers["Location"]
    reply = client.request("PUT", f"{location}?digest={digest}&digest={digest}", data=data)
    assert reply.status_code == 400 and only_error(reply)["detail"]["parameter"] == "digest"
    reply = client.request("PUT", f"{location}?digest=sha256:zz", data=data)
    assert reply.status_code == 400 and only_error(reply)["code"] == "DIGEST_INVALID"
    # The session survived both refusals.
    assert client.request("PUT", f"{location}?digest={digest}", data=data).status_code == 201


def test_upload_ids_only_in_the_form_handed_out(client):
    location = client.request("POST", "/v2/uuids/blobs/uploads/").headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    base = location.rsplit("/", 1)[0]
    variants = [
        "{" + upload_id + "}",
        "urn:uuid:" + upload_id,
        upload_id.replace("-", ""),
        upload_id.upper(),
        "x" * 5000,
        "..",
        "%00",
    ]
    for variant in variants:
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            reply = client.request(method, f"{base}/{variant}", data=b"x")
            assert reply.status_code in (404, 405), (variant, method, reply.status_code)
            if reply.status_code == 404 and reply.content:
                assert only_error(reply)["code"] in ("BLOB_UPLOAD_UNKNOWN", "UNSUPPORTED")
    assert client.request("GET", location).status_code == 204


def test_upload_session_with_damaged_state_is_unknown(client, store):
    location = client.request("POST", "/v2/damaged/blobs/uploads/").headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    from dockyard.registry import layout

    for info in (b"not json", b"{}", b'{"algorithm": "md5", "started": 1}', b"[1]"):
        store.write_bytes(layout.upload_info("damaged", upload_id), info)
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            reply = client.request(method, location, data=b"x")
            assert reply.status_code == 404, (info, method, reply.text)
            assert only_error(reply)["code"] == "BLOB_UPLOAD_UNKNOWN"


def test_referrers_artifact_type_filter_must_be_a_media_type(client, pushed):
    image, _ = pushed
    path = f"/v2/bad/input/referrers/{image.digest}"
    for value in ("", "no-slash", "a/b/c", "%FF%FE", "a" * 300 + "/b"):
        reply = client.request("GET", f"{path}?artifactType={value}")
        assert reply.status_code == 400, value
        assert only_error(reply)["detail"]["parameter"] == "artifactType"
    ok = client.request("GET", f"{path}?artifactType=application/vnd.example")
    assert ok.status_code == 200 and ok.json()["manifests"] == []


def test_error_details_quoting_unencodable_text_are_still_json(client, pushed):
    _, document = pushed
    # A lone surrogate escape is valid JSON syntax but no Unicode: UTF-8 cannot encode it.
    body = json.dumps(edited(document, "mediaType", "\ud800")).encode()
    error = assert_refused(client, pushed, body, OCI_MANIFEST, None)
    assert error["detail"]["mediaType"] == "\ud800"
