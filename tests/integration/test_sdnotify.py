"""
L{twinetd.sdnotify} against a real C{AF_UNIX} datagram socket, as systemd
listens on C{NOTIFY_SOCKET}: the notifier alone, then real daemons.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.logger import globalLogPublisher

from tests.integration.test_cli import stampConfig
from tests.integration.test_twistd import (
    DEADLINE,
    TWISTD,
    connect,
    environment,
    freePort,
)
from twinetd.sdnotify import NOTIFY_SOCKET, Notifier, socketAddress


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(5)
    yield sock
    sock.close()


def received(sock: socket.socket) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().split("\n"))


def test_states(systemd: socket.socket) -> None:
    """
    Each state is one datagram of C{KEY=VALUE} lines; a reload carries
    C{MONOTONIC_USEC}.
    """
    notifier = Notifier(systemd.getsockname(), monotonic=lambda: 1234)
    notifier.ready("3 services")
    assert received(systemd) == {"READY": "1", "STATUS": "3 services"}
    notifier.reloading()
    assert received(systemd) == {"RELOADING": "1", "MONOTONIC_USEC": "1234"}
    notifier.stopping()
    assert received(systemd) == {"STOPPING": "1", "STATUS": "stopping"}
    notifier.status("busy")
    assert received(systemd) == {"STATUS": "busy"}


def test_abstractNamespace() -> None:
    """
    A name starting with C{@} is in the abstract namespace.
    """
    assert socketAddress("@twinetd/test") == b"\0twinetd/test"
    assert socketAddress("/run/systemd/notify") == "/run/systemd/notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0twinetd-test-notify")
        sock.settimeout(5)
        Notifier(socketAddress("@twinetd-test-notify")).ready("up")
        assert received(sock)["READY"] == "1"


def test_fromEnvironment(systemd: socket.socket) -> None:
    """
    The notifier comes from C{NOTIFY_SOCKET}, which is taken out of the
    environment (children must not speak for the daemon); without it there
    is none.
    """
    environ = {NOTIFY_SOCKET: systemd.getsockname(), "PATH": "/bin"}
    notifier = Notifier.fromEnvironment(environ)
    assert notifier is not None
    assert environ == {"PATH": "/bin"}
    notifier.ready("up")
    assert received(systemd)["READY"] == "1"
    assert Notifier.fromEnvironment({"PATH": "/bin"}) is None


def test_noListener(tmp_path: Path) -> None:
    """
    A socket nobody listens on is logged once, not raised: the daemon keeps
    running when systemd goes away.
    """
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        notifier = Notifier(str(tmp_path / "absent"))
        notifier.ready("up")
        notifier.stopping()
    finally:
        globalLogPublisher.removeObserver(events.append)
    warnings = [e for e in events if e.get("log_namespace") == "twinetd.sdnotify"]
    assert len(warnings) == 1


def daemonWithNotify(
    tmp_path: Path, sock: socket.socket, *argv: str, command: str = "twistd"
) -> subprocess.Popen[bytes]:
    env = environment()
    env[NOTIFY_SOCKET] = sock.getsockname()
    if command == "twistd":
        args = [*TWISTD, "-n", "--pidfile=", "-l", str(tmp_path / "twistd.log")]
        args += ["twinetd", *argv]
    else:
        args = [sys.executable, "-m", "twinetd", "-dontfork", *argv]
    return subprocess.Popen(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stopped(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(DEADLINE)


@pytest.mark.parametrize("command", ["twistd", "twinetd"])
def test_daemonNotifies(tmp_path: Path, systemd: socket.socket, command: str) -> None:
    """
    A real daemon with C{NOTIFY_SOCKET} (C{twistd -n twinetd}, and the
    C{twinetd -dontfork} command): C{READY=1} once its service listens (a
    connection right after it succeeds), C{RELOADING=1} then C{READY=1}
    around SIGHUP, C{STOPPING=1} at SIGTERM.
    """
    folder, port = stampConfig(tmp_path / "etc")
    option = "-c" if command == "twistd" else "-f"
    proc = daemonWithNotify(tmp_path, systemd, option, str(folder), command=command)
    try:
        ready = received(systemd)
        assert ready == {
            "READY": "1",
            "STATUS": "1 of 1 services listening, 0 servers running",
        }
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()
        proc.send_signal(signal.SIGHUP)
        reloading = received(systemd)
        assert reloading["RELOADING"] == "1"
        assert int(reloading["MONOTONIC_USEC"]) > 0
        assert received(systemd)["READY"] == "1"
        proc.send_signal(signal.SIGTERM)
        assert received(systemd) == {"STOPPING": "1", "STATUS": "stopping"}
        assert proc.wait(DEADLINE) == 0
    finally:
        stopped(proc)


def test_readyWaitsForBindRetries(tmp_path: Path, systemd: socket.socket) -> None:
    """
    A port held by someone else: the service retries its bind (xinetd's
    bind retries) and READY=1 waits for it; once the port is free the
    service listens and READY=1 follows.
    """
    folder, port = stampConfig(tmp_path / "etc")
    otherPort = freePort()
    (folder / "other").write_text(
        (folder / "stamp")
        .read_text()
        .replace("service stamp", "service other")
        .replace(str(port), str(otherPort))
    )
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    proc = daemonWithNotify(tmp_path, systemd, "-c", str(folder))
    try:
        # The daemon runs (the other service answers) and retries the held
        # port (ten times, 0.2 s apart): nothing is announced yet.
        connect(otherPort).close()
        systemd.setblocking(False)
        with pytest.raises(BlockingIOError):
            received(systemd)
        systemd.setblocking(True)
        systemd.settimeout(DEADLINE)
        holder.close()
        ready = received(systemd)
        assert ready["READY"] == "1"
        # The child started by the probe above may still be running.
        assert ready["STATUS"].startswith("2 of 2 services listening, "), ready
    finally:
        holder.close()
        stopped(proc)
