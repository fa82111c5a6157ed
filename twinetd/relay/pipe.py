# -*- test-case-name: tests.unit.test_relay -*-
"""
L{PipeRelay}: a client relayed to a child's standard input and output pipes
(see L{twinetd.relay}), one class per direction (L{_ClientToChild},
L{_ChildToClient}) over their shared state (L{_Relay}).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
from typing import Protocol

from twisted.internet.interfaces import IConsumer, IPushProducer, ITransport
from zope.interface import implementer

from twinetd.relay.descriptors import ChildPipes, socketOf
from twinetd.relay.loop import RelayLoop

#: Whether relays may use C{splice(2)} (tests turn it off to force the
#: C{copy} way).
SPLICE = hasattr(os, "splice")
#: A pipe that carries a bulk transfer grows to this size (Linux's default
#: C{pipe-max-size}): fewer, larger moves, fewer wake-ups of the child.
#: Pipes of connections that carry little keep the kernel's 64 KiB.
PIPE_SIZE = 1 << 20
#: One move of at least this many bytes makes its pipe grow.
_BULK = 32 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

#: Bytes per C{read()} of the C{copy} and C{transport} ways.
CHUNK = 64 * 1024
#: Bytes asked of one C{splice()}: the pipe's capacity bounds what moves.
_SPLICE_LEN = 1 << 20
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)

#: What C{splice()} fails with where it cannot be used at all.
_NO_SPLICE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT
_BROKEN = select.EPOLLERR | select.EPOLLHUP

#: One read buffer for every relay: the reactor runs one callback at a
#: time, and what is not written at once is copied out of it.
_buffer = bytearray(CHUNK)
_view = memoryview(_buffer)


class RelayEvents(Protocol):
    """
    What a L{PipeRelay} tells the bridge.
    """

    def clientBlocked(self) -> None:
        """
        The client's bytes wait for the child: the socket is not read.
        """

    def clientUnblocked(self) -> None:
        """
        The socket is read again (the child took bytes, or is gone).
        """

    def clientFailed(self) -> None:
        """
        The client's socket failed (reset, or its peer left): drop it.
        """

    def outputEnded(self) -> None:
        """
        The child's standard output ended and all of it went to the client.
        """


@implementer(IPushProducer)
class _Already:
    """
    A producer whose pausing and resuming the relay already did.
    """

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


_ALREADY = _Already()


def _stalled(read: int, write: int) -> bool:
    """
    After C{EAGAIN} from a C{splice()} between two descriptors: whether
    C{read} has bytes while C{write} has no room, now (else the move waits
    for C{read}).
    """
    poller = select.poll()
    poller.register(read, select.POLLIN)
    poller.register(write, select.POLLOUT)
    readable = writable = False
    for fd, events in poller.poll(0):
        if fd == read and events & (select.POLLIN | select.POLLHUP | select.POLLERR):
            readable = True
        if fd == write and events & (select.POLLOUT | select.POLLERR):
            writable = True
    return readable and not writable


class _Relay:
    """
    What both directions of a L{PipeRelay} share: its state, the socket's
    registration (read for one direction, written for the other) and the
    moves' common steps.

    @ivar way: C{"splice"}, C{"copy"} or C{"transport"}.
    @ivar bytesIn: bytes read from the client (also those dropped once the
        child's standard input is gone).
    @ivar bytesOut: bytes of the child's output sent (or, the
        C{transport} way, given) to the client.
    @ivar outputDone: the child's standard output ended, or the relay was
        closed.
    """

    bytesIn = 0
    bytesOut = 0
    outputDone = False
    # client to child
    _blocked = False
    _clientEnded = False
    _stdinGone = False
    _pendingIn = b""
    # child to client
    _paused = False
    _sending = False
    _pendingOut = b""
    _closed = False

    def __init__(
        self,
        loop: RelayLoop,
        transport: ITransport,
        pipes: ChildPipes,
        events: RelayEvents,
    ) -> None:
        """
        @param transport: the client's transport; the relay takes its socket
            (and pauses it) when L{socketOf} gives one.
        """
        self._loop = loop
        self._transport = transport
        self._events = events
        self._stdin: int | None = pipes.stdin
        self._stdout: int | None = pipes.stdout
        self._handle = socketOf(transport)
        self._socket = None if self._handle is None else self._handle.fileno()
        if self._socket is None:
            self.way = "transport"
        else:
            self.way = "splice" if SPLICE else "copy"
        self._sockMask = 0
        self._grown: tuple[int, ...] = ()

    @property
    def readingClient(self) -> bool:
        """
        Whether the relay reads the client now (not held back by a child
        that does not read, nor ended).
        """
        if self._socket is not None:
            return bool(self._sockMask & _IN)
        return not (self._blocked or self._clientEnded or self._closed)

    @property
    def heldIn(self) -> int:
        """
        Bytes of the client's the daemon holds for the child.
        """
        return len(self._pendingIn)

    @property
    def heldOut(self) -> int:
        """
        Bytes of the child's the daemon holds for the client (beyond the
        transport's own buffer, the C{transport} way).
        """
        return len(self._pendingOut)

    # the socket: read for the child, written for the client

    def _watchSocket(self) -> None:
        if self._socket is None or self._closed:
            return
        mask = 0
        if not (self._blocked or self._clientEnded):
            mask |= _IN
        if self._sending:
            mask |= _OUT
        if mask != self._sockMask:
            self._sockMask = mask
            self._loop.watch(self._socket, mask, self._socketReady)

    def _socketReady(self, events: int) -> None:
        if events & (_IN | _BROKEN) and not (self._blocked or self._clientEnded):
            self._up()
        if events & (_OUT | _BROKEN) and self._sending and not self._closed:
            self._down()

    def _up(self) -> None:
        """
        Move the client's bytes to the child (L{_ClientToChild}).
        """
        raise NotImplementedError()

    def _down(self) -> None:
        """
        Move the child's output to the client (L{_ChildToClient}).
        """
        raise NotImplementedError()

    # steps of both directions

    def _cannotSplice(self, e: OSError) -> bool:
        """
        Whether C{e} says this kernel or socket cannot splice (rather than
        that the connection failed): the relay then copies from now on.
        """
        if e.errno not in _NO_SPLICE:
            return False
        self.way = "copy"
        return True

    def _grow(self, pipe: int, moved: int) -> None:
        if moved < _BULK or pipe in self._grown:
            return
        self._grown += (pipe,)
        # Above an unprivileged user's pipe-user-pages-soft: as it is.
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe, _F_SETPIPE_SZ, PIPE_SIZE)

    def _failed(self) -> None:
        if not self._closed:
            self._events.clientFailed()


class _ClientToChild(_Relay):
    """
    The client's bytes to the child's standard input.
    """

    def clientData(self, data: bytes) -> None:
        """
        Bytes the transport read (the C{transport} way).
        """
        self.bytesIn += len(data)
        if self._stdin is None or self._stdinGone:
            return
        if self._pendingIn:
            self._pendingIn += data
            return
        self._writeIn(data)

    def clientEnded(self) -> None:
        """
        The client's end of file (the C{transport} way): the child's
        standard input closes once its bytes are written.
        """
        self._clientEnded = True
        if not self._pendingIn:
            self._closeStdin()

    # registrations

    def _watchStdin(self) -> None:
        if self._stdin is None:
            return
        self._loop.watch(self._stdin, _OUT if self._blocked else 0, self._stdinReady)

    def _block(self, blocked: bool) -> None:
        if blocked == self._blocked:
            return
        self._blocked = blocked
        self._watchStdin()
        self._watchSocket()
        if blocked:
            self._events.clientBlocked()
        else:
            self._events.clientUnblocked()

    def _stdinReady(self, events: int) -> None:
        if self._pendingIn:
            self._flushIn()
        elif self._blocked:
            # The splice way: room again, or the child is gone.
            self._up()

    # moves

    def _up(self) -> None:
        sock, stdin = self._socket, self._stdin
        assert sock is not None
        if stdin is None or self._stdinGone:
            # The child took no more: read on (to notice the client's
            # departure) and drop.
            self._readClient(sock)
            return
        if self.way == "copy":
            n = self._readClient(sock)
            if n:
                self._grow(stdin, n)
                self._writeIn(_view[:n])
            return
        try:
            n = os.splice(sock, stdin, _SPLICE_LEN, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            self._block(_stalled(sock, stdin))
            return
        except BrokenPipeError:
            self._stdinClosed()
            return
        except OSError as e:
            if self._cannotSplice(e):
                self._up()
            else:
                self._failed()
            return
        if self._took(n):
            self._grow(stdin, n)
            self._block(False)

    def _readClient(self, sock: int) -> int:
        """
        Read the client into the shared buffer: how many bytes came (0 when
        none did, or when it ended or failed, which is handled).
        """
        try:
            n = os.readv(sock, [_buffer])
        except BlockingIOError:
            return 0
        except OSError:
            self._failed()
            return 0
        return self._took(n)

    def _took(self, n: int) -> int:
        if n == 0:
            self._ended()
        self.bytesIn += n
        return n

    def _writeIn(self, data: bytes | memoryview) -> None:
        assert self._stdin is not None
        try:
            written = os.write(self._stdin, data)
        except BlockingIOError:
            written = 0
        except BrokenPipeError:
            self._stdinClosed()
            return
        if written < len(data):
            self._pendingIn = bytes(data[written:])
            self._block(True)

    def _flushIn(self) -> None:
        assert self._stdin is not None
        try:
            written = os.write(self._stdin, self._pendingIn)
        except BlockingIOError:
            return
        except BrokenPipeError:
            self._stdinClosed()
            return
        self._pendingIn = self._pendingIn[written:]
        if self._pendingIn:
            return
        if self._clientEnded:
            self._closeStdin()
        self._block(False)

    def _ended(self) -> None:
        # The client's end of file: no more reading (as Twisted, which reads
        # a half-closed connection no more either).
        self._clientEnded = True
        self._watchSocket()
        if not self._pendingIn:
            self._closeStdin()

    def _stdinClosed(self) -> None:
        self._stdinGone = True
        self._pendingIn = b""
        self._closeStdin()
        self._block(False)
        self._watchSocket()

    def _closeStdin(self) -> None:
        stdin, self._stdin = self._stdin, None
        if stdin is not None:
            self._loop.watch(stdin, 0, self._stdinReady)
            os.close(stdin)


class _ChildToClient(_Relay):
    """
    The child's standard output to the client.
    """

    # IPushProducer, for the transport (the transport way)

    def pauseProducing(self) -> None:
        self._paused = True
        self._watchStdout()

    def resumeProducing(self) -> None:
        self._paused = False
        self._watchStdout()

    def stopProducing(self) -> None:
        # The bridge learns of the connection's end from connectionLost.
        pass

    # registrations

    def _watchStdout(self) -> None:
        if self._stdout is None:
            return
        reading = not (self._paused or self._sending)
        self._loop.watch(self._stdout, _IN if reading else 0, self._stdoutReady)

    def _stdoutReady(self, events: int) -> None:
        self._down()

    def _send(self, sending: bool) -> None:
        # Whether the child's output waits for room in the socket.
        if sending != self._sending:
            self._sending = sending
            self._watchSocket()
            self._watchStdout()

    # moves

    def _down(self) -> None:
        stdout = self._stdout
        if stdout is None or self._closed:
            return
        sock = self._socket
        if sock is None:
            self._downTransport(stdout)
            return
        if self.way == "copy":
            self._downCopy(stdout, sock)
            return
        try:
            n = os.splice(stdout, sock, _SPLICE_LEN, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            self._send(_stalled(stdout, sock))
            return
        except OSError as e:
            if self._cannotSplice(e):
                self._down()
            else:
                self._failed()
            return
        if n == 0:
            self._outputEnded()
            return
        self.bytesOut += n
        self._grow(stdout, n)
        self._send(False)

    def _downCopy(self, stdout: int, sock: int) -> None:
        if self._pendingOut:
            try:
                written = os.write(sock, self._pendingOut)
            except BlockingIOError:
                return
            except OSError:
                self._failed()
                return
            self.bytesOut += written
            self._pendingOut = self._pendingOut[written:]
            if self._pendingOut:
                return
            self._send(False)
            return
        try:
            n = os.readv(stdout, [_buffer])
        except BlockingIOError:
            return
        if n == 0:
            self._outputEnded()
            return
        self._grow(stdout, n)
        try:
            written = os.write(sock, _view[:n])
        except BlockingIOError:
            written = 0
        except OSError:
            self._failed()
            return
        self.bytesOut += written
        if written < n:
            self._pendingOut = bytes(_view[written:n])
            self._send(True)

    def _downTransport(self, stdout: int) -> None:
        try:
            data = os.read(stdout, CHUNK)
        except BlockingIOError:
            return
        if not data:
            self._outputEnded()
            return
        self._grow(stdout, len(data))
        self.bytesOut += len(data)
        # May pause this producer at once (pauseProducing).
        self._transport.write(data)

    def _outputEnded(self) -> None:
        self._closeStdout()
        self.outputDone = True
        if self._handle is not None:
            # The client's end of file now, not after the child's exit and
            # the transport's close, a reactor turn later: all of the
            # output went to the socket, and only the relay writes to it.
            with contextlib.suppress(OSError):
                self._handle.shutdown(socket.SHUT_WR)
        self._events.outputEnded()

    def _closeStdout(self) -> None:
        stdout, self._stdout = self._stdout, None
        if stdout is not None:
            self._loop.watch(stdout, 0, self._stdoutReady)
            os.close(stdout)


@implementer(IPushProducer)
class PipeRelay(_ClientToChild, _ChildToClient):
    """
    Relays a client to a child's standard input and output pipes (see
    L{twinetd.relay}): the two directions, started and closed together.
    """

    @property
    def clientProducer(self) -> IPushProducer | None:
        """
        What pausing the client's reading for flow control pauses: the
        transport (C{None}) the C{transport} way; nothing otherwise (the
        relay stops reading the socket itself).
        """
        return None if self._socket is None else _ALREADY

    def start(self) -> None:
        """
        Start relaying.
        """
        if self._socket is not None:
            # The socket is the relay's from now on; Twisted's transport only
            # closes it in the end.
            IPushProducer(self._transport).pauseProducing()
        else:
            IConsumer(self._transport).registerProducer(self, True)
        self._watchSocket()
        self._watchStdout()

    def close(self) -> None:
        """
        Stop relaying and close the daemon's ends of the pipes; the socket
        is the transport's again.
        """
        if self._closed:
            return
        self._closed = True
        self.outputDone = True
        self._pendingIn = self._pendingOut = b""
        if self._socket is not None:
            self._sockMask = 0
            self._loop.watch(self._socket, 0, self._socketReady)
        else:
            IConsumer(self._transport).unregisterProducer()
        self._closeStdin()
        self._closeStdout()
