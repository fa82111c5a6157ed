# -*- test-case-name: tests.unit.test_spawnclient,tests.integration.test_spawner -*-
"""
The spawner process: a small process that starts the daemon's children
for it (C{twistd twinetd --spawner-process}, L{twinetd.spawnclient}).

The daemon runs it as C{python -S -m twinetd.spawnerprocess} with its end
of a C{SOCK_SEQPACKET} socket pair as descriptor 0.  It holds a handful of
descriptors, so its C{vfork} copies a small descriptor table, and the
daemon does not wait in C{vfork} at all: it sends a request and goes on.

Messages are C{marshal}led tuples, one per packet.  From the daemon:

  - C{("s", id, argv, executable, environment, slots, umask, credentials)}:
    start a child (C{environment}: a list of C{KEY=value} bytes, as
    C{execve} takes it); its descriptors 0-2 come with the packet
    (C{SCM_RIGHTS}), one for each true entry of C{slots};
  - C{("k", id, signal, group)}: signal the child (C{group}: its process
    group), unless it was reaped (its group until the daemon forgets it);
  - C{("f", id)}: the daemon is done with the child.

To the daemon: C{("p", id, pid)} started; C{("e", id, errno, message)} it
could not be started; C{("x", id, status)} it was reaped (C{waitpid}'s
status).  Signals go through this process, which reaps the children: a
reaped pid is never signalled.  At end of file on its socket (the daemon
closed it or exited) it exits; children still running are left to run.

Standard library only (and L{twinetd.forkexec}): no Twisted to import.
"""

from __future__ import annotations

import collections
import marshal
import os
import select
import signal
import socket

from twinetd.forkexec import environmentBlock, startChild

# Annotations only (mypy reads this as typing.TYPE_CHECKING): no typing
# module in the spawner process.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: The largest packet either side sends (a request with a big environment).
MAX_PACKET = 1 << 20


def encode(message: tuple[Any, ...]) -> bytes:
    """
    One packet of the protocol.
    """
    return marshal.dumps(message)


def decode(packet: bytes) -> tuple[Any, ...]:
    """
    The message in C{packet}.

    @raise ValueError: it is not one.
    """
    try:
        message = marshal.loads(packet)
    except (EOFError, TypeError) as e:
        raise ValueError(f"bad packet: {e}") from None
    if not isinstance(message, tuple) or not message:
        raise ValueError(f"bad packet: {message!r}")
    return message


class SpawnerLoop:
    """
    The spawner process's state: its children, by the daemon's id.

    @ivar channel: the socket to the daemon (non-blocking).
    @ivar pids: live or unforgotten children, id to pid.
    @ivar live: children not reaped yet, pid to id.
    """

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.pids: dict[int, int] = {}
        self.live: dict[int, int] = {}
        self.outgoing: collections.deque[bytes] = collections.deque()

    def handle(self, message: tuple[Any, ...], fds: list[int]) -> None:
        """
        Act on one message from the daemon; C{fds} are closed after.
        """
        try:
            kind = message[0]
            if kind == "s":
                self.start(message, fds)
            elif kind == "k":
                self.signal(message[1], message[2], message[3])
            elif kind == "f":
                self.pids.pop(message[1], None)
        finally:
            for fd in fds:
                os.close(fd)

    def start(self, message: tuple[Any, ...], fds: list[int]) -> None:
        _, ident, argv, executable, environment, slots, umask, credentials = message
        if isinstance(environment, dict):
            # From a daemon that was running when twinetd was upgraded under
            # it (before 2026-12, requests carried a mapping).
            environment = environmentBlock(environment.items())
        given = iter(fds)
        stdio = tuple(next(given, None) if slot else None for slot in slots)
        try:
            pid = startChild(
                argv,
                executable,
                environment,
                (stdio[0], stdio[1], stdio[2]),
                umask,
                credentials,
            )
        except OSError as e:
            self.send(("e", ident, e.errno or 0, e.strerror or str(e)))
            return
        except Exception as e:
            # Imported by forkexec before it raised one.
            import subprocess

            if not isinstance(e, (subprocess.SubprocessError, ValueError, TypeError)):
                raise
            self.send(("e", ident, 0, str(e)))
            return
        self.pids[ident] = pid
        self.live[pid] = ident
        self.send(("p", ident, pid))

    def signal(self, ident: int, number: int, group: bool) -> None:
        pid = self.pids.get(ident)
        if pid is None:
            return
        try:
            if group:
                # The group outlives its leader (its own children): it is
                # signalled until the daemon forgets the child.
                os.killpg(pid, number)
            elif pid in self.live:
                os.kill(pid, number)
        except OSError:
            pass

    def reap(self) -> None:
        """
        Reap every child that exited and tell the daemon.
        """
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            ident = self.live.pop(pid, None)
            if ident is not None:
                self.send(("x", ident, status))

    def send(self, message: tuple[Any, ...]) -> None:
        self.outgoing.append(encode(message))
        self.flush()

    def flush(self) -> None:
        while self.outgoing:
            try:
                self.channel.send(self.outgoing[0])
            except BlockingIOError:
                return
            self.outgoing.popleft()

    def receive(self) -> bool:
        """
        Handle every request waiting; C{False} at end of file.
        """
        while True:
            try:
                packet, fds, _, _ = socket.recv_fds(self.channel, MAX_PACKET, 3)
            except BlockingIOError:
                return True
            except ConnectionResetError:
                return False
            if not packet:
                for fd in fds:
                    os.close(fd)
                return False
            self.handle(decode(packet), fds)
            # Between starts too: under a steady stream of requests the
            # children that exited must not wait (the daemon counts them
            # as running until it hears).
            self.reap()


def _setUp() -> socket.socket:
    """
    Keep the socket (descriptor 0) on a close-on-exec descriptor, make
    0 and 1 C{/dev/null}, and close every other descriptor but 2.
    """
    fd = os.dup(0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    os.closerange(3, fd)
    os.closerange(fd + 1, 1 << 16)
    channel = socket.socket(fileno=fd)
    channel.setblocking(False)
    return channel


def main() -> None:
    channel = _setUp()
    loop = SpawnerLoop(channel)
    wakeRead, wakeWrite = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeWrite)
    signal.signal(signal.SIGCHLD, lambda number, frame: None)
    poller = select.poll()
    poller.register(wakeRead, select.POLLIN)
    while True:
        mask = select.POLLIN | (select.POLLOUT if loop.outgoing else 0)
        poller.register(channel, mask)
        try:
            ready = dict(poller.poll())
        except InterruptedError:
            continue
        if wakeRead in ready:
            while True:
                try:
                    if not os.read(wakeRead, 512):
                        break
                except BlockingIOError:
                    break
        loop.reap()
        if ready.get(channel.fileno(), 0) & select.POLLOUT:
            loop.flush()
        events = ready.get(channel.fileno(), 0)
        if events & (select.POLLIN | select.POLLHUP) and not loop.receive():
            return


if __name__ == "__main__":
    main()
