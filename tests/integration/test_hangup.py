"""
L{twinetd.hangup.HangupWatcher} on real loopback sockets: what the kernel
reports of a socket nobody reads.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import time
from collections.abc import Callable, Iterator

import pytest
from twisted.internet.interfaces import ISystemHandle
from twisted.internet.testing import MemoryReactor
from zope.interface import implementer

from twinetd.hangup import END_OF_FILE, RESET, HangupWatcher, peerState


@implementer(ISystemHandle)
class Handle:
    """
    What the watcher needs of a Twisted TCP transport.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def getHandle(self) -> socket.socket:
        return self.sock


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """
    A connected (client, server) pair on loopback; the server side has
    some bytes it has not read.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    client.sendall(b"unread" * 1000)
    yield client, server
    client.close()
    server.close()


def reported(watcher: HangupWatcher, seen: list[bool]) -> list[bool]:
    """
    What the watcher reports once the kernel has had a moment.
    """
    deadline = time.monotonic() + 2
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
        watcher.doRead()
    return seen


def queued(sock: socket.socket) -> int:
    """
    Bytes received on C{sock} and not read yet.
    """
    raw = fcntl.ioctl(sock, termios.FIONREAD, struct.pack("i", 0))
    return int(struct.unpack("i", raw)[0])


def arrived(condition: Callable[[], bool]) -> None:
    """
    Wait until the kernel has what the peer sent (C{condition} says).
    """
    deadline = time.monotonic() + 2
    while not condition():
        assert time.monotonic() < deadline, "nothing arrived"
        time.sleep(0.001)


def watched(sock: socket.socket) -> tuple[HangupWatcher, list[bool], MemoryReactor]:
    reactor = MemoryReactor()
    watcher = HangupWatcher(reactor)
    seen: list[bool] = []
    assert watcher.watch(Handle(sock), seen.append) == sock.fileno()  # type: ignore[arg-type]
    return watcher, seen, reactor


def test_dataWakesNothing(pair: tuple[socket.socket, socket.socket]) -> None:
    """
    Bytes arriving on a watched socket are not a hangup; the watcher is one
    reader of the reactor.
    """
    client, server = pair
    watcher, seen, reactor = watched(server)
    assert reactor.getReaders() == [watcher]
    waiting = queued(server)
    client.sendall(b"more")
    arrived(lambda: queued(server) == waiting + 4)
    watcher.doRead()
    assert seen == [] and peerState(server.fileno()) is None


@pytest.mark.parametrize("how", ["shutdown", "close"])
def test_endOfFileBehindUnreadData(
    pair: tuple[socket.socket, socket.socket], how: str
) -> None:
    """
    The peer's FIN is reported though unread bytes come before it; a
    half-close and a close look the same.
    """
    client, server = pair
    watcher, seen, _ = watched(server)
    if how == "shutdown":
        client.shutdown(socket.SHUT_WR)
    else:
        client.close()
    assert reported(watcher, seen) == [END_OF_FILE]
    # Edge-triggered: reported once.
    watcher.doRead()
    assert seen == [END_OF_FILE]


def test_reset(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    watcher, seen, _ = watched(server)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    assert reported(watcher, seen) == [RESET]


def test_endOfFileThenReset(pair: tuple[socket.socket, socket.socket]) -> None:
    """
    A reset after the end of file is reported too.
    """
    client, server = pair
    watcher, seen, _ = watched(server)
    client.shutdown(socket.SHUT_WR)
    reported(watcher, seen)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    deadline = time.monotonic() + 2
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
        watcher.doRead()
    assert seen == [END_OF_FILE, RESET]


def test_alreadyHungUp(pair: tuple[socket.socket, socket.socket]) -> None:
    """
    A socket whose peer left before the watch began is reported at once.
    """
    client, server = pair
    client.shutdown(socket.SHUT_WR)
    arrived(lambda: peerState(server.fileno()) is not None)
    watcher, seen, _ = watched(server)
    assert reported(watcher, seen) == [END_OF_FILE]


def test_unwatched(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    watcher, seen, _ = watched(server)
    watcher.unwatch(server.fileno())
    client.close()
    arrived(lambda: peerState(server.fileno()) is not None)
    watcher.doRead()
    assert seen == []
    # A socket closed before it is unwatched is not an error.
    watcher.watch(Handle(server), seen.append)  # type: ignore[arg-type]
    fd = server.fileno()
    server.close()
    watcher.unwatch(fd)
