# -*- test-case-name: tests.unit.test_proxy -*-
"""
The PROXY protocol (v1 and v2, as HAProxy and most balancers send it) on a
C{haproxy:} listener, safely: twinetd believes a header only from the
balancers C{twinetd_proxy_from} names.

Each connection's first protocol is a L{ProxyHeaderWrapper} (a
L{ProtocolWrapper} with the header parsers of Twisted's
C{HAProxyProtocolWrapper}): a connection from a
source outside C{twinetd_proxy_from} is refused at once; one whose first
bytes are not a valid header, or that sends none within
L{HEADER_TIMEOUT} seconds, is refused too; each refusal is logged as
C{FAIL} (reason C{address}).  Only once the header is read does the
service's front start (unlike Twisted's own wrapper, which starts it before
the header): the gate, every log line, ident and the program's environment
see the client the header names (C{getPeer}), and the address the client
reached (C{getHost}).  A header with no address (C{LOCAL}, a balancer's
health check, or C{UNKNOWN}) leaves the balancer's own.
"""

from __future__ import annotations

from typing import Any, cast
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    ILoggingContext,
    IProtocol,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from twinetd import logs
from twinetd._twistedcompat import (
    InvalidProxyHeader,
    ProxyInfo,
    V1Parser,
    V2Parser,
    cancelCall,
)
from twinetd.child import peerFromTransport
from twinetd.listeners.base import Runtime
from twinetd.model import ServiceConfig
from twinetd.policy.access import REASON_ADDRESS, checkAddress
from twinetd.relay import IByteTransparent

#: Seconds a connection may take to send its PROXY header.
HEADER_TIMEOUT = 10.0

#: A v2 header's first twelve bytes; a v1 header's first six.
_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_SIGNATURE = b"PROXY "


class Serving(TypingProtocol):
    """
    What the wrapper needs of the listener: its current record (a reload
    may change C{twinetd_proxy_from}), its log and the clock.
    """

    config: ServiceConfig
    serviceLog: logs.ServiceLog
    runtime: Runtime


@implementer(IHalfCloseableProtocol, IByteTransparent)
class ProxyHeaderWrapper(ProtocolWrapper):
    """
    The PROXY header first, from an allowed balancer; then the service's
    front, which sees the client the header names.  The client's end of
    file reaches the front when its protocol half-closes (a bridged
    program's standard input closes, the reply still flows back); for one
    that does not, the connection closes once what was written is sent.
    """

    factory: ProxyWrappingFactory
    _timeout: IDelayedCall | None = None
    _started = False
    _refused = False
    _parser: V1Parser | V2Parser | None = None
    #: What the header said, once it is read.
    info: ProxyInfo | None = None

    def __init__(self, factory: ProxyWrappingFactory, wrapped: IProtocol) -> None:
        super().__init__(factory, wrapped)
        self._head = b""

    def makeConnection(self, transport: Any) -> None:
        # As ProtocolWrapper.makeConnection, without starting the wrapped
        # protocol: that waits for the header.
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)  # type: ignore[no-untyped-call]
        self.factory.registerProtocol(self)  # type: ignore[no-untyped-call]

    def connectionMade(self) -> None:
        listener = self.factory.listener
        balancer = peerFromTransport(cast(ITCPTransport, self.transport))
        address = balancer.address
        if address is not None:
            proxyFrom = listener.config.proxyFrom or ()
            if not checkAddress(proxyFrom, (), address).allowed:
                self._refuse("a PROXY header from outside twinetd_proxy_from")
                return
        self._timeout = listener.runtime.clock.callLater(
            HEADER_TIMEOUT, self._refuse, "no PROXY header in time"
        )

    def dataReceived(self, data: bytes) -> None:
        if self._started:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._refused:
            return
        if self._parser is None:
            self._head += data
            head, self._head = self._head, b""
            if head.startswith(_V2_SIGNATURE[: len(head)]) and len(head) < 16:
                self._head = head
                return
            if head.startswith(_V1_SIGNATURE[: len(head)]) and len(head) < 8:
                self._head = head
                return
            if head.startswith(_V2_SIGNATURE) and head[12] & 0xF0 == 0x20:
                self._parser = V2Parser()
            elif head.startswith(_V1_SIGNATURE):
                self._parser = V1Parser()
            else:
                self._refuse("no valid PROXY header")
                return
            data = head
        try:
            info, rest = self._parser.feed(data)
        except InvalidProxyHeader:
            self._refuse("no valid PROXY header")
            return
        if info is None:
            return
        self.info = info
        self._cancelTimeout()
        self._started = True
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]
        if rest:
            self.wrappedProtocol.dataReceived(rest)

    def getPeer(self) -> IAddress:
        # The client the header names (none: LOCAL or UNKNOWN, the
        # balancer's own).
        if self.info is not None and self.info.source is not None:
            return self.info.source
        assert self.transport is not None
        return self.transport.getPeer()

    def getHost(self) -> IAddress:
        if self.info is not None and self.info.destination is not None:
            return self.info.destination
        assert self.transport is not None
        return self.transport.getHost()

    def readConnectionLost(self) -> None:
        wrapped = self.wrappedProtocol
        if self._started and IHalfCloseableProtocol.providedBy(wrapped):
            wrapped.readConnectionLost()
        else:
            cast(Any, self.transport).loseConnection()

    def writeConnectionLost(self) -> None:
        wrapped = self.wrappedProtocol
        if self._started and IHalfCloseableProtocol.providedBy(wrapped):
            wrapped.writeConnectionLost()

    def _refuse(self, detail: str) -> None:
        self._timeout = None
        self._cancelTimeout()
        if self._refused or self._started:
            return
        self._refused = True
        listener = self.factory.listener
        balancer = peerFromTransport(cast(ITCPTransport, self.transport))
        listener.serviceLog.fail(REASON_ADDRESS, balancer, detail)
        cast(Any, self.transport).abortConnection()

    def _cancelTimeout(self) -> None:
        self._timeout = cancelCall(self._timeout)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancelTimeout()
        # The front hears of it whether it started or not (it is tracked
        # from its making).
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


class ProxyWrappingFactory(WrappingFactory[ProxyHeaderWrapper]):
    """
    Wraps a stream listener's factory: each connection starts with its
    PROXY header (L{ProxyHeaderWrapper}).

    @ivar listener: the listener, for its current record and log.
    """

    protocol = ProxyHeaderWrapper
    noisy = False

    def __init__(self, wrappedFactory: Any, listener: Serving) -> None:
        super().__init__(wrappedFactory)  # type: ignore[no-untyped-call]
        self.listener = listener

    def logPrefix(self) -> str:
        # As Twisted's HAProxyWrappingFactory: its port's lines ("... (PROXY)
        # starting on N") name the service.
        prefix = ILoggingContext(self.wrappedFactory).logPrefix()
        return f"{prefix} (PROXY)"
