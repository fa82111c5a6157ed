"""
C{--metrics}: a real daemon (C{twistd -n twinetd}) scraped with a real HTTP
client (C{urllib}), its C{/status} read by C{twinetd status}, and its
SIGUSR2 status dump.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_operating import ask, jsonEvents, service, waitFor
from tests.integration.test_twistd import (
    DEADLINE,
    TWISTD,
    connect,
    environment,
    freePort,
    readToEnd,
)
from twinetd.logs import STATUS


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def udpService(name: str, port: int) -> str:
    return (
        f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
        "\tsocket_type = dgram\n\tprotocol = udp\n\twait = no\n\tuser = -\n"
        "\tbind = 127.0.0.1\n\tonly_from = 10.9.9.9\n"
        f"\tserver = {sys.executable}\n}}\n"
    )


class Daemon:
    def __init__(self, tmp_path: Path, endpoint: str) -> None:
        self.ports = {"echo": freePort(), "refused": freePort(), "udp": freePort()}
        etc = tmp_path / "etc"
        etc.mkdir()
        (etc / "echo").write_text(service("echo", self.ports["echo"], "echo.py"))
        (etc / "refused").write_text(
            service("refused", self.ports["refused"], extra="\tonly_from = 10.9.9.9\n")
        )
        (etc / "udp").write_text(udpService("udp", self.ports["udp"]))
        self.endpoint = endpoint
        self.log = tmp_path / "events.json"
        self.proc = subprocess.Popen(
            [
                *(*TWISTD, "-n", "--pidfile=", "-l", str(tmp_path / "twistd.log")),
                *("twinetd", "-c", str(etc), "--metrics", endpoint),
                *("--log-json", str(self.log)),
            ],
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def status(self) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "twinetd", "status", self.endpoint],
            env=environment(),
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(DEADLINE)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    port = freePort()
    running = Daemon(tmp_path, f"tcp:{port}:interface=127.0.0.1")
    running.httpPort = port  # type: ignore[attr-defined]
    try:
        yield running
    finally:
        running.stop()


def get(port: int, path: str) -> tuple[str, bytes]:
    connect(port).close()  # listening
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}{path}", timeout=DEADLINE
    ) as r:
        return r.headers["content-type"], r.read()


def test_metrics(daemon: Daemon) -> None:
    """
    C{/metrics}: Prometheus' text format with each service's accepted,
    refused (by reason), bytes (by direction), running and listening, the
    datagrams dropped, and the start-latency histogram.
    """
    for data in (b"hello\n", b"metrics!\n"):
        with connect(daemon.ports["echo"]) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            assert readToEnd(sock) == data
    assert ask(daemon.ports["refused"]) == b""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"x", ("127.0.0.1", daemon.ports["udp"]))
    port = daemon.httpPort  # type: ignore[attr-defined]

    def scraped() -> dict[Any, float] | None:
        kind, body = get(port, "/metrics")
        assert kind.startswith("text/plain")
        found = samples(body.decode())
        done = (
            found.get(("twinetd_running", (("service", "echo"),))) == 0
            and found.get(("twinetd_datagrams_dropped_total", (("service", "udp"),)))
            == 1
        )
        return found if done else None

    found = waitFor(scraped, "the counts never settled")
    echo = (("service", "echo"),)
    assert found["twinetd_accepted_total", echo] == 2
    assert found["twinetd_bytes_total", (("direction", "in"), *echo)] == 15
    assert found["twinetd_bytes_total", (("direction", "out"), *echo)] == 15
    assert found["twinetd_listening", echo] == 1
    assert found["twinetd_spawn_failures_total", echo] == 0
    refused = (("reason", "address"), ("service", "refused"))
    assert found["twinetd_refused_total", refused] == 1
    assert found["twinetd_refused_total", (("reason", "address"), ("service", "udp"))]
    assert found["twinetd_start_latency_seconds_count", ()] == 2
    assert 0 < found["twinetd_start_latency_seconds_sum", ()] < DEADLINE
    assert found["process_open_fds", ()] > 0
    # The daemon's default spawner process, not needed by these clients.
    assert found["twinetd_spawner_process_running", ()] == 0


def test_status(daemon: Daemon) -> None:
    """
    C{/status} is the JSON status document; C{twinetd status ENDPOINT}
    prints it as a table; SIGUSR2 logs the same table and document.
    """
    ask(daemon.ports["echo"])
    port = daemon.httpPort  # type: ignore[attr-defined]
    kind, body = get(port, "/status")
    assert kind == "application/json"
    document = json.loads(body)
    byId = {s["id"]: s for s in document["services"]}
    assert sorted(byId) == ["echo", "refused", "udp"]
    assert byId["echo"]["listening"] is True
    assert byId["echo"]["port"] == daemon.ports["echo"]
    assert (byId["echo"]["kind"], byId["udp"]["kind"]) == ("bridge", "datagram")
    assert document["pid"] == daemon.proc.pid
    # The daemon's default spawner process, not started by one connection.
    assert document["spawnerProcess"] == {"pid": None, "running": 0}
    done = daemon.status()
    assert done.returncode == 0, done.stderr
    table = done.stdout.decode().splitlines()
    assert table[0].startswith("twinetd ")
    assert "3 of 3 services listening" in table[0]
    assert table[1].split()[:3] == ["service", "proto", "port"]
    assert any(line.split()[:4] == ["echo", "tcp", str(daemon.ports["echo"]), "bridge"]
               for line in table)  # fmt: skip
    assert table[-1] == "spawner process: not started"
    daemon.proc.send_signal(signal.SIGUSR2)
    [event] = waitFor(lambda: jsonEvents(daemon.log, STATUS), "no status dump")
    assert event["table"].splitlines()[1:4] == table[1:4]
    assert {s["id"] for s in event["status"]["services"]} == set(byId)


def test_unixSocket(tmp_path: Path) -> None:
    """
    C{--metrics unix:PATH} serves on a Unix socket; C{twinetd status
    unix:PATH} reads it.
    """
    path = tmp_path / "metrics.sock"
    running = Daemon(tmp_path, f"unix:{path}")
    try:
        waitFor(path.exists, "no socket")
        done = waitFor(lambda: (d := running.status()).returncode == 0 and d, "down")
        assert b"3 of 3 services listening" in done.stdout
    finally:
        running.stop()


def test_statusUnreachable(tmp_path: Path) -> None:
    """
    C{twinetd status} on an endpoint nobody serves: the reason, exit 1.
    """
    done = subprocess.run(
        [sys.executable, "-m", "twinetd", "status", f"unix:{tmp_path}/none"],
        env=environment(),
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"twinetd status: unix:{tmp_path}/none: ".encode())
