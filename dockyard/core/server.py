"""Serving an ASGI app on Unix sockets and TCP from one process, the way dockerd does.

One uvicorn server per socket family (so TLS applies to TCP only), one event loop, one signal
handler that stops them all. Sockets are bound here, before any plugin starts, so a busy address
fails fast with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import ipaddress
import os
import signal
import socket
import ssl
import time
import uuid
from asyncio import sslproto
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import h11
import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dockyard.core.errors import ConfigError, RequestTimeout
from dockyard.core.hosts import Host, parse_host
from dockyard.core.pemfiles import load_ca, load_cert_chain

_log = structlog.get_logger("dockyard.server")
_request_log = structlog.get_logger("dockyard.api")


@attrs.frozen
class Listener:
    """A bound socket and what serving it needs."""

    host: Host
    sock: socket.socket
    tls: ssl.SSLContext | None = None


@contextlib.contextmanager
def data_root_lock(data_root: Path, program: str) -> Iterator[None]:
    """Hold an exclusive lock on the data root for the life of the process."""
    data_root.mkdir(parents=True, exist_ok=True)
    path = data_root / f"{program}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"data root {data_root} is in use by another dockyard {program} (pid {holder}); "
                "stop it or pass another --data-root"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def parse_hosts(values: list[str]) -> list[Host]:
    hosts = []
    for value in values:
        try:
            hosts.append(parse_host(value))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if not hosts:
        raise ConfigError("no hosts to serve on: give at least one -H unix:///PATH or tcp://...")
    return hosts


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def bind(host: Host) -> socket.socket:
    """Bind ``host``; a stale Unix socket file is replaced, a live one is refused."""
    if host.scheme == "unix":
        path = host.path
        if os.path.lexists(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError as exc:
                if exc.errno == errno.ENOTSOCK:
                    raise ConfigError(f"{path} exists and is not a socket") from None
                os.unlink(path)  # stale: nothing is listening behind it
            else:
                raise ConfigError(f"another server is already listening on {host}") from None
            finally:
                probe.close()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o660)
    else:
        family = socket.AF_INET6 if ":" in host.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # asyncio sets TCP_NODELAY only on sockets it creates; without it every keep-alive
        # response waits ~40 ms for a delayed ACK. Accepted sockets inherit it.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host.address, host.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {host}: {exc.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(False)
    return sock


def bind_all(hosts: list[Host], tls: ssl.SSLContext | None) -> list[Listener]:
    """Bind every host or none: on failure the sockets already bound are closed and removed."""
    listeners: list[Listener] = []
    try:
        for host in hosts:
            listeners.append(Listener(host, bind(host), tls if host.scheme == "tcp" else None))
    except BaseException:
        close_listeners(listeners)
        raise
    return listeners


def close_listeners(listeners: list[Listener]) -> None:
    for listener in listeners:
        listener.sock.close()
        if listener.host.scheme == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(listener.host.path)


def tls_context(cert: str, key: str, ca: str, names: tuple[str, str, str]) -> ssl.SSLContext:
    """A server context for ``cert`` and its ``key``; with ``ca``, clients must present a
    certificate ``ca`` signed (and only ``ca``: the system's CAs vouch for no client).

    ``names`` are the config keys (and flags) that gave the three files: a bad file is a
    :class:`ConfigError` naming its key and path.
    """
    cert_key, key_key, ca_key = names
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        load_cert_chain(context, cert, key, f"{cert_key} {cert}", f"{key_key} {key}")
        if ca:
            load_ca(context, ca, f"{ca_key} {ca}")
            context.verify_mode = ssl.CERT_REQUIRED
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _mend_tls_transports()
    return context


class _DockerTLSProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol, mended in two ways docker's clients depend on.

    - **Handshake alerts.** asyncio closes a connection whose handshake failed without sending
      the alert OpenSSL wrote (CPython gh-98078), so a client refused for its certificate
      learns nothing of why: the docker CLI said "connection reset by peer" where, against
      dockerd, it names the alert. The alert is sent first.
    - **Half-close.** The docker CLI ends a hijacked stream's stdin (``docker run`` without
      ``-i``: at once) with ``close_notify``, Go's half-close for TLS, and reads the output
      after it. asyncio takes ``close_notify`` for the end of the connection, so the output
      was lost. When the protocol above keeps a half-closed connection open (``eof_received``
      returns true, as the daemon's attach and exec streams do), this one keeps writing until
      our side closes.
    """

    _peer_done_writing = False

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None:
            with contextlib.suppress(Exception):
                self._process_outgoing()  # type: ignore[attr-defined]
        super()._on_handshake_complete(handshake_exc)

    def _call_eof_received(self) -> None:
        # asyncio's, except that it remembers whether the protocol above keeps the connection.
        state = sslproto.AppProtocolState
        app: Any = self._app_protocol
        try:
            if self._app_state == state.STATE_CON_MADE:  # type: ignore[has-type]
                self._app_state = state.STATE_EOF
                self._peer_done_writing = bool(app.eof_received())
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Error calling eof_received()")

    def _start_shutdown(self) -> None:
        # Called on the peer's close_notify, and when our side closes (which marks the
        # transport closed first): only the latter ends a connection the peer half-closed.
        transport = self._app_transport
        if self._peer_done_writing and transport is not None and not transport._closed:
            return
        super()._start_shutdown()


def _mend_tls_transports() -> None:
    """Make the event loop's TLS transports :class:`_DockerTLSProtocol` (asyncio reads
    ``sslproto.SSLProtocol`` each time it wraps an accepted socket), where asyncio's TLS is
    the one this was written against (3.11's rewrite); elsewhere nothing changes."""
    relied_on = ("_on_handshake_complete", "_process_outgoing", "_call_eof_received")
    if hasattr(sslproto, "AppProtocolState") and all(
        hasattr(sslproto.SSLProtocol, name) for name in (*relied_on, "_start_shutdown")
    ):
        sslproto.SSLProtocol = _DockerTLSProtocol  # type: ignore[misc]


def check_tcp_exposure(host: Host, client_certificates: bool, token: bool) -> None:
    """Refuse an unauthenticated API on a non-loopback address: whoever reaches it is root.

    Only two things authenticate a client: a certificate the server verifies (mutual TLS,
    ``client_certificates``) or a bearer token. TLS without client verification only
    encrypts: any client may still connect, so it counts as no authentication at all.
    """
    if (
        host.scheme == "tcp"
        and not _is_loopback(host.address)
        and not (client_certificates or token)
    ):
        raise ConfigError(
            f"refusing to serve {host} without client authentication: anyone who can reach it "
            "could run containers as root; turn on tlsverify so that clients must present a "
            "certificate tlscacert signed (TLS with tlsverify = false only encrypts), or set "
            "token-file, or serve on a loopback address"
        )


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@attrs.frozen
class ReadTimeouts:
    """How long a client may take to send its request; a client slower than this is dropped.

    ``header``: seconds from a new connection, or from the first byte of a request on a
    kept-alive one, until the request's head is complete: a deadline, so a client trickling a
    byte at a time (slowloris) gains nothing. ``body``: seconds the server waits for the next
    bytes of a body it is reading (an idle limit, so a large upload may take as long as it
    needs while it moves). Neither applies once the request is read: an answer streamed for
    hours (events, ``logs -f``, attach) is not cut.
    """

    header: float = 60.0
    body: float = 300.0

    @classmethod
    def checked(cls, header: float, body: float, section: str) -> ReadTimeouts:
        for key, value in (("header-timeout", header), ("body-timeout", body)):
            if value <= 0:
                raise ConfigError(f"[{section}] {key} must be more than 0 seconds, not {value}")
        return cls(header, body)


class _HeadDeadline:
    """Closes a connection whose request head is not complete in time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop, transport: asyncio.BaseTransport) -> None:
        if self._timer is None:
            self._timer = loop.call_later(self.seconds, self._expired, transport)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, transport: asyncio.BaseTransport) -> None:
        self._timer = None
        if not transport.is_closing():
            # Nothing is written: a client that has not finished its request reads no answer
            # (as Go's servers do with ReadHeaderTimeout).
            _log.info(
                "client too slow sending its request head, connection closed",
                client=_peer(transport),
                header_timeout=self.seconds,
            )
            transport.close()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "unix socket"


class _HeadDeadlineMixin(asyncio.Protocol):
    """A uvicorn protocol's head deadline: armed when the connection opens and whenever a
    request head begins, stopped once the head is complete (each protocol says when)."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline = _HeadDeadline(header_timeout)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_deadline.start(self.loop, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline.stop()
        super().connection_lost(exc)


class TimedH11Protocol(_HeadDeadlineMixin, H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head (see :class:`ReadTimeouts`)."""

    def data_received(self, data: bytes) -> None:
        # IDLE: no request head complete yet (h11 leaves IDLE once it has parsed one).
        if self.conn.their_state is h11.IDLE:
            self._head_deadline.start(self.loop, self.transport)
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._head_deadline.stop()


class TimedHttpToolsProtocol(_HeadDeadlineMixin, HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request head."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_deadline.start(self.loop, self.transport)

    def on_headers_complete(self) -> None:
        self._head_deadline.stop()
        super().on_headers_complete()


def timed_protocol(protocol: Any, header_timeout: float) -> Any:
    """The protocol factory uvicorn is given: ``protocol`` ("h11", "httptools", or a subclass of
    :class:`TimedH11Protocol`) with its head deadline."""
    classes = {"h11": TimedH11Protocol, "httptools": TimedHttpToolsProtocol}
    cls = classes[protocol] if isinstance(protocol, str) else protocol
    if not issubclass(cls, TimedH11Protocol | TimedHttpToolsProtocol):
        raise TypeError(f"{cls.__name__} does not time request heads")
    return functools.partial(cls, header_timeout=header_timeout)


class BodyReadTimeoutMiddleware:
    """Answers 408 and closes the connection when a client stops sending a body the app is
    reading (the ``body`` of :class:`ReadTimeouts`).

    Only the wait for the body's next bytes is timed: once the body has ended, the app's
    further ``receive`` calls (a streamed answer listening for the client to go) wait as long
    as they like. The app sees :class:`RequestTimeout` raised from ``receive``, so what it had
    begun unwinds as on any error; if it answers with that error's status, its answer is kept
    (the daemon's ``{"message"}``), else a plain 408 is sent.
    """

    def __init__(self, app: Any, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_ended = False
        timed_out = False
        response_started = False

        async def timed_receive() -> Any:
            nonlocal body_ended, timed_out
            if body_ended:
                return await receive()
            try:
                async with asyncio.timeout(self.seconds):
                    message: dict[str, Any] = await receive()
            except TimeoutError:
                timed_out = True
                _log.info(
                    "client stopped sending its request body, connection closed",
                    path=scope.get("path"),
                    body_timeout=self.seconds,
                )
                raise RequestTimeout(
                    f"the request body did not arrive: nothing came for {self.seconds:g} s"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_ended = True
            return message

        async def closing_send(message: dict[str, Any]) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                if response_started:
                    return
                response_started = True
                if timed_out:
                    # The rest of the body may still come: this connection cannot carry
                    # another request.
                    headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                    message = dict(message, headers=[*headers, (b"connection", b"close")])
            await send(message)

        try:
            await self.app(scope, timed_receive, closing_send)
        except RequestTimeout as exc:
            if response_started:
                return
            await closing_send(
                {
                    "type": "http.response.start",
                    "status": 408,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": exc.message.encode()})


def _uvicorn_config(app: Any, tls: ssl.SSLContext | None, protocol: Any) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        lifespan="off",
        access_log=False,
        log_config=None,
        http=protocol,
        ws="none",
        timeout_keep_alive=30,
        # A stuck client must not hold up a SIGTERM for ever.
        timeout_graceful_shutdown=10,
        server_header=False,
        date_header=True,
    )
    config.load()
    config.ssl = tls
    return config


async def serve(
    listeners: list[Listener],
    app_for: Callable[[Listener], Any],
    on_startup: Callable[[], Awaitable[None]],
    on_shutdown: Callable[[], Awaitable[None]],
    protocol: Any = "h11",
    timeouts: ReadTimeouts = ReadTimeouts(),
) -> None:
    """Serve until SIGTERM or SIGINT (a second SIGINT forces the exit). ``protocol`` is "h11",
    "httptools" or a subclass of :class:`TimedH11Protocol`; clients slower than ``timeouts``
    are dropped."""
    servers = []
    groups: dict[tuple[int, int], list[Listener]] = {}
    for listener in listeners:
        groups.setdefault((id(app_for(listener)), id(listener.tls)), []).append(listener)
    factory = timed_protocol(protocol, timeouts.header)
    for group in groups.values():
        app = BodyReadTimeoutMiddleware(app_for(group[0]), timeouts.body)
        config = _uvicorn_config(app, group[0].tls, factory)
        servers.append((_Server(config), [listener.sock for listener in group]))

    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        _log.info("signal received, shutting down", signal=signal.Signals(signum).name)
        for server, _ in servers:
            if server.should_exit and signum == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    await on_startup()
    try:
        await asyncio.gather(*(server.serve(sockets=socks) for server, socks in servers))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await on_shutdown()
        close_listeners(listeners)


class RequestLogMiddleware:
    """One structured log line per request: id, method, path, status, duration."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        started = time.perf_counter()
        status = 0

        async def send_logged(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_logged)
            finally:
                _request_log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status or 500,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
