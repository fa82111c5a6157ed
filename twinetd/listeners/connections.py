# -*- test-case-name: tests.unit.test_factory -*-
"""
What each accepted connection of a C{wait = no} stream service gets: its
L{Front} (banners, the gate), then the protocol of the service's mode: the
bridge (a child with its stdio relayed), the handoff (the child gets the
socket itself), an internal service, or C{redirect}.  The factory also
keeps the connections that have not ended, so that stopping the service
stops them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.python.failure import Failure

from twinetd import logs
from twinetd.child import ChildSetup
from twinetd.launch import LaunchPlan
from twinetd.listeners.base import Runtime
from twinetd.listeners.front import Front
from twinetd.model import Peer, ServiceConfig
from twinetd.modes.bridge import BridgeProtocol
from twinetd.modes.handoff import HandoffProtocol
from twinetd.modes.internal import internalFor
from twinetd.policy.gate import Admission, Admit

if TYPE_CHECKING:
    from twinetd.modes.redirect import Traffic


class Stoppable(TypingProtocol):
    def stop(self) -> None: ...


def _noPause(seconds: int) -> None:
    pass


class ConnectionFactory(ServerFactory):
    """
    Builds a L{Front} for each connection to a C{wait = no} stream service,
    and the protocol of each admitted one (L{serve}).

    @ivar config: the service's record.
    @ivar runtime: what the daemon's services share.
    @ivar serviceLog: the service's log.
    @ivar admit: asked about each client.
    @ivar pause: called with the seconds of a C{cps} pause when a
        connection trips it (the listener's L{Listener.pauseFor}).
    @ivar live: the connections not yet ended (fronts and service
        protocols), for L{stop}.
    """

    # The daemon logs its own "listening" line; Twisted's per-factory
    # start/stop lines would repeat it for every service.
    noisy = False

    def __init__(
        self,
        config: ServiceConfig,
        runtime: Runtime,
        serviceLog: logs.ServiceLog,
        admit: Admit,
        makePlan: Callable[[Peer | None], LaunchPlan],
        pause: Callable[[int], object] = _noPause,
    ) -> None:
        """
        The service's log, admission and plans are its listener's
        (L{twinetd.listeners.base.Listener}).
        """
        self.config = config
        self.runtime = runtime
        self.serviceLog = serviceLog
        self.admit = admit
        self.pause = pause
        self._childSetup = ChildSetup(
            serviceLog, makePlan, runtime.spawner, runtime.clock, runtime.killDelay
        )
        self.live: set[Stoppable] = set()
        self._waiters: dict[Stoppable, list[Deferred[None]]] = {}
        # Asked for every connection: the service's record and the daemon's
        # default do not change while this factory serves.
        self._handsOff = runtime.handsOff(config)
        self._stderrToSocket = runtime.stderrToSocket(config)
        #: Whether each connection's socket goes to the service's program.
        self.handsOff = (
            not config.isInternal and config.redirect is None and self._handsOff
        )

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        front = Front()
        front.factory = self
        self.live.add(front)
        return front

    def switched(self, front: Front) -> None:
        """
        C{front} now forwards to its service's protocol, which L{serve}
        tracks from here on.
        """
        self.live.discard(front)

    def serve(self, ticket: Admission, peer: Peer) -> Protocol:
        """
        The protocol of an admitted connection; C{ticket} is released when
        it ends.
        """
        if self.config.isInternal:
            return self._serveInternal(ticket, peer)
        if self.config.redirect is not None:
            # As in xinetd, redirect wins over server.
            return self._serveRedirect(ticket, peer, self.config.redirect)
        return self._serveChild(ticket, peer)

    def _serveRedirect(
        self, ticket: Admission, peer: Peer, target: tuple[str, int]
    ) -> Protocol:
        # Imported here: only a redirecting service needs it.
        from twinetd.modes.redirect import RedirectProtocol

        protocol: RedirectProtocol
        serviceLog, clock = self.serviceLog, self.runtime.clock
        # xinetd forks a process per redirected connection and logs its
        # START and its EXIT (status 0, also when the target is down); the
        # relay runs in the daemon here, hence pid 0 as for internal
        # services.
        started = clock.seconds()
        serviceLog.start(0, peer)

        def ended(traffic: Traffic) -> None:
            ticket.release()
            if traffic.connected:
                serviceLog.traffic(traffic.bytesIn, traffic.bytesOut)
            serviceLog.exit(0, 0, None, logs.wholeSeconds(started, clock.seconds()))
            self.ended(protocol)

        protocol = RedirectProtocol(
            self.config.id,
            target,
            self.runtime.tcp,
            onEnded=ended,
            keepAlive="KEEPALIVE" in self.config.flags,
        )
        protocol.log = serviceLog.logger
        self.live.add(protocol)
        return protocol

    def _serveInternal(self, ticket: Admission, peer: Peer) -> Protocol:
        builtin = internalFor(self.config, self.runtime.chargenRing)
        protocol = builtin.buildStream(self.runtime.clock)
        connection = _Closing(protocol)
        serviceLog, clock = self.serviceLog, self.runtime.clock
        # xinetd logs its builtins with pid 0 when it serves them itself;
        # it forks for stream echo, discard and chargen (builtins.c) and
        # logs their EXIT.  Here every builtin is served in the daemon: pid
        # 0, and the EXIT of those xinetd forks for.
        started = clock.seconds()
        serviceLog.start(0, peer)
        forks = builtin.name in ("echo", "discard", "chargen")

        def ended() -> None:
            ticket.release()
            if forks:
                duration = logs.wholeSeconds(started, clock.seconds())
                serviceLog.exit(0, 0, None, duration)
            self.ended(connection)

        _whenLost(protocol, ended)
        self.live.add(connection)
        return protocol

    def _serveChild(self, ticket: Admission, peer: Peer) -> Protocol:
        protocol: BridgeProtocol | HandoffProtocol

        def ended() -> None:
            ticket.release()
            self.ended(protocol)

        if self._handsOff:
            protocol = HandoffProtocol(
                self._childSetup, onEnded=ended, stderrToSocket=self._stderrToSocket
            )
        else:
            protocol = BridgeProtocol(
                self._childSetup, onEnded=ended, hangups=self.runtime.hangups
            )
        protocol.factory = self
        protocol.peer = peer
        self.live.add(protocol)
        return protocol

    def ended(self, connection: Stoppable) -> None:
        """
        A connection (or its front) has ended.
        """
        self.live.discard(connection)
        for d in self._waiters.pop(connection, []):
            d.callback(None)

    def stop(self) -> Deferred[None]:
        """
        Stop every live connection (see
        L{twinetd.modes.bridge.BridgeProtocol.stop}); the result fires when
        all of them have ended.
        """
        live = list(self.live)
        waiting = [self._whenEnded(c) for c in live]
        for connection in live:
            connection.stop()
        return DeferredList(waiting).addCallback(lambda _: None)

    def _whenEnded(self, connection: Stoppable) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiters.setdefault(connection, []).append(d)
        return d


class _Closing:
    """
    A connection served inside the daemon: stopping it closes it.
    """

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol

    def stop(self) -> None:
        if self.protocol.transport is not None:
            self.protocol.transport.loseConnection()


def _whenLost(protocol: Protocol, callback: Callable[[], None]) -> None:
    # Chain onto this instance's connectionLost (the transport calls it),
    # whatever the protocol's class does there.
    original = protocol.connectionLost

    def connectionLost(reason: Failure = connectionDone) -> None:
        try:
            original(reason)
        finally:
            callback()

    protocol.connectionLost = connectionLost  # type: ignore[method-assign]


#: How often, and how far apart in seconds, a port in use is tried again
#: before the service gives up (xinetd tries 10 times).
