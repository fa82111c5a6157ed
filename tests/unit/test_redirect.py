"""
L{twinetd.modes.redirect} with fakes: StringTransport-based TCP transports,
MemoryReactorClock (its connectTCP records the attempt; the tests play the
connector's part).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    TimeoutError,
    UserError,
)
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IPushProducer,
    ITCPTransport,
)
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twinetd import logs
from twinetd.hangup import END_OF_FILE, RESET
from twinetd.modes.redirect import RedirectProtocol, Traffic
from twinetd.testing import FakeHangupWatcher

TARGET = ("192.0.2.7", 2323)
CONNECT_TIMEOUT = 7.0
CLOSE_TIMEOUT = 11.0


@implementer(ITCPTransport)
class FakeTCP(StringTransport):
    """
    A StringTransport with TCP's half-close and socket options.

    @ivar writeShut: C{loseWriteConnection} was called.
    @ivar noDelay: the last C{setTcpNoDelay} value.
    @ivar keepAlive: the last C{setTcpKeepAlive} value.
    """

    writeShut = False
    noDelay = False
    keepAlive = False

    def loseWriteConnection(self) -> None:
        self.writeShut = True

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepAlive = enabled


class Harness:
    """
    One redirect on a fake client transport, its fake reactor and events.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.events: list[dict[str, Any]] = []
        self.ended: list[Traffic] = []
        self.watcher = FakeHangupWatcher()
        kwargs.setdefault("hangups", self.watcher)
        self.relay = RedirectProtocol(
            "redir",
            TARGET,
            self.reactor,
            connectTimeout=CONNECT_TIMEOUT,
            onEnded=self.ended.append,
            closeTimeout=CLOSE_TIMEOUT,
            **kwargs,
        )
        self.relay.log = Logger(observer=self.events.append)
        self.client = FakeTCP(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 4000),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 51000),
        )
        self.relay.makeConnection(self.client)
        self.targetProtocol: Any = None
        self.target: FakeTCP | None = None

    @property
    def attempt(self) -> tuple[Any, ...]:
        [attempt] = self.reactor.tcpClients
        return tuple(attempt)

    def connectTarget(self) -> FakeTCP:
        factory = self.attempt[2]
        self.targetProtocol = factory.buildProtocol(
            IPv4Address("TCP", TARGET[0], TARGET[1])
        )
        self.target = FakeTCP(peerAddress=IPv4Address("TCP", *TARGET))
        self.targetProtocol.makeConnection(self.target)
        return self.target

    def failConnect(self, error: Exception) -> None:
        factory = self.attempt[2]
        factory.clientConnectionFailed(self.reactor.connectors[0], Failure(error))

    def clientLost(self, reason: Exception | None = None) -> None:
        self.client.connected = False
        self.relay.connectionLost(Failure(reason or ConnectionDone()))

    def targetLost(self, reason: Exception | None = None) -> None:
        assert self.target is not None
        self.target.connected = False
        self.targetProtocol.connectionLost(Failure(reason or ConnectionDone()))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("twinetdEvent") == kind]


class ConnectTests(SynchronousTestCase):
    def test_connectsToTargetWithTimeout(self) -> None:
        """
        The accepted connection starts a TCP connection to the target, with
        the connect timeout; the client gets TCP_NODELAY, as in xinetd.
        """
        h = Harness()
        host, port, _, timeout, bindAddress = h.attempt
        self.assertEqual((host, port, timeout, bindAddress), (*TARGET, 7.0, None))
        self.assertTrue(h.client.noDelay)

    def test_clientPausedUntilConnected(self) -> None:
        """
        The client is not read while the target connection is pending, and
        is read once it is up; the target gets TCP_NODELAY too.
        """
        h = Harness()
        self.assertEqual(h.client.producerState, "paused")
        target = h.connectTarget()
        self.assertEqual(h.client.producerState, "producing")
        self.assertTrue(target.noDelay)
        self.assertFalse(target.keepAlive)

    def test_keepAlive(self) -> None:
        """
        C{keepAlive} sets SO_KEEPALIVE on the target connection.
        """
        h = Harness(keepAlive=True)
        self.assertTrue(h.connectTarget().keepAlive)

    def test_earlyDataNotLost(self) -> None:
        """
        Data delivered before the target is up (a transport that delivers
        despite the pause) is sent to the target first, in order.
        """
        h = Harness()
        h.relay.dataReceived(b"early ")
        h.relay.dataReceived(b"bird")
        target = h.connectTarget()
        h.relay.dataReceived(b"!")
        self.assertEqual(target.value(), b"early bird!")

    def test_clientEndOfFileBeforeConnected(self) -> None:
        """
        A client's end of file before the target is up: the target gets the
        data, then the half-close; the client is not read again.
        """
        h = Harness()
        h.relay.dataReceived(b"request")
        h.relay.readConnectionLost()
        target = h.connectTarget()
        self.assertEqual(target.value(), b"request")
        self.assertTrue(target.writeShut)
        self.assertIsNone(target.producer)
        self.assertEqual(h.client.producerState, "paused")
        h.targetProtocol.dataReceived(b"reply")
        self.assertEqual(h.client.value(), b"reply")

    def test_refused(self) -> None:
        """
        A refused connection is logged with the service, the client, the
        target and the reason; the client is closed; onEnded runs once,
        when the client connection is gone, without traffic.
        """
        h = Harness()
        h.failConnect(ConnectionRefusedError())
        [event] = h.of(logs.REDIRECT_FAILED)
        self.assertEqual(
            (
                event["service"],
                event["host"],
                event["port"],
                event["targetHost"],
                event["targetPort"],
            ),
            ("redir", "127.0.0.1", 51000, *TARGET),
        )
        self.assertIn("refused", event["reason"])
        self.assertTrue(h.client.disconnecting)
        self.assertEqual(h.ended, [])
        h.clientLost()
        self.assertEqual(h.ended, [Traffic(0, 0, connected=False, duration=0.0)])

    def test_timeout(self) -> None:
        """
        The connector's timeout failure is logged and closes the client.
        """
        h = Harness()
        h.reactor.advance(CONNECT_TIMEOUT)
        h.failConnect(TimeoutError())
        [event] = h.of(logs.REDIRECT_FAILED)
        self.assertIn("timeout", event["reason"])
        self.assertTrue(h.client.disconnecting)
        h.clientLost()
        [traffic] = h.ended
        self.assertEqual(traffic.duration, CONNECT_TIMEOUT)
        self.assertFalse(traffic.connected)

    def test_clientGoneWhileConnecting(self) -> None:
        """
        A client that leaves while the target connection is pending stops
        the attempt; onEnded runs at once; the connector's resulting failure
        is not logged.
        """
        h = Harness()
        h.clientLost(ConnectionLost())
        self.assertTrue(h.reactor.connectors[0].stoppedConnecting)
        self.assertEqual(h.ended, [Traffic(0, 0, connected=False, duration=0.0)])
        h.failConnect(UserError())
        self.assertEqual(h.events, [])
        self.assertEqual(len(h.ended), 1)

    def test_failureLogText(self) -> None:
        """
        The failure event's text names the service, target, client, reason.
        """
        h = Harness()
        h.failConnect(ConnectionRefusedError())
        [event] = h.of(logs.REDIRECT_FAILED)
        self.assertEqual(
            formatEvent(event),
            "FAIL: redir can't connect to remote host 192.0.2.7 port 2323 for "
            "127.0.0.1: " + event["reason"],
        )


class RelayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.target = self.h.connectTarget()

    def test_halfCloseable(self) -> None:
        """
        Both protocols see half-closes instead of losing the connection.
        """
        self.assertTrue(IHalfCloseableProtocol.providedBy(self.h.relay))
        self.assertTrue(IHalfCloseableProtocol.providedBy(self.h.targetProtocol))

    def test_relayBothWays(self) -> None:
        """
        Client bytes go to the target, target bytes to the client.
        """
        self.h.relay.dataReceived(b"ping")
        self.h.targetProtocol.dataReceived(b"pong!")
        self.assertEqual(self.target.value(), b"ping")
        self.assertEqual(self.h.client.value(), b"pong!")

    def test_flowControlClientToTarget(self) -> None:
        """
        The client's reading is a streaming producer for the target: a full
        target buffer pauses the client, a drained one resumes it.
        """
        producer = self.target.producer
        self.assertTrue(IPushProducer.providedBy(producer))
        self.assertTrue(self.target.streaming)
        producer.pauseProducing()
        self.assertEqual(self.h.client.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(self.h.client.producerState, "producing")

    def test_flowControlTargetToClient(self) -> None:
        """
        The target's reading is a streaming producer for the client.
        """
        producer = self.h.client.producer
        self.assertTrue(self.h.client.streaming)
        producer.pauseProducing()
        self.assertEqual(self.target.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(self.target.producerState, "producing")

    def test_clientEndOfFile(self) -> None:
        """
        The client's end of file shuts the target's write side (after its
        producer is unregistered, which would hold the shutdown back); the
        reply still reaches the client, which stays open.
        """
        self.h.relay.dataReceived(b"question")
        self.h.relay.readConnectionLost()
        self.assertTrue(self.target.writeShut)
        self.assertIsNone(self.target.producer)
        self.assertFalse(self.h.client.disconnecting)
        self.assertFalse(self.target.disconnecting)
        self.h.targetProtocol.dataReceived(b"answer")
        self.assertEqual(self.h.client.value(), b"answer")
        self.assertEqual(self.h.ended, [])

    def test_targetEndOfFile(self) -> None:
        """
        The target's end of file shuts the client's write side; the client
        may still send.
        """
        self.h.targetProtocol.dataReceived(b"banner\n")
        self.h.targetProtocol.readConnectionLost()
        self.assertTrue(self.h.client.writeShut)
        self.assertIsNone(self.h.client.producer)
        self.assertFalse(self.h.client.disconnecting)
        self.h.relay.dataReceived(b"more")
        self.assertEqual(self.target.value(), b"more")

    def test_notResumedAfterEndOfFile(self) -> None:
        """
        A side whose end of file was read is never resumed (Twisted would
        read the end of file again); the other direction keeps its flow
        control.
        """
        self.target.producer.pauseProducing()
        self.h.relay.readConnectionLost()
        self.assertIsNone(self.target.producer)
        self.assertEqual(self.h.client.producerState, "paused")
        self.h.client.producer.pauseProducing()
        self.assertEqual(self.target.producerState, "paused")
        self.h.client.producer.resumeProducing()
        self.assertEqual(self.target.producerState, "producing")

    def test_bothEndsOfFile(self) -> None:
        """
        Both ends of file: both connections are closed; onEnded runs once,
        when both are gone, with the counts.
        """
        self.h.relay.dataReceived(b"12345")
        self.h.relay.readConnectionLost()
        self.h.targetProtocol.dataReceived(b"1234567")
        self.h.targetProtocol.readConnectionLost()
        self.assertTrue(self.h.client.disconnecting)
        self.assertTrue(self.target.disconnecting)
        self.h.clientLost()
        self.assertEqual(self.h.ended, [])
        self.h.reactor.advance(2)
        self.h.targetLost()
        self.assertEqual(self.h.ended, [Traffic(5, 7, connected=True, duration=2.0)])
        self.h.targetLost()
        self.h.clientLost()
        self.assertEqual(len(self.h.ended), 1)
        self.assertFalse(self.h.reactor.getDelayedCalls())

    def test_clientLost(self) -> None:
        """
        A client that is gone (reset) closes the target, which is aborted
        if it is not closed within the close timeout; onEnded once.
        """
        self.h.relay.dataReceived(b"abc")
        self.h.clientLost(ConnectionLost())
        self.assertTrue(self.target.disconnecting)
        self.assertIsNone(self.target.producer)
        self.assertFalse(self.target.disconnected)
        self.h.reactor.advance(CLOSE_TIMEOUT)
        self.assertTrue(self.target.disconnected)  # aborted
        self.assertEqual(self.h.ended, [])
        self.h.targetLost(ConnectionLost())
        self.assertEqual(
            self.h.ended, [Traffic(3, 0, connected=True, duration=CLOSE_TIMEOUT)]
        )

    def test_targetLost(self) -> None:
        """
        A target that is gone closes the client once what it holds is sent;
        a timely close cancels the abort.
        """
        self.h.targetProtocol.dataReceived(b"last words")
        self.h.targetLost(ConnectionLost())
        self.assertTrue(self.h.client.disconnecting)
        self.assertIsNone(self.h.client.producer)
        self.assertEqual(self.h.ended, [])
        self.h.clientLost()
        self.assertEqual(self.h.ended, [Traffic(0, 10, connected=True, duration=0.0)])
        self.assertFalse(self.h.reactor.getDelayedCalls())
        self.assertFalse(self.h.client.disconnected)

    def test_stop(self) -> None:
        """
        Stopping closes both connections, aborting them after the close
        timeout.
        """
        self.h.client.producer.pauseProducing()
        self.h.relay.stop()
        self.assertTrue(self.h.client.disconnecting)
        self.assertTrue(self.target.disconnecting)
        self.h.reactor.advance(CLOSE_TIMEOUT)
        self.assertTrue(self.h.client.disconnected)
        self.assertTrue(self.target.disconnected)
        self.h.clientLost()
        self.h.targetLost()
        self.assertEqual(len(self.h.ended), 1)

    def test_stopWhileConnecting(self) -> None:
        """
        Stopping during the connection attempt stops it and closes the
        client, without a failure event.
        """
        h = Harness()
        h.relay.stop()
        self.assertTrue(h.reactor.connectors[0].stoppedConnecting)
        self.assertTrue(h.client.disconnecting)
        h.failConnect(UserError())
        h.clientLost()
        self.assertEqual(h.events, [])
        self.assertEqual(len(h.ended), 1)


class PausedSideTests(SynchronousTestCase):
    """
    A side that leaves while the relay does not read it (its bytes wait for
    the other side) is noticed.
    """

    def setUp(self) -> None:
        self.h = Harness()
        self.target = self.h.connectTarget()

    def test_clientResetWhilePaused(self) -> None:
        """
        The client resets while the target does not read: the client is
        dropped, the target closed (aborted after the close timeout), and
        the relay ends.
        """
        watcher, client = self.h.watcher, self.h.client
        self.assertFalse(watcher.isWatched(client))
        self.target.producer.pauseProducing()
        self.assertTrue(watcher.isWatched(client))
        watcher.hangUp(client, RESET)
        self.assertTrue(client.disconnected)
        self.h.clientLost(ConnectionLost())
        self.assertTrue(self.target.disconnecting)
        self.assertFalse(watcher.isWatched(client))
        self.h.targetLost()
        self.assertEqual(len(self.h.ended), 1)
        [gone] = [e for e in self.h.events if "twinetdClientGone" in e]
        self.assertEqual((gone["side"], gone["reset"]), ("client", True))

    def test_clientEndOfFileWithoutProgress(self) -> None:
        """
        The client's end of file while its bytes wait for the target: after
        the close timeout without the target taking any, it counts as gone.
        """
        self.target.producer.pauseProducing()
        self.h.watcher.hangUp(self.h.client, END_OF_FILE)
        self.h.reactor.advance(CLOSE_TIMEOUT - 0.01)
        self.assertFalse(self.h.client.disconnected)
        self.h.reactor.advance(0.01)
        self.assertTrue(self.h.client.disconnected)

    def test_clientEndOfFileWithProgress(self) -> None:
        """
        A half-closed client whose bytes keep moving is not dropped.
        """
        producer = self.target.producer
        for _ in range(4):
            producer.pauseProducing()
            self.h.watcher.hangUp(self.h.client, END_OF_FILE)
            self.h.reactor.advance(CLOSE_TIMEOUT - 1)
            producer.resumeProducing()
        self.assertFalse(self.h.client.disconnected)

    def test_targetResetWhilePaused(self) -> None:
        """
        The target resets while the client does not read: the target is
        dropped and the client closed.
        """
        self.h.client.producer.pauseProducing()
        self.assertTrue(self.h.watcher.isWatched(self.target))
        self.h.watcher.hangUp(self.target, RESET)
        self.assertTrue(self.target.disconnected)
        self.h.targetLost(ConnectionLost())
        self.assertTrue(self.h.client.disconnecting)

    def test_connectingEndOfFileWaits(self) -> None:
        """
        While the target is being reached, the client's end of file is not
        a departure (the connect timeout bounds the wait); a reset is.
        """
        h = Harness()
        self.assertTrue(h.watcher.isWatched(h.client))
        h.watcher.hangUp(h.client, END_OF_FILE)
        h.reactor.advance(CONNECT_TIMEOUT - 0.1)
        self.assertFalse(h.client.disconnected)
        h.watcher.hangUp(h.client, RESET)
        self.assertTrue(h.client.disconnected)


class LogTests(SynchronousTestCase):
    def test_trafficText(self) -> None:
        """
        The TRAFFIC event reads as xinetd's line.
        """
        events: list[dict[str, Any]] = []
        logs.ServiceLog("redir", Logger(observer=events.append)).traffic(6, 0)
        [event] = events
        self.assertEqual(event["twinetdEvent"], logs.TRAFFIC)
        self.assertEqual((event["bytesIn"], event["bytesOut"]), (6, 0))
        self.assertEqual(formatEvent(event), "TRAFFIC: redir in=6(bytes) out=0(bytes)")
