"""
L{twinetd._twistedcompat}: each thing twinetd relies on that Twisted does not
promise, checked against the installed Twisted.  A failure here means
Twisted changed it: adapt the compat module.
"""

from __future__ import annotations

import errno
import importlib
import inspect
import os
import signal
import socket
import sys
from typing import Any

import OpenSSL
from twisted.application import app
from twisted.application.service import MultiService, Service
from twisted.internet import endpoints, posixbase, process, tcp, udp, unix
from twisted.internet.base import ReactorBase
from twisted.internet.error import ConnectionDone, ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IUDPTransport
from twisted.internet.protocol import (
    DatagramProtocol,
    Factory,
    ProcessProtocol,
    Protocol,
    connectionDone,
)
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.protocols.haproxy import _v1parser as v1parser
from twisted.python.failure import Failure
from twisted.python.systemd import ListenFDs
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.test_factory import events
from twinetd import _twistedcompat as compat


class Listener:
    """
    A listening socket whose C{accept} returns or raises what it is given.
    """

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)

    def accept(self) -> Any:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, OSError):
            raise outcome
        return outcome


class Client:
    closed = False

    def close(self) -> None:
        self.closed = True


def acceptEvents(listener: Listener, reservation: Any) -> list[dict[str, Any]]:
    """
    What Twisted's accept loop logs for C{listener}, through a logger in
    the namespace of a TCP port's.
    """
    seen: list[dict[str, Any]] = []
    port = tcp.Port(0, Factory())
    logger = Logger(port._logger.namespace, observer=seen.append)
    list(tcp._accept(logger, range(5), listener, reservation))
    return seen


class ObserversTests(SynchronousTestCase):
    def test_observersOf(self) -> None:
        """
        C{LogPublisher._observers} holds the observers, in order.
        """

        def one(event: Any) -> None:
            pass

        def two(event: Any) -> None:
            pass

        publisher = LogPublisher(one)
        publisher.addObserver(two)
        self.assertEqual(compat.observersOf(publisher), [one, two])
        publisher.removeObserver(one)
        self.assertEqual(compat.observersOf(publisher), [two])


class EmitEventTests(SynchronousTestCase):
    def test_sameAsLoggerEmit(self) -> None:
        """
        L{compat.emitEvent} gives the observer the event L{Logger.emit}
        does: the same keys and values but for C{log_time} (the time of
        each).
        """
        seen: list[dict[str, Any]] = []
        logger = Logger("some.namespace", source=self, observer=seen.append)
        logger.emit(LogLevel.warn, "a {field}", field=1)
        compat.emitEvent(logger, LogLevel.warn, "a {field}", {"field": 1})
        twisted, ours = seen
        self.assertEqual(twisted.keys(), ours.keys())
        self.assertIs(ours["log_logger"], logger)
        self.assertIs(ours["log_source"], self)
        self.assertIsInstance(ours["log_time"], float)
        del twisted["log_time"], ours["log_time"]
        self.assertEqual(twisted, ours)

    def test_theEventItself(self) -> None:
        """
        The observer gets the dictionary passed in, as L{Logger.emit}'s gets
        its keyword arguments (no copy per event).
        """
        seen: list[dict[str, Any]] = []
        event: dict[str, object] = {"field": 1}
        compat.emitEvent(Logger(observer=seen.append), LogLevel.info, "x", event)
        self.assertEqual(seen, [event])
        self.assertIs(seen[0], event)


class AcceptTests(SynchronousTestCase):
    def test_portNamespace(self) -> None:
        self.assertEqual(
            tcp.Port(0, Factory())._logger.namespace, compat.TCP_PORT_NAMESPACE
        )

    def test_acceptError(self) -> None:
        """
        C{accept()} fails with EMFILE and no spare descriptor: one
        C{Could not accept new connection (EMFILE)} line.
        """
        [event] = acceptEvents(
            Listener(OSError(errno.EMFILE, "Too many open files")),
            tcp._NullFileDescriptorReservation(),
        )
        self.assertEqual(compat.acceptFailure(event), "EMFILE")
        self.assertFalse(compat.isAcceptNote(event))

    def test_emfileRecovery(self) -> None:
        """
        With its spare descriptor, Twisted accepts and closes the client at
        once: a line per closed client, and a note before and after.
        """
        reservation = tcp._FileDescriptorReservation(
            lambda: open(os.devnull)  # noqa: SIM115 (kept open: the reservation)
        )
        reservation.reserve()
        # Entering releases (closes) the spare descriptor.
        self.addCleanup(reservation.__enter__)
        client = Client()
        events = acceptEvents(
            Listener(
                OSError(errno.EMFILE, "Too many open files"),
                (client, ("127.0.0.1", 40000)),
                OSError(errno.EAGAIN, "again"),
            ),
            reservation,
        )
        self.assertTrue(client.closed)
        self.assertEqual(
            [(compat.acceptFailure(e), compat.isAcceptNote(e)) for e in events],
            [(None, True), ("EMFILE", False), (None, True)],
        )


class NoisyFactory(Factory):
    noisy = True


class NoisyProtocol(DatagramProtocol):
    noisy = True


class PortLineTests(SynchronousTestCase):
    """
    The lines every port logs when it starts and stops listening, and the
    start/stop lines of noisy factories and protocols.  The ports adopt an
    unbound, unconnected socket: nothing goes on the network.
    """

    def adopt(self, kind: socket.SocketKind) -> int:
        sock = socket.socket(socket.AF_INET, kind)
        sock.setblocking(False)
        self.addCleanup(sock.close)
        return sock.fileno()

    def test_tcp(self) -> None:
        seen = events(self)
        reactor = MemoryReactor()
        fd = self.adopt(socket.SOCK_STREAM)
        port = tcp.Port._fromListeningDescriptor(
            reactor, fd, socket.AF_INET, NoisyFactory()
        )
        port.startListening()
        port.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            [(compat.isPortLine(e), compat.isLifecycleLine(e, "tests.")) for e in seen],
            [(True, False), (False, True), (True, False), (False, True)],
        )
        self.assertFalse(any(compat.isLifecycleLine(e, "twinetd.") for e in seen))

    def test_udp(self) -> None:
        seen = events(self)
        reactor = MemoryReactor()
        fd = self.adopt(socket.SOCK_DGRAM)
        port = udp.Port._fromListeningDescriptor(
            reactor, fd, socket.AF_INET, NoisyProtocol(), 8192
        )
        port.startListening()
        port.connectionLost()
        self.assertEqual(
            [(compat.isPortLine(e), compat.isLifecycleLine(e, "tests.")) for e in seen],
            [(True, False), (False, True), (True, False), (False, True)],
        )

    def test_wrappedTCP(self) -> None:
        """
        A TLS or PROXY wrapping factory names the port after the service
        with its own suffix.
        """
        seen = events(self)
        for suffix in (" (TLS)", " (PROXY)", " (PROXY) (TLS)"):
            factory = NoisyFactory()
            factory.noisy = False
            factory.logPrefix = lambda suffix=suffix: "svc" + suffix  # type: ignore[method-assign]
            port = tcp.Port._fromListeningDescriptor(
                MemoryReactor(), self.adopt(socket.SOCK_STREAM), socket.AF_INET, factory
            )
            port.startListening()
            port.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([compat.isPortLine(e) for e in seen], [True] * 6)

    def test_unix(self) -> None:
        seen = events(self)
        path = self.mktemp()
        os.makedirs(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.bind(os.path.join(path, "s.sock"))
        sock.listen(1)
        sock.setblocking(False)
        factory = NoisyFactory()
        factory.noisy = False
        port = unix.Port._fromListeningDescriptor(
            MemoryReactor(), sock.fileno(), factory
        )
        port.startListening()
        port.connectionLost(Failure(ConnectionDone()))
        texts = [e.get("log_text") for e in seen]
        self.assertEqual([compat.isPortLine(e) for e in seen], [True, True], texts)

    def test_otherLegacyLines(self) -> None:
        self.assertFalse(
            compat.isPortLine({"log_namespace": "log_legacy", "log_text": "hello"})
        )


class ProxyHeaderTests(SynchronousTestCase):
    """
    Twisted's PROXY protocol parsers and wrapper, as L{twinetd.listeners.proxy}
    uses them: C{feed} gives (info, rest) once a header is whole, (None,
    None) before; C{InvalidProxyHeader} for a bad one; the wrapper's
    C{getPeer}/C{getHost} read C{_proxyInfo}, and it keeps its parser in
    C{_parser}.
    """

    def test_v1(self) -> None:
        parser = compat.V1Parser()
        self.assertEqual(parser.feed(b"PROXY TCP4 192.0.2.1 "), (None, None))
        info, rest = parser.feed(b"10.0.0.1 5555 80\r\nrest")
        self.assertEqual(rest, b"rest")
        self.assertEqual((info.source.host, info.source.port), ("192.0.2.1", 5555))
        self.assertEqual(
            (info.destination.host, info.destination.port), ("10.0.0.1", 80)
        )
        with self.assertRaises(compat.InvalidProxyHeader):
            compat.V1Parser().feed(b"PROXY TCP9 x\r\n")

    def test_v2(self) -> None:
        body = socket.inet_aton("192.0.2.1") + socket.inet_aton("10.0.0.1")
        body += b"\x15\xb3\x00\x50"
        header = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00" + bytes([len(body)]) + body
        info, rest = compat.V2Parser().feed(header + b"x")
        self.assertEqual(rest, b"x")
        self.assertEqual((info.source.host, info.source.port), ("192.0.2.1", 5555))

    def test_info(self) -> None:
        """
        A whole header gives a C{ProxyInfo}; a C{LOCAL} one (a balancer's
        health check) has no addresses.
        """
        info, _ = compat.V1Parser().feed(b"PROXY TCP4 192.0.2.1 10.0.0.1 1 2\r\n")
        self.assertIsInstance(info, compat.ProxyInfo)
        local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
        info, _ = compat.V2Parser().feed(local)
        self.assertIsInstance(info, compat.ProxyInfo)
        self.assertIsNone(info.source)
        self.assertIsNone(info.destination)


class LazyImportTests(SynchronousTestCase):
    """
    The PROXY parsers are imported on first use; pyOpenSSL can be kept out
    of the reactor's first import (L{compat.withoutPyOpenSSL}).
    """

    def test_unknownName(self) -> None:
        with self.assertRaises(AttributeError):
            compat.NoSuchName  # type: ignore[attr-defined]  # noqa: B018

    def test_parsersKept(self) -> None:
        self.assertIs(compat.V1Parser, v1parser.V1Parser)
        self.assertIs(vars(compat)["V1Parser"], v1parser.V1Parser)

    def test_withoutPyOpenSSL(self) -> None:
        """
        Inside, pyOpenSSL cannot be imported; after, it can again.
        """
        imported = sys.modules.pop("OpenSSL")
        self.addCleanup(sys.modules.__setitem__, "OpenSSL", imported)
        with compat.withoutPyOpenSSL(), self.assertRaises(ImportError):
            importlib.import_module("OpenSSL")
        self.assertNotIn("OpenSSL", sys.modules)

    def test_alreadyImported(self) -> None:
        """
        A pyOpenSSL already imported stays importable.
        """
        with compat.withoutPyOpenSSL():
            self.assertIs(importlib.import_module("OpenSSL"), OpenSSL)

    def test_reactorWithoutTLS(self) -> None:
        """
        What C{twistd twinetd}'s reactor relies on: Twisted's reactor and
        TCP modules import their TLS support only if they can.
        """
        reactorBase = inspect.getsource(posixbase)
        self.assertIn(
            "from twisted.protocols import tls as _tls\nexcept ImportError:",
            reactorBase,
        )
        self.assertIn(
            "from twisted.internet import ssl as _ssl\nexcept ImportError:", reactorBase
        )
        self.assertRegex(
            inspect.getsource(tcp),
            r"try:\n(\s*#.*\n)*\s*from twisted.internet._newtls import",
        )


class ExitSignalTests(SynchronousTestCase):
    """
    The signal twistd re-raises after the reactor stops: Twisted's SIGTERM
    handler keeps it in C{_exitSignal}, twistd's runner reads it there.
    """

    def test_keptByTheHandler(self) -> None:
        reactor = _Stopping()
        ReactorBase.sigTerm(reactor, signal.SIGTERM)  # type: ignore[arg-type]
        self.assertEqual(compat.exitSignal(reactor), signal.SIGTERM)
        compat.clearExitSignal(reactor)
        self.assertIsNone(compat.exitSignal(reactor))
        self.assertIsNone(compat.exitSignal(object()))

    def test_twistdReadsIt(self) -> None:
        source = app.ApplicationRunner.startReactor.__code__.co_names
        self.assertIn("_exitSignal", source)


class _Placeholder(compat.UnsetHandler):
    def __call__(self, signum: int, frame: object) -> None:
        pass


class UnsetHandlerTests(SynchronousTestCase):
    """
    twistd sets its C{SIGUSR1} log rotation over an L{compat.UnsetHandler}
    as over no handler, and leaves any other handler alone.
    """

    def observe(self, handler: Any) -> Any:
        from twisted.scripts._twistd_unix import UnixAppLogger

        previous = signal.signal(signal.SIGUSR1, handler)
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        path = os.path.join(self.mktemp() + ".d", "twistd.log")
        os.makedirs(os.path.dirname(path))
        logger = UnixAppLogger({"logfile": path, "nodaemon": True})
        observer = logger._getLogObserver()
        self.addCleanup(observer._outFile.close)
        return signal.getsignal(signal.SIGUSR1)

    def test_replaced(self) -> None:
        unset = _Placeholder()
        self.assertFalse(unset)
        rotation = self.observe(unset)
        self.assertIsNot(rotation, unset)
        self.assertEqual(rotation.__name__, "rotateLog")

    def test_otherKept(self) -> None:
        def handler(signum: int, frame: object) -> None:
            pass

        self.assertIs(self.observe(handler), handler)


class _Stopping:
    """
    Enough of a reactor for Twisted's own signal handlers.
    """

    _exitSignal: int | None = None

    def callFromThread(self, f: Any, *args: Any) -> None:
        pass

    def stop(self) -> None:
        pass


class _Lost(Protocol):
    def __init__(self) -> None:
        self.reasons: list[Failure] = []

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reasons.append(reason)


class HandedOverTests(SynchronousTestCase):
    """
    A connection's socket given to a child (L{twinetd.modes.handoff}):
    Twisted's C{tcp.Server} over one end of a socket pair, on a reactor
    that only records what it watches.
    """

    def setUp(self) -> None:
        ours, self.peer = socket.socketpair()
        self.addCleanup(self.peer.close)
        self.addCleanup(ours.close)
        ours.setblocking(False)
        self.peer.setblocking(False)
        self.reactor = MemoryReactor()
        self.protocol = _Lost()
        self.server = tcp.Server(
            ours, self.protocol, ("192.0.2.1", 1), None, 1, self.reactor
        )  # type: ignore[arg-type]
        self.protocol.makeConnection(self.server)

    def received(self) -> bytes:
        data = b""
        while True:
            try:
                chunk = self.peer.recv(1 << 16)
            except BlockingIOError:
                return data
            if not chunk:
                return data
            data += chunk

    def test_unsentOutputTaken(self) -> None:
        """
        What was written and not sent yet is taken out of the transport,
        which then sends nothing.
        """
        self.server.write(b"banner\n")
        self.server.writeSequence([b"more", b"\n"])
        self.assertEqual(compat.takeUnsentOutput(self.server), b"banner\nmore\n")
        self.assertEqual(compat.takeUnsentOutput(self.server), b"")
        self.server.doWrite()
        self.assertEqual(self.received(), b"")

    def test_partlySent(self) -> None:
        """
        Of output the socket took part of, the rest is taken: what the peer
        got and what was taken make the whole, in order.
        """
        payload = bytes(range(256)) * (1 << 14)
        self.server.write(payload)
        self.server.doWrite()
        sent = self.received()
        self.assertTrue(0 < len(sent) < len(payload), len(sent))
        self.server.write(b"end")
        rest = compat.takeUnsentOutput(self.server)
        self.assertEqual(sent + rest, payload + b"end")
        self.server.doWrite()
        self.assertEqual(self.received(), b"")

    def test_released(self) -> None:
        """
        The transport leaves the reactor, its socket is closed, its protocol
        told with the reason given; the connection itself is not shut down:
        the child's copy of the descriptor still talks to the peer.
        """
        child = os.dup(self.server.getHandle().fileno())
        self.addCleanup(os.close, child)
        self.server.startWriting()
        reason = Failure(ConnectionDone("handed over"))
        compat.releaseHandedOver(self.server, reason)
        self.assertNotIn(self.server, self.reactor.getReaders())
        self.assertNotIn(self.server, self.reactor.getWriters())
        self.assertEqual(self.protocol.reasons, [reason])
        os.write(child, b"from the child")
        self.assertEqual(self.received(), b"from the child")
        self.peer.send(b"to the child")
        self.assertEqual(os.read(child, 100), b"to the child")


class DatagramReadingTests(SynchronousTestCase):
    """
    A UDP port paused and resumed: Twisted's C{udp.Port} is a push
    producer that stops and starts reading.
    """

    def test_pauseResume(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        self.addCleanup(sock.close)
        reactor = MemoryReactor()
        port = udp.Port._fromListeningDescriptor(
            reactor, sock.fileno(), socket.AF_INET, DatagramProtocol(), 8192
        )
        port.startListening()
        self.addCleanup(port.connectionLost)
        self.assertTrue(IUDPTransport.providedBy(port))
        self.assertIn(port, reactor.getReaders())
        compat.pauseReading(port)
        self.assertNotIn(port, reactor.getReaders())
        compat.resumeReading(port)
        self.assertIn(port, reactor.getReaders())


class _Started(Service):
    def __init__(self, name: str, order: list[str]) -> None:
        self.setName(name)
        self.order = order

    def privilegedStartService(self) -> None:
        self.order.append("privileged " + str(self.name))
        Service.privilegedStartService(self)

    def startService(self) -> None:
        self.order.append(str(self.name))
        Service.startService(self)


class MultiServiceTests(SynchronousTestCase):
    """
    A C{MultiService}'s children: C{removeService} stops a running child
    (hence L{compat.detachService}); they start in the order of its
    C{services} list.
    """

    def test_removeStops(self) -> None:
        parent = MultiService()
        child = _Started("x", [])
        child.setServiceParent(parent)
        parent.startService()
        parent.removeService(child)
        self.assertFalse(child.running)

    def test_detach(self) -> None:
        parent = MultiService()
        child = _Started("x", [])
        child.setServiceParent(parent)
        parent.startService()
        compat.detachService(parent, child)
        self.assertTrue(child.running)
        self.assertIsNone(child.parent)
        self.assertEqual(list(parent), [])
        self.assertRaises(KeyError, parent.getServiceNamed, "x")
        _Started("x", []).setServiceParent(parent)

    def test_first(self) -> None:
        order: list[str] = []
        parent = MultiService()
        _Started("a", order).setServiceParent(parent)
        compat.addServiceFirst(parent, _Started("b", order))
        self.assertEqual([s.name for s in parent], ["b", "a"])
        parent.privilegedStartService()
        parent.startService()
        self.assertEqual(order, ["privileged b", "privileged a", "b", "a"])


class SystemdTests(SynchronousTestCase):
    """
    Importing C{twisted.internet.endpoints} builds its C{systemd:} parser's
    C{ListenFDs}, which takes systemd's variables out of the environment
    (hence L{compat.startEnvironment}).
    """

    def test_parserReadsAtImport(self) -> None:
        self.assertIsInstance(endpoints._SystemdParser._sddaemon, ListenFDs)

    def test_variablesRemoved(self) -> None:
        pid = str(os.getpid())
        env = {"LISTEN_PID": pid, "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
        fds = ListenFDs.fromEnvironment(env)
        self.assertEqual(fds.inheritedNamedDescriptors(), {"a": 3, "b": 4})
        self.assertEqual(env, {"LISTEN_FDNAMES": "a:b"})
        # Without names, Twisted passes over the sockets.
        env = {"LISTEN_PID": pid, "LISTEN_FDS": "1"}
        self.assertEqual(ListenFDs.fromEnvironment(env).inheritedDescriptors(), [])

    def test_takeSystemdVariables(self) -> None:
        """
        L{compat.takeSystemdVariables} takes them out of C{os.environ} as
        importing C{twisted.internet.endpoints} does, when they are this
        process's.
        """
        for name in ("LISTEN_PID", "LISTEN_FDS"):
            self.addCleanup(os.environ.pop, name, None)
        os.environ.update(LISTEN_PID=str(os.getpid() + 1), LISTEN_FDS="1")
        compat.takeSystemdVariables()
        self.assertEqual(os.environ["LISTEN_FDS"], "1")
        os.environ["LISTEN_PID"] = str(os.getpid())
        compat.takeSystemdVariables()
        self.assertNotIn("LISTEN_PID", os.environ)
        self.assertNotIn("LISTEN_FDS", os.environ)

    def test_startEnvironment(self) -> None:
        """
        The environment the process started with: not what was set since.
        """
        os.environ["TWINETD_COMPAT_TEST"] = "1"
        self.addCleanup(os.environ.pop, "TWINETD_COMPAT_TEST")
        self.assertNotIn("TWINETD_COMPAT_TEST", compat.startEnvironment())
        self.assertIn("PATH", compat.startEnvironment())


def connectedTransport(
    case: SynchronousTestCase,
) -> tuple[tuple[socket.socket, socket.socket], tcp.Connection]:
    """
    A Twisted TCP transport (with a fake reactor) on one end of a socket
    pair, and the pair (closed after the test).
    """
    sockets = socket.socketpair()
    for s in sockets:
        case.addCleanup(s.close)
    sockets[0].setblocking(False)
    transport = tcp.Connection(sockets[0], None, MemoryReactor())
    transport.connected = True
    return sockets, transport


class WriteBufferedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sockets, self.transport = connectedTransport(self)

    def test_nothingWritten(self) -> None:
        self.assertFalse(compat.writeBuffered(self.transport))

    def test_bufferedThenSent(self) -> None:
        """
        A write stays in the transport's buffer until the reactor says the
        socket is writable; then it is sent.
        """
        self.transport.write(b"banner\r\n")
        self.assertTrue(compat.writeBuffered(self.transport))
        self.transport.doWrite()
        self.assertFalse(compat.writeBuffered(self.transport))
        self.assertEqual(self.sockets[1].recv(100), b"banner\r\n")

    def test_partlySent(self) -> None:
        self.transport.write(b"x" * (4 << 20))
        self.transport.doWrite()
        self.assertTrue(compat.writeBuffered(self.transport))


class Ended(ProcessProtocol):
    """
    Records the reasons of C{processExited} and C{processEnded}.
    """

    def __init__(self) -> None:
        self.exited: list[Failure] = []
        self.ended: list[Failure] = []

    def processExited(self, reason: Failure) -> None:
        self.exited.append(reason)

    def processEnded(self, reason: Failure) -> None:
        self.ended.append(reason)


class ProcessTransportTests(SynchronousTestCase):
    """
    The seams of Twisted's process transport that L{compat.StartedProcess},
    L{compat.initWithoutStarting} and L{compat.callProcessEnded} use.
    """

    def test_forkCalledWithTheMap(self) -> None:
        """
        C{Process.__init__} starts its child through C{self._fork}, with the
        map of child descriptors to the pipes it made, by keyword; that is
        the method L{compat.StartedProcess} replaces.
        """
        source = inspect.getsource(process.Process.__init__)
        self.assertIn(
            "self._fork(path, uid, gid, executable, args, environment, fdmap=fdmap)",
            source,
        )
        self.assertIn("_fork", vars(compat.StartedProcess))

    def test_pipeFactories(self) -> None:
        """
        A transport that makes its own pipes uses the class's reader and
        writer factories, with these parameters.
        """
        reader = inspect.signature(process.Process.processReaderFactory)
        writer = inspect.signature(process.Process.processWriterFactory)
        self.assertEqual(list(reader.parameters), ["reactor", "proc", "name", "fileno"])
        self.assertEqual(
            list(writer.parameters),
            ["reactor", "proc", "name", "fileno", "forceReadHack"],
        )

    def test_endedWithoutFork(self) -> None:
        """
        A transport set up by L{compat.initWithoutStarting} has its
        protocol; once its C{status} is known and its pipes are gone,
        L{compat.callProcessEnded} gives the protocol C{processEnded} once,
        with Twisted's reason for the status, and nothing else.
        """
        transport = process.Process.__new__(process.Process)
        protocol = Ended()
        compat.initWithoutStarting(transport, protocol)
        self.assertIs(transport.proto, protocol)
        transport.pipes = {}
        transport.status = 1 << 8
        transport.lostProcess = 2
        compat.callProcessEnded(transport)
        compat.callProcessEnded(transport)
        [reason] = protocol.ended
        reason.trap(ProcessTerminated)
        self.assertEqual(reason.value.exitCode, 1)
        self.assertEqual(protocol.exited, [])

    def test_processEndedAttributes(self) -> None:
        """
        C{processEnded(status)} (what a reaper calls) records the status,
        counts the child as lost, forgets its pid and calls
        C{processExited}.
        """
        transport = process.Process.__new__(process.Process)
        protocol = Ended()
        compat.initWithoutStarting(transport, protocol)
        transport.pid = 4242
        transport.pipes = {1: object()}
        transport.processEnded(0)
        self.assertEqual(
            (transport.status, transport.lostProcess, transport.pid), (0, 1, None)
        )
        [reason] = protocol.exited
        reason.trap(ProcessDone)
        self.assertEqual(protocol.ended, [])

    def test_reaper(self) -> None:
        """
        Twisted's SIGCHLD handling looks the reaper up as a module
        attribute at each call (so L{compat.setReaper} takes effect), and
        the handlers are one dictionary, changed in place.
        """
        original, handlers = compat.reaping()
        self.assertIs(original, process.reapAllProcesses)
        self.assertIs(handlers, process.reapProcessHandlers)
        from twisted.internet import _signals

        self.assertIn("process.reapAllProcesses()", inspect.getsource(_signals))
        replacement = lambda: None  # noqa: E731
        compat.setReaper(replacement)
        try:
            self.assertIs(process.reapAllProcesses, replacement)
        finally:
            compat.setReaper(original)
        source = inspect.getsource(process.registerReapProcessHandler)
        self.assertIn("reapProcessHandlers[pid] = process", source)
        self.assertIn(
            "del reapProcessHandlers[pid]",
            inspect.getsource(process.unregisterReapProcessHandler),
        )


class Raising(ProcessProtocol):
    def processExited(self, reason: Failure) -> None:
        raise ZeroDivisionError()

    def processEnded(self, reason: Failure) -> None:
        raise ZeroDivisionError()


class ExitReasonTests(SynchronousTestCase):
    """
    L{compat.StartedProcess}'s protocol gets Twisted's reasons for its
    child's end, the one of a plain exit shared by every child
    (L{compat.EXITED_ZERO}).
    """

    def ended(self, status: int, protocol: ProcessProtocol) -> None:
        transport = process.Process.__new__(compat.StartedProcess)
        compat.initWithoutStarting(transport, protocol)
        transport.pipes = {}
        transport.pid = 4242
        # What a reaper calls: processExited, then (no pipes) processEnded.
        transport.processEnded(status)

    def test_exitZeroShared(self) -> None:
        first, second = Ended(), Ended()
        self.ended(0, first)
        self.ended(0, second)
        self.assertEqual(
            [*first.exited, *first.ended, *second.exited, *second.ended],
            [compat.EXITED_ZERO] * 4,
        )
        self.assertIs(first.ended[0], compat.EXITED_ZERO)
        compat.EXITED_ZERO.trap(ProcessDone)

    def test_otherEndsTheirOwn(self) -> None:
        """
        An exit status other than 0, or a signal, is Twisted's
        C{ProcessTerminated}, a Failure of its own.
        """
        for status, exitCode, sig in ((3 << 8, 3, None), (signal.SIGKILL, None, 9)):
            protocol = Ended()
            self.ended(status, protocol)
            [exited], [ended] = protocol.exited, protocol.ended
            self.assertIsNot(exited, compat.EXITED_ZERO)
            for reason in (exited, ended):
                reason.trap(ProcessTerminated)
                self.assertEqual(
                    (reason.value.exitCode, reason.value.signal), (exitCode, sig)
                )

    def test_protocolErrorsLogged(self) -> None:
        """
        An error in the protocol's C{processExited} or C{processEnded} is
        logged as Twisted logs it, and goes no further.
        """
        seen = events(self)
        self.ended(0, Raising())
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        self.assertEqual(
            [e["log_format"] for e in seen if "log_failure" in e],
            ["while calling processExited:", "while calling processEnded:"],
        )
        self.assertEqual(
            {e["log_namespace"] for e in seen if "log_failure" in e},
            {"twisted.internet._baseprocess"},
        )

    def test_twistedsOrder(self) -> None:
        """
        What the overrides rely on in Twisted: a reaped child's
        C{processEnded(status)} calls C{_callProcessExited} with
        C{_getReason}, then C{maybeCallProcessEnded}, which in C{Process}
        waits for the pipes and the reaping.
        """
        source = inspect.getsource(process._BaseProcess.processEnded)
        self.assertIn("self._callProcessExited(self._getReason(status))", source)
        self.assertIn("self.maybeCallProcessEnded()", source)
        ended = inspect.getsource(process.Process.maybeCallProcessEnded)
        for line in (
            "if self.pipes:",
            "if not self.lostProcess:",
            "self.reapProcess()",
        ):
            self.assertIn(line, ended)


class CancelCallTests(SynchronousTestCase):
    def test_cancels(self) -> None:
        """
        An active call is cancelled; a call that ran, one cancelled already
        and C{None} are left as they are; the result is always C{None}.
        """
        clock = Clock()
        ran: list[str] = []
        waiting = clock.callLater(1, ran.append, "waiting")
        done = clock.callLater(0, ran.append, "done")
        clock.advance(0)
        self.assertIsNone(compat.cancelCall(waiting))
        self.assertFalse(waiting.active())
        self.assertIsNone(compat.cancelCall(waiting))
        self.assertIsNone(compat.cancelCall(done))
        self.assertIsNone(compat.cancelCall(None))
        clock.advance(2)
        self.assertEqual(ran, ["done"])
