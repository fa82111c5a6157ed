# -*- test-case-name: tests.unit.test_listeners -*-
"""
The listener family: what every listener is, and what the daemon's
listeners share.

One listener serves one service record; there is one kind per way of
meeting clients (C{wait = no} streams, C{wait = yes} streams, datagrams
read by the daemon, datagrams handed to the children), each in its own
module, each a L{Listener} with the same lifecycle:

  - B{start}: C{privilegedStartService} listens (before twistd drops
    privileges: ports below 1024 need root); C{startService} listens if
    that has not happened, then accepts.
  - B{failure}: a listener that cannot listen logs why
    (L{twinetd.logs.ServiceLog.cannotListen}), keeps it in L{failure} and
    stays idle; the daemon's other services are unaffected.
  - B{pause}: when an admission trips C{cps}, the listener that asked
    stops accepting for the pause the gate gives (L{Listener.pauseFor})
    and resumes on its own; the limits never call back.
  - B{stop}: C{stopService} stops listening, then stops whatever still
    runs (connections, children); its Deferred fires when all has ended.

A new kind of listener is a module here with a L{Listener} subclass that
fills in the hooks (L{Listener._listen}, L{Listener._startAccepting},
L{Listener._stopAccepting}, L{Listener._stopListening},
L{Listener._stopServing}, L{Listener.boundPort}), built by
L{twinetd.service} from a record.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from typing import TypedDict

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorCore,
    IReactorFDSet,
    IReactorTCP,
    IReactorTime,
    IReadDescriptor,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from twinetd import logs
from twinetd._twistedcompat import cancelCall
from twinetd.hangup import Watcher, hangupWatcher
from twinetd.launch import LaunchPlan, Planner
from twinetd.listeners.sockets import needsLookup
from twinetd.model import Peer, ServiceConfig
from twinetd.modes.internal import ChargenRing
from twinetd.policy.gate import Admission, Admit, Gate, deferred
from twinetd.spawn import Spawner


@attrs.frozen
class Runtime:
    """
    What every service of one daemon shares.

    @ivar spawner: starts children.
    @ivar clock: the reactor's time.
    @ivar tcp: the reactor's TCP client side (for C{redirect} and ident;
        it must provide L{IReactorTime} too).
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

    def handsOff(self, config: ServiceConfig) -> bool:
        """
        Whether C{config}'s program gets the socket itself: C{twinetd_mode},
        else the daemon's default, except over endpoints whose bytes the
        daemon reads first (TLS, a PROXY header), which are bridged.
        """
        if config.handoff is not None:
            return config.handoff
        return self.handoff and config.plainSockets

    def stderrToSocket(self, config: ServiceConfig) -> bool:
        """
        Whether a handed-off program's standard error is the socket.
        """
        if config.stderrToSocket is None:
            return self.handoff
        return config.stderrToSocket

    def plan(self, config: ServiceConfig, peer: Peer | None) -> LaunchPlan:
        """
        What to run for one client of C{config} (L{planLaunch} with the
        daemon's environment and ids).
        """
        return self.planner(config)(peer)

    def planner(self, config: ServiceConfig) -> Planner:
        """
        L{plan} for every client of C{config}, what they share worked out
        once.
        """
        return Planner(
            config, self.environment, self.uid, self.gid, self.handsOff(config)
        )


class ListenerOptions(TypedDict, total=False):
    """
    What a listener's maker (a test, most often) may give in place of the
    daemon's own: the keyword arguments every listener takes, passed on to
    L{Listener.__init__}.
    """

    serviceLog: logs.ServiceLog | None
    admit: Admit | None
    makePlan: Callable[[Peer | None], LaunchPlan] | None


class Listener(Service):
    """
    One service's listener; see the module's docstring for the lifecycle
    its subclasses share.

    @ivar config: the service's record.
    @ivar runtime: what the daemon's services share.
    @ivar serviceLog: the service's log (events, and xinetd's lines).
    @ivar log: where its events go.
    @ivar admit: asked about each client (L{twinetd.policy.gate.Admit}).
    @ivar makePlan: what to run for a client (C{None} when there is none).
    @ivar failure: why listening failed, if it did.
    """

    failure: Exception | None = None
    _lookup: Deferred[str] | None = None
    _bindAddress: str | None = None

    def __init__(
        self,
        config: ServiceConfig,
        runtime: Runtime,
        *,
        serviceLog: logs.ServiceLog | None = None,
        admit: Admit | None = None,
        makePlan: Callable[[Peer | None], LaunchPlan] | None = None,
    ) -> None:
        """
        @param serviceLog: the service's log; by default events only.
        @param admit: the admission of each client; by default the
            daemon's gate (L{Gate.admitter}).
        @param makePlan: what to run for a client; by default
            L{Runtime.planner}'s.
        """
        self.config = config
        self.runtime = runtime
        self.serviceLog = serviceLog or logs.ServiceLog.fromConfig(config, None)
        self.log = self.serviceLog.logger
        self.admit = admit if admit is not None else runtime.gate.admitter(config)
        self.makePlan = makePlan or runtime.planner(config)
        self._clock = runtime.clock
        self._pauseEnds: IDelayedCall | None = None
        self.setName(config.id)  # type: ignore[no-untyped-call]

    # the hooks of a kind of listener

    @property
    def boundPort(self) -> int | None:
        """
        The port number listened on (useful with C{port = 0}), or C{None}.
        """
        raise NotImplementedError()

    @property
    def listening(self) -> bool:
        """
        Whether the listener is bound, or binding.
        """
        raise NotImplementedError()

    def _listen(self) -> None:
        """
        Bind (or adopt) the listening socket; on failure set L{failure} and
        log it (L{_cannotListen}).
        """
        raise NotImplementedError()

    def _startAccepting(self) -> None:
        """
        Take clients from the listening socket (the service runs).
        """
        raise NotImplementedError()

    def _stopAccepting(self) -> None:
        """
        Take no more clients for now (a C{cps} pause).
        """
        raise NotImplementedError()

    def _stopListening(self) -> Deferred[None]:
        """
        Close the listening socket.
        """
        raise NotImplementedError()

    def _stopServing(self) -> Deferred[None]:
        """
        Stop what still runs for clients already taken; fires when it has
        all ended.
        """
        raise NotImplementedError()

    # the lifecycle

    def privilegedStartService(self) -> None:
        # Before twistd drops privileges: ports below 1024 need root.
        Service.privilegedStartService(self)  # type: ignore[no-untyped-call]
        self._listen()

    def startService(self) -> None:
        Service.startService(self)  # type: ignore[no-untyped-call]
        if not self.listening and self.failure is None:
            self._listen()
        if self.listening and not self.paused:
            self._startAccepting()

    def ask(self, peer: Peer | None) -> Deferred[Admission]:
        """
        The admission of one client (L{admit}); one that trips C{cps}
        pauses this listener (L{pauseFor}) before the answer is passed on.
        """

        def paused(admission: Admission) -> Admission:
            if admission.pause:
                self.pauseFor(admission.pause)
            return admission

        return deferred(self.admit(peer)).addCallback(paused)

    def _bindConfig(self) -> ServiceConfig | None:
        """
        L{config} as its socket is bound: a host name in C{bind} replaced by
        the address found for it, or C{None} while that is looked up.  The
        lookup starts (once) through the reactor's resolver
        (C{IReactorCore.resolve}, never blocking the reactor); when it ends,
        L{_listen} runs again.  The address is kept for every later bind
        (a C{cps} resume, a takeover of the same socket).  Without a
        resolver (a fake reactor), C{bind()} looks the name up itself.
        """
        config = self.config
        name = config.bind
        if name is None or not needsLookup(name):
            return config
        if self._bindAddress is not None:
            return attrs.evolve(config, bind=self._bindAddress)
        core = IReactorCore(self.runtime.tcp, None)
        if core is None:
            return config
        if self._lookup is None:
            self._lookup = core.resolve(name)
            # It may fire at once (a cached or numeric answer).
            self._lookup.addCallbacks(
                self._lookedUp, self._notLookedUp, errbackArgs=(name,)
            )
        return None

    def _lookedUp(self, address: str) -> None:
        self._lookup = None
        self._bindAddress = address
        if self._listenWanted():
            self._listen()
            if self.listening and not self.paused:
                self._startAccepting()

    def _notLookedUp(self, reason: Failure, name: str) -> None:
        self._lookup = None
        if self._listenWanted():
            message = f"cannot resolve {name}: {reason.getErrorMessage()}"
            self._cannotListen(OSError(errno.EADDRNOTAVAIL, message), name, message)

    def _listenWanted(self) -> bool:
        """
        Whether a lookup's end should still bind.
        """
        return bool(self.running)

    def _cannotListen(
        self,
        failure: Exception,
        address: str,
        reason: object,
        endpoint: bool = False,
    ) -> None:
        """
        Keep and log why listening on C{address} failed (C{endpoint}: an
        endpoint description, which has no separate port).
        """
        self.failure = failure
        if endpoint:
            self.serviceLog.cannotListen(self.config, address, reason, port=None)
        else:
            self.serviceLog.cannotListen(self.config, address, reason)

    @property
    def paused(self) -> bool:
        """
        Whether a C{cps} pause is under way.
        """
        return self._pauseEnds is not None

    def pauseFor(self, seconds: int) -> None:
        """
        C{cps} tripped: accept nothing for C{seconds}, then accept again.
        """
        if self.paused or seconds <= 0:
            return
        self.log.warn(
            "{service}: connections per second exceeded; paused for {seconds} seconds",
            service=self.config.id,
            seconds=seconds,
        )
        self._pauseEnds = self._clock.callLater(seconds, self._pauseOver)
        self._stopAccepting()

    def _pauseOver(self) -> None:
        self._pauseEnds = None
        # xinetd's line (its "Deactivating service" comes from the limits).
        self.log.error("Activating service {service}", service=self.config.id)
        if self.running:
            self._startAccepting()

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, then stop what runs; fires when all has ended.
        """
        if self.running:
            Service.stopService(self)  # type: ignore[no-untyped-call]
        self._pauseEnds = cancelCall(self._pauseEnds)
        stopped = self._stopListening()
        served = self._stopServing()
        return gatherResults([stopped, served]).addCallback(lambda _: None)


@implementer(IReadDescriptor)
class SocketWatch:
    """
    A socket the reactor watches, without reading it, for a listener whose
    children take its clients themselves (C{wait = yes}, drop-in datagrams):
    readable means a client or a datagram waits.  It is watched only while
    its listener runs, listens and is not paused.

    @ivar watching: whether the reactor watches it now.
    """

    watching = False

    def __init__(
        self,
        listener: Listener,
        reactor: IReactorFDSet,
        fileno: Callable[[], int],
        onReadable: Callable[[], None],
    ) -> None:
        self._listener = listener
        self._reactor = reactor
        self._fileno = fileno
        self._onReadable = onReadable

    def watch(self) -> None:
        listener = self._listener
        if (
            not self.watching
            and listener.running
            and listener.listening
            and not listener.paused
        ):
            self.watching = True
            self._reactor.addReader(self)

    def unwatch(self) -> None:
        if self.watching:
            self.watching = False
            self._reactor.removeReader(self)

    # IReadDescriptor

    def fileno(self) -> int:
        return self._fileno()

    def doRead(self) -> None:
        self._onReadable()

    def connectionLost(self, reason: Failure) -> None:
        self.watching = False
        self._listener.log.error(
            "{service}: the listening socket failed: {reason}",
            service=self._listener.config.id,
            reason=reason.getErrorMessage(),
        )

    def logPrefix(self) -> str:
        return self._listener.config.id
