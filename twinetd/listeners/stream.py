# -*- test-case-name: tests.integration.test_daemon -*-
"""
The listener of a C{wait = no} stream service: a listening socket made as
xinetd makes it (L{twinetd.listeners.sockets}), adopted as an endpoint
(L{AdoptedStreamServerEndpoint}); each accepted connection gets a
L{twinetd.listeners.front.Front} from the service's
L{twinetd.listeners.connections.ConnectionFactory}.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Any, cast

import attrs
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IReactorCore,
    IReactorSocket,
)
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.python.failure import Failure

from twinetd import logs
from twinetd.listeners.base import Listener, Runtime
from twinetd.listeners.connections import ConnectionFactory
from twinetd.listeners.sockets import bindSocket, listenAddress, needsLookup
from twinetd.model import ServiceConfig
from twinetd.policy.gate import Admit

#: How often, and how far apart in seconds, a port in use is tried again
#: before the service gives up (xinetd tries 10 times).
BIND_RETRIES = 10
BIND_RETRY_DELAY = 0.2


class StreamListener(Listener):
    """
    Listens on one C{wait = no} stream service's port.  A port that cannot
    be bound is logged and leaves this service idle; the daemon's other
    services are unaffected.  A port in use is tried again
    (L{BIND_RETRIES}).  While C{cps} has tripped the port is closed
    (clients are refused, as under xinetd).  A host name in C{bind} is
    looked up once, through the reactor's resolver (never blocking the
    reactor), and its address kept for every later bind.

    A reload that changes the service but not its socket hands the running
    port the new configuration (L{takeOver}): the port is never closed, so
    no client is refused or dropped, as under xinetd.

    @ivar factory: builds the connections accepted from now on.
    @ivar port: the listening port while listening, else C{None}.
    """

    port: IListeningPort | None = None
    _address: str | None = None
    _lookingUp = False
    _stopped = False

    def __init__(
        self,
        config: ServiceConfig,
        runtime: Runtime,
        reactor: IReactorSocket,
        *,
        serviceLog: logs.ServiceLog | None = None,
        admit: Admit | None = None,
    ) -> None:
        """
        @param reactor: adopts the listening socket; must provide
            L{IReactorCore} too (for a host name in C{bind}).
        """
        super().__init__(config, runtime, serviceLog=serviceLog, admit=admit)
        self.factory = ConnectionFactory(
            config, runtime, self.serviceLog, self.admit, self.pauseFor
        )
        # The factories of earlier configurations, while their connections
        # last (stopped with this service).
        self._earlier: list[ConnectionFactory] = []
        self._reactor = reactor
        self._boundPort: int | None = None
        self._attempts = 0
        self._retry: IDelayedCall | None = None

    @property
    def listening(self) -> bool:
        return self.port is not None or self._retry is not None or self._lookingUp

    @property
    def boundPort(self) -> int | None:
        if self.port is None:
            return None
        port: int = self.port.getHost().port  # type: ignore[attr-defined]
        return port

    def _listen(self) -> None:
        config = self.config
        self._stopped = False
        if self._boundPort is not None:
            # Listening again (after a cps pause): the same port, also when
            # the configuration asked for an ephemeral one.
            config = attrs.evolve(config, port=self._boundPort)
        if config.bind is not None and needsLookup(config.bind):
            if self._address is None:
                self._lookUp(config.bind)
                return
            config = attrs.evolve(config, bind=self._address)
        self._retry = None
        try:
            sock = bindSocket(config)
        except OSError as e:
            if e.errno == errno.EADDRINUSE and self._attempts < BIND_RETRIES:
                # As xinetd ("bind retry attempt N"): the port may be held a
                # moment longer (a child still in exec holds the old socket
                # until its close-on-exec pass, a reload's old listener).
                self._attempts += 1
                self._retry = self._clock.callLater(BIND_RETRY_DELAY, self._listen)
                return
            self._cannotListen(e, listenAddress(config), e.strerror)
            return
        family, fd = sock.family, sock.detach()
        endpoint = AdoptedStreamServerEndpoint(self._reactor, fd, family)  # type: ignore[no-untyped-call]
        # The endpoint closes the descriptor once the reactor's port has
        # its own copy (adoptStreamPort duplicates it).
        listening: Deferred[IListeningPort] = endpoint.listen(_Current(self))  # type: ignore[no-untyped-call]
        listening.addCallbacks(
            self._listening,
            self._adoptFailed,
            callbackArgs=(config,),
            errbackArgs=(config, fd),
        )

    def _listening(self, port: IListeningPort, config: ServiceConfig) -> None:
        if self._stopped:
            port.stopListening()
            return
        self.port = port
        self._boundPort = self.boundPort
        self._attempts = 0
        self.serviceLog.listening(listenAddress(config), self.boundPort, "tcp")

    def _adoptFailed(self, reason: Failure, config: ServiceConfig, fd: int) -> None:
        with contextlib.suppress(OSError):
            os.close(fd)
        error = reason.value
        if not isinstance(error, OSError):
            error = OSError(errno.EINVAL, reason.getErrorMessage())
        self._cannotListen(error, listenAddress(config), reason.getErrorMessage())

    def _lookUp(self, name: str) -> None:
        # Through the reactor's resolver (a thread), once: the address is
        # kept for every later bind (cps resumes).
        if self._lookingUp:
            return
        self._lookingUp = True

        def found(address: str) -> None:
            self._lookingUp = False
            self._address = address
            if not self._stopped:
                self._listen()

        def failed(reason: Failure) -> None:
            self._lookingUp = False
            if self._stopped:
                return
            message = f"cannot resolve {name}: {reason.getErrorMessage()}"
            self.failure = OSError(errno.EADDRNOTAVAIL, message)
            self.serviceLog.cannotListen(self.config, name, message)

        IReactorCore(self._reactor).resolve(name).addCallbacks(found, failed)

    def _startAccepting(self) -> None:
        # After a cps pause: listen again (the port was closed).
        if not self.listening:
            self.failure = None
            self._listen()

    def _stopAccepting(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            port.stopListening()

    def stopListening(self) -> Deferred[None]:
        """
        Close the port; connections already accepted go on.
        """
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        d: Deferred[Any] = maybeDeferred(cast(Any, port.stopListening))
        return d.addCallback(lambda _: None)

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
    return (
        listenAddress(config),
        config.port,
        config.v6only,
        "KEEPALIVE" in config.flags,
        "NODELAY" in config.flags,
    )
