"""A stub Engine API on a Unix socket: it records what a client sends and answers with canned
replies, so the docker CLI and ours can be driven with the same flags and the same answers.

It compares clients, not daemons: the request bodies each builds from its flags, and what each
prints from the same replies. It speaks API 1.41, as dockerd 20.10 does.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from tests.unix_server import UnixHTTPServer, serving

API_VERSION = "1.41"
CONTAINER_ID = "c0ffee" + "0" * 58
NETWORK_ID = "7e57" + "1" * 60


@attrs.define
class Recorded:
    method: str
    path: str
    query: str
    body: Any


@attrs.define
class EngineStub:
    """The server's state: canned replies by (method, path pattern), and what came in."""

    socket_path: str
    #: (method, regex on the unversioned path) -> (status, JSON reply); first match wins.
    replies: dict[tuple[str, str], tuple[int, Any]] = attrs.Factory(dict)
    requests: list[Recorded] = attrs.Factory(list)

    @property
    def host(self) -> str:
        return f"unix://{self.socket_path}"

    def answer(self, method: str, pattern: str, status: int, reply: Any = None) -> None:
        self.replies[(method, pattern)] = (status, reply)

    def bodies(self, method: str, path: str) -> list[Any]:
        """The JSON bodies sent with ``method`` to exactly ``path`` (unversioned)."""
        return [r.body for r in self.requests if r.method == method and r.path == path]

    def reply_for(self, method: str, path: str) -> tuple[int, Any]:
        for (wanted, pattern), reply in self.replies.items():
            if wanted == method and re.fullmatch(pattern, path):
                return reply
        return DEFAULT_REPLIES.get((method, path), (404, {"message": f"stub: no {path}"}))


DEFAULT_REPLIES: dict[tuple[str, str], tuple[int, Any]] = {
    ("GET", "/version"): (
        200,
        {"ApiVersion": API_VERSION, "MinAPIVersion": "1.12", "Version": "20.10.24", "Os": "linux"},
    ),
    ("POST", "/containers/create"): (201, {"Id": CONTAINER_ID, "Warnings": []}),
    ("POST", "/networks/create"): (201, {"Id": NETWORK_ID, "Warning": ""}),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test reads the recorded requests instead

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        path = re.sub(r"^/v[0-9.]+", "", path)
        body = json.loads(raw) if raw else None
        stub = self.server.stub
        stub.requests.append(Recorded(self.command, path, query, body))
        if path == "/_ping":
            status, reply = 200, None
            payload = b"OK"
        else:
            status, reply = stub.reply_for(self.command, path)
            payload = b"" if reply is None else json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("OSType", "linux")
        self.send_header("Content-Type", "text/plain" if path == "/_ping" else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            # A client may hang up once it has what it needs; the stub does not mind.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = do_DELETE = do_PUT = _handle


class _Server(UnixHTTPServer):
    def __init__(self, stub: EngineStub) -> None:
        self.stub = stub
        super().__init__(stub.socket_path, _Handler)


@contextmanager
def engine_stub(socket_path: str) -> Iterator[EngineStub]:
    """A stub serving on ``socket_path`` until the block ends."""
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    stub = EngineStub(socket_path)
    try:
        with serving(_Server(stub)):
            yield stub
    finally:
        os.unlink(socket_path)
