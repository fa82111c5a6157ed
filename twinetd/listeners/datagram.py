# -*- test-case-name: tests.unit.test_dgram -*-
"""
Datagram services (C{socket_type = dgram}) whose datagrams the daemon
reads: C{wait = no} services bridged to a child per datagram
(L{twinetd.modes.datagram}) and internal services.  What datagram
listeners share (their children, their drops) is L{DatagramServing};
services whose children get the socket itself (C{wait = yes}, and
C{wait = no} in drop-in mode) are L{twinetd.listeners.waitdatagram}'s.

C{wait = no}: the datagram bridge
=================================

Each datagram passes the gate (access control and limits); a refused one
is dropped and logged (C{FAIL}, rate-limited).  An admitted datagram gets
its own child, its reply goes back from the service's socket
(L{twinetd.modes.datagram.ReplyingChild}).  The child's environment has
C{REMOTE_HOST} and the UCSPI variables (C{PROTO=UDP}, C{UDPREMOTEIP},
C{UDPREMOTEPORT}, ...) of the sender.  A child still running
C{childTimeout} seconds (default 10) after it started gets C{SIGTERM}, and
C{SIGKILL} C{killDelay} seconds later (its process group when it leads
one): no child lives forever.  What it wrote before is still sent when its
output closes.

At most C{instances} children run at once (64 when C{instances} is
UNLIMITED; C{maxChildren} overrides); a datagram arriving when they are all
busy is dropped, as are datagrams waiting for an admission decision beyond
the same bound.  The daemon therefore holds at most that many datagrams and
replies in memory, however fast datagrams arrive; the kernel's socket buffer
is the only queue.  Drops are counted (L{DatagramServing.dropped}) and
logged at a bounded rate: the first drop as a C{FAIL} event, then at most
one C{dgramDropped} summary per second while drops continue.

Internal datagram services
==========================

echo, discard, chargen, daytime and time (L{twinetd.modes.internal}) answer
on the same kind of port with no process; the gate applies to each datagram
and its ticket is released at once (xinetd applies no instance limit to
them).

Every socket is bound by L{twinetd.listeners.sockets.bindSocket}
(C{SO_REUSEADDR}, C{IPV6_V6ONLY} from C{v6only}) and handed to the reactor
(L{listenDatagram}), which reads it as a UDP port.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IReactorSocket, IUDPTransport
from twisted.internet.protocol import DatagramProtocol

from twinetd import logs
from twinetd._twistedcompat import pauseReading, resumeReading
from twinetd.child import ChildProcess, spawnFailed
from twinetd.listeners.base import Listener, ListenerOptions, Runtime
from twinetd.listeners.sockets import bindSocket, listenAddress
from twinetd.model import Peer, ServiceConfig
from twinetd.modes.datagram import MAX_REPLY, ReplyingChild, stdinHolding
from twinetd.modes.internal import InternalService, LocalTime
from twinetd.policy.gate import Admission

if TYPE_CHECKING:
    from typing_extensions import Unpack

#: The largest datagram read (the largest UDP payload over IPv6).
MAX_DATAGRAM = 65535
#: Seconds a C{wait = no} child may run before C{SIGTERM}.
DEFAULT_CHILD_TIMEOUT = 10.0
#: Children (and pending admissions) at once when C{instances} is UNLIMITED.
DEFAULT_MAX_CHILDREN = 64

#: xinetd's FAIL reason when every instance is busy.
REASON_SERVICE_LIMIT = "service_limit"
#: The reason for datagrams arriving while the service stops.
REASON_STOPPING = "stopping"


def listenDatagram(
    reactor: IReactorSocket, config: ServiceConfig, protocol: DatagramProtocol
) -> IListeningPort:
    """
    Listen for C{config}'s datagrams on a non-blocking socket bound by
    L{twinetd.listeners.sockets.bindSocket} (so C{v6only} and
    C{SO_REUSEADDR} apply), adopted by C{reactor} as a UDP port for
    C{protocol}.

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


def peerOf(addr: Any, local: tuple[str, int], accepted: float) -> Peer:
    """
    The sender of a datagram from C{addr}, received at C{local}.
    """
    return Peer("udp", str(addr[0]), int(addr[1]), local[0], local[1], accepted)


class DatagramOptions(ListenerOptions, total=False):
    """
    The keyword arguments every datagram listener takes (L{DatagramServing}).
    """

    maxChildren: int | None


class DatagramServing(Listener):
    """
    What every datagram listener does: start children (each holding its
    admission until it ends), stop them, and count and log the datagrams
    it drops.

    @ivar children: the children not yet ended.
    @ivar maxChildren: the most children (and pending admissions) at once.
    @ivar killDelay: seconds from C{SIGTERM} to C{SIGKILL}.
    """

    def __init__(
        self,
        config: ServiceConfig,
        runtime: Runtime,
        *,
        maxChildren: int | None = None,
        **options: Unpack[ListenerOptions],
    ) -> None:
        """
        @param maxChildren: overrides the bound on children (default
            C{instances}, or L{DEFAULT_MAX_CHILDREN} when UNLIMITED).
        @param options: as L{Listener}'s.
        """
        super().__init__(config, runtime, **options)
        if maxChildren is None:
            maxChildren = (
                config.instances
                if config.instances is not None
                else DEFAULT_MAX_CHILDREN
            )
        self.maxChildren = maxChildren
        self.killDelay = runtime.killDelay
        self.children: set[ChildProcess] = set()
        self._drops = logs.DropSummary(self.serviceLog, self._clock)
        self._allEnded: list[Deferred[None]] = []

    @property
    def dropped(self) -> Counter[str]:
        """
        Datagrams dropped so far, by reason.
        """
        return self._drops.counts

    def _spawn(
        self,
        child: ChildProcess,
        peer: Peer,
        admission: Admission,
        childFDs: dict[int, int | str] | None,
    ) -> bool:
        """
        Start C{child} (made with L{_childEnded} as its end); on failure
        log it, release C{admission} and return C{False}.
        """
        self.children.add(child)
        try:
            self.runtime.spawner.spawn(child, self.makePlan(peer), childFDs)
        except Exception as e:
            self.children.discard(child)
            child.ended = True
            admission.release()
            spawnFailed(self.serviceLog, peer, e)
            return False
        return True

    def _childEnded(self, child: ChildProcess, admission: Admission) -> None:
        admission.release()
        self.children.discard(child)
        self._ended(child)
        if not self.children:
            waiting, self._allEnded = self._allEnded, []
            for d in waiting:
                d.callback(None)

    def _ended(self, child: ChildProcess) -> None:
        """
        A child has ended (its admission released).
        """

    def _stopServing(self) -> Deferred[None]:
        """
        Stop the running children: C{SIGTERM} now, C{SIGKILL} after the kill
        delay; fires when every one has ended.
        """
        self._drops.stop()
        if not self.children:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._allEnded.append(d)
        for child in list(self.children):
            child.terminate()
        return d


class _GatedDatagram(DatagramProtocol):
    """
    The protocol on the UDP port: every datagram goes to the listener.
    """

    # The service logs its own "listening" line; Twisted's "Starting
    # protocol <...>" line per port would repeat it.
    noisy = False

    def __init__(self, listener: DatagramListener) -> None:
        self._listener = listener

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self._listener._datagramReceived(datagram, addr)


class DatagramListener(DatagramServing):
    """
    A C{wait = no} datagram service bridged to a child per datagram, or an
    internal datagram service; see the module's docstring.

    @ivar port: the Twisted UDP port while listening.
    @ivar internal: the builtin served, for C{type = INTERNAL}.
    """

    port: IListeningPort | None = None

    def __init__(
        self,
        config: ServiceConfig,
        runtime: Runtime,
        reactor: IReactorSocket,
        *,
        internal: InternalService | None = None,
        childTimeout: float = DEFAULT_CHILD_TIMEOUT,
        maxReply: int = MAX_REPLY,
        bindPort: BindPort | None = None,
        localtime: LocalTime = time.localtime,
        **options: Unpack[DatagramOptions],
    ) -> None:
        """
        @param reactor: reads the port.
        @param internal: for C{type = INTERNAL} records, the builtin to serve.
        @param childTimeout: seconds a child may run.
        @param maxReply: the largest reply datagram.
        @param bindPort: listens (default L{listenDatagram} with C{reactor}).
        @param localtime: for the daytime builtin.
        @param options: as L{DatagramServing}'s.
        """
        super().__init__(config, runtime, **options)
        self.internal = internal
        self.childTimeout = childTimeout
        self.maxReply = maxReply
        self._bindPort = bindPort or functools.partial(listenDatagram, reactor)
        self._localtime = localtime
        self._inner: DatagramProtocol | None = None
        self._pending = 0

    @property
    def boundPort(self) -> int | None:
        if self.port is None:
            return None
        return self._local()[1]

    @property
    def listening(self) -> bool:
        return self.port is not None

    def _local(self) -> tuple[str, int]:
        if self.port is None:
            return "", 0
        host = self.port.getHost()
        if isinstance(host, IPv4Address | IPv6Address):
            return host.host, host.port
        return "", 0

    # the lifecycle

    def _listen(self) -> None:
        config = self._bindConfig()
        if config is None:
            return
        try:
            if self.internal is not None:
                self._inner = self.internal.datagramProtocol(
                    self._clock, self._localtime
                )
                self._inner.noisy = False
            self.port = self._bindPort(config, _GatedDatagram(self))
        except OSError as e:
            self._cannotListen(e, listenAddress(config), e.strerror or str(e))
            return
        if self._inner is not None:
            self._inner.makeConnection(IUDPTransport(self.port))
        self.serviceLog.listening(listenAddress(config), self.boundPort, "udp")

    def _startAccepting(self) -> None:
        if self.port is not None:
            resumeReading(self.port)

    def _stopAccepting(self) -> None:
        # The datagrams wait in the kernel.
        if self.port is not None:
            pauseReading(self.port)

    def _stopListening(self) -> Deferred[None]:
        if self._inner is not None:
            self._inner.doStop()  # type: ignore[no-untyped-call]
            self._inner = None
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        d: Deferred[Any] = maybeDeferred(port.stopListening)
        return d.addCallback(lambda _: None)

    # each datagram

    def _datagramReceived(self, datagram: bytes, addr: Any) -> None:
        peer = peerOf(addr, self._local(), self._clock.seconds())
        if not self.running:
            self._drops.drop(REASON_STOPPING, peer)
            return
        busy = self._pending
        if self.internal is None:
            busy += len(self.children)
        if busy >= self.maxChildren:
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

        self.ask(peer).addCallback(decided)

    def _answerInternal(
        self, admission: Admission, peer: Peer, datagram: bytes, addr: Any
    ) -> None:
        try:
            # xinetd logs internal services that do not fork with pid 0.
            self.serviceLog.start(0, peer)
            if self._inner is not None:
                self._inner.datagramReceived(datagram, addr)
        except OSError as e:
            self._replyFailed(0, peer, e.strerror or str(e))
        finally:
            admission.release()

    def _spawnForDatagram(
        self, admission: Admission, peer: Peer, datagram: bytes, addr: Any
    ) -> None:
        child: ReplyingChild

        def reply(data: bytes) -> None:
            self._sendReply(child, peer, data, addr)

        try:
            stdin = stdinHolding(datagram)
        except OSError:
            # Out of descriptors: the spawn says so (a failed start).
            stdin = None
        child = ReplyingChild(
            self.serviceLog,
            peer,
            self._clock,
            self.killDelay,
            lambda: self._childEnded(child, admission),
            datagram if stdin is None else b"",
            reply,
            self.maxReply,
        )
        childFDs: dict[int, int | str] | None = None
        if stdin is not None:
            childFDs = {0: stdin, 1: "r", 2: "r"}
        try:
            spawned = self._spawn(child, peer, admission, childFDs)
        finally:
            if stdin is not None:
                os.close(stdin)
        if spawned and not child.ended:
            child.terminateLater(self.childTimeout)

    def _sendReply(
        self, child: ChildProcess, peer: Peer, reply: bytes, addr: Any
    ) -> None:
        if self.port is None:
            return
        try:
            IUDPTransport(self.port).write(reply, addr)
        except Exception as e:
            message = getattr(e, "strerror", None) or str(e) or type(e).__name__
            self._replyFailed(child.pid, peer, message)

    def _replyFailed(self, pid: int | None, peer: Peer, message: str) -> None:
        self.serviceLog.emit(
            logs.REPLY_FAILED,
            pid=pid,
            host=peer.remoteHost,
            port=peer.remotePort,
            message=message,
        )
