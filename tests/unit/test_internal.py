"""
Tests for L{twinetd.modes.internal}: xinetd's builtins, byte for byte.

The expected bytes were captured from Debian's xinetd 2.3.15.3 on loopback.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from twisted.internet import interfaces
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twinetd.errors import ConfigError, SourceLocation
from twinetd.model import INTERNAL_SERVICES, ServiceConfig, SocketType
from twinetd.modes.internal import (
    BUILTINS,
    CHARGEN_CHUNK_LINES,
    ChargenDatagram,
    ChargenRing,
    ChargenStream,
    DaytimeDatagram,
    DaytimeStream,
    DiscardDatagram,
    DiscardStream,
    EchoDatagram,
    EchoStream,
    InternalFactory,
    InternalService,
    TimeDatagram,
    TimeStream,
    chargenLine,
    daytimeText,
    internalFor,
    timeBytes,
)

# Captured from xinetd: the first line of a fresh daemon's chargen, and a
# time reply with the matching Unix time.
FIRST_LINE = (
    b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n"
)
SECOND_LINE = (
    b"\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghi\r\n"
)
XINETD_TIME = (1795624059, b"\xee\xb1\x8a\xfb")
# 2026-02-05 09:03:07 local time in New York.
NEW_YORK = time.struct_time((2026, 2, 5, 9, 3, 7, 3, 36, 0, "EST", -18000))
PEER = ("127.0.0.1", 40000)


def newYork(seconds: float) -> time.struct_time:
    return NEW_YORK


def config(
    name: str,
    socketType: SocketType = SocketType.STREAM,
    **kwargs: Any,
) -> ServiceConfig:
    return ServiceConfig(
        name=name,
        source=SourceLocation("/etc/xinetd.d/x", 3),
        socketType=socketType,
        wait=socketType is SocketType.DGRAM,
        port=35000,
        types=frozenset({"INTERNAL", "UNLISTED"}),
        **kwargs,
    )


def connect(proto: Protocol) -> StringTransport:
    transport = StringTransport()
    proto.makeConnection(transport)
    return transport


class FakeUDPTransport:
    """
    Records C{write(datagram, addr)} calls.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, packet: bytes, addr: Any = None) -> None:
        self.sent.append((packet, addr))


def listen(proto: DatagramProtocol) -> FakeUDPTransport:
    transport = FakeUDPTransport()
    proto.makeConnection(transport)  # type: ignore[arg-type]
    return transport


class FormatTests(SynchronousTestCase):
    def test_chargenLines(self) -> None:
        """
        Lines are 72 characters from C{!} on, shifted by one each line; the
        ring has 93 characters (C{~} never appears) and 95 starts, so lines
        93 and 94 repeat lines 0 and 1.
        """
        self.assertEqual(chargenLine(0), FIRST_LINE)
        self.assertEqual(chargenLine(1), SECOND_LINE)
        self.assertEqual(chargenLine(93), FIRST_LINE)
        self.assertEqual(chargenLine(94), SECOND_LINE)
        self.assertEqual(chargenLine(22)[:4], b"789:")
        self.assertEqual(chargenLine(92)[:3], b'}!"')
        everything = b"".join(chargenLine(p) for p in range(95))
        self.assertNotIn(b"~", everything)
        self.assertEqual(
            {len(chargenLine(p)) for p in range(95)},
            {74},
        )

    def test_daytime(self) -> None:
        """
        C{DD MON YYYY HH:MM:SS ZONE} and CRLF, in local time.
        """
        self.assertEqual(daytimeText(0, newYork), b"05 FEB 2026 09:03:07 EST\r\n")
        self.assertEqual(daytimeText(0, time.gmtime), b"01 JAN 1970 00:00:00 GMT\r\n")
        self.assertEqual(
            daytimeText(1795624059.9, time.gmtime), b"25 NOV 2026 16:27:39 GMT\r\n"
        )

    def test_daytimeSeesWholeSeconds(self) -> None:
        """
        The local time function gets the seconds truncated, as C{time_t}.
        """
        seen: list[float] = []

        def localtime(seconds: float) -> time.struct_time:
            seen.append(seconds)
            return NEW_YORK

        daytimeText(12.75, localtime)
        self.assertEqual(seen, [12])

    def test_daytimeWithoutZoneField(self) -> None:
        """
        A struct_time without C{tm_zone} gets the zone from C{strftime}.
        """
        bare = time.struct_time((2026, 12, 31, 23, 59, 58, 3, 365, 0))
        text = daytimeText(0, lambda seconds: bare)
        zone = time.strftime("%Z", bare)
        self.assertEqual(text, f"31 DEC 2026 23:59:58 {zone}\r\n".encode())

    def test_time(self) -> None:
        """
        Seconds since 1900 as 4 big-endian bytes, modulo 2**32.
        """
        seconds, expected = XINETD_TIME
        self.assertEqual(timeBytes(seconds), expected)
        self.assertEqual(timeBytes(seconds + 0.99), expected)
        self.assertEqual(timeBytes(0), struct.pack("!I", 2208988800))
        self.assertEqual(timeBytes(2**32 - 2208988800), b"\x00\x00\x00\x00")


class SelectionTests(SynchronousTestCase):
    def test_byNameAndSocketType(self) -> None:
        """
        Every builtin exists in both socket types.
        """
        for name in ("echo", "discard", "chargen", "daytime", "time"):
            for socketType in (SocketType.STREAM, SocketType.DGRAM):
                service = internalFor(config(name, socketType))
                self.assertEqual((service.name, service.socketType), (name, socketType))
                self.assertFalse(service.isSensor)

    def test_idIsIgnored(self) -> None:
        """
        xinetd looks builtins up by service name only: C{id = echo-stream}
        does not make C{service foo} an echo.
        """
        service = internalFor(config("echo", id="foo-bar"))
        self.assertEqual(service.name, "echo")
        with self.assertRaises(ConfigError) as raised:
            internalFor(config("foo", id="echo-stream"))
        self.assertEqual(
            str(raised.exception),
            "/etc/xinetd.d/x:3: foo: no such internal service: foo/stream",
        )
        self.assertEqual(raised.exception.problem.attribute, "type")

    def test_unknownSocketType(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            internalFor(config("echo", SocketType.RAW))
        self.assertEqual(
            str(raised.exception),
            "/etc/xinetd.d/x:3: echo: no such internal service: echo/raw",
        )

    def test_tcpmuxUnsupported(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            internalFor(config("tcpmux"))
        self.assertIn("tcpmux internal service is not supported", str(raised.exception))

    def test_sensor(self) -> None:
        """
        C{flags = SENSOR} selects the sensor builtin whatever the name; it
        discards.
        """
        service = internalFor(config("ftp", flags=frozenset({"SENSOR"})))
        self.assertEqual(service.name, "sensor")
        self.assertTrue(service.isSensor)
        self.assertIsInstance(service.buildStream(Clock()), DiscardStream)
        dgram = internalFor(
            config("ftp", SocketType.DGRAM, flags=frozenset({"SENSOR"}))
        )
        self.assertIsInstance(dgram.datagramProtocol(Clock()), DiscardDatagram)

    def test_streamBuilders(self) -> None:
        expected = {
            "echo": EchoStream,
            "discard": DiscardStream,
            "chargen": ChargenStream,
            "daytime": DaytimeStream,
            "time": TimeStream,
        }
        for name, cls in expected.items():
            service = internalFor(config(name))
            self.assertIsInstance(service.buildStream(Clock()), cls)
            factory = service.streamFactory(Clock())
            self.assertIsInstance(factory, InternalFactory)
            proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
            self.assertIsInstance(proto, cls)
            assert proto is not None
            self.assertIs(proto.factory, factory)
            with self.assertRaises(ValueError):
                service.datagramProtocol(Clock())

    def test_datagramBuilders(self) -> None:
        expected = {
            "echo": EchoDatagram,
            "discard": DiscardDatagram,
            "chargen": ChargenDatagram,
            "daytime": DaytimeDatagram,
            "time": TimeDatagram,
        }
        for name, cls in expected.items():
            service = internalFor(config(name, SocketType.DGRAM))
            self.assertIsInstance(service.datagramProtocol(Clock()), cls)
            with self.assertRaises(ValueError):
                service.buildStream(Clock())

    def test_registryAndModelAgree(self) -> None:
        """
        The builtins are one registry; the names the configuration accepts
        (L{INTERNAL_SERVICES}) are its names, the sensor aside.
        """
        self.assertEqual(set(BUILTINS), INTERNAL_SERVICES | {"sensor"})

    def test_unknownBuiltinIsNotTime(self) -> None:
        """
        A name outside the registry is an error, never served as the last
        builtin of a chain.
        """
        service = InternalService("nope", SocketType.STREAM)
        with self.assertRaises(KeyError):
            service.buildStream(Clock())
        with self.assertRaises(KeyError):
            InternalService("nope", SocketType.DGRAM).datagramProtocol(Clock())

    def test_sharedRing(self) -> None:
        """
        A ring given to L{internalFor} is used by the service's protocols.
        """
        ring = ChargenRing()
        service = internalFor(config("chargen", SocketType.DGRAM), ring)
        self.assertIs(service.ring, ring)
        proto = service.datagramProtocol(Clock())
        listen(proto)
        proto.datagramReceived(b"", PEER)
        self.assertEqual(ring.position, 14)
        # Without a ring, each service has its own.
        a = internalFor(config("chargen"))
        b = internalFor(config("chargen"))
        self.assertIsNot(a.ring, b.ring)


class EchoStreamTests(SynchronousTestCase):
    def test_echoes(self) -> None:
        proto = EchoStream()
        transport = connect(proto)
        proto.dataReceived(b"hello\r\n")
        proto.dataReceived(b"\x00\xffworld")
        self.assertEqual(transport.value(), b"hello\r\n\x00\xffworld")
        self.assertFalse(transport.disconnecting)

    def test_flowControl(self) -> None:
        """
        The transport is registered as its own streaming producer: when its
        write buffer fills it stops reading from the client.
        """
        proto = EchoStream()
        transport = connect(proto)
        self.assertIs(transport.producer, transport)
        self.assertTrue(transport.streaming)
        self.assertTrue(interfaces.IHalfCloseableProtocol.providedBy(proto))

    def test_closesAfterClientEOF(self) -> None:
        """
        At the client's end of file the echoed data is flushed, then the
        connection closes; the producer is unregistered first so that a
        paused transport cannot stall the close.
        """
        proto = EchoStream()
        transport = connect(proto)
        proto.dataReceived(b"last")
        proto.readConnectionLost()
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"last")

    def test_writeConnectionLost(self) -> None:
        proto = EchoStream()
        transport = connect(proto)
        proto.writeConnectionLost()
        self.assertTrue(transport.disconnecting)


class DiscardStreamTests(SynchronousTestCase):
    def test_discards(self) -> None:
        proto = DiscardStream()
        transport = connect(proto)
        for _ in range(10):
            proto.dataReceived(b"x" * 1024)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)


class ChargenStreamTests(SynchronousTestCase):
    def test_pullProducer(self) -> None:
        """
        Chargen registers as a pull producer and writes nothing until the
        transport asks: a transport that never asks (its buffer is "full")
        gets nothing, however much the client sends.
        """
        proto = ChargenStream(ChargenRing())
        transport = connect(proto)
        self.assertIs(transport.producer, proto)
        self.assertFalse(transport.streaming)
        for _ in range(100):
            proto.dataReceived(b"ignored" * 100)
        self.assertEqual(transport.value(), b"")

    def test_boundedChunks(self) -> None:
        """
        Each C{resumeProducing} writes one bounded chunk of whole lines, and
        consecutive chunks continue the line sequence.
        """
        proto = ChargenStream(ChargenRing())
        transport = connect(proto)
        chunk = CHARGEN_CHUNK_LINES * 74
        expected = b"".join(chargenLine(i % 95) for i in range(3 * CHARGEN_CHUNK_LINES))
        for count in range(1, 4):
            proto.resumeProducing()
            self.assertEqual(len(transport.value()), count * chunk)
        self.assertTrue(transport.value().startswith(FIRST_LINE + SECOND_LINE))
        self.assertEqual(transport.value(), expected)
        self.assertLessEqual(chunk, 16384)

    def test_startsWhereTheRingStands(self) -> None:
        """
        Like xinetd's forked child, a stream starts at the shared ring's
        position and does not move it.
        """
        ring = ChargenRing(56)
        proto = ChargenStream(ring)
        transport = connect(proto)
        proto.resumeProducing()
        proto.resumeProducing()
        lines = transport.value().split(b"\r\n")
        self.assertEqual(lines[0][:12], b"YZ[\\]^_`abcd")
        self.assertEqual(lines[39] + b"\r\n", FIRST_LINE)
        self.assertEqual(lines[95], lines[0])
        self.assertEqual(ring.position, 56)

    def test_stops(self) -> None:
        """
        Nothing is written after C{stopProducing} or after the connection is
        lost.
        """
        proto = ChargenStream(ChargenRing())
        transport = connect(proto)
        proto.stopProducing()
        proto.resumeProducing()
        self.assertEqual(transport.value(), b"")

        proto = ChargenStream(ChargenRing())
        transport = connect(proto)
        proto.connectionLost()
        proto.resumeProducing()
        self.assertEqual(transport.value(), b"")


class OneShotStreamTests(SynchronousTestCase):
    def test_daytime(self) -> None:
        clock = Clock()
        clock.advance(1234.5)
        seen: list[float] = []

        def localtime(seconds: float) -> time.struct_time:
            seen.append(seconds)
            return NEW_YORK

        transport = connect(DaytimeStream(clock, localtime))
        self.assertEqual(transport.value(), b"05 FEB 2026 09:03:07 EST\r\n")
        self.assertEqual(seen, [1234])
        self.assertTrue(transport.disconnecting)

    def test_time(self) -> None:
        clock = Clock()
        clock.advance(XINETD_TIME[0])
        transport = connect(TimeStream(clock))
        self.assertEqual(transport.value(), XINETD_TIME[1])
        self.assertTrue(transport.disconnecting)

    def test_timeFollowsTheClock(self) -> None:
        clock = Clock()
        service = internalFor(config("time"))
        clock.advance(100)
        first = connect(service.buildStream(clock)).value()
        clock.advance(5)
        second = connect(service.buildStream(clock)).value()
        self.assertEqual(
            struct.unpack("!I", second)[0] - struct.unpack("!I", first)[0], 5
        )


class DatagramTests(SynchronousTestCase):
    def test_echo(self) -> None:
        proto = EchoDatagram()
        transport = listen(proto)
        proto.datagramReceived(b"hi\x00there", PEER)
        proto.datagramReceived(b"", PEER)
        v6 = ("::1", 5000, 0, 0)
        proto.datagramReceived(b"six", v6)
        self.assertEqual(
            transport.sent, [(b"hi\x00there", PEER), (b"", PEER), (b"six", v6)]
        )

    def test_echoTruncatesAt2048(self) -> None:
        """
        xinetd reads datagrams into a 2048-byte buffer.
        """
        proto = EchoDatagram()
        transport = listen(proto)
        proto.datagramReceived(b"a" * 2047, PEER)
        proto.datagramReceived(b"b" * 2049, PEER)
        proto.datagramReceived(b"c" * 4000, PEER)
        self.assertEqual(
            [(len(data), data[:1]) for data, addr in transport.sent],
            [(2047, b"a"), (2048, b"b"), (2048, b"c")],
        )

    def test_discard(self) -> None:
        proto = DiscardDatagram()
        transport = listen(proto)
        proto.datagramReceived(b"anything", PEER)
        self.assertEqual(transport.sent, [])

    def test_chargen(self) -> None:
        """
        1024 bytes: 13 lines of 72 characters and one of 60, each with CRLF;
        the ring moves 14 places per datagram.
        """
        ring = ChargenRing()
        proto = ChargenDatagram(ring)
        transport = listen(proto)
        proto.datagramReceived(b"whatever", PEER)
        [(data, addr)] = transport.sent
        self.assertEqual(addr, PEER)
        self.assertEqual(len(data), 1024)
        lines = data.split(b"\r\n")
        self.assertEqual(lines[-1], b"")
        self.assertEqual([len(line) for line in lines[:-1]], [72] * 13 + [60])
        self.assertEqual(lines[0] + b"\r\n", FIRST_LINE)
        self.assertEqual(lines[13], chargenLine(13)[:60])
        self.assertEqual(ring.position, 14)
        proto.datagramReceived(b"", PEER)
        self.assertEqual(transport.sent[1][0][:74], chargenLine(14))
        self.assertEqual(ring.position, 28)

    def test_chargenWraps(self) -> None:
        ring = ChargenRing(90)
        data = ring.datagram()
        self.assertEqual(data[:74], chargenLine(90))
        self.assertEqual(data[5 * 74 : 6 * 74], FIRST_LINE)
        self.assertEqual(ring.position, 9)

    def test_daytime(self) -> None:
        clock = Clock()
        proto = DaytimeDatagram(clock, newYork)
        transport = listen(proto)
        proto.datagramReceived(b"", PEER)
        self.assertEqual(transport.sent, [(b"05 FEB 2026 09:03:07 EST\r\n", PEER)])

    def test_time(self) -> None:
        clock = Clock()
        clock.advance(XINETD_TIME[0])
        proto = TimeDatagram(clock)
        transport = listen(proto)
        proto.datagramReceived(b"abc", PEER)
        self.assertEqual(transport.sent, [(XINETD_TIME[1], PEER)])

    def test_privilegedPortsAnsweredByDefault(self) -> None:
        """
        xinetd 2.3.15 answers datagrams from any source port, even 7.
        """
        proto = EchoDatagram()
        transport = listen(proto)
        proto.datagramReceived(b"x", ("127.0.0.1", 7))
        self.assertEqual(transport.sent, [(b"x", ("127.0.0.1", 7))])

    def test_refusePrivilegedPorts(self) -> None:
        """
        With C{refusePrivilegedPorts}, datagrams from ports below 1024 are
        dropped and logged, as xinetd 2.3.14 did to break echo loops.
        """
        clock = Clock()
        for name in ("echo", "chargen", "daytime", "time"):
            service = internalFor(config(name, SocketType.DGRAM))
            proto = service.datagramProtocol(clock, refusePrivilegedPorts=True)
            transport = listen(proto)
            with capturedLogs() as events:
                proto.datagramReceived(b"x", ("10.0.0.1", 1023))
            self.assertEqual(transport.sent, [])
            self.assertEqual(len(events), 1)
            self.assertEqual((events[0]["host"], events[0]["port"]), ("10.0.0.1", 1023))
            proto.datagramReceived(b"x", ("10.0.0.1", 1024))
            self.assertEqual(len(transport.sent), 1)
