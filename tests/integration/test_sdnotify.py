"""
L{twinetd.sdnotify} against a real C{AF_UNIX} datagram socket, as systemd
listens on C{NOTIFY_SOCKET}.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.logger import globalLogPublisher

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
