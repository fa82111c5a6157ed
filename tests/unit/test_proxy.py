"""
L{twinetd.listeners.proxy}: the PROXY header, read before the service's
front starts, believed only from C{twinetd_proxy_from}; with
C{StringTransport} and the fake clock.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twinetd import logs
from twinetd.config.values import parseAddress
from twinetd.errors import SourceLocation
from twinetd.listeners.proxy import HEADER_TIMEOUT, ProxyWrappingFactory
from twinetd.model import ServiceConfig, SocketType
from twinetd.testing import MemoryProcessReactor

from ..runtime import runtimeFor

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(source: str, sport: int, destination: str, dport: int) -> bytes:
    """
    A PROXY v2 header (PROXY command, TCP over IPv4).
    """
    body = socket.inet_aton(source) + socket.inet_aton(destination)
    body += struct.pack("!HH", sport, dport)
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


@implementer(IHalfCloseableProtocol)
class Recorder(Protocol):
    made = False
    halfClosed = False

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost: list[Any] = []

    def connectionMade(self) -> None:
        self.made = True
        assert self.transport is not None
        self.peer = self.transport.getPeer()
        self.host = self.transport.getHost()

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def readConnectionLost(self) -> None:
        self.halfClosed = True

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.append(reason)


@attrs.define
class Listener:
    config: ServiceConfig
    serviceLog: logs.ServiceLog
    runtime: Any


class Harness:
    def __init__(self, proxyFrom: str = "10.0.0.0/8") -> None:
        self.reactor = MemoryProcessReactor()
        self.events: list[dict[str, Any]] = []
        config = ServiceConfig(
            name="px",
            source=SourceLocation("<test>", 1),
            socketType=SocketType.STREAM,
            wait=False,
            port=0,
            server="/bin/cat",
            proxyFrom=parseAddress(proxyFrom),
        )
        self.listener = Listener(
            config,
            logs.ServiceLog("px", logger=Logger(observer=self.events.append)),
            runtimeFor(self.reactor),
        )
        self.recorder = Recorder()
        inner = ServerFactory.forProtocol(lambda: self.recorder)
        self.factory = ProxyWrappingFactory(inner, self.listener)

    def connect(self, balancer: str = "10.1.2.3") -> StringTransport:
        transport = StringTransport(
            peerAddress=IPv4Address("TCP", balancer, 40000),
            hostAddress=IPv4Address("TCP", "10.9.9.9", 8080),
        )
        self.protocol = self.factory.buildProtocol(transport.getPeer())
        self.protocol.makeConnection(transport)
        return transport

    def fails(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get(logs.EVENT_FIELD) == logs.FAIL]


class HeaderTests(SynchronousTestCase):
    def test_v1(self) -> None:
        """
        The front starts once the header is read, and sees the client and
        the address it reached as the header names them; the bytes after
        the header follow.
        """
        h = Harness()
        h.connect()
        self.assertFalse(h.recorder.made)
        h.protocol.dataReceived(b"PROXY TCP4 192.0.2.9 10.9.9.9 5555 80\r\nhello")
        self.assertTrue(h.recorder.made)
        self.assertEqual(h.recorder.peer, IPv4Address("TCP", "192.0.2.9", 5555))
        self.assertEqual(h.recorder.host, IPv4Address("TCP", "10.9.9.9", 80))
        self.assertEqual(h.recorder.received, [b"hello"])
        h.protocol.dataReceived(b" again")
        self.assertEqual(h.recorder.received, [b"hello", b" again"])
        self.assertEqual(h.fails(), [])
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_v1IPv6(self) -> None:
        h = Harness()
        h.connect()
        h.protocol.dataReceived(b"PROXY TCP6 2001:db8::7 2001:db8::1 4444 80\r\n")
        self.assertEqual(h.recorder.peer, IPv6Address("TCP", "2001:db8::7", 4444))

    def test_v2InPieces(self) -> None:
        """
        A v2 header that arrives a few bytes at a time (shorter than its
        signature) is read whole.
        """
        h = Harness()
        h.connect()
        data = v2("198.51.100.7", 4242, "10.9.9.9", 80) + b"body"
        for i in range(len(data)):
            h.protocol.dataReceived(data[i : i + 1])
        self.assertEqual(h.recorder.peer, IPv4Address("TCP", "198.51.100.7", 4242))
        self.assertEqual(b"".join(h.recorder.received), b"body")

    def test_local(self) -> None:
        """
        A LOCAL header (a balancer's health check) names nobody: the
        balancer is the client.
        """
        h = Harness()
        h.connect()
        h.protocol.dataReceived(V2_SIGNATURE + bytes([0x20, 0x00, 0, 0]))
        self.assertEqual(h.recorder.peer, IPv4Address("TCP", "10.1.2.3", 40000))

    def test_halfCloseForwarded(self) -> None:
        h = Harness()
        transport = h.connect()
        h.protocol.dataReceived(b"PROXY TCP4 192.0.2.9 10.9.9.9 5555 80\r\n")
        self.assertTrue(IHalfCloseableProtocol.providedBy(h.protocol))
        h.protocol.readConnectionLost()
        self.assertTrue(h.recorder.halfClosed)
        self.assertFalse(transport.disconnecting)


class RefusedTests(SynchronousTestCase):
    def test_spoofedFromOutside(self) -> None:
        """
        A header from a source outside C{twinetd_proxy_from} is refused at
        once and logged (FAIL, reason C{address}, from the real source):
        anyone could otherwise claim any address.
        """
        h = Harness()
        transport = h.connect(balancer="203.0.113.66")
        self.assertTrue(transport.disconnected)
        h.protocol.dataReceived(b"PROXY TCP4 10.0.0.1 10.9.9.9 1 80\r\n")
        self.assertFalse(h.recorder.made)
        [fail] = h.fails()
        self.assertEqual(
            (fail["reason"], fail["host"], fail["detail"]),
            (
                "address",
                "203.0.113.66",
                "a PROXY header from outside twinetd_proxy_from",
            ),
        )

    def test_noHeader(self) -> None:
        h = Harness()
        transport = h.connect()
        h.protocol.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(transport.disconnected)
        self.assertFalse(h.recorder.made)
        [fail] = h.fails()
        self.assertEqual(fail["detail"], "no valid PROXY header")

    def test_badHeader(self) -> None:
        h = Harness()
        transport = h.connect()
        h.protocol.dataReceived(b"PROXY TCP9 what\r\n")
        self.assertTrue(transport.disconnected)
        self.assertEqual(len(h.fails()), 1)

    def test_noHeaderInTime(self) -> None:
        h = Harness()
        transport = h.connect()
        h.protocol.dataReceived(b"PROX")
        h.reactor.advance(HEADER_TIMEOUT - 0.1)
        self.assertFalse(transport.disconnected)
        h.reactor.advance(0.1)
        self.assertTrue(transport.disconnected)
        [fail] = h.fails()
        self.assertEqual(fail["detail"], "no PROXY header in time")

    def test_frontHearsOfTheEnd(self) -> None:
        """
        A connection refused before its header still ends its front (which
        its listener tracks from its making).
        """
        h = Harness()
        h.connect(balancer="203.0.113.66")
        h.protocol.connectionLost(None)
        self.assertEqual(len(h.recorder.lost), 1)
        self.assertEqual(h.reactor.getDelayedCalls(), [])
