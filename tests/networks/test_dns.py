"""The embedded DNS server (dockyard.daemon.networks.dns) in real network namespaces.

Each test makes namespace files in its tmp dir, attaches them, and asks 127.0.0.11:53 from
sockets made inside the namespace, over UDP and TCP, as a container's resolver does. Forwarded
queries go to a fake upstream this test runs on 127.0.0.1 in the host's namespace (never the
internet), which also proves that forwarding happens from the daemon's namespace: the
container's has only its own lo.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from dnslib import EDNS0, PTR, QTYPE, RCODE, RR, TXT, A, DNSRecord

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.networks import dns as dns_module
from dockyard.daemon.networks.dns import EmbeddedDNS, Upstream, upstreams_from_resolv_conf
from dockyard.linux import netns
from tests.conftest import free_port

SERVER = ("127.0.0.11", 53)


# -- the daemon's side: names per container -------------------------------------------------


@attrs.define
class Names:
    """Names per asking container: {container id: {name: [addresses]}}."""

    by_container: dict[str, dict[str, list[str]]] = attrs.Factory(dict)
    asked: list[tuple[str, str]] = attrs.Factory(list)
    failing: bool = False

    def addresses(self, container_id: str, name: str) -> list[str] | None:
        self.asked.append((container_id, name))
        if self.failing:
            raise RuntimeError("the records are gone")
        return self.by_container.get(container_id, {}).get(name)

    def name_of(self, container_id: str, ipv4: str) -> str | None:
        for name, addresses in self.by_container.get(container_id, {}).items():
            if ipv4 in addresses:
                return f"{name}.net1"
        return None


# -- a fake upstream resolver on 127.0.0.1 -------------------------------------------------

Behaviour = Callable[[DNSRecord, str], Awaitable[bytes | None]]


async def answers_everything(query: DNSRecord, protocol: str) -> bytes | None:
    reply = query.reply()
    if query.q.qtype == QTYPE.A:
        reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("192.0.2.1"), ttl=30))
    elif query.q.qtype == QTYPE.PTR:
        reply.add_answer(RR(query.q.qname, QTYPE.PTR, rdata=PTR("upstream.example."), ttl=30))
    return reply.pack()


@attrs.define
class FakeUpstream:
    behaviour: Behaviour = answers_everything
    port: int = 0
    seen: list[tuple[str, str]] = attrs.Factory(list)  # (protocol, name)
    _replying: set[asyncio.Task[None]] = attrs.Factory(set)
    _udp: asyncio.DatagramTransport | None = None
    _tcp: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _reply(self, data: bytes, protocol: str) -> bytes | None:
        query = DNSRecord.parse(data)
        self.seen.append((protocol, str(query.q.qname).rstrip(".")))
        return await self.behaviour(query, protocol)

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        upstream = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport):  # type: ignore[no-untyped-def]
                self.transport = transport

            def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
                async def answer() -> None:
                    reply = await upstream._reply(data, "udp")
                    if reply is not None:
                        self.transport.sendto(reply, addr)

                task = loop.create_task(answer())
                upstream._replying.add(task)
                task.add_done_callback(upstream._replying.discard)

        async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._replying.add(asyncio.current_task())  # type: ignore[arg-type]
            with contextlib.suppress(
                asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError
            ):
                while True:
                    (size,) = struct.unpack("!H", await reader.readexactly(2))
                    reply = await self._reply(await reader.readexactly(size), "tcp")
                    if reply is None:
                        break
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
            writer.close()

        for _ in range(20):
            self.port = free_port()
            try:
                self._udp, _ = await loop.create_datagram_endpoint(
                    Udp, local_addr=("127.0.0.1", self.port)
                )
            except OSError:
                continue
            self._tcp = await asyncio.start_server(serve_tcp, "127.0.0.1", self.port)
            return self
        raise RuntimeError("no free port for the fake upstream")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._replying):
            task.cancel()
        await asyncio.gather(*self._replying, return_exceptions=True)


# -- a container's side: sockets made inside its namespace -----------------------------------


@pytest.fixture
def namespaces(tmp_path) -> Iterator[Callable[[str], Path]]:
    made: list[Path] = []

    def make(name: str) -> Path:
        made.append(netns.create(tmp_path / name))
        return made[-1]

    yield make
    for path in made:
        netns.remove(path)
    for path in made:
        assert str(path) not in Path("/proc/self/mountinfo").read_text()


def inside(path: Path, kind: socket.SocketKind) -> socket.socket:
    return netns.run_in(path, lambda: socket.socket(socket.AF_INET, kind))


def question(name: str, qtype: str = "A") -> DNSRecord:
    return DNSRecord.question(name, qtype)


def _udp_exchange(path: Path, packet: bytes, timeout: float) -> bytes:
    with inside(path, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, SERVER)
        return sock.recv(65535)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed by the server")
        data += chunk
    return data


def _tcp_exchange(path: Path, packet: bytes, timeout: float) -> bytes:
    with inside(path, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(SERVER)
        sock.sendall(struct.pack("!H", len(packet)) + packet)
        (size,) = struct.unpack("!H", _recv_exactly(sock, 2))
        return _recv_exactly(sock, size)


async def ask(path: Path, query: DNSRecord, tcp: bool = False, timeout: float = 5) -> DNSRecord:
    exchange = _tcp_exchange if tcp else _udp_exchange
    reply = DNSRecord.parse(await asyncio.to_thread(exchange, path, query.pack(), timeout))
    assert reply.header.id == query.header.id
    assert reply.header.qr == 1
    return reply


def addresses_in(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


@contextlib.asynccontextmanager
async def fake_upstreams(*behaviours: Behaviour) -> AsyncIterator[list[FakeUpstream]]:
    started: list[FakeUpstream] = []
    try:
        for behaviour in behaviours:
            started.append(await FakeUpstream(behaviour).start())
        yield started
    finally:
        for upstream in started:
            await upstream.stop()


@contextlib.asynccontextmanager
async def serving(
    names: Names,
    containers: dict[str, Path],
    upstreams: Sequence[FakeUpstream | str] = (),
    **options: Any,
) -> AsyncIterator[EmbeddedDNS]:
    """A server with ``containers`` ({id: namespace}) attached, closed at the end."""
    addresses = [u.address if isinstance(u, FakeUpstream) else u for u in upstreams]
    dns = EmbeddedDNS(names, upstreams=addresses, **options)
    try:
        for container_id, path in containers.items():
            await dns.attach(container_id, path)
        yield dns
    finally:
        await dns.close()


WEB = {"c1": {"web": ["10.1.0.2"]}}


# -- names the daemon knows ----------------------------------------------------------------


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_containers_names_answered_from_its_own_networks(namespaces, tcp):
    one, two = namespaces("one"), namespaces("two")
    names = Names({"c1": {"web": ["10.1.0.2", "10.2.0.2"], "db": ["10.1.0.3"]}, "c2": {}})

    async def scenario() -> None:
        async with serving(names, {"c1": one, "c2": two}):
            reply = await ask(one, question("WEB."), tcp)
            assert reply.header.rcode == RCODE.NOERROR
            assert reply.header.ra == 1 and reply.header.aa == 0
            assert addresses_in(reply) == ["10.1.0.2", "10.2.0.2"]
            assert {rr.ttl for rr in reply.rr} == {600}
            assert str(reply.rr[0].rname) == "WEB."  # the name as asked
            assert addresses_in(await ask(one, question("db"), tcp)) == ["10.1.0.3"]
            # The other container has no such name on its networks: not answered from ours,
            # and with no upstream, SERVFAIL.
            other = await ask(two, question("web"), tcp)
            assert other.header.rcode == RCODE.SERVFAIL and not other.rr
            assert ("c1", "web") in names.asked and ("c2", "web") in names.asked

    run(scenario)


def test_aaaa_and_mx_of_a_known_name_are_empty_answers_not_forwarded(namespaces):
    path = namespaces("ns")

    async def scenario() -> None:
        async with (
            fake_upstreams(answers_everything) as (upstream,),
            serving(Names(WEB), {"c1": path}, [upstream]),
        ):
            for qtype in ("AAAA", "MX"):
                reply = await ask(path, question("web", qtype))
                assert reply.header.rcode == RCODE.NOERROR and not reply.rr
            assert upstream.seen == []

    run(scenario)


def test_ptr_of_a_known_address_answered_and_others_forwarded(namespaces):
    path = namespaces("ns")

    async def scenario() -> None:
        async with (
            fake_upstreams(answers_everything) as (upstream,),
            serving(Names(WEB), {"c1": path}, [upstream]),
        ):
            reply = await ask(path, question("2.0.1.10.in-addr.arpa", "PTR"))
            assert [str(rr.rdata) for rr in reply.rr] == ["web.net1."]
            assert reply.rr[0].ttl == 600
            assert upstream.seen == []
            other = await ask(path, question("9.9.9.9.in-addr.arpa", "PTR"), tcp=True)
            assert [str(rr.rdata) for rr in other.rr] == ["upstream.example."]
            assert upstream.seen == [("tcp", "9.9.9.9.in-addr.arpa")]

    run(scenario)


def test_user_ndots_answers_unknown_single_labels_empty_instead_of_forwarding(namespaces):
    path = namespaces("ns")

    async def scenario() -> None:
        async with (
            fake_upstreams(answers_everything) as (upstream,),
            serving(Names(), {}, [upstream]) as dns,
        ):
            await dns.attach("c1", path, user_ndots=True)
            reply = await ask(path, question("printer"))
            assert reply.header.rcode == RCODE.NOERROR and not reply.rr
            assert upstream.seen == []
            assert addresses_in(await ask(path, question("printer.example"))) == ["192.0.2.1"]

    run(scenario)


def test_a_failing_name_source_is_a_servfail_and_serving_goes_on(namespaces):
    path = namespaces("ns")
    names = Names(WEB, failing=True)

    async def scenario() -> None:
        async with serving(names, {"c1": path}):
            assert (await ask(path, question("web"))).header.rcode == RCODE.SERVFAIL
            names.failing = False
            assert addresses_in(await ask(path, question("web"))) == ["10.1.0.2"]

    run(scenario)


def test_too_many_addresses_for_udp_are_truncated_and_complete_over_tcp(namespaces):
    path = namespaces("ns")
    many = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(100)]

    async def scenario() -> None:
        async with serving(Names({"c1": {"svc": many}}), {"c1": path}):
            short = await ask(path, question("svc"))
            assert short.header.tc == 1
            assert 0 < len(short.rr) < 100 and len(short.pack()) <= 512
            # EDNS: the client's larger buffer holds them all.
            edns = question("svc")
            edns.add_ar(EDNS0(udp_len=4096))
            assert len((await ask(path, edns)).rr) == 100
            full = await ask(path, question("svc"), tcp=True)
            assert full.header.tc == 0 and sorted(addresses_in(full)) == sorted(many)

    run(scenario)


# -- forwarding ------------------------------------------------------------------------------


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_unknown_names_forwarded_from_the_hosts_namespace_in_the_clients_protocol(namespaces, tcp):
    path = namespaces("ns")

    async def scenario() -> None:
        async with (
            fake_upstreams(answers_everything) as (upstream,),
            serving(Names(WEB), {"c1": path}, [upstream]),
        ):
            reply = await ask(path, question("www.example.org"), tcp)
            assert addresses_in(reply) == ["192.0.2.1"]
            assert [rr.ttl for rr in reply.rr] == [30]  # the upstream's reply, relayed
            other = await ask(path, question("www.example.org", "TXT"), tcp)
            assert other.header.rcode == RCODE.NOERROR
            protocol = "tcp" if tcp else "udp"
            assert upstream.seen == [(protocol, "www.example.org")] * 2

    run(scenario)


def test_each_container_may_have_its_own_upstreams(namespaces):
    one, two = namespaces("one"), namespaces("two")

    async def scenario() -> None:
        async with (
            fake_upstreams(answers_everything, answers_everything) as (default, own),
            serving(Names(), {"c1": one}, [default]) as dns,
        ):
            await dns.attach("c2", two, upstreams=[own.address])
            await ask(one, question("a.example"))
            await ask(two, question("b.example"))
            assert default.seen == [("udp", "a.example")]
            assert own.seen == [("udp", "b.example")]

    run(scenario)


def rcode_reply(rcode: int, authoritative: bool = False) -> Behaviour:
    async def behaviour(query: DNSRecord, protocol: str) -> bytes | None:
        reply = query.reply(aa=int(authoritative))
        reply.header.rcode = rcode
        return reply.pack()

    return behaviour


async def never_answers(query: DNSRecord, protocol: str) -> bytes | None:
    await asyncio.sleep(30)
    return None


@pytest.mark.parametrize(
    ("first", "answered_by_second"),
    [
        (rcode_reply(RCODE.SERVFAIL), True),
        (rcode_reply(RCODE.REFUSED), True),
        (rcode_reply(RCODE.NXDOMAIN), True),  # not authoritative: ask the next
        (never_answers, True),
        (rcode_reply(RCODE.NXDOMAIN, authoritative=True), False),  # RFC 8020: final
    ],
    ids=["servfail", "refused", "nxdomain", "timeout", "authoritative-nxdomain"],
)
def test_failing_upstreams_move_on_to_the_next_as_dockerd(namespaces, first, answered_by_second):
    path = namespaces("ns")

    async def scenario() -> None:
        async with (
            fake_upstreams(first, answers_everything) as (bad, good),
            serving(Names(), {"c1": path}, [bad, good], timeout=0.5),
        ):
            reply = await ask(path, question("x.example"))
            assert bad.seen == [("udp", "x.example")]
            if answered_by_second:
                assert addresses_in(reply) == ["192.0.2.1"]
                assert good.seen == [("udp", "x.example")]
            else:
                assert reply.header.rcode == RCODE.NXDOMAIN and reply.header.aa == 1
                assert good.seen == []

    run(scenario)


def test_the_last_upstreams_error_is_relayed_when_none_did_better(namespaces):
    path = namespaces("ns")

    async def scenario() -> None:
        failing = rcode_reply(RCODE.SERVFAIL), rcode_reply(RCODE.NXDOMAIN)
        async with (
            fake_upstreams(*failing) as upstreams,
            serving(Names(), {"c1": path}, upstreams),
        ):
            assert (await ask(path, question("x.example"))).header.rcode == RCODE.NXDOMAIN

    run(scenario)


def test_at_most_three_upstreams_are_tried(namespaces):
    path = namespaces("ns")

    async def scenario() -> None:
        async with (
            fake_upstreams(*[rcode_reply(RCODE.SERVFAIL)] * 4) as upstreams,
            serving(Names(), {"c1": path}, upstreams),
        ):
            await ask(path, question("x.example"))
            assert [len(u.seen) for u in upstreams] == [1, 1, 1, 0]

    run(scenario)


def test_no_upstream_reachable_is_a_servfail_within_the_timeout(namespaces):
    path = namespaces("ns")

    async def scenario() -> None:
        closed = f"127.0.0.1:{free_port()}"  # nothing listens: ICMP unreachable / refused
        async with (
            fake_upstreams(never_answers) as (silent,),
            serving(Names(), {"c1": path}, [closed, silent], timeout=0.5),
        ):
            for tcp in (False, True):
                started = time.monotonic()
                reply = await ask(path, question("x.example"), tcp)
                assert reply.header.rcode == RCODE.SERVFAIL and not reply.rr
                assert time.monotonic() - started < 2.5

    run(scenario)


async def big_txt(query: DNSRecord, protocol: str) -> bytes | None:
    reply = query.reply()
    for index in range(20):
        reply.add_answer(RR(query.q.qname, QTYPE.TXT, rdata=TXT("x" * 200 + str(index))))
    return (reply.truncate() if protocol == "udp" else reply).pack()


def test_a_truncated_upstream_reply_is_relayed_and_the_tcp_retry_forwarded(namespaces):
    path = namespaces("ns")

    async def scenario() -> None:
        async with (
            fake_upstreams(big_txt) as (upstream,),
            serving(Names(), {"c1": path}, [upstream]),
        ):
            short = await ask(path, question("big.example", "TXT"))
            assert short.header.tc == 1
            full = await ask(path, question("big.example", "TXT"), tcp=True)
            assert len(full.rr) == 20
            assert upstream.seen == [("udp", "big.example"), ("tcp", "big.example")]

    run(scenario)


async def wrong_replies(query: DNSRecord, protocol: str) -> bytes | None:
    if str(query.q.qname).startswith("garbage"):
        return b"\x00\x01junk"
    reply = query.reply()
    reply.header.id = (query.header.id + 1) % 65536
    reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("6.6.6.6")))
    return reply.pack()


def test_replies_with_another_id_or_garbage_are_not_relayed(namespaces):
    path = namespaces("ns")

    async def scenario() -> None:
        async with (
            fake_upstreams(wrong_replies) as upstreams,
            serving(Names(), {"c1": path}, upstreams, timeout=0.5),
        ):
            for name, tcp in (
                ("x.example", False),
                ("garbage.example", False),
                ("x.example", True),
            ):
                reply = await ask(path, question(name), tcp)
                assert reply.header.rcode == RCODE.SERVFAIL and not reply.rr

    run(scenario)


async def slow(query: DNSRecord, protocol: str) -> bytes | None:
    await asyncio.sleep(1)
    return await answers_everything(query, protocol)


def test_forwarded_queries_in_flight_are_bounded_per_container(namespaces):
    one, two = namespaces("one"), namespaces("two")

    async def scenario() -> None:
        async with (
            fake_upstreams(slow) as (upstream,),
            serving(Names(WEB), {"c1": one, "c2": two}, [upstream], max_in_flight=2),
        ):
            started = time.monotonic()
            replies = await asyncio.gather(
                *(ask(one, question(f"n{i}.example")) for i in range(5)),
                ask(one, question("web")),  # local names never wait for the upstreams
                ask(two, question("other.example")),  # another container has its own bound
            )
            forwarded, local, other = replies[:5], replies[5], replies[6]
            codes = sorted(reply.header.rcode for reply in forwarded)
            assert codes == [RCODE.NOERROR] * 2 + [RCODE.SERVFAIL] * 3
            assert addresses_in(local) == ["10.1.0.2"]
            assert addresses_in(other) == ["192.0.2.1"]
            assert len(upstream.seen) == 3
            assert time.monotonic() - started < 3

    run(scenario)


def test_many_concurrent_clients_all_answered(namespaces):
    path = namespaces("ns")

    async def scenario() -> None:
        async with (
            fake_upstreams(answers_everything) as upstreams,
            serving(Names(WEB), {"c1": path}, upstreams),
        ):
            queries = [ask(path, question("web"), tcp=i % 2 == 1) for i in range(60)]
            queries += [ask(path, question(f"n{i}.example"), tcp=i % 2 == 1) for i in range(60)]
            replies = await asyncio.gather(*queries)
            assert [addresses_in(r) for r in replies] == [["10.1.0.2"]] * 60 + [["192.0.2.1"]] * 60

    run(scenario)


# -- bad input -------------------------------------------------------------------------------


def test_malformed_packets_are_dropped_and_serving_goes_on(namespaces):
    path = namespaces("ns")
    a_reply = question("web").reply().pack()
    no_question = DNSRecord().pack()
    bad = [b"", b"\x00", b"\xff" * 11, b"\x12\x34" + b"\xff" * 40, a_reply, no_question]

    async def scenario() -> None:
        async with serving(Names(WEB), {"c1": path}):
            for packet in bad:
                with pytest.raises(TimeoutError):
                    await asyncio.to_thread(_udp_exchange, path, packet, 0.3)
            # Over TCP the stream's framing is lost: the connection is closed.
            for packet in bad[1:]:
                with pytest.raises(ConnectionError):
                    await asyncio.to_thread(_tcp_exchange, path, packet, 2)
            # A length prefix promising more than is sent, then hanging up.
            with inside(path, socket.SOCK_STREAM) as sock:
                await asyncio.to_thread(sock.connect, SERVER)
                sock.sendall(b"\x01\x00abc")
            assert addresses_in(await ask(path, question("web"))) == ["10.1.0.2"]
            assert addresses_in(await ask(path, question("web"), tcp=True)) == ["10.1.0.2"]

    run(scenario)


def test_other_opcodes_are_not_implemented(namespaces):
    path = namespaces("ns")

    async def scenario() -> None:
        async with serving(Names(), {"c1": path}):
            notify = question("web")
            notify.header.opcode = 4
            assert (await ask(path, notify)).header.rcode == RCODE.NOTIMP

    run(scenario)


# -- attaching and detaching -----------------------------------------------------------------


def port_53_free(path: Path) -> bool:
    """Whether 127.0.0.11:53 can be bound in the namespace, over UDP and TCP."""

    def try_bind() -> bool:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                if kind == socket.SOCK_STREAM:
                    # As the server's: closed connections linger in TIME_WAIT on the port.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(SERVER)
                    if kind == socket.SOCK_STREAM:
                        sock.listen()
                except OSError:
                    return False
        return True

    return netns.run_in(path, try_bind)


def test_detach_closes_the_sockets_and_an_unknown_container_is_fine(namespaces):
    path = namespaces("ns")

    async def scenario() -> None:
        dns = EmbeddedDNS(Names({"c1": {"web": ["10.1.0.2"]}}), upstreams=[])
        await dns.detach("never-attached")
        await dns.attach("c1", path)
        assert not port_53_free(path)
        # An open TCP connection from the container is closed too.
        client = inside(path, socket.SOCK_STREAM)
        with client:
            await asyncio.to_thread(client.connect, SERVER)
            await dns.detach("c1")
            assert dns.attached() == []
            assert port_53_free(path)
            client.settimeout(2)
            assert await asyncio.to_thread(client.recv, 10) == b""
        with pytest.raises(ConnectionRefusedError):
            await asyncio.to_thread(_tcp_exchange, path, question("web").pack(), 2)
        await dns.detach("c1")
        await dns.close()

    run(scenario)


def test_attaching_twice_replaces_and_close_detaches_all(namespaces):
    one, two = namespaces("one"), namespaces("two")

    async def scenario() -> None:
        dns = EmbeddedDNS(Names({"c1": {"web": ["10.1.0.2"]}}), upstreams=[])
        await dns.attach("c1", one)
        await dns.attach("c1", one)  # the same namespace: its port is free again first
        assert addresses_in(await ask(one, question("web"))) == ["10.1.0.2"]
        await dns.attach("c1", two)  # moved: the old namespace is left
        assert port_53_free(one) and not port_53_free(two)
        assert addresses_in(await ask(two, question("web"))) == ["10.1.0.2"]
        await dns.attach("c2", one)
        assert sorted(dns.attached()) == ["c1", "c2"]
        await dns.close()
        assert dns.attached() == []
        assert port_53_free(one) and port_53_free(two)

    run(scenario)


def test_a_restarted_daemon_attaches_again(namespaces):
    path = namespaces("ns")
    names = Names({"c1": {"web": ["10.1.0.2"]}})

    async def first_daemon() -> None:
        dns = EmbeddedDNS(names, upstreams=[])
        await dns.attach("c1", path)
        # A TCP client leaves the connection in TIME_WAIT on the server's side.
        assert addresses_in(await ask(path, question("web"), tcp=True)) == ["10.1.0.2"]
        await dns.close()

    async def second_daemon() -> None:
        dns = EmbeddedDNS(names, upstreams=[])
        await dns.attach("c1", path)
        try:
            assert addresses_in(await ask(path, question("web"), tcp=True)) == ["10.1.0.2"]
        finally:
            await dns.close()

    run(first_daemon)
    run(second_daemon)  # another event loop, as after a restart


def test_attach_fails_cleanly_for_a_missing_namespace_or_a_taken_port(namespaces, tmp_path):
    path = namespaces("ns")

    async def scenario() -> None:
        dns = EmbeddedDNS(Names(), upstreams=[])
        with pytest.raises(OSError):
            await dns.attach("c1", tmp_path / "missing")
        taken = inside(path, socket.SOCK_DGRAM)
        with taken:
            taken.bind(SERVER)
            with pytest.raises(OSError):
                await dns.attach("c1", path)
        assert dns.attached() == []
        assert port_53_free(path)  # nothing half-made left bound

    run(scenario)


# -- configuration ---------------------------------------------------------------------------


def test_upstreams_from_resolv_conf_as_dockerd():
    text = (
        "# nameserver 1.1.1.1\n"
        "nameserver 10.0.0.2\n"
        "  nameserver 127.0.0.53  \n"
        "nameserver 2001:db8::53\n"
        "nameserver 10.0.0.3 # a comment\n"
        "nameserver 999.0.0.1\n"
        "search example.com\n"
    )
    assert upstreams_from_resolv_conf(text) == ["10.0.0.2", "127.0.0.53", "10.0.0.3"]
    assert upstreams_from_resolv_conf("nameserver ::1\n") == ["8.8.8.8", "8.8.4.4"]
    assert upstreams_from_resolv_conf("") == ["8.8.8.8", "8.8.4.4"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.2", Upstream("10.0.0.2", 53)),
        ("127.0.0.1:5353", Upstream("127.0.0.1", 5353)),
        ("::1", Upstream("::1", 53)),
        ("[2001:db8::1]:5300", Upstream("2001:db8::1", 5300)),
    ],
)
def test_upstream_addresses(text, expected):
    assert Upstream.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", "dns.example", "1.2.3.4:0", "1.2.3.4:x", "[::1", "fe80::1%eth0"]
)
def test_bad_upstream_addresses_refused(text):
    with pytest.raises(InvalidParameter, match="invalid DNS server address"):
        Upstream.parse(text)


def test_tcp_connections_per_container_are_bounded(namespaces, monkeypatch):
    path = namespaces("ns")
    monkeypatch.setattr(dns_module, "MAX_TCP_CONNECTIONS", 2)

    async def scenario() -> None:
        dns = EmbeddedDNS(Names({"c1": {"web": ["10.1.0.2"]}}), upstreams=[])
        await dns.attach("c1", path)
        clients = [inside(path, socket.SOCK_STREAM) for _ in range(3)]
        try:
            for client in clients:
                client.settimeout(2)
                await asyncio.to_thread(client.connect, SERVER)
                await asyncio.sleep(0.1)  # accepted in turn
            assert await asyncio.to_thread(clients[2].recv, 2) == b""  # closed at once
            packet = question("web").pack()

            def exchange(client: socket.socket) -> DNSRecord:
                client.sendall(struct.pack("!H", len(packet)) + packet)
                (size,) = struct.unpack("!H", _recv_exactly(client, 2))
                return DNSRecord.parse(_recv_exactly(client, size))

            for client in clients[:2]:
                reply = await asyncio.to_thread(exchange, client)
                assert addresses_in(reply) == ["10.1.0.2"]
        finally:
            for client in clients:
                client.close()
            await dns.close()

    run(scenario)


# -- a real resolver client ------------------------------------------------------------------


@pytest.mark.skipif(not shutil.which("busybox"), reason="needs busybox (apt-get install busybox)")
def test_busybox_nslookup_inside_the_namespace(namespaces):
    """busybox's nslookup, the client in busybox images, run in the namespace (nsenter)."""
    path = namespaces("ns")

    async def nslookup(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={path}", "busybox", "nslookup", *args, "127.0.0.11",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 20)
        return output.decode()

    async def scenario() -> None:
        async with (
            fake_upstreams(answers_everything) as (upstream,),
            serving(Names(WEB), {"c1": path}, [upstream]),
        ):
            known = await nslookup("web")
            assert "Address: 10.1.0.2" in known and "192.0.2.1" not in known
            forwarded = await nslookup("www.example.org")
            assert "Address: 192.0.2.1" in forwarded
            reverse = await nslookup("10.1.0.2")
            assert "web.net1" in reverse
            assert ("udp", "web") not in upstream.seen

    run(scenario)
