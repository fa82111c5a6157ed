"""
Datagram services (C{socket_type = dgram}): one L{DatagramService} per record.

C{wait = no}: the datagram bridge
=================================

xinetd 2.3.15.3 busy-loops on a C{wait = no} datagram service and 2.3.15.4
refuses it; twinetd makes it work as a request/response bridge:

  - the daemon receives every datagram on the service's socket;
  - each datagram passes the admission hook (access control and limits);
    a refused one is dropped and logged (C{FAIL}, rate-limited);
  - an admitted datagram gets its own child: the datagram's bytes are its
    standard input, followed by end of file;
  - everything the child writes to standard output until it closes it (or
    exits) is sent back to the datagram's sender, from the service's socket,
    as B{one} reply datagram.  Empty output sends nothing.  A reply is at
    most 65507 bytes (the largest UDP payload over IPv4): output beyond that
    is dropped, counted and logged once for that child (C{replyTruncated});
    the child's output keeps being read, so it never blocks on a full pipe.
    One datagram per write is not supported: a child that needs several
    replies should be a C{wait = yes} service;
  - standard error goes to the log, one event per line, as for streams;
  - the child's environment has C{REMOTE_HOST} and the UCSPI variables
    (C{PROTO=UDP}, C{UDPREMOTEIP}, C{UDPREMOTEPORT}, ...) of the sender;
  - a child still running C{childTimeout} seconds (default 10) after it
    started gets C{SIGTERM}, and C{SIGKILL} C{killDelay} seconds later (its
    process group when it leads one): no child lives forever.  What it wrote
    before is still sent when its output closes.

At most C{instances} children run at once (64 when C{instances} is
UNLIMITED; C{maxChildren} overrides); a datagram arriving when they are all
busy is dropped, as are datagrams waiting for an admission decision beyond
the same bound.  The daemon therefore holds at most that many datagrams and
replies in memory, however fast datagrams arrive; the kernel's socket buffer
is the only queue.  Drops are counted (L{DatagramService.dropped}) and
logged at a bounded rate: the first drop as a C{FAIL} event, then at most
one C{dgramDropped} summary per second while drops continue.

C{wait = no} in drop-in mode: each child receives its own datagram
==================================================================

With C{handOff} (C{twistd twinetd --handoff}, or C{twinetd_mode =
handoff}) a C{wait = no} service works as xinetd's: the child gets the
shared UDP socket as descriptors 0 and 1 (blocking; standard error goes to
the log) and receives the datagram itself.  The daemon peeks at the head
datagram to learn the sender (C{REMOTE_HOST}) and asks the admission hook;
from the spawn it stops watching the socket until the child has taken the
datagram or has ended: no event says so, so it peeks at the head again
L{HOLD_POLL_FIRST} seconds after the spawn and then less and less often,
every L{HOLD_POLL_MAX} seconds at most (xinetd 2.3.15.3 instead spins).
Then it watches again, and the next datagram gets the next child, at most
C{instances} (64 when UNLIMITED) at once; with all of them running the
datagrams wait in the kernel.  A child that ends without taking its
datagram (having failed, or within a second) makes the daemon drop that
datagram and wait before watching again, as for C{wait = yes} below, so a
program that never reads cannot make it loop.  No child timeout applies (as
in xinetd).  A refused datagram is read and dropped.

C{wait = yes}: the socket is handed over
========================================

As in xinetd: the daemon watches the socket; when a datagram is waiting it
stops watching, peeks at the datagram (C{MSG_PEEK}: the child must receive
it) to learn the sender, and starts the child with the socket as its
descriptors 0 and 1 (standard error goes to the log).  The child reads
(C{recvfrom}) and answers (C{sendto}) as many datagrams as it likes, in the
style of C{in.tftpd}.  C{REMOTE_HOST} is the sender of the datagram that
started the child (xinetd peeks the address the same way; it is not
C{<no address>} as for C{wait = yes} streams).  When the child ends, the
daemon drains the datagrams left in the socket (read and dropped, as
xinetd's C{drain()}; twinetd also drains past an empty datagram, where
xinetd stops) and then watches the socket again.

The socket is in blocking mode for every child: the daemon never sets
C{O_NONBLOCK} (the flag belongs to the file description it shares with the
child), uses C{MSG_DONTWAIT} for its own peeks and drains, and clears
C{O_NONBLOCK} before each spawn in case a previous child set it.

A refused sender's datagram is read and dropped so it cannot trigger again.
A child that fails (cannot start, exits non-zero or by a signal) or exits
within a second leaving datagrams unread makes the daemon wait before
watching again: 0.1 s, doubling with each such child in a row, at most 10 s
(logged, C{dgramBackoff}); one good child resets it.  The child timeout does
not apply to C{wait = yes} children (long-lived servers are normal there).

Internal datagram services
==========================

echo, discard, chargen, daytime and time (L{twinetd.modes.internal}) answer on a
Twisted UDP port with no process; the admission hook applies to each
datagram and its ticket is released at once (xinetd applies no instance
limit to them).

Every socket is bound by L{twinetd.listeners.sockets.bindSocket} (C{SO_REUSEADDR},
C{IPV6_V6ONLY} from C{v6only}); C{wait = no} and internal services hand
theirs to the reactor (L{listenDatagram}), which reads it as a UDP port.
"""

from __future__ import annotations

import errno
import functools
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IReactorFDSet,
    IReactorSocket,
    IReactorTime,
    IReadDescriptor,
)
from twisted.internet.protocol import DatagramProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from twinetd import logs
from twinetd.child import ChildProcess, spawnFailed
from twinetd.launch import LaunchPlan
from twinetd.listeners.sockets import bindSocket, listenAddress
from twinetd.model import Peer, ServiceConfig
from twinetd.modes.internal import InternalService, LocalTime
from twinetd.policy.backoff import QUICK_EXIT, Backoff, doubling
from twinetd.policy.gate import Admission, Admit, admitEveryone
from twinetd.spawn import Spawner

#: The largest reply: the largest UDP payload over IPv4.
MAX_REPLY = 65507
#: The largest datagram read (the largest UDP payload over IPv6).
MAX_DATAGRAM = 65535
#: Seconds a C{wait = no} child may run before C{SIGTERM}.
DEFAULT_CHILD_TIMEOUT = 10.0
#: Children (and pending admissions) at once when C{instances} is UNLIMITED.
DEFAULT_MAX_CHILDREN = 64
#: The most datagrams one drain reads (the loop is bounded; the rest
#: trigger a new child).
DRAIN_LIMIT = 1024
#: C{wait = yes} back-off: the first delay and the longest.
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 10.0

#: Drop-in C{wait = no}: how soon after the spawn, and then how often at
#: most, the daemon looks whether the child has taken its datagram.
HOLD_POLL_FIRST = 0.005
HOLD_POLL_MAX = 0.1

#: xinetd's FAIL reason when every instance is busy.
REASON_SERVICE_LIMIT = "service_limit"
#: The reason for datagrams arriving while the service stops.
REASON_STOPPING = "stopping"


def bindDatagramSocket(config: ServiceConfig) -> socket.socket:
    """
    A bound, blocking UDP socket for a C{wait = yes} service (see
    L{twinetd.listeners.sockets.bindSocket}).

    @raise OSError: the address cannot be bound.
    """
    return bindSocket(config, socket.SOCK_DGRAM, blocking=True)


def listenDatagram(
    reactor: IReactorSocket, config: ServiceConfig, protocol: DatagramProtocol
) -> IListeningPort:
    """
    Listen for C{config}'s datagrams on a non-blocking socket bound by
    L{twinetd.listeners.sockets.bindSocket} (so C{v6only} and C{SO_REUSEADDR} apply),
    adopted by C{reactor} as a UDP port for C{protocol}.

    @raise OSError: the address cannot be bound.
    """
    sock = bindSocket(config, socket.SOCK_DGRAM)
    try:
        return reactor.adoptDatagramPort(
            sock.fileno(), sock.family, protocol, MAX_DATAGRAM
        )
    finally:
        # The reactor's port holds its own duplicate of the descriptor.
        sock.close()


#: How a C{wait = no} or internal service listens: its record and its
#: protocol give a listening UDP port (L{listenDatagram} with the reactor).
BindPort = Callable[[ServiceConfig, DatagramProtocol], IListeningPort]


class DatagramSocket(Protocol):
    """
    The part of C{socket.socket} a C{wait = yes} service uses.
    """

    def fileno(self) -> int: ...

    def recvfrom(self, bufsize: int, flags: int = ..., /) -> tuple[bytes, Any]: ...

    def getsockname(self) -> Any: ...

    def setblocking(self, flag: bool, /) -> None: ...

    def close(self) -> None: ...


def _peerOf(addr: Any, local: tuple[str, int], accepted: float) -> Peer:
    return Peer("udp", str(addr[0]), int(addr[1]), local[0], local[1], accepted)


class _Child(ChildProcess):
    """
    One child of a datagram service (L{ChildProcess}), with its ticket.

    @ivar exitedWell: whether it exited with status 0.
    """

    def __init__(self, service: DatagramService, peer: Peer, ticket: Admission) -> None:
        super().__init__(
            service.serviceLog,
            peer,
            service._clock,
            service.killDelay,
            self._ended,
        )
        self.service = service
        self.peer: Peer = peer
        self.ticket = ticket
        self._waiters: list[Deferred[None]] = []

    @property
    def exitedWell(self) -> bool:
        return self.exitStatus == 0

    def _ended(self) -> None:
        self.ticket.release()
        self.service._childEnded(self)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def whenEnded(self) -> Deferred[None]:
        if self.ended:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d


class _ReplyingChild(_Child):
    """
    A C{wait = no} child: the datagram on its standard input, its standard
    output back to the sender as one datagram.
    """

    def __init__(
        self,
        service: DatagramService,
        peer: Peer,
        ticket: Admission,
        datagram: bytes,
        addr: Any,
    ) -> None:
        super().__init__(service, peer, ticket)
        self._datagram = datagram
        self._addr = addr
        self._reply: list[bytes] = []
        self._replySize = 0
        self.overflow = 0
        self._replied = False

    def connectionMade(self) -> None:
        super().connectionMade()
        assert self.transport is not None
        if self._datagram:
            self.transport.write(self._datagram)
        self._datagram = b""
        self.transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != 1:
            super().childDataReceived(childFD, data)
            return
        room = self.service.maxReply - self._replySize
        if room > 0:
            kept = data[:room]
            self._reply.append(kept)
            self._replySize += len(kept)
        self.overflow += max(0, len(data) - max(room, 0))

    def childConnectionLost(self, childFD: int) -> None:
        if childFD == 1:
            self._sendReply()
        else:
            super().childConnectionLost(childFD)

    def processEnded(self, reason: Failure) -> None:
        self._sendReply()
        super().processEnded(reason)

    def _sendReply(self) -> None:
        if self._replied:
            return
        self._replied = True
        reply = b"".join(self._reply)
        self._reply = []
        service = self.service
        if self.overflow:
            service.serviceLog.emit(
                logs.REPLY_TRUNCATED,
                pid=self.pid,
                sent=len(reply),
                dropped=self.overflow,
            )
        if reply:
            service._sendReply(self, reply, self._addr)


@implementer(IReadDescriptor)
class _SocketWatcher:
    """
    The C{wait = yes} socket as a reactor reader.
    """

    def __init__(self, service: DatagramService, sock: DatagramSocket) -> None:
        self._service = service
        self._fileno = sock.fileno()

    def fileno(self) -> int:
        return self._fileno

    def doRead(self) -> None:
        self._service._socketReadable()

    def connectionLost(self, reason: Failure) -> None:
        pass

    def logPrefix(self) -> str:
        return self._service.config.id


class _GatedDatagram(DatagramProtocol):
    """
    The protocol on the UDP port of C{wait = no} and internal services: every
    datagram goes to the service.
    """

    # The service logs its own "listening" line; Twisted's "Starting
    # protocol <...>" line per port would repeat it.
    noisy = False

    def __init__(self, service: DatagramService) -> None:
        self._service = service

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self._service._datagramReceived(datagram, addr)


class DatagramService(Service):
    """
    Serves one C{socket_type = dgram} record; see the module's docstring.

    @ivar config: the record.
    @ivar port: the Twisted UDP port (C{wait = no} and internal services)
        while listening.
    @ivar socket: the socket of a C{wait = yes} service while listening.
    @ivar children: the children not yet ended.
    @ivar dropped: datagrams dropped so far, by reason.
    @ivar failure: why binding failed, if it did.
    @ivar maxChildren: the most children (and pending admissions) at once.
    @ivar log: where events go (L{twinetd.logs}).
    """

    log = logs.log
    port: IListeningPort | None = None
    socket: DatagramSocket | None = None
    failure: OSError | None = None

    def __init__(
        self,
        config: ServiceConfig,
        makePlan: Callable[[Peer | None], LaunchPlan],
        spawner: Spawner,
        reactor: IReactorSocket,
        admit: Admit = admitEveryone,
        killDelay: float = 5.0,
        internal: InternalService | None = None,
        *,
        childTimeout: float = DEFAULT_CHILD_TIMEOUT,
        maxChildren: int | None = None,
        maxReply: int = MAX_REPLY,
        makeSocket: Callable[[], DatagramSocket] | None = None,
        bindPort: BindPort | None = None,
        localtime: LocalTime = time.localtime,
        serviceLog: logs.ServiceLog | None = None,
        handOff: bool = False,
    ) -> None:
        """
        @param config: a C{socket_type = dgram} record.
        @param makePlan: what to run for a sender (L{twinetd.launch.planLaunch}
            with the record, daemon environment and uid).
        @param spawner: starts children.
        @param reactor: a reactor providing C{IReactorSocket} and
            C{IReactorTime}, and C{IReactorFDSet} for C{wait = yes}.
        @param admit: decides on each datagram (C{wait = no}, internal) or
            each child (C{wait = yes}).
        @param killDelay: seconds from C{SIGTERM} to C{SIGKILL}.
        @param internal: for C{type = INTERNAL} records, the builtin to serve.
        @param childTimeout: seconds a C{wait = no} child may run.
        @param maxChildren: overrides the bound on children (default
            C{instances}, or L{DEFAULT_MAX_CHILDREN} when UNLIMITED).
        @param maxReply: the largest reply datagram.
        @param makeSocket: binds the C{wait = yes} socket (default
            L{bindDatagramSocket}).
        @param bindPort: listens for C{wait = no} and internal services
            (default L{listenDatagram} with C{reactor}).
        @param localtime: for the daytime builtin.
        @param serviceLog: the service's log (events, and xinetd's lines where
            C{log_type} asks); by default events only, to L{log}.
        @param handOff: drop-in mode for C{wait = no}: each child gets the
            socket and receives its datagram itself (see the module's
            docstring).
        """
        if serviceLog is None:
            serviceLog = logs.ServiceLog.fromConfig(config, None, self.log)
        self.serviceLog = serviceLog
        self.log = serviceLog.logger
        self.config = config
        self._makePlan = makePlan
        self._spawner = spawner
        self._reactor = reactor
        self._clock = IReactorTime(reactor)
        self._admit = admit
        self.killDelay = killDelay
        self.internal = internal
        self.childTimeout = childTimeout
        if maxChildren is None:
            maxChildren = (
                config.instances
                if config.instances is not None
                else DEFAULT_MAX_CHILDREN
            )
        self.maxChildren = maxChildren
        self.maxReply = maxReply
        self._makeSocket = makeSocket
        self._bindPort = bindPort
        self._localtime = localtime
        self.children: set[_Child] = set()
        self._pending = 0
        self._drops = logs.DropSummary(self.serviceLog, self._clock)
        self._inner: DatagramProtocol | None = None
        self._watcher: _SocketWatcher | None = None
        self._watching = False
        self._busy = False
        self._failures = Backoff(doubling(BACKOFF_FIRST, BACKOFF_MAX))
        self._backoff: IDelayedCall | None = None
        self._suspended = False
        self.handOff = handOff and not config.wait and internal is None
        self._holding: _HandedChild | None = None
        self._holdPoll: IDelayedCall | None = None
        self._holdDelay = HOLD_POLL_FIRST
        self._pauseEnds: IDelayedCall | None = None
        self.setName(config.id)  # type: ignore[no-untyped-call]

    @property
    def dropped(self) -> Counter[str]:
        return self._drops.counts

    @property
    def boundPort(self) -> int | None:
        """
        The port number bound (useful with C{port = 0}).
        """
        if self.port is not None:
            port: int = self.port.getHost().port  # type: ignore[attr-defined]
            return port
        if self.socket is not None:
            return int(self.socket.getsockname()[1])
        return None

    def _local(self) -> tuple[str, int]:
        if self.port is not None:
            host = self.port.getHost()
            return str(getattr(host, "host", "")), int(getattr(host, "port", 0))
        if self.socket is not None:
            name = self.socket.getsockname()
            return str(name[0]), int(name[1])
        return "", 0

    # starting and stopping

    def privilegedStartService(self) -> None:
        # Before twistd drops privileges: ports below 1024 need root.
        Service.privilegedStartService(self)  # type: ignore[no-untyped-call]
        self._listen()

    def startService(self) -> None:
        Service.startService(self)  # type: ignore[no-untyped-call]
        if self.port is None and self.socket is None and self.failure is None:
            self._listen()
        # A socket bound by privilegedStartService (twistd binds before it
        # starts the services) is watched only now: _watch needs running.
        if self.socket is not None and not self._busy and self._backoff is None:
            self._watch()

    def _listen(self) -> None:
        config = self.config
        try:
            if self.internal is None and (config.wait or self.handOff):
                make = self._makeSocket or (lambda: bindDatagramSocket(config))
                self.socket = make()
                self._watcher = _SocketWatcher(self, self.socket)
                self._watch()
            else:
                protocol = _GatedDatagram(self)
                if self.internal is not None:
                    self._inner = self.internal.datagramProtocol(
                        self._clock, self._localtime
                    )
                    self._inner.noisy = False
                bindPort = self._bindPort or functools.partial(
                    listenDatagram, self._reactor
                )
                self.port = bindPort(config, protocol)
                if self._inner is not None:
                    self._inner.makeConnection(self.port)  # type: ignore[arg-type]
        except OSError as e:
            self.failure = e
            self.serviceLog.cannotListen(
                config, listenAddress(config), e.strerror or str(e)
            )
            return
        self.serviceLog.listening(listenAddress(config), self.boundPort, "udp")

    def stopService(self) -> Deferred[None]:
        """
        Stop listening (close the socket), then stop the running children:
        C{SIGTERM} now, C{SIGKILL} after the kill delay.  The result fires
        when the port is closed and every child has ended.
        """
        Service.stopService(self)  # type: ignore[no-untyped-call]
        waits: list[Deferred[Any]] = []
        port, self.port = self.port, None
        if port is not None:
            waits.append(maybeDeferred(port.stopListening))
        if self._inner is not None:
            self._inner.doStop()  # type: ignore[no-untyped-call]
            self._inner = None
        self._unwatch()
        for call in (self._backoff, self._pauseEnds):
            if call is not None and call.active():
                call.cancel()
        self._backoff = self._pauseEnds = None
        self._stopHoldPoll()
        self._holding = None
        sock, self.socket = self.socket, None
        if sock is not None:
            # The child keeps its own copy until it ends.
            sock.close()
        for child in list(self.children):
            waits.append(child.whenEnded())
            child.terminate()
        self._drops.stop()
        return DeferredList(waits).addCallback(lambda _: None)

    def pauseFor(self, seconds: int) -> None:
        """
        C{cps} tripped: stop reading datagrams for C{seconds} (they wait
        in the kernel), then read again.
        """
        if self._pauseEnds is not None:
            return
        self._pauseEnds = self._clock.callLater(seconds, self._pauseOver)
        self.suspend()

    def _pauseOver(self) -> None:
        self._pauseEnds = None
        self.log.error("Activating service {service}", service=self.config.id)
        self.resume()

    def suspend(self) -> None:
        """
        Stop reading datagrams; they wait in the kernel.
        """
        self._suspended = True
        if self.port is not None:
            self.port.stopReading()  # type: ignore[attr-defined]
        self._unwatch()

    def resume(self) -> None:
        """
        Read datagrams again after L{suspend}.
        """
        self._suspended = False
        if self.port is not None:
            self.port.startReading()  # type: ignore[attr-defined]
        if self.handOff:
            self._watchIfRoom()
        elif self.socket is not None and not self._busy and self._backoff is None:
            self._watch()

    # admission, shared by the modes

    def _decide(self, peer: Peer, then: Callable[[Admission], None]) -> None:
        """
        Ask the gate about C{peer}; C{then} gets its answer.  A C{cps}
        trip suspends the service for the pause.
        """

        def decided(admission: Admission) -> None:
            if admission.pause:
                self.pauseFor(admission.pause)
            then(admission)

        self._admit(peer).addCallback(decided)

    # wait = no and internal

    def _datagramReceived(self, datagram: bytes, addr: Any) -> None:
        peer = _peerOf(addr, self._local(), self._clock.seconds())
        if not self.running:
            self._drops.drop(REASON_STOPPING, peer)
            return
        if self.internal is None and (
            len(self.children) + self._pending >= self.maxChildren
        ):
            self._drops.drop(REASON_SERVICE_LIMIT, peer)
            return
        if self.internal is not None and self._pending >= self.maxChildren:
            self._drops.drop(REASON_SERVICE_LIMIT, peer)
            return
        self._pending += 1

        def decided(admission: Admission) -> None:
            self._pending -= 1
            if admission.reason is not None:
                self._drops.drop(admission.reason, peer, admission.detail)
                return
            if not self.running:
                admission.release()
                self._drops.drop(REASON_STOPPING, peer)
                return
            if self.internal is not None:
                self._answerInternal(admission, peer, datagram, addr)
            else:
                self._spawnForDatagram(admission, peer, datagram, addr)

        self._decide(peer, decided)

    def _answerInternal(
        self, ticket: Admission, peer: Peer, datagram: bytes, addr: Any
    ) -> None:
        try:
            # xinetd logs internal services that do not fork with pid 0.
            self.serviceLog.start(0, peer)
            if self._inner is not None:
                self._inner.datagramReceived(datagram, addr)
        except OSError as e:
            self.serviceLog.emit(
                logs.REPLY_FAILED,
                pid=0,
                host=peer.remoteHost,
                port=peer.remotePort,
                message=e.strerror or str(e),
            )
        finally:
            ticket.release()

    def _spawnForDatagram(
        self, ticket: Admission, peer: Peer, datagram: bytes, addr: Any
    ) -> None:
        child = _ReplyingChild(self, peer, ticket, datagram, addr)
        if not self._spawn(child, None):
            return
        if not child.ended:
            child.terminateLater(self.childTimeout)

    def _spawn(self, child: _Child, childFDs: dict[int, int | str] | None) -> bool:
        """
        Start C{child}'s process; on failure log it, release its ticket and
        return C{False}.
        """
        self.children.add(child)
        try:
            plan = self._makePlan(child.peer)
            self._spawner.spawn(child, plan, childFDs)
        except Exception as e:
            self.children.discard(child)
            child.ended = True
            child.ticket.release()
            spawnFailed(self.serviceLog, child.peer, e)
            return False
        return True

    def _sendReply(self, child: _Child, reply: bytes, addr: Any) -> None:
        if self.port is None:
            return
        try:
            self.port.write(reply, addr)  # type: ignore[attr-defined]
        except Exception as e:
            message = getattr(e, "strerror", None) or str(e) or type(e).__name__
            self.serviceLog.emit(
                logs.REPLY_FAILED,
                pid=child.pid,
                host=child.peer.remoteHost,
                port=child.peer.remotePort,
                message=message,
            )

    def _childEnded(self, child: _Child) -> None:
        self.children.discard(child)
        if isinstance(child, _HandedChild):
            self._handedChildEnded(child)

    # wait = yes

    def _watch(self) -> None:
        if (
            self._watcher is not None
            and not self._watching
            and not self._suspended
            and self.running
        ):
            self._watching = True
            IReactorFDSet(self._reactor).addReader(self._watcher)

    def _unwatch(self) -> None:
        if self._watcher is not None and self._watching:
            self._watching = False
            IReactorFDSet(self._reactor).removeReader(self._watcher)

    def _socketReadable(self) -> None:
        self._unwatch()
        sock = self.socket
        if sock is None or self._busy:
            return
        if self.handOff and len(self.children) >= self.maxChildren:
            # Every instance busy: the datagram waits in the kernel; the
            # next child's end watches again.
            return
        try:
            # xinetd's trick: peek to learn the sender; the child must still
            # receive the datagram.  In drop-in mode the whole datagram,
            # to tell later whether the child has taken it.
            size = MAX_DATAGRAM if self.handOff else 1
            data, addr = sock.recvfrom(size, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            self._watch()
            return
        except OSError as e:
            # An error queued on the socket (ICMP); reading it clears it.
            self.log.warn(
                "{service}: receive error: {reason}",
                service=self.config.id,
                reason=e.strerror or str(e),
            )
            self._watch()
            return
        peer = _peerOf(addr, self._local(), self._clock.seconds())
        self._busy = True

        def decided(admission: Admission) -> None:
            if self.socket is not sock:
                # Stopped meanwhile.
                admission.release()
                self._busy = False
                return
            if admission.reason is not None:
                # Consume the refused datagram, or it triggers forever.
                self._drain(1)
                self._drops.drop(admission.reason, peer, admission.detail)
                self._busy = False
                self._watch()
                return
            child = _HandedChild(self, peer, admission, (data, addr))
            fd = sock.fileno()
            # A previous child may have left O_NONBLOCK on the shared file
            # description (Python's settimeout does): every child starts
            # with a blocking socket, as under xinetd.
            sock.setblocking(True)
            if not self._spawn(child, {0: fd, 1: fd, 2: "r"}):
                self._drain(1)
                self._busy = False
                self._failed(None)
            elif self.handOff and not child.ended:
                self._hold(child)

        self._decide(peer, decided)

    def _drain(self, limit: int = DRAIN_LIMIT) -> int:
        """
        Read and drop up to C{limit} waiting datagrams, without blocking;
        return how many.
        """
        sock = self.socket
        count = 0
        while sock is not None and count < limit:
            try:
                sock.recvfrom(1, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                # A queued error (ICMP) is consumed by reading it.
                continue
            count += 1
        return count

    def _handedChildEnded(self, child: _HandedChild) -> None:
        if self.handOff:
            self._handedOffEnded(child)
            return
        self._busy = False
        if self.socket is None:
            return
        left = self._drain()
        lived = self._clock.seconds() - child.startTime
        if not child.exitedWell or (left and lived < QUICK_EXIT):
            self._failed(child.pid)
        else:
            self._failures.succeeded()
            self._watch()

    def _failed(self, pid: int | None) -> None:
        delay = self._failures.failed()
        self.serviceLog.emit(
            logs.DGRAM_BACKOFF, pid=pid, delay=delay, failures=self._failures.failures
        )
        self._backoff = self._clock.callLater(delay, self._backoffOver)

    def _backoffOver(self) -> None:
        self._backoff = None
        if self.handOff:
            self._watchIfRoom()
        else:
            self._watch()

    # drop-in wait = no: one child per datagram, given the socket

    def _peekHead(self) -> object:
        """
        The datagram at the head of the socket's queue, C{None} if none;
        L{_UNKNOWN} when the peek reported a queued error instead.
        """
        sock = self.socket
        if sock is None:
            return None
        try:
            return sock.recvfrom(MAX_DATAGRAM, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except OSError:
            return _UNKNOWN

    def _hold(self, child: _HandedChild) -> None:
        """
        C{child} was given the socket to receive the datagram at the head of
        the queue: watch nothing until it has (or has ended).  No event
        says that a datagram left the queue, so the head is looked at
        shortly after the spawn and then less and less often (at most every
        L{HOLD_POLL_MAX} seconds): the daemon stays idle while a child
        takes its time, where xinetd 2.3.15.3 spins.
        """
        self._holding = child
        self._holdDelay = HOLD_POLL_FIRST
        self._holdPoll = self._clock.callLater(self._holdDelay, self._pollHold)

    def _pollHold(self) -> None:
        self._holdPoll = None
        child = self._holding
        if child is None:
            return
        head = self._peekHead()
        if head is _UNKNOWN or head == child.head:
            self._holdDelay = min(self._holdDelay * 2, HOLD_POLL_MAX)
            self._holdPoll = self._clock.callLater(self._holdDelay, self._pollHold)
            return
        # Taken: the next datagram (if any) may have a child of its own.
        self._holding = None
        self._busy = False
        self._watchIfRoom()

    def _stopHoldPoll(self) -> None:
        if self._holdPoll is not None and self._holdPoll.active():
            self._holdPoll.cancel()
        self._holdPoll = None

    def _handedOffEnded(self, child: _HandedChild) -> None:
        if child is self._holding:
            self._stopHoldPoll()
            self._holding = None
            self._busy = False
            lived = self._clock.seconds() - child.startTime
            if (
                self.socket is not None
                and self._peekHead() == child.head
                and (not child.exitedWell or lived < QUICK_EXIT)
            ):
                # It never received its datagram: drop it, or the next
                # child would get it, and the next (xinetd's loop).  An
                # identical datagram queued behind it is told apart only by
                # the child's success and life time, as for wait = yes.
                self._drain(1)
                self._failed(child.pid)
                return
        if child.exitedWell:
            self._failures.succeeded()
        self._watchIfRoom()

    def _watchIfRoom(self) -> None:
        if (
            self.socket is not None
            and not self._busy
            and self._backoff is None
            and len(self.children) < self.maxChildren
        ):
            self._watch()


#: A peek that found a queued error, not a datagram.
_UNKNOWN: Any = object()


class _HandedChild(_Child):
    """
    A child given the socket (C{wait = yes}, or drop-in C{wait = no}); its
    standard error is logged.

    @ivar head: the datagram (and sender) at the head of the queue when it
        was started: the one it is to receive.
    """

    def __init__(
        self,
        service: DatagramService,
        peer: Peer,
        ticket: Admission,
        head: tuple[bytes, Any],
    ) -> None:
        super().__init__(service, peer, ticket)
        self.head = head
