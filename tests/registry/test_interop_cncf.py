"""``dockyard registry`` beside the CNCF registry 2.8: the same bad manifests, the same answers.

Every manifest the reference refuses, we refuse with the same status and error code. Where we
are deliberately stricter (a negative or missing size: the image spec wants an int64 byte
count; a Docker manifest with an index's ``manifests``), or where the reference answers 500
(a missing schemaVersion, a digest it cannot parse), the case says so and is checked as such.
"""

from __future__ import annotations

import copy
import json
import os

import pytest

pytestmark = pytest.mark.interop

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = os.urandom(256)

#: Both registries answer alike.
SAME = "same"
#: We refuse with 400 MANIFEST_INVALID what the reference accepts.
STRICTER = "stricter"
#: The reference fails with a 500; we refuse with 400 MANIFEST_INVALID.
REFERENCE_FAILS = "reference-fails"


def push_blob(client, name: str, data: bytes) -> None:
    # POST then PUT: the reference does not finish a monolithic POST.
    location = client.request("POST", f"/v2/{name}/blobs/uploads/").headers["Location"]
    separator = "&" if "?" in location else "?"
    reply = client.request("PUT", f"{location}{separator}digest={client.digest(data)}", data=data)
    assert reply.status_code == 201, reply.text


def base_manifest(client, media_type: str = OCI_MANIFEST) -> dict:
    layer_type = "application/vnd.oci.image.layer.v1.tar"
    config_type = "application/vnd.oci.image.config.v1+json"
    if media_type == DOCKER_MANIFEST:
        layer_type = "application/vnd.docker.image.rootfs.diff.tar.gzip"
        config_type = "application/vnd.docker.container.image.v1+json"
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": client.digest(CONFIG), "size": len(CONFIG)},
        "layers": [{"mediaType": layer_type, "digest": client.digest(LAYER), "size": len(LAYER)}],
    }


def edit(document: dict, **changes: object) -> dict:
    """``changes`` keyed by dotted paths with "__" for "." (``config__size``); ``...`` removes."""
    result = copy.deepcopy(document)
    for key, value in changes.items():
        *parents, last = key.split("__")
        target = result
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        index = int(last) if isinstance(target, list) else last
        if value is ...:
            del target[index]
        else:
            target[index] = value
    return result


def content_type_cases(client) -> list[tuple[str, bytes, str | None, str]]:
    oci = base_manifest(client)
    docker = base_manifest(client, DOCKER_MANIFEST)
    no_field = edit(oci, mediaType=...)

    def body(document: dict) -> bytes:
        return json.dumps(document).encode()

    return [
        ("OCI manifest, its own type", body(oci), OCI_MANIFEST, SAME),
        ("OCI manifest without mediaType", body(no_field), OCI_MANIFEST, SAME),
        ("OCI manifest, parameters", body(oci), OCI_MANIFEST + "; charset=utf-8", SAME),
        ("Docker manifest, its own type", body(docker), DOCKER_MANIFEST, SAME),
        ("OCI manifest sent as Docker", body(oci), DOCKER_MANIFEST, SAME),
        ("Docker manifest sent as OCI", body(docker), OCI_MANIFEST, SAME),
        ("OCI manifest sent as OCI index", body(oci), OCI_INDEX, SAME),
        ("OCI manifest sent as Docker list", body(oci), DOCKER_LIST, SAME),
        ("no mediaType, sent as Docker", body(no_field), DOCKER_MANIFEST, SAME),
        ("no mediaType, sent as OCI index", body(no_field), OCI_INDEX, SAME),
        ("no Content-Type", body(oci), None, SAME),
        ("Content-Type application/json", body(oci), "application/json", SAME),
        ("Content-Type text/plain", body(oci), "text/plain", SAME),
        ("Content-Type with a suffix", body(oci), OCI_MANIFEST + "/x", SAME),
        ("two Content-Types", body(oci), OCI_MANIFEST + ",text/plain", SAME),
        ("parameter without value", body(oci), OCI_MANIFEST + "; charset", SAME),
        ("parameter twice", body(oci), OCI_MANIFEST + "; a=b; a=c", SAME),
        ("OCI manifest with manifests", body(edit(oci, manifests=[])), OCI_MANIFEST, SAME),
        ("UTF-16 body", json.dumps(oci).encode("utf-16"), OCI_MANIFEST, SAME),
        ("UTF-8 BOM", b"\xef\xbb\xbf" + body(oci), OCI_MANIFEST, SAME),
        (
            "Docker manifest with manifests",
            body(edit(docker, manifests=[])),
            DOCKER_MANIFEST,
            STRICTER,
        ),
    ]


def size_cases(client) -> list[tuple[str, bytes, str | None, str]]:
    oci = base_manifest(client)
    cases = []
    for where in ("config", "layers__0"):
        for label, size, expectation in [
            ("10**400", 10**400, SAME),
            ("2**63", 2**63, SAME),
            ("2**64", 2**64, SAME),
            ("2**63-1", 2**63 - 1, SAME),
            ("1.5", 1.5, SAME),
            ("17.0", 17.0, SAME),
            ("'17'", "17", SAME),
            ("true", True, SAME),
            ("[]", [], SAME),
            ("-1", -1, STRICTER),
            ("null", None, STRICTER),
            ("missing", ..., STRICTER),
        ]:
            document = edit(oci, **{f"{where}__size": size})
            cases.append(
                (
                    f"{where.replace('__0', '[0]')}.size {label}",
                    json.dumps(document).encode(),
                    OCI_MANIFEST,
                    expectation,
                )
            )
    exponent = json.dumps(oci).replace(f'"size": {len(CONFIG)}', '"size": 1e2', 1).encode()
    cases.append(("config.size 1e2", exponent, OCI_MANIFEST, SAME))
    return cases


def type_cases(client) -> list[tuple[str, bytes, str | None, str]]:
    oci = base_manifest(client)
    digest = client.digest(LAYER)
    changes: list[tuple[str, dict, str]] = [
        ("schemaVersion 2.0", {"schemaVersion": 2.0}, SAME),
        ("schemaVersion '2'", {"schemaVersion": "2"}, SAME),
        ("schemaVersion missing", {"schemaVersion": ...}, REFERENCE_FAILS),
        ("mediaType a number", {"mediaType": 5}, SAME),
        ("config a list", {"config": []}, SAME),
        ("config.digest a number", {"config__digest": 5}, SAME),
        ("config.digest truncated", {"config__digest": digest[:20]}, REFERENCE_FAILS),
        ("config.digest md5", {"config__digest": "md5:" + "a" * 32}, REFERENCE_FAILS),
        ("config.mediaType a number", {"config__mediaType": 5}, SAME),
        ("config.mediaType empty", {"config__mediaType": ""}, STRICTER),
        ("layers an object", {"layers": {}}, SAME),
        ("layers[0] a number", {"layers__0": 5}, SAME),
        ("annotations a list", {"annotations": []}, SAME),
        ("annotations to numbers", {"annotations": {"a": 1}}, SAME),
        ("layer annotations to numbers", {"layers__0__annotations": {"a": 1}}, SAME),
        ("layer urls a string", {"layers__0__urls": "http://example.com"}, SAME),
        ("layer urls of numbers", {"layers__0__urls": [1]}, SAME),
        ("layer platform a string", {"layers__0__platform": "linux"}, SAME),
        ("artifactType a number", {"artifactType": 5}, STRICTER),
        ("subject a string", {"subject": digest}, STRICTER),
        ("layer data a number", {"layers__0__data": 5}, STRICTER),
    ]
    return [
        (label, json.dumps(edit(oci, **change)).encode(), OCI_MANIFEST, expectation)
        for label, change, expectation in changes
    ]


def answer(client, body: bytes, content_type: str | None) -> tuple[int, list[str]]:
    headers = {} if content_type is None else {"Content-Type": content_type}
    reply = client.request("PUT", "/v2/side/by-side/manifests/t", data=body, headers=headers)
    codes = [e["code"] for e in reply.json()["errors"]] if reply.status_code >= 400 else []
    return reply.status_code, codes


def both_with_a_good_manifest(
    tmp_path, registry_process, cncf_registry, client_for, repository: str
) -> tuple:
    """Our registry (filesystem backend, in ``tmp_path``), and clients of it and of the CNCF
    registry, each holding ``repository:good``, a valid manifest with its config and layer."""
    ours = registry_process(
        f'[registry]\ndata-root = "{tmp_path}/state"\n'
        f'[registries.filesystem]\nroot = "{tmp_path}/data"\n'
    )
    clients = {"dockyard": client_for(ours.url), "cncf": client_for(cncf_registry.url)}
    for client in clients.values():
        push_blob(client, repository, CONFIG)
        push_blob(client, repository, LAYER)
        good = json.dumps(base_manifest(client)).encode()
        assert client.put_manifest(repository, "good", good).status_code == 201
    return ours, clients


@pytest.mark.parametrize("cases", [content_type_cases, size_cases, type_cases])
def test_bad_manifests_side_by_side_with_the_cncf_registry(
    cases, tmp_path, registry_process, cncf_registry, client_for
):
    ours, clients = both_with_a_good_manifest(
        tmp_path, registry_process, cncf_registry, client_for, "side/by-side"
    )
    mismatches = []
    for label, body, content_type, expectation in cases(clients["dockyard"]):
        got = {who: answer(client, body, content_type) for who, client in clients.items()}
        refused = (400, ["MANIFEST_INVALID"])
        expected = {
            SAME: got["cncf"],
            STRICTER: refused,
            REFERENCE_FAILS: refused,
        }[expectation]
        reference_expected = {SAME: None, STRICTER: 201, REFERENCE_FAILS: 500}[expectation]
        if got["dockyard"] != expected or (
            reference_expected is not None and got["cncf"][0] != reference_expected
        ):
            mismatches.append((label, expectation, got))
        if expectation == SAME and got["cncf"][0] >= 400:
            assert got["cncf"][0] < 500, (label, got)
    assert mismatches == [], "\n".join(map(repr, mismatches))
    # Nothing lost on our side: the good manifest is still there, and no request was a 5xx.
    reply = clients["dockyard"].request("GET", "/v2/side/by-side/manifests/good")
    assert reply.status_code == 200 and json.loads(reply.content) == base_manifest(
        clients["dockyard"]
    )
    assert ours.server_errors() == []
