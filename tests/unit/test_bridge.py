"""
L{twinetd.modes.bridge} with fakes: StringTransport, the fake process reactor and
its Clock.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twinetd import logs
from twinetd.child import ChildSetup
from twinetd.hangup import END_OF_FILE, RESET
from twinetd.launch import LaunchPlan
from twinetd.logs import MAX_STDERR_LINE, ServiceLog
from twinetd.model import Peer
from twinetd.modes.bridge import BridgeProtocol
from twinetd.spawn import ReactorSpawner
from twinetd.testing import FakeHangupWatcher, FakeProcess, MemoryProcessReactor

KILL_DELAY = 5.0


class Harness:
    """
    One bridge on a StringTransport, its fake reactor, its events.
    """

    def __init__(
        self,
        executable: str = "/usr/bin/server",
        newSession: bool = False,
        peer: Any = None,
        host: Any = None,
        makePlan: Any = None,
    ) -> None:
        self.reactor = MemoryProcessReactor(newSession=newSession)
        self.reactor.advance(100.0)
        self.events: list[dict[str, Any]] = []
        self.peers: list[Peer] = []
        self.ended = 0

        def plan(peer: Peer) -> LaunchPlan:
            self.peers.append(peer)
            return LaunchPlan(
                executable=executable,
                argv=(executable, "-x"),
                env=(("REMOTE_HOST", peer.remoteHost),),
            )

        def onEnded() -> None:
            self.ended += 1

        self.watcher = FakeHangupWatcher()
        setup = ChildSetup(
            ServiceLog("svc", logger=Logger(observer=self.events.append)),
            makePlan or plan,
            ReactorSpawner(self.reactor),
            self.reactor,
            KILL_DELAY,
        )
        self.protocol = BridgeProtocol(setup, onEnded=onEnded, hangups=self.watcher)
        self.transport = StringTransport(
            peerAddress=peer or IPv4Address("TCP", "192.0.2.7", 40000),
            hostAddress=host or IPv4Address("TCP", "127.0.0.1", 7000),
        )

    def connect(self) -> None:
        self.protocol.makeConnection(self.transport)

    @property
    def process(self) -> FakeProcess:
        [process] = self.reactor.spawned
        return process

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get(logs.EVENT_FIELD) == kind]

    def clientGone(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionLost()))

    def transportClosed(self) -> None:
        """
        The transport finished the close the bridge asked for.
        """
        assert self.transport.disconnecting
        self.protocol.connectionLost(Failure(ConnectionLost()))


class StartTests(SynchronousTestCase):
    def test_halfCloseable(self) -> None:
        """
        The bridge asks for half-close (the client's EOF is not the end).
        """
        self.assertTrue(IHalfCloseableProtocol.providedBy(Harness().protocol))

    def test_spawnsPlanForPeer(self) -> None:
        """
        The plan is built for the connection's peer and spawned with its
        executable, arguments and environment.
        """
        h = Harness()
        h.connect()
        self.assertEqual(h.peers, [Peer("tcp", "192.0.2.7", 40000, "127.0.0.1", 7000)])
        call = h.process.call
        self.assertEqual(call.executable, "/usr/bin/server")
        self.assertEqual(call.args, ("/usr/bin/server", "-x"))
        self.assertEqual(call.env, {"REMOTE_HOST": "192.0.2.7"})

    def test_ipv4MappedPeerKept(self) -> None:
        """
        On an IPv6 socket an IPv4 client keeps its C{::ffff:} form.
        """
        h = Harness(
            peer=IPv6Address("TCP", "::ffff:192.0.2.7", 40000),
            host=IPv6Address("TCP", "::ffff:127.0.0.1", 7000),
        )
        h.connect()
        self.assertEqual(h.peers[0].remoteHost, "::ffff:192.0.2.7")
        self.assertEqual(h.peers[0].remoteAddress, "192.0.2.7")

    def test_startEvent(self) -> None:
        """
        A start event names the service, pid and client.
        """
        h = Harness()
        h.connect()
        [event] = h.of(logs.START)
        self.assertEqual(
            (event["service"], event["pid"], event["host"], event["port"]),
            ("svc", 1001, "192.0.2.7", 40000),
        )
        self.assertEqual(event["log_format"], "START: {service} pid={pid} from={host}")


class RelayTests(SynchronousTestCase):
    def test_clientToChild(self) -> None:
        h = Harness()
        h.connect()
        h.protocol.dataReceived(b"hello ")
        h.protocol.dataReceived(b"world")
        self.assertEqual(h.process.written, [b"hello ", b"world"])

    def test_childToClient(self) -> None:
        h = Harness()
        h.connect()
        h.process.output(b"reply\n")
        self.assertEqual(h.transport.value(), b"reply\n")

    def test_stderrNotToClient(self) -> None:
        h = Harness()
        h.connect()
        h.process.output(b"oops\n", 2)
        self.assertEqual(h.transport.value(), b"")

    def test_halfClose(self) -> None:
        """
        The client's EOF closes the child's stdin and the connection stays
        open for the reply; the child closing stdout then closes it.
        """
        h = Harness()
        h.connect()
        h.protocol.dataReceived(b"question")
        h.protocol.readConnectionLost()
        self.assertTrue(h.process.stdinClosed)
        self.assertFalse(h.transport.disconnecting)
        h.process.fdLost(0)
        h.process.output(b"answer")
        self.assertEqual(h.transport.value(), b"answer")
        self.assertFalse(h.transport.disconnecting)
        h.process.fdLost(1)
        self.assertTrue(h.transport.disconnecting)
        # Nothing left registered that would hold the close back.
        self.assertIsNone(h.transport.producer)

    def test_childExitClosesConnection(self) -> None:
        """
        A child that exits closes the connection with loseConnection (its
        output already written is delivered), not an abort.
        """
        h = Harness()
        h.connect()
        h.process.output(b"last words")
        h.process.end(status=0)
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(h.transport.value(), b"last words")
        self.assertIsNone(h.transport.producer)

    def test_dataAfterStdinClosedDropped(self) -> None:
        h = Harness()
        h.connect()
        h.protocol.readConnectionLost()
        h.protocol.dataReceived(b"late")
        self.assertEqual(h.process.written, [])


class FlowControlTests(SynchronousTestCase):
    def test_childIsStreamingProducerForClient(self) -> None:
        """
        The TCP transport pausing pauses the child's output.
        """
        h = Harness()
        h.connect()
        self.assertTrue(h.transport.streaming)
        h.transport.producer.pauseProducing()
        self.assertTrue(h.process.paused)
        h.transport.producer.resumeProducing()
        self.assertFalse(h.process.paused)

    def test_clientIsStreamingProducerForChild(self) -> None:
        """
        The child's stdin pausing pauses reading the client.
        """
        h = Harness()
        h.connect()
        self.assertTrue(h.process.streaming)
        assert h.process.producer is not None
        h.process.producer.pauseProducing()
        self.assertEqual(h.transport.producerState, "paused")
        h.process.producer.resumeProducing()
        self.assertEqual(h.transport.producerState, "producing")

    def test_childClosingStdinResumesClient(self) -> None:
        """
        When the child's stdin goes away while the client is paused, the
        client is read again (so its departure is noticed) and the
        connection is not dropped.
        """
        h = Harness()
        h.connect()
        assert h.process.producer is not None
        h.process.producer.pauseProducing()
        h.process.fdLost(0)
        self.assertEqual(h.transport.producerState, "producing")
        self.assertFalse(h.transport.disconnecting)


def aborted(h: Harness) -> bool:
    # StringTransport.abortConnection sets "disconnected" (not "aborted").
    return bool(h.transport.disconnected)


class PausedClientTests(SynchronousTestCase):
    """
    A client that leaves while the bridge does not read it (its bytes wait
    for a child that does not read them) is noticed.
    """

    def paused(self) -> Harness:
        h = Harness()
        h.connect()
        assert h.process.producer is not None
        h.process.producer.pauseProducing()
        self.assertTrue(h.watcher.isWatched(h.transport))
        return h

    def test_watchedOnlyWhilePaused(self) -> None:
        h = Harness()
        h.connect()
        self.assertFalse(h.watcher.isWatched(h.transport))
        h = self.paused()
        assert h.process.producer is not None
        h.process.producer.resumeProducing()
        self.assertFalse(h.watcher.isWatched(h.transport))

    def test_resetTermAfterKillDelay(self) -> None:
        """
        A reset: the connection is dropped at once; the child's pipes are
        closed, SIGTERM follows the kill delay, SIGKILL as long again.
        """
        h = self.paused()
        h.watcher.hangUp(h.transport, RESET)
        self.assertTrue(aborted(h))
        h.clientGone()
        self.assertEqual(sorted(h.process.closedFDs), [0, 1, 2])
        h.reactor.advance(KILL_DELAY)
        self.assertEqual(h.process.signals, ["TERM"])
        h.reactor.advance(KILL_DELAY)
        self.assertEqual(h.process.signals, ["TERM", "KILL"])
        h.process.end(signal=9)
        self.assertEqual(h.ended, 1)
        [gone] = [e for e in h.events if e.get("twinetdClientGone")]
        self.assertEqual((gone["host"], gone["reset"]), ("192.0.2.7", True))

    def test_endOfFileWithoutProgress(self) -> None:
        """
        The client's end of file while its bytes wait: after the kill delay
        without the child taking any of them, the client counts as gone;
        the child gets SIGTERM then (the kill delay is spent), SIGKILL a
        kill delay later.
        """
        h = self.paused()
        h.watcher.hangUp(h.transport, END_OF_FILE)
        h.reactor.advance(KILL_DELAY - 0.01)
        self.assertFalse(aborted(h))
        self.assertEqual(h.process.signals, [])
        h.reactor.advance(0.01)
        self.assertTrue(aborted(h))
        self.assertEqual(h.process.signals, ["TERM"])
        h.clientGone()
        h.reactor.advance(KILL_DELAY)
        self.assertEqual(h.process.signals, ["TERM", "KILL"])

    def test_halfCloseWithProgressServed(self) -> None:
        """
        A client that half-closed is served while the child keeps taking
        its bytes, however long it all takes.
        """
        h = self.paused()
        producer = h.process.producer
        assert producer is not None
        for _ in range(5):
            h.watcher.hangUp(h.transport, END_OF_FILE)
            h.reactor.advance(KILL_DELAY - 1)
            producer.resumeProducing()
            producer.pauseProducing()
        producer.resumeProducing()
        h.protocol.readConnectionLost()
        h.reactor.advance(KILL_DELAY * 3)
        self.assertFalse(aborted(h))
        self.assertEqual(h.process.signals, [])
        self.assertTrue(h.process.stdinClosed)

    def test_notWatchedAfterClose(self) -> None:
        """
        Once the bridge closes the connection (the child exited) the watch
        ends.
        """
        h = self.paused()
        h.process.end(status=0)
        self.assertFalse(h.watcher.isWatched(h.transport))


class EndTests(SynchronousTestCase):
    def test_exitEvent(self) -> None:
        """
        The end event has the status, pid and duration.
        """
        h = Harness()
        h.connect()
        h.reactor.advance(2.5)
        h.process.end(status=3)
        [event] = h.of(logs.EXIT)
        self.assertEqual(
            (event["service"], event["pid"], event["status"], event["signal"]),
            ("svc", 1001, 3, None),
        )
        # Whole seconds, as xinetd counts them.
        self.assertEqual(event["duration"], 2)

    def test_exitEventSignal(self) -> None:
        h = Harness()
        h.connect()
        h.process.end(signal=9)
        [event] = h.of(logs.EXIT)
        self.assertEqual((event["status"], event["signal"]), (None, 9))
        self.assertIn("signal={signal}", event["log_format"])

    def test_clientGoneTermThenKill(self) -> None:
        """
        A vanished client's child gets its pipes closed at once, SIGTERM
        killDelay later and SIGKILL killDelay after that.
        """
        h = Harness()
        h.connect()
        h.clientGone()
        self.assertEqual(sorted(h.process.closedFDs), [0, 1, 2])
        h.reactor.advance(KILL_DELAY - 0.01)
        self.assertEqual(h.process.signals, [])
        h.reactor.advance(0.01)
        self.assertEqual(h.process.signals, ["TERM"])
        h.reactor.advance(KILL_DELAY - 0.01)
        self.assertEqual(h.process.signals, ["TERM"])
        h.reactor.advance(0.01)
        self.assertEqual(h.process.signals, ["TERM", "KILL"])
        self.assertEqual(h.ended, 0)
        h.process.end(signal=9)
        self.assertEqual(h.ended, 1)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_processGroupSignalled(self) -> None:
        """
        A child leading its own process group is signalled as a group.
        """
        h = Harness(newSession=True)
        h.connect()
        h.clientGone()
        h.reactor.advance(KILL_DELAY)
        self.assertEqual((h.process.groupSignals, h.process.signals), (["TERM"], []))

    def test_childEndsAfterTerm(self) -> None:
        """
        A child that ends on SIGTERM gets no SIGKILL; nothing stays scheduled.
        """
        h = Harness()
        h.connect()
        h.clientGone()
        h.reactor.advance(KILL_DELAY)
        h.process.end(signal=15)
        h.reactor.advance(10 * KILL_DELAY)
        self.assertEqual(h.process.signals, ["TERM"])
        self.assertEqual(h.reactor.getDelayedCalls(), [])
        self.assertEqual(h.ended, 1)

    def test_childEndsBeforeTerm(self) -> None:
        """
        A child that ends by itself after its client left is never signalled.
        """
        h = Harness()
        h.connect()
        h.clientGone()
        h.process.end()
        h.reactor.advance(10 * KILL_DELAY)
        self.assertEqual(h.process.signals, [])
        self.assertEqual(h.ended, 1)

    def test_exitedButPipesHeldStillSignalled(self) -> None:
        """
        A child that exited while something else (a grandchild) holds its
        pipes is still signalled, as a group, until its pipes close.
        """
        h = Harness(newSession=True)
        h.connect()
        h.process.exit(0)
        h.clientGone()
        h.reactor.advance(KILL_DELAY)
        self.assertEqual(h.process.groupSignals, ["TERM"])
        h.process.end()
        self.assertEqual(h.ended, 1)

    def test_onEndedChildFirst(self) -> None:
        """
        Child ends first: onEnded waits for the connection to close.
        """
        h = Harness()
        h.connect()
        h.process.end()
        self.assertEqual(h.ended, 0)
        h.transportClosed()
        self.assertEqual(h.ended, 1)
        h.protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(h.ended, 1)

    def test_onEndedClientFirst(self) -> None:
        h = Harness()
        h.connect()
        h.clientGone()
        self.assertEqual(h.ended, 0)
        h.process.end()
        self.assertEqual(h.ended, 1)

    def test_afterClientGoneOutputDropped(self) -> None:
        h = Harness()
        h.connect()
        h.clientGone()
        h.transport.clear()
        h.process.output(b"nobody listens")
        self.assertEqual(h.transport.value(), b"")


class SpawnFailureTests(SynchronousTestCase):
    def test_spawnErrorClosesOnlyThisConnection(self) -> None:
        """
        A server that cannot start: an error event, the connection closed,
        onEnded once the connection is gone.
        """
        h = Harness(executable="/no/such/server")
        h.reactor.spawnErrors["/no/such/server"] = FileNotFoundError(
            errno.ENOENT, "No such file or directory"
        )
        h.connect()
        [event] = h.of(logs.SPAWN_FAILED)
        self.assertEqual(
            (event["service"], event["host"], event["port"]),
            ("svc", "192.0.2.7", 40000),
        )
        self.assertIn("/no/such/server", event["message"])
        self.assertIn("No such file or directory", event["message"])
        self.assertEqual(event["log_level"].name, "error")
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(h.ended, 0)
        h.transportClosed()
        self.assertEqual(h.ended, 1)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_planErrorClosesConnection(self) -> None:
        """
        A bug in building the plan fails the connection the same way, with
        the traceback logged.
        """

        def badPlan(peer: Peer) -> LaunchPlan:
            raise RuntimeError("boom")

        h = Harness(makePlan=badPlan)
        h.connect()
        self.assertEqual(len(h.of(logs.SPAWN_FAILED)), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 0)
        self.assertTrue(any("log_failure" in e for e in h.events))
        h.transportClosed()
        self.assertEqual(h.ended, 1)


class StderrTests(SynchronousTestCase):
    def test_linesLogged(self) -> None:
        """
        Each stderr line is an event with service and pid, however the
        bytes are split.
        """
        h = Harness()
        h.connect()
        h.process.output(b"first\nsec", 2)
        h.process.output(b"ond\r\n", 2)
        lines = h.of(logs.STDERR)
        self.assertEqual([e["line"] for e in lines], ["first", "second"])
        self.assertEqual({(e["service"], e["pid"]) for e in lines}, {("svc", 1001)})

    def test_longLineCut(self) -> None:
        """
        A line longer than the limit is logged in pieces; the buffer never
        holds more than the limit.
        """
        h = Harness()
        h.connect()
        h.process.output(b"a" * (MAX_STDERR_LINE * 2 + 10), 2)
        events = h.of(logs.STDERR)
        self.assertEqual(
            [(len(e["line"]), e["truncated"]) for e in events],
            [(MAX_STDERR_LINE, True)] * 2,
        )
        assert h.protocol.child is not None
        self.assertLess(len(h.protocol.child._stderr._buffer), MAX_STDERR_LINE)

    def test_partialLineAtEnd(self) -> None:
        """
        A last line without a newline is logged when stderr closes.
        """
        h = Harness()
        h.connect()
        h.process.output(b"no newline", 2)
        self.assertEqual(h.of(logs.STDERR), [])
        h.process.end()
        self.assertEqual([e["line"] for e in h.of(logs.STDERR)], ["no newline"])

    def test_undecodable(self) -> None:
        h = Harness()
        h.connect()
        h.process.output(b"bad \xff byte\n", 2)
        [event] = h.of(logs.STDERR)
        self.assertEqual(event["line"], "bad \\xff byte")


class StopTests(SynchronousTestCase):
    """
    L{BridgeProtocol.stop}: the daemon's shutdown.
    """

    def test_termNowKillLater(self) -> None:
        """
        The child gets SIGTERM at once and SIGKILL a kill delay later; the
        connection is closed gracefully.
        """
        h = Harness()
        h.connect()
        h.protocol.stop()
        self.assertEqual(h.process.signals, ["TERM"])
        self.assertTrue(h.transport.disconnecting)
        h.transportClosed()
        h.reactor.advance(KILL_DELAY)
        self.assertEqual(h.process.signals, ["TERM", "KILL"])
        h.process.end(signal=9)
        self.assertEqual(h.ended, 1)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_childEndsOnTerm(self) -> None:
        """
        A child that ends on SIGTERM gets nothing more, and no timer is left.
        """
        h = Harness()
        h.connect()
        h.protocol.stop()
        h.process.end(signal=15)
        h.transportClosed()
        h.reactor.advance(10 * KILL_DELAY)
        self.assertEqual(h.process.signals, ["TERM"])
        self.assertEqual(h.ended, 1)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_unreadConnectionAborted(self) -> None:
        """
        A client that does not read cannot hold the shutdown: its connection
        is aborted a kill delay later.
        """
        h = Harness()
        h.connect()
        h.protocol.stop()
        h.process.end(signal=15)
        self.assertFalse(h.transport.disconnected)
        h.reactor.advance(KILL_DELAY)
        self.assertTrue(h.transport.disconnected)

    def test_afterClientGone(self) -> None:
        """
        Stopping while the kill sequence for a vanished client runs restarts
        it with SIGTERM at once; only one sequence stays scheduled.
        """
        h = Harness()
        h.connect()
        h.clientGone()
        h.protocol.stop()
        self.assertEqual(h.process.signals, ["TERM"])
        self.assertEqual(len(h.reactor.getDelayedCalls()), 1)
        h.reactor.advance(KILL_DELAY)
        self.assertEqual(h.process.signals, ["TERM", "KILL"])
        h.process.end(signal=9)
        self.assertEqual(h.reactor.getDelayedCalls(), [])
        self.assertEqual(h.ended, 1)
