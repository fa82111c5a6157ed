# -*- test-case-name: tests.unit.test_redirect,tests.integration.test_redirect -*-
"""
Redirect services (xinetd's C{redirect = HOST PORT}): each accepted
connection is relayed to a TCP target, by the daemon itself (no process).

The client is not read until the target connection is up, so nothing it
sends early is lost.  Then bytes flow both ways with flow control: each
transport is a streaming producer for the other, so the daemon buffers at
most about one transport buffer per direction whatever either peer does.
An end of file on one side is passed on as a half-close to the other
(C{shutdown(SHUT_WR)}), and the reply still flows back; the relay ends when
both sides have sent their end of file, or when either connection is lost
(the other is then closed once what it still has to receive is sent, or
dropped after C{closeTimeout}).

Compared with xinetd 2.3.15.3 (C{src/redirect.c}, and measured): xinetd
forks a process per connection that connects with a blocking C{connect()}
(no timeout but the kernel's), relays in 1500-byte blocking reads and
writes, and ends the whole relay at the first end of file from either
side: it does not half-close, so a reply sent after the client's end of
file is lost.  Both sockets get C{TCP_NODELAY}, as here.  xinetd resolves
C{HOST} once, when the configuration is loaded (the first address; an
IPv4 one unless C{HOST} contains C{:}); C{connectTCP} resolves it for each
connection, through the reactor's resolver (not blocking the reactor), with
the same family rule.  A failed connection is logged by xinetd only in its
own diagnostics (C{can't connect to remote host ...}); the client's socket
is closed, which resets it when it had sent data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import attrs
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from twinetd import logs
from twinetd._twistedcompat import cancelCall
from twinetd.child import peerFromTransport
from twinetd.hangup import PausedReading, Watcher, hangupWatcher
from twinetd.model import Peer

#: Seconds allowed for the connection to the target (resolution included).
DEFAULT_CONNECT_TIMEOUT = 30.0
#: Seconds a connection being closed may take to deliver what it still
#: holds before it is aborted.
DEFAULT_CLOSE_TIMEOUT = 30.0


@attrs.frozen
class Traffic:
    """
    What one redirected connection carried (xinetd's C{TRAFFIC} counts).

    @ivar bytesIn: bytes read from the client (sent on to the target).
    @ivar bytesOut: bytes read from the target (sent on to the client).
    @ivar connected: whether the target connection was ever established;
        xinetd logs C{TRAFFIC} only then.
    @ivar duration: seconds from the client's connection to the end.
    """

    bytesIn: int
    bytesOut: int
    connected: bool
    duration: float


class _Side:
    """
    The state of one of the two connections of a relay.

    @ivar name: C{"client"} or C{"target"}, for messages.
    @ivar transport: the connection, once it is up.
    @ivar reading: its reading, paused and resumed by the relay, once it is
        up.
    @ivar readDone: its end of file was received.
    @ivar writeShut: its write side was (or is being) shut down.
    @ivar consuming: the other side's producer is registered with it.
    @ivar closing: the relay asked for its connection to be closed.
    @ivar lost: its connection is closed.
    @ivar received: bytes read from it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: ITransport | None = None
        self.reading: PausedReading | None = None
        self.readDone = False
        self.writeShut = False
        self.consuming = False
        self.closing = False
        self.lost = False
        self.received = 0

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.lost

    @property
    def paused(self) -> bool:
        """
        Whether the relay paused its reading.
        """
        return self.reading is not None and self.reading.paused

    def pause(self) -> None:
        if self.open and not (self.readDone or self.closing):
            assert self.reading is not None
            self.reading.pause()

    def resume(self) -> None:
        # A transport whose end of file was read must not read again.
        if self.open and not (self.readDone or self.closing):
            assert self.reading is not None
            self.reading.resume()

    def consume(self, producer: _Side) -> None:
        """
        Take C{producer}'s bytes with flow control: its reading pauses
        while this side's transport cannot take more.
        """
        assert self.transport is not None
        IConsumer(self.transport).registerProducer(_Reader(producer), True)
        self.consuming = True

    def unregister(self) -> None:
        if self.consuming:
            self.consuming = False
            assert self.transport is not None
            IConsumer(self.transport).unregisterProducer()

    def shutWrite(self) -> None:
        """
        Pass an end of file on (C{shutdown(SHUT_WR)}).
        """
        if self.writeShut or self.closing or not self.open:
            return
        self.writeShut = True
        # A registered producer would hold the half-close back.
        self.unregister()
        assert self.transport is not None
        cast(Any, self.transport).loseWriteConnection()

    def close(self) -> None:
        """
        Close the connection once what it holds is sent.
        """
        if not self.open or self.closing:
            return
        self.closing = True
        if self.reading is not None:
            # Closing: a peer gone now is noticed by the close itself.
            self.reading.close()
        self.unregister()
        assert self.transport is not None
        self.transport.loseConnection()

    def abort(self) -> None:
        if self.open:
            assert self.transport is not None
            cast(Any, self.transport).abortConnection()


@implementer(IPushProducer)
class _Reader:
    """
    One side's reading, as a producer for the other side's transport.
    """

    def __init__(self, side: _Side) -> None:
        self._side = side

    def pauseProducing(self) -> None:
        self._side.pause()

    def resumeProducing(self) -> None:
        self._side.resume()

    def stopProducing(self) -> None:
        # The consumer's connection is gone; the relay learns it from that
        # connection's connectionLost and closes this side itself.
        pass


@implementer(IHalfCloseableProtocol)
class _TargetProtocol(Protocol):
    def __init__(self, relay: RedirectProtocol) -> None:
        self._relay = relay

    def connectionMade(self) -> None:
        assert self.transport is not None
        self._relay._targetConnected(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self._relay._received(self._relay.target, data)

    def readConnectionLost(self) -> None:
        self._relay._endOfFile(self._relay.target)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._relay._lost(self._relay.target)


class _TargetFactory(ClientFactory):
    noisy = False

    def __init__(self, relay: RedirectProtocol) -> None:
        self._relay = relay

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return _TargetProtocol(self._relay)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._relay._connectFailed(reason)


@implementer(IHalfCloseableProtocol)
class RedirectProtocol(Protocol):
    """
    Relays one accepted TCP connection to a TCP target.

    @ivar client: the accepted connection's state.
    @ivar target: the target connection's state.
    @ivar log: where events go (L{twinetd.logs}).
    """

    log = logs.log

    def __init__(
        self,
        serviceId: str,
        target: tuple[str, int],
        reactor: IReactorTCP,
        connectTimeout: float = DEFAULT_CONNECT_TIMEOUT,
        onEnded: Callable[[Traffic], None] | None = None,
        closeTimeout: float = DEFAULT_CLOSE_TIMEOUT,
        keepAlive: bool = False,
        hangups: Watcher | None = None,
    ) -> None:
        """
        @param serviceId: the service's id, for logs.
        @param target: C{redirect}'s (host, port); a host name is resolved
            for each connection.
        @param reactor: connects to the target; must also provide
            L{IReactorTime} (the connect and close timeouts, durations).
        @param connectTimeout: seconds allowed to reach the target.
        @param onEnded: called once, with the counts, when both connections
            are closed (or the target was never reached).
        @param closeTimeout: seconds a connection being closed (its peer
            gone, both ends of file seen, or L{stop}) may take to deliver
            what it still holds before it is aborted.
        @param keepAlive: set C{SO_KEEPALIVE} on the target connection
            (xinetd does so for C{flags = KEEPALIVE}).
        @param hangups: watches paused sockets; by default the reactor's
            own L{twinetd.hangup.HangupWatcher}.  A side whose reading is
            paused counts as gone at a reset, or when its end of file came
            and its bytes then waited C{closeTimeout} for the other side.
        """
        self.serviceId = serviceId
        self.targetAddress = target
        self._reactor = reactor
        self._clock = IReactorTime(reactor)
        self._connectTimeout = connectTimeout
        self._closeTimeout = closeTimeout
        self._keepAlive = keepAlive
        self._hangups = hangups if hangups is not None else hangupWatcher(reactor)
        self._onEnded = onEnded
        self.client = _Side("client")
        self.target = _Side("target")
        self._connector: IConnector | None = None
        self._targetDone = False
        self._everConnected = False
        self._pending: list[bytes] = []
        self._peer: Peer | None = None
        self._startTime = 0.0
        self._abortCall: IDelayedCall | None = None
        self._endedCalled = False

    # the client's connection

    def connectionMade(self) -> None:
        assert self.transport is not None
        self._attach(self.client, self.transport, None)
        self._peer = peerFromTransport(cast(ITCPTransport, self.transport))
        self._startTime = self._clock.seconds()
        # Nothing is read from the client until the target can take it.
        self.client.pause()
        _tcpOptions(self.transport, False)
        host, port = self.targetAddress
        self._connector = self._reactor.connectTCP(
            host, port, _TargetFactory(self), timeout=self._connectTimeout
        )

    def dataReceived(self, data: bytes) -> None:
        self._received(self.client, data)

    def readConnectionLost(self) -> None:
        self._endOfFile(self.client)

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost(self.client)

    def stop(self) -> None:
        """
        The daemon is shutting down: stop connecting, close both
        connections once what they hold is sent, abort them after the close
        timeout.
        """
        self._stopConnecting()
        self._closeAll()

    # the target's connection

    def _targetConnected(self, transport: ITransport) -> None:
        self._connector = None
        self._everConnected = True
        self._attach(self.target, transport, self._closeTimeout)
        if self.client.lost:
            transport.loseConnection()
            return
        _tcpOptions(transport, self._keepAlive)
        # From now on the client's bytes wait only for a target that does not
        # read them (before, for the connection).
        assert self.client.reading is not None
        self.client.reading.patience = self._closeTimeout
        pending, self._pending = self._pending, []
        for data in pending:
            transport.write(data)
        if self.client.readDone:
            self.target.shutWrite()
        else:
            self.target.consume(self.client)
        self.client.consume(self.target)
        self.client.resume()
        if self.client.readDone and self.target.readDone:
            self._closeAll()

    def _connectFailed(self, reason: Failure) -> None:
        self._connector = None
        if self._targetDone:
            return
        self._targetDone = True
        if not self.client.lost:
            assert self._peer is not None
            host, port = self.targetAddress
            logs.emit(
                logs.REDIRECT_FAILED,
                self.log,
                service=self.serviceId,
                host=self._peer.remoteHost,
                port=self._peer.remotePort,
                targetHost=host,
                targetPort=port,
                reason=reason.getErrorMessage(),
            )
            self._pending = []
            self.client.close()
        self._maybeEnded()

    def _stopConnecting(self) -> None:
        connector, self._connector = self._connector, None
        if connector is not None and not self._targetDone:
            self._targetDone = True
            connector.stopConnecting()

    # both sides

    def _other(self, side: _Side) -> _Side:
        return self.target if side is self.client else self.client

    def _received(self, side: _Side, data: bytes) -> None:
        side.received += len(data)
        other = self._other(side)
        if other.open and not (other.writeShut or other.closing):
            assert other.transport is not None
            other.transport.write(data)
        elif other.transport is None and not self._targetDone:
            # Only if the client was read before the target is up.
            self._pending.append(data)

    def _endOfFile(self, side: _Side) -> None:
        side.readDone = True
        other = self._other(side)
        if other.open:
            # The end of file is passed on; the reply keeps flowing back.
            other.shutWrite()
        if self.client.readDone and self.target.readDone:
            self._closeAll()

    def _lost(self, side: _Side) -> None:
        if side.lost:
            return
        side.lost = True
        if side.reading is not None:
            side.reading.close()
        # Twisted drops the registered producer of a lost connection itself.
        side.consuming = False
        if side is self.client:
            self._stopConnecting()
        other = self._other(side)
        if other.open:
            other.close()
            self._scheduleAbort()
        if side is self.target:
            self._targetDone = True
        self._maybeEnded()

    def _closeAll(self) -> None:
        for side in (self.client, self.target):
            if side.open:
                side.close()
                self._scheduleAbort()

    def _attach(
        self, side: _Side, transport: ITransport, patience: float | None
    ) -> None:
        side.transport = transport

        def gone(reset: bool) -> None:
            # Its peer left while its bytes waited for the other side.
            self.log.info(
                "{service}: {side} gone while its data waited ({how})",
                service=self.serviceId,
                side=side.name,
                how="reset" if reset else "end of file, no progress",
                twinetdClientGone=side is self.client,
                reset=reset,
            )
            side.abort()

        side.reading = PausedReading(
            transport, self._hangups, self._clock, patience, gone
        )

    # the end

    def _scheduleAbort(self) -> None:
        if self._abortCall is None:
            self._abortCall = self._clock.callLater(self._closeTimeout, self._abort)

    def _abort(self) -> None:
        self._abortCall = None
        self.client.abort()
        self.target.abort()

    def _maybeEnded(self) -> None:
        if self._endedCalled or not self.client.lost:
            return
        if not (self._targetDone or self.target.lost):
            return
        self._endedCalled = True
        self._abortCall = cancelCall(self._abortCall)
        traffic = Traffic(
            bytesIn=self.client.received,
            bytesOut=self.target.received,
            connected=self._everConnected,
            duration=self._clock.seconds() - self._startTime,
        )
        if self._onEnded is not None:
            self._onEnded(traffic)


def _tcpOptions(transport: ITransport, keepAlive: bool) -> None:
    # xinetd sets TCP_NODELAY on both sockets of a redirect, and
    # SO_KEEPALIVE on the target's for flags = KEEPALIVE.
    tcp = ITCPTransport(transport, None)
    if tcp is not None:
        tcp.setTcpNoDelay(True)
        if keepAlive:
            tcp.setTcpKeepAlive(True)
