"""
xinetd's log lines from the daemon in-process, for the services served inside
the daemon (redirect, internal): START and EXIT as xinetd writes them
(docs/xinetd-behaviour.md, sections 5 and 9), with real sockets on loopback
and a real FILE log.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.integration import test_daemon
from tests.integration.conftest import Collector, reactor, sleep, within
from twinetd import logs
from twinetd.service import DaemonSettings
from twinetd.testing import runConfig

# The in-process daemon tests' fixture (events is the conftest's).
daemons = test_daemon.daemons

STAMP = r"\d\d/\d{1,2}/\d{1,2}@\d\d:\d\d:\d\d: "
DEADLINE = 10.0


def logged(path: Path, extra: str = "") -> str:
    """
    The service options that give every START/EXIT field.
    """
    return (
        f"\tlog_type = FILE {path}\n"
        f"\tlog_on_success = PID HOST EXIT DURATION{extra}\n"
        "\tlog_on_failure = HOST\n"
    )


def redirect(name: str, port: int, log: Path) -> str:
    return (
        f"service {name}\n{{\n\ttype = UNLISTED\n\tport = 1\n"
        "\tsocket_type = stream\n\twait = no\n\tuser = -\n"
        f"\tredirect = 127.0.0.1 {port}\n{logged(log, ' TRAFFIC')}}}\n"
    )


def internal(name: str, log: Path, port: int = 1) -> str:
    return (
        f"service {name}\n{{\n\ttype = INTERNAL UNLISTED\n\tid = {name}-stream\n"
        f"\tport = {port}\n\tsocket_type = stream\n\twait = no\n{logged(log)}}}\n"
    )


async def lines(path: Path, count: int) -> list[str]:
    """
    The first C{count} lines of a FILE log without their time stamps, once
    there are that many.
    """
    for _ in range(int(DEADLINE / 0.02)):
        text = path.read_text() if path.exists() else ""
        found = text.splitlines()
        if len(found) >= count:
            assert all(re.match(STAMP, line) for line in found), found
            return [re.sub("^" + STAMP, "", line) for line in found]
        await sleep(0.02)
    raise AssertionError(f"fewer than {count} lines: {text!r}")


async def talk(port: int, data: bytes) -> bytes:
    client = Collector()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await within(connectProtocol(endpoint, client))
    assert client.transport is not None
    if data:
        client.transport.write(data)
    client.transport.loseWriteConnection()  # type: ignore[attr-defined]
    result: bytes = await within(client.done)
    return result


def durationFree(line: str) -> str:
    # xinetd's duration depends on where the second boundaries fall.
    return re.sub(r"duration=[01]\(sec\)$", "duration=N(sec)", line)


@pytest_twisted.ensureDeferred
async def test_redirectStartExit(daemons: Any, events: Any, tmp_path: Path) -> None:
    """
    A redirect logs START, TRAFFIC and EXIT (status 0), as xinetd does for
    the process it forks per connection; the relay runs in the daemon, so
    its pid is 0.
    """
    log = tmp_path / "fwd.log"
    target = daemons(internal("echo", tmp_path / "echo.log"))
    d = daemons(redirect("fwd", target.port("echo-stream"), log))
    assert await talk(d.port("fwd"), b"through\r\n") == b"through\r\n"
    assert [durationFree(line) for line in await lines(log, 3)] == [
        "START: fwd pid=0 from=127.0.0.1",
        "TRAFFIC: fwd in=9(bytes) out=9(bytes)",
        "EXIT: fwd status=0 pid=0 duration=N(sec)",
    ]
    [start] = [
        e
        for e in events
        if e.get(logs.EVENT_FIELD) == logs.START and e["service"] == "fwd"
    ]
    [end] = [
        e
        for e in events
        if e.get(logs.EVENT_FIELD) == logs.EXIT and e["service"] == "fwd"
    ]
    assert (start["pid"], start["host"]) == (0, "127.0.0.1")
    assert (end["pid"], end["status"], end["signal"]) == (0, 0, None)
    assert end["duration"] in (0, 1)


@pytest_twisted.ensureDeferred
async def test_redirectTargetDown(daemons: Any, tmp_path: Path) -> None:
    """
    The target refuses: START and EXIT status 0 all the same (xinetd's
    forked process exits 0 after its failed connect), and no TRAFFIC.
    """
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    deadPort = s.getsockname()[1]
    s.close()
    log = tmp_path / "fwd.log"
    d = daemons(redirect("fwd", deadPort, log))
    await talk(d.port("fwd"), b"")
    assert [durationFree(line) for line in await lines(log, 2)] == [
        "START: fwd pid=0 from=127.0.0.1",
        "EXIT: fwd status=0 pid=0 duration=N(sec)",
    ]


@pytest_twisted.ensureDeferred
async def test_internalStartExit(tmp_path: Path) -> None:
    """
    Internal services xinetd forks for (stream echo, discard, chargen) log
    EXIT after START; those it serves itself (daytime, time) only START,
    all with pid 0 here.
    """
    echoLog, daytimeLog = tmp_path / "echo.log", tmp_path / "daytime.log"
    text = internal("echo", echoLog) + internal("daytime", daytimeLog, 2)
    d = runConfig(reactor, text, settings=DaemonSettings(killDelay=1.0))
    try:
        assert await talk(d.port("echo-stream"), b"hi") == b"hi"
        assert await talk(d.port("daytime-stream"), b"")
        assert [durationFree(line) for line in await lines(echoLog, 2)] == [
            "START: echo-stream pid=0 from=127.0.0.1",
            "EXIT: echo-stream status=0 pid=0 duration=N(sec)",
        ]
    finally:
        # Stopped: every connection has ended, and nothing more is logged.
        await within(d.stop())
    assert await lines(daytimeLog, 1) == ["START: daytime-stream pid=0 from=127.0.0.1"]
    assert len(daytimeLog.read_text().splitlines()) == 1
