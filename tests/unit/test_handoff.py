"""
L{twinetd.modes.handoff} with fakes: a fake socket and TCP transport, the fake
process reactor and its Clock.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.interfaces import ISystemHandle
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twinetd import logs
from twinetd.child import ChildSetup
from twinetd.errors import SourceLocation
from twinetd.launch import LaunchPlan
from twinetd.listeners.sockets import listenAddress
from twinetd.listeners.waitstream import REFUSED_RETRY, WaitStreamListener
from twinetd.logs.sinks import ServiceLines
from twinetd.model import Peer, ServiceConfig, SocketType
from twinetd.modes.handoff import (
    HandoffChild,
    HandoffProtocol,
    SocketHandedOff,
    handOff,
)
from twinetd.policy.backoff import Backoff, doubling
from twinetd.policy.gate import Admission, admitEveryone
from twinetd.policy.limits import Limits, ServiceLimits, Ticket
from twinetd.spawn import ReactorSpawner
from twinetd.testing import FakeProcess, MemoryProcessReactor

from ..runtime import runtimeFor

FD = 17
KILL_DELAY = 5.0
PLAN = LaunchPlan(executable="/usr/bin/server", argv=("server",), env=())


#: What a handoff does to the transport, in order (L{FakeTCPTransport.trail}).
HANDED_OFF = [
    "setblocking True",
    "spawn",
    "stopReading",
    "stopWriting",
    "close",
    "connectionLost",
]


class FakeSocket:
    """
    The parts of a socket that the handoff touches; every call is recorded
    in C{trail}.
    """

    def __init__(self, trail: list[str], family: int = socket.AF_INET) -> None:
        self.trail = trail
        self.family = family
        self.fd = FD
        self.blocking = False
        self.sent = b""
        self.room = 1 << 20
        self.options: list[tuple[int, int, int]] = []
        self.sendError: OSError | None = None

    def fileno(self) -> int:
        return self.fd

    def setblocking(self, flag: bool) -> None:
        self.trail.append(f"setblocking {flag}")
        self.blocking = flag

    def send(self, data: bytes) -> int:
        self.trail.append("send" if not self.blocking else "blocking send")
        if self.sendError is not None:
            raise self.sendError
        taken = data[: self.room]
        self.sent += taken
        return len(taken)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))

    def shutdown(self, how: int) -> None:
        self.trail.append("shutdown")

    def close(self) -> None:
        self.trail.append("close")
        self.fd = -1


@implementer(ISystemHandle)
class FakeTCPTransport:
    """
    A Twisted C{tcp.Server} as far as the handoff is concerned.
    """

    def __init__(
        self,
        protocol: Protocol,
        peer: Any = None,
        family: int = socket.AF_INET,
    ) -> None:
        self.trail: list[str] = []
        self.socket = FakeSocket(self.trail, family)
        self.protocol = protocol
        self.peer = peer or IPv4Address("TCP", "10.0.0.7", 40001)
        self.lost: list[Failure] = []
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataBuffer: list[bytes] = []
        self._tempDataLen = 0

    def getHandle(self) -> FakeSocket:
        return self.socket

    def getPeer(self) -> Any:
        return self.peer

    def getHost(self) -> Any:
        return IPv4Address("TCP", "10.0.0.1", 51427)

    def stopReading(self) -> None:
        self.trail.append("stopReading")

    def stopWriting(self) -> None:
        self.trail.append("stopWriting")

    def loseConnection(self) -> None:
        self.trail.append("loseConnection")

    def connectionLost(self, reason: Failure) -> None:
        self.trail.append("connectionLost")
        self.lost.append(reason)
        self.protocol.connectionLost(reason)


class RecordingProtocol(Protocol):
    def __init__(self) -> None:
        self.reasons: list[Failure] = []

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reasons.append(reason)


class BlockingAtSpawn(ReactorSpawner):
    """
    A spawner noting whether the socket was blocking when the child started.
    """

    def __init__(self, reactor: MemoryProcessReactor, sock: FakeSocket) -> None:
        super().__init__(reactor)
        self.sock = sock
        self.blocking: list[bool] = []

    def spawn(self, protocol: Any, plan: LaunchPlan, childFDs: Any = None) -> Any:
        self.blocking.append(self.sock.blocking)
        self.sock.trail.append("spawn")
        return super().spawn(protocol, plan, childFDs)


class HandOffHarness:
    def __init__(
        self,
        peer: Any = None,
        family: int = socket.AF_INET,
        newSession: bool = False,
    ) -> None:
        self.reactor = MemoryProcessReactor(newSession=newSession)
        self.reactor.advance(100.0)
        self.events: list[dict[str, Any]] = []
        self.log = Logger(observer=self.events.append)
        self.protocol = RecordingProtocol()
        self.transport = FakeTCPTransport(self.protocol, peer, family)
        self.spawner = BlockingAtSpawn(self.reactor, self.transport.socket)
        self.ended = 0

    def onEnded(self) -> None:
        self.ended += 1

    def handOff(self, **kw: Any) -> HandoffChild | None:
        return handOff(
            self.transport,  # type: ignore[arg-type]
            kw.pop("plan", PLAN),
            self.spawner,
            self.reactor,
            logs.ServiceLog("svc", logger=self.log),
            killDelay=KILL_DELAY,
            onEnded=self.onEnded,
            **kw,
        )

    @property
    def process(self) -> FakeProcess:
        [process] = self.reactor.spawned
        return process

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get(logs.EVENT_FIELD) == kind]


class HandOffTests(SynchronousTestCase):
    def test_socketIsTheChildsStdio(self) -> None:
        """
        The socket is the child's descriptors 0 and 1; 2 is a pipe.
        """
        h = HandOffHarness()
        child = h.handOff()
        self.assertIsInstance(child, HandoffChild)
        self.assertEqual(h.process.call.childFDs, {0: FD, 1: FD, 2: "r"})
        self.assertEqual(h.process.call.executable, "/usr/bin/server")

    def test_stderrToSocket(self) -> None:
        """
        With C{stderrToSocket} descriptor 2 is the socket too (xinetd).
        """
        h = HandOffHarness()
        h.handOff(stderrToSocket=True)
        self.assertEqual(h.process.call.childFDs, {0: FD, 1: FD, 2: FD})

    def test_blockingForTheChild(self) -> None:
        """
        The socket is in blocking mode when the child starts.
        """
        h = HandOffHarness()
        h.handOff()
        self.assertEqual(h.spawner.blocking, [True])

    def test_daemonForgetsTheSocket(self) -> None:
        """
        After the spawn the transport leaves the reactor, the daemon's
        descriptor is closed without shutdown, and the protocol gets
        connectionLost once, with L{SocketHandedOff}, all before handOff
        returns.
        """
        h = HandOffHarness()
        h.handOff()
        self.assertEqual(
            h.transport.trail,
            HANDED_OFF,
        )
        self.assertNotIn("shutdown", h.transport.trail)
        self.assertNotIn("loseConnection", h.transport.trail)
        [reason] = h.protocol.reasons
        self.assertTrue(reason.check(SocketHandedOff))
        # Still an orderly end for code that only knows ConnectionDone.
        self.assertTrue(reason.check(ConnectionDone))

    def test_socketReleasedBeforeStartLogged(self) -> None:
        """
        The daemon lets go of the socket as soon as the child exists,
        before the START line (and the reaping of a child that was quick):
        the client's end of file waits for the child alone.
        """
        h = HandOffHarness()

        def observe(event: dict[str, Any]) -> None:
            h.events.append(event)
            h.transport.trail.append(str(event.get(logs.EVENT_FIELD)))

        h.log = Logger(observer=observe)
        h.handOff()
        self.assertEqual(
            h.transport.trail,
            [*HANDED_OFF, logs.START],
        )

    def test_releasedOnceWhenStartedLater(self) -> None:
        """
        A spawner that reports the child after C{spawn} returned (the
        spawner process) gets the socket released once, by then.
        """
        h = HandOffHarness()
        held: list[Any] = []

        class Later(ReactorSpawner):
            def spawn(
                self, protocol: Any, plan: LaunchPlan, childFDs: Any = None
            ) -> Any:
                held.append(protocol)
                return None

        h.spawner = Later(h.reactor)  # type: ignore[assignment]
        child = h.handOff()
        assert child is not None
        self.assertEqual(h.transport.trail.count("close"), 1)
        self.assertEqual(len(h.protocol.reasons), 1)
        [protocol] = held
        # The spawner process reports the pid a turn later.
        process = h.reactor.spawnProcess(protocol, "/usr/bin/server")
        self.assertEqual(h.transport.trail.count("close"), 1)
        self.assertEqual(len(h.protocol.reasons), 1)
        self.assertEqual([e["pid"] for e in h.of(logs.START)], [process.pid])

    def test_startAndExitLogged(self) -> None:
        """
        START carries the child's pid and the client; EXIT its status.
        """
        h = HandOffHarness()
        h.handOff()
        [start] = h.of(logs.START)
        self.assertEqual(
            (start["service"], start["pid"], start["host"], start["port"]),
            ("svc", h.process.pid, "10.0.0.7", 40001),
        )
        pid = h.process.pid
        h.reactor.advance(3)
        h.process.end(status=2)
        [end] = h.of(logs.EXIT)
        self.assertEqual(
            (end["pid"], end["status"], end["signal"], end["duration"]),
            (pid, 2, None, 3.0),
        )

    def test_onEndedOnce(self) -> None:
        """
        C{onEnded} runs once, when the child has ended, not before.
        """
        h = HandOffHarness()
        child = h.handOff()
        assert child is not None
        self.assertEqual(h.ended, 0)
        h.process.exit(0)
        self.assertEqual(h.ended, 0)
        h.process.end(0)
        self.assertEqual(h.ended, 1)
        child.processEnded(Failure(ConnectionDone()))
        self.assertEqual(h.ended, 1)
        self.assertTrue(child.ended)

    def test_stderrLinesLogged(self) -> None:
        """
        The stderr pipe's lines are logged; an unterminated last line when
        the pipe closes.
        """
        h = HandOffHarness()
        h.handOff()
        h.process.output(b"first\nsec", 2)
        h.process.output(b"ond\r\nlast", 2)
        h.process.end(0)
        lines = [(e["line"], e["pid"]) for e in h.of(logs.STDERR)]
        pid = h.of(logs.START)[0]["pid"]
        self.assertEqual(lines, [("first", pid), ("second", pid), ("last", pid)])

    def test_longStderrLineCut(self) -> None:
        """
        A long line is logged in pieces of at most L{MAX_STDERR_LINE} as it
        comes; a long line that arrives whole is cut (as the bridge does).
        """
        h = HandOffHarness()
        h.handOff()
        h.process.output(b"x" * (logs.MAX_STDERR_LINE + 10), 2)
        h.process.output(b"\n" + b"y" * (logs.MAX_STDERR_LINE + 1) + b"\n", 2)
        events = h.of(logs.STDERR)
        self.assertEqual(
            [(len(e["line"]), e["truncated"]) for e in events],
            [
                (logs.MAX_STDERR_LINE, True),
                (10, False),
                (logs.MAX_STDERR_LINE, True),
            ],
        )

    def test_spawnFailure(self) -> None:
        """
        A child that cannot start: logged, the connection closed the
        ordinary way, the socket non-blocking again and not closed by the
        handoff, C{onEnded} once, no child returned.
        """
        h = HandOffHarness()
        h.reactor.spawnErrors["/usr/bin/server"] = OSError(errno.ENOENT, "nope")
        self.assertIsNone(h.handOff())
        [failed] = h.of(logs.SPAWN_FAILED)
        self.assertEqual((failed["host"], failed["port"]), ("10.0.0.7", 40001))
        self.assertIn("No such file or directory", failed["message"])
        self.assertEqual(
            h.transport.trail,
            ["setblocking True", "spawn", "setblocking False", "loseConnection"],
        )
        self.assertFalse(h.transport.socket.blocking)
        self.assertEqual(h.protocol.reasons, [])
        self.assertEqual(h.ended, 1)
        self.assertEqual(h.of(logs.START), [])

    def test_unexpectedSpawnError(self) -> None:
        """
        Any other error while starting is logged with its traceback and
        handled as a failed start.
        """
        h = HandOffHarness()

        def broken(*args: Any, **kw: Any) -> Any:
            raise RuntimeError("boom")

        h.spawner.spawn = broken  # type: ignore[method-assign]
        self.assertIsNone(h.handOff())
        [failed] = h.of(logs.SPAWN_FAILED)
        self.assertEqual(failed["message"], "RuntimeError: boom")
        self.assertIn("loseConnection", h.transport.trail)
        self.assertEqual(h.ended, 1)
        self.assertTrue(any(e.get("log_failure") for e in h.events))

    def test_pendingOutputSentFirst(self) -> None:
        """
        Output the daemon wrote but Twisted has not sent (banners) is sent
        before the child starts, without waiting (the socket is still
        non-blocking), and taken out of Twisted's buffers.
        """
        h = HandOffHarness()
        h.transport.dataBuffer = b"xxBAN"
        h.transport.offset = 2
        h.transport._tempDataBuffer = [b"NER\n", b"ok\n"]
        h.transport._tempDataLen = 7
        h.handOff()
        self.assertEqual(h.transport.socket.sent, b"BANNER\nok\n")
        self.assertEqual(h.transport.trail[:2], ["send", "setblocking True"])
        self.assertEqual(
            (
                h.transport.dataBuffer,
                h.transport._tempDataBuffer,
                h.transport._tempDataLen,
            ),
            (b"", [], 0),
        )

    def test_pendingOutputFails(self) -> None:
        """
        A client that cannot take the pending output fails the start.
        """
        h = HandOffHarness()
        h.transport._tempDataBuffer = [b"BANNER\n"]
        h.transport.socket.sendError = OSError(errno.EPIPE, "Broken pipe")
        self.assertIsNone(h.handOff())
        [failed] = h.of(logs.SPAWN_FAILED)
        self.assertIn("cannot send pending output", failed["message"])
        self.assertEqual(h.reactor.spawned, [])
        self.assertEqual(h.ended, 1)

    def test_pendingOutputNotTaken(self) -> None:
        """
        A client whose socket cannot take the pending output at once fails
        the start; the daemon never waits for it.
        """
        h = HandOffHarness()
        h.transport._tempDataBuffer = [b"BANNER\n"]
        h.transport.socket.room = 3
        self.assertIsNone(h.handOff())
        [failed] = h.of(logs.SPAWN_FAILED)
        self.assertIn("not reading", failed["message"])
        self.assertNotIn("blocking send", h.transport.trail)
        self.assertEqual(h.reactor.spawned, [])

    def test_mappedClientBecomesIPv4(self) -> None:
        """
        An IPv4 client of a dual-stack socket: the socket is made an IPv4
        one (IPV6_ADDRFORM) before the child sees it, as xinetd does.
        """
        if not sys.platform.startswith("linux"):
            raise self.skipTest("IPV6_ADDRFORM is Linux's")  # type: ignore[misc]
        h = HandOffHarness(
            peer=IPv6Address("TCP", "::ffff:10.0.0.7", 40001), family=socket.AF_INET6
        )
        h.handOff()
        self.assertEqual(
            h.transport.socket.options, [(socket.IPPROTO_IPV6, 1, socket.AF_INET)]
        )
        # REMOTE_HOST and the logs keep xinetd's ::ffff: form.
        self.assertEqual(h.of(logs.START)[0]["host"], "::ffff:10.0.0.7")

    def test_realIPv6ClientUntouched(self) -> None:
        h = HandOffHarness(
            peer=IPv6Address("TCP", "2001:db8::7", 40001), family=socket.AF_INET6
        )
        h.handOff()
        self.assertEqual(h.transport.socket.options, [])

    def test_stopTermThenKill(self) -> None:
        """
        L{HandoffChild.stop}: SIGTERM now, SIGKILL after the kill delay.
        """
        h = HandOffHarness()
        child = h.handOff()
        assert child is not None
        child.stop()
        self.assertEqual(h.process.signals, ["TERM"])
        child.stop()
        self.assertEqual(h.process.signals, ["TERM"])
        h.reactor.advance(KILL_DELAY)
        self.assertEqual(h.process.signals, ["TERM", "KILL"])
        h.process.endBySignal("KILL")
        self.assertEqual(h.ended, 1)
        self.assertEqual(h.of(logs.EXIT)[0]["signal"], 9)

    def test_stopProcessGroup(self) -> None:
        """
        A child leading its own process group is signalled as a group; a
        child that ends after SIGTERM gets no SIGKILL.
        """
        h = HandOffHarness(newSession=True)
        child = h.handOff()
        assert child is not None
        child.stop()
        self.assertEqual((h.process.groupSignals, h.process.signals), (["TERM"], []))
        h.process.endBySignal("TERM")
        h.reactor.advance(KILL_DELAY * 2)
        self.assertEqual(h.process.groupSignals, ["TERM"])
        self.assertEqual(h.reactor.getDelayedCalls(), [])


class HandoffProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryProcessReactor()
        self.events: list[dict[str, Any]] = []
        self.ended = 0
        self.peers: list[Peer] = []

    def build(self, makePlan: Any = None) -> tuple[HandoffProtocol, FakeTCPTransport]:
        def plan(peer: Peer) -> LaunchPlan:
            self.peers.append(peer)
            return PLAN

        def onEnded() -> None:
            self.ended += 1

        setup = ChildSetup(
            logs.ServiceLog("svc", logger=Logger(observer=self.events.append)),
            makePlan or plan,
            ReactorSpawner(self.reactor),
            self.reactor,
            KILL_DELAY,
        )
        protocol = HandoffProtocol(setup, onEnded=onEnded)
        transport = FakeTCPTransport(protocol)
        protocol.makeConnection(transport)  # type: ignore[arg-type]
        return protocol, transport

    def test_handsOffOnConnect(self) -> None:
        """
        The connection is handed over at once; onEnded waits for the child.
        """
        protocol, _ = self.build()
        [peer] = self.peers
        self.assertEqual((peer.remoteHost, peer.remotePort), ("10.0.0.7", 40001))
        [process] = self.reactor.spawned
        self.assertEqual(process.call.childFDs, {0: FD, 1: FD, 2: "r"})
        assert protocol.lostReason is not None
        self.assertTrue(protocol.lostReason.check(SocketHandedOff))
        self.assertEqual(self.ended, 0)
        process.end(0)
        self.assertEqual(self.ended, 1)

    def test_stop(self) -> None:
        protocol, _ = self.build()
        [process] = self.reactor.spawned
        protocol.stop()
        self.assertEqual(process.signals, ["TERM"])
        self.reactor.advance(KILL_DELAY)
        self.assertEqual(process.signals, ["TERM", "KILL"])
        process.endBySignal("KILL")
        self.assertEqual(self.ended, 1)

    def test_planFails(self) -> None:
        """
        A plan that cannot be made: logged, connection closed, onEnded once
        the connection is gone.
        """

        def broken(peer: Peer) -> LaunchPlan:
            raise ValueError("bad plan")

        protocol, transport = self.build(broken)
        [failed] = [
            e for e in self.events if e.get("twinetdEvent") == logs.SPAWN_FAILED
        ]
        self.assertEqual(failed["message"], "ValueError: bad plan")
        self.assertEqual(transport.trail, ["loseConnection"])
        self.assertEqual(self.ended, 0)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.ended, 1)
        protocol.stop()

    def test_spawnFails(self) -> None:
        self.reactor.spawnErrors["/usr/bin/server"] = OSError(errno.EACCES, "no")
        protocol, transport = self.build()
        self.assertIsNone(protocol.child)
        self.assertIn("loseConnection", transport.trail)
        self.assertEqual(self.ended, 0)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.ended, 1)


# wait = yes


def waitConfig(**kw: Any) -> ServiceConfig:
    values: dict[str, Any] = {
        "name": "ws",
        "source": SourceLocation("/etc/xinetd.d/ws", 3),
        "socketType": SocketType.STREAM,
        "wait": True,
        "port": 0,
        "bind": "127.0.0.1",
        "server": "/usr/bin/server",
    }
    values.update(kw)
    return ServiceConfig(**values)


class FakeListener:
    def __init__(self) -> None:
        self.port = 4242
        self.fd = 23
        self.isPending = False
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    def pending(self) -> bool:
        return self.isPending

    def close(self) -> None:
        self.closed = True
        self.fd = -1


class WaitStreamHarness:
    def __init__(self, backoff: Backoff | None = None, **kw: Any) -> None:
        self.reactor = MemoryProcessReactor()
        self.reactor.advance(100.0)
        self.listener = FakeListener()
        self.binds: list[tuple[ServiceConfig, str]] = []
        self.events: list[dict[str, Any]] = []
        self.plans = 0
        self.config = waitConfig()

        def bind(config: ServiceConfig, interface: str) -> FakeListener:
            self.binds.append((config, interface))
            return self.listener

        def makePlan(peer: Peer | None) -> LaunchPlan:
            assert peer is None
            self.plans += 1
            return PLAN

        kw.setdefault("admit", admitEveryone)
        if kw.pop("stderrToSocket", False):
            self.config = attrs.evolve(self.config, stderrToSocket=True)
        self.service = WaitStreamListener(
            self.config,
            runtimeFor(self.reactor, killDelay=KILL_DELAY),
            self.reactor,
            makePlan=makePlan,
            serviceLog=logs.ServiceLog(
                "ws", logger=Logger(observer=self.events.append)
            ),
            backoff=backoff,
            bind=bind,
            **kw,
        )

    @property
    def watching(self) -> bool:
        return bool(self.reactor.getReaders())

    def readable(self) -> None:
        """
        The reactor finds the listening socket readable.
        """
        [reader] = self.reactor.getReaders()
        reader.doRead()  # type: ignore[attr-defined]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get(logs.EVENT_FIELD) == kind]


class WaitStreamListenerTests(SynchronousTestCase):
    def test_listensAndWatches(self) -> None:
        h = WaitStreamHarness()
        self.assertIsNone(h.service.port)
        h.service.startService()
        self.assertEqual(h.binds, [(h.config, "127.0.0.1")])
        self.assertEqual(h.service.port, 4242)
        self.assertTrue(h.watching)
        [reader] = h.reactor.getReaders()
        self.assertEqual(reader.fileno(), 23)  # type: ignore[attr-defined]

    def test_privilegedStartBinds(self) -> None:
        """
        The port is bound before privileges are dropped, watched once
        started.
        """
        h = WaitStreamHarness()
        h.service.privilegedStartService()
        self.assertEqual(len(h.binds), 1)
        self.assertFalse(h.watching)
        h.service.startService()
        self.assertEqual(len(h.binds), 1)
        self.assertTrue(h.watching)

    def test_pendingConnectionStartsChild(self) -> None:
        """
        A pending connection: watching stops and a child gets the listening
        socket as 0 and 1, with no peer (xinetd's <no address>).
        """
        h = WaitStreamHarness()
        h.service.startService()
        h.readable()
        self.assertFalse(h.watching)
        [process] = h.reactor.spawned
        self.assertEqual(process.call.childFDs, {0: 23, 1: 23, 2: "r"})
        [start] = h.of(logs.START)
        self.assertEqual((start["host"], start["port"]), ("<no address>", 0))
        self.assertIs(h.service.child, process.proto)

    def test_stderrToSocket(self) -> None:
        h = WaitStreamHarness(stderrToSocket=True)
        h.service.startService()
        h.readable()
        self.assertEqual(h.reactor.spawned[0].call.childFDs, {0: 23, 1: 23, 2: 23})

    def test_watchesAgainAfterChild(self) -> None:
        h = WaitStreamHarness()
        h.service.startService()
        h.readable()
        process = h.reactor.spawned[0]
        h.reactor.advance(30)
        process.end(0)
        self.assertTrue(h.watching)
        self.assertIsNone(h.service.child)
        self.assertEqual(h.of(logs.EXIT)[0]["duration"], 30)
        h.readable()
        self.assertEqual(len(h.reactor.spawned), 2)

    def test_loopGuard(self) -> None:
        """
        Children that exit at once leaving the connection pending: after the
        burst, the socket is watched again only after the back-off delay,
        which is logged (once per delay).
        """
        h = WaitStreamHarness(Backoff(doubling(1.0, 10.0), free=2))
        h.listener.isPending = True
        h.service.startService()
        for _ in range(2):
            h.readable()
            h.reactor.spawned[-1].end(1)
            self.assertTrue(h.watching)
        self.assertEqual(h.of(logs.STREAM_BACKOFF), [])
        h.readable()
        pid = h.reactor.spawned[-1].pid
        h.reactor.spawned[-1].end(1)
        self.assertFalse(h.watching)
        [backoff] = h.of(logs.STREAM_BACKOFF)
        self.assertEqual(
            (backoff["delay"], backoff["quickExits"], backoff["pid"]),
            (1.0, 3, pid),
        )
        h.reactor.advance(0.99)
        self.assertFalse(h.watching)
        h.reactor.advance(0.01)
        self.assertTrue(h.watching)
        h.readable()
        h.reactor.spawned[-1].end(1)
        self.assertFalse(h.watching)
        h.reactor.advance(2.0)
        self.assertTrue(h.watching)
        self.assertEqual([e["delay"] for e in h.of(logs.STREAM_BACKOFF)], [1.0, 2.0])
        self.assertEqual(len(h.reactor.spawned), 4)

    def test_backoffLogRateLimited(self) -> None:
        """
        At the maximum delay the same back-off is logged at most once per
        interval.
        """
        h = WaitStreamHarness(Backoff(doubling(1.0, 1.0)), backoffLogInterval=10.0)
        h.listener.isPending = True
        h.service.startService()
        for _ in range(12):
            h.readable()
            h.reactor.spawned[-1].end(1)
            h.reactor.advance(1.0)
        self.assertEqual(len(h.reactor.spawned), 12)
        self.assertEqual(len(h.of(logs.STREAM_BACKOFF)), 2)

    def test_slowChildNoBackoff(self) -> None:
        h = WaitStreamHarness(Backoff(doubling(1.0, 10.0)))
        h.listener.isPending = True
        h.service.startService()
        h.readable()
        h.reactor.advance(2)
        h.reactor.spawned[-1].end(0)
        self.assertTrue(h.watching)

    def test_spawnFailure(self) -> None:
        """
        A child that cannot start is logged and counts as a quick exit.
        """
        h = WaitStreamHarness(Backoff(doubling(1.0, 10.0), free=1))
        h.reactor.spawnErrors["/usr/bin/server"] = OSError(errno.ENOENT, "nope")
        h.listener.isPending = True
        h.service.startService()
        h.readable()
        self.assertTrue(h.watching)
        h.readable()
        self.assertFalse(h.watching)
        failures = h.of(logs.SPAWN_FAILED)
        self.assertEqual(len(failures), 2)
        self.assertEqual(failures[0]["host"], "<no address>")
        self.assertIsNone(h.service.child)
        h.reactor.advance(1.0)
        self.assertTrue(h.watching)

    def test_xinetdLines(self) -> None:
        """
        With a log_type, the service's xinetd lines say C{from=<no
        address>}, as xinetd's do for C{wait = yes} streams.
        """
        lines: list[str] = []

        class Sink:
            def write(self, message: str, sizeCheck: bool = True) -> None:
                lines.append(message)

            def reopen(self) -> None:
                pass

            def close(self) -> None:
                pass

        h = WaitStreamHarness()
        h.service.serviceLog = logs.ServiceLog.fromConfig(
            h.service.config,
            ServiceLines(Sink(), frozenset({"PID", "HOST", "EXIT"})),
        )
        h.service.startService()
        h.readable()
        process = h.reactor.spawned[0]
        pid = process.pid
        process.end(3)
        self.assertEqual(len(lines), 2)
        self.assertTrue(
            lines[0].endswith(f"START: ws pid={pid} from=<no address>"), lines
        )
        self.assertTrue(lines[1].endswith(f"EXIT: ws status=3 pid={pid}"), lines)

    def test_stopWithoutChild(self) -> None:
        h = WaitStreamHarness()
        h.service.startService()
        d = h.service.stopService()
        self.assertIsNone(self.successResultOf(d))
        self.assertTrue(h.listener.closed)
        self.assertFalse(h.watching)
        self.assertIsNone(h.service.port)

    def test_stopKillsChild(self) -> None:
        """
        stopService: socket closed, child SIGTERMed then SIGKILLed; the
        result fires when the child has ended; nothing is watched again.
        """
        h = WaitStreamHarness()
        h.service.startService()
        h.readable()
        process = h.reactor.spawned[0]
        d = h.service.stopService()
        self.assertTrue(h.listener.closed)
        self.assertEqual(process.signals, ["TERM"])
        self.assertNoResult(d)
        h.reactor.advance(KILL_DELAY)
        self.assertEqual(process.signals, ["TERM", "KILL"])
        process.endBySignal("KILL")
        self.assertIsNone(self.successResultOf(d))
        self.assertFalse(h.watching)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_stopDuringBackoff(self) -> None:
        h = WaitStreamHarness(Backoff(doubling(5.0, 10.0)))
        h.listener.isPending = True
        h.service.startService()
        h.readable()
        h.reactor.spawned[0].end(1)
        self.assertEqual(len(h.reactor.getDelayedCalls()), 1)
        self.successResultOf(h.service.stopService())
        self.assertEqual(h.reactor.getDelayedCalls(), [])
        self.assertFalse(h.watching)

    def test_bindFails(self) -> None:
        h = WaitStreamHarness()

        def bind(config: ServiceConfig, interface: str) -> Any:
            raise CannotListenError(interface, 80, OSError(errno.EADDRINUSE, "in use"))  # type: ignore[no-untyped-call]

        h.service._bind = bind
        h.service.startService()
        self.assertFalse(h.watching)
        self.assertIsInstance(h.service.failure, CannotListenError)
        [error] = [e for e in h.events if "cannot listen" in e["log_format"]]
        self.assertEqual(
            (error["file"], error["line"], error["service"]),
            ("/etc/xinetd.d/ws", 3, "ws"),
        )
        self.successResultOf(h.service.stopService())


class ListenAddressTests(SynchronousTestCase):
    def test_bind(self) -> None:
        self.assertEqual(listenAddress(waitConfig(bind="10.1.2.3")), "10.1.2.3")

    def test_ipv4Flag(self) -> None:
        config = waitConfig(bind=None, flags=frozenset({"IPv4"}))
        self.assertEqual(listenAddress(config), "0.0.0.0")


class WaitStreamAdmissionTests(SynchronousTestCase):
    """
    C{wait = yes} streams ask the daemon's gate before each child.
    """

    def test_ticketHeldWhileChildRuns(self) -> None:
        limits = Limits(Clock())
        limits.updateConfig("svc", ServiceLimits())
        peers: list[Any] = []

        def admit(peer: Any) -> Deferred[Admission]:
            peers.append(peer)
            ticket = limits.acquire("svc", None)
            assert isinstance(ticket, Ticket)
            return succeed(Admission(ticket=ticket))

        h = WaitStreamHarness(admit=admit)
        h.service.startService()
        h.readable()
        [process] = h.reactor.spawned
        self.assertEqual(peers, [None])
        self.assertEqual(limits.running("svc"), 1)
        process.end(0)
        self.assertEqual(limits.running("svc"), 0)

    def test_refusedWaitsAndAsksAgain(self) -> None:
        """
        A refusal logs FAIL (from <no address>), starts nothing, and the
        service asks again after REFUSED_RETRY seconds.
        """
        answers = [Admission.refused("connections per second")]

        def admit(peer: Any) -> Deferred[Admission]:
            return succeed(answers.pop(0) if answers else Admission())

        h = WaitStreamHarness(admit=admit)
        h.service.startService()
        h.readable()
        self.assertEqual(h.reactor.spawned, [])
        [fail] = h.of(logs.FAIL)
        self.assertEqual(
            (fail["reason"], fail["host"]), ("connections per second", "<no address>")
        )
        self.assertFalse(h.watching)
        h.reactor.advance(REFUSED_RETRY)
        self.assertTrue(h.watching)
        h.readable()
        self.assertEqual(len(h.reactor.spawned), 1)

    def test_cpsPauseWaits(self) -> None:
        """
        A refusal that trips C{cps} stops watching for the whole pause.
        """
        answers = [Admission.refused("connections per second", pause=5)]

        def admit(peer: Any) -> Deferred[Admission]:
            return succeed(answers.pop(0) if answers else Admission())

        h = WaitStreamHarness(admit=admit)
        h.service.startService()
        h.readable()
        h.reactor.advance(4.9)
        self.assertFalse(h.watching)
        h.reactor.advance(0.1)
        self.assertTrue(h.watching)
