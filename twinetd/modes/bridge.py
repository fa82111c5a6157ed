"""
The per-connection bridge: one child per TCP connection, its standard input
and output relayed to the client.

Flow control runs both ways: the child is a streaming producer for the TCP
transport (its pipes are not read while the socket's send buffer is full)
and the TCP transport is one for the child's standard input (the socket is
not read while the child does not read).  The daemon buffers at most about
one transport buffer per direction, whatever the child or the client do.

The client's end of file closes the child's standard input, and the
connection stays open for the reply (half-close).  While the socket is not
read, the client's departure is still noticed (L{twinetd.hangup}): a reset
at once; an end of file once its bytes have waited the kill delay without
the child taking any more of them (the child then gets C{SIGTERM} at once,
the kill delay being spent).  The child closing its
standard output, or exiting, closes the connection once everything it wrote
is sent.  A child that outlives its client gets its pipes closed, then
C{SIGTERM} and later C{SIGKILL} (to its whole process group when it has
one, see L{twinetd.spawn.IProcessGroup}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IProcessTransport,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from twinetd import logs
from twinetd.child import ChildConnection, ChildProcess, peerFromTransport
from twinetd.errors import SpawnError
from twinetd.hangup import PausedReading, Watcher, hangupWatcher
from twinetd.launch import LaunchPlan
from twinetd.model import Peer
from twinetd.spawn import Spawner


@implementer(IPushProducer)
class _ChildOutput:
    """
    The child's output pipes as a producer for the TCP transport.
    """

    def __init__(self, process: IProcessTransport) -> None:
        self._process = process

    def pauseProducing(self) -> None:
        cast(Any, self._process).pauseProducing()

    def resumeProducing(self) -> None:
        cast(Any, self._process).resumeProducing()

    def stopProducing(self) -> None:
        # The bridge handles the connection's end itself (connectionLost).
        pass


@implementer(IPushProducer)
class _ClientInput:
    """
    The TCP transport as a producer for the child's standard input.
    """

    def __init__(self, bridge: BridgeProtocol) -> None:
        self._bridge = bridge

    def pauseProducing(self) -> None:
        self._bridge._pauseClient()

    def resumeProducing(self) -> None:
        self._bridge._resumeClient()

    def stopProducing(self) -> None:
        # The child's standard input is gone; not a reason to drop the client
        # (the reply may still come), but keep reading so that the client's
        # departure is noticed.
        self._bridge._resumeClient()


class _BridgeChild(ChildProcess):
    """
    The bridge's child: its standard output goes to the client.
    """

    def __init__(self, bridge: BridgeProtocol, peer: Peer) -> None:
        super().__init__(
            bridge.serviceLog,
            peer,
            bridge._clock,
            bridge._killDelay,
            bridge._childEnded,
        )
        self._bridge = bridge

    def connectionMade(self) -> None:
        super().connectionMade()
        assert self.transport is not None
        self._bridge._childStarted(self.transport)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 1:
            self._bridge._childStdout(data)
        else:
            super().childDataReceived(childFD, data)

    def childConnectionLost(self, childFD: int) -> None:
        super().childConnectionLost(childFD)
        self._bridge._childFDClosed(childFD)


@implementer(IHalfCloseableProtocol)
class BridgeProtocol(ChildConnection):
    """
    Relays one TCP connection to a child process started for it.

    The constructor is L{ChildConnection}'s, plus C{hangups}; C{killDelay}
    is also the time from the client's departure to C{SIGTERM}.

    @ivar process: the child's transport, once started.
    @ivar child: the child's process protocol, once its start was
        attempted.
    @ivar peer: the client as the listener saw it (with its accept time),
        if it gives it; else taken from the transport.
    @ivar bytesIn: bytes read from the client.
    @ivar bytesOut: bytes sent to the client.
    """

    peer: Peer | None = None
    bytesIn = 0
    bytesOut = 0
    process: IProcessTransport | None = None
    child: ChildProcess | None = None
    _peer: Peer | None = None
    _stdinOpen = False
    _outputRegistered = False
    _abortCall: IDelayedCall | None = None
    _reading: PausedReading | None = None

    def __init__(
        self,
        serviceLog: logs.ServiceLog,
        makePlan: Callable[[Peer], LaunchPlan],
        spawner: Spawner,
        clock: IReactorTime,
        killDelay: float = 5.0,
        onEnded: Callable[[], None] | None = None,
        hangups: Watcher | None = None,
    ) -> None:
        """
        As L{ChildConnection}.

        @param hangups: watches the paused socket; by default the clock's
            own L{twinetd.hangup.HangupWatcher} when it is a reactor.
        """
        super().__init__(serviceLog, makePlan, spawner, clock, killDelay, onEnded)
        self._hangups = hangups if hangups is not None else hangupWatcher(clock)

    # TCP side

    def connectionMade(self) -> None:
        assert self.transport is not None
        self._reading = PausedReading(
            self.transport, self._hangups, self._clock, self._killDelay, self._gone
        )
        peer = self._peer = self.peer or peerFromTransport(
            cast(ITCPTransport, self.transport)
        )
        try:
            plan = self._makePlan(peer)
            self.child = _BridgeChild(self, peer)
            self._spawner.spawn(self.child, plan)
        except SpawnError as e:
            self._spawnFailed(str(e))
        except Exception as e:
            self.log.failure("while starting {service}", service=self.serviceId)
            self._spawnFailed(f"{type(e).__name__}: {e}")

    def _spawnFailed(self, message: str) -> None:
        assert self._peer is not None and self.transport is not None
        self.serviceLog.spawnFailed(self._peer, message)
        self._childDone = True
        self._closeConnection()

    def dataReceived(self, data: bytes) -> None:
        self.bytesIn += len(data)
        if self.process is not None and self._stdinOpen:
            self.process.write(data)

    def readConnectionLost(self) -> None:
        # The client's end of file is the child's: the connection stays open
        # for the reply.
        self._closeStdin()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._connectionDone = True
        self.serviceLog.relayed(self.bytesIn, self.bytesOut)
        if self._reading is not None:
            self._reading.close()
        if self._abortCall is not None and self._abortCall.active():
            self._abortCall.cancel()
        self._abortCall = None
        if self.process is not None and not self._childDone:
            self._closeStdin()
            self._unregisterOutput()
            self.process.loseConnection()
            assert self.child is not None
            self.child.terminateLater(self._killDelay)
        self._maybeEnded()

    def stop(self) -> None:
        """
        The daemon is shutting down (xinetd's SIGTERM "terminates all running
        servers"): the child gets C{SIGTERM} now and C{SIGKILL} after the kill
        delay; the connection is closed once what the child wrote is sent, or
        dropped after the kill delay.
        """
        if self.child is not None:
            self.child.terminate()
        if not self._connectionDone and self.transport is not None:
            self._closeConnection()
            self._abortCall = self._clock.callLater(self._killDelay, self._abort)

    def _abort(self) -> None:
        self._abortCall = None
        if not self._connectionDone and self.transport is not None:
            cast(Any, self.transport).abortConnection()

    def _closeConnection(self) -> None:
        if self.transport is not None and not self._connectionDone:
            if self._reading is not None:
                # Closing: a peer gone now is noticed by the writes.
                self._reading.close()
            self._unregisterOutput()
            self.transport.loseConnection()

    def _pauseClient(self) -> None:
        if not self._connectionDone and self._reading is not None:
            self._reading.pause()

    def _resumeClient(self) -> None:
        if not self._connectionDone and self._reading is not None:
            self._reading.resume()

    def _gone(self, reset: bool) -> None:
        # The client left while the child was not taking its bytes.
        assert self.transport is not None and self._peer is not None
        self.log.info(
            "{service}: client {host} port {port} gone while its data waited "
            "for the child ({how})",
            service=self.serviceId,
            host=self._peer.remoteHost,
            port=self._peer.remotePort,
            how="reset" if reset else "end of file, no progress",
            twinetdClientGone=True,
            reset=reset,
        )
        if not reset and self.child is not None:
            # Its bytes already waited the kill delay: SIGTERM now.
            self.child.terminate()
        cast(Any, self.transport).abortConnection()

    # child side

    def _childStarted(self, process: IProcessTransport) -> None:
        self.process = process
        self._stdinOpen = True
        assert self.transport is not None
        IConsumer(self.transport).registerProducer(_ChildOutput(process), True)
        self._outputRegistered = True
        cast(Any, process).registerProducer(_ClientInput(self), True)

    def _childStdout(self, data: bytes) -> None:
        if not self._connectionDone and self.transport is not None:
            self.bytesOut += len(data)
            self.transport.write(data)

    def _childFDClosed(self, childFD: int) -> None:
        if childFD == 0:
            self._stdinOpen = False
            # Keep reading the client, to notice its departure.
            self._resumeClient()
        elif childFD == 1:
            self._closeConnection()

    def _childEnded(self) -> None:
        self._childDone = True
        self._stdinOpen = False
        self._closeConnection()
        self._maybeEnded()

    def _closeStdin(self) -> None:
        if self.process is not None and self._stdinOpen:
            self._stdinOpen = False
            cast(Any, self.process).unregisterProducer()
            self.process.closeStdin()

    def _unregisterOutput(self) -> None:
        if self._outputRegistered:
            self._outputRegistered = False
            assert self.transport is not None
            IConsumer(self.transport).unregisterProducer()
            if self.process is not None and not self._childDone:
                # A paused child would otherwise never be read again.
                cast(Any, self.process).resumeProducing()
