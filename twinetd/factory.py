"""
The protocol factory of one stream service: decides what each accepted
connection gets.

For this milestone every connection is bridged to a new child; access control,
limits, handoff, internal services and redirect hook in here.
"""

from __future__ import annotations

from collections.abc import Mapping

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

    def _makePlan(self, peer: Peer) -> LaunchPlan:
        return planLaunch(self.config, peer, self._daemonEnv, self._daemonUid)

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        protocol: BridgeProtocol

        def ended() -> None:
            self.live.discard(protocol)

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
