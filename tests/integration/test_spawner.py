"""
The spawner process (L{twinetd.spawnclient}) with real children: what only
it does.  The modes' own behaviour with it is covered by their tests,
parametrized over both spawners (C{bothSpawners}).
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.processes import childStates
from twinetd import logs, spawnclient
from twinetd.launch import LaunchPlan
from twinetd.spawnclient import ProcessSpawner

from .conftest import BridgeServer, Collector, childPlan, sleep, within

pytestmark = [
    pytest.mark.usefixtures("noChildLeft"),
    pytest.mark.parametrize("spawnerKind", ["process"]),
]


def always(plan: LaunchPlan) -> Any:
    return lambda peer: plan


def dead(pid: int) -> bool:
    """
    Whether C{pid} is gone or a zombie (its new parent may not reap it at
    once).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def echoOnce(s: BridgeServer, data: bytes = b"hi\n") -> bytes:
    client = await s.connect(Collector())
    client.transport.write(data)
    client.transport.loseWriteConnection()
    reply: bytes = await within(client.done)
    return reply


@pytest_twisted.ensureDeferred
async def test_spawnerProcessDies(
    server: Any, spawner: ProcessSpawner, events: Any
) -> None:
    """
    When the spawner process is killed, the daemon logs it, kills the
    children it had (their connections end, EXIT says SIGKILL, each
    connection's end runs once) and starts a new one for the next
    connection.
    """
    s = server(always(childPlan("stubborn")), killDelay=30)
    client = await s.connect(Collector(want=b"ready\n"))
    await within(client.got)
    [start] = s.of(logs.START)
    first = spawner.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await within(client.done)
    await within(s.ended[0])
    [end] = s.of(logs.EXIT)
    assert (end["pid"], end["signal"]) == (start["pid"], signal.SIGKILL)
    for _ in range(100):
        if dead(start["pid"]):
            break
        await sleep(0.05)
    assert dead(start["pid"])
    assert [
        e for e in events if e.get("log_format", "").startswith("the spawner process")
    ]
    s.makePlan = always(childPlan("echo"))
    assert await echoOnce(s) == b"hi\n"
    await within(s.ended[1])
    assert spawner.pid not in (None, first)
    assert s.endedCounts == [1, 1]


@pytest_twisted.ensureDeferred
async def test_fewDescriptorsNoChildLeft(server: Any, spawner: ProcessSpawner) -> None:
    """
    The spawner process holds its standard descriptors, its socket and
    its signal wake-up pipe, whatever the daemon holds, and reaps every
    child.
    """
    s = server(always(childPlan("echo")))
    holders = [await s.connect(Collector()) for _ in range(5)]
    for i in range(10):
        assert await echoOnce(s, b"%d\n" % i) == b"%d\n" % i
    assert spawner.pid is not None
    assert len(os.listdir(f"/proc/{spawner.pid}/fd")) <= 6
    for client in holders:
        client.transport.loseWriteConnection()
        await within(client.done)
    for done in s.ended:
        await within(done)
    assert childStates(spawner.pid) == {}


@pytest_twisted.ensureDeferred
async def test_execFailsInTheSpawner(server: Any, tmp_path: Path) -> None:
    """
    A program the pre-check passes but C{execve} refuses (not a known
    format) fails its connection as a failed spawn does: the same
    C{spawnFailed} event (xinetd's C{FAIL: id fork} where asked) with the
    system's reason, no START or EXIT, the connection closed, its end run
    once.
    """
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x01\x02 not a program\n")
    bad.chmod(0o755)
    s = server(always(LaunchPlan(executable=str(bad), argv=("bad",), env=())))
    client = await s.connect(Collector())
    assert await within(client.done) == b""
    await within(s.ended[0])
    assert s.of(logs.START) == [] and s.of(logs.EXIT) == []
    [failed] = s.of(logs.SPAWN_FAILED)
    assert failed["message"] == f"cannot execute {bad}: Exec format error"
    assert failed["host"] == "127.0.0.1"
    assert s.endedCounts == [1]


@pytest_twisted.ensureDeferred
async def test_stuckSpawnerReplaced(
    server: Any, spawner: ProcessSpawner, events: Any, monkeypatch: Any
) -> None:
    """
    A spawner process that takes no request (stopped here; an C{execve}
    hung on a dead file system in life) does not hold the daemon up: the
    requests wait in the daemon, the connections are accepted meanwhile;
    after L{spawnclient.STUCK_TIMEOUT} the spawner process is killed, its
    connections end, each once, and a new one serves the next.
    """
    monkeypatch.setattr(spawnclient, "STUCK_TIMEOUT", 1.0)
    s = server(always(childPlan("echo")))
    assert await echoOnce(s) == b"hi\n"
    first = spawner.pid
    assert first is not None and spawner._channel is not None
    # A small socket buffer: a few requests fill it.
    spawner._channel.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    os.kill(first, signal.SIGSTOP)
    clients = []
    for _ in range(30):
        client = await s.connect(Collector())
        client.transport.write(b"hi\n")
        clients.append(client)
        if spawner._channel is not None and spawner._channel.waiting:
            break
    assert spawner._channel is not None and spawner._channel.waiting
    for client in clients:
        assert await within(client.done, 10) == b""
    [stuck] = [e for e in events if "took none" in e.get("log_format", "")]
    assert stuck["count"] >= 1
    for _ in range(100):
        if dead(first):
            break
        await sleep(0.05)
    assert dead(first)
    assert await echoOnce(s) == b"hi\n"
    assert spawner.pid not in (None, first)
    for done in s.ended:
        await within(done)
    assert s.endedCounts == [1] * len(s.ended)
