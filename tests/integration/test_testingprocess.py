"""
L{twinetd.testing.serveConfig} as a test suite without Twisted uses it:
plain synchronous tests, a real twinetd in a child process, plain sockets.
"""

from __future__ import annotations

import signal
import socket
import time

import pytest

from twinetd.errors import ConfigError
from twinetd.testing import DaemonProcess, daemonProcessFixture, serveConfig

from .conftest import childPids
from .test_testing import CONFIG

# The program ignores SIGTERM and end of file.
HOLD = CONFIG.replace("service rev", "service hold").replace("rev.py", "stubborn.py")

served = daemonProcessFixture(CONFIG)


def gone(pid: int, seconds: float = 10.0) -> bool:
    """
    Whether process C{pid} is gone (or a zombie) within C{seconds}.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def test_withServes() -> None:
    """
    C{with serveConfig(...)} serves each service on its own ephemeral port;
    on the way out the daemon stops cleanly and is reaped, and the ports
    are closed.
    """
    before = childPids()
    with serveConfig(CONFIG) as daemon:
        assert daemon.converse("rev", b"hello\n") == b"olleh\n"
        assert daemon.converse("echo-stream", b"ping") == b"ping"
        assert daemon.port("rev") != daemon.port("echo-stream")
        port = daemon.port("rev")
    assert daemon.process.returncode == 0
    assert childPids() == before
    with pytest.raises(ConnectionRefusedError):
        daemon.converse("rev", b"x")
    assert port > 0


def test_fixture(served: DaemonProcess) -> None:
    """
    L{daemonProcessFixture} hands each test a running daemon.
    """
    assert served.converse("rev", b"abc\n") == b"cba\n"


def test_events() -> None:
    """
    The daemon's events come back as dictionaries with the JSON log's
    fields: a connection's START and EXIT, with the program's pid and
    status.
    """
    with serveConfig(CONFIG) as daemon:
        daemon.converse("rev", b"x\n")
        deadline = time.monotonic() + 10
        while not [e for e in daemon.events() if e["twinetdEvent"] == "exit"]:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.02)
        [start] = [e for e in daemon.events() if e["twinetdEvent"] == "start"]
        [end] = [e for e in daemon.events() if e["twinetdEvent"] == "exit"]
        assert start["service"] == end["service"] == "rev"
        assert start["pid"] == end["pid"]
        assert end["status"] == 0
        assert "rev" in daemon.log()


def test_configurationError() -> None:
    """
    A configuration with an error raises L{ConfigError} with the
    C{file:line: service: message} of the error, and leaves no process.
    """
    before = childPids()
    with pytest.raises(ConfigError) as caught:
        serveConfig(CONFIG + "service broken\n{\n    socket_type = sideways\n}\n")
    assert str(caught.value).startswith("<test>:")
    assert caught.value.problem.service == "broken"
    assert childPids() == before


def test_notStrict() -> None:
    """
    With C{strict=False} the rest is served and the error is among the
    problems; the broken service has no port.
    """
    text = CONFIG + "service broken\n{\n    socket_type = sideways\n}\n"
    with serveConfig(text, strict=False) as daemon:
        assert daemon.converse("rev", b"ab\n") == b"ba\n"
        assert any("broken" in problem for problem in daemon.problems)
        with pytest.raises(KeyError):
            daemon.port("broken")


def test_stopEndsPrograms() -> None:
    """
    Stopping the daemon ends a program still serving a client: SIGTERM,
    then SIGKILL a kill delay later for one that ignores SIGTERM.
    """
    with serveConfig(HOLD, killDelay=0.2) as daemon:
        client = socket.create_connection(("127.0.0.1", daemon.port("hold")), 10)
        # The program ignores SIGTERM once it says so.
        assert client.recv(100) == b"ready\n"
        [start] = [e for e in daemon.events() if e["twinetdEvent"] == "start"]
        assert daemon.stop() == 0
        assert gone(start["pid"], 0)
        [end] = [e for e in daemon.events() if e["twinetdEvent"] == "exit"]
        assert end["signal"] == signal.SIGKILL
        client.close()


def test_testProcessGone() -> None:
    """
    When the test process goes away (its end of the daemon's standard
    input closes) the daemon stops by itself.
    """
    with serveConfig(CONFIG) as daemon:
        assert daemon.process.stdin is not None
        daemon.process.stdin.close()
        assert daemon.process.wait(20) == 0
        assert gone(daemon.process.pid, 0)


def test_neverStarts() -> None:
    """
    A daemon that does not report its ports in time is stopped, and the
    error says so.
    """
    before = childPids()
    with pytest.raises(RuntimeError, match="did not start"):
        # Not a Python: it exits at once without a report.
        serveConfig(CONFIG, python="/bin/false", startTimeout=5)
    assert childPids() == before
