"""A small Engine API client over a Unix socket or TCP (optionally TLS), standard library only.

This is the CLI's transport. It must stay cheap to import: no third-party packages.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import urlencode

from dockyard import http11
from dockyard.core.hosts import Host

API_VERSION = "1.41"

#: Bytes per read or write when a body is streamed (request or response); memory stays bounded.
CHUNK = 1 << 16


class DaemonUnreachable(Exception):
    def __init__(self, host: Host) -> None:
        super().__init__(f"cannot connect to the dockyard daemon at {host}: is it running?")


class ConnectionLost(DaemonUnreachable):
    """Connected, then the daemon went away before the exchange was complete."""

    def __init__(self, host: Host, detail: str) -> None:
        Exception.__init__(self, f"lost the connection to the dockyard daemon at {host}: {detail}")


class TLSFailure(DaemonUnreachable):
    """TLS with the daemon could not be set up: a file we could not use, a certificate one
    side refused, or no TLS at the other end. ``str()`` is one line for the user."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)


class APIError(Exception):
    """The daemon answered with an error status; ``str()`` is its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StreamError(APIError):
    """An ``errorDetail``/``error`` message inside a JSON-message stream (the status was 200).

    ``code``: the ``errorDetail``'s code, where the daemon gave one (a failed build step's
    exit status, which ``build`` exits with); 0 when none."""

    def __init__(self, status: int, message: str, code: int = 0) -> None:
        super().__init__(status, message)
        self.code = code


class TLSOptions(NamedTuple):
    """TLS to a tcp:// daemon.

    With ``verify``, the daemon's certificate and name are checked against ``ca`` alone (the
    system's CAs when it is empty); without, the connection is encrypted only, as docker's
    ``--tls``. ``cert`` and ``key`` are the client certificate, for a daemon that asks.
    """

    ca: str = ""
    cert: str = ""
    key: str = ""
    verify: bool = True


def _client_context(tls: TLSOptions) -> Any:
    import ssl

    from dockyard.core.pemfiles import load_ca, load_cert_chain

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if not tls.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif tls.ca:
            load_ca(context, tls.ca, f"CA file {tls.ca}")
        else:
            context.load_default_certs()
        if tls.cert:
            cert_what, key_what = f"client certificate {tls.cert}", f"client key {tls.key}"
            load_cert_chain(context, tls.cert, tls.key, cert_what, key_what)
    except ValueError as exc:
        raise TLSFailure(str(exc)) from None
    return context


def _tls_failure(host: Host, tls: TLSOptions, exc: BaseException) -> TLSFailure:
    """What a failed TLS exchange means, in one line."""
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        against = f"CA file {tls.ca}" if tls.ca else "the system's CAs"
        return TLSFailure(
            f"the daemon at {host} failed TLS verification against {against}: {exc.verify_message}"
        )
    reason = getattr(exc, "reason", None) or ""
    # The alert a server sends when it refuses the client's certificate, or the lack of one:
    # OpenSSL's "certificate required" (TLS 1.3), Go's "bad certificate", "unknown ca", ...
    if "ALERT" in reason and ("CERTIFICATE" in reason or "UNKNOWN_CA" in reason):
        if not tls.cert:
            return TLSFailure(
                f"the daemon at {host} requires a client certificate: give --tlscert and --tlskey"
            )
        alert = reason.split("ALERT_", 1)[1].replace("_", " ").lower()
        return TLSFailure(
            f"the daemon at {host} refused the client certificate {tls.cert}: {alert}"
        )
    if reason == "WRONG_VERSION_NUMBER":
        return TLSFailure(f"the daemon at {host} does not speak TLS on that port")
    detail = reason.replace("_", " ").lower() or str(exc)
    return TLSFailure(f"TLS with the daemon at {host} failed: {detail}")


def _error_message(body: bytes, reason: str) -> str:
    """The daemon's ``{"message": ...}``, else its text, else the status's reason."""
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip() or reason


def transport_errors() -> tuple[type[BaseException], ...]:
    """What a broken exchange can raise: socket errors (our HTTP client's included) and, once
    a TLS connection has loaded it, ``http.client``'s."""
    import sys

    loaded = sys.modules.get("http.client")
    return (OSError,) if loaded is None else (OSError, loaded.HTTPException)


def _is_tls_socket(sock: socket.socket) -> bool:
    import sys

    loaded = sys.modules.get("ssl")
    return loaded is not None and isinstance(sock, loaded.SSLSocket)


def _is_tls_error(exc: BaseException) -> bool:
    import sys

    loaded = sys.modules.get("ssl")
    return loaded is not None and isinstance(exc, loaded.SSLError)


class EngineClient:
    def __init__(
        self,
        host: Host,
        tls: TLSOptions | None = None,
        token: str = "",
        timeout: float | None = 60.0,
    ) -> None:
        self.host = host
        self.tls = tls
        self.token = token
        self.timeout = timeout
        self._tls_context: Any = None  # made on the first TLS connection, then reused

    def _connection(self, timeout: float | None) -> Any:
        """A connection with ``http.client``'s interface: ours for plain HTTP (cheap to
        import), ``http.client``'s for TLS."""
        if self.host.scheme == "unix":
            return http11.Connection(socket.AF_UNIX, self.host.path, "localhost", timeout)
        if self.tls is None:
            family = socket.AF_INET6 if ":" in self.host.address else socket.AF_INET
            host_header = f"{self.host.address}:{self.host.port}"
            return http11.Connection(
                family, (self.host.address, self.host.port), host_header, timeout
            )
        import http.client

        if self._tls_context is None:
            self._tls_context = _client_context(self.tls)
        return http.client.HTTPSConnection(
            self.host.address,
            self.host.port,
            timeout=timeout,
            context=self._tls_context,
            blocksize=CHUNK,
        )

    def _tls_failure(self, exc: BaseException) -> TLSFailure:
        assert self.tls is not None
        return _tls_failure(self.host, self.tls, exc)

    def _connected(self, timeout: float | None) -> Any:
        """A connected connection; an unreachable daemon is :class:`DaemonUnreachable`."""
        connection = self._connection(timeout)
        try:
            connection.connect()
        except OSError as exc:
            if _is_tls_error(exc):
                raise self._tls_failure(exc) from None
            raise DaemonUnreachable(self.host) from None
        return connection

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
        versioned: bool = True,
        *,
        data: BinaryIO | None = None,
        content_type: str = "application/x-tar",
        streaming: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one request; returns the open response (status < 400) for the caller to read.

        ``body`` is sent as JSON. ``data`` is a binary file sent as the body with chunked
        transfer encoding, read a chunk at a time so it may be larger than memory (or a pipe).
        A query value that is a list repeats the parameter; ``None`` values are left out.
        ``streaming``: the answer may take as long as a container runs (wait, ``logs -f``),
        so no read timeout. ``headers`` are added to ours (``X-Registry-Auth``).
        """
        url = self._url(path, query, versioned)
        headers = {**self._headers(), **(headers or {})}
        payload: Any = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif data is not None:
            payload = _chunks(data)
            headers["Content-Type"] = content_type
            headers["Transfer-Encoding"] = "chunked"
        # A streamed upload and the work behind it scale with the data: no timeout, like docker.
        unbounded = data is not None or streaming
        connection = self._connected(None if unbounded else self.timeout)
        try:
            connection.request(
                method, url, body=payload, headers=headers, encode_chunked=data is not None
            )
        except (BrokenPipeError, ConnectionResetError):
            # The daemon may refuse a body before reading all of it (a bad tar, a bad --change)
            # and close the connection; its answer is then waiting to be read below.
            if data is None:
                raise ConnectionLost(self.host, "the request was cut off") from None
        except OSError as exc:
            if _is_tls_error(exc):
                raise self._tls_failure(exc) from None
            # With a body to stream, the error may be the source's own (reading stdin): keep it.
            if data is not None:
                raise
            raise ConnectionLost(self.host, f"sending the request failed ({exc})") from None
        try:
            response = connection.getresponse()
        except transport_errors() as exc:
            if _is_tls_error(exc):
                # TLS 1.3: a daemon refuses our certificate after our side of the handshake.
                raise self._tls_failure(exc) from None
            detail = f"no response ({exc or type(exc).__name__})"
            if self.host.scheme == "tcp" and self.tls is None:
                detail += "; if it serves TLS, add --tlsverify"
            raise ConnectionLost(self.host, detail) from None
        if response.status >= 400:
            raise APIError(response.status, _error_message(response.read(), response.reason))
        return response

    def _url(self, path: str, query: dict[str, Any] | None, versioned: bool = True) -> str:
        url = f"/v{API_VERSION}{path}" if versioned else path
        if query:
            present = {k: v for k, v in query.items() if v is not None}
            if present:
                url += "?" + urlencode(present, doseq=True)
        return url

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "dockyard-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def hijack(
        self, path: str, query: dict[str, Any] | None = None, body: Any = None
    ) -> HijackedStream:
        """``POST`` with ``Upgrade: tcp`` on a fresh connection (attach, exec start), as the
        docker CLI does; returns the raw two-way stream that follows the daemon's ``101``.

        A daemon that answers with an error status raises :class:`APIError`; one that answers
        anything else but 101 cannot carry the stream (docker: "unable to upgrade to tcp").
        """
        payload = b"" if body is None else json.dumps(body).encode()
        headers = self._headers()
        headers["Content-Type"] = "text/plain" if body is None else "application/json"
        headers["Content-Length"] = str(len(payload))
        headers["Connection"] = "Upgrade"
        headers["Upgrade"] = "tcp"
        unix = self.host.scheme == "unix"
        host = "localhost" if unix else f"{self.host.address}:{self.host.port}"
        head = f"POST {self._url(path, query)} HTTP/1.1\r\nHost: {host}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        # The stream may stay quiet as long as the container does: no timeout once connected.
        connection = self._connected(self.timeout)
        sock = connection.sock
        try:
            sock.sendall(head.encode("latin-1") + b"\r\n" + payload)
            # The head is parsed from a buffered reader; the bytes after it stay in that reader,
            # which the stream then reads from (none are lost, unlike docker-py #3332).
            response = http11.Response(sock.makefile("rb"), "POST")
        except OSError as exc:
            sock.close()
            if _is_tls_error(exc):
                raise self._tls_failure(exc) from None
            raise ConnectionLost(self.host, f"no answer to the upgrade ({exc})") from None
        if response.status != 101:
            message = _error_message(response.read(), response.reason)
            sock.close()
            if response.status >= 400:
                raise APIError(response.status, message)
            raise APIError(response.status, f"unable to upgrade to tcp, received {response.status}")
        sock.settimeout(None)
        return HijackedStream(sock, response)

    def call_json(
        self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        """A request whose answer is one JSON document; ``None`` for an empty body (201, 204)."""
        raw = self.request(method, path, query, body).read()
        return json.loads(raw) if raw.strip() else None

    def get_json(self, path: str, query: dict[str, Any] | None = None) -> Any:
        return self.call_json("GET", path, query)

    def copy_response(self, response: Any, out: BinaryIO) -> int:
        """Copy a streamed response body into ``out``, a chunk at a time; returns the size.

        A body that ends early (the daemon failed after it started sending) raises
        :class:`ConnectionLost` rather than leaving a silently truncated copy.
        """
        total = 0
        while True:
            try:
                block = response.read1(CHUNK)  # what has arrived: nothing held back on a cut
            except transport_errors() as exc:
                detail = f"the response ended after {total} bytes ({type(exc).__name__})"
                raise ConnectionLost(self.host, detail) from None
            if not block:
                break
            out.write(block)  # a failure here is the destination's (a closed pipe), not ours
            total += len(block)
        return total


class HijackedStream:
    """The raw connection after a ``101 UPGRADED``: container output in, stdin out.

    Reads go through the buffered reader that parsed the 101 (it may already hold output);
    writes go straight to the socket. Safe to use from two threads: one reading, one writing.
    """

    def __init__(self, sock: socket.socket, response: http11.Response) -> None:
        self.sock = sock
        # The response must stay referenced: when collected, it closes its reader with it.
        self._response = response
        assert response.fp is not None
        self.reader: Any = response.fp
        self._lock = threading.Lock()
        self._closed = False

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes, fewer only at the end of the stream."""
        try:
            data: bytes = self.reader.read(size)
            return data
        except (OSError, ValueError):
            return b""  # closed under us (a detach): the stream is over

    def read1(self, size: int = CHUNK) -> bytes:
        """What has arrived (blocking until something has); ``b""`` at the end."""
        try:
            data: bytes = self.reader.read1(size)
            return data
        except (OSError, ValueError):
            return b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        """Half-close: the daemon sees the end of stdin and keeps sending output.

        TLS has no half-close that leaves the read side usable, so there stdin just stops.
        """
        if _is_tls_socket(self.sock):
            return
        with self._lock, contextlib.suppress(OSError):
            if not self._closed:
                self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Both directions; a reader blocked in another thread wakes up with the end."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


#: stdcopy stream types (moby ``pkg/stdcopy``): stdin (written to stdout), stdout, stderr, and
#: an error from the daemon that ends the stream.
STDCOPY_STDIN, STDCOPY_STDOUT, STDCOPY_STDERR, STDCOPY_SYSTEMERR = 0, 1, 2, 3


class StdCopyError(Exception):
    """The multiplexed stream broke its format, or carried an error from the daemon."""


def demultiplex(
    read: Callable[[int], bytes], stdout: BinaryIO, stderr: BinaryIO
) -> tuple[int, int]:
    """Copy stdcopy frames (8-byte header: stream, 3 zero bytes, big-endian length; then the
    payload) to ``stdout``/``stderr`` as they arrive; returns the bytes written to each.

    A stream that ends inside a header or payload is a normal end, as in docker's ``StdCopy``.
    """
    written = [0, 0]
    while True:
        header = read(8)
        if len(header) < 8:
            return written[0], written[1]
        stream, length = header[0], struct.unpack(">L", header[4:8])[0]
        payload = read(length) if length else b""
        if stream == STDCOPY_SYSTEMERR:
            raise StdCopyError(f"error from daemon in stream: {payload.decode(errors='replace')}")
        if stream not in (STDCOPY_STDIN, STDCOPY_STDOUT, STDCOPY_STDERR):
            raise StdCopyError(f"Unrecognized input header: {stream}")
        out = stderr if stream == STDCOPY_STDERR else stdout
        out.write(payload)
        out.flush()  # interactive output: each frame as it comes
        written[stream == STDCOPY_STDERR] += len(payload)
        if len(payload) < length:
            return written[0], written[1]


def copy_raw(read1: Callable[[int], bytes], out: BinaryIO) -> int:
    """A TTY's output: no framing, bytes as they arrive."""
    total = 0
    while block := read1(CHUNK):
        out.write(block)
        out.flush()
        total += len(block)
    return total


def _chunks(data: BinaryIO) -> Iterator[bytes]:
    while block := data.read(CHUNK):
        yield block


def iter_json_messages(response: Any) -> Iterator[dict[str, Any]]:
    """Decode a JSON-message stream: concatenated objects, yielded as they arrive."""
    decoder = json.JSONDecoder()
    # Incremental, so a multi-byte character split between two reads decodes whole.
    utf8 = codecs.getincrementaldecoder("utf-8")()
    buffer = ""
    while True:
        block = response.read1(CHUNK)
        buffer += utf8.decode(block, final=not block)
        while buffer := buffer.lstrip():
            try:
                message, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError:
                break  # an object cut between reads: wait for the rest
            buffer = buffer[end:]
            if isinstance(message, dict):
                yield message
        if not block:
            break
    if buffer:
        raise StreamError(200, f"malformed JSON message in the daemon's stream: {buffer[:80]!r}")
