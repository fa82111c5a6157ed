"""
The bridge with real sockets on 127.0.0.1 and real children.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import select
import signal
import socket
import struct
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import process as twistedProcess
from twisted.internet.protocol import ServerFactory
from twisted.protocols.policies import WrappingFactory

from twinetd import logs, relay, spawn
from twinetd.launch import LaunchPlan
from twinetd.modes.bridge import BridgeProtocol
from twinetd.relay import descriptors, pipe
from twinetd.spawn import IProcessGroup, PosixSpawner, spawnerFor

from .conftest import (
    BridgeServer,
    Collector,
    bothSpawners,
    childPlan,
    reactor,
    sleep,
    within,
)

pytestmark = pytest.mark.usefixtures("noChildLeft")

# The daemon-side TCP buffer may exceed the transport's 64 KiB by one read
# of the child's pipe before the child is paused; this is the fixed bound.
BUFFER_BOUND = 256 * 1024


def always(plan: LaunchPlan) -> Any:
    return lambda peer: plan


def bufferedBytes(descriptor: Any) -> int:
    """
    What a Twisted file descriptor (TCP transport, process pipe) holds.
    """
    d = descriptor
    return len(d.dataBuffer) - d.offset + d._tempDataLen


WAYS = ("splice", "copy", "transport")


@pytest.fixture(params=WAYS)
def way(request: Any, monkeypatch: Any) -> str:
    """
    Each way the relay moves bytes (L{twinetd.relay}): C{splice}, C{copy}
    (splice turned off: the fallback) and C{transport} (the socket left to
    Twisted's transport, as for TLS or a PROXY header).
    """
    name: str = request.param
    if name == "splice" and not pipe.SPLICE:
        pytest.skip("no splice(2) here")
    monkeypatch.setattr(pipe, "SPLICE", name == "splice")
    monkeypatch.setattr(descriptors, "SOCKETS", name != "transport")
    return name


def relayOf(bridge: BridgeProtocol, way: str) -> relay.PipeRelay:
    """
    The bridge's relay, checked to move bytes the expected way.
    """
    assert bridge.relay is not None
    assert bridge.relay.way == way
    return bridge.relay


def heldForClient(bridge: BridgeProtocol) -> int:
    """
    Bytes of the child's output the daemon holds (its own buffers).
    """
    assert bridge.relay is not None
    return bufferedBytes(bridge.transport) + bridge.relay.heldOut


def readingClient(bridge: BridgeProtocol) -> bool:
    """
    Whether the daemon reads the client's socket now.
    """
    assert bridge.relay is not None
    if bridge.relay.way == "transport":
        return bridge.transport in reactor.getReaders()
    return bridge.relay.readingClient


def fields(text: bytes) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.decode().splitlines() if "=" in line
    )


def test_posixSpawnerForRealReactor() -> None:
    assert isinstance(spawnerFor(reactor), PosixSpawner)


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_echoRoundTrip(server: Any, way: str) -> None:
    """
    Bytes go to the child and back; the client's half-close ends the child,
    which closes the connection; onEnded runs once.
    """
    s: BridgeServer = server(always(childPlan("echo")))
    client = await s.connect(Collector())
    client.transport.write(b"hello, child\n")
    client.transport.loseWriteConnection()
    assert await within(client.done) == b"hello, child\n"
    await within(s.ended[0])
    assert s.endedCounts == [1]
    relayOf(s.protocols[0], way)
    [relayed] = s.of(logs.RELAYED)
    assert (relayed["bytesIn"], relayed["bytesOut"]) == (13, 13)
    [start] = s.of(logs.START)
    [end] = s.of(logs.EXIT)
    assert start["pid"] == end["pid"] and start["host"] == "127.0.0.1"
    assert (end["status"], end["signal"]) == (0, None)
    # Every child leads its own session.
    assert IProcessGroup(s.protocols[0].process).processGroup == start["pid"]


@pytest_twisted.ensureDeferred
async def test_replyAfterClientEOF(server: Any, way: str) -> None:
    """
    Half-close, client side: the child sees EOF only when the client shuts
    down its sending side, and its reply still arrives.
    """
    s = server(always(childPlan("replyaftereof")))
    client = await s.connect(Collector())
    client.transport.write(b"x" * 100_000)
    await sleep(0.2)
    assert client.data == b""  # the child is still reading: no EOF yet
    client.transport.loseWriteConnection()
    assert await within(client.done) == b"read 100000 bytes\n"
    await within(s.ended[0])


@pytest_twisted.ensureDeferred
async def test_childClosesStdout(server: Any, way: str) -> None:
    """
    Half-close, child side: the child closing its stdout closes the
    connection once what it wrote is delivered, while the child lives on.
    """
    s = server(always(childPlan("closestdout", env={"LINGER": "1"})))
    client = await s.connect(Collector())
    assert await within(client.done) == b"bye\n"
    # The connection closed before the child exited (it lingers a second).
    assert s.of(logs.EXIT) == []
    await within(s.ended[0])
    assert s.of(logs.EXIT)[0]["status"] == 0


@pytest_twisted.ensureDeferred
async def test_endOfFileAsOutputEnds(server: Any, way: str, monkeypatch: Any) -> None:
    """
    The client's end of file leaves as the child's output ends, before the
    connection's close (a reactor turn later, after the child's exit is
    handled): the relay shuts the socket's sending side at once.  (The
    C{transport} way leaves the socket to Twisted, which closes it then.)
    """
    seen: list[bool] = []
    clientSockets: list[socket.socket] = []
    original = BridgeProtocol.outputEnded

    def outputEnded(self: BridgeProtocol) -> None:
        poller = select.poll()
        poller.register(clientSockets[0], select.POLLRDHUP)
        # Waiting here holds the reactor: only an end of file already
        # sent can arrive (the kernel may deliver it a moment later); the
        # transport way sent none, so there is nothing to wait for.
        seen.append(bool(poller.poll(0 if way == "transport" else 1000)))
        original(self)

    monkeypatch.setattr(BridgeProtocol, "outputEnded", outputEnded)
    s = server(always(childPlan("closestdout", env={"LINGER": "0"})))
    client = await s.connect(Collector())
    clientSockets.append(client.transport.getHandle())
    assert await within(client.done) == b"bye\n"
    await within(s.ended[0])
    assert seen == [way != "transport"]


@pytest_twisted.ensureDeferred
async def test_everythingDeliveredBeforeClose(server: Any, way: str) -> None:
    """
    A child writing a lot then exiting: the client gets every byte, then
    an orderly close (not an abort).
    """
    size = 8 * 1024 * 1024
    s = server(always(childPlan("flood", str(size))))
    client = await s.connect(Collector())
    data = await within(client.done)
    assert len(data) == size
    assert client.reason.check(Exception) and "ConnectionDone" in repr(client.reason)
    await within(s.ended[0])


@pytest_twisted.ensureDeferred
async def test_manyMegabytesBothWays(server: Any, way: str) -> None:
    """
    16 MiB through an echoing child while the client sends and reads at
    once: every byte arrives in order, and the counts are exact.
    """
    size = 16 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    s = server(always(childPlan("echo")))
    client = await s.connect(Collector())
    client.transport.write(payload)
    client.transport.loseWriteConnection()
    assert await within(client.done) == payload
    await within(s.ended[0])
    relayOf(s.protocols[0], way)
    [relayed] = s.of(logs.RELAYED)
    assert (relayed["bytesIn"], relayed["bytesOut"]) == (size, size)


@pytest_twisted.ensureDeferred
async def test_childClosesStdin(server: Any, way: str) -> None:
    """
    A child that closes its standard input while the client goes on
    sending: the client's bytes are read (counted) and dropped, not held,
    and the reply and the close still come.
    """
    s = server(always(childPlan("closestdin")))
    client = await s.connect(Collector(want=b"closed\n"))
    client.transport.write(b"line\n")
    await within(client.got)
    more = 4 * 1024 * 1024
    client.transport.write(b"m" * more)
    assert await within(client.done) == b"line\nclosed\n"
    await within(s.ended[0])
    relayOf(s.protocols[0], way)
    [relayed] = s.of(logs.RELAYED)
    assert relayed["bytesIn"] == 5 + more
    assert s.of(logs.EXIT)[0]["status"] == 0


@pytest_twisted.ensureDeferred
async def test_spliceRefused(server: Any, monkeypatch: Any) -> None:
    """
    A kernel or socket that refuses C{splice()} (C{EINVAL}) makes the relay
    copy instead, without losing a byte.
    """
    if not pipe.SPLICE:
        pytest.skip("no splice(2) here")

    def refuse(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "splice", refuse)
    size = 1024 * 1024
    s: BridgeServer = server(always(childPlan("echo")))
    client = await s.connect(Collector())
    client.transport.write(b"s" * size)
    client.transport.loseWriteConnection()
    assert await within(client.done) == b"s" * size
    await within(s.ended[0])
    relayOf(s.protocols[0], "copy")
    [relayed] = s.of(logs.RELAYED)
    assert (relayed["bytesIn"], relayed["bytesOut"]) == (size, size)


@pytest_twisted.ensureDeferred
async def test_behindWrappingProtocol(server: Any) -> None:
    """
    A bridge whose transport is a wrapping protocol (as behind TLS or a
    PROXY header) relays through Twisted's transport interface.
    """
    s: BridgeServer = server(always(childPlan("echo")))
    s.port.stopListening()
    factory = ServerFactory()
    factory.buildProtocol = s.buildProtocol  # type: ignore[method-assign]
    s.port = reactor.listenTCP(0, WrappingFactory(factory), interface="127.0.0.1")
    client = await s.connect(Collector(want=b"wrapped\n"))
    client.transport.write(b"wrapped\n")
    # Twisted's ProtocolWrapper does not pass a half-close on: close.
    await within(client.got)
    relayOf(s.protocols[0], "transport")
    client.transport.loseConnection()
    await within(s.ended[0])
    [relayed] = s.of(logs.RELAYED)
    assert (relayed["bytesIn"], relayed["bytesOut"]) == (8, 8)


@pytest_twisted.ensureDeferred
async def test_floodAgainstNonReadingClient(server: Any, way: str) -> None:
    """
    A child writing 256 MiB to a client that never reads: the daemon's
    buffer for the connection stays under a fixed bound and the child is
    held back.  When the client leaves, the child dies of the broken pipe.
    """
    s = server(always(childPlan("flood", str(256 * 1024 * 1024))), killDelay=5.0)
    client = await s.connect(Collector(paused=True))
    bridge = s.protocols[0]
    relayOf(bridge, way)
    highest = 0
    # Long enough for an unheld child to write far past the bounds below
    # (it writes hundreds of MB a second).
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        await sleep(0.02)
        highest = max(highest, heldForClient(bridge))
    assert highest < BUFFER_BOUND
    # Held back: what left the daemon is what the two kernels hold.
    assert bridge.bytesOut < 32 * 1024 * 1024
    assert s.of(logs.EXIT) == []
    client.transport.abortConnection()
    await within(s.ended[0])
    [end] = s.of(logs.EXIT)
    # SIGPIPE (Python's ignoring it is undone for children) or EPIPE's exit.
    assert end["signal"] == signal.SIGPIPE or end["status"] not in (0, None)
    assert s.endedCounts == [1]


@pytest_twisted.ensureDeferred
async def test_clientFloodingChildThatDoesNotRead(server: Any, way: str) -> None:
    """
    A client sending 64 MiB to a child that never reads: the daemon stops
    reading the socket, its buffer towards the child stays under a fixed
    bound.  When the client then resets the connection, the daemon notices
    without reading: the child gets SIGTERM a kill delay later.
    """
    s = server(always(childPlan("ignorestdin")), killDelay=KILL_DELAY)
    client = await s.connect(Collector(want=b"ready\n"))
    await within(client.got)
    client.transport.write(b"y" * (64 * 1024 * 1024))
    bridge = s.protocols[0]
    highest = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        await sleep(0.02)
        highest = max(highest, relayOf(bridge, way).heldIn)
    assert highest < BUFFER_BOUND
    # The daemon stopped reading the socket: most of the data is still
    # waiting on the client's side.
    assert not readingClient(bridge)
    assert bufferedBytes(client.transport) > 32 * 1024 * 1024
    left = time.monotonic()
    client.transport.abortConnection()
    await within(s.ended[0])
    took = time.monotonic() - left
    assert s.of(logs.EXIT)[0]["signal"] == signal.SIGTERM
    # Not before the kill delay; the generous upper bound is for loaded
    # machines (the TERM coming at all shows the reset was noticed).
    assert KILL_DELAY - 0.1 < took < KILL_DELAY + 5.0
    assert s.endedCounts == [1]


KILL_DELAY = 0.5


def outQueue(sock: socket.socket) -> int:
    """
    Bytes a socket sent that its peer's kernel has not acknowledged yet.
    """
    queued = fcntl.ioctl(sock, termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", queued)[0])


async def pauseWithEverythingSent(s: BridgeServer) -> tuple[socket.socket, int]:
    """
    A plain client of C{s}'s first connection sends until the bridge stops
    reading it, and then until its own kernel holds nothing unsent: its end
    of file, when it comes, reaches the daemon at once.

    @return: the client's socket, and how many bytes it sent.
    """
    sock = socket.create_connection(("127.0.0.1", s.port.getHost().port))
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 10
    while not s.protocols or readingClient(s.protocols[0]):
        assert time.monotonic() < deadline, "the bridge never paused"
        with contextlib.suppress(BlockingIOError):
            sent += sock.send(b"z" * 16384)
        await sleep(0.01)
    while outQueue(sock):
        assert time.monotonic() < deadline, "the daemon's window stayed shut"
        await sleep(0.01)
    return sock, sent


@pytest_twisted.ensureDeferred
async def test_pausedClientEndOfFileNoProgress(server: Any, way: str) -> None:
    """
    A client whose bytes wait for a child that does not read, and which then
    stops sending (its end of file, half-close or close alike): once its
    bytes waited the kill delay without the child taking any, it counts as
    gone, its connection is reset and the child gets SIGTERM; SIGKILL
    follows a kill delay later for a child that ignores it.
    """
    s = server(always(childPlan("stubborn", "noread")), killDelay=KILL_DELAY)
    sock, _ = await pauseWithEverythingSent(s)
    left = time.monotonic()
    sock.shutdown(socket.SHUT_WR)
    await within(s.ended[0])
    took = time.monotonic() - left
    [end] = s.of(logs.EXIT)
    assert end["signal"] == signal.SIGKILL
    assert 2 * KILL_DELAY - 0.1 < took < 2 * KILL_DELAY + 5.0
    [gone] = [e for e in s.events if e.get("twinetdClientGone")]
    assert gone["reset"] is False
    sock.setblocking(True)
    with pytest.raises(ConnectionResetError):
        while sock.recv(100):  # "ready", then the reset
            pass
    sock.close()


@pytest_twisted.ensureDeferred
async def test_pausedHalfCloseServedWithProgress(
    server: Any, way: str, tmp_path: Path
) -> None:
    """
    The same client, with a child that starts reading within the kill delay
    after the half-close: the half-close is legitimate and the reply
    arrives.
    """
    go = tmp_path / "go"
    s = server(
        always(childPlan("replyaftereof", env={"GO": str(go)})),
        killDelay=KILL_DELAY,
    )
    sock, sent = await pauseWithEverythingSent(s)
    sock.shutdown(socket.SHUT_WR)
    go.touch()
    await within(s.ended[0])
    sock.setblocking(True)
    reply = sock.recv(100)
    sock.close()
    # More than the pipe holds: the child's reading resumed the client's.
    assert sent > 64 * 1024
    assert reply == b"read %d bytes\n" % sent
    assert s.of(logs.EXIT)[0]["status"] == 0


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_vanishedClientTermThenKill(server: Any, way: str) -> None:
    """
    A child ignoring EOF and SIGTERM gets SIGKILL after two kill delays.
    """
    s = server(always(childPlan("stubborn")), killDelay=0.3)
    client = await s.connect(Collector(want=b"ready\n"))
    await within(client.got)
    started = time.monotonic()
    client.transport.abortConnection()
    await within(s.ended[0])
    assert time.monotonic() - started >= 0.55
    [end] = s.of(logs.EXIT)
    assert end["signal"] == signal.SIGKILL
    assert s.endedCounts == [1]


@pytest_twisted.ensureDeferred
async def test_vanishedClientTerm(server: Any) -> None:
    """
    A child ignoring EOF but not SIGTERM ends with SIGTERM.
    """
    s = server(always(childPlan("stubborn", env={"KEEP_TERM": "1"})), killDelay=0.3)
    client = await s.connect(Collector(want=b"ready\n"))
    await within(client.got)
    client.transport.abortConnection()
    await within(s.ended[0])
    assert s.of(logs.EXIT)[0]["signal"] == signal.SIGTERM


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_badServerFailsOnlyItsConnection(
    server: Any, tmp_path: Any, way: str
) -> None:
    """
    A missing or non-executable server fails its connection with an error
    event; the next connection works; no descriptor is leaked.
    """
    notExecutable = tmp_path / "server"
    notExecutable.write_text("#!/bin/sh\necho hi\n")
    notExecutable.chmod(0o644)
    plans = [
        childPlan("echo"),
        LaunchPlan(executable="/nonexistent/server", argv=("server",), env=()),
        LaunchPlan(executable=str(notExecutable), argv=("server",), env=()),
        childPlan("echo"),
    ]
    s = server(lambda peer: plans.pop(0))

    async def served() -> None:
        client = await s.connect(Collector())
        client.transport.write(b"still serving")
        client.transport.loseWriteConnection()
        assert await within(client.done) == b"still serving"

    # A served connection first: what the process opens once and keeps
    # (the relay's epoll) is not a leak.
    await served()
    await within(s.ended[0])
    fdsBefore = len(os.listdir("/proc/self/fd"))
    for expected in ("No such file or directory", "Permission denied"):
        client = await s.connect(Collector())
        assert await within(client.done) == b""
        [*_, failed] = s.of(logs.SPAWN_FAILED)
        assert expected in failed["message"]
    await within(s.ended[1])
    await within(s.ended[2])
    await served()
    await within(s.ended[3])
    assert s.endedCounts == [1, 1, 1, 1]
    assert len(os.listdir("/proc/self/fd")) == fdsBefore


@pytest.fixture
def manyOpenFiles() -> Iterator[list[int]]:
    """
    2000 more open descriptors for the duration of a test.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2500:
        pytest.skip("needs RLIMIT_NOFILE of at least 2500")
    if soft < 2500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2500, hard))
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(2000)]
    yield fds
    for fd in fds:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_spawnCostIndependentOfOpenFiles(
    server: Any, monkeypatch: Any, manyOpenFiles: list[int]
) -> None:
    """
    The spawn never lists the daemon's descriptors (Twisted's
    C{_listOpenFDs}), and the child inherits none of them.
    """

    def listing() -> list[int]:
        raise AssertionError("the spawn listed open descriptors")

    monkeypatch.setattr(twistedProcess, "_listOpenFDs", listing)
    s = server(always(childPlan("whoami")))
    client = await s.connect(Collector())
    report = fields(await within(client.done))
    await within(s.ended[0])
    assert max(manyOpenFiles) > 2000
    # 0-2 and the descriptor os.listdir used for /proc/self/fd.
    assert set(report["fds"].split(",")) <= {"0", "1", "2", "3"}
    assert report["sid"] == report["pid"] == report["pgid"]
    assert s.protocols[0].process.usedFastPath


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_umaskNiceAndLimits(server: Any) -> None:
    """
    umask, nice and rlimits reach the child (the credentials path).
    """
    plan = attrs.evolve(
        childPlan("whoami"), umask=0o027, nice=3, rlimits=(("files", 100),)
    )
    s = server(always(plan))
    client = await s.connect(Collector())
    report = fields(await within(client.done))
    await within(s.ended[0])
    assert report["umask"] == "0027"
    assert int(report["nice"]) == os.nice(0) + 3
    assert report["nofile"] == "100"
    assert report["sid"] == report["pid"]
    assert not s.protocols[0].process.usedFastPath


@pytest_twisted.ensureDeferred
async def test_umaskOnly(server: Any) -> None:
    s = server(always(attrs.evolve(childPlan("whoami"), umask=0o077)))
    client = await s.connect(Collector())
    assert fields(await within(client.done))["umask"] == "0077"
    await within(s.ended[0])


SHELL_REPORT = (
    'echo "uid=$(id -u)"; echo "gid=$(id -g)"; echo "groups=$(id -G)"; '
    'echo "umask=$(umask)"; echo "nice=$(nice)"; echo "nofile=$(ulimit -n)"'
)


def shellPlan(**changes: Any) -> LaunchPlan:
    # The interpreter lives under /root here, out of nobody's reach: the
    # child running as nobody is a shell.
    return attrs.evolve(
        LaunchPlan(executable="/bin/sh", argv=("sh", "-c", SHELL_REPORT), env=()),
        **changes,
    )


needsRoot = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@needsRoot
@bothSpawners
@pytest_twisted.ensureDeferred
async def test_runsAsNobody(server: Any) -> None:
    """
    uid, gid, no supplementary groups and umask, as root.
    """
    os.setgroups([4, 5])  # groups the child must not keep
    try:
        s = server(
            always(shellPlan(uid=65534, gid=65534, supplementaryGroups=(), umask=0o027))
        )
        client = await s.connect(Collector())
        report = fields(await within(client.done))
    finally:
        os.setgroups([])
    await within(s.ended[0])
    assert (report["uid"], report["gid"], report["groups"]) == ("65534",) * 3
    assert report["umask"] == "0027"


@needsRoot
@bothSpawners
@pytest_twisted.ensureDeferred
async def test_runsAsNobodyWithLimits(server: Any) -> None:
    """
    With nice (here negative, which needs privileges) and rlimits, those are
    applied before the user changes, as xinetd does.
    """
    plan = shellPlan(
        uid=65534,
        gid=65534,
        supplementaryGroups=(),
        nice=-2,
        rlimits=(("files", 77),),
    )
    s = server(always(plan))
    client = await s.connect(Collector())
    report = fields(await within(client.done))
    await within(s.ended[0])
    assert (report["uid"], report["groups"]) == ("65534", "65534")
    assert int(report["nice"]) == os.nice(0) - 2
    assert report["nofile"] == "77"


@needsRoot
def test_userGroupsFromGroupList() -> None:
    plan = shellPlan(
        uid=65534, gid=65534, supplementaryGroups="user", userName="nobody"
    )
    assert spawn.supplementaryGroups(plan) == os.getgrouplist("nobody", 65534)


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_stderrLogged(server: Any, way: str) -> None:
    s = server(always(childPlan("stderrlines")))
    client = await s.connect(Collector())
    assert await within(client.done) == b"out\n"
    await within(s.ended[0])
    lines = s.of(logs.STDERR)
    assert [e["line"] for e in lines] == ["first problem", "second problem"]
    assert {e["pid"] for e in lines} == {s.of(logs.START)[0]["pid"]}


@pytest.mark.parametrize("spawnerKind", ["busy"])
@pytest_twisted.ensureDeferred
async def test_busySpawnerMovesStartsUnderLoad(server: Any, spawner: Any) -> None:
    """
    L{spawn.BusySpawner} with a threshold of 0: the first child is
    the daemon's own; the next, started while it runs, is the spawner
    process's; both serve their clients; once none runs, the daemon starts
    them again.
    """
    s = server(always(childPlan("echo")))
    first = await s.connect(Collector())
    for _ in range(100):
        if s.protocols and s.protocols[0].process is not None:
            break
        await sleep(0.01)
    # Started, and not by the spawner process.
    assert s.protocols[0].process is not None
    assert spawner.processSpawner.running == {}
    second = await s.connect(Collector())
    for _ in range(100):
        if spawner.processSpawner.running:
            break
        await sleep(0.01)
    assert len(spawner.processSpawner.running) == 1
    for client, data in ((first, b"one\n"), (second, b"two\n")):
        client.transport.write(data)
        client.transport.loseWriteConnection()
        assert await within(client.done) == data
    for done in s.ended:
        await within(done)
    for _ in range(100):
        if spawner.running() == 0:
            break
        await sleep(0.01)
    third = await s.connect(Collector())
    third.transport.write(b"three\n")
    third.transport.loseWriteConnection()
    assert await within(third.done) == b"three\n"
    await within(s.ended[2])
    assert spawner.processSpawner.running == {}
    assert s.endedCounts == [1, 1, 1]
