"""The CLI's small HTTP/1.1 client: framing, and clear errors for answers that are not HTTP."""

from __future__ import annotations

import socket
import threading

import pytest

from dockyard.http11 import Connection, ProtocolError


def serve_once(answer: bytes) -> tuple[str, threading.Thread, list[bytes]]:
    """A Unix socket that reads one request and writes ``answer`` raw, then closes."""
    import tempfile

    path = tempfile.mktemp(prefix="http11-", suffix=".sock", dir="/tmp")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    received: list[bytes] = []

    def run() -> None:
        connection, _ = listener.accept()
        with connection:
            data = b""
            while b"\r\n\r\n" not in data:
                data += connection.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            while head.lower().find(b"transfer-encoding: chunked") >= 0 and not body.endswith(
                b"0\r\n\r\n"
            ):
                body += connection.recv(65536)
            received.append(head + b"\r\n\r\n" + body)
            connection.sendall(answer)
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return path, thread, received


def exchange(answer: bytes, method: str = "GET", body=None, chunked: bool = False):
    path, thread, received = serve_once(answer)
    connection = Connection(socket.AF_UNIX, path, "localhost", 5)
    connection.request(
        method, "/v1.41/x", body=body, headers={"X-Test": "1"}, encode_chunked=chunked
    )
    response = connection.getresponse()
    return response, thread, received


def test_content_length_and_chunked_bodies():
    response, _, received = exchange(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\nhello"
    )
    assert (response.status, response.reason, response.read()) == (200, "OK", b"hello")
    assert response.getheader("content-type") == "application/json"
    assert received[0].startswith(b"GET /v1.41/x HTTP/1.1\r\nHost: localhost\r\nX-Test: 1\r\n")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n"
    response, _, _ = exchange(chunked)
    assert response.read1(2) == b"ab" and response.read() == b"cdefg" and response.read() == b""


def test_chunked_upload_and_empty_post():
    response, thread, received = exchange(
        b"HTTP/1.1 204 No Content\r\n\r\n", "POST", iter([b"ab", b"", b"cde"]), chunked=True
    )
    thread.join(5)
    assert response.status == 204 and response.read() == b""
    assert received[0].endswith(b"\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")
    response, thread, received = exchange(
        b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", "POST"
    )
    thread.join(5)
    assert b"Content-Length: 0\r\n" in received[0]


def test_body_until_close_and_101_leaves_the_stream_in_fp():
    response, _, _ = exchange(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
    assert response.read() == b"until the end"
    response, _, _ = exchange(
        b"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x02hi"
    )
    assert response.status == 101 and response.read() == b""
    assert response.fp.read(10) == b"\x01\x00\x00\x00\x00\x00\x00\x02hi"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n", "bad status line"),
        (b"", "the connection closed before a complete answer"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "bad Content-Length"),
    ],
)
def test_answers_that_are_not_http_are_protocol_errors(answer, message):
    with pytest.raises(ProtocolError, match=message):
        exchange(answer)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "before the whole body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc", "inside a chunk"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ],
)
def test_cut_or_garbled_bodies_are_errors_not_short_reads(answer, message):
    response, _, _ = exchange(answer)
    with pytest.raises(ProtocolError, match=message):
        response.read()
    assert issubclass(ProtocolError, ConnectionError)  # callers' connection handling applies
