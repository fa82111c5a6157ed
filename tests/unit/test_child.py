"""
L{twinetd.child} with the fake process reactor and its Clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone, ProcessDone, ProcessTerminated
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twinetd import logs
from twinetd.child import (
    ChildConnection,
    ChildProcess,
    ChildSetup,
    exitFields,
    signalChild,
    spawnFailed,
)
from twinetd.errors import SpawnError
from twinetd.launch import LaunchPlan
from twinetd.model import Peer, unmapped
from twinetd.spawn import ReactorSpawner
from twinetd.testing import FakeProcess, MemoryProcessReactor

KILL_DELAY = 5.0
PLAN = LaunchPlan(executable="/usr/bin/server", argv=("server",), env=())
PEER = Peer("tcp", "10.0.0.7", 40001, "127.0.0.1", 7000)


class SpawnFailedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.serviceLog = logs.ServiceLog(
            "svc", logger=Logger(observer=self.events.append)
        )

    def test_systemRefused(self) -> None:
        """
        A L{SpawnError} is the system's refusal: its message, no traceback.
        """
        spawnFailed(self.serviceLog, PEER, SpawnError("no such program"))
        [event] = self.events
        self.assertEqual(event[logs.EVENT_FIELD], logs.SPAWN_FAILED)
        self.assertEqual(
            (event["message"], event["host"]), ("no such program", "10.0.0.7")
        )

    def test_bugLoggedWithTraceback(self) -> None:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError as e:
            spawnFailed(self.serviceLog, None, e)
        failure, failed = self.events
        self.assertIsInstance(failure["log_failure"].value, ZeroDivisionError)
        self.assertIsNotNone(failure["log_failure"].getTracebackObject())
        self.assertEqual(
            (failed["message"], failed["host"]),
            ("ZeroDivisionError: division by zero", "<no address>"),
        )


class UnmappedTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(unmapped("::ffff:192.0.2.1"), "192.0.2.1")
        self.assertEqual(unmapped("::FFFF:c000:201"), "192.0.2.1")
        self.assertEqual(unmapped("0:0:0:0:0:fFfF:192.0.2.1"), "192.0.2.1")
        self.assertEqual(unmapped("::ffff"), "::ffff")
        self.assertEqual(unmapped("2001:db8::ffff:1"), "2001:db8::ffff:1")
        self.assertEqual(unmapped("192.0.2.1"), "192.0.2.1")
        self.assertEqual(unmapped("::1"), "::1")
        self.assertEqual(unmapped("fe80::1%eth0"), "fe80::1%eth0")
        self.assertEqual(unmapped("not an address"), "not an address")

    def test_peer(self) -> None:
        mapped = Peer("tcp", "::ffff:192.0.2.1", 1, "::ffff:127.0.0.1", 2)
        self.assertTrue(mapped.mapped)
        self.assertEqual(
            (mapped.remoteAddress, mapped.localAddress), ("192.0.2.1", "127.0.0.1")
        )
        self.assertFalse(PEER.mapped)


class ExitFieldsTests(SynchronousTestCase):
    def test_exitStatus(self) -> None:
        self.assertEqual(exitFields(Failure(ProcessDone(0))), (0, None))
        self.assertEqual(
            exitFields(Failure(ProcessTerminated(3, None, 3 << 8))), (3, None)
        )

    def test_signal(self) -> None:
        self.assertEqual(exitFields(Failure(ProcessTerminated(None, 9, 9))), (None, 9))

    def test_other(self) -> None:
        """
        A reason that is not a process's end has neither.
        """
        self.assertEqual(exitFields(Failure(ConnectionDone())), (None, None))


class SignalChildTests(SynchronousTestCase):
    def spawn(self, newSession: bool) -> FakeProcess:
        reactor = MemoryProcessReactor(newSession=newSession)
        ReactorSpawner(reactor).spawn(
            ChildProcess(logs.ServiceLog("svc"), None, reactor), PLAN
        )
        return reactor.spawned[0]

    def test_process(self) -> None:
        process = self.spawn(newSession=False)
        signalChild(process, "TERM")
        self.assertEqual(process.signals, ["TERM"])

    def test_group(self) -> None:
        """
        A child leading a process group is signalled as a group.
        """
        process = self.spawn(newSession=True)
        signalChild(process, "HUP")
        self.assertEqual((process.groupSignals, process.signals), (["HUP"], []))

    def test_gone(self) -> None:
        """
        A child that is gone already is no error.
        """
        for newSession in (False, True):
            process = self.spawn(newSession)
            process.end(0)
            signalChild(process, "KILL")
            self.assertEqual((process.groupSignals, process.signals), ([], []))


class Harness:
    def __init__(self, newSession: bool = False, peer: Peer | None = PEER) -> None:
        self.reactor = MemoryProcessReactor(newSession=newSession)
        self.events: list[dict[str, Any]] = []
        self.ended = 0
        self.serviceLog = logs.ServiceLog(
            "svc", logger=Logger(observer=self.events.append)
        )
        self.child = ChildProcess(
            self.serviceLog, peer, self.reactor, KILL_DELAY, self.onEnded
        )

    def onEnded(self) -> None:
        self.ended += 1

    def start(self) -> FakeProcess:
        ReactorSpawner(self.reactor).spawn(self.child, PLAN)
        return self.reactor.spawned[-1]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get(logs.EVENT_FIELD) == name]


class ChildProcessTests(SynchronousTestCase):
    def test_startLogged(self) -> None:
        """
        C{START} with the pid and the peer once the child runs.
        """
        h = Harness()
        self.assertEqual((h.child.pid, h.child.process), (None, None))
        process = h.start()
        [start] = h.of(logs.START)
        self.assertEqual((start["pid"], start["host"]), (process.pid, "10.0.0.7"))
        self.assertEqual((h.child.pid, h.child.process), (process.pid, process))

    def test_exitLogged(self) -> None:
        """
        C{EXIT} with status, signal and the duration from the start; the
        fields stay on the child.
        """
        h = Harness()
        h.reactor.advance(10)
        process = h.start()
        pid = process.pid
        h.reactor.advance(2.5)
        process.exit(status=3)
        [end] = h.of(logs.EXIT)
        self.assertEqual(
            (end["pid"], end["status"], end["signal"], end["duration"]),
            (pid, 3, None, 2),
        )
        self.assertEqual(
            (h.child.exitStatus, h.child.exitSignal, h.child.duration),
            (3, None, 2.5),
        )
        self.assertEqual(h.child.startTime, 10.0)

    def test_exitDurationAsXinetd(self) -> None:
        """
        The logged duration is xinetd's: whole clock seconds between start
        and exit, so a 0.7 s child logs 0 or 1 (as measured with xinetd).
        """
        for start, logged in ((10.1, 0), (10.5, 1)):
            h = Harness()
            h.reactor.advance(start)
            process = h.start()
            h.reactor.advance(0.7)
            process.exit(status=0)
            [end] = h.of(logs.EXIT)
            self.assertEqual(end["duration"], logged)

    def test_killedBySignal(self) -> None:
        h = Harness()
        h.start().endBySignal("KILL")
        self.assertEqual((h.child.exitStatus, h.child.exitSignal), (None, 9))
        self.assertEqual(h.of(logs.EXIT)[0]["signal"], 9)

    def test_stderrLines(self) -> None:
        """
        Standard error is logged by line, with the pid; the last partial
        line when the pipe closes.  Other descriptors are ignored.
        """
        h = Harness()
        process = h.start()
        pid = process.pid
        process.output(b"one\ntw", 2)
        process.output(b"ignored\n", 1)
        process.output(b"o\nthree", 2)
        process.end(0)
        self.assertEqual(
            [(e["line"], e["pid"]) for e in h.of(logs.STDERR)],
            [("one", pid), ("two", pid), ("three", pid)],
        )

    def test_endedOnce(self) -> None:
        """
        C{onEnded} runs once, when the child has ended, not when it exited.
        """
        h = Harness()
        process = h.start()
        process.exit(0)
        self.assertEqual((h.ended, h.child.ended), (0, False))
        process.end(0)
        self.assertEqual((h.ended, h.child.ended), (1, True))
        h.child.processEnded(Failure(ProcessDone(0)))
        self.assertEqual(h.ended, 1)

    def test_terminate(self) -> None:
        """
        L{ChildProcess.terminate}: SIGTERM now, SIGKILL after the kill
        delay.
        """
        h = Harness()
        process = h.start()
        h.child.terminate()
        self.assertEqual(process.signals, ["TERM"])
        h.reactor.advance(KILL_DELAY - 0.1)
        self.assertEqual(process.signals, ["TERM"])
        h.reactor.advance(0.1)
        self.assertEqual(process.signals, ["TERM", "KILL"])
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_terminateAgainRestarts(self) -> None:
        """
        L{ChildProcess.terminate} again sends SIGTERM again and puts SIGKILL
        a full kill delay later.
        """
        h = Harness()
        process = h.start()
        h.child.terminate()
        h.reactor.advance(3)
        h.child.terminate()
        h.reactor.advance(KILL_DELAY - 0.1)
        self.assertEqual(process.signals, ["TERM", "TERM"])
        h.reactor.advance(0.1)
        self.assertEqual(process.signals, ["TERM", "TERM", "KILL"])

    def test_stopOnce(self) -> None:
        """
        L{ChildProcess.stop} does nothing while SIGKILL is pending.
        """
        h = Harness()
        process = h.start()
        h.child.stop()
        h.child.stop()
        self.assertEqual(process.signals, ["TERM"])
        h.reactor.advance(KILL_DELAY)
        self.assertEqual(process.signals, ["TERM", "KILL"])

    def test_terminateLater(self) -> None:
        """
        L{ChildProcess.terminateLater}: SIGTERM after the delay, SIGKILL a
        kill delay after that; a second call changes nothing.
        """
        h = Harness()
        process = h.start()
        h.child.terminateLater(10)
        h.reactor.advance(5)
        h.child.terminateLater(1)
        h.reactor.advance(4.9)
        self.assertEqual(process.signals, [])
        h.reactor.advance(0.1)
        self.assertEqual(process.signals, ["TERM"])
        h.child.terminateLater(1)
        h.reactor.advance(KILL_DELAY)
        self.assertEqual(process.signals, ["TERM", "KILL"])

    def test_stopWhileTerminateLater(self) -> None:
        """
        L{ChildProcess.stop} with a SIGTERM scheduled sends it now.
        """
        h = Harness()
        process = h.start()
        h.child.terminateLater(10)
        h.child.stop()
        self.assertEqual(process.signals, ["TERM"])
        h.reactor.advance(KILL_DELAY)
        self.assertEqual(process.signals, ["TERM", "KILL"])
        h.reactor.advance(10)
        self.assertEqual(process.signals, ["TERM", "KILL"])

    def test_endCancelsTimers(self) -> None:
        """
        A child that ends gets no more signals and leaves no timer.
        """
        for start in ("terminate", "terminateLater"):
            h = Harness()
            process = h.start()
            if start == "terminate":
                h.child.terminate()
            else:
                h.child.terminateLater(1)
            process.endBySignal("TERM")
            self.assertEqual(h.reactor.getDelayedCalls(), [])
            h.child.terminate()
            h.child.stop()
            h.child.terminateLater(1)
            h.reactor.advance(KILL_DELAY * 2)
            self.assertEqual(process.signals, ["TERM"] if start == "terminate" else [])

    def test_notStarted(self) -> None:
        """
        A child whose start failed is never signalled.
        """
        h = Harness()
        h.child.terminate()
        h.child.stop()
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_processGroup(self) -> None:
        """
        A child leading a process group: the group gets the signals.
        """
        h = Harness(newSession=True)
        process = h.start()
        h.child.terminate()
        h.reactor.advance(KILL_DELAY)
        self.assertEqual(
            (process.groupSignals, process.signals), (["TERM", "KILL"], [])
        )

    def test_noPeer(self) -> None:
        """
        A child without a peer (C{wait = yes}) logs C{START} all the same.
        """
        h = Harness(peer=None)
        process = h.start()
        [start] = h.of(logs.START)
        self.assertEqual(start["pid"], process.pid)


class Connection(ChildConnection):
    def connectionMade(self) -> None:
        pass

    def childEnded(self) -> None:
        self._childDone = True
        self._maybeEnded()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._connectionDone = True
        self._maybeEnded()


class ChildConnectionTests(SynchronousTestCase):
    def build(self) -> tuple[Connection, list[int]]:
        reactor = MemoryProcessReactor()
        ended: list[int] = []
        serviceLog = logs.ServiceLog("svc", logger=Logger(observer=lambda e: None))
        setup = ChildSetup(
            serviceLog, lambda peer: PLAN, ReactorSpawner(reactor), reactor, KILL_DELAY
        )
        connection = Connection(setup, onEnded=lambda: ended.append(1))
        return connection, ended

    def test_endedOnceBothAreOver(self) -> None:
        """
        C{onEnded} runs once, when the connection and the child are both
        over, in either order.
        """
        for order in (("child", "connection"), ("connection", "child")):
            connection, ended = self.build()
            for step in order:
                self.assertEqual(ended, [])
                if step == "child":
                    connection.childEnded()
                else:
                    connection.connectionLost()
            self.assertEqual(ended, [1])
            connection.childEnded()
            connection.connectionLost()
            self.assertEqual(ended, [1])
