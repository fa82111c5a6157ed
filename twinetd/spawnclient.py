# -*- test-case-name: tests.unit.test_spawnclient,tests.integration.test_spawner -*-
"""
Children started by a spawner process (C{twistd twinetd
--spawner-process}): L{ProcessSpawner}.

L{twinetd.spawn.PosixSpawner} starts each child from the daemon, which is
suspended in C{vfork} until the child's C{execve} (400-700 us here) and
whose C{clone} copies its descriptor table (4 descriptors per bridged
connection).  L{ProcessSpawner} sends each start to a small process
(L{twinetd.spawnerprocess}) over a C{SOCK_SEQPACKET} socket, the child's
descriptors with it (C{SCM_RIGHTS}), and goes on: the pid, the exit status
and any failure come back as messages the reactor reads.

What the modes see does not change: the transport is Twisted's
L{twinetd.spawn.SpawnedProcess}'s class (pipes, C{processExited} and
C{processEnded} with the same L{ProcessDone} / L{ProcessTerminated}), whose
C{makeConnection} comes when the pid is known; signals go through the
spawner process, which reaps the children, so a reaped pid is never
signalled.  A missing or non-executable program is the same synchronous
L{SpawnError} (checked before the request); a program that fails to
execute later (a C{user} that may not run it, a bad binary) ends its
protocol with that L{SpawnError} as the reason of C{processEnded}, without
C{makeConnection} or C{processExited}: L{twinetd.child.ChildProcess} then
reports it as a failed spawn, without C{START} or C{EXIT}.

If the spawner process dies, its children can no longer be reaped or
signalled safely: the daemon kills their process groups (C{SIGKILL}, at
once: the pids are not reused that fast), reports them ended by that
signal, ends those whose pid had not come back (without a connection),
and starts a new spawner process at the next spawn.  (A child started in
the instant before the death, its pid not yet sent, stays unknown.)

The daemon never waits for the spawner process: what its socket has no
room for waits in the channel's queue (L{QUEUE_LIMIT} messages, their
descriptors with them; a spawn beyond it fails at once), sent as room
comes.  A spawner process that takes nothing for L{STUCK_TIMEOUT} seconds
while messages wait (an C{execve} hung on a dead network file system, a
stopped process) is killed and replaced, as if it had died.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ProcessExitedAlready
from twisted.internet.interfaces import (
    IDelayedCall,
    IProcessProtocol,
    IProcessTransport,
    IReactorFDSet,
    IReactorProcess,
    IReactorTime,
    IReadDescriptor,
    IWriteDescriptor,
)
from twisted.internet.process import Process
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

import twinetd
from twinetd._twistedcompat import (
    callProcessEnded,
    callProcessExited,
    cancelCall,
    initWithoutStarting,
)
from twinetd.errors import SpawnError, SpawnerUnavailable
from twinetd.forkexec import environmentBlock
from twinetd.launch import LaunchPlan
from twinetd.spawn import (
    ChildFDs,
    IProcessGroup,
    PosixSpawner,
    SpawnedProcess,
    _signalNumber,
    checkExecutable,
    childStart,
    childStdio,
    startFailure,
)
from twinetd.spawnerprocess import decode, encode

log = Logger()

#: Messages the daemon holds for a spawner process whose socket is full;
#: a spawn beyond that fails at once.
QUEUE_LIMIT = 1024

#: Seconds a spawner process may take no message while some wait, before it
#: counts as stuck (and is replaced).
STUCK_TIMEOUT = 5.0

#: Packets read per reactor iteration.
_BATCH = 256


@implementer(IProcessGroup)
class RemoteProcess(Process):
    """
    A child started by the spawner process: Twisted's process transport
    for its pipes, told its pid and its exit by L{ProcessSpawner}.

    @ivar ident: the daemon's id of the child.
    @ivar processGroup: its process group (its pid), once known.
    @ivar usedFastPath: as L{SpawnedProcess}'s (in the spawner process).
    """

    processGroup: int | None = None
    usedFastPath = False
    ident = -1
    _forgotten = False
    _startError: SpawnError | None = None

    def __init__(
        self,
        spawner: ProcessSpawner,
        protocol: IProcessProtocol,
        childFDs: ChildFDs | None,
        request: Callable[[dict[int, int]], int],
        executable: str,
    ) -> None:
        """
        Make the pipes C{childFDs} asks for and send the request (C{request}
        with the child's descriptors gives the id); the pipes are read once
        the child has started.
        """
        initWithoutStarting(self, protocol)
        self.executable = executable
        self._spawner = spawner
        self._reactor = spawner.reactor
        self.pipes: dict[int, Any] = {}
        if childFDs is None:
            childFDs = {0: "w", 1: "r", 2: "r"}
        opened: list[int] = []
        fdmap: dict[int, int] = {}
        ours: dict[int, tuple[int, str]] = {}
        try:
            for childFD, target in childFDs.items():
                if target in ("r", "w"):
                    readFD, writeFD = os.pipe()
                    opened += [readFD, writeFD]
                    theirs, mine = (
                        (writeFD, readFD) if target == "r" else (readFD, writeFD)
                    )
                    fdmap[childFD] = theirs
                    ours[childFD] = (mine, str(target))
                else:
                    assert isinstance(target, int)
                    fdmap[childFD] = target
            self.ident = request(fdmap)
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise
        for childFD, (parentFD, kind) in ours.items():
            os.close(fdmap[childFD])
            helper: Any
            if kind == "r":
                helper = self.processReaderFactory(  # type: ignore[no-untyped-call]
                    self._reactor, self, childFD, parentFD
                )
            else:
                helper = self.processWriterFactory(  # type: ignore[no-untyped-call]
                    self._reactor, self, childFD, parentFD, forceReadHack=True
                )
            # Nothing reaches the protocol before its connectionMade.
            helper.stopReading()
            self.pipes[childFD] = helper

    def started(self, pid: int) -> None:
        """
        The spawner process started the child as C{pid}.
        """
        self.pid = self.processGroup = pid
        self._readPipes()
        try:
            if self.proto is not None:
                self.proto.makeConnection(self)
        except BaseException:
            log.failure("while starting process {pid}", pid=pid)

    def failed(self, status: int, error: SpawnError | None = None) -> None:
        """
        The child never ran its program: its pipes end and the protocol's
        C{processEnded} has C{error} (the start's failure, as L{spawn}
        would have raised it) or else C{status}, without C{processExited}.
        """
        self._startError = error
        self.status = status
        self.lostProcess += 1
        self._readPipes()
        self.maybeCallProcessEnded()

    def exited(self, status: int) -> None:
        """
        The spawner process reaped the child (C{waitpid}'s C{status}).
        """
        self.processEnded(status)

    def spawnerLost(self) -> None:
        """
        The spawner process is gone: kill the child's group (still its
        until its new parent reaps it, which cannot happen before it dies)
        and report it killed.
        """
        self._forgotten = True
        if self.lostProcess:
            return
        if self.pid is None:
            self.failed(signal.SIGKILL)
            return
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        self.exited(signal.SIGKILL)

    def _readPipes(self) -> None:
        for helper in self.pipes.values():
            helper.startReading()

    def reapProcess(self) -> None:
        # The spawner process reaps it.
        pass

    def _callProcessExited(self, reason: BaseException) -> None:
        callProcessExited(self, reason)

    def maybeCallProcessEnded(self) -> None:
        if self.pipes or not self.lostProcess:
            return
        # Forgotten first: what processEnded runs may close the spawner.
        if not self._forgotten:
            self._forgotten = True
            self._spawner.forget(self.ident)
        proto, error = self.proto, self._startError
        if error is not None and proto is not None:
            self.proto = None
            try:
                proto.processEnded(Failure(error))  # type: ignore[no-untyped-call]
            except BaseException:
                log.failure("while calling processEnded:")
            return
        callProcessEnded(self)

    def signalProcess(self, signalID: str | int) -> None:
        if self.lostProcess or self._forgotten:
            raise ProcessExitedAlready()
        self._spawner.signal(self.ident, _signalNumber(signalID), False)

    def signalProcessGroup(self, signalID: str | int) -> None:
        if self._forgotten:
            raise ProcessExitedAlready()
        self._spawner.signal(self.ident, _signalNumber(signalID), True)


@implementer(IReadDescriptor, IWriteDescriptor)
@attrs.define(eq=False)
class SpawnerChannel:
    """
    The daemon's end of the spawner process's socket, read by the reactor;
    what the socket has no room for waits in a queue, written as room
    comes (see the module's docstring).

    @ivar _received: called with each message.
    @ivar _lost: called when the socket is lost.
    @ivar _stuck: called when waiting messages made no progress for
        L{STUCK_TIMEOUT} seconds.
    """

    sock: socket.socket
    _reactor: IReactorFDSet
    _clock: IReactorTime
    _received: Callable[[tuple[Any, ...]], None]
    _lost: Callable[[], None]
    _stuck: Callable[[], None]
    _queue: deque[tuple[bytes, list[int]]] = attrs.field(factory=deque, init=False)
    _timer: IDelayedCall | None = attrs.field(default=None, init=False)

    @property
    def waiting(self) -> int:
        """
        Messages waiting for room in the socket.
        """
        return len(self._queue)

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "twinetd-spawner"

    def doRead(self) -> Failure | None:
        for _ in range(_BATCH):
            try:
                packet = self.sock.recv(65536)
            except BlockingIOError:
                return None
            except OSError as e:
                return Failure(e)  # type: ignore[no-untyped-call]
            if not packet:
                return Failure(ConnectionDone())  # type: ignore[no-untyped-call]
            try:
                message = decode(packet)
            except ValueError as e:
                return Failure(e)  # type: ignore[no-untyped-call]
            self._received(message)
        return None

    def connectionLost(self, reason: Failure) -> None:
        self.discard()
        self._lost()

    def send(self, packet: bytes, fds: list[int]) -> None:
        """
        Send C{packet} with C{fds} now, or queue it (with copies of C{fds})
        behind those already waiting.

        @raise BlockingIOError: L{QUEUE_LIMIT} messages wait already.
        @raise OSError: the socket failed.
        """
        if not self._queue:
            try:
                socket.send_fds(self.sock, [packet], fds)
                return
            except BlockingIOError:
                pass
        if len(self._queue) >= QUEUE_LIMIT:
            raise BlockingIOError(
                errno.EAGAIN,
                f"the spawner process is {len(self._queue)} messages behind",
            )
        copies: list[int] = []
        try:
            for fd in fds:
                copies.append(os.dup(fd))
        except OSError:
            _closeAll(copies)
            raise
        self._queue.append((packet, copies))
        if len(self._queue) == 1:
            self._reactor.addWriter(self)
            self._watchProgress()

    def doWrite(self) -> Failure | None:
        sent = False
        while self._queue:
            packet, fds = self._queue[0]
            try:
                socket.send_fds(self.sock, [packet], fds)
            except BlockingIOError:
                break
            except OSError as e:
                return Failure(e)  # type: ignore[no-untyped-call]
            self._queue.popleft()
            _closeAll(fds)
            sent = True
        if not self._queue:
            self._reactor.removeWriter(self)
            self._cancelTimer()
        elif sent:
            self._watchProgress()
        return None

    def discard(self) -> None:
        """
        Drop the waiting messages (the spawner process is gone).
        """
        if self._queue:
            self._reactor.removeWriter(self)
        while self._queue:
            _closeAll(self._queue.popleft()[1])
        self._cancelTimer()

    def _watchProgress(self) -> None:
        self._cancelTimer()
        self._timer = self._clock.callLater(STUCK_TIMEOUT, self._noProgress)

    def _noProgress(self) -> None:
        self._timer = None
        if self._queue:
            self._stuck()

    def _cancelTimer(self) -> None:
        self._timer = cancelCall(self._timer)


def _encoded(environment: Sequence[bytes] | Mapping[str, str]) -> list[bytes]:
    # A mapping: from the spawn module of a daemon that was running when
    # twinetd was upgraded under it (before 2026-12, ChildStart carried one).
    if isinstance(environment, Mapping):
        return environmentBlock(environment.items())
    return list(environment)


def _closeAll(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class _Watcher(ProcessProtocol):
    """
    The spawner process itself: its standard error is logged, its end
    fires C{ended}.
    """

    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()
        self._buffer = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            log.error("spawner process: {line}", line=line.decode("utf-8", "replace"))

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class ProcessSpawner(PosixSpawner):
    """
    A L{twinetd.spawn.Spawner} whose children a spawner process starts
    (see the module's docstring).  The process starts at the first spawn;
    L{close} ends it.
    """

    _channel: SpawnerChannel | None = None
    _watcher: _Watcher | None = None
    _nextIdent = 0
    #: The spawner process's pid, once started.
    pid: int | None = None
    #: How many children were still running at the last L{close} (killed).
    killedAtClose = 0

    def __init__(self, reactor: IReactorProcess) -> None:
        super().__init__(reactor)
        self._processes: dict[int, RemoteProcess] = {}

    def _start(
        self, protocol: IProcessProtocol, plan: LaunchPlan, childFDs: ChildFDs | None
    ) -> IProcessTransport:
        start = childStart(plan)
        if os.path.isabs(start.executable):
            checkExecutable(start.executable)

        def request(fdmap: dict[int, int]) -> int:
            stdio = childStdio(fdmap)
            ident = self._nextIdent
            self._nextIdent += 1
            message = (
                "s",
                ident,
                start.argv,
                start.executable,
                _encoded(start.environment),
                tuple(fd is not None for fd in stdio),
                start.umask,
                start.credentials,
            )
            fds = [fd for fd in stdio if fd is not None]
            self._send(encode(message), fds)
            return ident

        process = RemoteProcess(self, protocol, childFDs, request, plan.executable)
        process.usedFastPath = (
            not start.switches and plan.nice is None and not plan.rlimits
        )
        self._processes[process.ident] = process
        return process

    def start(self) -> None:
        """
        Start the spawner process now if it is not running (else the next
        spawn does).
        """
        if self._channel is None:
            self._startProcess()

    def _send(self, packet: bytes, fds: list[int]) -> None:
        channel = self._channel or self._startProcess()
        try:
            channel.send(packet, fds)
        except (BrokenPipeError, ConnectionResetError):
            # It died and the reactor has not said so yet.
            self._lost()
            self._startProcess().send(packet, fds)

    def _startProcess(self) -> SpawnerChannel:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        watcher = _Watcher()
        root = os.path.dirname(os.path.dirname(os.path.abspath(twinetd.__file__)))
        plan = LaunchPlan(
            executable=sys.executable,
            argv=(sys.executable, "-S", "-m", "twinetd.spawnerprocess"),
            env=(("PYTHONPATH", root),),
        )
        try:
            process = SpawnedProcess(
                self._reactor, watcher, plan, {0: theirs.fileno(), 2: "r"}
            )
        except (OSError, subprocess.SubprocessError) as e:
            ours.close()
            raise SpawnerUnavailable(
                f"cannot start the spawner process ({sys.executable}): "
                f"{startFailure(e)}"
            ) from e
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        channel = self._channel = SpawnerChannel(
            ours,
            IReactorFDSet(self._reactor),
            IReactorTime(self._reactor),
            self._received,
            self._lost,
            self._stuck,
        )
        self._watcher = watcher
        self.pid = process.pid
        IReactorFDSet(self._reactor).addReader(channel)
        return channel

    def _received(self, message: tuple[Any, ...]) -> None:
        kind, ident = message[0], message[1]
        process = self._processes.get(ident)
        if process is None:
            return
        if kind == "p":
            process.started(message[2])
        elif kind == "x":
            process.exited(message[2])
        elif kind == "e":
            del self._processes[ident]
            reason = os.strerror(message[2]) if message[2] else message[3]
            process.failed(
                127 << 8, SpawnError(f"cannot execute {process.executable}: {reason}")
            )

    def _stuck(self) -> None:
        assert self._channel is not None
        log.error(
            "the spawner process took none of {count} requests for {seconds} "
            "seconds; killing it and its children",
            count=self._channel.waiting,
            seconds=STUCK_TIMEOUT,
        )
        if self.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
        self._lost(expected=True)

    def _lost(self, expected: bool = False) -> None:
        channel, self._channel = self._channel, None
        if channel is None:
            return
        IReactorFDSet(self._reactor).removeReader(channel)
        channel.discard()
        channel.sock.close()
        processes = list(self._processes.values())
        self._processes.clear()
        if not expected:
            log.error(
                "the spawner process ended; killing its {count} children",
                count=len(processes),
            )
        for process in processes:
            process.spawnerLost()

    def signal(self, ident: int, number: int, group: bool) -> None:
        """
        Ask the spawner process to signal child C{ident} (its group).
        """
        self._control(("k", ident, int(number), group))

    def forget(self, ident: int) -> None:
        """
        Child C{ident} has ended: the spawner process forgets it.
        """
        self._processes.pop(ident, None)
        self._control(("f", ident))

    def _control(self, message: tuple[Any, ...]) -> None:
        channel = self._channel
        if channel is None:
            return
        try:
            channel.send(encode(message), [])
        except (BrokenPipeError, ConnectionResetError):
            # It died and the reactor has not said so yet.
            self._lost()
        except OSError as e:
            log.error("cannot reach the spawner process: {error}", error=e)

    def close(self) -> Deferred[None]:
        """
        End the spawner process (children still running are killed); fires
        when it has ended.
        """
        watcher, self._watcher = self._watcher, None
        self.killedAtClose = len(self._processes)
        self._lost(expected=True)
        if watcher is None:
            return succeed(None)
        return watcher.ended

    @property
    def running(self) -> Mapping[int, RemoteProcess]:
        """
        The children the spawner process started and the daemon has not
        forgotten, by id.
        """
        return self._processes
