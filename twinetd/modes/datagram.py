# -*- test-case-name: tests.unit.test_dgram -*-
"""
The datagram bridge: one child per datagram, the datagram on its standard
input and its standard output back to the sender as one reply datagram.

xinetd 2.3.15.3 busy-loops on a C{wait = no} datagram service and 2.3.15.4
refuses it; twinetd makes it work as a request/response bridge
(L{twinetd.listeners.datagram.DatagramListener} receives the datagrams):

  - an admitted datagram gets its own child: the datagram's bytes are its
    standard input, followed by end of file;
  - everything the child writes to standard output until it closes it (or
    exits) is sent back to the datagram's sender, from the service's
    socket, as B{one} reply datagram.  Empty output sends nothing.  A reply
    is at most 65507 bytes (the largest UDP payload over IPv4): output
    beyond that is dropped, counted and logged once for that child
    (C{replyTruncated}); the child's output keeps being read, so it never
    blocks on a full pipe.  One datagram per write is not supported: a
    child that needs several replies should be a C{wait = yes} service;
  - standard error goes to the log, one event per line, as for streams.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from twinetd import logs
from twinetd.child import ChildProcess
from twinetd.model import Peer

#: The largest reply: the largest UDP payload over IPv4.
MAX_REPLY = 65507


def stdinHolding(datagram: bytes) -> int | None:
    """
    The read end of a pipe that holds C{datagram} and then its end of file:
    a child's standard input with nothing left for the daemon to write
    (no writer to watch, no wait for the child's start).  C{None} when the
    pipe cannot hold it all (an unprivileged user over its
    C{pipe-user-pages-soft} gets one-page pipes): the datagram is then
    written to the child's standard input pipe as it starts.  The caller
    closes the descriptor once the child has it.
    """
    readEnd, writeEnd = os.pipe()
    written = 0
    try:
        if len(datagram) > select.PIPE_BUF:
            # An empty pipe holds at least one page: more may not fit.
            os.set_blocking(writeEnd, False)
        if datagram:
            written = os.write(writeEnd, datagram)
    except BlockingIOError:
        pass
    except BaseException:
        os.close(readEnd)
        raise
    finally:
        os.close(writeEnd)
    if written != len(datagram):
        os.close(readEnd)
        return None
    return readEnd


class ReplyingChild(ChildProcess):
    """
    A child started for one datagram (L{ChildProcess}): the datagram on its
    standard input, its standard output collected into one reply.

    @ivar overflow: bytes of output dropped beyond the largest reply.
    """

    def __init__(
        self,
        serviceLog: logs.ServiceLog,
        peer: Peer,
        clock: IReactorTime,
        killDelay: float,
        onEnded: Callable[[], None],
        datagram: bytes,
        reply: Callable[[bytes], None],
        maxReply: int = MAX_REPLY,
    ) -> None:
        """
        @param datagram: what is written to its standard input as it
            starts, which is then closed (empty when its standard input is
            a pipe that already holds the datagram: L{stdinHolding}).
        @param reply: sends the reply (called at most once, never with
            nothing).
        @param maxReply: the largest reply.
        """
        super().__init__(serviceLog, peer, clock, killDelay, onEnded)
        self._datagram = datagram
        self._sendReply = reply
        self._maxReply = maxReply
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
        room = self._maxReply - self._replySize
        if room > 0:
            kept = data[:room]
            self._reply.append(kept)
            self._replySize += len(kept)
        self.overflow += max(0, len(data) - max(room, 0))

    def childConnectionLost(self, childFD: int) -> None:
        if childFD == 1:
            self._replyOnce()
        else:
            super().childConnectionLost(childFD)

    def processEnded(self, reason: Failure) -> None:
        self._replyOnce()
        super().processEnded(reason)

    def _replyOnce(self) -> None:
        if self._replied:
            return
        self._replied = True
        reply = b"".join(self._reply)
        self._reply = []
        if self.overflow:
            self.serviceLog.emit(
                logs.REPLY_TRUNCATED,
                pid=self.pid,
                sent=len(reply),
                dropped=self.overflow,
            )
        if reply:
            self._sendReply(reply)
