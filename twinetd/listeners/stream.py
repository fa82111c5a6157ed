"""
The protocol factory of one stream service: decides what each accepted
connection gets.

Each connection first meets a L{Front}: C{banner} is sent, the L{Gate}
decides (limits, then access control), and a refused client gets
C{banner_fail} and is closed with a C{FAIL} record; an admitted one gets
C{banner_success} and is switched to the service's mode: the bridge (a
child with its stdio relayed), the handoff (the child gets the socket
itself), an internal service, or C{redirect}.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from typing import Any, cast
from typing import Protocol as TypingProtocol

import attrs
from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IListeningPort,
    IPullProducer,
    IReactorCore,
    IReactorSocket,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twinetd import logs
from twinetd.child import peerFromTransport
from twinetd.hangup import PausedReading, Watcher, hangupWatcher
from twinetd.launch import LaunchPlan, planLaunch
from twinetd.listeners.sockets import bindSocket, listenAddress, needsLookup
from twinetd.logs.ident import queryIdent
from twinetd.model import Peer, ServiceConfig
from twinetd.modes.bridge import BridgeProtocol
from twinetd.modes.handoff import HandoffProtocol
from twinetd.modes.internal import ChargenRing, internalFor
from twinetd.modes.redirect import RedirectProtocol, Traffic
from twinetd.policy.gate import Admission, Gate
from twinetd.spawn import Spawner

log = Logger(namespace="twinetd")


class Stoppable(TypingProtocol):
    def stop(self) -> None: ...


@attrs.frozen
class Runtime:
    """
    What every service of one daemon shares.

    @ivar spawner: starts children.
    @ivar clock: the reactor's time.
    @ivar tcp: the reactor's TCP client side (for C{redirect}; it must
        provide L{IReactorTime} too).
    @ivar gate: admission (limits and access control).
    @ivar environment: the daemon's environment, for C{passenv}.
    @ivar uid: the daemon's effective user id.
    @ivar gid: the daemon's group id when its real, effective and saved
        group ids agree, else C{None}.
    @ivar killDelay: seconds before C{SIGTERM}, and again before C{SIGKILL}.
    @ivar chargenRing: chargen's position, shared by every chargen service
        as xinetd's one ring per daemon.
    @ivar sinks: the daemon's open log files and syslog sockets.
    @ivar handoff: the default of C{twinetd_mode} (C{twistd twinetd
        --handoff}): hand every stream service's socket to its program, with
        standard error on the socket too, as xinetd does.
    @ivar hangups: watches the sockets the daemon does not read (for flow
        control, or while the gate decides) for their client's departure;
        by default the reactor's own (L{twinetd.hangup.hangupWatcher}).
    """

    def handsOff(self, config: ServiceConfig) -> bool:
        """
        Whether C{config}'s program gets the socket itself.
        """
        return self.handoff if config.handoff is None else config.handoff

    def stderrToSocket(self, config: ServiceConfig) -> bool:
        """
        Whether a handed-off program's standard error is the socket.
        """
        if config.stderrToSocket is None:
            return self.handoff
        return config.stderrToSocket

    spawner: Spawner
    clock: IReactorTime
    tcp: IReactorTCP
    gate: Gate
    environment: Mapping[str, str]
    uid: int
    gid: int | None = None
    killDelay: float = 5.0
    chargenRing: ChargenRing = attrs.field(factory=ChargenRing)
    handoff: bool = False
    sinks: logs.LogSinks = attrs.field(
        default=attrs.Factory(lambda self: logs.LogSinks(self.clock), takes_self=True)
    )
    hangups: Watcher | None = attrs.field(
        default=attrs.Factory(lambda self: hangupWatcher(self.tcp), takes_self=True)
    )


def readBanner(config: ServiceConfig, path: str | None) -> bytes:
    """
    A banner file's bytes, read for each connection as xinetd does (so an
    edited banner shows at once); a file that cannot be read sends nothing
    and is logged.
    """
    if path is None:
        return b""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        log.warn(
            "{service}: cannot read banner {path}: {error}",
            service=config.id,
            path=path,
            error=e.strerror,
        )
        return b""


#: Seconds a client of a handed-off service may take to receive its banners
#: (the socket is handed over only once they are sent) before it is dropped.
BANNER_TIMEOUT = 10.0


@implementer(IPullProducer)
class _Sent:
    """
    What the front wrote, and when it has all reached the kernel: a pull
    producer, registered while something is unsent, whom Twisted asks for
    more once its buffer is empty.

    @ivar unsent: whether some of it is still in Twisted's buffer.
    """

    unsent = False
    _registered = False

    def __init__(self, transport: ITransport) -> None:
        self._transport = transport
        self._then: Callable[[], None] | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._registered:
            self._registered = True
            # Twisted asks for more at once, then each time its buffer
            # empties: only the latter counts (nothing is unsent yet).
            IConsumer(self._transport).registerProducer(self, False)
        self.unsent = True
        self._transport.write(data)

    def whenSent(self, then: Callable[[], None]) -> None:
        """
        Call C{then} once everything written has reached the kernel.
        """
        if self.unsent:
            self._then = then
        else:
            then()

    def stop(self) -> None:
        """
        Stop tracking; must precede C{loseConnection} (a registered pull
        producer would be asked for more instead of the connection closing)
        and the service's own producers.
        """
        self._then = None
        if self._registered:
            self._registered = False
            IConsumer(self._transport).unregisterProducer()

    def resumeProducing(self) -> None:
        if not self.unsent:
            return
        self.unsent = False
        then = self._then
        self.stop()
        if then is not None:
            then()

    def stopProducing(self) -> None:
        self._then = None


class Front(Protocol):
    """
    The first protocol of every accepted connection: banners and the gate,
    then the service's own protocol takes the transport over (for a
    handed-off service, once the banners are sent).
    """

    factory: StreamFactory

    def __init__(self) -> None:
        self._peer: Peer | None = None
        self._gone = False
        self._reading: PausedReading | None = None
        self._sent: _Sent | None = None
        self._waiting: Admission | None = None
        self._timeout: IDelayedCall | None = None
        self.inner: Protocol | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        runtime = self.factory.runtime
        # Nothing is read from the client until the gate has decided; a
        # client that resets meanwhile is dropped at once (its end of file
        # is not a departure: it may have sent its whole request).
        self._reading = PausedReading(
            self.transport,
            runtime.hangups,
            runtime.clock,
            None,
            self._clientGone,
        )
        # Most decisions come at once: the client is watched only when this
        # one does not (a name lookup).
        self._reading.pause(watch=False)
        self._sent = _Sent(self.transport)
        config = self.factory.config
        self._sent.write(readBanner(config, config.banner))
        peer = self._peer = attrs.evolve(
            peerFromTransport(cast(ITCPTransport, self.transport)),
            accepted=self.factory.runtime.clock.seconds(),
        )
        d = self.factory.runtime.gate.admit(config, peer)
        d.addCallback(self._decided).addErrback(self._broken)
        if not d.called:
            self._reading.watch()

    def _broken(self, failure: Failure) -> None:
        # A bug must not leave the client hanging, paused, forever.
        log.failure(
            "{service}: while deciding on a connection",
            failure,
            service=self.factory.config.id,
        )
        self._close()

    def _close(self, data: bytes = b"") -> None:
        if self.transport is not None and not self._gone:
            assert self._sent is not None and self._reading is not None
            self._reading.close()
            self._sent.stop()
            self.transport.write(data)
            self.transport.loseConnection()

    def _queryIdent(self) -> None:
        # USERID (RFC 1413), asked in the background: it never delays the
        # connection, and logs only if an answer comes.
        peer, serviceLog = self._peer, self.factory.serviceLog
        assert peer is not None

        def answered(text: str | None) -> None:
            if text is not None:
                serviceLog.userid(text)

        queryIdent(
            self.factory.runtime.tcp,
            peer.remoteAddress,
            peer.remotePort,
            peer.localAddress,
            peer.localPort,
        ).addCallback(answered)

    def _clientGone(self, reset: bool) -> None:
        if self.transport is not None and not self._gone:
            cast(Any, self.transport).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._gone = True
        if self._reading is not None:
            self._reading.close()
        if self._sent is not None:
            self._sent.stopProducing()
        self._cancelTimeout()
        ticket, self._waiting = self._waiting, None
        if ticket is not None:
            ticket.release()
        self.factory.ended(self)

    def stop(self) -> None:
        self._close()

    def _decided(self, admission: Admission) -> None:
        config = self.factory.config
        serviceLog = self.factory.serviceLog
        if admission.pause:
            self.factory.pause(admission.pause)
        if admission.reason is not None:
            serviceLog.fail(admission.reason, self._peer, admission.detail)
            if serviceLog.wantsUseridOnFailure:
                self._queryIdent()
            self._close(readBanner(config, config.bannerFail))
            return
        if self._gone:
            admission.release()
            return
        assert self._sent is not None
        self._sent.write(readBanner(config, config.bannerSuccess))
        if serviceLog.wantsUseridOnSuccess:
            self._queryIdent()
        if self.factory.handsOff and self._sent.unsent:
            # The child gets the socket itself: the banners must reach the
            # kernel first, without blocking the daemon for a client that
            # does not read them.
            self._waiting = admission
            clock = self.factory.runtime.clock
            self._timeout = clock.callLater(BANNER_TIMEOUT, self._bannerTimedOut)

            def sent() -> None:
                # Not from inside Twisted's write handler, which calls this.
                clock.callLater(0, self._bannerSent)

            self._sent.whenSent(sent)
            return
        self._serve(admission)

    def _bannerSent(self) -> None:
        admission, self._waiting = self._waiting, None
        if admission is None or self._gone:
            return
        self._cancelTimeout()
        self._serve(admission)

    def _bannerTimedOut(self) -> None:
        self._timeout = None
        if self._gone or self.transport is None:
            return
        assert self._peer is not None
        log.warn(
            "{service}: client {host} port {port} did not take its banner "
            "within {seconds} seconds; dropped",
            service=self.factory.config.id,
            host=self._peer.remoteHost,
            port=self._peer.remotePort,
            seconds=BANNER_TIMEOUT,
            twinetdBannerTimeout=True,
        )
        cast(Any, self.transport).abortConnection()

    def _cancelTimeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def _serve(self, ticket: Admission) -> None:
        assert self.transport is not None and self._peer is not None
        assert self._reading is not None and self._sent is not None
        self._sent.stop()
        inner = self.inner = self.factory.serve(ticket, self._peer)
        # Switch: the transport now feeds the service's protocol, which the
        # factory tracks from here on.
        self.factory.live.discard(self)
        cast(Any, self.transport).protocol = inner
        self._reading.resume()
        self._reading.close()
        cast(Any, inner).makeConnection(self.transport)


class StreamFactory(ServerFactory):
    """
    Builds a L{Front} for each connection to a C{wait = no} stream service.

    @ivar config: the service's record.
    @ivar runtime: what the daemon's services share.
    @ivar serviceLog: the service's log.
    @ivar live: the connections not yet ended (fronts and service
        protocols), for L{stop}.
    @ivar pause: called with the seconds of a C{cps} pause when a
        connection trips it; the listener that listens with this factory
        sets it (L{ListenerService.pauseFor}).
    """

    # The daemon logs its own "listening" line; Twisted's per-factory
    # start/stop lines would repeat it for every service.
    noisy = False

    def __init__(
        self,
        config: ServiceConfig,
        runtime: Runtime,
        serviceLog: logs.ServiceLog | None = None,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.serviceLog = serviceLog or logs.ServiceLog.fromConfig(config, None)
        self.live: set[Stoppable] = set()
        self._waiters: dict[Stoppable, list[Deferred[None]]] = {}
        self.pause: Callable[[int], object] = lambda seconds: None

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        front = Front()
        front.factory = self
        self.live.add(front)
        return front

    @property
    def handsOff(self) -> bool:
        """
        Whether each connection's socket goes to the service's program.
        """
        config = self.config
        return (
            not config.isInternal
            and config.redirect is None
            and self.runtime.handsOff(config)
        )

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

        runtime = self.runtime
        if self.runtime.handsOff(self.config):
            protocol = HandoffProtocol(
                self.serviceLog,
                self._makePlan,
                runtime.spawner,
                runtime.clock,
                killDelay=runtime.killDelay,
                onEnded=ended,
                stderrToSocket=runtime.stderrToSocket(self.config),
            )
        else:
            protocol = BridgeProtocol(
                self.serviceLog,
                self._makePlan,
                runtime.spawner,
                runtime.clock,
                killDelay=runtime.killDelay,
                onEnded=ended,
                hangups=runtime.hangups,
            )
        protocol.factory = self
        protocol.peer = peer
        self.live.add(protocol)
        return protocol

    def _makePlan(self, peer: Peer) -> LaunchPlan:
        runtime = self.runtime
        return planLaunch(
            self.config,
            peer,
            runtime.environment,
            runtime.uid,
            runtime.gid,
            runtime.handsOff(self.config),
        )

    def ended(self, connection: Stoppable) -> None:
        """
        A connection (or its front) has ended.
        """
        self.live.discard(connection)
        for d in self._waiters.pop(connection, []):
            d.callback(None)

    def stop(self) -> Deferred[None]:
        """
        Stop every live connection (see L{BridgeProtocol.stop}); the result
        fires when all of them have ended.
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
BIND_RETRIES = 10
BIND_RETRY_DELAY = 0.2


class ListenerService(Service):
    """
    Listens on one stream service's port.  A port that cannot be bound is
    logged and leaves this service idle; the daemon's other services are
    unaffected.  While C{cps} has tripped the port is closed (clients are
    refused, as under xinetd).  A host name in C{bind} is looked up once,
    through the reactor's resolver (never blocking the reactor), and its
    address kept for every later bind.

    A reload that changes the service but not its socket hands the running
    port the new configuration (L{takeOver}): the port is never closed, so
    no client is refused or dropped, as under xinetd.

    @ivar config: the service's record.
    @ivar factory: builds the connections accepted from now on.
    @ivar port: the listening port while listening, else C{None}.
    @ivar failure: why listening failed, if it did.
    """

    port: IListeningPort | None = None
    failure: OSError | None = None
    _address: str | None = None
    _lookingUp = False
    _stopped = False

    def __init__(
        self, config: ServiceConfig, factory: StreamFactory, reactor: Any
    ) -> None:
        self.config = config
        self.factory = factory
        # The factories of earlier configurations, while their connections
        # last (stopped with this service).
        self._earlier: list[StreamFactory] = []
        self._reactor = reactor
        self._boundPort: int | None = None
        self._attempts = 0
        self._retry: IDelayedCall | None = None
        self._pauseEnds: IDelayedCall | None = None
        factory.pause = self.pauseFor
        self.setName(config.id)  # type: ignore[no-untyped-call]

    def privilegedStartService(self) -> None:
        # Before twistd drops privileges: ports below 1024 need root.
        Service.privilegedStartService(self)  # type: ignore[no-untyped-call]
        self._listen()

    def startService(self) -> None:
        Service.startService(self)  # type: ignore[no-untyped-call]
        if self.port is None and self.failure is None and self._retry is None:
            self._listen()

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
                self._retry = self.factory.runtime.clock.callLater(
                    BIND_RETRY_DELAY, self._listen
                )
                return
            self.failure = e
            self.factory.serviceLog.cannotListen(
                config, listenAddress(config), e.strerror
            )
            return
        try:
            self.port = IReactorSocket(self._reactor).adoptStreamPort(
                sock.fileno(), sock.family, _Current(self)
            )
        finally:
            sock.close()
        self._boundPort = self.boundPort
        self._attempts = 0
        self.factory.serviceLog.listening(
            listenAddress(config), self.boundPort, config.protocol
        )

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
            self.factory.serviceLog.cannotListen(self.config, name, message)

        IReactorCore(self._reactor).resolve(name).addCallbacks(found, failed)

    @property
    def boundPort(self) -> int | None:
        """
        The port number listened on (useful with C{port = 0}).
        """
        if self.port is None:
            return None
        port: int = self.port.getHost().port  # type: ignore[attr-defined]
        return port

    def pauseFor(self, seconds: int) -> None:
        """
        C{cps} tripped: stop listening for C{seconds}, then listen again.
        """
        if self._pauseEnds is not None:
            return
        log.warn(
            "{service}: connections per second exceeded; not listening for "
            "{seconds} seconds",
            service=self.config.id,
            seconds=seconds,
        )
        self._pauseEnds = self.factory.runtime.clock.callLater(seconds, self._resume)
        port, self.port = self.port, None
        if port is not None:
            port.stopListening()

    def _resume(self) -> None:
        self._pauseEnds = None
        log.error("Activating service {service}", service=self.config.id)
        if self.running and self.port is None:
            self.failure = None
            self._listen()

    def stopListening(self) -> Deferred[None]:
        """
        Close the port; connections already accepted go on.
        """
        self._stopped = True
        for call in (self._retry, self._pauseEnds):
            if call is not None and call.active():
                call.cancel()
        self._retry = self._pauseEnds = None
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        d: Deferred[Any] = maybeDeferred(cast(Any, port.stopListening))
        return d.addCallback(lambda _: None)

    def takeOver(self, other: ListenerService) -> bool:
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
        self.factory.pause = self.pauseFor
        return True

    @property
    def busy(self) -> bool:
        """
        Whether connections accepted by this service are still running.
        """
        return any(f.live for f in (self.factory, *self._earlier))

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, then stop the children of live connections; the
        result fires when the port is closed and every child has ended.
        """
        if self.running:
            Service.stopService(self)  # type: ignore[no-untyped-call]
        stopped = self.stopListening()
        factories, self._earlier = [self.factory, *self._earlier], []
        children = [f.stop() for f in factories]
        return gatherResults([stopped, *children]).addCallback(lambda _: None)


class _Current(ServerFactory):
    """
    The factory a listening port calls: the listener's current one, which a
    reload may replace while the port stays open.
    """

    noisy = False

    def __init__(self, listener: ListenerService) -> None:
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
