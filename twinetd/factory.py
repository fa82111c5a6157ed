"""
The protocol factory of one stream service: decides what each accepted
connection gets.

For this milestone every connection is bridged to a new child; access control,
limits, handoff, internal services and redirect hook in here.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory

from twinetd.bridge import BridgeProtocol
from twinetd.launch import LaunchPlan, Peer, planLaunch
from twinetd.model import ServiceConfig
from twinetd.spawn import Spawner


class StreamFactory(ServerFactory):
    """
    Builds a L{BridgeProtocol} for each connection to a C{wait = no} stream
    service.

    @ivar config: the service's record.
    @ivar live: the protocols of connections not yet ended.
    """

    def __init__(
        self,
        config: ServiceConfig,
        spawner: Spawner,
        clock: IReactorTime,
        daemonEnv: Mapping[str, str],
        daemonUid: int,
        killDelay: float,
    ) -> None:
        self.config = config
        self._spawner = spawner
        self._clock = clock
        self._daemonEnv = daemonEnv
        self._daemonUid = daemonUid
        self._killDelay = killDelay
        self.live: set[BridgeProtocol] = set()
        self._waiters: dict[BridgeProtocol, list[Deferred[None]]] = {}

    def _makePlan(self, peer: Peer) -> LaunchPlan:
        return planLaunch(self.config, peer, self._daemonEnv, self._daemonUid)

    def stop(self) -> Deferred[None]:
        """
        Stop every live connection's child (see L{BridgeProtocol.stop}); the
        result fires when all of them have ended.
        """
        waiting = [self._whenEnded(protocol) for protocol in list(self.live)]
        for protocol in list(self.live):
            protocol.stop()
        return DeferredList(waiting).addCallback(lambda _: None)

    def _whenEnded(self, protocol: BridgeProtocol) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiters.setdefault(protocol, []).append(d)
        return d

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        protocol: BridgeProtocol

        def ended() -> None:
            self.live.discard(protocol)
            for d in self._waiters.pop(protocol, []):
                d.callback(None)

        protocol = BridgeProtocol(
            self.config.id,
            self._makePlan,
            self._spawner,
            self._clock,
            killDelay=self._killDelay,
            onEnded=ended,
        )
        protocol.factory = self
        self.live.add(protocol)
        return protocol
