"""
The bridge with real sockets on 127.0.0.1 and real children.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
import socket
import struct
import termios
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import process as twistedProcess

from twinetd import logs, spawn
from twinetd.launch import LaunchPlan
from twinetd.spawn import PosixSpawner, SpawnedProcess, spawnerFor

from .conftest import (
    BridgeServer,
    Collector,
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


def fields(text: bytes) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.decode().splitlines() if "=" in line
    )


def test_posixSpawnerForRealReactor() -> None:
    assert isinstance(spawnerFor(reactor), PosixSpawner)


@pytest_twisted.ensureDeferred
async def test_echoRoundTrip(server: Any) -> None:
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
    [start] = s.of(logs.START)
    [end] = s.of(logs.EXIT)
    assert start["pid"] == end["pid"] and start["host"] == "127.0.0.1"
    assert (end["status"], end["signal"]) == (0, None)
    # Every child leads its own session.
    assert isinstance(s.protocols[0].process, SpawnedProcess)
    assert s.protocols[0].process.processGroup == start["pid"]


@pytest_twisted.ensureDeferred
async def test_replyAfterClientEOF(server: Any) -> None:
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
async def test_childClosesStdout(server: Any) -> None:
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
async def test_everythingDeliveredBeforeClose(server: Any) -> None:
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
async def test_floodAgainstNonReadingClient(server: Any) -> None:
    """
    A child writing 256 MiB to a client that never reads: the daemon's
    buffer for the connection stays under a fixed bound and the child is
    held back.  When the client leaves, the child dies of the broken pipe.
    """
    s = server(always(childPlan("flood", str(256 * 1024 * 1024))), killDelay=5.0)
    client = await s.connect(Collector(paused=True))
    bridge = s.protocols[0]
    highest = 0
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        await sleep(0.02)
        highest = max(highest, bufferedBytes(bridge.transport))
    assert 0 < highest < BUFFER_BOUND
    assert s.of(logs.EXIT) == []  # held back, not finished
    client.transport.abortConnection()
    await within(s.ended[0])
    [end] = s.of(logs.EXIT)
    # SIGPIPE (Python's ignoring it is undone for children) or EPIPE's exit.
    assert end["signal"] == signal.SIGPIPE or end["status"] not in (0, None)
    assert s.endedCounts == [1]


@pytest_twisted.ensureDeferred
async def test_clientFloodingChildThatDoesNotRead(server: Any) -> None:
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
    process: Any = s.protocols[0].process
    highest = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        await sleep(0.02)
        highest = max(highest, bufferedBytes(process.pipes[0]))
    assert 0 < highest < BUFFER_BOUND
    # The daemon stopped reading the socket: most of the data is still
    # waiting on the client's side.
    assert s.protocols[0].transport not in reactor.getReaders()
    assert bufferedBytes(client.transport) > 32 * 1024 * 1024
    left = time.monotonic()
    client.transport.abortConnection()
    await within(s.ended[0])
    took = time.monotonic() - left
    assert s.of(logs.EXIT)[0]["signal"] == signal.SIGTERM
    assert KILL_DELAY - 0.1 < took < KILL_DELAY + 1.0
    assert s.endedCounts == [1]


KILL_DELAY = 0.5


def outQueue(sock: socket.socket) -> int:
    """
    Bytes a socket sent that its peer's kernel has not acknowledged yet.
    """
    queued = fcntl.ioctl(sock, termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", queued)[0])


async def pauseWithEverythingSent(s: BridgeServer) -> socket.socket:
    """
    A plain client of C{s}'s first connection sends until the bridge stops
    reading it, and then until its own kernel holds nothing unsent: its end
    of file, when it comes, reaches the daemon at once.
    """
    sock = socket.create_connection(("127.0.0.1", s.port.getHost().port))
    sock.setblocking(False)
    deadline = time.monotonic() + 10
    while not s.protocols or s.protocols[0].transport in reactor.getReaders():
        assert time.monotonic() < deadline, "the bridge never paused"
        with contextlib.suppress(BlockingIOError):
            sock.send(b"z" * 16384)
        await sleep(0.01)
    while outQueue(sock):
        assert time.monotonic() < deadline, "the daemon's window stayed shut"
        await sleep(0.01)
    return sock


@pytest_twisted.ensureDeferred
async def test_pausedClientEndOfFileNoProgress(server: Any) -> None:
    """
    A client whose bytes wait for a child that does not read, and which then
    stops sending (its end of file, half-close or close alike): once its
    bytes waited the kill delay without the child taking any, it counts as
    gone, its connection is reset and the child gets SIGTERM; SIGKILL
    follows a kill delay later for a child that ignores it.
    """
    s = server(always(childPlan("stubborn", "noread")), killDelay=KILL_DELAY)
    sock = await pauseWithEverythingSent(s)
    left = time.monotonic()
    sock.shutdown(socket.SHUT_WR)
    await within(s.ended[0])
    took = time.monotonic() - left
    [end] = s.of(logs.EXIT)
    assert end["signal"] == signal.SIGKILL
    assert 2 * KILL_DELAY - 0.1 < took < 2 * KILL_DELAY + 1.0
    [gone] = [e for e in s.events if e.get("twinetdClientGone")]
    assert gone["reset"] is False
    sock.setblocking(True)
    with pytest.raises(ConnectionResetError):
        while sock.recv(100):  # "ready", then the reset
            pass
    sock.close()


@pytest_twisted.ensureDeferred
async def test_pausedHalfCloseServedWithProgress(server: Any) -> None:
    """
    The same client, with a child that starts reading within the kill delay:
    the half-close is legitimate and the reply arrives.
    """
    s = server(
        always(childPlan("replyaftereof", env={"DELAY": str(KILL_DELAY / 2)})),
        killDelay=KILL_DELAY,
    )
    sock = await pauseWithEverythingSent(s)
    sent = s.protocols[0].process
    sock.shutdown(socket.SHUT_WR)
    await within(s.ended[0])
    sock.setblocking(True)
    reply = sock.recv(100)
    sock.close()
    assert sent is not None
    assert reply.startswith(b"read ") and reply.endswith(b" bytes\n")
    assert int(reply.split()[1]) > 128 * 1024
    assert s.of(logs.EXIT)[0]["status"] == 0


@pytest_twisted.ensureDeferred
async def test_vanishedClientTermThenKill(server: Any) -> None:
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


@pytest_twisted.ensureDeferred
async def test_badServerFailsOnlyItsConnection(server: Any, tmp_path: Any) -> None:
    """
    A missing or non-executable server fails its connection with an error
    event; the next connection works; no descriptor is leaked.
    """
    notExecutable = tmp_path / "server"
    notExecutable.write_text("#!/bin/sh\necho hi\n")
    notExecutable.chmod(0o644)
    plans = [
        LaunchPlan(executable="/nonexistent/server", argv=("server",), env=()),
        LaunchPlan(executable=str(notExecutable), argv=("server",), env=()),
        childPlan("echo"),
    ]
    s = server(lambda peer: plans.pop(0))
    fdsBefore = len(os.listdir("/proc/self/fd"))
    for expected in ("No such file or directory", "Permission denied"):
        client = await s.connect(Collector())
        assert await within(client.done) == b""
        [*_, failed] = s.of(logs.SPAWN_FAILED)
        assert expected in failed["message"]
    await within(s.ended[0])
    await within(s.ended[1])
    client = await s.connect(Collector())
    client.transport.write(b"still serving")
    client.transport.loseWriteConnection()
    assert await within(client.done) == b"still serving"
    await within(s.ended[2])
    assert s.endedCounts == [1, 1, 1]
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


@pytest_twisted.ensureDeferred
async def test_stderrLogged(server: Any) -> None:
    s = server(always(childPlan("stderrlines")))
    client = await s.connect(Collector())
    assert await within(client.done) == b"out\n"
    await within(s.ended[0])
    lines = s.of(logs.STDERR)
    assert [e["line"] for e in lines] == ["first problem", "second problem"]
    assert {e["pid"] for e in lines} == {s.of(logs.START)[0]["pid"]}
