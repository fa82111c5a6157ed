"""
Who starts the programs of a real daemon (C{twistd twinetd}): by default
the daemon itself while at most 4 run, its spawner process above; with
C{--no-spawner-process} the daemon always.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.integration.daemon import (
    DEADLINE,
    Daemon,
    freePort,
    isSpawnerProcess,
    service,
    until,
)
from tests.processes import childStates

pytestmark = pytest.mark.usefixtures("noChildLeft")


def echoed(sock: socket.socket, data: bytes) -> bytes:
    """
    Send C{data} and read back as many bytes (at most L{DEADLINE} seconds).
    """
    sock.sendall(data)
    got = b""
    deadline = time.monotonic() + DEADLINE
    while len(got) < len(data) and time.monotonic() < deadline:
        part = sock.recv(len(data) - len(got))
        if not part:
            break
        got += part
    return got


@pytest.mark.parametrize(
    "extra, fromDaemon, fromSpawner",
    [((), 5, 2), (("--no-spawner-process",), 7, 0)],
    ids=["default", "no-spawner-process"],
)
def test_whoStartsThePrograms(
    tmp_path: Path, extra: tuple[str, ...], fromDaemon: int, fromSpawner: int
) -> None:
    """
    Seven clients held one after the other: by default the daemon starts
    the programs while at most 4 run (the first five) and its spawner
    process the others; with C{--no-spawner-process} the daemon starts
    all seven.  Every client is served either way, and when they leave
    no program is left.
    """
    port = freePort()
    daemon = Daemon(tmp_path / "etc")
    daemon.write("hold", service("hold", port, "\tserver = /bin/cat\n"))
    held: list[socket.socket] = []
    try:
        daemon.start(port, extra=extra)
        for count in range(1, 8):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            # The threshold counts running programs: each runs before the
            # next client comes.
            until(lambda count=count: len(daemon.children()) == count)
        children = childStates(daemon.pid)
        spawners = [pid for pid in children if isSpawnerProcess(pid)]
        assert len(children) - len(spawners) == fromDaemon
        assert [len(childStates(pid)) for pid in spawners] == (
            [fromSpawner] if fromSpawner else []
        )
        for number, sock in enumerate(held):
            line = f"client {number}\n".encode()
            assert echoed(sock, line) == line
    finally:
        for sock in held:
            sock.close()
        try:
            daemon.settle()
        finally:
            daemon.stop()
