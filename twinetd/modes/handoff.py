# -*- test-case-name: tests.unit.test_handoff,tests.integration.test_handoff -*-
"""
Giving the real socket to the child, as xinetd does for every program.

Two cases:

  - L{handOff} (and L{HandoffProtocol} around it): a C{wait = no} stream
    connection accepted by Twisted becomes the child's descriptors 0 and 1
    (and 2, or a pipe to the log), in blocking mode.  The daemon then forgets
    the socket: it stops watching it, closes its own descriptor I{without}
    C{shutdown()} (which would end the child's connection too; Twisted's
    orderly close calls it, and its abort sends a reset) and the transport's
    protocol gets C{connectionLost} with L{SocketHandedOff}.  The client sees
    end of file the moment the child (and whatever it passed the socket on
    to) exits: the daemon keeps no copy, unlike Twisted's old inetd.
  - L{HandoffChild}, the tracker of a child given a socket, which the
    C{wait = yes} stream listener also uses
    (L{twinetd.listeners.waitstream}): there the child gets the
    I{listening} socket and accepts itself.

A handed-off connection needs a plain socket (TCP, UNIX, or one systemd
passed): the front hands the protocol the socket's own transport.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from twisted.internet.error import (
    ConnectionDone,
)
from twisted.internet.interfaces import (
    IReactorTime,
    ISystemHandle,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from twinetd import logs
from twinetd._twistedcompat import releaseHandedOver, takeUnsentOutput
from twinetd.child import ChildConnection, ChildProcess, peerFromTransport, spawnFailed
from twinetd.errors import SpawnError
from twinetd.launch import LaunchPlan
from twinetd.model import Peer
from twinetd.spawn import ChildFDs, Spawner

if TYPE_CHECKING:
    from twinetd.child import ChildSetup

#: Linux's C{IPV6_ADDRFORM} (C{<linux/in6.h>}); Python does not export it.
_IPV6_ADDRFORM = 1


class SocketHandedOff(ConnectionDone):
    """
    The connection's socket now belongs to a child: the daemon's part of
    the connection is over, the client's is not.
    """


#: The reason every handed-off connection ends with for the daemon (one
#: instance, as Twisted's own C{connectionDone}: a Failure of an exception
#: without a traceback is the same for every connection).
HANDED_OFF = Failure(SocketHandedOff("socket handed to the child"))  # type: ignore[no-untyped-call]


class HandoffChild(ChildProcess):
    """
    Tracks a child that was given a socket (L{ChildProcess}): logs C{START}
    and C{EXIT}, logs its standard error when that is a pipe, reaps it,
    and calls C{onEnded} once when it has ended; L{stop} sends C{SIGTERM}
    (to its process group when it leads one), then C{SIGKILL} after the
    kill delay.

    @ivar onStarted: called once, as soon as the child exists and before
        its C{START} is logged (L{handOff}: the daemon lets go of the
        socket there).
    """

    onStarted: Callable[[], None] | None = None

    def connectionMade(self) -> None:
        started, self.onStarted = self.onStarted, None
        if started is not None:
            started()
        super().connectionMade()


def _toIPv4(sock: socket.socket, peer: Peer) -> None:
    """
    An IPv4 client of a dual-stack IPv6 socket: make the socket an IPv4 one
    before the child sees it, as xinetd does (C{IPV6_ADDRFORM} in
    connection.c), so that a program calling
    C{socket.fromfd(0, AF_INET, ...).getpeername()} gets C{('a.b.c.d',
    port)}.  C{REMOTE_HOST} keeps the C{::ffff:} form, as in xinetd.
    """
    if (
        sys.platform.startswith("linux")
        and sock.family == socket.AF_INET6
        and peer.mapped
    ):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_ADDRFORM, socket.AF_INET)


def handOff(
    transport: ITransport,
    plan: LaunchPlan,
    spawner: Spawner,
    clock: IReactorTime,
    serviceLog: logs.ServiceLog,
    *,
    peer: Peer | None = None,
    stderrToSocket: bool = False,
    killDelay: float = 5.0,
    onEnded: Callable[[], None] | None = None,
) -> HandoffChild | None:
    """
    Give an accepted connection's socket to a new child.

    The child gets the socket, in blocking mode, as descriptors 0 and 1; its
    descriptor 2 is a pipe whose lines are logged (L{logs.STDERR}) or,
    with C{stderrToSocket}, the socket too (xinetd's behaviour).  Output the
    daemon wrote and Twisted has not sent yet is sent first if the socket
    takes it at once; otherwise the start fails rather than block the
    daemon (the stream front waits until its banners are sent before it
    hands a connection over).

    On success the daemon keeps nothing of the socket: before this returns,
    its descriptor is closed (never shut down) and the transport's protocol
    has had C{connectionLost} with L{SocketHandedOff}.  Call this before
    the transport has read anything (data Twisted read is not passed on):
    in C{connectionMade}, or with the transport paused until then.

    If the child cannot be started, the failure is logged
    (L{logs.SPAWN_FAILED}), the connection is closed the ordinary way
    and C{onEnded} runs before this returns.

    @param transport: the connection: Twisted's C{tcp.Server} or
        C{unix.Server} (L{ISystemHandle}, and what
        L{twinetd._twistedcompat.releaseHandedOver} uses).
    @param plan: what to run.
    @param serviceLog: the service's log (events, and xinetd's lines).
    @param peer: the client; taken from the transport if not given.
    @param killDelay: for L{HandoffChild.stop}.
    @param onEnded: called once, when the child has ended (or could not be
        started).
    @return: the child's tracker, or C{None} if it could not be started.
    """
    if peer is None:
        peer = peerFromTransport(cast(ITCPTransport, transport))
    sock = cast(socket.socket, ISystemHandle(transport).getHandle())
    child = HandoffChild(serviceLog, peer, clock, killDelay, onEnded)
    released = False

    def release() -> None:
        # The daemon keeps nothing: its descriptor is closed (never shut
        # down: that would end the child's connection too) and the protocol
        # told.  As soon as the child exists, before its START line, the
        # reaping and the EXIT line of a child that was quick: the client
        # sees its end of file when the child's copy goes, not after the
        # daemon's work.  A spawner process starts the child later: then
        # once the request is sent.
        nonlocal released
        if not released:
            released = True
            releaseHandedOver(transport, HANDED_OFF)

    child.onStarted = release
    fd = sock.fileno()
    childFDs: ChildFDs = {0: fd, 1: fd, 2: fd if stderrToSocket else "r"}
    try:
        # Banners written just before the handoff.
        pending = takeUnsentOutput(transport)
        if pending:
            # The socket is still non-blocking: this never waits.
            try:
                sent = sock.send(pending)
            except OSError as e:
                raise SpawnError(f"cannot send pending output: {e}") from e
            if sent < len(pending):
                raise SpawnError(
                    "cannot send pending output: the client is not reading"
                )
        # O_NONBLOCK belongs to the open file, which the child shares: the
        # child expects a blocking socket, the daemon no longer uses it.
        sock.setblocking(True)
        _toIPv4(sock, peer)
        spawner.spawn(child, plan, childFDs)
    except Exception as e:
        child.onStarted = None
        spawnFailed(serviceLog, peer, e)
        if not released:
            with contextlib.suppress(OSError):
                sock.setblocking(False)
            # Nothing was handed over: an ordinary close.
            transport.loseConnection()
        if onEnded is not None:
            onEnded()
        return None
    child.onStarted = None
    release()
    return child


class HandoffProtocol(ChildConnection):
    """
    A connection whose socket is handed to a child as soon as it is made;
    a drop-in for L{twinetd.modes.bridge.BridgeProtocol} (same constructor, plus
    C{stderrToSocket}; L{stop} likewise).

    @ivar child: the child's tracker, once started.
    @ivar lostReason: why the connection was lost, once it was.
    @ivar peer: the client as the listener saw it (with its accept time),
        if it gives it; else taken from the transport.
    """

    peer: Peer | None = None
    child: HandoffChild | None = None
    lostReason: Failure | None = None

    def __init__(
        self,
        setup: ChildSetup,
        onEnded: Callable[[], None] | None = None,
        stderrToSocket: bool = False,
    ) -> None:
        """
        As L{ChildConnection}; C{onEnded} runs once the connection is over
        (right after the handoff) and the child has ended (or could not be
        started).

        @param stderrToSocket: the child's descriptor 2 is the socket too
            (xinetd) instead of a pipe to the log.
        """
        super().__init__(setup, onEnded)
        self._stderrToSocket = stderrToSocket

    def connectionMade(self) -> None:
        assert self.transport is not None
        peer = self.peer or peerFromTransport(cast(ITCPTransport, self.transport))
        try:
            plan = self._makePlan(peer)
        except Exception as e:
            spawnFailed(self.serviceLog, peer, e)
            self._childEnded()
            self.transport.loseConnection()
            return
        self.child = handOff(
            self.transport,
            plan,
            self._spawner,
            self._clock,
            self.serviceLog,
            peer=peer,
            stderrToSocket=self._stderrToSocket,
            killDelay=self._killDelay,
            onEnded=self._childEnded,
        )

    def dataReceived(self, data: bytes) -> None:
        # Only possible when the child could not be started and the
        # connection is closing: the data has nowhere to go.
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lostReason = reason
        self._connectionDone = True
        self._maybeEnded()

    def stop(self) -> None:
        """
        The daemon is shutting down: the child gets C{SIGTERM} now and
        C{SIGKILL} after the kill delay (see L{HandoffChild.stop}).
        """
        if self.child is not None:
            self.child.stop()

    def _childEnded(self) -> None:
        self._childDone = True
        self._maybeEnded()
