"""
Drop-in behaviour through the real daemon: C{twistd -n twinetd} as a
subprocess, with services and clients as an administrator would run them
(issue 7 and the shutdown of issue 8).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.integration.conftest import CHILDREN, fixedPort
from tests.integration.test_twistd import twistd

DEADLINE = 20.0
#: C{user} for the services: root when the tests run as root (CI), else the
#: daemon's own user (twinetd's C{user = -}).
USER = "root" if os.geteuid() == 0 else "-"


def freeUdpPort() -> int:
    """
    A port free for both TCP and UDP on 127.0.0.1, below the ephemeral range.
    """
    for _ in range(100):
        port = fixedPort()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free UDP port")


def service(name: str, **attributes: str | int) -> str:
    """
    The text of one xinetd service entry.
    """
    attributes.setdefault("type", "UNLISTED")
    attributes.setdefault("user", USER)
    attributes.setdefault("bind", "127.0.0.1")
    lines = "".join(f"\t{key} = {value}\n" for key, value in attributes.items())
    return f"service {name}\n{{\n{lines}}}\n"


def child(name: str, *args: str) -> dict[str, str]:
    """
    C{server} and C{server_args} running C{children/NAME.py}.
    """
    return {
        "server": sys.executable,
        "server_args": " ".join([str(CHILDREN / f"{name}.py"), *args]),
    }


class Daemon:
    """
    C{twistd -n twinetd} on a configuration file, its log in a file.

    @ivar proc: the twistd process.
    @ivar log: the path of twistd's log.
    """

    def __init__(self, folder: Path, config: str, *options: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "services.conf"
        self.config.write_text(config)
        self.log = folder / "twistd.log"
        self.stdout = ""
        self.proc = twistd(
            "-n",
            "--pidfile=",
            "-l",
            str(self.log),
            "twinetd",
            "--kill-delay",
            "1",
            *options,
            "-c",
            str(self.config),
        )

    def logText(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def waitForLog(self, pattern: str, count: int = 1) -> list[re.Match[str]]:
        """
        Wait until C{pattern} matches C{count} times in the log.
        """
        deadline = time.monotonic() + DEADLINE
        while True:
            found = list(re.finditer(pattern, self.logText()))
            if len(found) >= count:
                return found
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, (pattern, self.logText())
            time.sleep(0.05)

    def output(self) -> str:
        """
        What twistd wrote to its standard output and its log (once it
        exited: the output is read to its end).
        """
        stdout = self.proc.stdout
        if stdout is not None and not stdout.closed and self.proc.poll() is not None:
            self.stdout += stdout.read().decode(errors="replace")
            stdout.close()
        return self.stdout + self.logText()

    def stop(self) -> int:
        """
        SIGTERM; the exit status.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(DEADLINE)
        self.output()
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE)
        self.output()


@contextlib.contextmanager
def running(
    folder: Path, config: str, *options: str, listening: int = 1
) -> Iterator[Daemon]:
    """
    A L{Daemon} serving C{config}, once C{listening} services listen;
    stopped (killed if SIGTERM does not end it) afterwards.
    """
    daemon = Daemon(folder, config, *options)
    try:
        daemon.waitForLog(r"listening on", listening)
        yield daemon
    finally:
        try:
            daemon.stop()
        finally:
            daemon.kill()


def ask(port: int, data: bytes, timeout: float = DEADLINE) -> bytes:
    """
    Send one datagram to 127.0.0.1:C{port}; the first reply.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        reply, _ = s.recvfrom(65535)
        return reply


def test_datagramWaitYesUnderTwistd(tmp_path: Path) -> None:
    """
    Issue 7 §1: C{wait = yes} datagram services run under the real daemon,
    for a program that reads with a blocking C{recvfrom} and one that calls
    C{recvfrom(..., MSG_DONTWAIT)} at once (the datagram is still queued
    for it); each child is logged, and the service serves again after it.
    """
    blocking, dontwait = freeUdpPort(), freeUdpPort()
    config = service(
        "blk",
        socket_type="dgram",
        protocol="udp",
        wait="yes",
        port=blocking,
        **child("udpserve", "blocking"),
    ) + service(
        "dw",
        socket_type="dgram",
        protocol="udp",
        wait="yes",
        port=dontwait,
        **child("udpserve", "dontwait"),
    )
    with running(tmp_path, config, listening=2) as daemon:
        for n in range(2):
            reply = ask(blocking, b"one%d" % n)
            assert re.fullmatch(rb"blocking:\d+:one%d" % n, reply), reply
            reply = ask(dontwait, b"two%d" % n)
            assert re.fullmatch(rb"dontwait:\d+:two%d" % n, reply), reply
        daemon.waitForLog(r"EXIT: blk status=0", 2)
        daemon.waitForLog(r"EXIT: dw status=0", 2)
        assert "START: dw pid=" in daemon.logText()
        assert f"blk listening on 127.0.0.1 port {blocking}" in daemon.logText()
        assert "Starting protocol" not in daemon.logText()


def test_internalStreamWaitYesUnderTwistd(tmp_path: Path) -> None:
    """
    Issue 7 §2: C{type = INTERNAL}, C{wait = yes} stream services (xinetd
    serves them) are served inside the daemon: echo answers, daytime sends
    its line, and nothing is logged as an error.
    """
    echo, daytime = freeUdpPort(), freeUdpPort()
    config = "".join(
        service(
            name,
            type="INTERNAL UNLISTED",
            id=f"{name}-stream",
            socket_type="stream",
            wait="yes",
            port=port,
        )
        for name, port in (("echo", echo), ("daytime", daytime))
    )
    with running(tmp_path, config, listening=2) as daemon:
        with socket.create_connection(("127.0.0.1", echo), timeout=DEADLINE) as s:
            s.sendall(b"ping\r\n")
            s.shutdown(socket.SHUT_WR)
            assert readAll(s) == b"ping\r\n"
        with socket.create_connection(("127.0.0.1", daytime), timeout=DEADLINE) as s:
            assert re.fullmatch(rb"\d\d [A-Z]{3} \d{4} [\d:]{8} \w+\r\n", readAll(s))
        daemon.waitForLog(r"START: daytime-stream pid=0")
        assert "Error" not in daemon.logText()
        assert "Traceback" not in daemon.logText()


def readAll(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def pidAlive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigtermExitsZero(tmp_path: Path) -> None:
    """
    Issue 8 §4: SIGTERM stops the daemon cleanly, with status 0 as xinetd
    (not "killed by SIGTERM"), once every child is gone: here one that
    ignores SIGTERM and is killed after the kill delay.
    """
    port = freeUdpPort()
    config = service(
        "stub", socket_type="stream", wait="no", port=port, **child("stubborn")
    )
    daemon = Daemon(tmp_path, config)
    try:
        daemon.waitForLog("listening on")
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
            assert s.recv(100) == b"ready\n"
            [start] = daemon.waitForLog(r"START: stub pid=(\d+)")
            pid = int(start.group(1))
            assert daemon.stop() == 0, daemon.output()
        assert not pidAlive(pid)
        assert re.search(rf"EXIT: stub signal=9 pid={pid}\b", daemon.logText())
    finally:
        daemon.kill()
