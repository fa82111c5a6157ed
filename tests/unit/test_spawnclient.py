"""
L{twinetd.spawnclient} and L{twinetd.spawnerprocess} with fakes: the
messages, the spawner process's bookkeeping (starts, signals, reaping), and
the daemon's side (the transport's events, the channel, the death of the
spawner process).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
from typing import Any

from twisted.internet.error import (
    ConnectionDone,
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twinetd import logs, spawn, spawnclient, spawnerprocess
from twinetd.child import ChildProcess
from twinetd.errors import SpawnError, SpawnerUnavailable
from twinetd.launch import LaunchPlan
from twinetd.spawnclient import (
    ProcessSpawner,
    RemoteProcess,
    SpawnerChannel,
)
from twinetd.spawnerprocess import SpawnerLoop, decode, encode
from twinetd.testing import MemoryProcessReactor

PLAN = LaunchPlan(executable="/bin/sh", argv=("sh", "-c", "true"), env=(("A", "b"),))


class FakeSocket:
    """
    The parts of a non-blocking socket the channel and the loop use.
    """

    def __init__(self, packets: list[bytes] | None = None) -> None:
        self.sent: list[bytes] = []
        self.packets = list(packets or [])
        self.full = False
        self.closed = False

    def send(self, data: bytes) -> int:
        if self.full:
            raise BlockingIOError()
        self.sent.append(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        if not self.packets:
            raise BlockingIOError()
        return self.packets.pop(0)

    def recvmsg(self, size: int, ancillary: int) -> tuple[bytes, list[Any], int, None]:
        return self.recv(size), [], 0, None

    def fileno(self) -> int:
        return -1 if self.closed else 99

    def close(self) -> None:
        self.closed = True


class FakeChannel:
    """
    A L{SpawnerChannel} that records what the daemon sends.
    """

    def __init__(self) -> None:
        self.sock = FakeSocket()
        self.sent: list[tuple[tuple[Any, ...], list[int]]] = []
        self.error: OSError | None = None

    def fileno(self) -> int:
        return 99

    def logPrefix(self) -> str:
        return "fake"

    def doRead(self) -> None:
        return None

    def connectionLost(self, reason: Failure) -> None:
        pass

    def send(self, packet: bytes, fds: list[int]) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((decode(packet), list(fds)))

    waiting = 0

    def discard(self) -> None:
        pass


class Recorder(ProcessProtocol):
    def __init__(self) -> None:
        self.made: list[int | None] = []
        self.exited: list[Failure] = []
        self.ended: list[Failure] = []

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.made.append(self.transport.pid)

    def processExited(self, reason: Failure) -> None:
        self.exited.append(reason)

    def processEnded(self, reason: Failure) -> None:
        self.ended.append(reason)


class MessageTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        message = ("s", 3, ["a"], "/x", [b"A=b"], (True, False, True), -1, {})
        self.assertEqual(decode(encode(message)), message)

    def test_badPackets(self) -> None:
        for packet in (b"", b"\xff\x00", encode([1]), encode(())):  # type: ignore[arg-type]
            with self.assertRaises(ValueError):
                decode(packet)


class SpawnerLoopTests(SynchronousTestCase):
    """
    The spawner process's side, its system calls replaced.
    """

    def setUp(self) -> None:
        self.sock = FakeSocket()
        self.loop = SpawnerLoop(self.sock)  # type: ignore[arg-type]
        self.starts: list[tuple[Any, ...]] = []
        self.signals: list[tuple[str, int, int]] = []
        self.patch(spawnerprocess, "startChild", self.startChild)
        self.patch(os, "kill", lambda pid, n: self.signals.append(("kill", pid, n)))
        self.patch(os, "killpg", lambda pid, n: self.signals.append(("pg", pid, n)))
        self.result: int | Exception = 4242

    def startChild(self, *args: Any) -> int:
        self.starts.append(args)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result

    def replies(self) -> list[tuple[Any, ...]]:
        return [decode(packet) for packet in self.sock.sent]

    def request(
        self,
        ident: int,
        fds: list[int],
        slots: tuple[bool, ...],
        environment: Any = None,
    ) -> None:
        if environment is None:
            environment = [b"A=b"]
        message = ("s", ident, ["sh"], "/bin/sh", environment, slots, 0o22, {})
        self.loop.handle(message, fds)

    def test_environmentAsMapping(self) -> None:
        """
        A daemon that was running when twinetd was upgraded under it sends
        the variables as a mapping: they are encoded here.
        """
        self.request(7, [], (False, False, False), {"A": "b", "C": "é"})
        [args] = self.starts
        self.assertEqual(args[2], [b"A=b", "C=é".encode()])

    def test_start(self) -> None:
        """
        The descriptors given fill the slots marked, in order; they are
        closed after the start; the pid goes back.
        """
        r, w = os.pipe()
        self.request(7, [r, w], (True, False, True))
        [args] = self.starts
        self.assertEqual(args, (["sh"], "/bin/sh", [b"A=b"], (r, None, w), 0o22, {}))
        self.assertEqual(self.replies(), [("p", 7, 4242)])
        for fd in (r, w):
            self.assertRaises(OSError, os.fstat, fd)

    def test_startFails(self) -> None:
        """
        An exec error goes back with its errno; other errors with their
        text; the descriptors are closed all the same.
        """
        self.result = OSError(errno.ENOEXEC, "Exec format error", "/bin/sh")
        r, w = os.pipe()
        self.request(1, [r, w], (True, True, False))
        self.result = ValueError("embedded null byte")
        self.request(2, [], (False, False, False))
        self.assertEqual(
            self.replies(),
            [
                ("e", 1, errno.ENOEXEC, "Exec format error"),
                ("e", 2, 0, "embedded null byte"),
            ],
        )
        self.assertRaises(OSError, os.fstat, r)
        self.assertEqual(self.loop.pids, {})

    def test_signalsAndReaping(self) -> None:
        """
        A live child is signalled; once reaped, only its group is, until
        the daemon forgets it; a child never started is never signalled.
        """
        self.request(1, [], (False, False, False))
        self.loop.handle(("k", 1, signal.SIGTERM, False), [])
        self.loop.handle(("k", 1, signal.SIGTERM, True), [])
        statuses = [(4242, 9 << 8), (0, 0)]
        self.patch(os, "waitpid", lambda pid, options: statuses.pop(0))
        self.loop.reap()
        self.loop.handle(("k", 1, signal.SIGKILL, False), [])
        self.loop.handle(("k", 1, signal.SIGKILL, True), [])
        self.loop.handle(("f", 1), [])
        self.loop.handle(("k", 1, signal.SIGKILL, True), [])
        self.loop.handle(("k", 5, signal.SIGKILL, True), [])
        self.assertEqual(
            self.signals,
            [
                ("kill", 4242, signal.SIGTERM),
                ("pg", 4242, signal.SIGTERM),
                ("pg", 4242, signal.SIGKILL),
            ],
        )
        self.assertEqual(self.replies(), [("p", 1, 4242), ("x", 1, 9 << 8)])

    def test_reapsBetweenStarts(self) -> None:
        """
        A child that exited is reported before the next start of a batch
        of requests, not after the whole batch.
        """
        request = ("s", 1, ["sh"], "/bin/sh", {}, (False, False, False), -1, {})
        self.sock.packets = [encode(request), encode(("s", 2, *request[2:]))]
        statuses = [(4242, 0), (0, 0), (0, 0)]
        self.patch(os, "waitpid", lambda pid, options: statuses.pop(0))
        self.assertTrue(self.loop.receive())
        self.assertEqual(
            [reply[:2] for reply in self.replies()], [("p", 1), ("x", 1), ("p", 2)]
        )
        self.sock.packets = [b""]
        self.assertFalse(self.loop.receive())

    def test_unknownChildReapedQuietly(self) -> None:
        statuses = [(555, 0), (0, 0)]
        self.patch(os, "waitpid", lambda pid, options: statuses.pop(0))
        self.loop.reap()
        self.assertEqual(self.replies(), [])

    def test_repliesQueuedWhenFull(self) -> None:
        """
        The spawner process never blocks on the daemon: replies wait for
        room, in order.
        """
        self.sock.full = True
        self.request(1, [], (False, False, False))
        self.request(2, [], (False, False, False))
        self.assertEqual(self.sock.sent, [])
        self.sock.full = False
        self.loop.flush()
        self.assertEqual(self.replies(), [("p", 1, 4242), ("p", 2, 4242)])


def channelOn(
    case: SynchronousTestCase, sock: Any
) -> tuple[SpawnerChannel, MemoryReactorClock, list[Any]]:
    """
    A L{SpawnerChannel} on C{sock} and a fake reactor; what it reports
    (messages, C{"lost"}, C{"stuck"}) in the list.
    """
    reactor = MemoryReactorClock()
    told: list[Any] = []
    channel = SpawnerChannel(
        sock,
        reactor,
        reactor,
        told.append,
        lambda: told.append("lost"),
        lambda: told.append("stuck"),
    )
    return channel, reactor, told


def openDescriptors() -> set[int]:
    # Not the listing's own descriptor, closed by the time it returns.
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        found.add(int(name))
    return found


class ChannelTests(SynchronousTestCase):
    def test_reads(self) -> None:
        """
        Every waiting packet is delivered; end of file is the connection's
        end; a bad packet ends it too.
        """
        sock = FakeSocket([encode(("p", 1, 2)), encode(("x", 1, 0))])
        channel, _, got = channelOn(self, sock)
        self.assertIsNone(channel.doRead())
        self.assertEqual(got, [("p", 1, 2), ("x", 1, 0)])
        sock.packets = [b""]
        result = channel.doRead()
        assert result is not None
        self.assertIsInstance(result.value, ConnectionDone)
        sock.packets = [b"\x00junk"]
        result = channel.doRead()
        assert result is not None
        self.assertIsInstance(result.value, ValueError)

    def test_lost(self) -> None:
        channel, _, told = channelOn(self, FakeSocket())
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(told, ["lost"])

    def fullPair(self) -> tuple[socket.socket, socket.socket]:
        """
        A connected C{SOCK_SEQPACKET} pair whose first end has no room.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ours.setblocking(False)
        filler = 0
        for _ in range(100_000):
            try:
                ours.send(encode(("f", filler)))
            except BlockingIOError:
                break
            filler += 1
        else:
            self.fail("the socket never filled")
        self.fillers = filler
        return ours, theirs

    def drain(self, theirs: socket.socket) -> list[tuple[tuple[Any, ...], list[int]]]:
        got = []
        theirs.setblocking(False)
        for _ in range(100_000):
            try:
                packet, fds, _, _ = socket.recv_fds(theirs, 65536, 8)
            except BlockingIOError:
                break
            got.append((decode(packet), fds))
        return got

    def test_queuedWhenFull(self) -> None:
        """
        A message the socket has no room for waits, its descriptors copied
        (the caller closes its own at once); it goes, in order, when the
        socket is writable again, and the copies are closed.  The daemon
        never blocks.
        """
        ours, theirs = self.fullPair()
        channel, reactor, told = channelOn(self, ours)
        before = openDescriptors()
        readEnd, writeEnd = os.pipe()
        channel.send(encode(("s", 7)), [readEnd])
        channel.send(encode(("k", 7, 15, True)), [])
        os.close(readEnd)
        self.assertEqual(channel.waiting, 2)
        self.assertIn(channel, reactor.getWriters())
        # Nothing was read yet: still no room.
        self.assertIsNone(channel.doWrite())
        self.assertEqual(channel.waiting, 2)
        got = self.drain(theirs)
        self.assertEqual(len(got), self.fillers)
        self.assertIsNone(channel.doWrite())
        self.assertEqual(channel.waiting, 0)
        self.assertNotIn(channel, reactor.getWriters())
        [(start, [passed]), (kill, [])] = self.drain(theirs)
        self.assertEqual((start, kill), (("s", 7), ("k", 7, 15, True)))
        # The passed descriptor is the pipe's read end.
        os.write(writeEnd, b"x")
        self.assertEqual(os.read(passed, 1), b"x")
        os.close(passed)
        os.close(writeEnd)
        self.assertEqual(openDescriptors(), before)
        self.assertEqual(told, [])

    def test_queueBounded(self) -> None:
        """
        Beyond L{spawnclient.QUEUE_LIMIT} waiting messages, a send fails at
        once, and nothing of it is kept.
        """
        self.patch(spawnclient, "QUEUE_LIMIT", 2)
        ours, _ = self.fullPair()
        channel, _, _ = channelOn(self, ours)
        channel.send(encode(("f", 1)), [])
        channel.send(encode(("f", 2)), [])
        before = openDescriptors()
        readEnd, writeEnd = os.pipe()
        self.addCleanup(os.close, readEnd)
        self.addCleanup(os.close, writeEnd)
        with self.assertRaises(BlockingIOError):
            channel.send(encode(("s", 3)), [readEnd])
        self.assertEqual(channel.waiting, 2)
        self.assertEqual(openDescriptors(), before | {readEnd, writeEnd})

    def test_stuck(self) -> None:
        """
        Waiting messages that make no progress for
        L{spawnclient.STUCK_TIMEOUT} seconds make the spawner process
        stuck; progress starts the time again; an empty queue stops it.
        """
        ours, theirs = self.fullPair()
        channel, reactor, told = channelOn(self, ours)
        channel.send(encode(("s", 1)), [])
        channel.send(encode(("s", 2)), [])
        reactor.advance(spawnclient.STUCK_TIMEOUT - 1)
        # Room for one more message only: progress, not the whole queue.
        theirs.recv(65536)
        self.assertIsNone(channel.doWrite())
        self.assertEqual(channel.waiting, 1)
        reactor.advance(spawnclient.STUCK_TIMEOUT - 1)
        self.assertEqual(told, [])
        reactor.advance(1)
        self.assertEqual(told, ["stuck"])
        self.drain(theirs)
        self.assertIsNone(channel.doWrite())
        self.assertEqual(channel.waiting, 0)
        reactor.advance(spawnclient.STUCK_TIMEOUT * 2)
        self.assertEqual(told, ["stuck"])

    def test_discard(self) -> None:
        """
        The spawner process gone, the waiting messages go with their
        descriptors' copies, and the channel is no longer written.
        """
        ours, _ = self.fullPair()
        channel, reactor, told = channelOn(self, ours)
        before = openDescriptors()
        readEnd, writeEnd = os.pipe()
        channel.send(encode(("s", 1)), [readEnd, writeEnd])
        os.close(readEnd)
        os.close(writeEnd)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(told, ["lost"])
        self.assertEqual(channel.waiting, 0)
        self.assertNotIn(channel, reactor.getWriters())
        self.assertEqual(openDescriptors(), before)
        reactor.advance(spawnclient.STUCK_TIMEOUT * 2)
        self.assertEqual(told, ["lost"])


class ProcessSpawnerTests(SynchronousTestCase):
    """
    The daemon's side, with a fake channel in place of the spawner
    process.
    """

    def setUp(self) -> None:
        self.reactor = MemoryProcessReactor()
        self.spawner = ProcessSpawner(self.reactor)
        self.channel = FakeChannel()
        self.spawner._channel = self.channel  # type: ignore[assignment]
        self.errors: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.errors.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.errors.append)

    def spawn(self, protocol: ProcessProtocol) -> RemoteProcess:
        process = self.spawner.spawn(protocol, PLAN, {0: 10, 1: 11})
        assert isinstance(process, RemoteProcess)
        return process

    def assertRestartsAtNextSpawn(self) -> None:
        """
        The next spawn starts a new spawner process.
        """
        restarted: list[bool] = []
        self.patch(
            self.spawner,
            "_startProcess",
            lambda: restarted.append(True) or self.channel,
        )
        self.spawn(Recorder())
        self.assertEqual(restarted, [True])

    def test_request(self) -> None:
        """
        The request carries what L{spawn.childStart} gives and the child's
        descriptors; the protocol hears nothing until the pid comes.
        """
        protocol = Recorder()
        self.spawn(protocol)
        [(message, fds)] = self.channel.sent
        self.assertEqual(
            message,
            (
                "s",
                0,
                ["sh", "-c", "true"],
                "/bin/sh",
                [b"A=b"],
                (True, True, False),
                -1,
                {"user": None, "group": None, "extra_groups": None},
            ),
        )
        self.assertEqual(fds, [10, 11])
        self.assertEqual(protocol.made, [])

    def test_requestFromAnOlderSpawnModule(self) -> None:
        """
        The spawn module of a daemon that was running when twinetd was
        upgraded under it gives the variables as a mapping: they are sent
        encoded.
        """
        old = spawn.ChildStart(["sh"], "/bin/sh", {"A": "b"}, -1, {}, False)  # type: ignore[arg-type]
        self.patch(spawnclient, "childStart", lambda plan: old)
        self.spawn(Recorder())
        [(message, _)] = self.channel.sent
        self.assertEqual(message[4], [b"A=b"])

    def test_startedAndExited(self) -> None:
        """
        The pid makes the connection; the status gives C{processExited}
        and C{processEnded} Twisted's reasons; the spawner process is told
        to forget the child.
        """
        for status, kind, code, number in (
            (0, ProcessDone, 0, None),
            (3 << 8, ProcessTerminated, 3, None),
            (signal.SIGKILL, ProcessTerminated, None, signal.SIGKILL),
        ):
            self.channel.sent.clear()
            protocol = Recorder()
            process = self.spawn(protocol)
            self.spawner._received(("p", process.ident, 1234))
            self.assertEqual(protocol.made, [1234])
            self.assertEqual(process.processGroup, 1234)
            self.spawner._received(("x", process.ident, status))
            for reason in (protocol.exited[0], protocol.ended[0]):
                self.assertIsInstance(reason.value, kind)
                if kind is ProcessTerminated:
                    self.assertEqual(reason.value.exitCode, code)
                    self.assertEqual(reason.value.signal, number)
            self.assertEqual(self.channel.sent[-1][0], ("f", process.ident))
            self.assertEqual(self.spawner.running, {})
            with self.assertRaises(ProcessExitedAlready):
                process.signalProcessGroup("TERM")

    def test_forgottenBeforeEnded(self) -> None:
        """
        By C{processEnded}, the child is no longer running (what that runs
        may close the spawner process: nothing is left to kill).
        """
        running: list[int] = []
        protocol = Recorder()
        protocol.processEnded = lambda reason: running.append(  # type: ignore[method-assign]
            len(self.spawner.running)
        )
        process = self.spawn(protocol)
        self.spawner._received(("p", process.ident, 1234))
        self.spawner._received(("x", process.ident, 0))
        self.assertEqual(running, [0])

    def test_signalsBeforeThePid(self) -> None:
        """
        Signals go to the spawner process by id, even before the pid is
        known (they arrive after the start request).
        """
        process = self.spawn(Recorder())
        process.signalProcessGroup("TERM")
        process.signalProcess(signal.SIGKILL)
        self.assertEqual(
            [m for m, _ in self.channel.sent[1:]],
            [("k", 0, signal.SIGTERM, True), ("k", 0, signal.SIGKILL, False)],
        )
        self.spawner._received(("x", process.ident, 0))
        with self.assertRaises(ProcessExitedAlready):
            process.signalProcess("TERM")

    def test_missingProgram(self) -> None:
        """
        A missing program is the same synchronous L{SpawnError}, before any
        request.
        """
        plan = LaunchPlan(executable="/nonexistent/x", argv=("x",), env=())
        with self.assertRaises(SpawnError) as caught:
            self.spawner.spawn(Recorder(), plan, {0: 10})
        self.assertEqual(
            str(caught.exception),
            "cannot execute /nonexistent/x: No such file or directory",
        )
        self.assertEqual(self.channel.sent, [])

    def test_spawnerProcessCannotStart(self) -> None:
        """
        A spawner process that cannot be started (its Python is not there)
        fails the start with L{SpawnerUnavailable}, naming the spawner
        process and not the program, and leaves no descriptor open.
        """
        spawner = ProcessSpawner(self.reactor)
        self.patch(sys, "executable", "/nonexistent/python3")
        before = set(os.listdir("/proc/self/fd"))
        with self.assertRaises(SpawnerUnavailable) as caught:
            spawner.spawn(Recorder(), PLAN, {0: 10})
        self.assertEqual(
            str(caught.exception),
            "cannot start the spawner process (/nonexistent/python3): "
            "No such file or directory",
        )
        self.assertEqual(set(os.listdir("/proc/self/fd")), before)
        self.assertIsNone(spawner.pid)

    def test_execFailsLater(self) -> None:
        """
        A program that fails to execute in the spawner process ends its
        protocol, without connection or C{processExited}, with the
        L{SpawnError} a failed spawn raises (its protocol reports it), and
        the spawner process is told to forget it.
        """
        protocol = Recorder()
        process = self.spawn(protocol)
        self.spawner._received(("e", process.ident, errno.ENOEXEC, "Exec format error"))
        self.assertEqual((protocol.made, protocol.exited), ([], []))
        [reason] = protocol.ended
        reason.trap(SpawnError)
        self.assertEqual(str(reason.value), "cannot execute /bin/sh: Exec format error")
        self.assertEqual(self.channel.sent[-1][0], ("f", process.ident))

    def test_spawnerDies(self) -> None:
        """
        When the spawner process is gone, its children's groups are killed
        and reported killed; a child without a pid yet ends without one; a
        new spawner process starts at the next spawn.
        """
        killed: list[tuple[int, int]] = []
        self.patch(os, "killpg", lambda pid, n: killed.append((pid, n)))
        started, pending = Recorder(), Recorder()
        first = self.spawn(started)
        self.spawn(pending)
        self.spawner._received(("p", first.ident, 1234))
        self.spawner._lost()
        self.assertEqual(killed, [(1234, signal.SIGKILL)])
        self.assertEqual(started.exited[0].value.signal, signal.SIGKILL)
        self.assertEqual(started.ended[0].value.signal, signal.SIGKILL)
        self.assertEqual((pending.made, pending.exited), ([], []))
        self.assertEqual(pending.ended[0].value.signal, signal.SIGKILL)
        self.assertEqual(self.spawner.running, {})
        self.assertTrue(
            [
                e
                for e in self.errors
                if e.get("log_format", "").startswith("the spawner")
            ]
        )
        self.assertRestartsAtNextSpawn()

    def test_stuck(self) -> None:
        """
        A spawner process that takes no request for
        L{spawnclient.STUCK_TIMEOUT} seconds is killed, and its children
        with it, as if it had died; the next spawn starts another.
        """
        killed: list[tuple[str, int, int]] = []
        self.patch(os, "killpg", lambda pid, n: killed.append(("group", pid, n)))
        self.patch(os, "kill", lambda pid, n: killed.append(("process", pid, n)))
        self.spawner.pid = 999
        self.channel.waiting = 3
        started, pending = Recorder(), Recorder()
        first = self.spawn(started)
        self.spawn(pending)
        self.spawner._received(("p", first.ident, 1234))
        self.spawner._stuck()
        self.assertEqual(
            killed,
            [("process", 999, signal.SIGKILL), ("group", 1234, signal.SIGKILL)],
        )
        self.assertIsNone(self.spawner._channel)
        self.assertEqual(started.ended[0].value.signal, signal.SIGKILL)
        self.assertEqual(pending.ended[0].value.signal, signal.SIGKILL)
        [stuck] = [e for e in self.errors if "took none" in e.get("log_format", "")]
        self.assertEqual(stuck["count"], 3)
        self.assertRestartsAtNextSpawn()

    def test_deadWhenSending(self) -> None:
        """
        A spawner process found dead when the daemon sends it a signal or
        a C{forget} is lost as when the reactor notices: the child that
        was ending ends as it exited, the others are killed.
        """
        self.patch(os, "killpg", lambda pid, n: None)
        ending, other = Recorder(), Recorder()
        first, second = self.spawn(ending), self.spawn(other)
        self.spawner._received(("p", first.ident, 1234))
        self.spawner._received(("p", second.ident, 1235))
        self.channel.error = BrokenPipeError()
        self.spawner._received(("x", first.ident, 0))
        self.assertIsInstance(ending.ended[0].value, ProcessDone)
        self.assertEqual(other.ended[0].value.signal, signal.SIGKILL)
        self.assertIsNone(self.spawner._channel)

    def test_unreachable(self) -> None:
        """
        A signal the spawner process cannot take (its socket stays full)
        is logged, not raised into the protocol.
        """
        process = self.spawn(Recorder())
        self.channel.error = BlockingIOError()
        process.signalProcessGroup("TERM")
        self.assertTrue(
            [e for e in self.errors if "cannot reach" in e.get("log_format", "")]
        )


class PendingStopTests(SynchronousTestCase):
    def test_stopBeforeStart(self) -> None:
        """
        A child asked to stop before its spawner process said its pid gets
        C{SIGTERM} as soon as it has started.
        """
        reactor = MemoryProcessReactor()
        spawner = ProcessSpawner(reactor)
        channel = FakeChannel()
        spawner._channel = channel  # type: ignore[assignment]
        clock = Clock()
        child = ChildProcess(logs.ServiceLog("s"), None, clock, killDelay=1.0)
        process = spawner.spawn(child, PLAN, {0: 10})
        child.stop()
        self.assertEqual(len(channel.sent), 1)
        spawner._received(("p", 0, 99))
        self.assertEqual(channel.sent[-1][0], ("k", 0, signal.SIGTERM, True))
        clock.advance(1.0)
        self.assertEqual(channel.sent[-1][0], ("k", 0, signal.SIGKILL, True))
        self.assertIs(child.process, process)
