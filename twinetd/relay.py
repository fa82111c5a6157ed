# -*- test-case-name: tests.unit.test_relay -*-
"""
Moving a client's bytes to and from a child's standard input and output
without Twisted's process pipes.

Twisted reads a child's pipe 8 KiB per C{read()}: a bridge built on it
tops out near a third of what the kernel moves.  Here the bridge makes the
child's standard input and output pipes itself (L{ChildPipes}) and relays
them in one of three ways (L{PipeRelay}):

  - C{splice}: the client is a plain socket (L{socketOf}): C{splice(2)}
    from the socket into the child's standard input and from its standard
    output into the socket; no byte passes through Python;
  - C{copy}: the same with C{read()}/C{write()} of up to 64 KiB (where
    C{splice} is missing, or forced off);
  - C{transport}: anything else (TLS, a PROXY header, a wrapping
    protocol): the client's bytes come from the protocol's C{dataReceived}
    and go out through C{transport.write}, with Twisted's producer flow
    control; the pipes are still read 64 KiB at a time.

Every way keeps the bridge's rules: the daemon holds at most one read (64
KiB) per direction beyond the kernel's buffers (the socket is not read
while the child's standard input is full, the child's output is not read
while the client does not take it); the client's end of file closes the
child's standard input once its bytes are written; the child closing its
standard output ends the relay once its bytes are sent; a child that closes
its standard input has the client's further bytes counted and dropped (the
socket is still read, so that the client's departure is noticed).

The descriptors of every relay of a reactor are watched by one epoll
descriptor (L{RelayLoop}), read by the reactor like any socket: a ready
descriptor costs one dispatch, not one of Twisted's per-descriptor
dispatches with their logging context.  Level triggered: a descriptor is
registered only while its relay waits for it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import weakref
from typing import Protocol

from twisted.internet import tcp
from twisted.internet.interfaces import (
    IConsumer,
    IPushProducer,
    IReactorFDSet,
    IReadDescriptor,
    ITransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from twinetd._twistedcompat import writeBuffered

log = Logger(namespace="twinetd")

#: Whether relays may use C{splice(2)} (tests turn it off to force the
#: C{copy} way).
SPLICE = hasattr(os, "splice")
#: Whether relays may take a plain socket from its transport (tests turn it
#: off to force the C{transport} way).
SOCKETS = True

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
    fdset = IReactorFDSet(reactor, None)
    if fdset is None or not hasattr(select, "epoll"):
        return None
    loop = _loops.get(fdset)
    if loop is None:
        loop = _loops[fdset] = RelayLoop(fdset)
    return loop


class IByteTransparent(Interface):
    """
    A wrapping transport that passes the client's bytes through unchanged
    both ways (the daemon's per-connection front): L{socketOf} looks
    through it, at the transport below (its C{transport}).
    """


#: How many wrapping transports L{socketOf} looks through.
_MAX_WRAPPERS = 8


def socketOf(transport: ITransport) -> int | None:
    """
    The descriptor of C{transport}'s socket when the relay may move bytes on
    it directly: a plain TCP or UNIX stream connection of Twisted's, with
    nothing left in its write buffer, under wrappers that pass the client's
    bytes through unchanged (the daemon's front, the PROXY protocol's once
    its header is read) but not TLS.
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
    if handle.type != socket.SOCK_STREAM:
        return None
    fd = handle.fileno()
    return fd if fd >= 0 else None


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


def _waiting(read: int, write: int) -> tuple[bool, bool]:
    """
    After C{EAGAIN} from a C{splice()} between two descriptors: whether
    C{read} has bytes and whether C{write} has room, now.
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
    return readable, writable


@implementer(IPushProducer)
class PipeRelay:
    """
    Relays a client to a child's standard input and output pipes (see the
    module's docstring).

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
        self._socket = socketOf(transport)
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

    # the bridge's side

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

    def _watchStdout(self) -> None:
        if self._stdout is None:
            return
        reading = not (self._paused or self._sending)
        self._loop.watch(self._stdout, _IN if reading else 0, self._stdoutReady)

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

    # readiness

    def _socketReady(self, events: int) -> None:
        if events & (_IN | _BROKEN) and not (self._blocked or self._clientEnded):
            self._up()
        if events & (_OUT | _BROKEN) and self._sending and not self._closed:
            self._down()

    def _stdinReady(self, events: int) -> None:
        if self._pendingIn:
            self._flushIn()
        elif self._blocked:
            # The splice way: room again, or the child is gone.
            self._up()

    def _stdoutReady(self, events: int) -> None:
        self._down()

    # client to child

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
            readable, writable = _waiting(sock, stdin)
            self._block(readable and not writable)
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

    def _cannotSplice(self, e: OSError) -> bool:
        """
        Whether C{e} says this kernel or socket cannot splice (rather than
        that the connection failed): the relay then copies from now on.
        """
        if e.errno not in _NO_SPLICE:
            return False
        self.way = "copy"
        return True

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

    # child to client

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
            readable, writable = _waiting(stdout, sock)
            self._send(readable and not writable)
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

    def _grow(self, pipe: int, moved: int) -> None:
        if moved < _BULK or pipe in self._grown:
            return
        self._grown += (pipe,)
        # Above an unprivileged user's pipe-user-pages-soft: as it is.
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe, _F_SETPIPE_SZ, PIPE_SIZE)

    def _send(self, sending: bool) -> None:
        # Whether the child's output waits for room in the socket.
        if sending != self._sending:
            self._sending = sending
            self._watchSocket()
            self._watchStdout()

    def _outputEnded(self) -> None:
        self._closeStdout()
        self.outputDone = True
        self._events.outputEnded()

    def _closeStdout(self) -> None:
        stdout, self._stdout = self._stdout, None
        if stdout is not None:
            self._loop.watch(stdout, 0, self._stdoutReady)
            os.close(stdout)

    def _failed(self) -> None:
        if not self._closed:
            self._events.clientFailed()
