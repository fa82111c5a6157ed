# -*- test-case-name: tests.unit.test_hangup,tests.integration.test_hangup -*-
"""
Noticing, without reading, that the peer of a paused socket has gone.

A transport whose reading is paused for flow control (its client's bytes
wait for a child or a target that does not read them) learns of the peer's
end of file or reset only when it reads again: Twisted hears of both from
C{recv()} alone.  A client that leaves then would pin its child, its
descriptors and its C{instances}/C{per_source} slot until the child reads.

Linux reports both without reading.  A peer's FIN that arrived sits behind
the unread bytes, but C{poll()} sets C{POLLRDHUP} at once; a reset (or a
retransmission timeout) sets C{POLLERR}.  One epoll descriptor per reactor
(L{HangupWatcher}, read by the reactor like any socket) holds the paused
sockets of the whole daemon, registered for those two conditions only, edge
triggered: data arriving on a paused socket wakes nothing, each change wakes
the daemon once.  A socket is registered only while it is paused, so
connections that are not paused pay nothing, and a paused one pays two
C{epoll_ctl} calls per pause.

An end of file is not a departure by itself: a client that shuts down its
sending side and waits for the reply (half-close) looks exactly like one
that closed its socket.  L{PausedReading} therefore counts a peer as gone
at a reset at once, and at an end of file only when its bytes have waited
C{patience} seconds without the reader taking any more of them.

What cannot be seen without reading: a peer that closes while its own
kernel still holds bytes it could not send (the daemon's receive window is
full) sends its FIN only after them, so nothing arrives; its kernel keeps
the connection alive, probing the zero window, as long as the daemon
answers.  Such a connection is noticed when the reader takes its bytes (the
FIN follows), or at once when anything is written to the peer (its kernel
answers with a reset).  Until then it costs what an open connection costs.
"""

from __future__ import annotations

import contextlib
import select
import weakref
from collections.abc import Callable
from typing import Any, Protocol, cast

import attrs
from twisted.internet.interfaces import (
    IDelayedCall,
    IPushProducer,
    IReactorFDSet,
    IReactorTime,
    IReadDescriptor,
    ISystemHandle,
    ITransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twinetd._twistedcompat import cancelCall

log = Logger()

_EPOLL = hasattr(select, "epoll") and hasattr(select, "EPOLLRDHUP")

#: C{onHangup}'s argument: the peer reset the connection (it is gone).
RESET = True
#: C{onHangup}'s argument: the peer's end of file arrived (it stopped
#: sending; it may still wait for a reply).
END_OF_FILE = False


def peerState(fd: int) -> bool | None:
    """
    What C{poll()} says now of a connected socket's peer, without reading:
    L{RESET}, L{END_OF_FILE}, or C{None} when neither happened.
    """
    poller = select.poll()
    poller.register(fd, select.POLLRDHUP)
    for _, events in poller.poll(0):
        if events & select.POLLNVAL:
            return None
        if events & select.POLLERR:
            return RESET
        if events & (select.POLLRDHUP | select.POLLHUP):
            return END_OF_FILE
    return None


def socketFileno(transport: object) -> int | None:
    """
    The descriptor of the socket under C{transport}, under any wrapping
    (the stream front, TLS, a PROXY header): its peer's end of file or
    reset is the connection's.  C{None} when there is none.
    """
    current: object = transport
    for _ in range(8):
        handle = ISystemHandle(current, None)
        if handle is not None:
            try:
                fd = cast(Any, handle.getHandle()).fileno()
            except Exception:
                # A TLS connection's handle is its OpenSSL connection.
                fd = None
            if isinstance(fd, int) and fd >= 0:
                return fd
        current = getattr(current, "transport", None)
        if current is None:
            break
    return None


class Watcher(Protocol):
    """
    What L{PausedReading} needs of L{HangupWatcher} (tests give a fake).
    """

    def watch(
        self, transport: ITransport, onHangup: Callable[[bool], None]
    ) -> int | None: ...

    def unwatch(self, token: int) -> None: ...


@implementer(IReadDescriptor)
class HangupWatcher:
    """
    Watches sockets for their peer's end of file or reset, without reading
    them: one epoll descriptor, read by the reactor.
    """

    def __init__(self, reactor: IReactorFDSet) -> None:
        self._reactor = reactor
        self._epoll: select.epoll | None = None
        self._callbacks: dict[int, Callable[[bool], None]] = {}

    def watch(
        self, transport: ITransport, onHangup: Callable[[bool], None]
    ) -> int | None:
        """
        Call C{onHangup} with L{RESET} or L{END_OF_FILE} when the peer of
        C{transport}'s socket resets the connection or its end of file
        arrives (at once if it already has); L{unwatch} before the socket is
        closed or read again.

        @return: the token for L{unwatch}, or C{None} when C{transport} has
            no socket this watcher can watch (nothing will be called).
        """
        fd = socketFileno(transport) if _EPOLL else None
        if fd is None:
            return None
        if self._epoll is None:
            self._epoll = select.epoll()
        if not self._callbacks:
            self._reactor.addReader(self)
        events = select.EPOLLRDHUP | select.EPOLLET
        try:
            self._epoll.register(fd, events)
        except FileExistsError:
            self._epoll.modify(fd, events)
        except OSError:
            return None
        self._callbacks[fd] = onHangup
        return fd

    def unwatch(self, token: int) -> None:
        """
        Stop watching; a socket closed meanwhile is not an error.
        """
        self._callbacks.pop(token, None)
        if self._epoll is not None:
            # EBADF or ENOENT: the socket was closed first, which removed it.
            with contextlib.suppress(OSError):
                self._epoll.unregister(token)

    # IReadDescriptor

    def fileno(self) -> int:
        return -1 if self._epoll is None else self._epoll.fileno()

    def doRead(self) -> None:
        if self._epoll is None:
            return
        for fd, _ in self._epoll.poll(0):
            callback = self._callbacks.get(fd)
            if callback is None:
                continue
            # Asked again of the socket itself: a registration left behind
            # by a closed socket (another process still held it) may report
            # under a descriptor number that was reused since.
            state = peerState(fd)
            if state is None:
                continue
            try:
                callback(state)
            except Exception:
                log.failure("while handling a peer's hangup")

    def connectionLost(self, reason: Failure) -> None:
        epoll, self._epoll = self._epoll, None
        self._callbacks.clear()
        if epoll is not None:
            epoll.close()

    def logPrefix(self) -> str:
        return "twinetd-hangups"


_watchers: weakref.WeakKeyDictionary[object, HangupWatcher] = (
    weakref.WeakKeyDictionary()
)


def hangupWatcher(reactor: object) -> HangupWatcher | None:
    """
    The one L{HangupWatcher} of C{reactor}, or C{None} when C{reactor} does
    not provide L{IReactorFDSet} or the platform has no C{epoll} (paused
    peers are then noticed only when reading resumes).
    """
    fdset = IReactorFDSet(reactor, None)
    if fdset is None or not _EPOLL:
        return None
    watcher = _watchers.get(fdset)
    if watcher is None:
        watcher = _watchers[fdset] = HangupWatcher(fdset)
    return watcher


@attrs.define(eq=False)
class PausedReading:
    """
    A transport's reading, paused and resumed for flow control; while it is
    paused, its peer's departure is noticed (L{HangupWatcher}).

    The peer counts as gone when it resets the connection, or when its end
    of file has arrived and the transport then stays paused C{patience}
    seconds: its bytes waited that long without the reader taking any.

    @ivar patience: seconds, or C{None}: an end of file never makes the peer
        gone (only a reset does).
    @ivar _onGone: called once with L{RESET} or L{END_OF_FILE} when the peer
        counts as gone; watching has stopped by then, and the transport is
        still paused.
    @ivar _producer: what pausing and resuming pause and resume, by default
        the transport itself (a relay that reads the socket itself gives its
        own).
    @ivar paused: whether reading is paused.
    """

    _transport: ITransport
    _watcher: Watcher | None
    _clock: IReactorTime
    patience: float | None
    _onGone: Callable[[bool], None]
    _producer: IPushProducer | None = None
    paused: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _token: int | None = attrs.field(default=None, init=False)
    _timer: IDelayedCall | None = attrs.field(default=None, init=False)

    def pause(self, watch: bool = True) -> None:
        """
        Stop reading, and watch the peer unless C{watch} is false (a pause
        expected to end at once: L{watch} if it does not).
        """
        if self.paused or self._closed:
            return
        self.paused = True
        (self._producer or IPushProducer(self._transport)).pauseProducing()
        if watch:
            self.watch()

    def watch(self) -> None:
        """
        Watch the peer while paused (if not watched yet).
        """
        if (
            self.paused
            and not self._closed
            and self._token is None
            and self._watcher is not None
        ):
            self._token = self._watcher.watch(self._transport, self._hangup)

    def resume(self) -> None:
        if not self.paused or self._closed:
            return
        self.paused = False
        self._stopWatching()
        (self._producer or IPushProducer(self._transport)).resumeProducing()

    def close(self) -> None:
        """
        The connection is over or closing: stop watching, for good.
        """
        self._closed = True
        self._stopWatching()

    def _stopWatching(self) -> None:
        self._timer = cancelCall(self._timer)
        token, self._token = self._token, None
        if token is not None and self._watcher is not None:
            self._watcher.unwatch(token)

    def _hangup(self, reset: bool) -> None:
        if not self.paused or self._closed:
            return
        if reset:
            self._gone(RESET)
        elif self.patience is not None and self._timer is None:
            self._timer = self._clock.callLater(self.patience, self._gone, END_OF_FILE)

    def _gone(self, reset: bool) -> None:
        self.close()
        self._onGone(reset)
