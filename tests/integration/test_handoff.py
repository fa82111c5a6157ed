"""
Socket handoff with real sockets on loopback and real children: C{wait =
no} connections handed to the child (L{HandoffProtocol}) and C{wait = yes}
stream services (L{WaitStreamListener}).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger

from twinetd import logs
from twinetd.child import ChildSetup
from twinetd.errors import SourceLocation
from twinetd.launch import LaunchPlan
from twinetd.listeners.waitstream import WaitStreamListener
from twinetd.model import Peer, ServiceConfig, SocketType
from twinetd.modes.handoff import HandoffProtocol, SocketHandedOff
from twinetd.policy.backoff import Backoff, doubling
from twinetd.policy.gate import admitEveryone
from twinetd.spawn import Spawner, spawnerFor

from ..runtime import runtimeFor
from .conftest import Collector, bothSpawners, childPlan, reactor, sleep, within

pytestmark = pytest.mark.usefixtures("noChildLeft")

PROGRAMS = Path(__file__).resolve().parents[2] / "etc" / "programs.d"


def programPlan(name: str) -> LaunchPlan:
    """
    A plan running C{etc/programs.d/NAME} with this interpreter.
    """
    script = str(PROGRAMS / name)
    return LaunchPlan(executable=sys.executable, argv=(sys.executable, script), env=())


def fields(text: bytes) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.decode().splitlines() if "=" in line
    )


def socketInode(fd: int) -> str:
    return f"socket:[{os.fstat(fd).st_ino}]"


def openSockets(pid: int | str = "self") -> set[str]:
    """
    The socket inodes a process has descriptors for.
    """
    found = set()
    folder = f"/proc/{pid}/fd"
    for name in os.listdir(folder):
        try:
            target = os.readlink(f"{folder}/{name}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


class RecordingHandoff(HandoffProtocol):
    """
    Notes the accepted socket's inode before handing it over, and whether
    the daemon still has it right after.
    """

    inode = ""
    heldAfter: bool | None = None
    lostCount = 0

    def connectionMade(self) -> None:
        handle = self.transport.getHandle()  # type: ignore[union-attr]
        self.inode = socketInode(handle.fileno())
        super().connectionMade()
        self.heldAfter = self.inode in openSockets()

    def connectionLost(self, reason: Any = None) -> None:
        self.lostCount += 1
        super().connectionLost(reason)


class BannerHandoff(RecordingHandoff):
    """
    Writes a banner (left in Twisted's buffer) just before the handoff, as
    the factory does with C{banner_success}.
    """

    def connectionMade(self) -> None:
        self.transport.write(b"BANNER\n")  # type: ignore[union-attr]
        super().connectionMade()


class HandoffServer:
    """
    A ServerFactory (on 127.0.0.1 or the dual-stack wildcard, port 0) whose
    protocols hand their socket to a child.
    """

    def __init__(
        self,
        plan: LaunchPlan,
        stderrToSocket: bool = False,
        interface: str = "127.0.0.1",
        protocolClass: type[RecordingHandoff] = RecordingHandoff,
        spawner: Spawner | None = None,
    ) -> None:
        self.plan = plan
        self.protocolClass = protocolClass
        self.stderrToSocket = stderrToSocket
        self.protocols: list[RecordingHandoff] = []
        self.ended: list[defer.Deferred[None]] = []
        self.endedCounts: list[int] = []
        self.peers: list[Peer] = []
        self.events: list[dict[str, Any]] = []
        self.spawner = spawner or spawnerFor(reactor)
        factory = ServerFactory()
        factory.buildProtocol = self.buildProtocol  # type: ignore[method-assign]
        self.port = reactor.listenTCP(0, factory, interface=interface)

    def makePlan(self, peer: Peer) -> LaunchPlan:
        self.peers.append(peer)
        return self.plan

    def buildProtocol(self, addr: object) -> RecordingHandoff:
        index = len(self.protocols)
        done: defer.Deferred[None] = defer.Deferred()
        self.ended.append(done)
        self.endedCounts.append(0)

        def onEnded() -> None:
            self.endedCounts[index] += 1
            done.callback(None)

        setup = ChildSetup(
            logs.ServiceLog("test", logger=Logger(observer=self.events.append)),
            self.makePlan,
            self.spawner,
            reactor,
            killDelay=1.0,
        )
        protocol = self.protocolClass(
            setup, onEnded=onEnded, stderrToSocket=self.stderrToSocket
        )
        self.protocols.append(protocol)
        return protocol

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get(logs.EVENT_FIELD) == kind]

    async def connect(self, client: Collector) -> Collector:
        number = self.port.getHost().port
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", number)
        await within(connectProtocol(endpoint, client))
        client.localPort = client.transport.getHost().port  # type: ignore[attr-defined,union-attr]
        return client


@pytest.fixture
def handoffServer(spawner: Spawner) -> Any:
    servers: list[HandoffServer] = []

    def make(plan: LaunchPlan, **kw: Any) -> HandoffServer:
        s = HandoffServer(plan, spawner=spawner, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.port.stopListening()


# wait = no


@pytest_twisted.ensureDeferred
async def test_fromfdLoopSeed(handoffServer: Any) -> None:
    """
    The tutorial's socket.fromfd loop: greeting, a timestamped echo, and an
    empty line closes the connection.
    """
    s = handoffServer(programPlan("fromfd_loop.py"))
    client = await s.connect(Collector(want=b"> "))
    assert await within(client.got) == b"Welcome!\n> "
    client.want = b"world!\n> "
    client.got = defer.Deferred()
    client.transport.write(b"hello world!\r\n")
    reply = await within(client.got)
    assert re.fullmatch(
        rb"Welcome!\n> \[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] hello world!\n> ",
        reply,
    ), reply
    client.transport.write(b"\r\n")
    await within(client.done)
    await within(s.ended[0])
    assert s.endedCounts == [1]
    [end] = s.of(logs.EXIT)
    assert end["status"] == 0


@pytest.mark.parametrize("interface", ["127.0.0.1", "::"])
@pytest_twisted.ensureDeferred
async def test_fromfdPeerSeed(handoffServer: Any, interface: str) -> None:
    """
    The tutorial's socket.fromfd(AF_INET) program reports the client's real
    address and port as C{('127.0.0.1', PORT)}, also on a dual-stack
    listener (the socket is made IPv4 first, as xinetd does), while the
    logged host keeps xinetd's C{::ffff:} form there.
    """
    s = handoffServer(programPlan("fromfd_peer.py"), interface=interface)
    client = await s.connect(Collector())
    clientPort = client.localPort
    data = await within(client.done)
    lines = data.decode().splitlines()
    assert lines[:2] == [
        "Welcome!",
        f"you are connected from ('127.0.0.1', {clientPort})",
    ], data
    assert re.fullmatch(r"Now: \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}", lines[2])
    assert len(lines) == 3
    await within(s.ended[0])
    [start] = s.of(logs.START)
    expected = "127.0.0.1" if interface == "127.0.0.1" else "::ffff:127.0.0.1"
    assert (start["host"], start["port"]) == (expected, clientPort)


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_childGetsTheSocket(handoffServer: Any) -> None:
    """
    The child's 0 and 1 are the accepted socket itself, blocking; 2 is a
    pipe whose lines are logged; the client sees end of file when the child
    exits.
    """
    s = handoffServer(childPlan("handoffinfo"))
    client = await s.connect(Collector())
    data = await within(client.done, 10)
    info = fields(data)
    inode = s.protocols[0].inode
    assert info["fd0"] == info["fd1"] == inode
    assert info["fd2"].startswith("pipe:")
    assert info["nonblocking"] == "False"
    assert info["family"] == "AF_INET"
    assert info["peer"] == repr(("127.0.0.1", client.localPort))
    assert b"to-stderr" not in data
    await within(s.ended[0])
    [line] = s.of(logs.STDERR)
    assert line["line"] == "to-stderr"
    [start] = s.of(logs.START)
    [end] = s.of(logs.EXIT)
    assert start["pid"] == end["pid"] and end["status"] == 0


@pytest_twisted.ensureDeferred
async def test_stderrToSocket(handoffServer: Any) -> None:
    """
    With stderrToSocket the child's stderr reaches the client (xinetd).
    """
    s = handoffServer(childPlan("handoffinfo"), stderrToSocket=True)
    client = await s.connect(Collector())
    data = await within(client.done, 10)
    info = fields(data)
    assert info["fd2"] == s.protocols[0].inode
    assert data.startswith(b"to-stderr\n")
    await within(s.ended[0])
    assert s.of(logs.STDERR) == []


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_daemonKeepsNoCopy(handoffServer: Any) -> None:
    """
    Right after the handoff the daemon has no descriptor for the socket
    while the child does; the protocol got connectionLost once; the client
    sees end of file as soon as the child exits.
    """
    s = handoffServer(programPlan("fromfd_loop.py"))
    client = await s.connect(Collector(want=b"> "))
    await within(client.got)
    protocol = s.protocols[0]
    assert protocol.heldAfter is False
    assert protocol.inode not in openSockets()
    assert protocol.child is not None and protocol.child.pid is not None
    assert protocol.inode in openSockets(protocol.child.pid)
    assert protocol.lostCount == 1
    assert protocol.lostReason is not None
    assert protocol.lostReason.check(SocketHandedOff)
    started = time.monotonic()
    client.transport.write(b"\n")
    await within(client.done, 5)
    assert time.monotonic() - started < 5
    await within(s.ended[0])
    assert protocol.lostCount == 1
    assert s.endedCounts == [1]


@pytest_twisted.ensureDeferred
async def test_pendingBannerFirst(handoffServer: Any) -> None:
    """
    What the daemon wrote just before the handoff reaches the client before
    the child's output.
    """
    s = handoffServer(programPlan("fromfd_peer.py"), protocolClass=BannerHandoff)
    client = await s.connect(Collector())
    data = await within(client.done)
    assert data.startswith(b"BANNER\nWelcome!\nyou are connected from ")
    await within(s.ended[0])


@pytest_twisted.ensureDeferred
async def test_manyHandoffs(handoffServer: Any) -> None:
    """
    Several connections at once, each with its own child; the daemon ends
    up holding none of their sockets.
    """
    s = handoffServer(childPlan("handoffinfo"))
    clients = [await s.connect(Collector()) for _ in range(5)]
    results = [await within(c.done, 10) for c in clients]
    ports = {c.localPort for c in clients}
    assert {fields(r)["peer"] for r in results} == {
        repr(("127.0.0.1", p)) for p in ports
    }
    for d in s.ended:
        await within(d)
    assert s.endedCounts == [1] * 5
    assert not {p.inode for p in s.protocols} & openSockets()


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_spawnFailureClosesConnection(handoffServer: Any) -> None:
    s = handoffServer(
        LaunchPlan(executable="/nonexistent/server", argv=("server",), env=())
    )
    client = await s.connect(Collector())
    assert await within(client.done) == b""
    await within(s.ended[0])
    [failed] = s.of(logs.SPAWN_FAILED)
    assert "/nonexistent/server" in failed["message"]
    assert s.of(logs.START) == []


# wait = yes


def waitConfig() -> ServiceConfig:
    return ServiceConfig(
        name="waitstream",
        source=SourceLocation("<test>", 1),
        socketType=SocketType.STREAM,
        wait=True,
        port=0,
        bind="127.0.0.1",
        server=sys.executable,
    )


class WaitHarness:
    def __init__(
        self,
        plan: LaunchPlan,
        backoff: Backoff | None = None,
        killDelay: float = 1.0,
        spawner: Spawner | None = None,
    ) -> None:
        self.events: list[dict[str, Any]] = []
        self.plan = plan
        self.service = WaitStreamListener(
            waitConfig(),
            runtimeFor(
                reactor, killDelay=killDelay, spawner=spawner or spawnerFor(reactor)
            ),
            reactor,
            admit=admitEveryone,
            makePlan=lambda peer: self.plan,
            serviceLog=logs.ServiceLog(
                "waitstream", logger=Logger(observer=self.events.append)
            ),
            backoff=backoff,
        )

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get(logs.EVENT_FIELD) == kind]

    async def connect(self, client: Collector) -> Collector:
        port = self.service.port
        assert port is not None
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await within(connectProtocol(endpoint, client))
        return client

    async def waitFor(self, kind: str, count: int, seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        while len(self.of(kind)) < count:
            assert time.monotonic() < deadline, f"fewer than {count} {kind}"
            await sleep(0.02)


@pytest.fixture
def waitHarness(spawner: Spawner) -> Any:
    harnesses: list[WaitHarness] = []

    def make(*args: Any, **kw: Any) -> WaitHarness:
        h = WaitHarness(*args, spawner=spawner, **kw)
        harnesses.append(h)
        h.service.startService()
        return h

    yield make
    for h in harnesses:
        if h.service.running:
            # The service's own stop (TERM, KILL after 1 s) leaves no child.
            h.service.stopService()


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_waitChildAcceptsSeveral(waitHarness: Any) -> None:
    """
    One child accepts three clients one after another on the listening
    socket (blocking, fd 0), then exits; the service watches again and the
    next client gets a new child.
    """
    h: WaitHarness = waitHarness(childPlan("acceptn", "3"))
    replies = []
    for _ in range(3):
        client = await h.connect(Collector())
        replies.append(await within(client.done))
    pids = {re.search(rb"pid=(\d+)", r).group(1) for r in replies}  # type: ignore[union-attr]
    assert len(pids) == 1
    [pid] = pids
    assert replies == [b"hello %d pid=%s blocking=True\n" % (n, pid) for n in range(3)]
    await h.waitFor(logs.EXIT, 1)
    [start] = h.of(logs.START)
    assert (start["host"], start["pid"]) == ("<no address>", int(pid))
    assert h.of(logs.EXIT)[0]["status"] == 0
    client = await h.connect(Collector())
    reply = await within(client.done)
    assert reply.startswith(b"hello 0 pid=") and pid not in reply
    assert len(h.of(logs.START)) == 2
    # The second child waits for more clients: stopping ends it.
    await within(h.service.stopService())
    [_, second] = h.of(logs.EXIT)
    assert second["signal"] == 15


@pytest_twisted.ensureDeferred
async def test_waitNoForkStorm(waitHarness: Any) -> None:
    """
    A child that exits without accepting while a client waits: a few quick
    restarts, then restarts only after a growing delay (logged), instead
    of one fork after another.
    """
    h: WaitHarness = waitHarness(
        childPlan("noaccept"),
        Backoff(doubling(0.1, 0.2), free=3),
    )
    started = time.monotonic()
    client = await h.connect(Collector())
    # 4 at once (3 failures are free), then one after 0.1 s and one per
    # 0.2 s (without the backoff: hundreds a second).
    await h.waitFor(logs.START, 7)
    assert time.monotonic() - started >= 0.1 + 2 * 0.2
    backoffs = h.of(logs.STREAM_BACKOFF)
    assert [b["delay"] for b in backoffs] == [0.1, 0.2]  # each delay logged once
    await within(h.service.stopService())
    # The pending connection dies with the listening socket.
    client.transport.abortConnection()
    await within(client.done)


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_waitStopKillsChild(waitHarness: Any) -> None:
    """
    stopService: SIGTERM, then SIGKILL after the kill delay for a child
    that ignores SIGTERM; the result fires once it is gone.
    """
    h: WaitHarness = waitHarness(childPlan("holdlisten", "stubborn"), killDelay=0.5)
    client = await h.connect(Collector())
    await h.waitFor(logs.START, 1)
    await h.waitFor(logs.STDERR, 1)  # its SIGTERM handler is set
    started = time.monotonic()
    await within(h.service.stopService())
    assert time.monotonic() - started >= 0.4
    [end] = h.of(logs.EXIT)
    assert end["signal"] == 9
    assert h.service.port is None
    client.transport.abortConnection()
    await within(client.done)
