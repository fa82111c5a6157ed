# -*- test-case-name: tests.unit.test_handoff,tests.integration.test_handoff -*-
"""
A C{wait = yes} stream service: the daemon only watches a listening socket;
when a connection is pending it starts the child with the I{listening}
socket as descriptors 0 and 1 (the child accepts), and watches again when
the child has exited.  A child that exits at once without accepting would be
restarted in a loop; after a few such exits in a row a L{Backoff} delays the
next start.

xinetd restarts such a server as long as a connection is pending, up to its
C{cps} limit (50 starts a second by default), then closes the listening
socket for 10 seconds (resetting the pending connections).  Here a child
that exits within L{QUICK_EXIT} seconds while a connection is still pending
is a quick exit; after five quick exits in a row each next start waits a
second, doubling up to ten.  Any other exit starts the count again.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorFDSet,
)

from twinetd import logs
from twinetd._twistedcompat import cancelCall
from twinetd.child import spawnFailed
from twinetd.listeners.base import Listener, ListenerOptions, Runtime, SocketWatch
from twinetd.listeners.sockets import bindSocket, listenAddress
from twinetd.model import ServiceConfig
from twinetd.modes.handoff import HandoffChild
from twinetd.policy.backoff import QUICK_EXIT, Backoff, doubling
from twinetd.policy.gate import Admission
from twinetd.spawn import ChildFDs

if TYPE_CHECKING:
    from typing_extensions import Unpack


class ListeningSocket(Protocol):
    """
    A listening socket for L{WaitStreamListener}.
    """

    port: int

    def fileno(self) -> int: ...

    def pending(self) -> bool:
        """
        Whether a connection is waiting to be accepted.
        """

    def close(self) -> None: ...


class SocketListener:
    """
    A real listening socket, in blocking mode (the child accepts on it; the
    daemon only polls it).

    @ivar port: the port it is bound to.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.port: int = sock.getsockname()[1]

    def fileno(self) -> int:
        return self.socket.fileno()

    def pending(self) -> bool:
        if self.socket.fileno() < 0:
            return False
        poller = select.poll()
        poller.register(self.socket.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        self.socket.close()


def bindStream(config: ServiceConfig, interface: str) -> ListeningSocket:
    """
    Bind and listen on C{interface} and C{config.port} as xinetd does (see
    L{twinetd.listeners.sockets.bindSocket}); the socket stays blocking, as xinetd
    leaves it for the child that accepts on it.

    @raise CannotListenError: the address cannot be bound.
    """
    try:
        sock = bindSocket(attrs.evolve(config, bind=interface), blocking=True)
    except OSError as e:
        raise CannotListenError(interface, config.port, e) from e  # type: ignore[no-untyped-call]
    return SocketListener(sock)


#: Seconds a C{wait = yes} stream service waits after a refusal before it
#: asks again (the client meanwhile waits in the listening socket's queue).
REFUSED_RETRY = 1.0


class WaitStreamListener(Listener):
    """
    A C{wait = yes} stream service: one child at a time, given the
    listening socket; the daemon never accepts.

    @ivar listener: the listening socket while the service runs.
    @ivar child: the running child's tracker, if one runs.
    @ivar backoff: the quick exits in a row, and the delay they cause.
    """

    listener: ListeningSocket | None = None
    child: HandoffChild | None = None

    def __init__(
        self,
        config: ServiceConfig,
        runtime: Runtime,
        reactor: IReactorFDSet,
        *,
        interface: str | None = None,
        backoff: Backoff | None = None,
        bind: Callable[[ServiceConfig, str], ListeningSocket] = bindStream,
        backoffLogInterval: float = 60.0,
        **options: Unpack[ListenerOptions],
    ) -> None:
        """
        The admission is asked before each child, with no peer (C{cps},
        C{max_load}, C{access_times}, the daemon's C{--limit}) and held
        while the child runs; after a refusal the pending client waits and
        the service asks again L{REFUSED_RETRY} seconds later (or when a
        C{cps} pause ends).  The child's descriptor 2 is the listening
        socket too with C{twinetd_stderr = socket} (xinetd's), else a pipe
        to the log.

        @param reactor: watches the socket.
        @param interface: the address to bind; by default from C{config}
            (L{listenAddress}).
        @param bind: makes the listening socket (for tests).
        @param backoffLogInterval: the same back-off delay is logged at most
            once per this many seconds.
        @param options: as L{Listener}'s.
        """
        super().__init__(config, runtime, **options)
        self._interface = interface
        self._stderrToSocket = runtime.stderrToSocket(config)
        self._killDelay = runtime.killDelay
        self.backoff = (
            backoff if backoff is not None else Backoff(doubling(1.0, 10.0), free=5)
        )
        self._bind = bind
        self._backoffLogInterval = backoffLogInterval
        self._watch = SocketWatch(
            self, reactor, self._listenerFileno, self._connectionPending
        )
        self._resumeCall: IDelayedCall | None = None
        self._stopping: list[Deferred[None]] = []
        self._lastBackoff: tuple[float, float] | None = None
        self._ticket: Admission | None = None

    def _listenerFileno(self) -> int:
        return -1 if self.listener is None else self.listener.fileno()

    @property
    def port(self) -> int | None:
        return self.listener.port if self.listener is not None else None

    @property
    def boundPort(self) -> int | None:
        return self.port

    @property
    def listening(self) -> bool:
        return self.listener is not None

    # the lifecycle

    def _listen(self) -> None:
        interface = self._interface
        if interface is None:
            config = self._bindConfig()
            if config is None:
                return
            interface = listenAddress(config)
        try:
            listener = self._bind(self.config, interface)
        except CannotListenError as e:
            self._cannotListen(e, interface, e.socketError)
            return
        self.listener = listener
        self.serviceLog.listening(interface, listener.port, self.config.protocol)

    def _startAccepting(self) -> None:
        if self.child is None and self._resumeCall is None:
            self._watch.watch()

    def _stopAccepting(self) -> None:
        self._watch.unwatch()

    def _stopListening(self) -> Deferred[None]:
        self._watch.unwatch()
        self._resumeCall = cancelCall(self._resumeCall)
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        return succeed(None)

    def _stopServing(self) -> Deferred[None]:
        """
        Stop a running child (C{SIGTERM}, then C{SIGKILL} after the kill
        delay); fires when it has ended.
        """
        if self.child is None or self.child.ended:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._stopping.append(d)
        self.child.stop()
        return d

    # watching

    def _connectionPending(self) -> None:
        # xinetd's svc_suspend: the socket is the child's until it exits.
        self._watch.unwatch()
        if self.listener is None or self.child is not None:
            return
        self.ask(None).addCallback(self._admitted)

    def _admitted(self, admission: Admission) -> None:
        if admission.reason is not None:
            self.serviceLog.fail(admission.reason, None, admission.detail)
            if not self.paused and self.running and self.listener is not None:
                self._resumeCall = self._clock.callLater(
                    REFUSED_RETRY, self._resumeLater
                )
            return
        if not self.running or self.listener is None:
            admission.release()
            return
        self._ticket = admission
        self._start()

    def _releaseTicket(self) -> None:
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            ticket.release()

    def _start(self) -> None:
        assert self.listener is not None
        fd = self.listener.fileno()
        childFDs: ChildFDs = {0: fd, 1: fd, 2: fd if self._stderrToSocket else "r"}
        child = HandoffChild(
            self.serviceLog,
            None,
            self._clock,
            self._killDelay,
            lambda: self._childEnded(child),
        )
        try:
            self.runtime.spawner.spawn(child, self.makePlan(None), childFDs)
        except Exception as e:
            spawnFailed(self.serviceLog, None, e)
            self._releaseTicket()
            # As a child that exited at once: the backoff decides when to
            # try again.
            self._resume(None, 0.0)
            return
        self.child = child

    def _childEnded(self, child: HandoffChild) -> None:
        if self.child is child:
            self.child = None
            self._releaseTicket()
        if self._stopping or not self.running:
            stopping, self._stopping = self._stopping, []
            for d in stopping:
                d.callback(None)
            return
        duration = child.duration
        if duration is None:
            duration = 0.0
        self._resume(child.pid, duration)

    def _resume(self, pid: int | None, duration: float) -> None:
        if not self.running or self.listener is None:
            return
        if duration < QUICK_EXIT and self.listener.pending():
            delay = self.backoff.failed()
        else:
            self.backoff.succeeded()
            delay = 0.0
        if delay <= 0:
            self._watch.watch()
            return
        self._logBackoff(pid, delay)
        self._resumeCall = self._clock.callLater(delay, self._resumeLater)

    def _resumeLater(self) -> None:
        self._resumeCall = None
        self._watch.watch()

    def _logBackoff(self, pid: int | None, delay: float) -> None:
        now = self._clock.seconds()
        if self._lastBackoff is not None:
            lastDelay, lastTime = self._lastBackoff
            if lastDelay == delay and now - lastTime < self._backoffLogInterval:
                return
        self._lastBackoff = (delay, now)
        self.serviceLog.emit(
            logs.STREAM_BACKOFF, pid=pid, delay=delay, quickExits=self.backoff.failures
        )
