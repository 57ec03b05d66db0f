"""Hijacked connections: ``attach`` and ``exec start`` with ``Upgrade: tcp``.

The docker CLI asks to upgrade the HTTP connection to a raw, two-way stream: the daemon
answers ``101 UPGRADED`` (no Content-Length, no chunking), then writes the container's output
and reads its stdin from the same socket. The client half-closes when its stdin ends and still
expects output; the daemon closes once the process has exited.

Stock uvicorn cannot do this (it refuses or chunk-frames a 101), so :class:`EngineHttpProtocol`
extends its h11 protocol: a request with ``Upgrade: tcp`` is handed to the ASGI app as usual,
but over a :class:`HijackedConnection` that writes the head and body messages straight to the
socket. The endpoint finds the connection in ``scope["extensions"]["dockyard.hijack"]`` and
reads stdin from it. Everything else (routing, middleware, errors) stays ordinary starlette.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import termios
import time
from collections.abc import MutableMapping
from typing import Any

import h11

from dockyard.core.server import TimedH11Protocol

HIJACK_EXTENSION = "dockyard.hijack"
#: docker-py reads the 101 through a buffered reader and then the stream from the raw socket,
#: so stream bytes that reach it with the head are lost (docker-py #3332; dockerd loses them
#: too, more often). On a Unix socket the stream's first bytes wait until the client has read
#: the head, up to this long (a client that never reads gets them then).
HEAD_READ_WAIT = 5.0
#: Over TCP nothing tells when the client read the head: the first bytes wait this long.
FIRST_WRITE_DELAY = 0.02
#: Client input held for a process that reads it slower than it comes: above this much, the
#: connection stops being read until the process caught up.
STDIN_HIGH_WATER = 1 << 20

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3


def frame(stream: int, data: bytes) -> bytes:
    """One stdcopy frame: stream type, three zero bytes, big-endian length, payload."""
    return struct.pack(">BxxxL", stream, len(data)) + data


class HijackedConnection(asyncio.Protocol):
    """The transport after the upgrade: raw bytes both ways, driven by one ASGI call."""

    def __init__(self, transport: asyncio.Transport, trailing: bytes, content_length: int) -> None:
        self.transport = transport
        self._body = trailing[:content_length]
        self._body_missing = content_length - len(self._body)
        self._stdin: asyncio.Queue[bytes] = asyncio.Queue()
        self._stdin_held = 0  # bytes in _stdin
        self._reading_paused = False
        self._body_ready = asyncio.Event()
        if self._body_missing <= 0:
            self._body_ready.set()
        rest = trailing[content_length:]
        if rest:
            self._hold_stdin(rest)
        self.upgraded = False
        self.closed = False
        self.stdin_closed = False
        self._head_sent_at = 0.0
        self._first_write_done = False

    # ---------------------------------------------------------------- asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self._body_missing > 0:
            taken = data[: self._body_missing]
            self._body += taken
            self._body_missing -= len(taken)
            data = data[len(taken) :]
            if self._body_missing <= 0:
                self._body_ready.set()
        if data:
            self._hold_stdin(data)

    def _hold_stdin(self, data: bytes) -> None:
        self._stdin.put_nowait(data)
        self._stdin_held += len(data)
        if self._stdin_held > STDIN_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        # A half-close: the client's stdin ended. Keep the write side open for output.
        self.stdin_closed = True
        self._body_ready.set()
        self._stdin.put_nowait(b"")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.stdin_closed = True
        self._body_ready.set()
        self._stdin.put_nowait(b"")

    # ---------------------------------------------------------------- for endpoints

    async def read_stdin(self) -> bytes:
        """The next bytes the client sent after the request; ``b""`` once its input ended."""
        if self.stdin_closed and self._stdin.empty():
            return b""
        data = await self._stdin.get()
        self._stdin_held -= len(data)
        if self._reading_paused and self._stdin_held <= STDIN_HIGH_WATER // 2:
            self._reading_paused = False
            if not self.closed:
                self.transport.resume_reading()
        return data

    # ---------------------------------------------------------------- ASGI side

    async def receive(self) -> dict[str, Any]:
        await self._body_ready.wait()
        body, self._body = self._body, b""
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if self.closed:
            return
        if message["type"] == "http.response.start":
            status = message["status"]
            self.upgraded = status == 101
            reason = b"UPGRADED" if status == 101 else _reason(status).encode()
            lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
            headers = list(message.get("headers") or [])
            if self.upgraded:
                headers = [
                    (k, v)
                    for k, v in headers
                    if k.lower() not in (b"content-length", b"transfer-encoding")
                ]
                headers += [(b"connection", b"Upgrade"), (b"upgrade", b"tcp")]
            else:
                headers.append((b"connection", b"close"))
            lines += [k + b": " + v + b"\r\n" for k, v in headers]
            self.transport.write(b"".join(lines) + b"\r\n")
            self._head_sent_at = time.monotonic()
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body:
                if self.upgraded and not self._first_write_done:
                    await self._until_head_read()
                    self._first_write_done = True
                if not self.closed:
                    self.transport.write(body)
            if not message.get("more_body", False):
                self.close()

    async def _until_head_read(self) -> None:
        """Wait until the client has read the head (see :data:`HEAD_READ_WAIT`)."""
        sock = self.transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_UNIX:
            wait = FIRST_WRITE_DELAY - (time.monotonic() - self._head_sent_at)
            if wait > 0:
                await asyncio.sleep(wait)
            return
        deadline = self._head_sent_at + HEAD_READ_WAIT
        pause = 0.001
        # What the transport still holds has not been sent; what the socket reports as
        # unread (SIOCOUTQ) the client has not taken yet.
        while not self.closed and time.monotonic() < deadline:
            if self.transport.get_write_buffer_size() == 0 and _unread_by_peer(sock) == 0:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.transport.close()


def _unread_by_peer(sock: Any) -> int:
    """Bytes sent on a Unix stream socket that its peer has not read yet."""
    reply = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", reply)[0])


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class EngineHttpProtocol(TimedH11Protocol):
    """uvicorn's h11 protocol (with its head deadline), plus Docker's ``Upgrade: tcp`` hijack."""

    def _should_upgrade(self) -> bool:
        if self._get_upgrade() == b"tcp":
            return True
        return super()._should_upgrade()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        if self._get_upgrade() != b"tcp":
            super().handle_websocket_upgrade(event)
            return
        self.connections.discard(self)
        self._unset_keepalive_if_required()
        content_length = 0
        for name, value in self.headers:
            if name == b"content-length":
                content_length = int(value)
        trailing, _closed = self.conn.trailing_data
        connection = HijackedConnection(self.transport, bytes(trailing), content_length)
        self.transport.set_protocol(connection)
        scope: dict[str, Any] = dict(self.scope)
        extensions: dict[str, Any] = dict(scope.get("extensions") or {})
        extensions[HIJACK_EXTENSION] = connection
        scope["extensions"] = extensions
        task = self.loop.create_task(self._run_hijacked(scope, connection))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_hijacked(self, scope: dict[str, Any], connection: HijackedConnection) -> None:
        try:
            await self.app(scope, connection.receive, connection.send)
        except Exception:
            self.logger.exception("hijacked request failed")
        finally:
            connection.close()
