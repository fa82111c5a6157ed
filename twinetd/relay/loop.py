# -*- test-case-name: tests.unit.test_relay -*-
"""
One epoll descriptor for every relay of a reactor (L{RelayLoop}), read by
the reactor like any socket: a ready descriptor costs one dispatch, not one
of Twisted's per-descriptor dispatches with their logging context.  Level
triggered: a descriptor is registered only while its relay waits for it.
"""

from __future__ import annotations

import contextlib
import errno
import select
import weakref
from typing import Protocol

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger()


class _Ready(Protocol):
    def __call__(self, events: int) -> None: ...


@implementer(IReadDescriptor)
class RelayLoop:
    """
    One epoll descriptor for the relays of a reactor, read by the reactor.
    """

    def __init__(self, reactor: IReactorFDSet) -> None:
        self._reactor = reactor
        self._epoll: select.epoll | None = None
        self._handlers: dict[int, _Ready] = {}
        self._masks: dict[int, int] = {}

    def watch(self, fd: int, mask: int, handler: _Ready) -> None:
        """
        Call C{handler} with the events while C{fd} is ready for C{mask}
        (C{EPOLLIN}, C{EPOLLOUT}, both); a mask of 0 stops watching (also
        before C{fd} is closed).
        """
        old = self._masks.get(fd, 0)
        if mask == old:
            if mask:
                self._handlers[fd] = handler
            return
        if self._epoll is None:
            self._epoll = select.epoll()
        if not mask:
            del self._masks[fd]
            del self._handlers[fd]
            # A descriptor closed first (a bug) left the set by itself.
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
            if not self._masks:
                self._reactor.removeReader(self)
            return
        if not self._masks:
            self._reactor.addReader(self)
        try:
            if old:
                self._epoll.modify(fd, mask)
            else:
                self._epoll.register(fd, mask)
        except OSError as e:
            # The set and this table disagree only if a descriptor was
            # closed while registered (and its number reused): start over.
            if e.errno not in (errno.ENOENT, errno.EEXIST):
                if not self._masks:
                    self._reactor.removeReader(self)
                raise
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
            self._epoll.register(fd, mask)
        self._masks[fd] = mask
        self._handlers[fd] = handler

    def fileno(self) -> int:
        return -1 if self._epoll is None else self._epoll.fileno()

    def doRead(self) -> None:
        if self._epoll is None:
            return
        for fd, events in self._epoll.poll(0, 256):
            handler = self._handlers.get(fd)
            if handler is None:
                continue
            try:
                handler(events)
            except Exception:
                log.failure("while relaying")

    def connectionLost(self, reason: Failure) -> None:
        epoll, self._epoll = self._epoll, None
        self._handlers.clear()
        self._masks.clear()
        if epoll is not None:
            epoll.close()

    def logPrefix(self) -> str:
        return "twinetd-relay"


_loops: weakref.WeakKeyDictionary[object, RelayLoop] = weakref.WeakKeyDictionary()


def relayLoop(reactor: object) -> RelayLoop | None:
    """
    The one L{RelayLoop} of C{reactor}, or C{None} when it does not provide
    L{IReactorFDSet} or the platform has no epoll.
    """
    global _last
    last = _last
    if last is not None and last[0] is reactor:
        # Asked for every bridged connection, nearly always of one reactor.
        return last[1]
    fdset = IReactorFDSet(reactor, None)
    if fdset is None or not hasattr(select, "epoll"):
        return None
    loop = _loops.get(fdset)
    if loop is None:
        loop = _loops[fdset] = RelayLoop(fdset)
    _last = (reactor, loop)
    return loop


#: The reactor L{relayLoop} was last asked about, and its loop.
_last: tuple[object, RelayLoop] | None = None
