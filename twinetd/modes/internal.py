# -*- test-case-name: tests.unit.test_internal,tests.integration.test_internal -*-
"""
xinetd's internal services: echo (RFC 862), discard (RFC 863), chargen
(RFC 864), daytime (RFC 867) and time (RFC 868), in stream and datagram
form, as plain Twisted protocols.  No process is ever spawned for them.

The bytes are those of xinetd 2.3.15.3 (C{src/builtins.c}), checked against
Debian's xinetd on loopback:

  - echo: stream echoes until the client's end of file, then closes;
    datagram replies with the first 2048 bytes (xinetd's C{DATAGRAM_SIZE}) of
    each datagram, an empty datagram with an empty one.
  - discard: stream reads until end of file, then closes; datagram does
    nothing.
  - chargen: lines of 72 characters plus CRLF from a ring of the 93 characters
    33 (C{!}) to 125 (xinetd never emits 126, C{~}), each line starting one
    character later; the start goes back to the beginning after 95 lines
    (so lines 93 and 94 repeat lines 0 and 1).  A datagram reply is 1024
    bytes: 13 full lines and a 60-character line, each with CRLF.
  - daytime: C{"%02d MON YYYY HH:MM:SS ZONE\\r\\n"} in local time, with an
    upper-case English month (C{25 NOV 2026 11:29:26 EST}); stream closes
    after writing it.
  - time: the seconds since 1900-01-01 UTC, modulo 2**32, as 4 big-endian
    bytes; stream closes after writing them.

xinetd keeps one chargen ring per daemon: datagram chargen advances it, and
each stream chargen (a forked child) starts where the ring stands and never
moves it.  L{ChargenRing} reproduces this when one ring is shared (pass the
same one to every service); by default each L{InternalService} has its own.

xinetd up to 2.3.14 ignored datagrams from source ports below 1024 ("Possible
Denial of Service attack") to break loops between two echo or chargen
services; 2.3.15 removed that check and answers every port, as twinetd does by
default.  C{refusePrivilegedPorts=True} restores the old check.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import interfaces
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import (
    DatagramProtocol,
    Protocol,
    ServerFactory,
    connectionDone,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twinetd.errors import ConfigError
from twinetd.model import ServiceConfig, SocketType

LocalTime = Callable[[float], time.struct_time]

log = Logger()

# xinetd's BUFFER_SIZE (daytime, chargen datagrams) and DATAGRAM_SIZE (echo).
CHARGEN_DATAGRAM_SIZE = 1024
ECHO_DATAGRAM_SIZE = 2048

# RFC 868: seconds from 1900-01-01 to 1970-01-01.
TIME_OFFSET = 2208988800

_MONTHS = (
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "MAY",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "OCT",
    "NOV",
    "DEC",
)

# xinetd's generate_line(): a ring buffer of 94 + 72 bytes filled with '!'
# (33) onwards, wrapping back to '!' when the next character would be '~'
# (126), so the cycle is 93 characters long.
_LINE_LENGTH = 72
_RING = bytes(33 + (i % 93) for i in range(94 + _LINE_LENGTH))
# The start goes back to 0 once fewer than 72 characters remain after it:
# starts 0..94, 95 lines per cycle.
_RING_STARTS = len(_RING) - _LINE_LENGTH + 1
_LINE = _LINE_LENGTH + 2
_CYCLE = b"".join(_RING[p : p + _LINE_LENGTH] + b"\r\n" for p in range(_RING_STARTS))
_TWO_CYCLES = _CYCLE * 2

# Lines written per resumeProducing() of stream chargen: bounded, one cycle.
CHARGEN_CHUNK_LINES = _RING_STARTS


def chargenLine(start: int, width: int = _LINE_LENGTH) -> bytes:
    """
    One chargen line as xinetd writes it.

    @param start: the ring position, 0 to 94.
    @param width: how many characters before the CRLF (72, or fewer for the
        last line of a datagram).
    """
    return _RING[start : start + width] + b"\r\n"


class ChargenRing:
    """
    xinetd's chargen ring position, shared between the chargen services that
    use the same ring.

    @ivar position: the start of the next line, 0 to 94.
    """

    def __init__(self, position: int = 0) -> None:
        self.position = position % _RING_STARTS

    def datagram(self) -> bytes:
        """
        The payload of one chargen datagram (1024 bytes), advancing the ring
        by one position per line (14), as xinetd's C{dgram_chargen}.
        """
        parts = []
        left = CHARGEN_DATAGRAM_SIZE
        while left > 2:
            size = min(_LINE, left)
            parts.append(chargenLine(self.position, size - 2))
            self.position = (self.position + 1) % _RING_STARTS
            left -= size
        return b"".join(parts)


def daytimeText(seconds: float, localtime: LocalTime = time.localtime) -> bytes:
    """
    RFC 867 daytime text as xinetd writes it, e.g. C{b"02 FEB 1991 12:31:42
    MST\\r\\n"}.

    @param seconds: seconds since the epoch.
    @param localtime: converts seconds to local broken-down time.
    """
    tm = localtime(int(seconds))
    zone = tm.tm_zone if tm.tm_zone is not None else time.strftime("%Z", tm)
    text = (
        f"{tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} {tm.tm_year} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {zone}\r\n"
    )
    return text.encode("ascii", "replace")


def timeBytes(seconds: float) -> bytes:
    """
    RFC 868 time: seconds since 1900-01-01 UTC, modulo 2**32 (as xinetd's
    unsigned arithmetic), 4 bytes big-endian.
    """
    return struct.pack("!I", (int(seconds) + TIME_OFFSET) % 2**32)


# -- stream protocols -------------------------------------------------------


@implementer(interfaces.IHalfCloseableProtocol)
class EchoStream(Protocol):
    """
    RFC 862 echo over TCP.  The transport is its own producer, so it stops
    reading while its write buffer is full (bounded memory); at the client's
    end of file the echoed bytes are flushed and the connection closed, as
    xinetd's C{stream_echo} does.
    """

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        interfaces.IConsumer(transport).registerProducer(
            interfaces.IPushProducer(transport), True
        )

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        transport = self.transport
        assert transport is not None
        # Unregister first: a paused self-producer would otherwise be resumed
        # instead of the connection being closed once the buffer drains.
        interfaces.IConsumer(transport).unregisterProducer()
        transport.loseConnection()

    def writeConnectionLost(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class DiscardStream(Protocol):
    """
    RFC 863 discard over TCP: read and drop everything until end of file.
    """

    def dataReceived(self, data: bytes) -> None:
        pass


@implementer(interfaces.IPullProducer)
class ChargenStream(Protocol):
    """
    RFC 864 chargen over TCP.  A pull producer: it writes one bounded chunk
    of lines each time the transport asks for more, never more.  Data from the
    client is ignored (xinetd shuts down the reading side).

    @ivar position: the ring position of the next line.
    """

    def __init__(self, ring: ChargenRing) -> None:
        # xinetd forks for stream chargen: the child starts where the daemon's
        # ring stands and its progress never returns to the daemon.
        self.position = ring.position
        self._producing = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        self._producing = True
        interfaces.IConsumer(self.transport).registerProducer(self, False)

    def dataReceived(self, data: bytes) -> None:
        pass

    def resumeProducing(self) -> None:
        if not self._producing or self.transport is None:
            return
        start = self.position * _LINE
        self.transport.write(_TWO_CYCLES[start : start + CHARGEN_CHUNK_LINES * _LINE])
        self.position = (self.position + CHARGEN_CHUNK_LINES) % _RING_STARTS

    def stopProducing(self) -> None:
        self._producing = False

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._producing = False


class _OneShotStream(Protocol):
    """
    Writes one payload when connected, then closes (xinetd's daytime and time
    never read).
    """

    def __init__(self, payload: Callable[[], bytes]) -> None:
        self._payload = payload

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._payload())
        self.transport.loseConnection()


class DaytimeStream(_OneShotStream):
    """
    RFC 867 daytime over TCP.
    """

    def __init__(self, clock: IReactorTime, localtime: LocalTime) -> None:
        super().__init__(lambda: daytimeText(clock.seconds(), localtime))


class TimeStream(_OneShotStream):
    """
    RFC 868 time over TCP.
    """

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__(lambda: timeBytes(clock.seconds()))


# -- datagram protocols -----------------------------------------------------


class _InternalDatagram(DatagramProtocol):
    """
    Answers each datagram to its sender with L{reply}.

    @ivar refusePrivilegedPorts: drop datagrams from source ports below 1024
        (xinetd 2.3.14 and earlier); off by default, as in xinetd 2.3.15.
    """

    def __init__(self, refusePrivilegedPorts: bool = False) -> None:
        self.refusePrivilegedPorts = refusePrivilegedPorts

    def reply(self, datagram: bytes) -> bytes | None:
        raise NotImplementedError()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if self.refusePrivilegedPorts and addr[1] < 1024:
            log.warn(
                "Possible Denial of Service attack from {host} {port}",
                host=addr[0],
                port=addr[1],
            )
            return
        answer = self.reply(datagram)
        if answer is not None and self.transport is not None:
            self.transport.write(answer, addr)


class EchoDatagram(_InternalDatagram):
    """
    RFC 862 echo over UDP: the same bytes back, truncated to 2048 as xinetd
    reads them.
    """

    def reply(self, datagram: bytes) -> bytes | None:
        return datagram[:ECHO_DATAGRAM_SIZE]


class DiscardDatagram(_InternalDatagram):
    """
    RFC 863 discard over UDP: no answer.
    """

    def reply(self, datagram: bytes) -> bytes | None:
        return None


class ChargenDatagram(_InternalDatagram):
    """
    RFC 864 chargen over UDP: one 1024-byte datagram per datagram received.
    """

    def __init__(self, ring: ChargenRing, refusePrivilegedPorts: bool = False) -> None:
        super().__init__(refusePrivilegedPorts)
        self.ring = ring

    def reply(self, datagram: bytes) -> bytes | None:
        return self.ring.datagram()


class DaytimeDatagram(_InternalDatagram):
    """
    RFC 867 daytime over UDP.
    """

    def __init__(
        self,
        clock: IReactorTime,
        localtime: LocalTime = time.localtime,
        refusePrivilegedPorts: bool = False,
    ) -> None:
        super().__init__(refusePrivilegedPorts)
        self.clock = clock
        self.localtime = localtime

    def reply(self, datagram: bytes) -> bytes | None:
        return daytimeText(self.clock.seconds(), self.localtime)


class TimeDatagram(_InternalDatagram):
    """
    RFC 868 time over UDP.
    """

    def __init__(
        self, clock: IReactorTime, refusePrivilegedPorts: bool = False
    ) -> None:
        super().__init__(refusePrivilegedPorts)
        self.clock = clock

    def reply(self, datagram: bytes) -> bytes | None:
        return timeBytes(self.clock.seconds())


# -- selection --------------------------------------------------------------


class InternalFactory(ServerFactory):
    """
    Builds one internal stream protocol per connection.
    """

    def __init__(self, build: Callable[[], Protocol]) -> None:
        self._build = build

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        proto = self._build()
        proto.factory = self
        return proto


#: A stream builtin: (ring, clock, localtime) to a protocol per connection.
StreamBuilder = Callable[["ChargenRing", IReactorTime, LocalTime], Protocol]
#: A datagram builtin: (ring, clock, localtime, refusePrivilegedPorts) to the
#: protocol answering every datagram of the port.
DatagramBuilder = Callable[
    ["ChargenRing", IReactorTime, LocalTime, bool], DatagramProtocol
]


@attrs.frozen
class Builtin:
    """
    One builtin in both its forms.
    """

    stream: StreamBuilder
    datagram: DatagramBuilder


#: Every builtin, by the name xinetd selects it by (the service name; the
#: C{SENSOR} flag selects C{sensor}, which behaves as discard).  The names
#: of L{twinetd.model.INTERNAL_SERVICES} are these without C{sensor} (a test
#: keeps the two equal).
BUILTINS: dict[str, Builtin] = {
    "echo": Builtin(
        stream=lambda ring, clock, localtime: EchoStream(),
        datagram=lambda ring, clock, localtime, refuse: EchoDatagram(refuse),
    ),
    "discard": Builtin(
        stream=lambda ring, clock, localtime: DiscardStream(),
        datagram=lambda ring, clock, localtime, refuse: DiscardDatagram(refuse),
    ),
    "chargen": Builtin(
        stream=lambda ring, clock, localtime: ChargenStream(ring),
        datagram=lambda ring, clock, localtime, refuse: ChargenDatagram(ring, refuse),
    ),
    "daytime": Builtin(
        stream=lambda ring, clock, localtime: DaytimeStream(clock, localtime),
        datagram=lambda ring, clock, localtime, refuse: DaytimeDatagram(
            clock, localtime, refuse
        ),
    ),
    "time": Builtin(
        stream=lambda ring, clock, localtime: TimeStream(clock),
        datagram=lambda ring, clock, localtime, refuse: TimeDatagram(clock, refuse),
    ),
}
BUILTINS["sensor"] = BUILTINS["discard"]


@attrs.frozen
class InternalService:
    """
    One of xinetd's builtins, chosen by L{internalFor}.

    @ivar name: the builtin: C{echo}, C{discard}, C{chargen}, C{daytime},
        C{time}, or C{sensor} (behaves as discard; recording the client in
        the deny list is the caller's job).
    @ivar socketType: L{SocketType.STREAM} or L{SocketType.DGRAM}.
    @ivar ring: the chargen ring; share one between services to reproduce
        xinetd's single per-daemon ring exactly.
    """

    name: str
    socketType: SocketType
    ring: ChargenRing = attrs.field(factory=ChargenRing, eq=False)

    @property
    def isSensor(self) -> bool:
        return self.name == "sensor"

    def buildStream(
        self, clock: IReactorTime, localtime: LocalTime = time.localtime
    ) -> Protocol:
        """
        A new stream protocol for one connection.

        @param clock: the source of time (daytime, time).
        @param localtime: converts seconds to local time (daytime).
        """
        if self.socketType is not SocketType.STREAM:
            raise ValueError(f"{self.name} is a {self.socketType.value} service")
        return BUILTINS[self.name].stream(self.ring, clock, localtime)

    def streamFactory(
        self, clock: IReactorTime, localtime: LocalTime = time.localtime
    ) -> InternalFactory:
        """
        A factory building L{buildStream} protocols.
        """
        return InternalFactory(lambda: self.buildStream(clock, localtime))

    def datagramProtocol(
        self,
        clock: IReactorTime,
        localtime: LocalTime = time.localtime,
        refusePrivilegedPorts: bool = False,
    ) -> DatagramProtocol:
        """
        The datagram protocol answering every datagram on the service's port.

        @param clock: the source of time (daytime, time).
        @param localtime: converts seconds to local time (daytime).
        @param refusePrivilegedPorts: ignore senders on ports below 1024, as
            xinetd up to 2.3.14 did.
        """
        if self.socketType is not SocketType.DGRAM:
            raise ValueError(f"{self.name} is a {self.socketType.value} service")
        return BUILTINS[self.name].datagram(
            self.ring, clock, localtime, refusePrivilegedPorts
        )


def internalFor(
    config: ServiceConfig, ring: ChargenRing | None = None
) -> InternalService:
    """
    Choose the builtin for an internal service as xinetd does: by the service
    name and socket type (C{id} plays no part), or the sensor when C{flags}
    has C{SENSOR}.

    @param config: the service; its C{types} should contain C{INTERNAL}.
    @param ring: the chargen ring to use, shared to match xinetd's one ring
        per daemon; a new one when omitted.
    @raise ConfigError: no such builtin for this name and socket type
        (xinetd: "No such internal service: NAME/TYPE - DISABLING").
    """
    name = "sensor" if "SENSOR" in config.flags else config.name
    if name == "tcpmux":
        raise ConfigError.at(
            config.source,
            config.name,
            "the tcpmux internal service is not supported",
            "type",
        )
    if name not in BUILTINS or config.socketType not in (
        SocketType.STREAM,
        SocketType.DGRAM,
    ):
        raise ConfigError.at(
            config.source,
            config.name,
            f"no such internal service: {name}/{config.socketType.value}",
            "type",
        )
    return InternalService(
        name, config.socketType, ChargenRing() if ring is None else ring
    )
