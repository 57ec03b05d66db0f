"""A stub ``POST /build`` on a Unix socket: it records what a client sends (the query, the
headers, the context tar's entries) and answers with a canned JSON-message stream, so a
client's request and its display can be checked without a builder, ours and the docker CLI's
side by side.

The context is read as it arrives and never kept whole: entries are recorded with the
content of small files only, so a large context tests the client's memory, not the stub's.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import tarfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import attrs

from tests.unix_server import UnixHTTPServer, serving

API_VERSION = "1.41"
#: Files up to this size have their content recorded.
KEPT_CONTENT = 64 * 1024


@attrs.define
class ContextEntry:
    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str
    content: bytes | None


@attrs.define
class BuildRequest:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    entries: list[ContextEntry]
    #: Bytes of the body (the tar as sent, before any decompression).
    body_size: int
    #: The body's first bytes (a compressed context is recorded as is).
    head: bytes
    #: Whether the tar ended as a tar should (padding, then two zero blocks).
    complete: bool

    def entry(self, name: str) -> ContextEntry:
        found = [entry for entry in self.entries if entry.name.rstrip("/") == name]
        assert found, f"no {name} in {[e.name for e in self.entries]}"
        return found[0]

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self.entries]


@attrs.define
class BuildStub:
    socket_path: str
    #: The messages the build answers with, each sent as its own chunk.
    messages: list[dict[str, Any]] = attrs.Factory(list)
    requests: list[BuildRequest] = attrs.Factory(list)
    #: When set, the build is refused with this 404 message (a daemon with no builder).
    refusal: str = ""

    @property
    def host(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def last(self) -> BuildRequest:
        assert self.requests, "no build request came in"
        return self.requests[-1]


class _ChunkedBody:
    """A chunked request body as a file: ``read(n)`` decodes chunks as they arrive."""

    def __init__(self, rfile: Any) -> None:
        self.rfile = rfile
        self.left = 0
        self.done = False
        self.size = 0
        self.head = b""

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size if size >= 0 else 1 << 62
        while wanted and not self.done:
            if self.left == 0:
                line = self.rfile.readline()
                self.left = int(line.split(b";")[0].strip() or b"0", 16)
                if self.left == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    self.done = True
                    break
            data = self.rfile.read(min(self.left, wanted))
            self.left -= len(data)
            if self.left == 0:
                self.rfile.readline()
            wanted -= len(data)
            parts.append(data)
        data = b"".join(parts)
        if len(self.head) < 1024:
            self.head += data[: 1024 - len(self.head)]
        self.size += len(data)
        return data


class _Sized(_ChunkedBody):
    """A body with a Content-Length, as docker-py sends one."""

    def __init__(self, rfile: Any, length: int) -> None:
        super().__init__(rfile)
        self.remaining = length

    def read(self, size: int = -1) -> bytes:
        size = self.remaining if size < 0 else min(size, self.remaining)
        data = self.rfile.read(size) if size else b""
        self.remaining -= len(data)
        if len(self.head) < 1024:
            self.head += data[: 1024 - len(self.head)]
        self.size += len(data)
        return data


def read_entries(body: Any) -> tuple[list[ContextEntry], bool]:
    """The entries of the tar ``body`` (plain or compressed), read as a stream, and whether
    the tar was whole: the docker CLI's context with an added Dockerfile (``-f`` outside the
    context) ends right after the last file's content, with no padding and no end blocks."""
    entries = []
    complete = False  # until the end blocks are read
    with contextlib.suppress(tarfile.ReadError), tarfile.open(fileobj=body, mode="r|*") as archive:
        for member in archive:
            content = None
            if member.isreg() and member.size <= KEPT_CONTENT:
                extracted = archive.extractfile(member)
                content = extracted.read() if extracted is not None else None
            entries.append(
                ContextEntry(
                    member.name + ("/" if member.isdir() else ""),
                    member.type,
                    member.mode,
                    member.uid,
                    member.gid,
                    member.size,
                    member.linkname,
                    content,
                )
            )
        complete = True
    while body.read(1 << 16):
        pass  # the zero blocks (and any padding) after the end
    return entries, complete


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _common_headers(self) -> None:
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Ostype", "linux")
        self.send_header("Server", "Docker/20.10.24 (linux)")

    def do_HEAD(self) -> None:
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path.endswith("/version"):
            payload = json.dumps(
                {"ApiVersion": API_VERSION, "MinAPIVersion": "1.12", "Version": "20.10.24"}
            ).encode()
            content_type = "application/json"
        else:  # /_ping
            payload, content_type = b"OK", "text/plain; charset=utf-8"
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        stub = self.server.stub
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body: _ChunkedBody = _ChunkedBody(self.rfile)
        else:
            body = _Sized(self.rfile, int(self.headers.get("Content-Length") or 0))
        entries, complete = read_entries(body)
        stub.requests.append(
            BuildRequest(
                path,
                parse_qs(query, keep_blank_values=True),
                {name: value for name, value in self.headers.items()},
                entries,
                body.size,
                body.head,
                complete,
            )
        )
        if stub.refusal:
            payload = json.dumps({"message": stub.refusal}).encode()
            self.send_response(404)
            self._common_headers()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for message in stub.messages:
            data = json.dumps(message, separators=(",", ":")).encode() + b"\r\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")


class _Server(UnixHTTPServer):
    def __init__(self, stub: BuildStub) -> None:
        self.stub = stub
        super().__init__(stub.socket_path, _Handler)


@contextlib.contextmanager
def build_stub(
    socket_path: str, messages: list[dict[str, Any]] | None = None
) -> Iterator[BuildStub]:
    """A stub serving on ``socket_path`` until the block ends."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    stub = BuildStub(socket_path, list(messages or ()))
    try:
        with serving(_Server(stub)):
            yield stub
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
