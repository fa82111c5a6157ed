"""
SIGHUP never drops a connection: a real C{twistd -n twinetd} reloaded again
and again while clients connect in a loop.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, freePort, service, until

ECHO = "/bin/echo"


def echoing(name: str, port: int, words: str) -> str:
    return service(name, port, f"\tserver = {ECHO}\n\tserver_args = {words}\n")


def ask(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data


@pytest.mark.slow
def test_sighupDropsNothing(tmp_path: Path) -> None:
    """
    Four client threads connect in a loop to a service that each SIGHUP
    changes (its arguments) and to one it leaves alone, during 15 SIGHUPs:
    no connection is refused, reset or closed without its reply; the
    changed service answers with its newest configuration.
    """
    keep, change = freePort(), freePort()
    daemon = Daemon(tmp_path / "etc")
    daemon.write("keep", echoing("keep", keep, "kept"))
    daemon.write("change", echoing("change", change, "generation -1"))
    daemon.start(keep, change)
    failures: list[object] = []
    served = {keep: 0, change: 0}
    reloading = threading.Event()
    reloading.set()

    def clients(port: int, expected: bytes) -> None:
        while reloading.is_set():
            try:
                reply = ask(port)
            except OSError as e:
                failures.append((port, repr(e)))
                continue
            if reply.startswith(expected):
                served[port] += 1
            else:
                failures.append((port, reply))

    threads = [
        threading.Thread(target=clients, args=(port, expected))
        for port, expected in [(keep, b"kept\n"), (change, b"generation ")] * 2
    ]
    try:
        for t in threads:
            t.start()
        for generation in range(15):
            daemon.write(
                "change", echoing("change", change, f"generation {generation}")
            )
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)
            time.sleep(0.2)
    finally:
        reloading.clear()
        for t in threads:
            t.join(30)
        daemon.stop()
        daemon.proc = None
    assert failures == [], daemon.logText()
    assert served[keep] > 20 and served[change] > 20
    assert daemon.log.read_text().count("SIGHUP: reloading") == 15


@pytest.mark.slow
def test_sighupAppliesNewConfiguration(tmp_path: Path) -> None:
    """
    The kept port serves the new configuration from the next connection.
    """
    port = freePort()
    daemon = Daemon(tmp_path / "etc")
    daemon.write("change", echoing("change", port, "before"))
    daemon.start(port)
    try:
        assert ask(port) == b"before\n"
        daemon.write("change", echoing("change", port, "after"))
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        until(lambda: ask(port) == b"after\n")
        assert "change: changed" in daemon.log.read_text()
    finally:
        daemon.stop()
