"""The embedded DNS server: dockerd's ``127.0.0.11``, for containers on user-defined networks.

One :class:`EmbeddedDNS` serves every attached container. For each one it holds a UDP and a
TCP socket bound to ``127.0.0.11:53`` *inside that container's network namespace*: the sockets
are made by a short-lived thread that joined the namespace (:func:`dockyard.linux.netns.run_in`)
and keep that namespace afterwards, while the daemon's event loop serves them. ``127.0.0.0/8``
is local on ``lo``, so no address has to be added.

Answers follow dockerd 20.10 (libnetwork's ``resolver.go``):

- ``A``: the addresses the :class:`NameSource` knows for the name on the asking container's
  networks, TTL 600, in random order (dockerd's default, a poor man's round robin);
- ``AAAA`` and ``MX`` for a known name: NOERROR with no answer (the name exists, without IPv6;
  "implicit MX", RFC 5321 5.1), so clients do not go on to ask the upstreams;
- ``PTR`` of a known address: its name;
- everything else is forwarded to the upstream resolvers, from the daemon's own namespace
  (so a host resolver on ``127.0.0.53`` works), in the protocol the client used, trying at most
  three upstreams in turn. A SERVFAIL, a REFUSED, any other error or a non-authoritative
  NXDOMAIN moves on to the next upstream; the last reply is relayed when none was better. A
  truncated reply is relayed as it is: the client then asks again over TCP, which is forwarded
  over TCP.

Where dockerd 20.10 sends nothing (no upstream answered, or too many queries in flight) we
answer SERVFAIL at once, as later dockerd releases do: the client fails now instead of after its
own timeouts. Malformed packets and replies are dropped. ``dnslib`` does the wire format; it is
imported on first use so that a daemon without user-defined networks never loads it.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import random
import socket
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import structlog

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.containers.etc_files import FALLBACK_NAMESERVERS, nameservers
from dockyard.linux import netns

if TYPE_CHECKING:
    from dnslib import DNSRecord

_log = structlog.get_logger("dockyard.networks.dns")

#: Where containers find the server, as with dockerd.
ADDRESS = "127.0.0.11"
PORT = 53
#: dockerd's TTL for the names it answers itself.
TTL = 600
#: dockerd tries at most this many upstreams per query.
MAX_UPSTREAMS = 3
#: dockerd's per-upstream I/O timeout (extIOTimeout).
DEFAULT_TIMEOUT = 4.0
#: dockerd 20.10's bound on forwarded queries in flight per container (maxConcurrent).
DEFAULT_MAX_IN_FLIGHT = 1024
#: The smallest UDP reply size every client accepts (RFC 1035); EDNS may raise it.
_UDP_DEFAULT_SIZE = 512
_TCP_MAX_SIZE = 65535
#: A client's TCP connection idle this long is closed (a slot held by nobody).
_TCP_IDLE_TIMEOUT = 10.0
#: Open TCP connections per container; more are closed as they come (descriptors are shared
#: by every container).
MAX_TCP_CONNECTIONS = 128

# DNS codes (RFC 1035 / 6895), spelled out so that dnslib need not be loaded to read them.
_QTYPE_A, _QTYPE_PTR, _QTYPE_MX, _QTYPE_AAAA = 1, 12, 15, 28
_RCODE_NOERROR, _RCODE_SERVFAIL, _RCODE_NXDOMAIN, _RCODE_NOTIMP = 0, 2, 3, 4
_OPCODE_QUERY = 0


class NameSource(Protocol):
    """What the daemon knows about its containers' names, per asking container."""

    def addresses(self, container_id: str, name: str) -> list[str] | None:
        """The IPv4 addresses of ``name`` (lower case, no trailing dot) on the networks of
        container ``container_id``; None when the daemon knows no such name there (the query
        is then forwarded upstream). An empty list is a name known without an IPv4 address."""

    def name_of(self, container_id: str, ipv4: str) -> str | None:
        """The name to answer for a PTR query of ``ipv4`` from ``container_id`` (dockerd
        answers ``<container name>.<network name>``), or None when it is not one of ours."""


@attrs.frozen
class Upstream:
    """A resolver queries are forwarded to, reached from the daemon's namespace."""

    host: str
    port: int = PORT

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """``1.2.3.4``, ``1.2.3.4:5353``, ``::1`` or ``[::1]:5353``."""
        value = text.strip()
        host, port = value, PORT
        if value.startswith("["):
            host, bracket, rest = value[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise InvalidParameter(f"invalid DNS server address: {text!r}")
            port_text = rest[1:] if rest else str(PORT)
        elif value.count(":") == 1:
            host, _, port_text = value.partition(":")
        else:
            port_text = str(PORT)
        try:
            ipaddress.ip_address(host)
            port = int(port_text)
        except ValueError:
            raise InvalidParameter(f"invalid DNS server address: {text!r}") from None
        if not 0 < port < 65536 or "%" in host:
            raise InvalidParameter(f"invalid DNS server address: {text!r}")
        return cls(host, port)

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


def upstreams_from_resolv_conf(text: str) -> list[str]:
    """The upstreams dockerd's embedded server uses for a resolv.conf: its IPv4 nameservers,
    loopback ones included (they are reached from the host's namespace), or Google's public
    resolvers when it names none. For a container started with ``--dns``, pass those
    addresses instead."""
    found = [server for server in nameservers(text) if ":" not in server]
    return found or list(FALLBACK_NAMESERVERS)


def _upstreams(values: Sequence[str | Upstream]) -> tuple[Upstream, ...]:
    return tuple(v if isinstance(v, Upstream) else Upstream.parse(v) for v in values)


@attrs.define(eq=False)
class _Attachment:
    """One container's sockets and the work in progress on them."""

    container_id: str
    upstreams: tuple[Upstream, ...]
    #: The container's resolv.conf sets ndots itself (see ``EmbeddedDNS.attach``).
    user_ndots: bool
    udp: asyncio.DatagramTransport | None = None
    udp_closed: asyncio.Future[None] | None = None
    #: The listening socket, watched by the event loop (``EmbeddedDNS._accept``).
    tcp: socket.socket | None = None
    tasks: set[asyncio.Task[Any]] = attrs.Factory(set)
    connections: set[asyncio.StreamWriter] = attrs.Factory(set)
    in_flight: int = 0
    closed: bool = False
    timers: list[asyncio.TimerHandle] = attrs.Factory(list)


class _UDPService(asyncio.DatagramProtocol):
    def __init__(self, server: EmbeddedDNS, attachment: _Attachment) -> None:
        self.server = server
        self.attachment = attachment

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._on_datagram(self.attachment, data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for replies to clients that went away: nothing to do.
        _log.debug("dns.udp_error", container=self.attachment.container_id, error=str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.attachment.udp_closed is not None and not self.attachment.udp_closed.done():
            self.attachment.udp_closed.set_result(None)


def _open_sockets() -> tuple[socket.socket, socket.socket]:
    """The UDP and listening TCP sockets on 127.0.0.11:53 of the calling thread's namespace."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((ADDRESS, PORT))
        # A restarted daemon binds again while the old connections are in TIME_WAIT.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((ADDRESS, PORT))
        tcp.listen(128)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    udp.setblocking(False)
    tcp.setblocking(False)
    return udp, tcp


@attrs.define(eq=False)
class EmbeddedDNS:
    """The daemon's DNS server for its containers; see the module's text.

    ``upstreams`` are the default resolvers (``upstreams_from_resolv_conf`` of the host's
    resolv.conf); ``timeout`` bounds each exchange with one upstream; ``max_in_flight`` bounds
    the forwarded queries of one container (more are answered SERVFAIL at once).
    """

    names: NameSource
    upstreams: tuple[Upstream, ...] = attrs.field(converter=_upstreams, default=())
    timeout: float = DEFAULT_TIMEOUT
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    _attached: dict[str, _Attachment] = attrs.field(init=False, factory=dict)
    _lock: asyncio.Lock = attrs.field(init=False, factory=asyncio.Lock)

    async def attach(
        self,
        container_id: str,
        netns_path: str | os.PathLike[str],
        upstreams: Sequence[str | Upstream] | None = None,
        user_ndots: bool = False,
    ) -> None:
        """Serve the container whose network namespace is ``netns_path``.

        ``upstreams``: the container's own resolvers (``--dns``), else the server's.
        ``user_ndots``: the container's resolv.conf sets ``ndots`` itself; then, as dockerd
        does, a single-label A/AAAA name the daemon does not know is answered empty instead
        of forwarded, so the resolver goes on with its search domains.
        Attaching an attached container replaces its sockets. Raises OSError when the
        sockets cannot be made (no such namespace, the port taken).
        """
        chosen = self.upstreams if upstreams is None else _upstreams(upstreams)
        async with self._lock:
            await self._detach(container_id)
            udp_sock, tcp_sock = await asyncio.to_thread(netns.run_in, netns_path, _open_sockets)
            loop = asyncio.get_running_loop()
            attachment = _Attachment(container_id, chosen, user_ndots, tcp=tcp_sock)
            try:
                attachment.udp_closed = loop.create_future()
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UDPService(self, attachment), sock=udp_sock
                )
                attachment.udp = udp
            except BaseException:
                udp_sock.close()
                tcp_sock.close()
                raise
            # Accepted in a reader callback, not with asyncio.start_server or sock_accept: a
            # connection they accept while being closed or cancelled is left open, unanswered,
            # until garbage collection. A callback takes each one before anything else runs.
            loop.add_reader(tcp_sock.fileno(), self._accept, attachment, tcp_sock)
            self._attached[container_id] = attachment
        _log.debug("dns.attached", container=container_id)

    async def detach(self, container_id: str) -> None:
        """Stop serving ``container_id``: its sockets are closed when this returns. A container
        not attached is fine."""
        async with self._lock:
            await self._detach(container_id)

    async def close(self) -> None:
        """Detach every container."""
        async with self._lock:
            for container_id in list(self._attached):
                await self._detach(container_id)

    def attached(self) -> list[str]:
        """The containers served now."""
        return list(self._attached)

    async def _detach(self, container_id: str) -> None:
        attachment = self._attached.pop(container_id, None)
        if attachment is not None:
            await self._close(attachment)
            _log.debug("dns.detached", container=container_id)

    async def _close(self, attachment: _Attachment) -> None:
        attachment.closed = True
        writers = list(attachment.connections)
        if attachment.udp is not None:
            attachment.udp.close()  # no more reading; the socket closes on the loop's next turn
        for timer in attachment.timers:
            timer.cancel()
        if attachment.tcp is not None:
            asyncio.get_running_loop().remove_reader(attachment.tcp.fileno())
        # Then the work in progress: nothing new starts after.
        for task in list(attachment.tasks):
            task.cancel()
        await asyncio.gather(*attachment.tasks, return_exceptions=True)
        if attachment.tcp is not None:
            attachment.tcp.close()  # connections still queued on it are reset
        await asyncio.gather(*(writer.wait_closed() for writer in writers), return_exceptions=True)
        if attachment.udp is not None and attachment.udp_closed is not None:
            await attachment.udp_closed

    # -- serving ---------------------------------------------------------------------------

    def _on_datagram(self, attachment: _Attachment, data: bytes, addr: tuple[str, int]) -> None:
        if attachment.closed:
            return

        async def answer() -> None:
            reply = await self._respond(attachment, data, over_tcp=False)
            udp = attachment.udp
            if reply is not None and udp is not None and not udp.is_closing():
                udp.sendto(reply, addr)

        self._track(attachment, answer())

    def _track(self, attachment: _Attachment, work: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        attachment.tasks.add(task)
        task.add_done_callback(attachment.tasks.discard)
        return task

    def _accept(self, attachment: _Attachment, listener: socket.socket) -> None:
        """Take the connections waiting on ``listener`` (the loop calls this when it is
        readable)."""
        for _ in range(MAX_TCP_CONNECTIONS):
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: try again in a while
                _log.warning("dns.accept_failed", container=attachment.container_id, error=str(exc))
                self._pause_accepting(attachment, listener)
                return
            if len(attachment.connections) >= MAX_TCP_CONNECTIONS:
                connection.close()
                continue
            connection.setblocking(False)
            task = self._track(attachment, self._serve_tcp(attachment, connection))
            # Also when the task is cancelled before it starts (a detach right now).
            task.add_done_callback(functools.partial(_close_socket, connection))

    def _pause_accepting(self, attachment: _Attachment, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(listener.fileno())

        def resume() -> None:
            if not attachment.closed:
                loop.add_reader(listener.fileno(), self._accept, attachment, listener)

        attachment.timers.append(loop.call_later(0.5, resume))

    async def _serve_tcp(self, attachment: _Attachment, connection: socket.socket) -> None:
        """Queries framed by a two-byte length (RFC 1035 4.2.2), answered one after another."""
        reader, writer = await asyncio.open_connection(sock=connection)
        attachment.connections.add(writer)  # counted for MAX_TCP_CONNECTIONS
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), _TCP_IDLE_TIMEOUT)
                (size,) = struct.unpack("!H", header)
                data = await asyncio.wait_for(reader.readexactly(size), _TCP_IDLE_TIMEOUT)
                reply = await self._respond(attachment, data, over_tcp=True)
                if reply is None:
                    return  # malformed: the stream cannot be trusted to stay framed
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            return
        finally:
            attachment.connections.discard(writer)
            writer.close()

    async def _respond(self, attachment: _Attachment, data: bytes, over_tcp: bool) -> bytes | None:
        """The reply to one query packet; None to send nothing (not a query we can read)."""
        query = _parse_query(data)
        if query is None:
            return None
        if query.header.opcode != _OPCODE_QUERY:
            return _error(query, _RCODE_NOTIMP)
        try:
            local = self._answer_locally(attachment, query)
        except Exception:  # the daemon's records failed: say so, and keep serving
            _log.exception("dns.lookup_failed", container=attachment.container_id)
            return _error(query, _RCODE_SERVFAIL)
        if local is not None:
            return _fit(local, _reply_limit(query, over_tcp), over_tcp)
        forwarded = await self._forward(attachment, data, query, over_tcp)
        return forwarded if forwarded is not None else _error(query, _RCODE_SERVFAIL)

    def _answer_locally(self, attachment: _Attachment, query: DNSRecord) -> DNSRecord | None:
        from dnslib import PTR, QTYPE, RR, A

        question = query.q
        name = str(question.qname).rstrip(".").lower()
        qtype = question.qtype
        container = attachment.container_id
        if qtype in (_QTYPE_A, _QTYPE_AAAA, _QTYPE_MX):
            addresses = self.names.addresses(container, name)
            if addresses is None:
                if qtype != _QTYPE_MX and attachment.user_ndots and "." not in name:
                    return _reply(query)
                return None
            reply = _reply(query)
            if qtype == _QTYPE_A:
                shuffled = list(addresses)
                random.shuffle(shuffled)
                for address in shuffled:
                    reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=TTL))
            return reply
        if qtype == _QTYPE_PTR:
            reversed_address = _reverse_ipv4(name)
            if reversed_address is None:
                return None
            target = self.names.name_of(container, reversed_address)
            if not target:
                return None
            reply = _reply(query)
            reply.add_answer(RR(question.qname, QTYPE.PTR, rdata=PTR(f"{target}."), ttl=TTL))
            return reply
        return None

    async def _forward(
        self, attachment: _Attachment, data: bytes, query: DNSRecord, over_tcp: bool
    ) -> bytes | None:
        """The upstreams' reply, relayed byte for byte; None when none replied."""
        if attachment.in_flight >= self.max_in_flight:
            _log.warning(
                "dns.too_many_queries", container=attachment.container_id, limit=self.max_in_flight
            )
            return None
        attachment.in_flight += 1
        try:
            last = None
            for upstream in attachment.upstreams[:MAX_UPSTREAMS]:
                try:
                    raw = await asyncio.wait_for(
                        _exchange(upstream, data, over_tcp), timeout=self.timeout
                    )
                except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                    _log.debug("dns.upstream_failed", upstream=upstream.host, error=repr(exc))
                    continue
                reply = _parse_reply(raw, query)
                if reply is None:
                    continue
                last = raw
                rcode = reply.header.rcode
                if rcode == _RCODE_NOERROR or (rcode == _RCODE_NXDOMAIN and reply.header.aa):
                    return raw
            return last
        finally:
            attachment.in_flight -= 1


# -- the wire format -------------------------------------------------------------------------


def _parse_query(data: bytes) -> DNSRecord | None:
    from dnslib import DNSRecord

    try:
        query = DNSRecord.parse(data)
    except Exception:  # dnslib raises several kinds on garbage; all mean "not a query"
        return None
    if query.header.qr or len(query.questions) != 1:
        return None  # a reply, or no question: dockerd sends nothing either
    return query


def _parse_reply(raw: bytes, query: DNSRecord) -> DNSRecord | None:
    from dnslib import DNSRecord

    try:
        reply = DNSRecord.parse(raw)
    except Exception:
        return None
    if not reply.header.qr or reply.header.id != query.header.id:
        return None
    return reply


def _reply(query: DNSRecord) -> DNSRecord:
    """A NOERROR reply to ``query`` with no answer yet: recursion available, not
    authoritative, as dockerd's."""
    return query.reply(ra=1, aa=0)


def _error(query: DNSRecord, rcode: int) -> bytes:
    reply = _reply(query)
    reply.header.rcode = rcode
    return bytes(reply.pack())


def _reply_limit(query: DNSRecord, over_tcp: bool) -> int:
    if over_tcp:
        return _TCP_MAX_SIZE
    from dnslib import QTYPE

    # An EDNS OPT record's class is the client's UDP payload size (RFC 6891 6.1.2).
    sizes = [int(rr.rclass) for rr in query.ar if rr.rtype == QTYPE.OPT]
    return max([_UDP_DEFAULT_SIZE, *sizes])


def _fit(reply: DNSRecord, limit: int, over_tcp: bool) -> bytes:
    """``reply`` packed, dropping answers from the end until it fits, as dockerd does; over
    UDP the TC flag tells the client to ask again over TCP."""
    packed = bytes(reply.pack())
    if len(packed) <= limit:
        return packed
    if not over_tcp:
        reply.header.tc = 1
    while len(packed) > limit and reply.rr:
        reply.rr.pop()
        packed = bytes(reply.pack())
    return packed


def _close_socket(sock: socket.socket, _task: asyncio.Task[Any]) -> None:
    sock.close()


def _reverse_ipv4(name: str) -> str | None:
    """``4.3.2.1.in-addr.arpa`` -> ``1.2.3.4``; None for any other name."""
    prefix, dot, suffix = name.partition(".in-addr.arpa")
    if not dot or suffix:
        return None
    labels = prefix.split(".")
    if len(labels) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(labels))))
    except ValueError:
        return None


async def _exchange(upstream: Upstream, data: bytes, over_tcp: bool) -> bytes:
    """Send ``data`` to ``upstream`` and return its reply (bounded by the caller's timeout)."""
    if over_tcp:
        reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(size)
        finally:
            writer.close()
    loop = asyncio.get_running_loop()
    with socket.socket(upstream.family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        # Connected: the kernel passes on datagrams from this upstream only.
        await loop.sock_connect(sock, (upstream.host, upstream.port))
        await loop.sock_sendall(sock, data)
        while True:
            raw = await loop.sock_recv(sock, 65535)
            if raw[:2] == data[:2]:  # the query's id: a late reply to no one else's query
                return raw
