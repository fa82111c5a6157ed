"""
L{twinetd.listeners.stream} and L{twinetd.policy.gate}: what each accepted
connection gets, with fakes (StringTransport, the fake process reactor, its clock).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    ISSLTransport,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import alsoProvides, providedBy

from twinetd import logs
from twinetd.errors import SourceLocation
from twinetd.hangup import END_OF_FILE, RESET
from twinetd.listeners.base import Runtime
from twinetd.listeners.connections import ConnectionFactory
from twinetd.listeners.front import BANNER_TIMEOUT, HANDSHAKE_TIMEOUT, Front, _declare
from twinetd.model import AddressRule, Peer, ServiceConfig, SocketType
from twinetd.modes.bridge import BridgeProtocol
from twinetd.policy.access import DenyList
from twinetd.policy.gate import REASON_ERROR, Admission, Gate
from twinetd.policy.limits import Limits
from twinetd.spawn import ReactorSpawner
from twinetd.testing import FakeHangupWatcher, MemoryProcessReactor

CONFIG = ServiceConfig(
    name="svc",
    source=SourceLocation("/etc/xinetd.d/svc", 1),
    socketType=SocketType.STREAM,
    wait=False,
    port=7000,
    server="/usr/bin/server",
    cps=(1000, 1),
)

#: CONFIG with a names-based rule: its decisions wait for a name lookup.
NAMED = attrs.evolve(
    CONFIG, onlyFrom=(AddressRule("ok.example", hostname="ok.example"),)
)


def rule(text: str) -> AddressRule:
    return AddressRule(text, network=ipaddress.ip_network(text))


class Harness:
    def __init__(self, config: ServiceConfig = CONFIG, resolveName: Any = None) -> None:
        self.reactor = MemoryProcessReactor()
        self.reactor.advance(1_000_000.0)
        limits = Limits(self.reactor)
        limits.updateConfig(config.id, config)
        gate = Gate(self.reactor, limits, DenyList(self.reactor), minutes=lambda _: 600)
        if resolveName is not None:
            gate = Gate(
                self.reactor, limits, DenyList(self.reactor), resolveName, lambda _: 600
            )
        self.gate = gate
        self.watcher = FakeHangupWatcher()
        self.runtime = Runtime(
            spawner=ReactorSpawner(self.reactor),
            clock=self.reactor,
            tcp=self.reactor,
            gate=gate,
            environment={},
            uid=0,
            killDelay=5.0,
            hangups=self.watcher,
        )
        self.factory = ConnectionFactory(
            config,
            self.runtime,
            logs.ServiceLog.fromConfig(config, None),
            gate.admitter(config),
            functools.partial(self.runtime.plan, config),
        )

    def connect(self, host: str = "192.0.2.7", port: int = 40000) -> StringTransport:
        transport = StringTransport(
            peerAddress=IPv4Address("TCP", host, port),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 7000),
        )
        protocol = self.factory.buildProtocol(transport.getPeer())
        # As a real TCP transport: its protocol is the front, for the whole
        # connection.
        transport.protocol = protocol  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        return transport


def events(test: SynchronousTestCase) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    test.addCleanup(globalLogPublisher.removeObserver, seen.append)
    return seen


class AdmittedTests(SynchronousTestCase):
    def test_bridged(self) -> None:
        """
        An admitted connection's front forwards to the bridge, which spawns
        the server, and is its transport; the client is read again.
        """
        h = Harness()
        transport = h.connect()
        [process] = h.reactor.spawned
        self.assertEqual(process.call.executable, "/usr/bin/server")
        self.assertEqual(transport.producerState, "producing")
        front = transport.protocol
        self.assertIsInstance(front, Front)
        self.assertIsInstance(front.wrappedProtocol, BridgeProtocol)
        self.assertIs(front.wrappedProtocol.transport, front)
        transport.protocol.dataReceived(b"hello")
        self.assertEqual(process.written, [b"hello"])
        process.output(b"reply")
        self.assertEqual(transport.value(), b"reply")

    def test_acceptedTime(self) -> None:
        """
        The front's peer carries the time of the accept, for C{START}'s
        latency.
        """
        h = Harness()
        self.assertEqual(h.connect().protocol.peer.accepted, h.reactor.seconds())

    def test_halfCloseForwarded(self) -> None:
        """
        The bridge half-closes: the front provides
        L{IHalfCloseableProtocol} once it forwards to it, so the client's
        end of file reaches the child's standard input.
        """
        h = Harness()
        transport = h.connect()
        [process] = h.reactor.spawned
        self.assertTrue(IHalfCloseableProtocol.providedBy(transport.protocol))
        transport.protocol.readConnectionLost()
        self.assertTrue(process.stdinClosed)
        self.assertFalse(transport.disconnecting)

    def test_notHalfCloseableBeforeServed(self) -> None:
        """
        Before the service's protocol exists, and for one that does not
        half-close, the transport closes at the client's end of file, as
        it would without the front.
        """
        pending: Deferred[str | None] = Deferred()
        config = NAMED
        h = Harness(config, resolveName=lambda address: pending)
        transport = h.connect()
        self.assertFalse(IHalfCloseableProtocol.providedBy(transport.protocol))
        plain = Harness()
        plain.factory.serve = lambda admission, peer: Protocol()  # type: ignore[method-assign]
        transport = plain.connect()
        self.assertIsNotNone(transport.protocol.wrappedProtocol)
        self.assertFalse(IHalfCloseableProtocol.providedBy(transport.protocol))

    def test_earlyBytesFirst(self) -> None:
        """
        Bytes that reach the front before the service's protocol exists
        (a decision that waits for a name) reach that protocol first.
        """
        pending: Deferred[str | None] = Deferred()
        config = NAMED
        h = Harness(config, resolveName=lambda address: pending)
        transport = h.connect()
        transport.protocol.dataReceived(b"early ")
        pending.callback("ok.example")
        [process] = h.reactor.spawned
        transport.protocol.dataReceived(b"late")
        self.assertEqual(process.written, [b"early ", b"late"])

    def test_transportInterfaces(self) -> None:
        """
        The front, as its service's transport, provides its own
        transport's interfaces, not its protocol-side ones.
        """
        h = Harness()
        transport = h.connect()
        front = transport.protocol
        self.assertTrue(ITransport.providedBy(front))
        self.assertTrue(IConsumer.providedBy(front))
        self.assertFalse(IHalfCloseableProtocol.providedBy(Harness().connect()))
        self.assertEqual(front.getPeer(), transport.getPeer())

    def test_declarationShared(self) -> None:
        """
        Served fronts share one declaration of what they provide (the
        transport's interfaces and C{IHalfCloseableProtocol}): a new one
        per connection would cost its resolution order each time.
        """
        h = Harness()
        one, two = h.connect().protocol, h.connect().protocol
        self.assertTrue(IHalfCloseableProtocol.providedBy(one))
        self.assertIs(providedBy(one), providedBy(two))

    def test_declarationPerInterfaces(self) -> None:
        """
        A front declared with other interfaces (another transport) provides
        those, not the ones of the declaration kept for the first.
        """
        one, two, three = Front(), Front(), Front()
        _declare(one, (ITransport,))
        _declare(two, (IConsumer,))
        _declare(three, (ITransport,))
        self.assertEqual(list(providedBy(one)), list(providedBy(three)))
        self.assertTrue(ITransport.providedBy(one))
        self.assertFalse(IConsumer.providedBy(one))
        self.assertTrue(IConsumer.providedBy(two))
        self.assertFalse(ITransport.providedBy(two))

    def test_bannersInOrder(self) -> None:
        """
        C{banner} comes first, then C{banner_success}, before the child
        writes anything.
        """
        banner = self.mktemp()
        success = self.mktemp()
        with open(banner, "wb") as f:
            f.write(b"hello\r\n")
        with open(success, "wb") as f:
            f.write(b"welcome\r\n")
        h = Harness(attrs.evolve(CONFIG, banner=banner, bannerSuccess=success))
        transport = h.connect()
        h.reactor.spawned[0].output(b"child\n")
        self.assertEqual(transport.value(), b"hello\r\nwelcome\r\nchild\n")

    def test_missingBannerSendsNothing(self) -> None:
        """
        A banner file that cannot be read is logged; the connection goes on.
        """
        seen = events(self)
        h = Harness(attrs.evolve(CONFIG, banner=self.mktemp()))
        transport = h.connect()
        self.assertEqual(transport.value(), b"")
        self.assertEqual(len(h.reactor.spawned), 1)
        self.assertTrue(
            any("cannot read banner" in e.get("log_format", "") for e in seen)
        )


class NoDelayTransport(StringTransport):
    noDelay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


class TLSTests(SynchronousTestCase):
    """
    Over TLS the front asks the gate once the handshake is over (so that
    the client's certificate is known), and drops a client that does not
    finish it.
    """

    def connect(self, h: Harness) -> StringTransport:
        transport = NoDelayTransport(
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 7000),
        )
        alsoProvides(transport, ISSLTransport)
        protocol = h.factory.buildProtocol(transport.getPeer())
        transport.protocol = protocol  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        return transport

    def test_afterHandshake(self) -> None:
        """
        Nothing is decided before the handshake is over; the socket sends
        at once (TCP_NODELAY: TLS's small records would otherwise wait for
        the client's delayed ACK).
        """
        h = Harness()
        transport = self.connect(h)
        self.assertTrue(transport.noDelay)
        self.assertEqual(h.reactor.spawned, [])
        self.assertEqual(transport.producerState, "producing")
        transport.protocol.handshakeCompleted()
        self.assertEqual(len(h.reactor.spawned), 1)
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_handshakeTimeout(self) -> None:
        h = Harness()
        transport = self.connect(h)
        h.reactor.advance(HANDSHAKE_TIMEOUT)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(h.reactor.spawned, [])
        self.assertEqual(h.gate.limits.running(CONFIG.id), 0)


class HandoffBannerTests(SynchronousTestCase):
    """
    A handed-off connection's banners are sent through Twisted; the socket
    is handed over once they have reached the kernel, never by blocking.
    """

    def harness(self, banner: bytes = b"welcome\r\n") -> tuple[Harness, list[Any]]:
        config = attrs.evolve(CONFIG, handoff=True)
        if banner:
            path = self.mktemp()
            with open(path, "wb") as f:
                f.write(banner)
            config = attrs.evolve(config, bannerSuccess=path)
        h = Harness(config)
        served: list[Any] = []

        def serve(ticket: Admission, peer: Any) -> Any:
            # The transport is already free of the front's producer.
            transport = getattr(self, "transport", None)
            served.append((ticket, peer, getattr(transport, "producer", None)))
            return Protocol()

        h.factory.serve = serve  # type: ignore[method-assign]
        return h, served

    def test_handedOverOnceSent(self) -> None:
        h, served = self.harness()
        self.transport = h.connect()
        self.assertEqual(self.transport.value(), b"welcome\r\n")
        self.assertEqual(served, [])
        # Meanwhile nothing is read, and the decided client is not watched.
        self.assertEqual(self.transport.producerState, "paused")
        self.assertFalse(h.watcher.isWatched(self.transport))
        # Twisted asks its pull producer for more: its buffer is empty.
        self.transport.producer.resumeProducing()
        self.assertEqual(served, [])
        h.reactor.advance(0)
        self.assertEqual(len(served), 1)
        self.assertIsNone(served[0][2])
        self.assertEqual(self.transport.producerState, "producing")

    def test_noBannerAtOnce(self) -> None:
        h, served = self.harness(banner=b"")
        self.transport = h.connect()
        self.assertEqual(len(served), 1)

    def test_bannerNotTaken(self) -> None:
        """
        A client that does not take its banner within L{BANNER_TIMEOUT} is
        dropped, logged; its slot is released and nothing is started.
        """
        seen = events(self)
        h, served = self.harness()
        self.transport = h.connect()
        self.assertEqual(h.gate.limits.running(CONFIG.id), 1)
        h.reactor.advance(BANNER_TIMEOUT - 0.1)
        self.assertFalse(self.transport.disconnected)
        h.reactor.advance(0.1)
        self.assertTrue(self.transport.disconnected)
        [dropped] = [e for e in seen if e.get("twinetdBannerTimeout")]
        self.assertEqual((dropped["service"], dropped["host"]), ("svc", "192.0.2.7"))
        self.transport.protocol.connectionLost(None)
        self.assertEqual(h.gate.limits.running(CONFIG.id), 0)
        self.transport.producer.resumeProducing()
        h.reactor.advance(0)
        self.assertEqual(served, [])

    def test_clientGoneWhileSending(self) -> None:
        h, served = self.harness()
        self.transport = h.connect()
        self.transport.protocol.connectionLost(None)
        self.assertEqual(h.gate.limits.running(CONFIG.id), 0)
        self.assertEqual(h.reactor.getDelayedCalls(), [])
        self.assertEqual(served, [])

    def test_refusedClosesWithoutProducer(self) -> None:
        """
        A refused client is closed with no producer left registered (a pull
        producer would hold Twisted's close back).
        """
        config = attrs.evolve(CONFIG, handoff=True, onlyFrom=(rule("10.0.0.0/8"),))
        banner = self.mktemp()
        with open(banner, "wb") as f:
            f.write(b"hi\r\n")
        h = Harness(attrs.evolve(config, banner=banner))
        transport = h.connect()
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(transport.producer)


class RefusedTests(SynchronousTestCase):
    def test_addressRefused(self) -> None:
        """
        A client outside C{only_from} gets C{banner_fail} and is closed; no
        process is spawned; a FAIL event names the reason.
        """
        fail = self.mktemp()
        with open(fail, "wb") as f:
            f.write(b"go away\r\n")
        seen = events(self)
        h = Harness(
            attrs.evolve(CONFIG, onlyFrom=(rule("10.0.0.0/8"),), bannerFail=fail)
        )
        transport = h.connect()
        self.assertEqual(transport.value(), b"go away\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(h.reactor.spawned, [])
        [event] = [e for e in seen if e.get("twinetdEvent") == logs.FAIL]
        self.assertEqual((event["reason"], event["host"]), ("address", "192.0.2.7"))
        self.assertEqual(h.gate.limits.running(CONFIG.id), 0)

    def test_instances(self) -> None:
        """
        With C{instances = 1} a second connection is refused while the first
        runs, and admitted again once it ended.
        """
        seen = events(self)
        h = Harness(attrs.evolve(CONFIG, instances=1))
        first = h.connect()
        second = h.connect(port=40001)
        self.assertEqual(len(h.reactor.spawned), 1)
        self.assertTrue(second.disconnecting)
        [event] = [e for e in seen if e.get("twinetdEvent") == logs.FAIL]
        self.assertEqual(event["reason"], "service_limit")
        h.reactor.spawned[0].end()
        first.protocol.connectionLost(None)
        h.connect(port=40002)
        self.assertEqual(len(h.reactor.spawned), 2)

    def test_perSource(self) -> None:
        """
        C{per_source} counts each client address on its own.
        """
        h = Harness(attrs.evolve(CONFIG, perSource=1))
        h.connect("192.0.2.7")
        refused = h.connect("192.0.2.7", 40001)
        h.connect("192.0.2.8")
        self.assertTrue(refused.disconnecting)
        self.assertEqual(len(h.reactor.spawned), 2)


class PendingTests(SynchronousTestCase):
    def test_clientGoneDuringLookup(self) -> None:
        """
        A client that leaves while its name is looked up gets nothing
        spawned, and its slot is released.
        """
        pending: Deferred[str | None] = Deferred()
        config = NAMED
        h = Harness(config, resolveName=lambda address: pending)
        transport = h.connect()
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(h.gate.limits.running(CONFIG.id), 1)
        transport.protocol.connectionLost(None)
        pending.callback("ok.example")
        self.assertEqual(h.reactor.spawned, [])
        self.assertEqual(h.gate.limits.running(CONFIG.id), 0)

    def test_clientResetDuringLookup(self) -> None:
        """
        The client is watched while the gate decides (its socket is not
        read): a reset drops it at once, and its slot is released when the
        decision comes.  Its end of file does not (it may have sent its
        whole request).
        """
        pending: Deferred[str | None] = Deferred()
        config = NAMED
        h = Harness(config, resolveName=lambda address: pending)
        transport = h.connect()
        self.assertTrue(h.watcher.isWatched(transport))
        h.watcher.hangUp(transport, END_OF_FILE)
        h.reactor.advance(3600)
        self.assertFalse(transport.disconnecting)
        h.watcher.hangUp(transport, RESET)
        self.assertTrue(transport.disconnected)
        transport.protocol.connectionLost(None)
        self.assertFalse(h.watcher.isWatched(transport))
        pending.callback("ok.example")
        self.assertEqual(h.reactor.spawned, [])
        self.assertEqual(h.gate.limits.running(CONFIG.id), 0)

    def test_immediateDecisionNotWatched(self) -> None:
        """
        A decision that comes at once (no name to look up) costs no watch.
        """
        h = Harness()
        transport = h.connect()
        self.assertEqual(len(h.reactor.spawned), 1)
        self.assertFalse(h.watcher.isWatched(transport))
        self.assertEqual(h.watcher.watches, 0)
        h = Harness(attrs.evolve(CONFIG, onlyFrom=(rule("10.0.0.0/8"),)))
        h.connect()
        self.assertEqual(h.watcher.watches, 0)

    def test_immediateDecisionNotPaused(self) -> None:
        """
        Nor a pause of the client's reading: the reactor cannot read the
        socket before a decision that comes at once.  (Each pause and
        resume is a change of the reactor's descriptor set.)
        """
        pauses: list[str] = []

        class Counting(StringTransport):
            def pauseProducing(self) -> None:
                pauses.append("pause")
                super().pauseProducing()

        h = Harness()
        transport = Counting(
            peerAddress=IPv4Address("TCP", "192.0.2.7", 40000),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 7000),
        )
        front = h.factory.buildProtocol(transport.getPeer())
        transport.protocol = front  # type: ignore[attr-defined]
        front.makeConnection(transport)
        self.assertEqual(len(h.reactor.spawned), 1)
        self.assertEqual(pauses, [])
        self.assertEqual(transport.producerState, "producing")

    def test_notWatchedOnceServed(self) -> None:
        """
        The front's watch ends when the service's protocol takes over.
        """
        pending: Deferred[str | None] = Deferred()
        config = NAMED
        h = Harness(config, resolveName=lambda address: pending)
        transport = h.connect()
        self.assertTrue(h.watcher.isWatched(transport))
        pending.callback("ok.example")
        self.assertEqual(len(h.reactor.spawned), 1)
        self.assertFalse(h.watcher.isWatched(transport))

    def test_nameAdmits(self) -> None:
        """
        A names-based rule admits the client its reverse lookup names.
        """
        pending: Deferred[str | None] = Deferred()
        config = attrs.evolve(
            CONFIG, onlyFrom=(AddressRule(".example", hostname=".example"),)
        )
        h = Harness(config, resolveName=lambda address: pending)
        h.connect()
        self.assertEqual(h.reactor.spawned, [])
        pending.callback("ok.EXAMPLE")
        self.assertEqual(len(h.reactor.spawned), 1)

    def test_stopClosesPending(self) -> None:
        """
        Stopping the factory closes connections still waiting for the gate;
        the result fires when they are gone.
        """
        pending: Deferred[str | None] = Deferred()
        config = NAMED
        h = Harness(config, resolveName=lambda address: pending)
        transport = h.connect()
        stopped = h.factory.stop()
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(stopped)
        transport.protocol.connectionLost(None)
        self.successResultOf(stopped)


class GateTests(SynchronousTestCase):
    def test_refusedStillCountsForCps(self) -> None:
        """
        Limits come before access control: refused connections count
        towards C{cps}, as in xinetd.
        """
        reactor = MemoryProcessReactor()
        config = attrs.evolve(CONFIG, cps=(2, 10), onlyFrom=())
        limits = Limits(reactor)
        limits.updateConfig(config.id, config)
        gate = Gate(reactor, limits, minutes=lambda _: 0)
        results = [self.successResultOf(gate.admit(config, peer())) for _ in range(4)]
        # The third connection within the second trips cps (3 > 2).
        self.assertEqual(
            [r.reason for r in results if not r.admitted],
            ["address", "address", "connections per second", "connections per second"],
        )

    def test_ticketReleasedOnRefusal(self) -> None:
        reactor = MemoryProcessReactor()
        config = attrs.evolve(CONFIG, onlyFrom=())
        limits = Limits(reactor)
        limits.updateConfig(config.id, config)
        result = self.successResultOf(Gate(reactor, limits).admit(config, peer()))
        self.assertFalse(result.admitted)
        self.assertEqual(limits.running(config.id), 0)

    def test_noPeerAdmitted(self) -> None:
        """
        Without a peer (C{wait = yes}) there is no address to check.
        """
        reactor = MemoryProcessReactor()
        config = attrs.evolve(CONFIG, onlyFrom=())
        limits = Limits(reactor)
        limits.updateConfig(config.id, config)
        result = self.successResultOf(Gate(reactor, limits).admit(config, None))
        self.assertTrue(result.admitted)
        self.assertEqual(limits.running(config.id), 1)
        result.release()
        result.release()
        self.assertEqual(limits.running(config.id), 0)

    def test_cpsTripSaysHowLong(self) -> None:
        """
        The connection that trips C{cps} is refused with the pause its
        listener is to take; the ones refused while paused carry none.
        """
        reactor = MemoryProcessReactor()
        config = attrs.evolve(CONFIG, cps=(1, 7))
        limits = Limits(reactor)
        limits.updateConfig(config.id, config)
        gate = Gate(reactor, limits, minutes=lambda _: 0)
        results = [self.successResultOf(gate.admit(config, peer())) for _ in range(3)]
        self.assertEqual(
            [(r.reason, r.pause) for r in results],
            [(None, 0), ("connections per second", 7), ("connections per second", 0)],
        )
        self.assertTrue(limits.isDisabled(config.id))
        reactor.advance(7)
        self.assertFalse(limits.isDisabled(config.id))

    def assertRefusedForError(self, gate: Gate, config: Any, limits: Limits) -> None:
        """
        C{gate} refuses a connection to C{config} for an error it logged
        (reason C{error}), and holds no ticket.
        """
        result = self.successResultOf(gate.admit(config, peer()))
        self.assertEqual(
            (result.reason, result.detail), (REASON_ERROR, "admission failed")
        )
        self.assertEqual(limits.running(config.id), 0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_errorRefusesAndReleases(self) -> None:
        """
        An error while deciding is logged and refuses the connection
        (reason C{error}); the ticket taken before it is given back.
        """
        reactor = MemoryProcessReactor()
        limits = Limits(reactor)
        limits.updateConfig(CONFIG.id, CONFIG)

        def broken(address: str) -> Deferred[str | None]:
            raise ZeroDivisionError()

        config = NAMED
        gate = Gate(reactor, limits, resolveName=broken)
        self.assertRefusedForError(gate, config, limits)

    def test_immediateErrorRefusesAndReleases(self) -> None:
        """
        So does an error in a decision that needs no name.
        """
        reactor = MemoryProcessReactor()
        limits = Limits(reactor)
        config = attrs.evolve(CONFIG, accessTimes=((0, 599),))
        limits.updateConfig(config.id, config)

        def broken(seconds: float) -> int:
            raise ZeroDivisionError()

        gate = Gate(reactor, limits, minutes=broken)
        self.assertRefusedForError(gate, config, limits)

    def test_decidedAtOnceWithoutDeferred(self) -> None:
        """
        The admitter answers with the admission itself when no name is
        needed, with a Deferred when one is; L{Gate.admit} always with a
        Deferred.
        """
        reactor = MemoryProcessReactor()
        limits = Limits(reactor)
        limits.updateConfig(CONFIG.id, CONFIG)
        lookups: list[Deferred[str | None]] = []

        def resolve(address: str) -> Deferred[str | None]:
            lookups.append(Deferred())
            return lookups[-1]

        gate = Gate(reactor, limits, resolveName=resolve)
        decision = gate.admitter(CONFIG)(peer())
        assert isinstance(decision, Admission)
        self.assertTrue(decision.admitted)
        decision.release()
        deferredOne = self.successResultOf(gate.admit(CONFIG, peer()))
        self.assertTrue(deferredOne.admitted)
        deferredOne.release()
        named = NAMED
        limits.updateConfig(named.id, named)
        later = gate.admitter(named)(peer())
        assert isinstance(later, Deferred)
        self.assertNoResult(later)
        lookups[-1].callback("ok.example")
        admitted = self.successResultOf(later)
        self.assertTrue(admitted.admitted)
        admitted.release()
        self.assertEqual(limits.running(CONFIG.id), 0)

    def test_unixClientHasNoAddress(self) -> None:
        """
        A UNIX-socket client has no address: address rules and per_source
        do not apply (its socket file's mode decides); instances do.
        """
        reactor = MemoryProcessReactor()
        config = attrs.evolve(CONFIG, onlyFrom=(), perSource=1, instances=2)
        limits = Limits(reactor)
        limits.updateConfig(config.id, config)
        gate = Gate(reactor, limits, minutes=lambda _: 0)
        unixPeer = Peer("unix", "<unix uid=0 pid=1>", 0, "/run/s.sock", 0)
        answers = [self.successResultOf(gate.admit(config, unixPeer)) for _ in range(3)]
        self.assertEqual([a.reason for a in answers], [None, None, "service_limit"])

    def test_addressParsedOnce(self) -> None:
        """
        One connection's address is parsed once, for C{per_source} and the
        address rules alike; a mapped client counts as its IPv4 host.
        """
        reactor = MemoryProcessReactor()
        config = attrs.evolve(
            CONFIG, perSource=1, onlyFrom=(rule("192.0.2.0/24"),), noAccess=()
        )
        limits = Limits(reactor)
        limits.updateConfig(config.id, config)
        parsed: list[str] = []
        parse = ipaddress.ip_address

        def counting(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
            parsed.append(text)
            return parse(text)

        self.patch(ipaddress, "ip_address", counting)
        gate = Gate(reactor, limits, minutes=lambda _: 0)
        mapped = Peer("tcp", "::ffff:192.0.2.7", 40000, "::ffff:127.0.0.1", 7000)
        answer = self.successResultOf(gate.admit(config, mapped))
        self.assertEqual((answer.reason, parsed), (None, ["::ffff:192.0.2.7"]))
        self.assertEqual(limits.runningFrom(config.id, "192.0.2.7"), 1)
        second = self.successResultOf(gate.admit(config, peer()))
        self.assertEqual(second.reason, "per_source_limit")

    def test_timeOnlyForAccessTimes(self) -> None:
        """
        The local time is read only for a service with C{access_times}.
        """
        reactor = MemoryProcessReactor()
        limits = Limits(reactor)
        asked: list[float] = []

        def minutes(seconds: float) -> int:
            asked.append(seconds)
            return 600

        gate = Gate(reactor, limits, minutes=minutes)
        timed = attrs.evolve(CONFIG, name="timed", accessTimes=((0, 599),))
        for config in (CONFIG, timed):
            limits.updateConfig(config.id, config)
        self.assertTrue(self.successResultOf(gate.admit(CONFIG, peer())).admitted)
        self.assertEqual(asked, [])
        answer = self.successResultOf(gate.admit(timed, peer()))
        self.assertEqual((answer.reason, len(asked)), ("time", 1))

    def test_refusalHoldsNothing(self) -> None:
        refusal = Admission.refused("address", "only_from")
        self.assertFalse(refusal.admitted)
        refusal.release()


def peer() -> Any:
    from twinetd.model import Peer

    return Peer("tcp", "192.0.2.7", 40000, "127.0.0.1", 7000)


class BrokenGateTests(SynchronousTestCase):
    def test_errorClosesConnection(self) -> None:
        """
        An unexpected error while deciding is logged and the client closed,
        never left waiting.
        """
        seen = events(self)
        h = Harness()

        def broken(peer: Any) -> Deferred[Any]:
            return Deferred.fromCoroutine(_raise())

        h.factory.admit = broken
        transport = h.connect()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(h.reactor.spawned, [])
        self.assertTrue(any(e.get("log_failure") for e in seen))
        self.flushLoggedErrors(ZeroDivisionError)

    def test_errorAfterImmediateDecision(self) -> None:
        """
        So is one while serving a connection decided at once (no Deferred
        to catch it).
        """
        seen = events(self)
        h = Harness()
        h.factory.admit = lambda peer: Admission()

        def serve(ticket: Any, peer: Any) -> Any:
            raise ZeroDivisionError()

        h.factory.serve = serve  # type: ignore[method-assign]
        transport = h.connect()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(h.reactor.spawned, [])
        self.assertTrue(any(e.get("log_failure") for e in seen))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


async def _raise() -> None:
    raise ZeroDivisionError()
