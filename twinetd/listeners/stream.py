# -*- test-case-name: tests.integration.test_daemon -*-
"""
The listener of a C{wait = no} stream service: a listening socket made as
xinetd makes it (L{twinetd.listeners.sockets}) and adopted by the reactor
(L{IReactorSocket.adoptStreamPort}), or the endpoints C{twinetd_listen} names
(L{twinetd.listeners.endpoints}; C{haproxy:} ones behind the PROXY wrapper
of L{twinetd.listeners.proxy}).  Each accepted connection gets a
L{twinetd.listeners.front.Front} from the service's
L{twinetd.listeners.connections.ConnectionFactory}.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, cast

import attrs
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IProtocolFactory,
    IReactorSocket,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.python.failure import Failure

from twinetd._twistedcompat import cancelCall
from twinetd.listeners.base import Listener, ListenerOptions, Runtime
from twinetd.listeners.connections import ConnectionFactory
from twinetd.listeners.endpoints import AdoptedSocket, EndpointError, endpointFor
from twinetd.listeners.sockets import bindSocket, listenAddress
from twinetd.model import ListenSpec, ServiceConfig

if TYPE_CHECKING:
    from typing_extensions import Unpack

#: How often, and how far apart in seconds, a port in use is tried again
#: before the service gives up (xinetd tries 10 times).
BIND_RETRIES = 10
BIND_RETRY_DELAY = 0.2

#: Where a stream service listens: xinetd's own socket (C{None}: C{port},
#: C{bind}, the flags) or one C{twinetd_listen} endpoint.
Place = ListenSpec | None


class StreamListener(Listener):
    """
    Listens for one C{wait = no} stream service: on its port, or on each of
    its C{twinetd_listen} endpoints.  A place that cannot listen is logged
    and left idle; the service's other places and the daemon's other
    services are unaffected.  A port in use is tried again
    (L{BIND_RETRIES}).  While C{cps} has tripped the ports are closed
    (clients are refused, as under xinetd).  A host name in C{bind} is
    looked up once, through the reactor's resolver (never blocking the
    reactor), and its address kept for every later bind.

    A reload that changes the service but not where it listens hands the
    running ports the new configuration (L{takeOver}): they are never
    closed, so no client is refused or dropped, as under xinetd.

    @ivar factory: builds the connections accepted from now on.
    @ivar ports: the listening ports.
    """

    _stopped = False

    def __init__(
        self,
        config: ServiceConfig,
        runtime: Runtime,
        reactor: IReactorSocket,
        **options: Unpack[ListenerOptions],
    ) -> None:
        """
        @param reactor: listens (and provides what the endpoints need); a
            host name in C{bind} is looked up as L{Listener._bindConfig}
            says.
        @param options: as L{Listener}'s.
        """
        super().__init__(config, runtime, **options)
        # The front pauses this listener itself when a connection trips
        # cps (as after a takeover): it asks the gate, not L{ask}.
        self.factory = ConnectionFactory(
            config, runtime, self.serviceLog, self.admit, self.makePlan, self.pauseFor
        )
        # The factories of earlier configurations, while their connections
        # last (stopped with this service).
        self._earlier: list[ConnectionFactory] = []
        self._reactor = reactor
        self.ports: list[IListeningPort] = []
        self._boundPort: int | None = None
        self._retries: dict[int, IDelayedCall] = {}

    @property
    def port(self) -> IListeningPort | None:
        """
        The first listening port, if any.
        """
        return self.ports[0] if self.ports else None

    @property
    def listening(self) -> bool:
        return bool(self.ports or self._retries or self._lookup is not None)

    @property
    def boundPort(self) -> int | None:
        for port in self.ports:
            number = getattr(port.getHost(), "port", None)
            if isinstance(number, int):
                return number
        return None

    def _places(self) -> list[Place]:
        return list(self.config.listen) if self.config.listen else [None]

    def _listen(self) -> None:
        self._stopped = False
        for index, place in enumerate(self._places()):
            self._listenOn(index, place, 0)

    def _listenOn(self, index: int, place: Place, attempt: int) -> None:
        self._retries.pop(index, None)
        if self._stopped:
            return
        address = listenAddress(self.config) if place is None else place.text
        factory: IProtocolFactory = _Current(self)
        try:
            if place is None:
                endpoint = self._ownSocket()
                if endpoint is None:
                    return
            else:
                endpoint = endpointFor(self._reactor, place)
                if place.proxy:
                    # Here: the PROXY parsers are imported only when used.
                    from twinetd.listeners.proxy import ProxyWrappingFactory

                    factory = ProxyWrappingFactory(factory, self)
        except (OSError, EndpointError) as e:
            self._failedOn(index, place, attempt, address, e)
            return
        listening: Deferred[IListeningPort] = endpoint.listen(factory)
        listening.addCallbacks(
            self._listeningOn,
            self._listenFailed,
            callbackArgs=(place, address),
            errbackArgs=(index, place, attempt, address),
        )

    def _ownSocket(self) -> IStreamServerEndpoint | None:
        """
        xinetd's socket, bound now, as an endpoint (C{None} while a name in
        C{bind} is looked up).

        @raise OSError: it cannot be bound.
        """
        config = self._bindConfig()
        if config is None:
            return None
        if self._boundPort is not None:
            # Listening again (after a cps pause): the same port, also when
            # the configuration asked for an ephemeral one.
            config = attrs.evolve(config, port=self._boundPort)
        sock = bindSocket(config)
        family, fd = sock.family, sock.detach()
        return AdoptedSocket(self._reactor, fd, family)

    def _listeningOn(self, port: IListeningPort, place: Place, address: str) -> None:
        if self._stopped:
            port.stopListening()
            return
        self.ports.append(port)
        number = getattr(port.getHost(), "port", None)
        if place is None:
            self._boundPort = number
        protocol = "unix" if place is not None and place.unix else "tcp"
        self.serviceLog.listening(address, number, protocol)

    def _listenFailed(
        self, reason: Failure, index: int, place: Place, attempt: int, address: str
    ) -> None:
        error = reason.value
        if isinstance(error, CannotListenError) and isinstance(
            error.socketError, OSError
        ):
            error = error.socketError
        if not isinstance(error, Exception):
            error = EndpointError(reason.getErrorMessage())
        self._failedOn(index, place, attempt, address, error)

    def _failedOn(
        self, index: int, place: Place, attempt: int, address: str, error: Exception
    ) -> None:
        if (
            isinstance(error, OSError)
            and error.errno == errno.EADDRINUSE
            and attempt < BIND_RETRIES
        ):
            # As xinetd ("bind retry attempt N"): the port may be held a
            # moment longer (a child still in exec holds the old socket
            # until its close-on-exec pass, a reload's old listener).
            self._retries[index] = self._clock.callLater(
                BIND_RETRY_DELAY, self._listenOn, index, place, attempt + 1
            )
            return
        reason = error.strerror if isinstance(error, OSError) else None
        self._cannotListen(error, address, reason or str(error), place is not None)

    def _listenWanted(self) -> bool:
        # A replaced listener (a reload's) has stopped listening for good.
        return not self._stopped

    def _startAccepting(self) -> None:
        # After a cps pause: listen again (the ports were closed).
        if not self.listening:
            self.failure = None
            self._listen()

    def _stopAccepting(self) -> None:
        ports, self.ports = self.ports, []
        for port in ports:
            port.stopListening()

    def stopListening(self) -> Deferred[None]:
        """
        Close the ports; connections already accepted go on.
        """
        self._stopped = True
        retries, self._retries = self._retries, {}
        for call in retries.values():
            cancelCall(call)
        ports, self.ports = self.ports, []
        stopped = [maybeDeferred(cast(Any, port.stopListening)) for port in ports]
        return gatherResults(stopped).addCallback(lambda _: None)

    def _stopListening(self) -> Deferred[None]:
        return self.stopListening()

    def _stopServing(self) -> Deferred[None]:
        factories, self._earlier = [self.factory, *self._earlier], []
        return gatherResults([f.stop() for f in factories]).addCallback(lambda _: None)

    def takeOver(self, other: StreamListener) -> bool:
        """
        Serve C{other}'s configuration (a reload changed it) on this
        service's port, if C{other} would listen on the same socket: the
        port stays open, connections accepted from now on get C{other}'s
        factory, and those already running go on with their own.

        @return: whether this service took C{other}'s configuration over
            (if not, C{other} must listen itself).
        """
        if self.failure is not None or _socketOf(self.config) != _socketOf(
            other.config
        ):
            return False
        self._earlier = [f for f in self._earlier if f.live]
        if self.factory.live:
            self._earlier.append(self.factory)
        self.config, self.factory = other.config, other.factory
        self.serviceLog, self.log = other.serviceLog, other.log
        self.admit = other.admit
        self.factory.pause = self.pauseFor
        return True

    @property
    def busy(self) -> bool:
        """
        Whether connections accepted by this service are still running.
        """
        return any(f.live for f in (self.factory, *self._earlier))


class _Current(ServerFactory):
    """
    The factory a listening port calls: the listener's current one, which a
    reload may replace while the port stays open.
    """

    noisy = False

    def __init__(self, listener: StreamListener) -> None:
        self._listener = listener

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return self._listener.factory.buildProtocol(addr)

    def logPrefix(self) -> str:
        # Twisted's port lines ("... starting on PORT") name the service.
        return self._listener.config.id


def _socketOf(config: ServiceConfig) -> tuple[object, ...]:
    """
    What decides the listening socket of a stream service: two
    configurations with the same can share one.
    """
    if config.listen:
        return (config.listen,)
    return (
        listenAddress(config),
        config.port,
        config.v6only,
        "KEEPALIVE" in config.flags,
        "NODELAY" in config.flags,
    )
