"""A small HTTP/1.1 client for the CLI's plain (non-TLS) connections, on raw sockets.

``http.client`` costs ~15 ms to import (it pulls in the email parser and ssl), a sixth of a
quick command's run time. The Engine API needs only a little of it: one request per
connection, a body of bytes or of chunks, and a response framed by Content-Length, chunked
encoding or the connection's end. The subset of ``http.client.HTTPResponse`` the CLI uses is
provided (``status``, ``reason``, ``getheader``, ``read``, ``read1``, ``fp``, ``close``). TLS
connections still use ``http.client``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any, BinaryIO

MAX_HEAD_LINE = 65536
MAX_HEADERS = 200


class ProtocolError(ConnectionError):
    """The server's answer is not HTTP/1.1 as expected (a ``ConnectionError``, so callers that
    handle a dropped connection handle this too)."""


class Response:
    """A response read from ``fp``; the body is decoded as the headers frame it."""

    def __init__(self, fp: BinaryIO, method: str) -> None:
        self.fp = fp
        line = self._line()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {line[:100]!r}")
        self.status = int(parts[1])
        self.reason = parts[2].decode("latin-1").strip() if len(parts) > 2 else ""
        self.headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            header = self._line()
            if header in (b"\r\n", b"\n"):
                break
            name, sep, value = header.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {header[:100]!r}")
            self.headers[name.strip().lower()] = value.strip()
        else:
            raise ProtocolError("too many headers")
        encoding = self.headers.get("transfer-encoding", "").lower()
        self._chunked = "chunked" in encoding
        self._chunk_left = 0  # bytes left in the current chunk
        self._remaining: int | None = None  # bytes left of a Content-Length body
        self._done = method == "HEAD" or self.status in (101, 204, 304) or 100 <= self.status < 200
        if not self._chunked and "content-length" in self.headers:
            try:
                self._remaining = int(self.headers["content-length"])
            except ValueError:
                raise ProtocolError("bad Content-Length") from None
        if self.status == 101:
            self._done = True  # what follows belongs to the upgraded stream, read through fp

    def _line(self) -> bytes:
        line = self.fp.readline(MAX_HEAD_LINE + 1)
        if not line:
            raise ProtocolError("the connection closed before a complete answer")
        if len(line) > MAX_HEAD_LINE:
            raise ProtocolError("a header line is too long")
        return line

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    # ---------------------------------------------------------------- the body

    def _next_chunk(self) -> bool:
        """Move to the next chunk; False at the last (zero-size) one."""
        size_line = self._line().split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_line[:20]!r}") from None
        if size == 0:
            while self._line() not in (b"\r\n", b"\n"):
                pass  # trailers
            self._done = True
            return False
        self._chunk_left = size
        return True

    def read1(self, amount: int = 65536) -> bytes:
        """What is available, up to ``amount`` bytes, with at most one read that can block;
        ``b""`` at the end of the body."""
        if self._done or amount == 0:
            return b""
        if self._chunked:
            if self._chunk_left == 0 and not self._next_chunk():
                return b""
            data = self.fp.read1(min(amount, self._chunk_left))  # type: ignore[attr-defined]
            if not data:
                raise ProtocolError("the connection closed inside a chunk")
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self._line()  # the CRLF after the chunk
            return data
        if self._remaining is not None:
            if self._remaining == 0:
                self._done = True
                return b""
            data = self.fp.read1(min(amount, self._remaining))  # type: ignore[attr-defined]
            if not data:
                raise ProtocolError("the connection closed before the whole body")
            self._remaining -= len(data)
            return data
        data = self.fp.read1(amount)  # type: ignore[attr-defined]
        if not data:
            self._done = True
        return data

    def read(self, amount: int | None = None) -> bytes:
        """``amount`` bytes (fewer only at the end of the body), or the whole rest with ``None``."""
        parts = []
        wanted = -1 if amount is None or amount < 0 else amount
        while wanted != 0:
            data = self.read1(65536 if wanted < 0 else min(wanted, 65536))
            if not data:
                break
            parts.append(data)
            if wanted > 0:
                wanted -= len(data)
        return b"".join(parts)

    def close(self) -> None:
        self._done = True
        self.fp.close()


class Connection:
    """One plain HTTP/1.1 exchange over a Unix or TCP socket (``http.client``'s interface)."""

    def __init__(self, family: int, address: Any, host_header: str, timeout: float | None) -> None:
        self.family = family
        self.address = address
        self.host_header = host_header
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._method = "GET"

    def connect(self) -> None:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.address)
        except BaseException:
            sock.close()
            raise
        if self.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock

    def request(
        self,
        method: str,
        url: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        encode_chunked: bool = False,
    ) -> None:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self._method = method
        fields = {"Host": self.host_header, **(headers or {})}
        if isinstance(body, bytes | bytearray):
            fields["Content-Length"] = str(len(body))
        elif body is None and method in ("POST", "PUT"):
            fields["Content-Length"] = "0"
        elif encode_chunked:
            fields.setdefault("Transfer-Encoding", "chunked")
        head = f"{method} {url} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        self.sock.sendall(head.encode("latin-1") + b"\r\n")
        if isinstance(body, bytes | bytearray):
            self.sock.sendall(body)
        elif body is not None:
            for chunk in body:
                if chunk:
                    data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if encode_chunked else chunk
                    self.sock.sendall(data)
            if encode_chunked:
                self.sock.sendall(b"0\r\n\r\n")

    def getresponse(self) -> Response:
        assert self.sock is not None
        return Response(self.sock.makefile("rb"), self._method)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
