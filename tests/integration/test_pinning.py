"""
A client cannot pin the daemon's children, descriptors or slots by leaving
while the daemon does not read it: a real C{twistd -n twinetd --kill-delay
1}, measured through /proc.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import (
    Daemon,
    child,
    freePort,
    outQueue,
    readExactly,
    receiveQueue,
    reset,
    service,
    until,
)

KILL_DELAY = 1.0


@pytest.fixture
def pinned(tmp_path: Path) -> Iterator[tuple[Daemon, int, Path]]:
    """
    A daemon serving C{pin}: a child that says "ready", never reads its
    standard input and ignores SIGTERM (recording it in a file); one at a
    time (C{instances = 1}).
    """
    port = freePort()
    mark = tmp_path / "mark"
    daemon = Daemon(tmp_path / "etc", killDelay=KILL_DELAY)
    daemon.write(
        "pin",
        service(
            "pin",
            port,
            child("stubborn", "noread") + f"\tinstances = 1\n\tenv = MARK={mark}\n",
        ),
    )
    daemon.start(port)
    try:
        yield daemon, port, mark
    finally:
        daemon.stop()


def ready(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert readExactly(sock, 6) == b"ready\n"
    return sock


def fill(sock: socket.socket) -> None:
    """
    Send until the client's own buffer is full: the daemon has stopped
    reading (the child does not read).
    """
    sock.setblocking(False)
    deadline = time.monotonic() + 10
    while True:
        try:
            sock.send(b"f" * 65536)
        except BlockingIOError:
            return
        assert time.monotonic() < deadline


def fillExactly(sock: socket.socket, port: int) -> None:
    """
    Send until the daemon stops reading, then no more: everything sent
    reaches the daemon's kernel, so the client's end of file does too.
    """
    sock.setblocking(False)
    local = sock.getsockname()[1]
    deadline = time.monotonic() + 10
    while True:
        assert time.monotonic() < deadline, "the daemon never stopped reading"
        with contextlib.suppress(BlockingIOError):
            sock.send(b"f" * 16384)
        time.sleep(0.05)
        waiting = receiveQueue(port, local)
        if waiting:
            time.sleep(0.1)
            if receiveQueue(port, local) == waiting:
                break
    until(lambda: outQueue(sock) == 0)


def termAndKillTimes(mark: Path, daemon: Daemon, pid: int) -> tuple[float, float]:
    """
    Seconds until the child recorded SIGTERM, and until it was gone.
    """
    start = time.monotonic()
    until(lambda: mark.exists() and "TERM" in mark.read_text())
    term = time.monotonic() - start
    until(lambda: pid not in daemon.children())
    return term, time.monotonic() - start


@pytest.mark.slow
def test_pausedClientLeaves(pinned: tuple[Daemon, int, Path]) -> None:
    """
    A client fills the child's standard input (the daemon stops reading
    it) and leaves, by a reset or by its end of file: the child gets SIGTERM
    within the kill delay and SIGKILL a kill delay later; the slot is
    released (the next client is served) and the daemon's descriptors are
    back to their count before.
    """
    daemon, port, mark = pinned
    # Warm up: the daemon's lazily opened descriptors (the hang-up watcher,
    # made when the daemon first stops reading a client; the client may
    # fill its buffers before a loaded daemon gets that far).
    sock = ready(port)
    fill(sock)
    until(lambda: daemon.watchedPeers() == 1)
    reset(sock)
    daemon.settle()
    mark.unlink(missing_ok=True)
    before = daemon.descriptors()

    for how in ("reset", "end of file"):
        sock = ready(port)
        [pid] = daemon.children()
        if how == "reset":
            fill(sock)
        else:
            fillExactly(sock, port)
        # The daemon has stopped reading the client, and watches it.
        until(lambda: daemon.watchedPeers() == 1)
        assert daemon.descriptors() >= before + 4
        if how == "reset":
            reset(sock)
        else:
            sock.shutdown(socket.SHUT_WR)
        term, gone = termAndKillTimes(mark, daemon, pid)
        # Not before the kill delay; the upper bounds only say "it came"
        # (a loaded CI machine may be seconds late).
        assert KILL_DELAY - 0.2 < term < KILL_DELAY + 5.0, how
        assert 2 * KILL_DELAY - 0.2 < gone < 2 * KILL_DELAY + 8.0, how
        daemon.settle(before)
        assert daemon.descriptors() == before
        assert daemon.watchedPeers() == 0
        mark.unlink()
        sock.close()
    # The slot is free: the next client is served.
    ready(port).close()
