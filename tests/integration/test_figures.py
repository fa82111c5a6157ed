"""
The figures a hostile client could not move, kept as regression tests: a
real C{twistd -n twinetd} subprocess, measured from outside through /proc.
All are marked slow (together about a minute and a half here).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import (
    DEADLINE,
    Daemon,
    child,
    freePort,
    reset,
    service,
    until,
)

pytestmark = pytest.mark.slow

MB = 1024 * 1024
GiB = 1024 * MB


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "etc")
    try:
        yield d
    finally:
        d.stop()


def readAll(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


class Sampler:
    """
    Samples a value in a thread until stopped; keeps the highest.
    """

    def __init__(self, sample: Callable[[], int], every: float = 0.02) -> None:
        self.highest = 0
        self.samples = 0
        self._sample = sample
        self._every = every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(DEADLINE)

    def _run(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(OSError, ValueError):
                self.highest = max(self.highest, self._sample())
                self.samples += 1
            time.sleep(self._every)


@pytest.mark.timeout(300)
def test_tenThousandConnectionsEndingEveryWay(daemon: Daemon) -> None:
    """
    10 000 sequential connections, a quarter ending each way: the client
    closes after sending, the child exits (its output read to the end), the
    client resets, the client half-closes and reads the echo.  Afterwards
    the daemon has no child (running or zombie), as many descriptors as
    after the warm-up, and its RSS grew by less than 5 MB.
    """
    cat, echo = freePort(), freePort()
    daemon.write("cat", service("cat", cat, "\tserver = /bin/cat\n"))
    daemon.write(
        "echo", service("echo", echo, "\tserver = /bin/echo\n\tserver_args = hi\n")
    )
    daemon.start(cat, echo)

    def connection(i: int) -> None:
        if i % 4 == 1:
            with socket.create_connection(("127.0.0.1", echo), timeout=10) as s:
                assert readAll(s) == b"hi\n"
            return
        s = socket.create_connection(("127.0.0.1", cat), timeout=10)
        if i % 4 == 0:
            s.sendall(b"bye\n")
            s.close()
        elif i % 4 == 2:
            reset(s)
        else:
            s.sendall(b"half\n")
            s.shutdown(socket.SHUT_WR)
            assert readAll(s) == b"half\n"
            s.close()

    for i in range(400):
        connection(i)
    daemon.settle()
    descriptors, rss = daemon.descriptors(), daemon.rss()
    for i in range(10_000):
        connection(i)
    daemon.settle(descriptors)
    assert daemon.children() == {}
    assert daemon.descriptors() == descriptors
    assert daemon.rss() - rss < 5 * MB, (rss, daemon.rss())


@pytest.mark.timeout(300)
def test_gigabyteEachWayToNonReadingPeer(daemon: Daemon) -> None:
    """
    1 GiB from a child to a client that reads nothing for a second and then
    stalls every 128 MiB, and 1 GiB from a client to a child that reads
    nothing for a second: every byte arrives, and the daemon's RSS stays
    within 12 MB of its idle size throughout (50 MB with an idle 38 MB).
    """
    down, up = freePort(), freePort()
    daemon.write("down", service("down", down, child("flood", str(GiB))))
    daemon.write(
        "up",
        service("up", up, child("replyaftereof") + "\tenv = DELAY=1\n"),
    )
    daemon.start(down, up)
    idle = daemon.rss()
    with Sampler(daemon.rss) as rss:
        with socket.create_connection(("127.0.0.1", down), timeout=DEADLINE) as s:
            time.sleep(1)
            received = 0
            stall = 128 * MB
            while chunk := s.recv(1 << 20):
                received += len(chunk)
                if received >= stall:
                    stall += 128 * MB
                    time.sleep(0.2)
        assert received == GiB
        with socket.create_connection(("127.0.0.1", up), timeout=DEADLINE) as s:
            block = b"u" * (1 << 20)
            for _ in range(GiB // len(block)):
                s.sendall(block)
            s.shutdown(socket.SHUT_WR)
            assert readAll(s) == b"read %d bytes\n" % GiB
    assert rss.samples > 10
    assert rss.highest < idle + 12 * MB, (idle, rss.highest)


@pytest.fixture
def manyFiles() -> Iterator[None]:
    """
    Room for 2 000 connections in this process and in the daemon.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 12_000
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs RLIMIT_NOFILE of at least {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("manyFiles")
def test_twoThousandIdleConnections(daemon: Daemon) -> None:
    """
    2 000 idle connections, each with its child: the daemon's other
    services still answer correctly and promptly (a generous bound: 2 s
    each), and everything is released when the clients leave.
    """
    idle, echo, internal = freePort(), freePort(), freePort()
    daemon.write("idle", service("idle", idle, "\tserver = /bin/cat\n"))
    daemon.write(
        "hello", service("hello", echo, "\tserver = /bin/echo\n\tserver_args = hi\n")
    )
    daemon.write(
        "echo",
        f"service echo\n{{\n\ttype = INTERNAL UNLISTED\n\tport = {internal}\n"
        "\tsocket_type = stream\n\twait = no\n\tbind = 127.0.0.1\n"
        "\tcps = 100000 1\n}\n",
    )
    daemon.start(idle, echo, internal)
    held = [socket.create_connection(("127.0.0.1", idle), timeout=DEADLINE)]
    try:
        for _ in range(1999):
            held.append(socket.create_connection(("127.0.0.1", idle), timeout=60))
        until(lambda: len(daemon.children()) == 2000, 120)
        for _ in range(10):
            asked = time.monotonic()
            with socket.create_connection(("127.0.0.1", echo), timeout=10) as s:
                assert readAll(s) == b"hi\n"
            with socket.create_connection(("127.0.0.1", internal), timeout=10) as s:
                s.sendall(b"ping")
                s.shutdown(socket.SHUT_WR)
                assert readAll(s) == b"ping"
            assert time.monotonic() - asked < 2.0
        # Every held connection is still served.
        for sock in held[::100]:
            sock.sendall(b"still\n")
            assert sock.recv(100) == b"still\n"
    finally:
        for sock in held:
            sock.close()
    daemon.settle()


def test_datagramFloodNeverAboveInstances(daemon: Daemon) -> None:
    """
    50 000 datagrams as fast as one socket sends them to a service with
    instances = 4 whose children take 0.2 s each: the daemon never has more
    than 4 children; afterwards the service answers.
    """
    port = freePort()
    # Each child lingers, so that the four slots stay taken during the flood.
    script = daemon.folder.parent / "slowcat"
    script.write_text("#!/bin/sh\ncat\nsleep 0.2\n")
    script.chmod(0o755)
    daemon.write(
        "udp",
        service("udp", port, f"\tserver = {script}\n\tinstances = 4\n", "dgram"),
    )
    daemon.start()
    until(lambda: udpBound(port))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    with Sampler(lambda: len(daemon.children()), every=0.005) as children:
        for i in range(50_000):
            with contextlib.suppress(BlockingIOError):
                sender.sendto(b"%d" % i, ("127.0.0.1", port))
        until(lambda: not daemon.children(), 60)
    assert children.samples >= 5
    assert 1 <= children.highest <= 4, children.highest
    sender.setblocking(True)
    sender.settimeout(1)
    for _ in range(20):
        sender.sendto(b"after", ("127.0.0.1", port))
        with contextlib.suppress(TimeoutError):
            while True:
                reply, _ = sender.recvfrom(100)
                if reply == b"after":
                    sender.close()
                    return
    raise AssertionError("no answer after the flood")


def udpBound(port: int) -> bool:
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                if int(line.split()[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as nobody")
def test_nobodyExactly(daemon: Daemon) -> None:
    """
    C{user = nobody} (with C{groups = yes}): the child's real, effective,
    saved and filesystem ids are nobody's, its groups exactly nobody's
    group list, as its own /proc/self/status shows.
    """
    nobody = pwd.getpwnam("nobody")
    port = freePort()
    daemon.write(
        "who",
        service(
            "who",
            port,
            "\tserver = /bin/cat\n\tserver_args = /proc/self/status\n\tgroups = yes\n",
        ).replace("\tuser = -\n", "\tuser = nobody\n"),
    )
    daemon.start(port)
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        status = readAll(s).decode()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split() == [str(nobody.pw_uid)] * 4
    assert fields["Gid"].split() == [str(nobody.pw_gid)] * 4
    groups = sorted(os.getgrouplist("nobody", nobody.pw_gid))
    assert sorted(int(g) for g in fields["Groups"].split()) == groups
    assert grp.getgrgid(nobody.pw_gid)


def test_sighupWithConnectionsInFlight(daemon: Daemon) -> None:
    """
    200 connections in the middle of their sessions while SIGHUP changes
    their service and another one: none is dropped, each finishes its
    session with the configuration it started with.
    """
    port, other = freePort(), freePort()
    daemon.write("cat", service("cat", port, "\tserver = /bin/cat\n"))
    daemon.write(
        "other", service("other", other, "\tserver = /bin/echo\n\tserver_args = a\n")
    )
    daemon.start(port, other)
    held = []
    try:
        for i in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
            sock.sendall(b"first %d\n" % i)
            held.append(sock)
        for i, sock in enumerate(held):
            assert sock.recv(100) == b"first %d\n" % i
        daemon.write(
            "cat",
            service("cat", port, "\tserver = /bin/cat\n\tenv = CHANGED=1\n"),
        )
        daemon.write(
            "other",
            service("other", other, "\tserver = /bin/echo\n\tserver_args = b\n"),
        )
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        until(lambda: "other: changed" in daemon.log.read_text())
        for i, sock in enumerate(held):
            sock.sendall(b"second %d\n" % i)
            sock.shutdown(socket.SHUT_WR)
            assert readAll(sock) == b"second %d\n" % i
        with socket.create_connection(("127.0.0.1", other), timeout=10) as s:
            assert readAll(s) == b"b\n"
    finally:
        for sock in held:
            sock.close()
    daemon.settle()
