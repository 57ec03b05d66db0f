"""No Engine API endpoint answers 500 for bad input: a property over every route.

Hypothesis picks a route of the daemon's app, fills its path parameters with a real object, a
missing one or junk, adds query parameters from every name the API reads with junk values,
and sends a random body. Whatever comes back must be a 2xx, 3xx or 4xx in the Engine API's
``{"message": ...}`` form, and the daemon must still list its objects afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.daemon.api import containers, images, system
from tests.conftest import Daemon, Reply

#: Routes that stream until the client goes or something happens (events, attach, stats, a
#: wait for the next exit), or that would end the fixture's world (prune): their own tests
#: cover them.
LONG_LIVED = {
    "/events", "/containers/{id}/attach", "/containers/{id}/stats", "/containers/{id}/wait",
}  # fmt: skip
#: Query parameters the daemon reads, from every route together.
QUERY_NAMES = (
    "all", "filters", "limit", "size", "force", "v", "link", "t", "signal", "condition", "name",
    "h", "w", "follow", "stdout", "stderr", "timestamps", "since", "until", "tail", "stream",
    "logs", "stdin", "fromImage", "fromSrc", "repo", "tag", "message", "changes", "platform",
    "quiet", "noprune", "names", "detachKeys", "ps_args",
)  # fmt: skip
JUNK = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "true", "nope", "{}", "[]", '{"a":1}', "9" * 40]),
    st.text(max_size=12),
)
BODIES = st.one_of(
    st.just(b""),
    st.binary(max_size=64),
    st.sampled_from([b"{}", b"[]", b"null", b'"x"', b'{"Cmd": 1}', b"\xff", b"{" * 300]),
)


def _routes() -> list[tuple[str, str]]:
    found = []
    for route in [*system.routes(), *images.routes(), *containers.routes()]:
        if route.path in LONG_LIVED or route.path.endswith("/prune"):
            continue
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                found.append((method, route.path))
    return found


ROUTES = _routes()


def _one_write_request(daemon: Daemon, method: str, url: str, body: bytes) -> Reply:
    """A request written in one piece: a server may answer an unroutable request and close
    before reading its body, and a client that sends the body afterwards gets EPIPE."""
    head = (
        f"{method} {url} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(60)
        connection.connect(daemon.socket_path)
        connection.sendall(head.encode() + body)
        response = http.client.HTTPResponse(connection)
        response.begin()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Reply(response.status, headers, response.read())


@pytest.fixture(scope="module")
def stopped(shared_daemon: Daemon) -> str:
    """A container that exists and never runs (so no route here can block on it)."""
    body = json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode()
    reply = shared_daemon.request(
        "POST",
        "/v1.41/containers/create?name=junk-target",
        {"Content-Type": "application/json"},
        body,
    )
    assert reply.status == 201, reply.body
    return str(reply.json()["Id"])


@settings(
    max_examples=int(os.environ.get("DOCKYARD_PROPERTY_EXAMPLES", "300")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(ROUTES),
    target=st.sampled_from(["real", "missing", "junk"]),
    query=st.dictionaries(st.sampled_from(QUERY_NAMES), JUNK, max_size=4),
    body=BODIES,
)
def test_no_endpoint_answers_500(shared_daemon, stopped, route, target, query, body):
    method, path = route
    values = {
        "real": {"id": stopped, "name": "busybox"},
        "missing": {"id": "0" * 64, "name": "no-such-image:1"},
        "junk": {"id": "%2E%2E%2F..%00x", "name": "UPPER/../x@sha256:zz"},
    }[target]
    if method == "DELETE" and target == "real":
        values = {"id": "0" * 64, "name": "no-such-image:1"}  # keep the targets for the others
    concrete = path.replace("{id}", values["id"]).replace("{name:path}", values["name"])
    concrete = concrete.replace("{name}", values["name"])
    if "follow" in query and path.endswith("/logs"):
        query.pop("follow")  # a stopped container's follow ends at once; a junk value may not
    url = f"/v1.41{concrete}?{urllib.parse.urlencode(query)}"
    reply = _one_write_request(shared_daemon, method, url, body)
    # 501 is "not implemented yet", an answer rather than a fault; so is a pull's 500 when the
    # registry a good reference names cannot be reached (dockerd's status for a network error).
    unreachable = reply.status == 500 and "fromImage" in query and b"dial tcp" in reply.body
    assert reply.status < 500 or reply.status == 501 or unreachable, (
        method,
        url,
        body[:60],
        reply.body[:300],
    )
    if reply.status >= 400:
        assert "message" in reply.json(), (method, url, reply.body[:200])
    listed = shared_daemon.request("GET", "/v1.41/containers/json?all=1")
    assert listed.status == 200 and stopped in {c["Id"] for c in listed.json()}
