"""
Datagram services with real UDP sockets on 127.0.0.1 and real children.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from twinetd import logs
from twinetd.errors import SourceLocation
from twinetd.launch import LaunchPlan, planLaunch
from twinetd.listeners.datagram import DatagramServing
from twinetd.model import Peer, ServiceConfig, SocketType
from twinetd.modes.internal import TIME_OFFSET, InternalService
from twinetd.policy.gate import Admission
from twinetd.policy.limits import Ticket as LimitsTicket
from twinetd.spawn import Spawner

from ..runtime import datagramListener
from .conftest import CHILDREN, DEADLINE, bothSpawners, reactor, sleep, within

pytestmark = pytest.mark.usefixtures("noChildLeft")


def record(
    name: str = "dg", wait: bool = False, instances: int | None = None, **kw: Any
) -> ServiceConfig:
    kw.setdefault("server", sys.executable)
    return ServiceConfig(
        name=name,
        source=SourceLocation("<test>", 1),
        socketType=SocketType.DGRAM,
        wait=wait,
        port=0,
        protocol="udp",
        bind="127.0.0.1",
        instances=instances,
        **kw,
    )


def planFor(
    config: ServiceConfig, child: str, *args: str
) -> Callable[[Peer | None], LaunchPlan]:
    script = str(CHILDREN / f"{child}.py")
    # The interpreter's full path as argv[0] (NAMEINARGS): with a bare name
    # Python looks for its library from the working directory, / here.
    withArgs = attrs.evolve(
        config,
        serverArgs=(sys.executable, script, *args),
        flags=config.flags | {"NAMEINARGS"},
    )

    def make(peer: Peer | None) -> LaunchPlan:
        return planLaunch(withArgs, peer, {}, os.geteuid())

    return make


class Client(DatagramProtocol):
    """
    A UDP client collecting the datagrams it receives.
    """

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Any]] = []
        self._waiting: list[tuple[int, defer.Deferred[None]]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append((datagram, addr))
        for entry in list(self._waiting):
            if len(self.received) >= entry[0]:
                self._waiting.remove(entry)
                entry[1].callback(None)

    def send(self, data: bytes, port: int, host: str = "127.0.0.1") -> None:
        assert self.transport is not None
        self.transport.write(data, (host, port))

    async def wait(self, count: int, seconds: float = DEADLINE) -> list[bytes]:
        if len(self.received) < count:
            d: defer.Deferred[None] = defer.Deferred()
            self._waiting.append((count, d))
            await within(d, seconds)
        return [data for data, _ in self.received]


@pytest.fixture
def clients() -> Any:
    ports: list[Any] = []

    def make(interface: str = "127.0.0.1") -> Client:
        client = Client()
        ports.append(
            reactor.listenUDP(0, client, interface=interface, maxPacketSize=65535)
        )
        return client

    yield make
    for port in ports:
        port.stopListening()


@pytest_twisted.async_yield_fixture
async def services(spawner: Spawner) -> Any:
    made: list[DatagramServing] = []

    def make(config: ServiceConfig, makePlan: Any = None, **kw: Any) -> DatagramServing:
        events: list[dict[str, Any]] = []
        kw.setdefault(
            "serviceLog",
            logs.ServiceLog.fromConfig(config, None, Logger(observer=events.append)),
        )
        service = datagramListener(
            config,
            reactor,
            makePlan=makePlan or planFor(config, "dgreply"),
            spawner=spawner,
            **kw,
        )
        service.events = events  # type: ignore[attr-defined]
        service.startService()
        made.append(service)
        return service

    yield make
    for service in made:
        if service.running:
            await within(service.stopService())


def of(service: DatagramServing, kind: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = service.events  # type: ignore[attr-defined]
    return [
        e
        for e in events
        if e.get("twinetdEvent") == kind and e.get("service") == service.config.id
    ]


async def until(check: Callable[[], bool], seconds: float = DEADLINE) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        await sleep(0.02)


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_requestResponse(services: Any, clients: Any) -> None:
    """
    wait = no: each datagram gets a child; its output comes back as one
    datagram from the service's port; the environment names the sender.
    """
    config = record()
    service = services(config)
    port = service.boundPort
    assert port
    client = clients()
    client.send(b"hello", port)
    assert await client.wait(1) == [b"reply:hello"]
    assert client.received[0][1] == ("127.0.0.1", port)

    envService = services(record("env"), planFor(record("env"), "dgreply", "env"))
    client2 = clients()
    client2.send(b"x", envService.boundPort)
    [reply] = await client2.wait(1)
    myPort = client2.transport.getHost().port  # type: ignore[union-attr]
    assert reply.decode().splitlines() == [
        "REMOTE_HOST=127.0.0.1",
        "PROTO=UDP",
        "UDPREMOTEIP=127.0.0.1",
        f"UDPREMOTEPORT={myPort}",
    ]
    await until(lambda: not service.children and not envService.children)
    assert len(of(service, "exit")) == 1


@pytest_twisted.ensureDeferred
async def test_binaryAndEmptyDatagrams(services: Any, clients: Any) -> None:
    """
    Arbitrary bytes pass unchanged; an empty datagram gives the child an
    empty standard input; a child that writes nothing sends no reply.
    """
    service = services(record())
    client = clients()
    garbage = bytes(range(256)) * 4 + b"\x00\xff\r\n"
    client.send(garbage, service.boundPort)
    assert await client.wait(1) == [b"reply:" + garbage]
    client.send(b"", service.boundPort)
    assert await client.wait(2) == [b"reply:" + garbage, b"reply:"]

    silent = services(record("silent"), planFor(record(), "dgreply", "silent"))
    client.send(b"anything", silent.boundPort)
    await until(lambda: len(of(silent, "exit")) == 1)
    # A reply goes out before its child's exit is logged: one asked for
    # now arrives after anything the silent child sent.
    client.send(b"after", service.boundPort)
    assert (await client.wait(3))[2:] == [b"reply:after"]


@pytest_twisted.ensureDeferred
async def test_bigReplyTruncated(services: Any, clients: Any) -> None:
    """
    Output beyond 65507 bytes is dropped and logged once; the first 65507
    bytes arrive as one datagram.
    """
    config = record()
    service = services(config, planFor(config, "dgreply", "big", "200000"))
    client = clients()
    client.send(b"go", service.boundPort)
    [reply] = await client.wait(1)
    assert reply == b"x" * 65507
    await until(lambda: not service.children)
    [event] = of(service, "replyTruncated")
    assert (event["sent"], event["dropped"]) == (65507, 200000 - 65507)


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_stderrLogged(services: Any, clients: Any) -> None:
    config = record()
    service = services(config, planFor(config, "dgreply", "stderr"))
    client = clients()
    client.send(b"e", service.boundPort)
    assert await client.wait(1) == [b"reply:e"]
    await until(lambda: not service.children)
    assert [e["line"] for e in of(service, "stderr")] == ["first line", "second line"]


@pytest_twisted.ensureDeferred
async def test_childTimeout(services: Any, clients: Any) -> None:
    """
    A child running longer than the child timeout is terminated.
    """
    config = record()
    service = services(
        config, planFor(config, "dgreply", "sleep", "30"), childTimeout=0.3
    )
    client = clients()
    client.send(b"slow", service.boundPort)
    await until(lambda: len(of(service, "exit")) == 1)
    [event] = of(service, "exit")
    assert event["signal"] == 15
    assert client.received == []


@pytest_twisted.ensureDeferred
async def test_flood(services: Any, clients: Any, tmp_path: Path) -> None:
    """
    2000 datagrams as fast as possible: at most `instances` children at
    once, the daemon holds at most that many datagrams, drops are counted
    and logged at a bounded rate, and the service still answers afterwards.
    """
    instances = 3
    config = record(instances=instances)
    records = tmp_path / "records"
    records.mkdir()
    service: DatagramServing = services(
        config, planFor(config, "dgreply", "record", str(records), "0.05")
    )
    spawner = service.runtime.spawner
    peaks: list[int] = []

    class Counting:
        def spawn(self, protocol: Any, plan: LaunchPlan, childFDs: Any = None) -> Any:
            peaks.append(len(service.children) + service._pending)
            return spawner.spawn(protocol, plan, childFDs)

    service.runtime = attrs.evolve(service.runtime, spawner=Counting())
    client = clients()
    port = service.boundPort
    for i in range(2000):
        client.send(b"%d" % i, port)
    await until(lambda: bool(peaks))
    # Quiet: no child running and nothing new for a while.
    seen = -1
    for _ in range(200):
        now = len(peaks) + sum(service.dropped.values())
        if now == seen and not service.children:
            break
        seen = now
        await sleep(0.3)
    else:
        pytest.fail("the flood never ended")
    spawned = len(peaks)
    assert 1 <= spawned < 2000
    assert max(peaks) <= instances
    dropped = sum(service.dropped.values())
    assert dropped > 0
    assert spawned + dropped <= 2000
    # Bounded logging: one FAIL, then summaries at most once a second.
    assert len(of(service, logs.FAIL)) <= 1 + spawned
    assert len(of(service, "dgramDropped")) <= 2 + 60

    # Real overlap of the children, from their own clocks.
    await until(lambda: len(list(records.iterdir())) == spawned)
    spans = [tuple(map(int, p.read_text().split())) for p in records.iterdir()]
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    live = peak = 0
    for _, step in points:
        live += step
        peak = max(peak, live)
    assert peak <= instances

    answered = len(client.received)
    client.send(b"after", port)
    await client.wait(answered + 1)
    assert client.received[-1][0] == b"reply:after"
    await until(lambda: not service.children)


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_waitYesServer(services: Any, clients: Any) -> None:
    """
    wait = yes: the child gets the socket, serves several datagrams from two
    clients, exits when idle; the next datagram starts a new child.
    """
    config = record("tftp", wait=True)
    service = services(config, planFor(config, "tftpish"))
    port = service.boundPort
    a, b = clients(), clients()
    a.send(b"a1", port)
    [first] = await a.wait(1)
    pid, remote, payload = first.split(b":", 2)
    assert (remote, payload) == (b"127.0.0.1", b"a1")
    b.send(b"b1", port)
    a.send(b"a2", port)
    assert await b.wait(1) == [pid + b":127.0.0.1:b1"]
    assert (await a.wait(2))[1] == pid + b":127.0.0.1:a2"
    assert a.received[0][1] == ("127.0.0.1", port)
    assert len(service.children) == 1

    await until(lambda: not service.children)
    assert len(of(service, "exit")) == 1
    b.send(b"b2", port)
    [_, second] = await b.wait(2)
    newPid = second.split(b":", 1)[0]
    assert newPid != pid
    await until(lambda: not service.children)
    assert [e["pid"] for e in of(service, "start")] == [int(pid), int(newPid)]
    assert not of(service, "dgramBackoff")


@pytest_twisted.ensureDeferred
async def test_waitYesRefusedAndUnread(services: Any, clients: Any) -> None:
    """
    A refused sender's datagram is consumed (no child, no loop); a child
    that exits without reading leaves its datagram drained and the service
    backs off, without a fork storm.
    """

    config = record("refuse", wait=True)
    refusing = services(
        config,
        planFor(config, "tftpish"),
        admit=lambda p: defer.succeed(Admission.refused("address")),
    )
    client = clients()
    for i in range(3):
        client.send(b"r%d" % i, refusing.boundPort)
    await until(lambda: sum(refusing.dropped.values()) == 3)
    # Consumed, not read again: a datagram sent now is the next one dropped.
    client.send(b"r3", refusing.boundPort)
    await until(lambda: sum(refusing.dropped.values()) >= 4)
    assert sum(refusing.dropped.values()) == 4
    assert not of(refusing, "start")
    [fail] = of(refusing, logs.FAIL)
    assert (fail["reason"], fail["host"]) == ("address", "127.0.0.1")

    config = record("noread", wait=True)
    lazy = services(config, planFor(config, "tftpish", "noread"))
    # Datagrams keep coming; each child exits at once, leaving its own.
    sent = 0
    deadline = time.monotonic() + DEADLINE
    while len(of(lazy, "dgramBackoff")) < 3:
        assert time.monotonic() < deadline, "no backoff"
        client.send(b"n%d" % sent, lazy.boundPort)
        sent += 1
        await sleep(0.01)
    # Each quick failure doubles the wait: one child per delay, however
    # many datagrams wait (no fork storm).
    assert [e["delay"] for e in of(lazy, "dgramBackoff")] == [0.1, 0.2, 0.4]
    assert len(of(lazy, "start")) == 3 < sent
    await until(lambda: not lazy.children)


@pytest_twisted.ensureDeferred
async def test_internalServices(services: Any, clients: Any) -> None:
    """
    Internal echo and time answer with no process; the admission hook sees
    every datagram and its ticket is released at once.
    """
    released: list[Peer] = []

    class Ticket(LimitsTicket):
        def __init__(self, peer: Peer) -> None:
            self.peer = peer

        def release(self) -> None:
            released.append(self.peer)

    echoConfig = record("echo", types=frozenset({"INTERNAL"}), server=None)
    echo = services(
        echoConfig,
        internal=InternalService("echo", SocketType.DGRAM),
        admit=lambda peer: defer.succeed(Admission(ticket=Ticket(peer))),
    )
    client = clients()
    client.send(b"ping", echo.boundPort)
    assert await client.wait(1) == [b"ping"]
    assert [p.remoteHost for p in released] == ["127.0.0.1"]

    timeConfig = record("time", types=frozenset({"INTERNAL"}), server=None)
    timeService = services(
        timeConfig, internal=InternalService("time", SocketType.DGRAM)
    )
    client.send(b"", timeService.boundPort)
    [_, answer] = await client.wait(2)
    (seconds,) = struct.unpack("!I", answer)
    assert abs(seconds - TIME_OFFSET - time.time()) < 5
    assert not echo.children and not timeService.children
    assert [e["pid"] for e in of(echo, "start")] == [0]


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_stopServiceEndsChildren(services: Any, clients: Any) -> None:
    """
    Stopping the service stops its running children and fires when they
    have ended.
    """
    config = record()
    service = services(config, planFor(config, "dgreply", "sleep", "30"), killDelay=0.5)
    client = clients()
    client.send(b"1", service.boundPort)
    client.send(b"2", service.boundPort)
    await until(lambda: len(service.children) == 2)
    started = time.monotonic()
    await within(service.stopService())
    assert time.monotonic() - started < DEADLINE
    assert not service.children
    assert service.boundPort is None


def ipv6Loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


async def refusedOverIPv4(port: int) -> None:
    """
    Send a datagram from 127.0.0.1 to 127.0.0.1:C{port} and check that it
    is refused (the kernel's ICMP port unreachable, reported on a connected
    socket as C{ECONNREFUSED}) and not answered.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as four:
        four.setblocking(False)
        four.connect(("127.0.0.1", port))
        four.send(b"four")
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                data = four.recv(65535)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail("no refusal in time")
                await sleep(0.02)
                continue
            except ConnectionRefusedError:
                return
            pytest.fail(f"the IPv4 client was answered: {data!r}")


@pytest.mark.skipif(not ipv6Loopback(), reason="no IPv6 loopback")
@pytest_twisted.ensureDeferred
async def test_v6only(services: Any, clients: Any) -> None:
    """
    C{v6only = yes} on C{wait = no} and internal services bound to C{::}:
    an IPv6 client (C{::1}) is answered; an IPv4 client's datagram reaches
    no socket (the kernel answers port unreachable) and gets no reply.  The
    same IPv4 client is answered by a C{v6only = no} (dual-stack) service.
    """

    def wildcard(name: str, v6only: bool, **kw: Any) -> ServiceConfig:
        return attrs.evolve(record(name, **kw), bind="::", v6only=v6only)

    internal = {"types": frozenset({"INTERNAL"}), "server": None}
    only6 = services(
        wildcard("echo6", True, **internal),
        internal=InternalService("echo", SocketType.DGRAM),
    )
    dual = services(
        wildcard("echo46", False, **internal),
        internal=InternalService("echo", SocketType.DGRAM),
    )
    bridgeConfig = wildcard("bridge6", True)
    bridge = services(bridgeConfig, planFor(bridgeConfig, "dgreply"))
    assert only6.boundPort and dual.boundPort and bridge.boundPort

    six = clients(interface="::1")
    six.send(b"echo6", only6.boundPort, "::1")
    assert await six.wait(1) == [b"echo6"]
    six.send(b"bridge6", bridge.boundPort, "::1")
    assert await six.wait(2) == [b"echo6", b"reply:bridge6"]
    assert six.received[1][1][:2] == ("::1", bridge.boundPort)

    await refusedOverIPv4(only6.boundPort)
    await refusedOverIPv4(bridge.boundPort)

    dualClient = clients()
    dualClient.send(b"dual", dual.boundPort)
    assert await dualClient.wait(1) == [b"dual"]

    # The IPv4 datagrams never reached the daemon.
    assert [e["host"] for e in of(only6, "start")] == ["::1"]
    assert [e["host"] for e in of(dual, "start")] == ["::ffff:127.0.0.1"]
    await until(lambda: len(of(bridge, "exit")) == 1)
    assert [e["host"] for e in of(bridge, "start")] == ["::1"]
    assert not of(only6, logs.FAIL) and not of(bridge, logs.FAIL)
