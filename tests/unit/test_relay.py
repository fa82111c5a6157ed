"""
L{twinetd.relay}: which transports the relay may take the socket of, the
child's pipes, and the loop's registrations (with a fake reactor).
"""

from __future__ import annotations

import os
import select

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.test_twistedcompat import connectedTransport
from twinetd import relay
from twinetd.relay import descriptors


class SocketOfTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sockets, self.transport = connectedTransport(self)

    def test_plainSocket(self) -> None:
        self.assertIs(relay.socketOf(self.transport), self.sockets[0])

    def test_turnedOff(self) -> None:
        self.patch(descriptors, "SOCKETS", False)
        self.assertIsNone(relay.socketOf(self.transport))

    def test_tls(self) -> None:
        """
        A connection that started TLS carries encrypted bytes: not its.
        """
        self.transport.TLS = True
        self.assertIsNone(relay.socketOf(self.transport))

    def test_unsentBytes(self) -> None:
        """
        Bytes still in Twisted's buffer (a banner) would be overtaken.
        """
        self.transport.write(b"banner\r\n")
        self.assertIsNone(relay.socketOf(self.transport))

    def test_wrapper(self) -> None:
        wrapper = ProtocolWrapper(WrappingFactory(Factory()), Protocol())
        wrapper.makeConnection(self.transport)
        self.assertIsNone(relay.socketOf(wrapper))

    def test_otherTransport(self) -> None:
        self.assertIsNone(relay.socketOf(StringTransport()))


class ChildPipesTests(SynchronousTestCase):
    def test_ends(self) -> None:
        """
        The daemon's ends do not block, the child's do; the child's are
        closed once it started.
        """
        pipes = relay.ChildPipes()
        self.addCleanup(os.close, pipes.stdin)
        self.addCleanup(os.close, pipes.stdout)
        fds = pipes.childFDs()
        self.assertEqual(fds, {0: pipes.stdinChild, 1: pipes.stdoutChild, 2: "r"})
        self.assertFalse(os.get_blocking(pipes.stdin))
        self.assertFalse(os.get_blocking(pipes.stdout))
        self.assertTrue(os.get_blocking(pipes.stdinChild))
        self.assertTrue(os.get_blocking(pipes.stdoutChild))
        for fd in (pipes.stdin, pipes.stdout, pipes.stdinChild, pipes.stdoutChild):
            self.assertFalse(os.get_inheritable(fd))
        pipes.started()
        self.assertRaises(OSError, os.fstat, pipes.stdinChild)
        self.assertRaises(OSError, os.fstat, pipes.stdoutChild)

    def test_closeAll(self) -> None:
        pipes = relay.ChildPipes()
        pipes.closeAll()
        for fd in (pipes.stdin, pipes.stdout, pipes.stdinChild, pipes.stdoutChild):
            self.assertRaises(OSError, os.fstat, fd)


class RelayLoopTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.loop = relay.RelayLoop(self.reactor)
        self.read, self.write = os.pipe()
        self.addCleanup(os.close, self.read)
        self.addCleanup(os.close, self.write)
        self.seen: list[int] = []

    def test_readerWhileWatching(self) -> None:
        """
        The loop is one of the reactor's readers exactly while it watches a
        descriptor.
        """
        self.assertNotIn(self.loop, self.reactor.getReaders())
        self.loop.watch(self.read, select.EPOLLIN, self.seen.append)
        self.assertIn(self.loop, self.reactor.getReaders())
        self.loop.watch(self.read, 0, self.seen.append)
        self.assertNotIn(self.loop, self.reactor.getReaders())

    def test_readyCalled(self) -> None:
        self.loop.watch(self.read, select.EPOLLIN, self.seen.append)
        self.loop.doRead()
        self.assertEqual(self.seen, [])
        os.write(self.write, b"x")
        self.loop.doRead()
        self.assertEqual(self.seen, [select.EPOLLIN])
        self.loop.watch(self.read, 0, self.seen.append)
        self.loop.doRead()
        self.assertEqual(self.seen, [select.EPOLLIN])

    def test_changeMask(self) -> None:
        self.loop.watch(self.write, select.EPOLLIN, self.seen.append)
        self.loop.watch(self.write, select.EPOLLOUT, self.seen.append)
        self.loop.doRead()
        self.assertEqual(self.seen, [select.EPOLLOUT])

    def test_closedWhileWatched(self) -> None:
        """
        A descriptor closed while watched (and its number reused) does not
        break the loop: watching the new one starts over.
        """
        r, w = os.pipe()
        self.loop.watch(r, select.EPOLLIN, self.seen.append)
        os.close(r)
        os.close(w)
        r2, w2 = os.pipe()
        self.addCleanup(os.close, r2)
        self.addCleanup(os.close, w2)
        self.loop.watch(r2, select.EPOLLOUT, self.seen.append)
        self.loop.watch(r2, 0, self.seen.append)

    def test_onePerReactor(self) -> None:
        first = relay.relayLoop(self.reactor)
        self.assertIs(relay.relayLoop(self.reactor), first)
        self.assertIsNone(relay.relayLoop(object()))
        other = MemoryReactor()
        self.assertIsNot(relay.relayLoop(other), first)
        self.assertIs(relay.relayLoop(self.reactor), first)
        self.assertIs(relay.relayLoop(other), relay.relayLoop(other))
