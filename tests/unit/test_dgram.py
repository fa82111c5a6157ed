"""
Tests for L{twinetd.listeners.datagram} with the fake reactor: no sockets, processes or
real time.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from typing import Any, cast

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from twinetd import logs
from twinetd.errors import SourceLocation
from twinetd.launch import LaunchPlan, planLaunch
from twinetd.listeners import datagram as listenersDatagram
from twinetd.listeners.datagram import (
    DEFAULT_CHILD_TIMEOUT,
    MAX_DATAGRAM,
    DatagramServing,
)
from twinetd.listeners.waitdatagram import (
    BACKOFF_FIRST,
    HOLD_POLL_FIRST,
    HOLD_POLL_MAX,
)
from twinetd.model import Peer, ServiceConfig, SocketType
from twinetd.modes.datagram import stdinHolding
from twinetd.modes.internal import InternalService
from twinetd.policy.gate import Admission
from twinetd.policy.limits import Ticket as LimitsTicket
from twinetd.testing import FakeProcess, FakeUDPPort, MemoryProcessReactor

from ..runtime import datagramListener
from .test_spawnclient import openDescriptors

CLIENT = ("127.0.0.1", 5555)
OTHER = ("127.0.0.1", 6666)


def record(
    wait: bool = False, instances: int | None = None, **kw: Any
) -> ServiceConfig:
    kw.setdefault("server", "/bin/cat")
    return ServiceConfig(
        name="dg",
        source=SourceLocation("<test>", 1),
        socketType=SocketType.DGRAM,
        wait=wait,
        port=0,
        protocol="udp",
        bind="127.0.0.1",
        instances=instances,
        **kw,
    )


def No(reason: str, detail: str = "") -> Deferred[Admission]:
    """
    An admission hook's refusal.
    """
    return succeed(Admission.refused(reason, detail))


class LoggedTicket(LimitsTicket):
    """
    A ticket that notes its releases.
    """

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def release(self) -> None:
        self.log.append("release")


def Ticket(peer: Peer | None, log: list[str]) -> Deferred[Admission]:
    """
    An admission hook's admission, whose ticket notes its releases.
    """
    return succeed(Admission(ticket=LoggedTicket(log)))


class FakeSocket:
    """
    A UDP socket's queue for C{wait = yes} tests.
    """

    def __init__(self) -> None:
        self.queue: list[tuple[bytes, Any]] = []
        self.blocking: bool | None = None
        self.closed = False
        self.peeks = 0

    def fileno(self) -> int:
        return 7

    def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        assert flags & socket.MSG_DONTWAIT
        if not self.queue:
            raise BlockingIOError()
        if flags & socket.MSG_PEEK:
            self.peeks += 1
            data, addr = self.queue[0]
        else:
            data, addr = self.queue.pop(0)
        return data[:bufsize], addr

    def getsockname(self) -> Any:
        return ("127.0.0.1", 4000)

    def setblocking(self, flag: bool, /) -> None:
        self.blocking = flag

    def close(self) -> None:
        self.closed = True


class DatagramTestsMixin:
    #: Whether a child's standard input is the pipe that holds its
    #: datagram (L{stdinHolding}); else (the fallback, when the pipe cannot
    #: hold it) the datagram is written to its standard input as it starts.
    prefilled = False

    def setUpService(self, config: ServiceConfig, **kw: Any) -> DatagramServing:
        #: Copies of the pipes given as standard input, to read back.
        self.stdinPipes: list[int] = []
        case = cast(SynchronousTestCase, self)

        def holding(datagram: bytes) -> int | None:
            if not self.prefilled:
                return None
            fd = stdinHolding(datagram)
            if fd is not None:
                self.stdinPipes.append(os.dup(fd))
                case.addCleanup(os.close, self.stdinPipes[-1])
            return fd

        case.patch(listenersDatagram, "stdinHolding", holding)
        self.reactor = MemoryProcessReactor()
        self.events: list[dict[str, Any]] = []
        self.peers: list[Peer | None] = []

        def makePlan(peer: Peer | None) -> LaunchPlan:
            self.peers.append(peer)
            return planLaunch(config, peer, {}, 1000)

        kw.setdefault("bindPort", self.reactor.bindDatagramPort)
        kw.setdefault(
            "serviceLog",
            logs.ServiceLog.fromConfig(
                config, None, Logger(observer=self.events.append)
            ),
        )
        service = datagramListener(config, self.reactor, makePlan=makePlan, **kw)
        service.startService()
        self.service = service
        return service

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("twinetdEvent") == kind]

    @property
    def port(self) -> FakeUDPPort:
        return self.reactor.udpPortsListened[-1]

    @property
    def spawned(self) -> list[FakeProcess]:
        return self.reactor.spawned


class PrefilledStdinTests(DatagramTestsMixin, SynchronousTestCase):
    """
    A child's standard input is a pipe that already holds its datagram:
    nothing is written to it afterwards.
    """

    prefilled = True

    def test_datagramInThePipe(self) -> None:
        """
        The child's descriptor 0 is a pipe holding the datagram, then its
        end of file (the daemon keeps no end of it); the reply is as ever.
        """
        self.setUpService(record())
        self.port.deliver(b"question", CLIENT)
        [child] = self.spawned
        assert child.call.childFDs is not None
        self.assertEqual(
            {fd: kind for fd, kind in child.call.childFDs.items() if fd != 0},
            {1: "r", 2: "r"},
        )
        self.assertIsInstance(child.call.childFDs[0], int)
        [stdin] = self.stdinPipes
        self.assertEqual(os.read(stdin, 100), b"question")
        self.assertEqual(os.read(stdin, 100), b"")
        self.assertEqual(child.written, [])
        child.output(b"answer")
        child.end()
        self.assertEqual(self.port.written, [(b"answer", CLIENT)])

    def test_emptyDatagram(self) -> None:
        self.setUpService(record())
        self.port.deliver(b"", CLIENT)
        [child] = self.spawned
        [stdin] = self.stdinPipes
        self.assertEqual(os.read(stdin, 100), b"")
        self.assertEqual(child.written, [])

    def test_descriptorClosed(self) -> None:
        """
        The daemon closes its copy of the pipe once the child has it, also
        when the start fails.
        """
        before = openDescriptors()
        self.setUpService(record())
        self.port.deliver(b"q", CLIENT)
        self.reactor.spawnErrors["/bin/cat"] = OSError(errno.ENOENT, "gone")
        self.port.deliver(b"q", CLIENT)
        self.assertEqual(len(self.of("spawnFailed")), 1)
        self.assertEqual(openDescriptors(), before | set(self.stdinPipes))


class StdinHoldingTests(SynchronousTestCase):
    def test_holds(self) -> None:
        fd = stdinHolding(b"x" * 65507)
        assert fd is not None
        self.addCleanup(os.close, fd)
        self.assertEqual(len(os.read(fd, 70000)), 65507)
        self.assertEqual(os.read(fd, 1), b"")

    def test_tooSmallPipe(self) -> None:
        """
        A pipe that cannot hold the datagram (one page, for a user over its
        pipe quota) gives C{None}, and nothing is left open.
        """
        real = os.pipe

        def smallPipe() -> tuple[int, int]:
            r, w = real()
            fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
            return r, w

        self.patch(os, "pipe", smallPipe)
        before = openDescriptors()
        self.assertIsNone(stdinHolding(b"x" * 5000))
        self.assertEqual(openDescriptors(), before)
        fd = stdinHolding(b"x" * 4000)
        assert fd is not None
        os.close(fd)


class BridgeTests(DatagramTestsMixin, SynchronousTestCase):
    """
    C{wait = no}: one child per datagram, its output as one reply.
    """

    def test_listens(self) -> None:
        service = self.setUpService(record())
        self.assertEqual(self.port.interface, "127.0.0.1")
        self.assertEqual(self.port.maxPacketSize, MAX_DATAGRAM)
        self.assertEqual(service.boundPort, self.port.port)
        self.assertTrue(service.boundPort)

    def test_listeningLogged(self) -> None:
        """
        A datagram service logs where it listens, as stream services do,
        and its port's protocol is not noisy (no Twisted "Starting
        protocol" line).
        """
        service = self.setUpService(record())
        [event] = self.of(logs.LISTENING)
        self.assertEqual(
            (event["service"], event["address"], event["port"], event["protocol"]),
            ("dg", "127.0.0.1", service.boundPort, "udp"),
        )
        self.assertFalse(self.port.protocol.noisy)

    def test_bindPort(self) -> None:
        """
        The service listens through its C{bindPort} with its record and its
        protocol, once, and serves on the port it returns.
        """
        calls: list[ServiceConfig] = []
        config = record()

        def bindPort(config: ServiceConfig, protocol: Any) -> FakeUDPPort:
            calls.append(config)
            return self.reactor.bindDatagramPort(config, protocol)

        service = self.setUpService(config, bindPort=bindPort)
        self.assertEqual(calls, [config])
        self.assertIs(service.port, self.port)
        self.port.deliver(b"hi", CLIENT)
        self.assertEqual(len(self.spawned), 1)

    def test_cannotListen(self) -> None:
        """
        A port that cannot be bound is logged as C{file:line: service:
        message} and kept as the service's failure; nothing listens.
        """
        error = OSError(98, "Address already in use")

        def bindPort(config: ServiceConfig, protocol: Any) -> FakeUDPPort:
            raise error

        service = self.setUpService(record(), bindPort=bindPort)
        self.assertIs(service.failure, error)
        self.assertIsNone(service.port)
        self.assertIsNone(service.boundPort)
        [event] = self.of(logs.CANNOT_LISTEN)
        self.assertEqual(
            (event["address"], event["reason"]),
            ("127.0.0.1", "Address already in use"),
        )
        self.assertEqual(self.reactor.udpPortsListened, [])

    def test_requestResponse(self) -> None:
        """
        The datagram is the child's standard input, then end of file; what
        the child writes until its output closes is one reply to the sender.
        """
        self.setUpService(record())
        self.port.deliver(b"question", CLIENT)
        [child] = self.spawned
        self.assertEqual(child.written, [b"question"])
        self.assertTrue(child.stdinClosed)
        self.assertEqual(
            self.peers[0], Peer("udp", "127.0.0.1", 5555, "127.0.0.1", self.port.port)
        )
        env = child.call.env or {}
        self.assertEqual(env["REMOTE_HOST"], "127.0.0.1")
        self.assertEqual(env["UDPREMOTEPORT"], "5555")
        child.output(b"ans")
        child.output(b"wer")
        self.assertEqual(self.port.written, [])
        pid = child.pid
        child.end()
        self.assertEqual(self.port.written, [(b"answer", CLIENT)])
        [start] = self.of("start")
        self.assertEqual((start["pid"], start["host"]), (pid, "127.0.0.1"))
        self.assertEqual(len(self.of("exit")), 1)
        self.assertEqual(self.service.children, set())

    def test_replyWhenStdoutCloses(self) -> None:
        """
        The reply leaves when standard output closes, even if the child
        lingers; it is sent once.
        """
        self.setUpService(record())
        self.port.deliver(b"q", CLIENT)
        [child] = self.spawned
        child.output(b"a")
        child.fdLost(1)
        self.assertEqual(self.port.written, [(b"a", CLIENT)])
        child.end()
        self.assertEqual(self.port.written, [(b"a", CLIENT)])

    def test_emptyDatagramAndEmptyOutput(self) -> None:
        """
        An empty datagram gives an empty standard input; no output sends
        nothing.
        """
        self.setUpService(record())
        self.port.deliver(b"", CLIENT)
        [child] = self.spawned
        self.assertEqual(child.written, [])
        self.assertTrue(child.stdinClosed)
        child.end()
        self.assertEqual(self.port.written, [])

    def test_replyCap(self) -> None:
        """
        Output beyond the cap is dropped, counted and logged once; the first
        bytes up to the cap are sent.
        """
        self.setUpService(record(), maxReply=10)
        self.port.deliver(b"q", CLIENT)
        [child] = self.spawned
        child.output(b"12345678")
        child.output(b"abcdef")
        child.output(b"ghij")
        self.assertFalse(child.paused)
        child.end()
        self.assertEqual(self.port.written, [(b"12345678ab", CLIENT)])
        [event] = self.of("replyTruncated")
        self.assertEqual((event["sent"], event["dropped"]), (10, 8))

    def test_defaultCap(self) -> None:
        self.setUpService(record())
        self.port.deliver(b"q", CLIENT)
        [child] = self.spawned
        child.output(b"x" * 70000)
        child.end()
        [(reply, _)] = self.port.written
        self.assertEqual(len(reply), 65507)

    def test_stderrLogged(self) -> None:
        self.setUpService(record())
        self.port.deliver(b"q", CLIENT)
        [child] = self.spawned
        child.output(b"one\ntw", 2)
        child.output(b"o\nthree", 2)
        child.end()
        self.assertEqual(
            [e["line"] for e in self.of("stderr")], ["one", "two", "three"]
        )

    def test_instancesBound(self) -> None:
        """
        At most C{instances} children; datagrams beyond are dropped until a
        child ends.
        """
        self.setUpService(record(instances=2))
        for i in range(5):
            self.port.deliver(b"%d" % i, CLIENT)
        self.assertEqual(len(self.spawned), 2)
        self.assertEqual(self.service.dropped["service_limit"], 3)
        self.spawned[0].end()
        self.port.deliver(b"later", OTHER)
        self.assertEqual(len(self.spawned), 3)
        self.assertEqual(self.spawned[2].written, [b"later"])

    def test_unlimitedIsStillBounded(self) -> None:
        self.setUpService(record(), maxChildren=4)
        for i in range(10):
            self.port.deliver(b"%d" % i, CLIENT)
        self.assertEqual(len(self.spawned), 4)
        self.assertEqual(self.service.dropped["service_limit"], 6)

    def test_refusedDropped(self) -> None:
        """
        A refused datagram starts nothing and is logged as FAIL with its
        reason.
        """
        self.setUpService(record(), admit=lambda peer: No("address", "only_from"))
        self.port.deliver(b"q", CLIENT)
        self.assertEqual(self.spawned, [])
        [fail] = self.of(logs.FAIL)
        self.assertEqual(
            (fail["reason"], fail["detail"], fail["host"], fail["port"]),
            ("address", "only_from", "127.0.0.1", 5555),
        )
        self.assertEqual(self.service.dropped["address"], 1)

    def test_dropLogRateLimited(self) -> None:
        """
        A flood of drops logs one FAIL, then one summary per second while it
        lasts, then nothing.
        """
        self.setUpService(record(), admit=lambda peer: No("address"))
        for i in range(100):
            self.port.deliver(b"%d" % i, CLIENT)
        self.assertEqual(len(self.of(logs.FAIL)), 1)
        self.assertEqual(self.of("dgramDropped"), [])
        self.reactor.advance(0.5)
        for i in range(50):
            self.port.deliver(b"%d" % i, CLIENT)
        self.reactor.advance(0.5)
        [summary] = self.of("dgramDropped")
        self.assertEqual(
            (summary["count"], summary["reasons"]), (149, {"address": 149})
        )
        self.port.deliver(b"x", CLIENT)
        self.reactor.advance(1)
        self.assertEqual([e["count"] for e in self.of("dgramDropped")], [149, 1])
        self.reactor.advance(5)
        self.assertEqual(len(self.of("dgramDropped")), 2)
        self.assertEqual(len(self.of(logs.FAIL)), 1)
        self.port.deliver(b"y", CLIENT)
        self.assertEqual(len(self.of(logs.FAIL)), 2)
        self.assertEqual(self.service.dropped["address"], 152)

    def test_ticketHeldWhileChildRuns(self) -> None:
        log: list[str] = []
        self.setUpService(record(), admit=lambda peer: Ticket(peer, log))
        self.port.deliver(b"q", CLIENT)
        self.assertEqual(log, [])
        self.spawned[0].end()
        self.assertEqual(log, ["release"])

    def test_deferredAdmission(self) -> None:
        """
        An admission decided later holds the datagram meanwhile; pending
        decisions count towards the bound.
        """
        pending: list[Deferred[Any]] = []

        def admit(peer: Peer) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            pending.append(d)
            return d

        log: list[str] = []
        self.setUpService(record(instances=2), admit=admit)
        for i in range(3):
            self.port.deliver(b"%d" % i, CLIENT)
        self.assertEqual(len(pending), 2)
        self.assertEqual(self.service.dropped["service_limit"], 1)
        pending[0].callback(Admission(ticket=LoggedTicket(log)))
        pending[1].callback(Admission.refused("address"))
        [child] = self.spawned
        self.assertEqual(child.written, [b"0"])
        self.assertEqual(self.service.dropped["address"], 1)

    def test_spawnFailure(self) -> None:
        log: list[str] = []
        self.setUpService(record(), admit=lambda peer: Ticket(peer, log))
        self.reactor.spawnErrors["/bin/cat"] = OSError(2, "No such file")
        self.port.deliver(b"q", CLIENT)
        self.assertEqual(log, ["release"])
        [failed] = self.of("spawnFailed")
        self.assertEqual(failed["host"], "127.0.0.1")
        self.assertEqual(self.service.children, set())

    def test_childTimeout(self) -> None:
        """
        A child still running after the child timeout gets TERM, then KILL
        after the kill delay; what it wrote is still sent.
        """
        self.setUpService(record(), killDelay=3)
        self.port.deliver(b"q", CLIENT)
        [child] = self.spawned
        child.output(b"partial")
        self.reactor.advance(DEFAULT_CHILD_TIMEOUT - 0.1)
        self.assertEqual(child.signals, [])
        self.reactor.advance(0.1)
        self.assertEqual(child.signals, ["TERM"])
        self.reactor.advance(3)
        self.assertEqual(child.signals, ["TERM", "KILL"])
        child.endBySignal("KILL")
        self.assertEqual(self.port.written, [(b"partial", CLIENT)])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_timeoutCancelledOnEnd(self) -> None:
        self.setUpService(record(), childTimeout=2)
        self.port.deliver(b"q", CLIENT)
        self.spawned[0].end()
        self.reactor.advance(10)
        self.assertEqual(self.spawned[0].signals, [])

    def test_groupSignalled(self) -> None:
        self.setUpService(record(), childTimeout=1)
        self.reactor.newSession = True
        self.port.deliver(b"q", CLIENT)
        self.reactor.advance(1)
        self.assertEqual(self.spawned[0].groupSignals, ["TERM"])

    def test_replyError(self) -> None:
        self.setUpService(record())
        self.port.writeErrors.append(OSError(105, "No buffer space"))
        self.port.deliver(b"q", CLIENT)
        self.spawned[0].output(b"a")
        self.spawned[0].end()
        [event] = self.of("replyFailed")
        self.assertEqual(event["message"], "No buffer space")

    def test_stopService(self) -> None:
        """
        Stopping closes the port and terminates the children; the result
        fires when they have ended.
        """
        service = self.setUpService(record(), killDelay=2)
        self.port.deliver(b"1", CLIENT)
        self.port.deliver(b"2", OTHER)
        port = self.port
        d = service.stopService()
        self.assertFalse(port.listening)
        self.assertNoResult(d)
        self.assertEqual([c.signals for c in self.spawned], [["TERM"], ["TERM"]])
        self.reactor.advance(2)
        self.assertEqual([c.signals for c in self.spawned], [["TERM", "KILL"]] * 2)
        self.spawned[0].endBySignal("KILL")
        self.assertNoResult(d)
        self.spawned[1].endBySignal("KILL")
        self.successResultOf(d)
        self.assertIsNone(service.boundPort)

    def test_cpsPause(self) -> None:
        """
        A datagram that trips C{cps} makes the service stop reading for the
        pause the gate gives, then read again on its own.
        """
        answers = [succeed(Admission.refused("connections per second", pause=3))]
        service = self.setUpService(
            record(), admit=lambda peer: answers.pop() if answers else No("x")
        )
        self.port.deliver(b"q", CLIENT)
        self.assertFalse(self.port.reading)
        self.reactor.advance(2.9)
        self.assertFalse(self.port.reading)
        self.reactor.advance(0.1)
        self.assertTrue(self.port.reading)
        self.assertEqual(service.dropped["connections per second"], 1)

    def test_stopEndsPause(self) -> None:
        service = self.setUpService(
            record(),
            admit=lambda peer: succeed(Admission.refused("x", pause=3)),
        )
        self.port.deliver(b"q", CLIENT)
        self.successResultOf(service.stopService())
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_suspendResume(self) -> None:
        service = self.setUpService(record())
        service._stopAccepting()
        self.assertFalse(self.port.reading)
        service._startAccepting()
        self.assertTrue(self.port.reading)


class InternalTests(DatagramTestsMixin, SynchronousTestCase):
    """
    Internal datagram services: no process, admission per datagram.
    """

    def test_echo(self) -> None:
        log: list[str] = []
        self.setUpService(
            record(types=frozenset({"INTERNAL"}), server=None),
            internal=InternalService("echo", SocketType.DGRAM),
            admit=lambda peer: Ticket(peer, log),
        )
        self.port.deliver(b"ping", CLIENT)
        self.assertEqual(self.port.written, [(b"ping", CLIENT)])
        self.assertEqual(log, ["release"])
        self.assertEqual(self.spawned, [])
        [start] = self.of("start")
        self.assertEqual(start["pid"], 0)

    def test_refused(self) -> None:
        self.setUpService(
            record(types=frozenset({"INTERNAL"}), server=None),
            internal=InternalService("daytime", SocketType.DGRAM),
            admit=lambda peer: No("time"),
        )
        self.port.deliver(b"", CLIENT)
        self.assertEqual(self.port.written, [])
        self.assertEqual(self.service.dropped["time"], 1)

    def test_noInstanceLimit(self) -> None:
        self.setUpService(
            record(types=frozenset({"INTERNAL"}), server=None, instances=1),
            internal=InternalService("echo", SocketType.DGRAM),
        )
        for i in range(5):
            self.port.deliver(b"%d" % i, CLIENT)
        self.assertEqual(len(self.port.written), 5)


class WaitTests(DatagramTestsMixin, SynchronousTestCase):
    """
    C{wait = yes}: the socket is handed to one child at a time.
    """

    def setUpWait(self, **kw: Any) -> FakeSocket:
        self.sock = FakeSocket()
        self.setUpService(record(wait=True), makeSocket=lambda: self.sock, **kw)
        return self.sock

    def readers(self) -> list[Any]:
        return list(self.reactor.readers)

    def test_watchesSocket(self) -> None:
        self.setUpWait()
        [reader] = self.readers()
        self.assertEqual(reader.fileno(), 7)
        self.assertEqual(self.service.boundPort, 4000)

    def test_watchesAfterPrivilegedStart(self) -> None:
        """
        twistd binds in C{privilegedStartService} and starts the service
        afterwards: the socket bound then is watched once the service runs
        (issue 7: under twistd no datagram ever started a child).
        """
        self.sock = FakeSocket()
        self.reactor = MemoryProcessReactor()
        events: list[dict[str, Any]] = []
        service = datagramListener(
            record(wait=True),
            self.reactor,
            makePlan=lambda peer: planLaunch(record(wait=True), peer, {}, 1000),
            makeSocket=lambda: self.sock,
            serviceLog=logs.ServiceLog.fromConfig(
                record(wait=True), None, Logger(observer=events.append)
            ),
        )
        service.privilegedStartService()
        self.assertEqual(self.readers(), [])
        service.startService()
        [reader] = self.readers()
        self.assertEqual(reader.fileno(), 7)
        [listening] = [e for e in events if e.get("twinetdEvent") == logs.LISTENING]
        self.assertEqual((listening["port"], listening["service"]), (4000, "dg"))

    def test_datagramStartsChild(self) -> None:
        """
        A waiting datagram is peeked (left for the child), the watch stops,
        and the child gets the socket as descriptors 0 and 1, blocking; the
        sender is in its environment.
        """
        sock = self.setUpWait()
        sock.queue.append((b"request", CLIENT))
        [reader] = self.readers()
        reader.doRead()
        self.assertEqual(self.readers(), [])
        [child] = self.spawned
        self.assertEqual(child.call.childFDs, {0: 7, 1: 7, 2: "r"})
        self.assertIs(sock.blocking, True)
        self.assertEqual(sock.queue, [(b"request", CLIENT)])
        self.assertEqual((child.call.env or {})["REMOTE_HOST"], "127.0.0.1")
        [start] = self.of("start")
        self.assertEqual(start["host"], "127.0.0.1")

    def test_childEndDrainsAndWatchesAgain(self) -> None:
        """
        When the child ends, datagrams it left are drained (as xinetd's
        drain()) and the socket is watched again.
        """
        sock = self.setUpWait()
        sock.queue.append((b"request", CLIENT))
        self.readers()[0].doRead()
        [child] = self.spawned
        sock.queue.pop(0)  # the child read it
        self.reactor.advance(5)
        sock.queue.extend([(b"late", OTHER), (b"", OTHER)])
        child.end()
        self.assertEqual(sock.queue, [])
        self.assertEqual(len(self.readers()), 1)
        self.assertEqual(self.of("dgramBackoff"), [])

    def test_refusedConsumed(self) -> None:
        """
        A refused sender's datagram is read and dropped, and the socket is
        watched again.
        """
        sock = self.setUpWait(admit=lambda peer: No("address"))
        sock.queue.extend([(b"bad", CLIENT), (b"next", OTHER)])
        self.readers()[0].doRead()
        self.assertEqual(self.spawned, [])
        self.assertEqual(sock.queue, [(b"next", OTHER)])
        self.assertEqual(len(self.readers()), 1)
        self.assertEqual(self.service.dropped["address"], 1)

    def test_spuriousWakeup(self) -> None:
        self.setUpWait()
        self.readers()[0].doRead()
        self.assertEqual(self.spawned, [])
        self.assertEqual(len(self.readers()), 1)

    def test_backoff(self) -> None:
        """
        A child that exits at once leaving datagrams unread delays the next
        watch, doubling each time; a good child resets the delay.
        """
        sock = self.setUpWait()
        delays = []
        for i in range(3):
            sock.queue.append((b"x", CLIENT))
            self.readers()[0].doRead()
            self.spawned[-1].end()
            self.assertEqual(sock.queue, [])
            self.assertEqual(self.readers(), [])
            delay = BACKOFF_FIRST * 2**i
            delays.append(delay)
            self.reactor.advance(delay - 0.01)
            self.assertEqual(self.readers(), [])
            self.reactor.advance(0.01)
            self.assertEqual(len(self.readers()), 1)
        self.assertEqual([e["delay"] for e in self.of("dgramBackoff")], delays)
        sock.queue.append((b"x", CLIENT))
        self.readers()[0].doRead()
        sock.queue.clear()
        self.spawned[-1].end()
        self.assertEqual(len(self.readers()), 1)
        sock.queue.append((b"x", CLIENT))
        self.readers()[0].doRead()
        self.spawned[-1].end(status=1)
        self.assertEqual(self.of("dgramBackoff")[-1]["delay"], BACKOFF_FIRST)

    def test_spawnFailureConsumesAndBacksOff(self) -> None:
        sock = self.setUpWait()
        self.reactor.spawnErrors["/bin/cat"] = OSError(2, "No such file")
        sock.queue.append((b"x", CLIENT))
        self.readers()[0].doRead()
        self.assertEqual(sock.queue, [])
        self.assertEqual(len(self.of("spawnFailed")), 1)
        self.assertEqual(len(self.of("dgramBackoff")), 1)
        self.reactor.advance(BACKOFF_FIRST)
        self.assertEqual(len(self.readers()), 1)

    def test_noTimeoutForWaitChildren(self) -> None:
        sock = self.setUpWait()
        sock.queue.append((b"x", CLIENT))
        self.readers()[0].doRead()
        self.reactor.advance(DEFAULT_CHILD_TIMEOUT * 10)
        self.assertEqual(self.spawned[0].signals, [])

    def test_stopService(self) -> None:
        sock = self.setUpWait(killDelay=1)
        sock.queue.append((b"x", CLIENT))
        self.readers()[0].doRead()
        d = self.service.stopService()
        self.assertTrue(sock.closed)
        self.assertEqual(self.spawned[0].signals, ["TERM"])
        self.assertNoResult(d)
        self.spawned[0].end(signal=15)
        self.successResultOf(d)
        self.assertEqual(self.readers(), [])

    def test_stopWhileIdle(self) -> None:
        sock = self.setUpWait()
        self.successResultOf(self.service.stopService())
        self.assertTrue(sock.closed)
        self.assertEqual(self.readers(), [])


class HandOffTests(DatagramTestsMixin, SynchronousTestCase):
    """
    C{wait = no} in drop-in mode: each child gets the socket and receives
    its own datagram; the daemon waits until it has.
    """

    def setUpHandOff(self, instances: int | None = None) -> FakeSocket:
        self.sock = FakeSocket()
        self.setUpService(
            record(instances=instances), makeSocket=lambda: self.sock, handOff=True
        )
        return self.sock

    def readers(self) -> list[Any]:
        return list(self.reactor.readers)

    def test_childGetsTheSocket(self) -> None:
        """
        A waiting datagram is peeked (left for the child), which gets the
        socket as descriptors 0 and 1, blocking, and the sender in its
        environment; nothing is read from the socket meanwhile.
        """
        sock = self.setUpHandOff()
        self.assertEqual(self.reactor.udpPortsListened, [])
        sock.queue.append((b"request", CLIENT))
        self.readers()[0].doRead()
        [child] = self.spawned
        self.assertEqual(child.call.childFDs, {0: 7, 1: 7, 2: "r"})
        self.assertIs(sock.blocking, True)
        self.assertEqual(sock.queue, [(b"request", CLIENT)])
        self.assertEqual((child.call.env or {})["REMOTE_HOST"], "127.0.0.1")
        self.assertEqual(self.readers(), [])

    def test_watchesAgainOnceTaken(self) -> None:
        """
        Until the child has taken its datagram the socket is not watched
        (a second datagram waits); once the head changes, it is, and the
        next datagram gets a second child while the first still runs.
        """
        sock = self.setUpHandOff()
        sock.queue.extend([(b"one", CLIENT), (b"two", OTHER)])
        self.readers()[0].doRead()
        self.reactor.advance(1.0)
        self.assertEqual(self.readers(), [])
        self.assertEqual(len(self.spawned), 1)
        sock.queue.pop(0)  # the child receives it
        self.reactor.advance(0.1)
        [reader] = self.readers()
        reader.doRead()
        self.assertEqual(len(self.spawned), 2)
        self.assertEqual((self.spawned[1].call.env or {})["REMOTE_PORT"], "6666")
        self.assertEqual(self.spawned[0].signals, [])

    def test_pollBacksOff(self) -> None:
        """
        While a child holds its datagram the head is looked at less and
        less often, at most every HOLD_POLL_MAX seconds: the daemon idles.
        """
        sock = self.setUpHandOff()
        sock.queue.append((b"one", CLIENT))
        self.readers()[0].doRead()
        sock.peeks = 0
        self.reactor.advance(HOLD_POLL_FIRST)
        for _ in range(40):
            self.reactor.advance(HOLD_POLL_MAX)
        # Doubling from HOLD_POLL_FIRST to HOLD_POLL_MAX, then one a period.
        self.assertLessEqual(sock.peeks, 46)
        [call] = self.reactor.getDelayedCalls()
        self.assertLessEqual(call.getTime() - self.reactor.seconds(), HOLD_POLL_MAX)

    def test_instancesBound(self) -> None:
        """
        With C{instances} children running the socket is not watched; a
        child's end watches again.
        """
        sock = self.setUpHandOff(instances=2)
        for n in range(2):
            sock.queue.append((b"x%d" % n, CLIENT))
            self.readers()[0].doRead()
            sock.queue.pop(0)
            self.reactor.advance(HOLD_POLL_FIRST)
        self.assertEqual(len(self.spawned), 2)
        sock.queue.append((b"x2", CLIENT))
        self.assertEqual(self.readers(), [])
        self.reactor.advance(5)
        self.assertEqual(self.readers(), [])
        self.spawned[0].end()
        self.readers()[0].doRead()
        self.assertEqual(len(self.spawned), 3)

    def test_childLeavingItsDatagram(self) -> None:
        """
        A child that ends at once without receiving its datagram: the
        datagram is dropped (no loop) and the daemon waits before watching
        again.
        """
        sock = self.setUpHandOff()
        sock.queue.extend([(b"never", CLIENT), (b"next", OTHER)])
        self.readers()[0].doRead()
        self.spawned[0].end()
        self.assertEqual(sock.queue, [(b"next", OTHER)])
        self.assertEqual(len(self.of("dgramBackoff")), 1)
        self.assertEqual(self.readers(), [])
        self.reactor.advance(BACKOFF_FIRST)
        self.readers()[0].doRead()
        self.assertEqual(len(self.spawned), 2)

    def test_childTookItAndEnded(self) -> None:
        """
        A child that received its datagram and exited before the daemon
        looked: nothing dropped, the socket watched at once.
        """
        sock = self.setUpHandOff()
        sock.queue.extend([(b"one", CLIENT), (b"two", OTHER)])
        self.readers()[0].doRead()
        sock.queue.pop(0)
        self.spawned[0].end()
        self.assertEqual(sock.queue, [(b"two", OTHER)])
        self.assertEqual(len(self.readers()), 1)
        self.assertEqual(self.of("dgramBackoff"), [])

    def test_refusedConsumed(self) -> None:
        sock = FakeSocket()
        self.setUpService(
            record(),
            makeSocket=lambda: sock,
            handOff=True,
            admit=lambda peer: No("address"),
        )
        sock.queue.append((b"x", CLIENT))
        self.readers()[0].doRead()
        self.assertEqual(sock.queue, [])
        self.assertEqual(self.spawned, [])
        self.assertEqual(len(self.readers()), 1)

    def test_stopService(self) -> None:
        sock = self.setUpHandOff()
        sock.queue.append((b"x", CLIENT))
        self.readers()[0].doRead()
        d = self.service.stopService()
        self.assertTrue(sock.closed)
        # The poll is cancelled: only the child's SIGKILL timer is left.
        [kill] = self.reactor.getDelayedCalls()
        self.assertEqual(kill.getTime(), self.reactor.seconds() + 5.0)
        self.assertEqual(self.spawned[0].signals, ["TERM"])
        self.spawned[0].end(signal=15)
        self.successResultOf(d)
