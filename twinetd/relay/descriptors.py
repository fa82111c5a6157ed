# -*- test-case-name: tests.unit.test_relay -*-
"""
The descriptors a relay moves bytes between: the client's socket, when its
transport lets the relay have it (L{socketOf}), and the child's standard
input and output pipes (L{ChildPipes}).
"""

from __future__ import annotations

import os
import socket

from twisted.internet import tcp
from twisted.internet.interfaces import ITransport
from zope.interface import Interface

from twinetd._twistedcompat import writeBuffered

#: Whether relays may take a plain socket from its transport (tests turn it
#: off to force the C{transport} way).
SOCKETS = True


class IByteTransparent(Interface):
    """
    A wrapping transport that passes the client's bytes through unchanged
    both ways (the daemon's per-connection front): L{socketOf} looks
    through it, at the transport below (its C{transport}).
    """


#: How many wrapping transports L{socketOf} looks through.
_MAX_WRAPPERS = 8


def socketOf(transport: ITransport) -> socket.socket | None:
    """
    C{transport}'s socket when the relay may move bytes on it directly: a
    plain TCP or UNIX stream connection of Twisted's, with nothing left in
    its write buffer, under wrappers that pass the client's bytes through
    unchanged (the daemon's front, the PROXY protocol's once its header is
    read) but not TLS.
    """
    if not SOCKETS:
        return None
    current: object = transport
    for _ in range(_MAX_WRAPPERS):
        if isinstance(current, tcp.Connection):
            break
        if not IByteTransparent.providedBy(current):
            return None
        current = getattr(current, "transport", None)
    else:
        return None
    if getattr(current, "TLS", False) or writeBuffered(current):
        return None
    handle = current.getHandle()
    if not isinstance(handle, socket.socket) or handle.type != socket.SOCK_STREAM:
        return None
    return handle if handle.fileno() >= 0 else None


class ChildPipes:
    """
    The child's standard input and output pipes: the child's ends (for
    C{childFDs}, closed once it started) and the daemon's (non-blocking).
    """

    def __init__(self) -> None:
        self.stdinChild, self.stdin = os.pipe2(os.O_CLOEXEC)
        try:
            self.stdout, self.stdoutChild = os.pipe2(os.O_CLOEXEC)
        except OSError:
            os.close(self.stdinChild)
            os.close(self.stdin)
            raise
        os.set_blocking(self.stdin, False)
        os.set_blocking(self.stdout, False)

    def childFDs(self) -> dict[int, int | str]:
        """
        The child's descriptors: these pipes, and a Twisted pipe for
        standard error.
        """
        return {0: self.stdinChild, 1: self.stdoutChild, 2: "r"}

    def started(self) -> None:
        """
        The child has its copies (or never will): close the daemon's.
        """
        os.close(self.stdinChild)
        os.close(self.stdoutChild)

    def closeAll(self) -> None:
        """
        The child could not be started.
        """
        self.started()
        os.close(self.stdin)
        os.close(self.stdout)
