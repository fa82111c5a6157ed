"""
Shared helpers for integration tests: a bridge server on 127.0.0.1:0, a
collecting client, and a check that no child process is left behind.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.task import deferLater
from twisted.logger import Logger, globalLogPublisher
from twisted.python.failure import Failure

from tests.processes import childProcesses
from twinetd.child import ChildSetup
from twinetd.launch import LaunchPlan
from twinetd.logs import ServiceLog
from twinetd.model import Peer
from twinetd.modes.bridge import BridgeProtocol
from twinetd.spawn import BusySpawner, Spawner, spawnerFor
from twinetd.spawnclient import ProcessSpawner

reactor: Any = _reactor
DEADLINE = 15.0
CHILDREN = Path(__file__).parent / "children"


def childPlan(name: str, *args: str, env: dict[str, str] | None = None) -> LaunchPlan:
    """
    A plan running C{children/NAME.py} with this interpreter.
    """
    script = str(CHILDREN / f"{name}.py")
    return LaunchPlan(
        executable=sys.executable,
        argv=(sys.executable, script, *args),
        env=tuple((env or {}).items()),
    )


@pytest.fixture
def events() -> Any:
    """
    Every log event while the test runs.
    """
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


def within(d: defer.Deferred[Any], seconds: float = DEADLINE) -> defer.Deferred[Any]:
    return d.addTimeout(seconds, reactor)


class BridgeServer:
    """
    A plain ServerFactory whose protocols are L{BridgeProtocol}s.

    @ivar protocols: the bridges, in connection order.
    @ivar ended: one Deferred per bridge, fired by its C{onEnded}.
    @ivar endedCounts: how many times each bridge's C{onEnded} ran.
    @ivar events: every twinetd log event of the bridges.
    """

    def __init__(
        self,
        makePlan: Callable[[Peer], LaunchPlan],
        killDelay: float = 5.0,
        spawner: Spawner | None = None,
    ) -> None:
        self.makePlan = makePlan
        self.killDelay = killDelay
        self.protocols: list[BridgeProtocol] = []
        self.ended: list[defer.Deferred[None]] = []
        self.endedCounts: list[int] = []
        self.events: list[dict[str, Any]] = []
        self.spawner = spawner or spawnerFor(reactor)
        self.port: Any = None

    def buildProtocol(self, addr: object) -> BridgeProtocol:
        index = len(self.protocols)
        done: defer.Deferred[None] = defer.Deferred()
        self.ended.append(done)
        self.endedCounts.append(0)

        def onEnded() -> None:
            self.endedCounts[index] += 1
            done.callback(None)

        setup = ChildSetup(
            ServiceLog("test", logger=Logger(observer=self.events.append)),
            self.makePlan,
            self.spawner,
            reactor,
            self.killDelay,
        )
        protocol = BridgeProtocol(setup, onEnded=onEnded)
        self.protocols.append(protocol)
        return protocol

    def listen(self) -> int:
        factory = ServerFactory()
        factory.buildProtocol = self.buildProtocol  # type: ignore[method-assign]
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        return int(self.port.getHost().port)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("twinetdEvent") == kind]

    async def connect(self, client: Collector) -> Collector:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        await within(connectProtocol(endpoint, client))
        return client


class Collector(Protocol):
    """
    A client that collects what it receives; C{done} fires with all of it
    when the connection closes.  With C{paused}, it never reads.
    """

    def __init__(self, paused: bool = False, want: bytes | None = None) -> None:
        self.data = b""
        self.paused = paused
        self.want = want
        self.done: defer.Deferred[bytes] = defer.Deferred()
        self.got: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        if self.paused:
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if self.want is not None and self.want in self.data and not self.got.called:
            self.got.callback(self.data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.done.callback(self.data)


#: Which spawner a test's servers use: C{"posix"} (L{PosixSpawner}, the
#: default), C{"process"} (a spawner process, L{ProcessSpawner}) or
#: C{"busy"} (L{BusySpawner} with a threshold of 0: the first child from
#: the daemon, the next ones while it runs from the spawner process).
SPAWNERS = ("posix", "process", "busy")

#: Runs a test once with each spawner (see the C{spawner} fixture).
bothSpawners = pytest.mark.parametrize("spawnerKind", SPAWNERS)


@pytest.fixture
def spawnerKind() -> str:
    """
    The spawner of a test not parametrized with L{bothSpawners}.
    """
    return "posix"


@pytest_twisted.async_yield_fixture
async def spawner(spawnerKind: str) -> AsyncIterator[Spawner]:
    """
    The spawner C{spawnerKind} names.  A spawner process must have seen
    every child it started end by the end of the test (no child of it left
    behind, as L{noChildLeft} checks the test's own); then it is closed.
    """
    if spawnerKind == "posix":
        yield spawnerFor(reactor)
        return
    if spawnerKind == "busy":
        busy = BusySpawner(reactor, 0, ProcessSpawner)
        busy.start()
        yield busy
        await closeSpawner(busy.processSpawner)
        return
    made = ProcessSpawner(reactor)
    # Started now: its descriptors are there before the test counts any.
    made.start()
    yield made
    await closeSpawner(made)


async def closeSpawner(spawner: ProcessSpawner) -> None:
    """
    Wait until every child of C{spawner}'s process has ended (failing the
    test if some never do), then close it.
    """
    for _ in range(100):
        if not spawner.running:
            break
        await sleep(0.05)
    left = {process.pid for process in spawner.running.values()}
    await within(spawner.close())
    if left:
        pytest.fail(f"children of the spawner process left behind: {left}")


@pytest.fixture
def server(spawner: Spawner) -> Any:
    """
    Make L{BridgeServer}s (on the test's C{spawner}); they stop listening
    after the test.
    """
    servers: list[BridgeServer] = []

    def make(
        makePlan: Callable[[Peer], LaunchPlan], killDelay: float = 5.0
    ) -> BridgeServer:
        s = BridgeServer(makePlan, killDelay, spawner)
        s.listen()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.port.stopListening()


def childPids() -> set[int]:
    """
    This process's children, zombies included.
    """
    return set(childProcesses())


@pytest_twisted.async_yield_fixture
async def noChildLeft() -> AsyncIterator[None]:
    """
    Fail a test that leaves a child process (running or unreaped) behind;
    kill what is left.
    """
    before = childPids()
    yield
    left: set[int] = set()
    for _ in range(100):
        left = childPids() - before
        if not left:
            return
        await sleep(0.05)
    for pid in left:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    pytest.fail(f"child processes left behind: {sorted(left)}")


def fixedPort() -> int:
    """
    A free TCP port on 127.0.0.1 below the kernel's ephemeral range: tests
    that expect "connection refused" on a closed port must not use an
    ephemeral one, which a client socket may take as its own source port (a
    TCP self-connect then succeeds).
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(max(1024, low - 12000), low), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
