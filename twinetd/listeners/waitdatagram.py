# -*- test-case-name: tests.unit.test_dgram -*-
"""
Datagram services whose children get the socket itself: C{wait = yes}, and
C{wait = no} in drop-in mode.  (Datagrams the daemon reads itself are
L{twinetd.listeners.datagram}'s.)

C{wait = no} in drop-in mode: each child receives its own datagram
==================================================================

With C{handOff} (C{twistd twinetd --handoff}, or C{twinetd_mode =
handoff}) a C{wait = no} service works as xinetd's: the child gets the
shared UDP socket as descriptors 0 and 1 (blocking; standard error goes to
the log) and receives the datagram itself.  The daemon peeks at the head
datagram to learn the sender (C{REMOTE_HOST}) and asks the gate;
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
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime

from twinetd import logs
from twinetd._twistedcompat import cancelCall
from twinetd.child import ChildProcess
from twinetd.listeners.base import Runtime, SocketWatch
from twinetd.listeners.datagram import (
    MAX_DATAGRAM,
    DatagramOptions,
    DatagramServing,
    peerOf,
)
from twinetd.listeners.sockets import bindSocket, listenAddress
from twinetd.model import Peer, ServiceConfig
from twinetd.policy.backoff import QUICK_EXIT, Backoff, doubling
from twinetd.policy.gate import Admission

if TYPE_CHECKING:
    from typing_extensions import Unpack

#: The most datagrams one drain reads (the loop is bounded; the rest
#: trigger a new child).
DRAIN_LIMIT = 1024
#: The back-off: the first delay and the longest.
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 10.0

#: Drop-in C{wait = no}: how soon after the spawn, and then how often at
#: most, the daemon looks whether the child has taken its datagram.
HOLD_POLL_FIRST = 0.005
HOLD_POLL_MAX = 0.1


def bindDatagramSocket(config: ServiceConfig) -> socket.socket:
    """
    A bound, blocking UDP socket (see
    L{twinetd.listeners.sockets.bindSocket}).

    @raise OSError: the address cannot be bound.
    """
    return bindSocket(config, socket.SOCK_DGRAM, blocking=True)


class DatagramSocket(Protocol):
    """
    The part of C{socket.socket} a listener that hands it over uses.
    """

    def fileno(self) -> int: ...

    def recvfrom(self, bufsize: int, flags: int = ..., /) -> tuple[bytes, Any]: ...

    def getsockname(self) -> Any: ...

    def setblocking(self, flag: bool, /) -> None: ...

    def close(self) -> None: ...


def drain(sock: DatagramSocket | None, limit: int = DRAIN_LIMIT) -> int:
    """
    Read and drop up to C{limit} waiting datagrams, without blocking;
    return how many.
    """
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


#: A peek that found a queued error, not a datagram.
_UNKNOWN: Any = object()


def peekHead(sock: DatagramSocket | None) -> object:
    """
    The datagram (and sender) at the head of C{sock}'s queue, C{None} if
    none; L{_UNKNOWN} when the peek reported a queued error instead.
    """
    if sock is None:
        return None
    try:
        return sock.recvfrom(MAX_DATAGRAM, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError:
        return _UNKNOWN


class _HandedChild(ChildProcess):
    """
    A child given the socket; its standard error is logged.

    @ivar head: the datagram (and sender) at the head of the queue when it
        was started: the one it is to receive.
    """

    def __init__(
        self,
        listener: WaitDatagramListener,
        peer: Peer,
        onEnded: Callable[[], None],
        head: tuple[bytes, Any],
    ) -> None:
        super().__init__(
            listener.serviceLog,
            peer,
            listener.runtime.clock,
            listener.killDelay,
            onEnded,
        )
        self.head = head

    @property
    def exitedWell(self) -> bool:
        return self.exitStatus == 0


class _Hold:
    """
    Drop-in C{wait = no}: a child was given the socket to receive the
    datagram at the head of the queue, and nothing is watched until it has
    (or has ended).  No event says that a datagram left the queue, so the
    head is looked at shortly after the spawn and then less and less often
    (at most every L{HOLD_POLL_MAX} seconds): the daemon stays idle while a
    child takes its time, where xinetd 2.3.15.3 spins.

    @ivar child: the child held for, if any.
    """

    child: _HandedChild | None = None
    _call: IDelayedCall | None = None

    def __init__(
        self,
        clock: IReactorTime,
        head: Callable[[], object],
        taken: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._head = head
        self._taken = taken
        self._delay = HOLD_POLL_FIRST

    def start(self, child: _HandedChild) -> None:
        self.child = child
        self._delay = HOLD_POLL_FIRST
        self._call = self._clock.callLater(self._delay, self._poll)

    def _poll(self) -> None:
        self._call = None
        child = self.child
        if child is None:
            return
        head = self._head()
        if head is _UNKNOWN or head == child.head:
            self._delay = min(self._delay * 2, HOLD_POLL_MAX)
            self._call = self._clock.callLater(self._delay, self._poll)
            return
        self.child = None
        self._taken()

    def stop(self) -> None:
        self._call = cancelCall(self._call)
        self.child = None


class WaitDatagramListener(DatagramServing):
    """
    A C{wait = yes} datagram service, or a C{wait = no} one in drop-in mode
    (L{handOff}); see the module's docstring.

    @ivar socket: the socket while listening.
    @ivar handOff: drop-in C{wait = no}: each child receives its own
        datagram; otherwise (C{wait = yes}) one child at a time serves the
        socket.
    """

    socket: DatagramSocket | None = None

    def __init__(
        self,
        config: ServiceConfig,
        runtime: Runtime,
        reactor: IReactorFDSet,
        *,
        makeSocket: Callable[[], DatagramSocket] | None = None,
        **options: Unpack[DatagramOptions],
    ) -> None:
        """
        @param reactor: watches the socket.
        @param makeSocket: binds the socket (default L{bindDatagramSocket}).
        @param options: as L{DatagramServing}'s.
        """
        super().__init__(config, runtime, **options)
        self.handOff = not config.wait
        self._makeSocket = makeSocket
        self._watch = SocketWatch(
            self, reactor, self._socketFileno, self._socketReadable
        )
        self._busy = False
        self._failures = Backoff(doubling(BACKOFF_FIRST, BACKOFF_MAX))
        self._backoff: IDelayedCall | None = None
        self._hold = _Hold(self._clock, self._head, self._taken)

    @property
    def boundPort(self) -> int | None:
        if self.socket is None:
            return None
        return int(self.socket.getsockname()[1])

    @property
    def listening(self) -> bool:
        return self.socket is not None

    def _head(self) -> object:
        return peekHead(self.socket)

    def _socketFileno(self) -> int:
        return -1 if self.socket is None else self.socket.fileno()

    def _local(self) -> tuple[str, int]:
        if self.socket is None:
            return "", 0
        name = self.socket.getsockname()
        return str(name[0]), int(name[1])

    # the lifecycle

    def _listen(self) -> None:
        config = self._bindConfig()
        if config is None:
            return
        try:
            if self._makeSocket is not None:
                self.socket = self._makeSocket()
            else:
                self.socket = bindDatagramSocket(config)
        except OSError as e:
            self._cannotListen(e, listenAddress(config), e.strerror or str(e))
            return
        self.serviceLog.listening(listenAddress(config), self.boundPort, "udp")

    def _startAccepting(self) -> None:
        # A socket bound by privilegedStartService (twistd binds before it
        # starts the services) is watched only now: _watch needs running.
        if self.handOff:
            self._watchIfRoom()
        elif not self._busy and self._backoff is None:
            self._watch.watch()

    def _stopAccepting(self) -> None:
        # The datagrams wait in the kernel.
        self._watch.unwatch()

    def _stopListening(self) -> Deferred[None]:
        self._watch.unwatch()
        self._backoff = cancelCall(self._backoff)
        self._hold.stop()
        sock, self.socket = self.socket, None
        if sock is not None:
            # The child keeps its own copy until it ends.
            sock.close()
        return succeed(None)

    # watching the socket

    # each datagram

    def _socketReadable(self) -> None:
        self._watch.unwatch()
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
            self._watch.watch()
            return
        except OSError as e:
            # An error queued on the socket (ICMP); reading it clears it.
            self.log.warn(
                "{service}: receive error: {reason}",
                service=self.config.id,
                reason=e.strerror or str(e),
            )
            self._watch.watch()
            return
        peer = peerOf(addr, self._local(), self._clock.seconds())
        self._busy = True

        def decided(admission: Admission) -> None:
            if self.socket is not sock:
                # Stopped meanwhile.
                admission.release()
                self._busy = False
                return
            if admission.reason is not None:
                # Consume the refused datagram, or it triggers forever.
                drain(self.socket, 1)
                self._drops.drop(admission.reason, peer, admission.detail)
                self._busy = False
                self._watch.watch()
                return
            child: _HandedChild = _HandedChild(
                self,
                peer,
                lambda: self._childEnded(child, admission),
                (data, addr),
            )
            fd = sock.fileno()
            # A previous child may have left O_NONBLOCK on the shared file
            # description (Python's settimeout does): every child starts
            # with a blocking socket, as under xinetd.
            sock.setblocking(True)
            if not self._spawn(child, peer, admission, {0: fd, 1: fd, 2: "r"}):
                drain(self.socket, 1)
                self._busy = False
                self._failed(None)
            elif self.handOff and not child.ended:
                self._hold.start(child)

        self.ask(peer).addCallback(decided)

    def _ended(self, child: ChildProcess) -> None:
        assert isinstance(child, _HandedChild)
        if self.handOff:
            self._handedOffEnded(child)
            return
        self._busy = False
        if self.socket is None:
            return
        left = drain(self.socket)
        lived = self._clock.seconds() - child.startTime
        if not child.exitedWell or (left and lived < QUICK_EXIT):
            self._failed(child.pid)
        else:
            self._failures.succeeded()
            self._watch.watch()

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
            self._watch.watch()

    # drop-in wait = no: one child per datagram, given the socket

    def _taken(self) -> None:
        # The held child took its datagram: the next one (if any) may have
        # a child of its own.
        self._busy = False
        self._watchIfRoom()

    def _handedOffEnded(self, child: _HandedChild) -> None:
        if child is self._hold.child:
            self._hold.stop()
            self._busy = False
            lived = self._clock.seconds() - child.startTime
            if (
                self.socket is not None
                and peekHead(self.socket) == child.head
                and (not child.exitedWell or lived < QUICK_EXIT)
            ):
                # It never received its datagram: drop it, or the next
                # child would get it, and the next (xinetd's loop).  An
                # identical datagram queued behind it is told apart only by
                # the child's success and life time, as for wait = yes.
                drain(self.socket, 1)
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
            self._watch.watch()
