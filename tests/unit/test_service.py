"""
L{twinetd.service}: the daemon's tree built from records and changed by a
reload, on the fake reactor (no sockets, no processes, no time).

Services listen on C{twinetd_listen} endpoints (the fake reactor's
C{listenTCP}), or on xinetd's own socket made by a fake C{bindSocket};
each connection is a front over a L{StringTransport}, whose bridged child
is a L{FakeProcess}.
"""

from __future__ import annotations

import os
import socket

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.protocol import ServerFactory
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactor,
    StringTransport,
)
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twinetd import logs
from twinetd.config.endpoints import parseListen
from twinetd.listeners import stream
from twinetd.listeners.base import Listener
from twinetd.listeners.endpoints import AdoptedSocket
from twinetd.listeners.stream import StreamListener
from twinetd.model import ServiceConfig, SocketType
from twinetd.service import DaemonSettings, TwinetdService, fromRecords
from twinetd.status import SpawnerProcessState
from twinetd.testing import FakeProcess, MemoryProcessReactor, serviceRecord


def record(name: str, port: int, *args: str, **fields: object) -> ServiceConfig:
    """
    A bridged stream service running C{/bin/echo ARGS} on C{tcp:PORT}.
    """
    return serviceRecord(
        name,
        server="/bin/echo",
        serverArgs=("echo", *args),
        flags=frozenset({"NAMEINARGS"}),
        listen=(parseListen(f"tcp:{port}:interface=127.0.0.1", "/"),),
        **fields,
    )


class DaemonTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryProcessReactor()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.clients = 0
        self.connections: list[tuple[IProtocol, StringTransport]] = []

    def start(self, *records: ServiceConfig) -> TwinetdService:
        daemon = fromRecords(
            records, self.reactor, DaemonSettings(environment=(), uid=1000, gid=1000)
        )
        daemon.startService()
        self.addCleanup(lambda: daemon.running and daemon.stopService())
        return daemon

    def changes(self) -> list[tuple[str, str]]:
        return [
            (e["service"], e["change"])
            for e in self.events
            if e.get(logs.EVENT_FIELD) == logs.RELOADED
        ]

    def factoryOn(self, port: int) -> IProtocolFactory:
        """
        The factory of the latest port listening on C{port}.
        """
        [factory, *_] = [
            factory
            for number, factory, _, _ in reversed(self.reactor.tcpServers)
            if number == port
        ]
        return factory

    def connect(self, port: int) -> FakeProcess:
        """
        A client connects to C{port}: the child started for it.
        """
        self.clients += 1
        peer = IPv4Address("TCP", "127.0.0.1", 40000 + self.clients)
        protocol = self.factoryOn(port).buildProtocol(peer)
        assert protocol is not None
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", port), peerAddress=peer
        )
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return self.reactor.spawned[-1]

    def closeClosed(self) -> None:
        """
        The connections the daemon closed are lost, as a reactor would
        report them.
        """
        for protocol, transport in self.connections:
            if transport.disconnecting:
                protocol.connectionLost(Failure(ConnectionDone()))
        self.connections = [
            (protocol, transport)
            for protocol, transport in self.connections
            if not transport.disconnecting
        ]


class ReloadTests(DaemonTestCase):
    """
    L{TwinetdService.reload}: only what differs changes.
    """

    def test_added(self) -> None:
        """
        A new service listens; the others are left alone.
        """
        daemon = self.start(record("a", 7001))
        a = daemon.listener("a")
        self.successResultOf(daemon.reload([record("a", 7001), record("b", 7002)]))
        self.assertEqual(self.changes(), [("b", "added")])
        self.assertIs(daemon.listener("a"), a)
        self.assertEqual(daemon.listener("b").boundPort, 7002)
        self.assertEqual(sorted(daemon.records), ["a", "b"])
        self.assertEqual([port for port, *_ in self.reactor.tcpServers], [7001, 7002])

    def test_removed(self) -> None:
        """
        A removed service stops listening and its running children are
        stopped, as xinetd terminates them; its limits are forgotten.
        """
        daemon = self.start(record("a", 7001), record("b", 7002))
        b = daemon.listener("b")
        child = self.connect(7002)
        self.assertEqual(daemon.runtime.gate.limits.running("b"), 1)
        d = daemon.reload([record("a", 7001)])
        self.assertEqual(self.changes(), [("b", "removed")])
        self.assertEqual(child.signals, ["TERM"])
        self.assertNoResult(d)
        child.end(signal=15)
        self.closeClosed()
        self.successResultOf(d)
        self.assertFalse(b.running)
        self.assertEqual(b.ports, [])
        self.assertRaises(KeyError, daemon.getServiceNamed, "b")
        self.assertEqual(list(daemon.records), ["a"])
        self.assertEqual(daemon.runtime.gate.limits.running("b"), 0)

    def test_kept(self) -> None:
        """
        A service defined the same way, even at another line, is no change.
        """
        daemon = self.start(record("a", 7001))
        a = daemon.listener("a")
        moved = attrs.evolve(
            record("a", 7001), source=attrs.evolve(a.config.source, line=9)
        )
        self.successResultOf(daemon.reload([moved]))
        self.assertEqual(self.changes(), [])
        self.assertIs(daemon.listener("a"), a)
        self.assertEqual(daemon.records["a"].source.line, 9)
        self.assertEqual(len(self.reactor.tcpServers), 1)

    def test_changedTakesOverThePort(self) -> None:
        """
        A changed service listening on the same socket keeps its listener
        and port: the next client gets the new configuration, the running
        one goes on with its own; live counts carry over.
        """
        daemon = self.start(record("a", 7001, "old"))
        a = daemon.listener("a")
        assert isinstance(a, StreamListener)
        [port] = a.ports
        first = self.connect(7001)
        self.successResultOf(daemon.reload([record("a", 7001, "new")]))
        self.assertEqual(self.changes(), [("a", "changed")])
        self.assertIs(daemon.listener("a"), a)
        self.assertEqual(a.ports, [port])
        self.assertEqual(len(self.reactor.tcpServers), 1)
        self.assertEqual(first.signals, [])
        self.assertEqual(daemon.runtime.gate.limits.running("a"), 1)
        second = self.connect(7001)
        self.assertEqual(
            [first.call.args, second.call.args], [("echo", "old"), ("echo", "new")]
        )
        self.assertEqual(daemon.records["a"].serverArgs, ("echo", "new"))

    def test_changedSocket(self) -> None:
        """
        A changed service on another socket listens anew; the replaced
        listener stops listening at once, its running connection goes on
        until the daemon stops.
        """
        daemon = self.start(record("a", 7001))
        old = daemon.listener("a")
        child = self.connect(7001)
        self.successResultOf(daemon.reload([record("a", 7003)]))
        self.assertEqual(self.changes(), [("a", "changed")])
        new = daemon.listener("a")
        self.assertIsNot(new, old)
        self.assertEqual(new.boundPort, 7003)
        assert isinstance(old, StreamListener)
        self.assertEqual(old.ports, [])
        self.assertTrue(old.busy)
        self.assertEqual(child.signals, [])
        self.assertIsNone(old.parent)
        d = daemon.stopService()
        self.assertEqual(child.signals, ["TERM"])
        child.end(signal=15)
        self.closeClosed()
        self.successResultOf(d)

    def test_changedDatagramRestarted(self) -> None:
        """
        A changed service of another kind (here: now waits) is stopped and
        started again.
        """
        daemon = self.start(record("a", 7001))
        old = daemon.listener("a")
        # A redirect must not wait: the new definition is skipped, the old
        # one removed.
        waiting = attrs.evolve(record("a", 7001), redirect=("127.0.0.1", 1), wait=True)
        self.successResultOf(daemon.reload([waiting]))
        self.assertFalse(old.running)
        self.assertEqual(list(daemon.records), [])
        self.assertEqual(self.changes(), [("a", "removed")])
        skipped = [e for e in self.events if "service skipped" in e["log_format"]]
        self.assertEqual(len(skipped), 1)
        self.assertIn("must not wait", skipped[0]["reason"])

    def test_unsupportedSkipped(self) -> None:
        """
        A record the runtime cannot serve is logged and left out.
        """
        daemon = self.start(record("a", 7001))
        raw = attrs.evolve(record("r", 7004), socketType=SocketType.RAW)
        self.successResultOf(daemon.reload([record("a", 7001), raw]))
        self.assertEqual(list(daemon.records), ["a"])
        [skipped] = [e for e in self.events if "service skipped" in e["log_format"]]
        self.assertEqual(
            (skipped["service"], skipped["reason"]),
            ("r", "socket_type raw is not supported"),
        )


class FakeSocket:
    """
    What the stream listener takes of a socket made by C{bindSocket}: its
    family and its descriptor (here, one open on /dev/null).
    """

    family = socket.AF_INET

    def detach(self) -> int:
        return os.open(os.devnull, os.O_RDONLY)


class AdoptedSocketTests(SynchronousTestCase):
    """
    xinetd's socket given to the reactor: closed once the reactor's port
    has its own copy, and closed too when the reactor cannot adopt it.
    """

    def closed(self, fd: int) -> bool:
        try:
            os.fstat(fd)
        except OSError:
            return True
        os.close(fd)
        return False

    def test_adopted(self) -> None:
        reactor = MemoryReactor()
        fd = os.open(os.devnull, os.O_RDONLY)
        endpoint = AdoptedSocket(reactor, fd, socket.AF_INET)
        self.successResultOf(endpoint.listen(ServerFactory()))
        self.assertEqual(reactor.adoptedPorts[0][:2], (fd, socket.AF_INET))
        self.assertTrue(self.closed(fd))

    def test_notAdopted(self) -> None:
        reactor = MemoryReactor()

        def refuse(*args: object) -> None:
            raise OSError(22, "not a listening socket")

        reactor.adoptStreamPort = refuse  # type: ignore[assignment, method-assign]
        fd = os.open(os.devnull, os.O_RDONLY)
        endpoint = AdoptedSocket(reactor, fd, socket.AF_INET)
        self.failureResultOf(endpoint.listen(ServerFactory()), OSError)
        self.assertTrue(self.closed(fd))


class OwnSocketTests(DaemonTestCase):
    """
    A service on xinetd's own socket (C{port}, C{bind}, the socket flags):
    a reload keeps the listening port unless one of those changed.
    """

    def setUp(self) -> None:
        super().setUp()
        self.bound: list[ServiceConfig] = []

        def bindSocket(config: ServiceConfig) -> FakeSocket:
            self.bound.append(config)
            return FakeSocket()

        self.patch(stream, "bindSocket", bindSocket)

    def own(self, *args: str, **fields: object) -> ServiceConfig:
        return attrs.evolve(record("a", 0, *args), listen=(), port=7001, **fields)

    def test_sameSocketKept(self) -> None:
        daemon = self.start(self.own("old"))
        listener = daemon.listener("a")
        self.successResultOf(daemon.reload([self.own("new")]))
        self.assertIs(daemon.listener("a"), listener)
        self.assertEqual(len(self.bound), 1)
        self.assertEqual(len(self.reactor.adoptedPorts), 1)

    def test_flagsChangeTheSocket(self) -> None:
        daemon = self.start(self.own())
        listener = daemon.listener("a")
        self.successResultOf(
            daemon.reload([self.own(flags=frozenset({"NAMEINARGS", "KEEPALIVE"}))])
        )
        self.assertIsNot(daemon.listener("a"), listener)
        self.assertEqual(len(self.bound), 2)
        self.assertIn("KEEPALIVE", self.bound[1].flags)


class StateTests(DaemonTestCase):
    def test_states(self) -> None:
        """
        Each service's state is read from its listener and the limits.
        """
        daemon = self.start(record("a", 7001, instances=2))
        self.connect(7001)
        [state] = daemon.states()
        self.assertEqual(
            (state.id, state.port, state.kind, state.listening, state.running),
            ("a", 7001, "bridge", True, 1),
        )
        self.assertIsInstance(daemon.listener("a"), Listener)


class SpawnerProcessStateTests(SynchronousTestCase):
    """
    The status's spawner process, from the daemon's spawner.
    """

    def test_none(self) -> None:
        """
        A daemon that starts its programs itself has no spawner process.
        """
        from twinetd.service import _spawnerProcessState
        from twinetd.spawn import PosixSpawner

        self.assertIsNone(_spawnerProcessState(PosixSpawner(MemoryProcessReactor())))

    def test_busy(self) -> None:
        """
        A L{BusySpawner}'s spawner process is not started until a start
        needs it; then it has its pid and the programs it runs.
        """
        from twinetd.service import _spawnerProcessState
        from twinetd.spawn import BusySpawner
        from twinetd.spawnclient import ProcessSpawner

        busy = BusySpawner(MemoryProcessReactor(), 4, ProcessSpawner)
        self.assertEqual(
            _spawnerProcessState(busy), SpawnerProcessState(pid=None, running=0)
        )
        remote = busy.processSpawner
        assert isinstance(remote, ProcessSpawner)
        remote.pid = 77
        remote._processes[1] = None  # type: ignore[assignment]
        for spawner in (busy, remote):
            self.assertEqual(
                _spawnerProcessState(spawner), SpawnerProcessState(pid=77, running=1)
            )
