"""
The per-connection bridge: one child per TCP connection, its standard input
and output relayed to the client.

On Twisted's POSIX reactors the bridge makes the child's standard input and
output pipes itself and relays them with L{twinetd.relay.PipeRelay}:
C{splice(2)} between the pipes and the socket when the client is a plain
socket, C{read}/C{write} of 64 KiB otherwise; on other reactors (and fakes)
through Twisted's process pipes.  Standard error is always a Twisted pipe,
its lines logged.

Flow control runs both ways: the child's output is not read while the
client does not take it, and the socket is not read while the child does
not read.  The daemon buffers at most about one read (64 KiB) per
direction beyond the kernel's buffers, whatever the child or the client do.

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
from typing import TYPE_CHECKING, Any, Protocol, cast

from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IProcessTransport,
    IPushProducer,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from twinetd._twistedcompat import cancelCall
from twinetd.child import ChildConnection, ChildProcess, peerFromTransport, spawnFailed
from twinetd.hangup import PausedReading, Watcher, hangupWatcher
from twinetd.model import Peer
from twinetd.relay import ChildPipes, PipeRelay, RelayLoop, relayLoop
from twinetd.spawn import PosixSpawner, Spawner

if TYPE_CHECKING:
    from twinetd.child import ChildSetup


class _Stdio(Protocol):
    """
    What the bridge needs of the relay of the child's standard input and
    output (L{PipeRelay}, or L{_ProcessPipes}).
    """

    bytesIn: int
    bytesOut: int
    outputDone: bool

    def clientData(self, data: bytes) -> None: ...

    def clientEnded(self) -> None: ...

    def close(self) -> None: ...


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
        self._bridge.clientBlocked()

    def resumeProducing(self) -> None:
        self._bridge.clientUnblocked()

    def stopProducing(self) -> None:
        # The child's standard input is gone; not a reason to drop the client
        # (the reply may still come), but keep reading so that the client's
        # departure is noticed.
        self._bridge.clientUnblocked()


class _ProcessPipes:
    """
    The child's standard input and output as Twisted's process pipes (for
    reactors that are not Twisted's POSIX ones, and fakes): the child is a
    streaming producer for the transport, the transport one for the child's
    standard input.
    """

    bytesIn = 0
    bytesOut = 0
    outputDone = False
    _stdinOpen = True
    _outputRegistered = True

    def __init__(
        self, bridge: BridgeProtocol, process: IProcessTransport, transport: ITransport
    ) -> None:
        self._bridge = bridge
        self._process = process
        self._transport = transport
        IConsumer(transport).registerProducer(_ChildOutput(process), True)
        cast(Any, process).registerProducer(_ClientInput(bridge), True)

    def clientData(self, data: bytes) -> None:
        self.bytesIn += len(data)
        if self._stdinOpen:
            self._process.write(data)

    def clientEnded(self) -> None:
        if self._stdinOpen:
            self._stdinOpen = False
            cast(Any, self._process).unregisterProducer()
            self._process.closeStdin()

    def childStdout(self, data: bytes) -> None:
        if not self.outputDone:
            self.bytesOut += len(data)
            self._transport.write(data)

    def childFDClosed(self, childFD: int) -> None:
        if childFD == 0:
            self._stdinOpen = False
            # Keep reading the client, to notice its departure.
            self._bridge.clientUnblocked()
        elif childFD == 1:
            self.outputEnded()

    def outputEnded(self) -> None:
        self._unregisterOutput()
        self.outputDone = True
        self._bridge.outputEnded()

    def close(self) -> None:
        self.clientEnded()
        self._unregisterOutput()
        self.outputDone = True

    def _unregisterOutput(self) -> None:
        if self._outputRegistered:
            self._outputRegistered = False
            IConsumer(self._transport).unregisterProducer()
            # A paused child would otherwise never be read again.
            cast(Any, self._process).resumeProducing()


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
        pipes = self._bridge._pipes
        if childFD == 1 and pipes is not None:
            pipes.childStdout(data)
        else:
            super().childDataReceived(childFD, data)

    def childConnectionLost(self, childFD: int) -> None:
        super().childConnectionLost(childFD)
        pipes = self._bridge._pipes
        if pipes is not None:
            pipes.childFDClosed(childFD)


def _relayLoopFor(spawner: Spawner) -> RelayLoop | None:
    # The bridge's own pipes need a reactor that watches any descriptor,
    # and a spawner that gives the child descriptors as they are.
    if isinstance(spawner, PosixSpawner):
        return relayLoop(spawner.reactor)
    return None


@implementer(IHalfCloseableProtocol)
class BridgeProtocol(ChildConnection):
    """
    Relays one TCP connection to a child process started for it.

    The constructor is L{ChildConnection}'s, plus C{hangups}; the kill
    delay is also the time from the client's departure to C{SIGTERM}.

    @ivar process: the child's transport, once started.
    @ivar child: the child's process protocol, once its start was
        attempted.
    @ivar peer: the client as the listener saw it (with its accept time),
        if it gives it; else taken from the transport.
    @ivar relay: the relay of the child's standard input and output, when
        the bridge made their pipes itself (L{twinetd.relay}).
    """

    peer: Peer | None = None
    process: IProcessTransport | None = None
    child: ChildProcess | None = None
    relay: PipeRelay | None = None
    _peer: Peer | None = None
    _stdio: _Stdio | None = None
    _pipes: _ProcessPipes | None = None
    _processEnded = False
    _ownPipes = False
    _abortCall: IDelayedCall | None = None
    _reading: PausedReading | None = None

    def __init__(
        self,
        setup: ChildSetup,
        onEnded: Callable[[], None] | None = None,
        hangups: Watcher | None = None,
    ) -> None:
        """
        As L{ChildConnection}.

        @param hangups: watches the paused socket; by default the clock's
            own L{twinetd.hangup.HangupWatcher} when it is a reactor.
        """
        super().__init__(setup, onEnded)
        if hangups is None:
            hangups = hangupWatcher(setup.clock)
        self._hangups = hangups

    @property
    def bytesIn(self) -> int:
        """
        Bytes read from the client.
        """
        return 0 if self._stdio is None else self._stdio.bytesIn

    @property
    def bytesOut(self) -> int:
        """
        Bytes sent to the client.
        """
        return 0 if self._stdio is None else self._stdio.bytesOut

    # TCP side

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        peer = self._peer = self.peer or peerFromTransport(
            cast(ITCPTransport, transport)
        )
        loop = _relayLoopFor(self._spawner)
        self._ownPipes = loop is not None
        pipes: ChildPipes | None = None
        try:
            plan = self._makePlan(peer)
            self.child = _BridgeChild(self, peer)
            if loop is None:
                self._watchClient(None)
                self._spawner.spawn(self.child, plan)
                return
            pipes = ChildPipes()
            try:
                self._spawner.spawn(self.child, plan, pipes.childFDs())
            except BaseException:
                pipes.closeAll()
                raise
            pipes.started()
        except Exception as e:
            self._spawnFailed(e)
            return
        relay = self.relay = PipeRelay(loop, transport, pipes, self)
        self._stdio = relay
        self._watchClient(relay.clientProducer)
        relay.start()

    def _watchClient(self, producer: IPushProducer | None) -> None:
        assert self.transport is not None
        self._reading = PausedReading(
            self.transport,
            self._hangups,
            self._clock,
            self._killDelay,
            self._gone,
            producer,
        )

    def _spawnFailed(self, error: Exception) -> None:
        assert self._peer is not None and self.transport is not None
        spawnFailed(self.serviceLog, self._peer, error)
        self._processEnded = self._childDone = True
        self._closeConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._stdio is not None:
            self._stdio.clientData(data)

    def readConnectionLost(self) -> None:
        # The client's end of file is the child's: the connection stays open
        # for the reply.
        if self._stdio is not None:
            self._stdio.clientEnded()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._connectionDone = True
        self.serviceLog.relayed(self.bytesIn, self.bytesOut)
        if self._reading is not None:
            self._reading.close()
        self._abortCall = cancelCall(self._abortCall)
        if self._stdio is not None:
            self._stdio.close()
        if self.process is not None and not self._processEnded:
            self.process.loseConnection()
            assert self.child is not None
            self.child.terminateLater(self._killDelay)
        self._checkChildDone()
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
        self._drop()

    def _drop(self) -> None:
        if not self._connectionDone and self.transport is not None:
            if self._reading is not None:
                self._reading.close()
            if self._stdio is not None:
                # The socket is the transport's again before it goes.
                self._stdio.close()
            cast(Any, self.transport).abortConnection()

    def _closeConnection(self) -> None:
        if self.transport is not None and not self._connectionDone:
            if self._reading is not None:
                # Closing: a peer gone now is noticed by the writes.
                self._reading.close()
            if self._stdio is not None:
                self._stdio.close()
            self.transport.loseConnection()

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
        self._drop()

    # what the relay says (RelayEvents)

    def clientBlocked(self) -> None:
        """
        The client's bytes wait for the child: its reading is paused, and
        its departure watched.
        """
        if not self._connectionDone and self._reading is not None:
            self._reading.pause()

    def clientUnblocked(self) -> None:
        """
        The client is read again.
        """
        if not self._connectionDone and self._reading is not None:
            self._reading.resume()

    def clientFailed(self) -> None:
        """
        The client's socket failed: the connection is lost.
        """
        self._drop()

    def outputEnded(self) -> None:
        """
        The child's standard output ended, and all of it went to the
        client: the connection closes.
        """
        self._closeConnection()
        self._checkChildDone()

    # child side

    def _childStarted(self, process: IProcessTransport) -> None:
        self.process = process
        if not self._ownPipes:
            assert self.transport is not None
            self._stdio = self._pipes = _ProcessPipes(self, process, self.transport)

    def _childEnded(self) -> None:
        self._processEnded = True
        self._checkChildDone()

    def _checkChildDone(self) -> None:
        # Over once it exited and its output ended: processEnded waits for
        # Twisted's pipes only (standard error with the bridge's own pipes).
        if self._childDone or not self._processEnded:
            return
        if self._stdio is not None and not self._stdio.outputDone:
            return
        self._childDone = True
        self._closeConnection()
        self._maybeEnded()
