"""
twistd's log of the real daemon (C{twistd -n twinetd} as a subprocess): what
it leaves out, what it summarises.
"""

from __future__ import annotations

import json
import resource
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_twistd import DEADLINE, connect, freePort, stop, twistd

#: The daemon's descriptor limit in the flood test (soft and hard, so that
#: raising the soft limit to the hard one at start changes nothing).
LOW_LIMIT = 64


def echoService(port: int, extra: str = "") -> str:
    return (
        "service echo\n{\n\ttype = INTERNAL UNLISTED\n\tid = echo-stream\n"
        f"\tport = {port}\n\tbind = 127.0.0.1\n\tsocket_type = stream\n"
        f"\twait = no\n\tcps = 100000 1\n{extra}}}\n"
    )


def lowDescriptorLimit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_LIMIT, LOW_LIMIT))


def echoes(port: int) -> bool:
    with connect(port) as sock:
        sock.sendall(b"ping")
        data = b""
        while len(data) < 4:
            chunk = sock.recv(4 - len(data))
            if not chunk:
                break
            data += chunk
        return data == b"ping"


def waitForLine(path: Path, text: str) -> str:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged: {content}")


def redirectService(port: int, target: int) -> str:
    return (
        f"service fwd\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
        "\tbind = 127.0.0.1\n\tsocket_type = stream\n\twait = no\n"
        f"\tuser = -\n\tredirect = 127.0.0.1 {target}\n}}\n"
    )


def lines(path: Path) -> list[str]:
    # Without twistd's time stamp.
    return [line.split(" ", 1)[1] for line in path.read_text().splitlines()]


@pytest.fixture
def etc(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    folder = tmp_path / "etc"
    folder.mkdir()
    port = freePort()
    (folder / "echo").write_text(echoService(port))
    yield folder, port


@pytest.mark.slow
def test_noAcceptFlood(etc: tuple[Path, int], tmp_path: Path) -> None:
    """
    Out of descriptors (more connections than RLIMIT_NOFILE), Twisted logs
    one line per connection it cannot accept; the daemon's log has the
    first and one summary a second, and the service answers again once
    the connections close.
    """
    folder, port = etc
    log = tmp_path / "twistd.log"
    proc = twistd(
        "-n", "--pidfile=", "-l", str(log), "twinetd", "-c", str(folder),
        preexec_fn=lowDescriptorLimit,
    )  # fmt: skip
    held: list[socket.socket] = []
    try:
        assert echoes(port)
        # Fill the daemon's descriptors, then keep knocking for 3 seconds.
        attempts = 0
        started = time.monotonic()
        while time.monotonic() - started < 3:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                continue
            attempts += 1
            if len(held) < 2 * LOW_LIMIT:
                held.append(sock)
            else:
                sock.close()
        waitForLine(log, "connections not accepted")
        for sock in held:
            sock.close()
        held = []
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                if echoes(port):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the service no longer answers"
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()
        stop(proc)
    lines = log.read_text().splitlines()
    assert attempts > 4 * LOW_LIMIT
    assert not [line for line in lines if "Could not accept" in line], lines
    assert not [line for line in lines if "EMFILE recovery" in line], lines
    first = [line for line in lines if "cannot accept a connection: EMFILE" in line]
    summaries = [line for line in lines if "connections not accepted" in line]
    assert 1 <= len(first) <= 3, lines
    # One a second while the flood lasts (about 3 s), and a little slack.
    assert 1 <= len(summaries) <= 6, lines
    assert len(lines) < 100 + 2 * LOW_LIMIT, len(lines)


def test_withoutTwistedNoise(etc: tuple[Path, int], tmp_path: Path) -> None:
    """
    twistd's log has the daemon's own line per service, not Twisted's per
    port (C{StreamFactory starting on N}, C{(TCP Port N Closed)}) nor its
    C{Starting factory} per redirected connection.
    """
    folder, port = etc
    fwdPort = freePort()
    (folder / "fwd").write_text(redirectService(fwdPort, port))
    log = tmp_path / "twistd.log"
    proc = twistd("-n", "--pidfile=", "-l", str(log), "twinetd", "-c", str(folder))
    try:
        assert echoes(fwdPort)
        waitForLine(log, "EXIT: fwd")
    finally:
        stop(proc)
    logged = lines(log)
    listening = [line for line in logged if " listening on " in line]
    assert sorted(line.split("] ")[1] for line in listening) == [
        f"echo-stream listening on 127.0.0.1 port {port}/tcp",
        f"fwd listening on 127.0.0.1 port {fwdPort}/tcp",
    ]
    for noise in ("starting on", "Port", "Starting factory", "Stopping factory"):
        assert not [line for line in logged if noise in line], logged


def test_jsonLogAndSummary(etc: tuple[Path, int], tmp_path: Path) -> None:
    """
    C{--log-json PATH}: one JSON object per line for every twinetd event;
    twistd's log and the JSON log both have the startup summary.
    """
    folder, port = etc
    (folder / "broken").write_text("service broken\n{\n\twait = maybe\n}\n")
    log, events = tmp_path / "twistd.log", tmp_path / "events.json"
    proc = twistd(
        "-n", "--pidfile=", "-l", str(log),
        "twinetd", "-c", str(folder), "--log-json", str(events),
    )  # fmt: skip
    try:
        assert echoes(port)
        waitForLine(events, '"exit"')
        # SIGUSR1 (twistd's log rotation) reopens it too.
        events.rename(tmp_path / "events.json.1")
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + DEADLINE
        while not events.exists():
            assert time.monotonic() < deadline, "not reopened"
            time.sleep(0.05)
        assert echoes(port)
        waitForLine(events, '"exit"')
    finally:
        stop(proc)
    assert '"start"' in events.read_text()
    events = tmp_path / "events.json.1"
    records = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = [r["twinetdEvent"] for r in records]
    assert kinds[:2] == ["listening", "started"], kinds
    assert kinds[2:] == ["start", "exit"], kinds
    listening, started, start, end = records[:4]
    assert (listening["service"], listening["port"], listening["protocol"]) == (
        "echo-stream",
        port,
        "tcp",
    )
    assert (started["services"], started["listening"], started["skipped"]) == (1, 1, 1)
    assert (started["notListening"], started["warnings"]) == (0, 0)
    assert started["errors"] >= 1
    assert (start["service"], start["pid"], start["host"]) == (
        "echo-stream",
        0,
        "127.0.0.1",
    )
    assert (end["status"], end["signal"]) == (0, None)
    assert end["duration"] in (0, 1)
    assert all(not key.startswith("log_") for r in records for key in r)
    # twistd rotated its own log on SIGUSR1 too.
    text = "".join(p.read_text() for p in tmp_path.glob("twistd.log*"))
    assert f"] {started['text']}" in text
    assert started["text"].startswith("twinetd started: 1 of 1 services listening")


def test_jsonLogCannotOpen(etc: tuple[Path, int], tmp_path: Path) -> None:
    folder, _ = etc
    proc = twistd(
        "-n", "--pidfile=", "twinetd", "-c", str(folder),
        "--log-json", str(tmp_path / "no" / "such" / "events.json"),
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=DEADLINE)
    finally:
        stop(proc)
    assert proc.returncode == 1
    assert b"twinetd: --log-json " in out and b"No such file" in out, out


def test_datagramServicesCountAsListening(tmp_path: Path) -> None:
    """
    The startup summary counts datagram services that listen (each logs its
    own C{listening} event, as stream services do).
    """
    folder = tmp_path / "etc"
    folder.mkdir()
    port = freePort()
    (folder / "echo").write_text(echoService(port))
    (folder / "udp").write_text(
        "service echo\n{\n\ttype = INTERNAL UNLISTED\n\tid = echo-dgram\n"
        f"\tport = {port}\n\tbind = 127.0.0.1\n\tsocket_type = dgram\n"
        "\twait = yes\n}\n"
    )
    events = tmp_path / "events.json"
    proc = twistd(
        *("-n", "--pidfile=", "-l", str(tmp_path / "twistd.log")),
        *("twinetd", "-c", str(folder), "--log-json", str(events)),
    )
    try:
        waitForLine(events, '"started"')
    finally:
        stop(proc)
    records = [json.loads(line) for line in events.read_text().splitlines()]
    listening = {
        r["service"]: r["protocol"] for r in records if r["twinetdEvent"] == "listening"
    }
    assert listening == {"echo-stream": "tcp", "echo-dgram": "udp"}
    [started] = [r for r in records if r["twinetdEvent"] == "started"]
    assert (started["services"], started["listening"]) == (2, 2)
