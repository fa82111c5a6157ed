"""
RFC 1413 queries (L{twinetd.logs.ident}) against a memory reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twinetd.logs.ident import (
    IDENT_PORT,
    IDENT_TIMEOUT,
    MAX_REPLY,
    parseIdentReply,
    queryIdent,
)


class ParseTests(SynchronousTestCase):
    def test_rfcExample(self) -> None:
        self.assertEqual(
            parseIdentReply(b"6193, 23 : USERID : UNIX : stjohns\r\n", 6193, 23),
            "UNIX : stjohns",
        )

    def test_compact(self) -> None:
        self.assertEqual(
            parseIdentReply(b"6193,23:USERID:UNIX:bob", 6193, 23), "UNIX:bob"
        )

    def test_charsetAndColonsInUser(self) -> None:
        self.assertEqual(
            parseIdentReply(b"1,2 : USERID : UNIX , UTF-8 : a:b c\r\n", 1, 2),
            "UNIX , UTF-8 : a:b c",
        )

    def test_error(self) -> None:
        for line in (
            b"6193, 23 : ERROR : NO-USER\r\n",
            b"6193, 23 : ERROR : HIDDEN-USER\r\n",
            b"6193, 23 : ERROR : INVALID-PORT\r\n",
        ):
            self.assertIsNone(parseIdentReply(line, 6193, 23))

    def test_wrongPorts(self) -> None:
        self.assertIsNone(
            parseIdentReply(b"6194, 23 : USERID : UNIX : x\r\n", 6193, 23)
        )
        self.assertIsNone(
            parseIdentReply(b"6193, 24 : USERID : UNIX : x\r\n", 6193, 23)
        )
        self.assertIsNone(
            parseIdentReply(b"23, 6193 : USERID : UNIX : x\r\n", 6193, 23)
        )

    def test_malformed(self) -> None:
        for line in (
            b"",
            b"\r\n",
            b"garbage",
            b"6193 23 : USERID : UNIX : x",
            b"6193, 23 USERID UNIX x",
            b"6193, 23 : USERID",
            b"6193, 23 : USERID :",
            b"6193, 23 : USERID :   \r\n",
            b"6193, 23 : USERIDX : UNIX : x",
            b"a193, 23 : USERID : UNIX : x",
            b"-6193, 23 : USERID : UNIX : x",
            b"\xd9\xa1, 23 : USERID : UNIX : x",  # Arabic-Indic digit one
            b",23 : USERID : UNIX : x",
        ):
            self.assertIsNone(parseIdentReply(line, 6193, 23), line)

    def test_controlCharactersEscaped(self) -> None:
        self.assertEqual(
            parseIdentReply(b"1,2 : USERID : UNIX : ev\ril\x1b[0m\r\n", 1, 2),
            "UNIX : ev\\x0dil\\x1b[0m",
        )

    def test_notUtf8(self) -> None:
        self.assertEqual(
            parseIdentReply(b"1,2 : USERID : OTHER : \xff\xfe\r\n", 1, 2),
            "OTHER : \\xff\\xfe",
        )


class QueryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.results: list[str | None] = []

    def query(self, peerHost: str = "192.0.2.7", **kw: Any) -> Deferred[str | None]:
        d = queryIdent(self.reactor, peerHost, 6193, "192.0.2.1", 23, **kw)
        d.addCallback(self.results.append)
        return d

    def connect(self) -> tuple[Protocol, StringTransport]:
        [(_, _, factory, _, _)] = self.reactor.tcpClients
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_connects(self) -> None:
        self.query(timeout=7)
        [(host, port, _, timeout, bindAddress)] = self.reactor.tcpClients
        self.assertEqual((host, port), ("192.0.2.7", IDENT_PORT))
        self.assertEqual(bindAddress, ("192.0.2.1", 0))
        self.assertEqual(timeout, 7)

    def test_mappedAddresses(self) -> None:
        queryIdent(self.reactor, "::ffff:192.0.2.7", 6193, "::ffff:192.0.2.1", 23)
        [(host, _, _, _, bindAddress)] = self.reactor.tcpClients
        self.assertEqual((host, bindAddress), ("192.0.2.7", ("192.0.2.1", 0)))

    def test_ipv6(self) -> None:
        queryIdent(self.reactor, "2001:db8::7", 6193, "2001:db8::1", 23)
        [(host, _, _, _, bindAddress)] = self.reactor.tcpClients
        self.assertEqual((host, bindAddress), ("2001:db8::7", ("2001:db8::1", 0)))

    def test_identPort(self) -> None:
        self.query(identPort=11300)
        self.assertEqual(self.reactor.tcpClients[0][1], 11300)

    def test_answer(self) -> None:
        self.query()
        protocol, transport = self.connect()
        self.assertEqual(transport.value(), b"6193,23\r\n")
        protocol.dataReceived(b"6193 , 23 : USERID : UNIX")
        self.assertEqual(self.results, [])
        protocol.dataReceived(b" : alice\r\n")
        self.assertEqual(self.results, ["UNIX : alice"])
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        # The connection's end afterwards changes nothing.
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.results, ["UNIX : alice"])

    def test_errorAnswer(self) -> None:
        self.query()
        protocol, transport = self.connect()
        protocol.dataReceived(b"6193, 23 : ERROR : NO-USER\r\n")
        self.assertEqual(self.results, [None])
        self.assertTrue(transport.disconnected)

    def test_tooLong(self) -> None:
        self.query()
        protocol, transport = self.connect()
        for _ in range(MAX_REPLY // 100):
            protocol.dataReceived(b"x" * 100)
        self.assertEqual(self.results, [])
        protocol.dataReceived(b"x" * 100)
        self.assertEqual(self.results, [None])
        self.assertTrue(transport.disconnected)

    def test_longLineInOneChunk(self) -> None:
        self.query()
        protocol, _ = self.connect()
        protocol.dataReceived(b"6193, 23 : USERID : UNIX : " + b"u" * 2000 + b"\r\n")
        self.assertEqual(self.results, [None])

    def test_closedWithoutAnswer(self) -> None:
        self.query()
        protocol, _ = self.connect()
        protocol.dataReceived(b"6193, 23 : USERID : UNIX : alice")  # no line end
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.results, [None])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_noServer(self) -> None:
        self.query()
        [(_, _, factory, _, _)] = self.reactor.tcpClients
        [connector] = self.reactor.connectors
        factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
        self.assertEqual(self.results, [None])
        # A real connector that failed raises if told to stop connecting.
        self.assertFalse(connector.stoppedConnecting)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_timeoutWhileConnecting(self) -> None:
        self.query(timeout=5)
        self.reactor.advance(4.9)
        self.assertEqual(self.results, [])
        self.reactor.advance(0.1)
        self.assertEqual(self.results, [None])
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)

    def test_timeoutWaitingForAnswer(self) -> None:
        self.query()
        protocol, transport = self.connect()
        self.reactor.advance(IDENT_TIMEOUT)
        self.assertEqual(self.results, [None])
        self.assertTrue(transport.disconnected)
        protocol.dataReceived(b"6193, 23 : USERID : UNIX : late\r\n")
        self.assertEqual(self.results, [None])

    def test_cancel(self) -> None:
        d = queryIdent(self.reactor, "192.0.2.7", 6193, "192.0.2.1", 23)
        protocol, transport = self.connect()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        protocol.connectionLost(Failure(ConnectionDone()))

    def test_connectRaises(self) -> None:
        class Broken(MemoryReactorClock):
            def connectTCP(self, *args: Any, **kw: Any) -> Any:
                raise OSError("no")

        d = queryIdent(Broken(), "192.0.2.7", 6193, "192.0.2.1", 23)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
