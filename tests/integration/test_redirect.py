"""
The redirect relay with real sockets on 127.0.0.1: targets and clients are
Twisted protocols in this process, the relay listens with a plain
ServerFactory building L{RedirectProtocol}s.
"""

from __future__ import annotations

import hashlib
import socket
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IHalfCloseableProtocol, IPullProducer
from twisted.internet.protocol import Factory, Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twinetd import logs
from twinetd.modes.redirect import RedirectProtocol, Traffic

from .conftest import reactor, sleep, within

# A Twisted TCP transport pauses its producer at 64 KiB; it may hold one
# more read of the other side (64 KiB) before the pause takes effect.
BUFFER_BOUND = 256 * 1024
BIG = 64 * 1024 * 1024
CHUNK = bytes(range(256)) * 1024  # 256 KiB


def bufferedBytes(transport: Any) -> int:
    """
    What a Twisted TCP transport holds, not yet given to the kernel.
    """
    t = transport
    return len(t.dataBuffer) - t.offset + t._tempDataLen


class Relay:
    """
    A redirect listening on 127.0.0.1:0.

    @ivar protocols: the relays, in connection order.
    @ivar ended: one Deferred per relay, fired with its L{Traffic}.
    @ivar endedCounts: how many times each relay's C{onEnded} ran.
    @ivar events: every twinetd event of the relays.
    """

    def __init__(self, targetPort: int, connectTimeout: float = 5.0) -> None:
        self.target = ("127.0.0.1", targetPort)
        self.connectTimeout = connectTimeout
        self.protocols: list[RedirectProtocol] = []
        self.ended: list[defer.Deferred[Traffic]] = []
        self.endedCounts: list[int] = []
        self.events: list[dict[str, Any]] = []
        self.clients: list[Protocol] = []
        factory = ServerFactory()
        factory.buildProtocol = self.buildProtocol  # type: ignore[method-assign]
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")

    def buildProtocol(self, addr: object) -> RedirectProtocol:
        index = len(self.protocols)
        done: defer.Deferred[Traffic] = defer.Deferred()
        self.ended.append(done)
        self.endedCounts.append(0)

        def onEnded(traffic: Traffic) -> None:
            self.endedCounts[index] += 1
            done.callback(traffic)

        protocol = RedirectProtocol(
            "redir", self.target, reactor, self.connectTimeout, onEnded
        )
        protocol.log = Logger(observer=self.events.append)
        self.protocols.append(protocol)
        return protocol

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("twinetdEvent") == kind]

    async def connect(self, client: Protocol) -> Any:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        self.clients.append(client)
        return await within(connectProtocol(endpoint, client))


@implementer(IHalfCloseableProtocol)
class Peer(Protocol):
    """
    A client or target: collects what it receives, records its half-closes.
    With C{echo}, sends back what it receives; with C{replyAfterEOF}, sends
    C{got N} after the end of file, then closes; with C{greeting}, sends it
    and shuts its write side at once.  Like any half-closeable protocol, it
    closes its connection itself once both directions are shut.

    @ivar eof: fires with the data when the peer's end of file arrives.
    @ivar done: fires with the data when the connection is closed.
    """

    def __init__(
        self,
        echo: bool = False,
        replyAfterEOF: bool = False,
        greeting: bytes | None = None,
        paused: bool = False,
    ) -> None:
        self.data = b""
        self.echo = echo
        self.replyAfterEOF = replyAfterEOF
        self.greeting = greeting
        self.paused = paused
        self.sha = hashlib.sha256()
        self.count = 0
        self.keep = True
        self.writeShut = False
        self.eof: defer.Deferred[bytes] = defer.Deferred()
        self.done: defer.Deferred[bytes] = defer.Deferred()
        self.made: defer.Deferred[Peer] = defer.Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        if self.paused:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        if self.greeting is not None:
            self.transport.write(self.greeting)
            self.transport.loseWriteConnection()  # type: ignore[attr-defined]
        self.made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.count += len(data)
        self.sha.update(data)
        if self.keep:
            self.data += data
        if self.echo:
            assert self.transport is not None
            self.transport.write(data)

    def readConnectionLost(self) -> None:
        assert self.transport is not None
        self.eof.callback(self.data)
        if self.replyAfterEOF:
            self.transport.write(b"got %d" % self.count)
            self.transport.loseConnection()
        elif self.echo or self.writeShut:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        self.writeShut = True
        if self.eof.called:
            assert self.transport is not None
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        if not self.eof.called:
            self.eof.callback(self.data)
        self.done.callback(self.data)


@implementer(IPullProducer)
class Source:
    """
    Writes C{total} bytes of L{CHUNK}s to a transport as it drains, then
    shuts the write side (C{halfClose}) or closes.
    """

    def __init__(self, transport: Any, total: int, halfClose: bool) -> None:
        self.transport = transport
        self.left = total
        self.halfClose = halfClose
        self.sha = hashlib.sha256()
        transport.registerProducer(self, False)

    def resumeProducing(self) -> None:
        if self.left <= 0:
            self.transport.unregisterProducer()
            if self.halfClose:
                self.transport.loseWriteConnection()
            else:
                self.transport.loseConnection()
            return
        chunk = CHUNK[: self.left]
        self.left -= len(chunk)
        self.sha.update(chunk)
        self.transport.write(chunk)

    def stopProducing(self) -> None:
        self.left = 0


class Targets:
    """
    Target servers on 127.0.0.1:0, each accepted connection served by a
    fresh L{Peer} made by C{make}.
    """

    def __init__(self) -> None:
        self.ports: list[Any] = []
        self.peers: list[Peer] = []
        self.accepted: defer.Deferred[Peer] = defer.Deferred()

    def listen(self, make: Any) -> int:
        def build(addr: object) -> Peer:
            peer = make()
            self.peers.append(peer)
            if not self.accepted.called:
                peer.made.chainDeferred(self.accepted)
            return peer

        factory = Factory()
        factory.buildProtocol = build  # type: ignore[method-assign]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.ports.append(port)
        return int(port.getHost().port)


@pytest_twisted.async_yield_fixture
async def targets() -> Any:
    t = Targets()
    relays: list[Relay] = []

    def relayTo(port: int, connectTimeout: float = 5.0) -> Relay:
        r = Relay(port, connectTimeout)
        relays.append(r)
        return r

    t.relayTo = relayTo  # type: ignore[attr-defined]
    yield t
    for p in t.ports:
        await p.stopListening()
    transports = [peer.transport for peer in t.peers]
    for r in relays:
        await r.port.stopListening()
        transports += [c.transport for c in r.clients]
        for p in r.protocols:
            transports += [p.client.transport, p.target.transport]
    for transport in transports:
        if transport is not None and transport.connected:
            transport.abortConnection()


@pytest_twisted.ensureDeferred
async def test_echoRoundTrip(targets: Any) -> None:
    """
    Bytes go to the target and back; the client's end of file reaches the
    target, whose close reaches the client; TRAFFIC counts both ways.
    """
    relay = targets.relayTo(targets.listen(lambda: Peer(echo=True)))
    client = await relay.connect(Peer())
    client.transport.write(b"hello, target\n")
    client.transport.loseWriteConnection()
    assert await within(client.done) == b"hello, target\n"
    traffic = await within(relay.ended[0])
    assert (traffic.bytesIn, traffic.bytesOut, traffic.connected) == (14, 14, True)
    assert relay.endedCounts == [1]
    assert relay.events == []


@pytest_twisted.ensureDeferred
async def test_replyAfterClientEOF(targets: Any) -> None:
    """
    Half-close client to target: after the client's end of file the target
    still replies and the client gets it (xinetd would drop the reply).
    """
    relay = targets.relayTo(targets.listen(lambda: Peer(replyAfterEOF=True)))
    client = await relay.connect(Peer())
    client.transport.write(b"x" * 1000)
    client.transport.loseWriteConnection()
    assert await within(client.done) == b"got 1000"
    assert targets.peers[0].data == b"x" * 1000
    traffic = await within(relay.ended[0])
    assert (traffic.bytesIn, traffic.bytesOut) == (1000, 8)


@pytest_twisted.ensureDeferred
async def test_targetHalfCloses(targets: Any) -> None:
    """
    Half-close target to client: the target's greeting and end of file
    reach the client, which can still send; its end of file then reaches
    the target.
    """
    relay = targets.relayTo(targets.listen(lambda: Peer(greeting=b"hi\n")))
    client = await relay.connect(Peer())
    assert await within(client.eof) == b"hi\n"
    client.transport.write(b"still talking")
    client.transport.loseWriteConnection()
    assert await within(targets.peers[0].eof) == b"still talking"
    await within(client.done)
    traffic = await within(relay.ended[0])
    assert (traffic.bytesIn, traffic.bytesOut) == (13, 3)


@pytest_twisted.ensureDeferred
async def test_earlyDataWaitsForTarget(targets: Any) -> None:
    """
    What the client sends at once, before the target connection is up,
    reaches the target.
    """
    relay = targets.relayTo(targets.listen(lambda: Peer(replyAfterEOF=True)))
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", relay.port.getHost().port)
    client = Peer(greeting=b"sent before anything")
    relay.clients.append(client)
    await within(connectProtocol(endpoint, client))
    assert await within(client.done) == b"got 20"
    assert targets.peers[0].data == b"sent before anything"


async def _bigTransfer(targets: Any, download: bool) -> None:
    """
    64 MiB through the relay; the receiver does not read for a while, then
    reads everything.  While it does not read, the relay's buffers stay
    under a fixed bound; the bytes arrive intact.
    """
    if download:
        relay = targets.relayTo(targets.listen(lambda: Peer(replyAfterEOF=False)))
        client = await relay.connect(Peer(paused=True))
        server = await within(targets.accepted)
        source = Source(server.transport, BIG, halfClose=True)
        receiver = client
    else:
        relay = targets.relayTo(targets.listen(lambda: Peer(paused=True)))
        client = await relay.connect(Peer())
        receiver = await within(targets.accepted)
        source = Source(client.transport, BIG, halfClose=True)
    receiver.keep = False
    protocol = relay.protocols[0]
    sending = protocol.target if download else protocol.client
    highest = 0

    def sample() -> None:
        nonlocal highest
        for side in (protocol.client, protocol.target):
            if side.open:
                highest = max(highest, bufferedBytes(side.transport))

    # Until the relay stops reading the sender (its buffer toward the
    # receiver is full), then a while more: nothing grows.
    deadline = time.monotonic() + 10
    while sending.transport in reactor.getReaders():
        assert time.monotonic() < deadline, "the relay never stopped reading"
        sample()
        await sleep(0.01)
    for _ in range(10):
        sample()
        await sleep(0.02)
    assert 0 < highest < BUFFER_BOUND
    assert receiver.count == 0
    assert source.left > BIG // 2  # held back, not buffered
    receiver.transport.resumeProducing()
    await within(receiver.eof, 60)
    assert receiver.count == BIG
    assert receiver.sha.digest() == source.sha.digest()
    receiver.transport.loseConnection()
    traffic = await within(relay.ended[0])
    if download:
        assert (traffic.bytesIn, traffic.bytesOut) == (0, BIG)
    else:
        assert (traffic.bytesIn, traffic.bytesOut) == (BIG, 0)
    assert relay.endedCounts == [1]


@pytest_twisted.ensureDeferred
async def test_bigDownloadSlowClient(targets: Any) -> None:
    """
    64 MiB from the target to a client that reads late.
    """
    await _bigTransfer(targets, download=True)


@pytest_twisted.ensureDeferred
async def test_bigUploadSlowTarget(targets: Any) -> None:
    """
    64 MiB from the client to a target that reads late.
    """
    await _bigTransfer(targets, download=False)


@pytest_twisted.ensureDeferred
async def test_deadTarget(targets: Any) -> None:
    """
    A target port nobody listens on: the client is closed at once, the
    failure is logged with its reason, onEnded runs once.
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    deadPort = s.getsockname()[1]
    s.close()
    relay = targets.relayTo(deadPort)
    started = time.monotonic()
    client = await relay.connect(Peer())
    client.transport.write(b"anyone?")
    # Closed with unread data: a reset (as with xinetd) or an end of file.
    await within(client.eof, 5)
    assert time.monotonic() - started < 2
    traffic = await within(relay.ended[0])
    assert (traffic.bytesIn, traffic.bytesOut, traffic.connected) == (0, 0, False)
    [event] = relay.of(logs.REDIRECT_FAILED)
    assert (event["targetHost"], event["targetPort"]) == ("127.0.0.1", deadPort)
    assert event["host"] == "127.0.0.1"
    assert "refused" in event["reason"]
    assert relay.endedCounts == [1]


@pytest_twisted.ensureDeferred
async def test_connectTimeout(targets: Any) -> None:
    """
    A target whose accept queue is full never answers: the client is not
    read meanwhile; the connection times out after C{connectTimeout}, the
    client is closed.
    """
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler = socket.create_connection(full.getsockname(), timeout=2)
    try:
        relay = targets.relayTo(full.getsockname()[1], connectTimeout=0.5)
        started = time.monotonic()
        client = await relay.connect(Peer())
        client.transport.write(b"waiting")
        await sleep(0.2)
        assert relay.protocols[0].client.transport not in reactor.getReaders()
        await within(client.eof, 5)
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 3
        [event] = relay.of(logs.REDIRECT_FAILED)
        assert "timeout" in event["reason"]
        traffic = await within(relay.ended[0])
        assert (traffic.bytesIn, traffic.connected) == (0, False)
    finally:
        filler.close()
        full.close()


@pytest_twisted.ensureDeferred
async def test_clientResetClosesTarget(targets: Any) -> None:
    """
    A client that resets its connection: the target connection is closed
    too, onEnded runs once.
    """
    relay = targets.relayTo(targets.listen(lambda: Peer()))
    client = await relay.connect(Peer())
    client.transport.write(b"partial")
    server = await within(targets.accepted)
    for _ in range(100):
        if server.data:
            break
        await sleep(0.01)
    assert server.data == b"partial"
    client.transport.abortConnection()
    assert await within(server.eof) == b"partial"
    traffic = await within(relay.ended[0])
    assert traffic.bytesIn == 7
    assert relay.endedCounts == [1]


@pytest_twisted.ensureDeferred
async def test_pausedClientResetClosesTarget(targets: Any) -> None:
    """
    A client whose bytes wait for a target that does not read (the relay
    stopped reading it) and which then resets: noticed without reading (the
    target still reads nothing), the target connection is closed and the
    relay ends.
    """
    relay = targets.relayTo(targets.listen(lambda: Peer(paused=True)))
    client = await relay.connect(Peer())
    server = await within(targets.accepted)
    client.transport.write(b"x" * (32 * 1024 * 1024))
    side = relay.protocols[0].client
    for _ in range(500):
        if side.received and side.paused:
            break
        await sleep(0.01)
    assert side.received and side.transport not in reactor.getReaders()
    client.transport.abortConnection()
    for _ in range(200):
        if relay.protocols[0].client.lost:
            break
        await sleep(0.01)
    assert relay.protocols[0].client.lost
    assert relay.protocols[0].target.closing
    # The target's connection is closed once what it holds is delivered.
    server.transport.resumeProducing()
    traffic = await within(relay.ended[0])
    await within(server.eof)
    assert 0 < traffic.bytesIn < 32 * 1024 * 1024
    assert relay.endedCounts == [1]


@pytest_twisted.ensureDeferred
async def test_hostNameTarget(targets: Any) -> None:
    """
    A host name is resolved through the reactor's resolver (an IPv4
    address, as xinetd does for a name without C{:}).
    """
    port = targets.listen(lambda: Peer(echo=True))
    relay = targets.relayTo(port)
    relay.target = ("localhost", port)
    client = await relay.connect(Peer())
    client.transport.write(b"by name")
    client.transport.loseWriteConnection()
    assert await within(client.done) == b"by name"
    traffic = await within(relay.ended[0])
    assert traffic.connected and traffic.bytesOut == 7


@pytest_twisted.ensureDeferred
async def test_ipv6LiteralTarget(targets: Any) -> None:
    """
    An IPv6 literal target is connected to over IPv6.
    """
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    factory = Factory()
    peers: list[Peer] = []

    def build(addr: object) -> Peer:
        peers.append(Peer(echo=True))
        return peers[-1]

    factory.buildProtocol = build  # type: ignore[method-assign]
    port = reactor.listenTCP(0, factory, interface="::1")
    targets.ports.append(port)
    relay = targets.relayTo(port.getHost().port)
    relay.target = ("::1", port.getHost().port)
    client = await relay.connect(Peer())
    client.transport.write(b"six")
    client.transport.loseWriteConnection()
    assert await within(client.done) == b"six"
    assert peers[0].transport.getPeer().host == "::1"  # type: ignore[union-attr]
    await within(relay.ended[0])


@pytest_twisted.ensureDeferred
async def test_manyConcurrentConnections(targets: Any) -> None:
    """
    Many relays at once keep their streams apart; each ends once.
    """
    relay = targets.relayTo(targets.listen(lambda: Peer(replyAfterEOF=True)))
    clients = [Peer() for _ in range(60)]
    await within(
        defer.gatherResults([defer.ensureDeferred(relay.connect(c)) for c in clients])
    )
    for i, c in enumerate(clients):
        c.transport.write(b"." * (i + 1))
        c.transport.loseWriteConnection()
    results = await within(defer.gatherResults([c.done for c in clients]))
    assert results == [b"got %d" % (i + 1) for i in range(60)]
    traffic = await within(defer.gatherResults(relay.ended))
    assert sorted(t.bytesIn for t in traffic) == list(range(1, 61))
    assert relay.endedCounts == [1] * 60
