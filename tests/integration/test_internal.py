"""
xinetd's internal services on real 127.0.0.1 sockets with the real reactor.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest_twisted
from twisted.internet import defer, interfaces
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from twinetd.errors import SourceLocation
from twinetd.model import ServiceConfig, SocketType
from twinetd.modes.internal import (
    CHARGEN_CHUNK_LINES,
    ChargenRing,
    ChargenStream,
    InternalFactory,
    InternalService,
    chargenLine,
    daytimeText,
    internalFor,
)

reactor: Any = _reactor
DEADLINE = 10.0


def service(name: str, socketType: SocketType) -> InternalService:
    return internalFor(
        ServiceConfig(
            name=name,
            source=SourceLocation("<test>", 1),
            socketType=socketType,
            wait=socketType is SocketType.DGRAM,
            port=0,
            types=frozenset({"INTERNAL"}),
        )
    )


class Collector(Protocol):
    """
    Collects what the server sends; C{done} fires with it when the
    connection closes, C{enough} when C{want} bytes arrived.
    """

    def __init__(self, want: int = 0) -> None:
        self.data = b""
        self.want = want
        self.done: defer.Deferred[bytes] = defer.Deferred()
        self.enough: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.want and len(self.data) >= self.want and not self.enough.called:
            self.enough.callback(self.data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(self.data)


async def withTimeout(d: defer.Deferred[Any]) -> Any:
    return await d.addTimeout(DEADLINE, reactor)


async def talk(name: str, send: bytes = b"", halfClose: bool = False) -> bytes:
    """
    Connect to a fresh listener for the stream builtin C{name}, send
    C{send}, optionally half-close, and return everything received until the
    server closes.
    """
    port = reactor.listenTCP(
        0,
        service(name, SocketType.STREAM).streamFactory(reactor),
        interface="127.0.0.1",
    )
    try:
        client = Collector()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await withTimeout(endpoint.connect(_Once(client)))
        assert client.transport is not None
        if send:
            client.transport.write(send)
        if halfClose:
            interfaces.ITCPTransport(client.transport).loseWriteConnection()
        data: bytes = await withTimeout(client.done)
        return data
    finally:
        await port.stopListening()


class _Once(InternalFactory):
    def __init__(self, proto: Protocol) -> None:
        super().__init__(lambda: proto)


@pytest_twisted.ensureDeferred
async def test_echoStream() -> None:
    payload = bytes(range(256)) * 400
    assert await talk("echo", payload, halfClose=True) == payload


@pytest_twisted.ensureDeferred
async def test_discardStream() -> None:
    assert await talk("discard", b"x" * 100000, halfClose=True) == b""


@pytest_twisted.ensureDeferred
async def test_daytimeStream() -> None:
    before = reactor.seconds()
    data = await talk("daytime")
    after = reactor.seconds()
    assert data in {daytimeText(before), daytimeText(after)}
    assert data.endswith(b"\r\n")


@pytest_twisted.ensureDeferred
async def test_timeStream() -> None:
    before = int(reactor.seconds())
    data = await talk("time")
    after = int(reactor.seconds())
    assert len(data) == 4
    assert before + 2208988800 <= struct.unpack("!I", data)[0] <= after + 2208988800


@pytest_twisted.ensureDeferred
async def test_chargenStream() -> None:
    port = reactor.listenTCP(
        0,
        service("chargen", SocketType.STREAM).streamFactory(reactor),
        interface="127.0.0.1",
    )
    try:
        want = 74 * 300
        client = Collector(want)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await withTimeout(endpoint.connect(_Once(client)))
        data = await withTimeout(client.enough)
        expected = b"".join(chargenLine(i % 95) for i in range(300))
        assert data[:want] == expected
        assert client.transport is not None
        client.transport.loseConnection()
        await withTimeout(client.done)
    finally:
        await port.stopListening()


class CountingChargen(ChargenStream):
    chunks = 0

    def resumeProducing(self) -> None:
        self.chunks += 1
        super().resumeProducing()


@pytest_twisted.ensureDeferred
async def test_chargenFlowControl() -> None:
    """
    With a client that does not read, chargen stops producing once the
    socket buffers are full, and Twisted's own buffer stays within one chunk.
    """
    built: list[CountingChargen] = []

    def build() -> Protocol:
        proto = CountingChargen(ChargenRing())
        built.append(proto)
        return proto

    port = reactor.listenTCP(0, InternalFactory(build), interface="127.0.0.1")
    try:
        client = Collector()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await withTimeout(endpoint.connect(_Once(client)))
        assert client.transport is not None
        interfaces.IPushProducer(client.transport).pauseProducing()
        [server] = built
        # Until the buffers are full: no chunk asked for in half a second
        # (the kernel may take one more window in its 200 ms timers).
        first, since = server.chunks, reactor.seconds()
        deadline = since + 10
        while reactor.seconds() - since < 0.5:
            assert reactor.seconds() < deadline, "chargen never stopped"
            await deferLater(reactor, 0.05, lambda: None)
            if server.chunks != first:
                first, since = server.chunks, reactor.seconds()
        await deferLater(reactor, 0.25, lambda: None)
        assert server.chunks == first, "chargen kept producing into full buffers"
        chunk = CHARGEN_CHUNK_LINES * 74
        # Kernel buffers on loopback are at most a few MB.
        assert first * chunk < 64 * 1024 * 1024
        transport: Any = server.transport
        buffered = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        assert buffered <= chunk
        client.transport.loseConnection()
        await withTimeout(client.done)
    finally:
        await port.stopListening()


class DatagramClient(DatagramProtocol):
    def __init__(self) -> None:
        self.replies: defer.DeferredQueue[bytes] = defer.DeferredQueue()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.replies.put(datagram)


async def ask(name: str, payloads: list[bytes]) -> list[bytes]:
    """
    Send each payload to a fresh listener for the datagram builtin C{name}
    and return the replies, one per payload.
    """
    server = reactor.listenUDP(
        0, service(name, SocketType.DGRAM).datagramProtocol(reactor), "127.0.0.1"
    )
    client = DatagramClient()
    clientPort = reactor.listenUDP(0, client, "127.0.0.1")
    try:
        replies = []
        for payload in payloads:
            clientPort.write(payload, ("127.0.0.1", server.getHost().port))
            replies.append(await withTimeout(client.replies.get()))
        return replies
    finally:
        await clientPort.stopListening()
        await server.stopListening()


@pytest_twisted.ensureDeferred
async def test_echoDatagram() -> None:
    replies = await ask("echo", [b"hi\x00there", b"", b"a" * 2049])
    assert replies == [b"hi\x00there", b"", b"a" * 2048]


@pytest_twisted.ensureDeferred
async def test_discardDatagram() -> None:
    """
    discard answers nothing: once it has had the datagram, the next one the
    client gets is the one it then sends itself.
    """
    discard = service("discard", SocketType.DGRAM).datagramProtocol(reactor)
    had: defer.Deferred[None] = defer.Deferred()
    received = discard.datagramReceived

    def datagramReceived(datagram: bytes, addr: Any) -> None:
        received(datagram, addr)
        had.callback(None)

    discard.datagramReceived = datagramReceived  # type: ignore[method-assign]
    server = reactor.listenUDP(0, discard, "127.0.0.1")
    client = DatagramClient()
    clientPort = reactor.listenUDP(0, client, "127.0.0.1")
    try:
        clientPort.write(b"anything", ("127.0.0.1", server.getHost().port))
        await withTimeout(had)
        clientPort.write(b"probe", ("127.0.0.1", clientPort.getHost().port))
        assert await withTimeout(client.replies.get()) == b"probe"
    finally:
        await clientPort.stopListening()
        await server.stopListening()


@pytest_twisted.ensureDeferred
async def test_chargenDatagram() -> None:
    first, second = await ask("chargen", [b"x", b""])
    assert len(first) == len(second) == 1024
    ring = ChargenRing()
    assert first == ring.datagram()
    assert second == ring.datagram()
    assert first.startswith(chargenLine(0))
    assert second.startswith(chargenLine(14))


@pytest_twisted.ensureDeferred
async def test_daytimeDatagram() -> None:
    before = reactor.seconds()
    [reply] = await ask("daytime", [b""])
    after = reactor.seconds()
    assert reply in {daytimeText(before), daytimeText(after)}


@pytest_twisted.ensureDeferred
async def test_timeDatagram() -> None:
    before = int(reactor.seconds())
    [reply] = await ask("time", [b"abc"])
    after = int(reactor.seconds())
    value = struct.unpack("!I", reply)[0]
    assert before + 2208988800 <= value <= after + 2208988800


@pytest_twisted.ensureDeferred
async def test_echoFlowControl() -> None:
    """
    A client that writes without reading makes echo stop reading: the
    server's buffer stays bounded instead of holding everything sent.
    """
    built: list[Protocol] = []
    inner = service("echo", SocketType.STREAM)

    def build() -> Protocol:
        proto = inner.buildStream(reactor)
        built.append(proto)
        return proto

    port = reactor.listenTCP(0, InternalFactory(build), interface="127.0.0.1")
    try:
        client = Collector()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await withTimeout(endpoint.connect(_Once(client)))
        assert client.transport is not None
        interfaces.IPushProducer(client.transport).pauseProducing()
        sent = 64 * 1024 * 1024
        block = b"e" * (1024 * 1024)
        for _ in range(sent // len(block)):
            client.transport.write(block)
        [server] = built
        transport: Any = server.transport
        # Until echo's output is full and Twisted pauses its reading.
        for _ in range(500):
            if transport.producerPaused:
                break
            await deferLater(reactor, 0.02, lambda: None)
        assert transport.producerPaused
        await deferLater(reactor, 0.1, lambda: None)
        buffered = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        assert buffered <= 2 * 1024 * 1024
        assert transport.producerPaused
        client.transport.abortConnection()
        await withTimeout(client.done)
    finally:
        await port.stopListening()
