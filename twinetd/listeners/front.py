# -*- test-case-name: tests.unit.test_factory -*-
"""
The per-connection front of a C{wait = no} stream service: a wrapping
protocol that stays the connection's protocol from its first byte to its
last.

The front sends C{banner}, asks the gate (limits, then access control)
about the client and, when it is admitted, sends C{banner_success} and
forwards everything, both ways, to the protocol the service's mode
chooses (L{twinetd.listeners.connections.ConnectionFactory.serve}), whose
transport it is: as L{twisted.protocols.policies.ProtocolWrapper} and
Twisted's PROXY wrapper do, never by replacing C{transport.protocol}
(which, under a wrapping transport such as TLS, would send the client's
bytes nowhere).  A refused client gets C{banner_fail} and is closed with a
C{FAIL} record.

Nothing is read from the client while the gate decides; bytes that arrive
anyway (decrypted in the same read as the TLS handshake's end) wait in the
front and reach the service's protocol first.  Over TLS the front asks the
gate once the handshake is over, so that the client's certificate is known.
A handed-off service's protocol gets the socket's own transport: the
socket is the child's.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any, cast
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IFileDescriptorReceiver,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProtocol,
    IPullProducer,
    IPushProducer,
    ISSLTransport,
    ISystemHandle,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementedBy, implementer, providedBy

from twinetd import logs
from twinetd._twistedcompat import cancelCall
from twinetd.child import peerFromTransport
from twinetd.hangup import PausedReading
from twinetd.listeners.base import Runtime
from twinetd.logs.ident import queryIdent
from twinetd.model import Peer, ServiceConfig
from twinetd.policy.gate import Admission, Admit
from twinetd.relay import IByteTransparent

log = Logger()


def readBanner(config: ServiceConfig, path: str | None) -> bytes:
    """
    A banner file's bytes, read for each connection as xinetd does (so an
    edited banner shows at once); a file that cannot be read sends nothing
    and is logged.
    """
    if path is None:
        return b""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        log.warn(
            "{service}: cannot read banner {path}: {error}",
            service=config.id,
            path=path,
            error=e.strerror,
        )
        return b""


#: Seconds a client of a handed-off service may take to receive its banners
#: (the socket is handed over only once they are sent) before it is dropped.
BANNER_TIMEOUT = 10.0


@implementer(IPullProducer)
class _Sent:
    """
    What the front wrote, and when it has all reached the kernel: a pull
    producer, registered while something is unsent, whom Twisted asks for
    more once its buffer is empty.

    @ivar unsent: whether some of it is still in Twisted's buffer.
    """

    unsent = False
    _registered = False

    def __init__(self, transport: ITransport) -> None:
        self._transport = transport
        self._then: Callable[[], None] | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._registered:
            self._registered = True
            # Twisted asks for more at once, then each time its buffer
            # empties: only the latter counts (nothing is unsent yet).
            IConsumer(self._transport).registerProducer(self, False)
        self.unsent = True
        self._transport.write(data)

    def whenSent(self, then: Callable[[], None]) -> None:
        """
        Call C{then} once everything written has reached the kernel.
        """
        if self.unsent:
            self._then = then
        else:
            then()

    def stop(self) -> None:
        """
        Stop tracking; must precede C{loseConnection} (a registered pull
        producer would be asked for more instead of the connection closing)
        and the service's own producers.
        """
        self._then = None
        if self._registered:
            self._registered = False
            IConsumer(self._transport).unregisterProducer()

    def resumeProducing(self) -> None:
        if not self.unsent:
            return
        self.unsent = False
        then = self._then
        self.stop()
        if then is not None:
            then()

    def stopProducing(self) -> None:
        self._then = None


#: Seconds a TLS client may take to finish its handshake before it is
#: dropped (nothing is decided, let alone started, before it is over).
HANDSHAKE_TIMEOUT = 30.0


class Serving(TypingProtocol):
    """
    What a L{Front} needs of the factory that made it
    (L{twinetd.listeners.connections.ConnectionFactory}).
    """

    config: ServiceConfig
    runtime: Runtime
    serviceLog: logs.ServiceLog
    admit: Admit

    @property
    def handsOff(self) -> bool: ...

    def serve(self, admission: Admission, peer: Peer) -> Protocol: ...

    def pause(self, seconds: int) -> object: ...

    def switched(self, front: Front) -> None: ...

    def ended(self, connection: Any) -> None: ...


def _transportInterfaces(transport: ITransport) -> tuple[Any, ...]:
    # What the front, as its service's transport, provides: its own
    # transport's interfaces (ITCPTransport, ISystemHandle, ISSLTransport,
    # the producer and consumer ones, ...), not its protocol-side ones,
    # which the front declares itself.  Kept per class when the class
    # alone declares them (a TCP or UNIX server: every connection).
    spec = providedBy(transport)
    cls = type(transport)
    byClass = spec is implementedBy(cls)  # type: ignore[no-untyped-call]
    if byClass and cls in _interfacesOfClass:
        return _interfacesOfClass[cls]
    protocolSide = (IHalfCloseableProtocol, IHandshakeListener, IFileDescriptorReceiver)
    found = tuple(
        interface
        for interface in spec
        if not interface.isOrExtends(IProtocol) and interface not in protocolSide
    )
    if byClass:
        _interfacesOfClass[cls] = found
    return found


_interfacesOfClass: dict[type, tuple[Any, ...]] = {}


def _declare(front: Front, interfaces: tuple[Any, ...]) -> None:
    # directlyProvides(front, *interfaces), with the declaration it makes
    # kept per set of interfaces: directlyProvides normalises its arguments
    # and looks the declaration up in zope.interface's weak cache at each
    # call (twice per connection), then stores it as __provides__.
    key = (type(front), interfaces)
    declaration = _declarations.get(key)
    if declaration is None:
        directlyProvides(front, *interfaces)
        _declarations[key] = front.__provides__
    else:
        front.__provides__ = declaration


_declarations: dict[tuple[type, tuple[Any, ...]], Any] = {}


class _Relay(Protocol):
    """
    The transport side of a wrapping protocol: what the protocol it wraps
    calls on its transport, relayed to its own (as
    L{twisted.protocols.policies.ProtocolWrapper} relays it).
    """

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def writeSequence(self, data: Any) -> None:
        assert self.transport is not None
        self.transport.writeSequence(data)

    def loseConnection(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()

    def abortConnection(self) -> None:
        cast(Any, self.transport).abortConnection()

    def loseWriteConnection(self) -> None:
        cast(Any, self.transport).loseWriteConnection()

    def getPeer(self) -> Any:
        assert self.transport is not None
        return self.transport.getPeer()

    def getHost(self) -> Any:
        assert self.transport is not None
        return self.transport.getHost()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        IConsumer(self.transport).registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        IConsumer(self.transport).unregisterProducer()

    def pauseProducing(self) -> None:
        IPushProducer(self.transport).pauseProducing()

    def resumeProducing(self) -> None:
        IPushProducer(self.transport).resumeProducing()

    def stopProducing(self) -> None:
        IPushProducer(self.transport).stopProducing()

    @property
    def plainSocket(self) -> socket.socket | None:
        """
        The connection's socket when the bytes on it are the client's own
        (TCP or UNIX, a PROXY header already read), or C{None} under TLS:
        what a mode may read or write directly (after the bytes the front
        already delivered to it).
        """
        current: object = self.transport
        while current is not None:
            if ISSLTransport.providedBy(current):
                return None
            below = getattr(current, "transport", None)
            if below is None:
                handle = ISystemHandle(current, None)
                found = handle.getHandle() if handle is not None else None
                return found if isinstance(found, socket.socket) else None
            current = below
        return None

    @property
    def disconnecting(self) -> bool:
        return bool(getattr(self.transport, "disconnecting", False))

    def __getattr__(self, name: str) -> Any:
        # Anything else of the transport (getHandle, setTcpNoDelay,
        # getPeerCertificate, ...), as ProtocolWrapper relays it.
        if name.startswith("__") or "transport" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["transport"], name)


@implementer(IHandshakeListener, IByteTransparent)
class Front(_Relay):
    """
    The protocol of every accepted connection of a C{wait = no} stream
    service, from its first byte to its last: banners and the gate, then
    a wrapper that forwards to the service's protocol and is its
    transport (L{_Relay}; see the module's docstring).

    @ivar wrappedProtocol: the service's protocol, once the client is
        admitted (and, for a handed-off service, its banners are sent).
    @ivar peer: the client, once the front has asked the gate.
    """

    factory: Serving
    wrappedProtocol: IProtocol | None = None
    peer: Peer | None = None
    # What zope.interface says it provides (L{_declare}).
    __provides__: Any

    def __init__(self) -> None:
        self._gone = False
        self._begun = False
        self._reading: PausedReading | None = None
        self._sent: _Sent | None = None
        self._waiting: Admission | None = None
        self._timeout: IDelayedCall | None = None
        self._early: list[bytes] = []
        self._provides: tuple[Any, ...] = ()

    # the connection's start

    def makeConnection(self, transport: ITransport) -> None:
        self._provides = _transportInterfaces(transport)
        _declare(self, self._provides)
        Protocol.makeConnection(self, transport)  # type: ignore[no-untyped-call]

    def connectionMade(self) -> None:
        assert self.transport is not None
        if ISSLTransport.providedBy(self.transport):
            # TLS sends its records (the reply, then close_notify) as small
            # writes: with Nagle's algorithm the last waits for the client's
            # delayed ACK, 40 ms at the end of every connection (stunnel
            # sets TCP_NODELAY too).
            with contextlib.suppress(AttributeError, OSError):
                cast(Any, self.transport).setTcpNoDelay(True)
            # The handshake needs the socket read: the gate is asked once
            # it is over (handshakeCompleted), with the client's certificate.
            self._timeout = self.factory.runtime.clock.callLater(
                HANDSHAKE_TIMEOUT, self._handshakeTimedOut
            )
            return
        self._begin()

    def handshakeCompleted(self) -> None:
        if not self._begun and not self._gone:
            self._cancelTimeout()
            self._begin()

    def _handshakeTimedOut(self) -> None:
        self._timeout = None
        if not self._gone and not self._begun:
            self._dropped("did not finish its TLS handshake", HANDSHAKE_TIMEOUT)

    def _begin(self) -> None:
        assert self.transport is not None
        self._begun = True
        runtime = self.factory.runtime
        # Nothing is read from the client until the gate has decided; a
        # client that resets meanwhile is dropped at once (its end of file
        # is not a departure: it may have sent its whole request).
        self._reading = PausedReading(
            self.transport, runtime.hangups, runtime.clock, None, self._clientGone
        )
        self._sent = _Sent(self.transport)
        config = self.factory.config
        self._sent.write(readBanner(config, config.banner))
        peer = self.peer = peerFromTransport(
            cast(ITCPTransport, self.transport), accepted=runtime.clock.seconds()
        )
        decision = self.factory.admit(peer)
        if isinstance(decision, Deferred):
            decision.addCallback(self._decided).addErrback(self._broken)
        else:
            # Decided at once (most connections): no Deferred to go through.
            try:
                self._decided(decision)
            except Exception:
                self._broken(Failure())  # type: ignore[no-untyped-call]
        # Most decisions come at once, before the reactor can read anything:
        # once the connection is served or closed its reading is closed,
        # and this does nothing.  Reading is paused only when the decision
        # has not come (a name lookup: the client is watched meanwhile) or
        # when a handed-off connection's banners must reach the kernel
        # first (_waiting: not watched, as before a decision that came).
        self._reading.pause(watch=self._waiting is None)

    def _broken(self, failure: Failure) -> None:
        # A bug must not leave the client hanging, paused, forever.
        log.failure(
            "{service}: while deciding on a connection",
            failure,
            service=self.factory.config.id,
        )
        self._close()

    def _decided(self, admission: Admission) -> None:
        config = self.factory.config
        serviceLog = self.factory.serviceLog
        if admission.pause:
            self.factory.pause(admission.pause)
        if admission.reason is not None:
            serviceLog.fail(admission.reason, self.peer, admission.detail)
            if serviceLog.wantsUseridOnFailure:
                _queryIdent(self.factory, self.peer)
            self._close(readBanner(config, config.bannerFail))
            return
        if self._gone:
            admission.release()
            return
        assert self._sent is not None
        self._sent.write(readBanner(config, config.bannerSuccess))
        if serviceLog.wantsUseridOnSuccess:
            _queryIdent(self.factory, self.peer)
        if self.factory.handsOff and self._sent.unsent:
            # The child gets the socket itself: the banners must reach the
            # kernel first, without blocking the daemon for a client that
            # does not read them.
            self._waiting = admission
            clock = self.factory.runtime.clock
            self._timeout = clock.callLater(BANNER_TIMEOUT, self._bannerTimedOut)

            def sent() -> None:
                # Not from inside Twisted's write handler, which calls this.
                clock.callLater(0, self._bannerSent)

            self._sent.whenSent(sent)
            return
        self._serve(admission)

    def _bannerSent(self) -> None:
        admission, self._waiting = self._waiting, None
        if admission is None or self._gone:
            return
        self._cancelTimeout()
        self._serve(admission)

    def _bannerTimedOut(self) -> None:
        self._timeout = None
        if not self._gone:
            self._dropped("did not take its banner", BANNER_TIMEOUT)

    def _dropped(self, what: str, seconds: float) -> None:
        assert self.transport is not None
        peer = self.peer or peerFromTransport(cast(ITCPTransport, self.transport))
        log.warn(
            "{service}: client {host} port {port} {what} within {seconds} "
            "seconds; dropped",
            service=self.factory.config.id,
            host=peer.remoteHost,
            port=peer.remotePort,
            what=what,
            seconds=seconds,
            twinetdBannerTimeout=True,
        )
        cast(Any, self.transport).abortConnection()

    def _cancelTimeout(self) -> None:
        self._timeout = cancelCall(self._timeout)

    def _serve(self, admission: Admission) -> None:
        assert self.transport is not None and self.peer is not None
        assert self._reading is not None and self._sent is not None
        self._sent.stop()
        handsOff = self.factory.handsOff
        inner = self.wrappedProtocol = self.factory.serve(admission, self.peer)
        self.factory.switched(self)
        if IHalfCloseableProtocol.providedBy(inner):
            # The transport asks its protocol, the front, at each end of
            # file: the service's protocol decides, as if it were there.
            # Not alsoProvides: its declaration is new to zope.interface's
            # cache each time, which then computes the resolution order
            # again (~30 times the cost, every connection).
            _declare(self, (*self._provides, IHalfCloseableProtocol))
        # Reading resumes before the service's protocol starts, which may
        # pause it again.
        self._reading.resume()
        self._reading.close()
        # A handed-off connection's socket becomes the child's: its
        # protocol gets the socket's own transport (the front still hears
        # of the connection's end, and forwards it).
        inner.makeConnection(self.transport if handsOff else self)  # type: ignore[no-untyped-call]
        early, self._early = self._early, []
        for data in early:
            if self._gone or self.wrappedProtocol is None:
                break
            self.wrappedProtocol.dataReceived(data)

    # the end

    def _close(self, data: bytes = b"") -> None:
        if self.transport is not None and not self._gone:
            if self._reading is not None:
                self._reading.close()
            if self._sent is not None:
                self._sent.stop()
            self.transport.write(data)
            self.transport.loseConnection()

    def _clientGone(self, reset: bool) -> None:
        if self.transport is not None and not self._gone:
            cast(Any, self.transport).abortConnection()

    def stop(self) -> None:
        """
        The daemon stops: a connection still waiting for its decision (or
        its banners) is closed.
        """
        self._close()

    # protocol side: forwarded to the service's protocol once there is one

    def dataReceived(self, data: bytes) -> None:
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(data)
        else:
            self._early.append(data)

    def readConnectionLost(self) -> None:
        # Provided only when the service's protocol provides it.
        cast(Any, self.wrappedProtocol).readConnectionLost()

    def writeConnectionLost(self) -> None:
        cast(Any, self.wrappedProtocol).writeConnectionLost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._gone = True
        self._early = []
        if self._reading is not None:
            self._reading.close()
        if self._sent is not None:
            self._sent.stopProducing()
        self._cancelTimeout()
        admission, self._waiting = self._waiting, None
        if admission is not None:
            admission.release()
        inner = self.wrappedProtocol
        try:
            if inner is not None:
                inner.connectionLost(reason)
        finally:
            self.factory.ended(self)


def _queryIdent(factory: Serving, peer: Peer | None) -> None:
    """
    Ask the client's USERID (RFC 1413) in the background: it never delays
    the connection, and logs only if an answer comes.  A UNIX-socket client
    has no address to ask.
    """
    serviceLog = factory.serviceLog
    assert peer is not None
    if peer.address is None:
        return

    def answered(text: str | None) -> None:
        if text is not None:
            serviceLog.userid(text)

    queryIdent(
        factory.runtime.tcp,
        peer.remoteAddress,
        peer.remotePort,
        peer.localAddress,
        peer.localPort,
    ).addCallback(answered)
