"""Generated hostile requests against a real registry: never a 5xx, always the spec's error form.

Hypothesis builds requests from the registry's routes (random methods, names, digests, tags,
upload ids, query parameters, headers) with random bytes, random JSON or mutated valid
manifests as bodies, and fires them over HTTP at a registry served on a loopback port. Every
answer must be below 500, every error body ``{"errors": [{"code", "message", ...}]}`` with a
spec code; afterwards the image pushed first must still be served byte for byte.

The fast suite runs a fixed, derandomized sample. A bigger random run by hand::

    DOCKYARD_HOSTILE_EXAMPLES=5000 pytest -p no:cacheprovider tests/registry/test_hostile.py
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.registry.errors import DEFAULT_STATUS

PROTECTED = "keep/image"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_TYPES = [
    OCI_MANIFEST,
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
]
EXAMPLES = int(os.environ.get("DOCKYARD_HOSTILE_EXAMPLES", "0"))


@attrs.frozen
class Known:
    """What the registry holds before the storm: the protected image and an open upload."""

    manifest: bytes
    digests: tuple[str, ...]
    blobs: dict[str, bytes]
    upload_id: str


@attrs.frozen
class HostileRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes | None

    def __repr__(self) -> str:  # short enough to read in a failure report
        body = None if self.body is None else self.body[:300]
        return f"{self.method} {self.path[:300]} {self.query} {self.headers} {body!r}"


# ------------------------------------------------------------------ building blocks
# Strategies are built once: building them is what costs, not drawing from them.

SPECIAL_NUMBERS = [0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**400, -(10**400)]
SPECIAL_TEXT = ["", " ", "..", ".", "/", "%00", "%2F", "%FF", "é", "²", "٣", "9" * 5000, "a" * 300]

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(SPECIAL_NUMBERS)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from([*SPECIAL_TEXT, "\ud800", "\x00"]),  # JSON escapes what HTTP cannot
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

#: Printable text, percent escapes of any bytes (%00, %2F, %FF) and known troublemakers.
HOSTILE_TEXT = (
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40)
    | st.binary(max_size=40).map(lambda b: urllib.parse.quote(b, safe=""))
    | st.sampled_from(SPECIAL_TEXT)
)

#: What a client can send in a header: latin-1, no control characters (C1 included), no blanks.
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0xFF, blacklist_categories=("Cc", "Zs")),
    max_size=60,
) | st.sampled_from(["0-0", "bytes=0-", "bytes=-1", "9" * 5000])

NAMES = (
    st.sampled_from([PROTECTED, "other", "a/b/c", "x" * 200])
    | st.lists(st.text("abz09._-", min_size=1, max_size=8), min_size=1, max_size=3).map("/".join)
    | HOSTILE_TEXT
)

DIGEST_SHAPES = (
    st.binary(max_size=8).map(lambda b: "sha256:" + hashlib.sha256(b).hexdigest())
    | st.sampled_from(
        ["sha256:", "sha256:abc", "sha512:" + "a" * 64, "md5:" + "a" * 32, "sha256:" + "A" * 64]
    )
    | HOSTILE_TEXT
)

TAGS = st.sampled_from(["latest", "keep", "t" * 128, "t" * 129, "-x", "_x"])

_FIELDS = ["mediaType", "digest", "size", "urls", "annotations", "data", "platform",
           "artifactType", "subject", "manifests", "config", "layers", "schemaVersion"]  # fmt: skip


def _containers(value: Any) -> Iterator[dict | list]:
    if isinstance(value, dict | list):
        yield value
        for child in value.values() if isinstance(value, dict) else value:
            yield from _containers(child)


def request_strategy(known: Known) -> st.SearchStrategy[HostileRequest]:
    """Requests built from the registry's routes, around what ``known`` holds.

    Mostly well aimed (a route's own methods, the protected repository, its digests, manifest
    types in Content-Type), so that the checks behind the routing are reached, not only the
    router's 404s and 405s.
    """
    digests = st.sampled_from(known.digests) | st.sampled_from(known.digests) | DIGEST_SHAPES
    references = TAGS | digests | HOSTILE_TEXT
    upload_ids = (
        st.just(known.upload_id)
        | st.uuids().map(str)
        | st.sampled_from(["{" + known.upload_id + "}", known.upload_id.upper()])
        | HOSTILE_TEXT
    )
    names = st.just(PROTECTED) | NAMES
    # Each route: the path after the name, the methods it takes, its query parameters and the
    # headers it reads.
    routes = [
        (digests.map(lambda d: f"blobs/{d}"), ["GET", "HEAD", "DELETE"], [], ["Range"]),
        (
            st.just("blobs/uploads/"),
            ["POST"],
            ["digest", "mount", "from", "digest-algorithm"],
            [],
        ),
        (
            upload_ids.map(lambda u: f"blobs/uploads/{u}"),
            ["GET", "PATCH", "PUT", "DELETE"],
            ["digest"],
            ["Content-Range"],
        ),
        (references.map(lambda r: f"manifests/{r}"), ["GET", "HEAD", "DELETE"], [], ["Accept"]),
        (references.map(lambda r: f"manifests/{r}"), ["PUT"], ["tag"], ["Content-Type"]),
        (st.just("tags/list"), ["GET"], ["n", "last"], []),
        (digests.map(lambda d: f"referrers/{d}"), ["GET"], ["artifactType"], []),
        (HOSTILE_TEXT, ["GET"], [], []),
    ]
    any_method = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    any_parameter = st.sampled_from(
        ["digest", "mount", "from", "n", "last", "tag", "artifactType", "digest-algorithm"]
    )
    any_header = st.sampled_from(["Content-Type", "Range", "Content-Range", "Accept"])
    repository_requests = st.one_of(
        [
            st.tuples(
                st.sampled_from(methods) | st.sampled_from(methods) | any_method,
                st.tuples(names, tail).map(lambda p: f"/v2/{p[0]}/{p[1]}"),
                st.sampled_from(parameters) if parameters else any_parameter,
                st.sampled_from(headers) if headers else any_header,
            )
            for tail, methods, parameters, headers in routes
        ]
    )
    other_paths = ["/v2", "/v2/", "/", "/v1/", "/v2//", "/v2/_catalog", "/v2/_catalog"]
    other_requests = st.tuples(
        any_method, st.sampled_from(other_paths), st.just("n") | any_parameter, any_header
    )

    @st.composite
    def mutated_manifests(draw: st.DrawFn) -> bytes:
        """The protected manifest with a few values replaced, removed or added, anywhere."""
        document = json.loads(known.manifest)
        for _ in range(draw(st.integers(1, 3))):
            parent = draw(st.sampled_from(list(_containers(document))))
            keys = list(range(len(parent))) if isinstance(parent, list) else list(parent)
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "add" or not keys:
                value = draw(JSON_VALUES)
                if isinstance(parent, list):
                    parent.append(value)
                else:
                    parent[draw(st.sampled_from(_FIELDS) | st.text(max_size=12))] = value
            elif action == "remove":
                del parent[draw(st.sampled_from(keys))]
            else:
                parent[draw(st.sampled_from(keys))] = draw(JSON_VALUES)
        return json.dumps(document).encode()

    bodies = (
        mutated_manifests()
        | mutated_manifests()
        | st.none()
        | st.binary(max_size=300)
        | JSON_VALUES.map(lambda v: json.dumps(v).encode())
        | st.just(known.manifest)
        | st.integers(1, 20_000).map(lambda depth: b"[" * depth + b"]" * depth)
        | st.sampled_from([b"\xef\xbb\xbf{}", "{}".encode("utf-16"), b'{"a": NaN}'])
    )
    # Numbers as a client may write them (in latin-1): huge, negative, superscript, padded.
    number_texts = st.sampled_from(SPECIAL_NUMBERS).map(str) | st.sampled_from(
        ["", "²", "0" * 30 + "1", "9" * 5000, "0x10", "1e3", "1.5"]
    )
    parameter_values = {
        "digest": digests,
        "mount": digests,
        "from": names,
        "digest-algorithm": st.sampled_from(["sha256", "sha512", "md5", ""]) | HOSTILE_TEXT,
        "n": number_texts | st.sampled_from(["٣", "1", "2"]) | HOSTILE_TEXT,
        "last": TAGS | HOSTILE_TEXT,
        "tag": TAGS | HOSTILE_TEXT,
        "artifactType": st.sampled_from(["application/vnd.example", "a/b/c", ""]) | HOSTILE_TEXT,
    }
    any_value = st.one_of(list(parameter_values.values()))
    header_values = {
        "Content-Type": st.sampled_from(MANIFEST_TYPES) | HEADER_TEXT,
        "Accept": st.sampled_from(MANIFEST_TYPES) | HEADER_TEXT,
        "Range": st.tuples(number_texts, number_texts).map(lambda r: f"bytes={r[0]}-{r[1]}")
        | HEADER_TEXT,
        "Content-Range": st.tuples(number_texts, number_texts).map(lambda r: f"{r[0]}-{r[1]}")
        | HEADER_TEXT,
    }

    @st.composite
    def requests(draw: st.DrawFn) -> HostileRequest:
        method, path, parameter, header = draw(
            repository_requests | repository_requests | other_requests
        )
        if method == "DELETE" and urllib.parse.unquote(path).startswith(f"/v2/{PROTECTED}/"):
            method = "GET"  # a valid delete there would be a loss we asked for
        body = draw(bodies) if method in ("POST", "PUT", "PATCH") else None
        values = parameter_values[parameter]
        query = [(parameter, draw(values)) for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2])))]
        query += draw(st.lists(st.tuples(any_parameter | HOSTILE_TEXT, any_value), max_size=1))
        headers = {}
        if draw(st.sampled_from([True, True, True, False])):
            headers[header] = draw(header_values[header])
        if draw(st.booleans()):
            other = draw(any_header)
            headers[other] = draw(header_values[other])
        return HostileRequest(method, path, query, headers, body)

    return requests()


# ------------------------------------------------------------------ the property


def check_answer(request: HostileRequest, reply: Any) -> None:
    assert reply.status_code < 500, (request, reply.status_code, reply.text[:500])
    if reply.status_code < 400 or request.method == "HEAD" or not reply.content:
        return
    try:
        document = json.loads(reply.content)
    except ValueError:
        pytest.fail(f"{request!r}: error body is not JSON: {reply.content[:300]!r}")
    errors = document.get("errors") if isinstance(document, dict) else None
    assert isinstance(errors, list) and errors, (request, document)
    for error in errors:
        assert isinstance(error, dict), (request, document)
        assert error.get("code") in DEFAULT_STATUS, (request, document)
        assert isinstance(error.get("message"), str), (request, document)


@pytest.fixture
def known(client) -> Known:
    image = client.push_image(PROTECTED, "keep")
    location = client.request("POST", "/v2/other/blobs/uploads/").headers["Location"]
    blobs = {client.digest(b): b for b in (image.config, *image.layers)}
    return Known(
        manifest=image.manifest,
        digests=(image.digest, *blobs),
        blobs=blobs,
        upload_id=location.rsplit("/", 1)[1],
    )


def test_hostile_requests_never_get_a_5xx_and_lose_nothing(client, known):
    @settings(
        max_examples=EXAMPLES or 200,
        derandomize=not EXAMPLES,
        database=None,
        deadline=None,
        # One registry for the whole run, on purpose: state left by one request meets the next.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(st.lists(request_strategy(known), min_size=1, max_size=3))
    def storm(requests: list[HostileRequest]) -> None:
        for request in requests:
            reply = client.request(
                request.method,
                request.path,
                params=request.query,
                headers=request.headers,
                data=request.body,
            )
            check_answer(request, reply)

    storm()
    # Nothing lost: the protected image is served byte for byte, by digest and by its blobs.
    image_digest = known.digests[0]
    reply = client.request("GET", f"/v2/{PROTECTED}/manifests/{image_digest}")
    assert reply.status_code == 200 and reply.content == known.manifest
    for digest, data in known.blobs.items():
        reply = client.request("GET", f"/v2/{PROTECTED}/blobs/{digest}")
        assert reply.status_code == 200 and reply.content == data
    # And the registry still takes a push and serves it.
    name = f"after/{uuid.uuid4().hex[:8]}"
    again = client.push_image(name, "v1")
    assert client.request("GET", f"/v2/{name}/manifests/v1").content == again.manifest
