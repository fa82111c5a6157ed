"""
The daemon in-process: configuration text served by L{twinetd.testing.runConfig}
on loopback, with real clients and real children.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
)
from twisted.internet.error import ConnectionRefusedError, DNSLookupError

from tests.integration.conftest import (
    CHILDREN,
    Collector,
    bothSpawners,
    fixedPort,
    reactor,
    sleep,
    within,
)
from twinetd import logs
from twinetd.config import Lookups, loadText
from twinetd.listeners import front, stream
from twinetd.modes.bridge import BridgeProtocol
from twinetd.service import DaemonSettings, fromRecords
from twinetd.testing import RunningDaemon, converse, runConfig

pytestmark = pytest.mark.usefixtures("noChildLeft")

# Short: children that outlive their clients end within two kill delays.
SETTINGS = DaemonSettings(killDelay=0.3)


# Placeholder ports (runConfig replaces them), distinct within a config.
PORTS = itertools.count(1)


def service(name: str, child: str, *args: str, extra: str = "") -> str:
    # The interpreter's full path as argv[0] (NAMEINARGS): a Python whose
    # argv[0] is a bare name looks for its library from the working
    # directory, which is / for every child (as under xinetd).
    argv = " ".join([sys.executable, str(CHILDREN / f"{child}.py"), *args])
    return (
        f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {next(PORTS)}\n"
        "\tsocket_type = stream\n\tflags = NAMEINARGS\n"
        f"\twait = no\n\tuser = -\n\tserver = {sys.executable}\n"
        f"\tserver_args = {argv}\n\tcps = 1000 1\n{extra}}}\n"
    )


class Client(Collector):
    """
    A L{Collector} that remembers its own address.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        assert self.transport is not None
        self.local = self.transport.getHost()


async def fetch(port: int, host: str = "127.0.0.1", bindAddress: Any = None) -> Client:
    client = Client()
    if ":" in host:
        endpoint: Any = TCP6ClientEndpoint(reactor, host, port)
    else:
        endpoint = TCP4ClientEndpoint(reactor, host, port, bindAddress=bindAddress)
    await within(connectProtocol(endpoint, client))
    await within(client.done)
    return client


@pytest_twisted.async_yield_fixture
async def daemons(spawnerKind: str) -> Any:
    running: list[RunningDaemon] = []
    settings = attrs.evolve(
        SETTINGS,
        spawnerProcess=spawnerKind == "process",
        spawnerProcessAbove=0 if spawnerKind == "busy" else None,
    )

    def start(text: str, **kwargs: Any) -> RunningDaemon:
        d = runConfig(reactor, text, settings=settings, **kwargs)
        running.append(d)
        return d

    yield start
    for d in running:
        await within(d.stop())
        # Every child of a spawner process had ended when it was closed.
        assert getattr(d.daemon.runtime.spawner, "killedAtClose", 0) == 0


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_environment(daemons: Any) -> None:
    """
    The child gets only what passenv names and env sets, then the client's
    address: REMOTE_HOST as xinetd sets it, REMOTE_ADDR/REMOTE_PORT and the
    UCSPI variables.  argv[0] is the server's file name.
    """
    d = daemons(
        service("env", "env", extra="\tenv = GREETING=hi=there\n\tpassenv = HOME\n")
    )
    client = await fetch(d.port("env"))
    child = json.loads(client.data)
    env = child["env"]
    host, port = client.local.host, client.local.port
    for name in ("PWD", "SHLVL", "_", "LC_CTYPE"):  # added by some interpreters
        env.pop(name, None)
    assert env == {
        "HOME": os.environ["HOME"],
        "GREETING": "hi=there",
        "REMOTE_HOST": host,
        "REMOTE_ADDR": host,
        "REMOTE_PORT": str(port),
        "PROTO": "TCP",
        "TCPREMOTEIP": host,
        "TCPREMOTEPORT": str(port),
        "TCPLOCALIP": "127.0.0.1",
        "TCPLOCALPORT": str(d.port("env")),
    }
    assert child["argv"][0] == str(CHILDREN / "env.py")


@pytest_twisted.ensureDeferred
async def test_dualStackPeer(daemons: Any) -> None:
    """
    On a dual-stack socket an IPv4 client's REMOTE_HOST is ::ffff:a.b.c.d,
    as under xinetd, while REMOTE_ADDR and TCPREMOTEIP are the plain
    address.
    """
    d = daemons(service("env", "env"), bind="::ffff:127.0.0.1")
    env = json.loads((await fetch(d.port("env"))).data)["env"]
    assert env["REMOTE_HOST"] == "::ffff:127.0.0.1"
    assert env["REMOTE_ADDR"] == env["TCPREMOTEIP"] == "127.0.0.1"


@pytest_twisted.ensureDeferred
async def test_ipv6Peer(daemons: Any) -> None:
    """
    An IPv6 client's address is given as is.
    """
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    d = daemons(service("env", "env"), bind="::1")
    env = json.loads((await fetch(d.port("env"), "::1")).data)["env"]
    assert env["REMOTE_HOST"] == env["REMOTE_ADDR"] == "::1"


@pytest_twisted.ensureDeferred
async def test_umask(daemons: Any) -> None:
    """
    C{umask} reaches the child.
    """
    d = daemons(service("env", "env", extra="\tumask = 027\n"))
    assert json.loads((await fetch(d.port("env"))).data)["umask"] == 0o027


@pytest_twisted.ensureDeferred
async def test_onlyFrom(daemons: Any, events: Any) -> None:
    """
    C{only_from} admits 127.0.0.1 and refuses 127.0.0.2 (bound client):
    the refused client gets banner_fail and a close, and nothing is spawned.
    """
    banner = CHILDREN.parent / "children" / "env.py"  # any readable file
    d = daemons(
        service(
            "env", "env", extra=f"\tonly_from = 127.0.0.1\n\tbanner_fail = {banner}\n"
        )
    )
    admitted = await fetch(d.port("env"))
    assert json.loads(admitted.data)["env"]["REMOTE_ADDR"] == "127.0.0.1"
    refused = await fetch(d.port("env"), bindAddress=("127.0.0.2", 0))
    assert refused.data == banner.read_bytes()
    fails = [e for e in events if e.get("twinetdEvent") == logs.FAIL]
    assert [(e["reason"], e["host"]) for e in fails] == [("address", "127.0.0.2")]
    starts = [e for e in events if e.get("twinetdEvent") == logs.START]
    assert len(starts) == 1


@pytest_twisted.ensureDeferred
async def test_instancesNeverExceeded(daemons: Any, tmp_path: Path) -> None:
    """
    200 clients connect at once to a service with instances = 4: never more
    than 4 children run together; the others are refused and closed.
    """
    d = daemons(
        service(
            "hold",
            "hold",
            str(tmp_path),
            "0.3",
            extra="\tinstances = 4\n\tper_source = 100\n",
        )
    )
    port = d.port("hold")
    clients = [Collector() for _ in range(200)]
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    connected = [connectProtocol(endpoint, c) for c in clients]
    for c in connected:
        await within(c, 30)
    outputs = [await within(c.done, 30) for c in clients]
    counts = [int(o) for o in outputs if o]
    assert 1 <= len(counts) < 200
    assert max(counts) <= 4
    assert list(tmp_path.iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_cpsPausesListening(daemons: Any, events: Any) -> None:
    """
    cps = 2 2: the third connection within a second trips it; the port is
    closed (connection refused) for two seconds, then serves again (on the
    same port, though it was an ephemeral one).
    """
    port = fixedPort()
    text = service("env", "env").replace("cps = 1000 1", "cps = 2 2")
    d = daemons(re.sub(r"port = \d+", f"port = {port}", text), ephemeral=False)
    assert d.port("env") == port
    await fetch(port)
    await fetch(port)
    tripped = await fetch(port)
    assert tripped.data == b""
    assert [e["reason"] for e in events if e.get("twinetdEvent") == logs.FAIL] == [
        "connections per second"
    ]
    with pytest.raises(ConnectionRefusedError):
        await fetch(port)
    # The status says so (twinetd_listening 0 while paused).
    [state] = d.daemon.states()
    assert (state.listening, state.paused, state.settled) == (False, True, True)
    # xinetd's cps window lasts `rate` seconds and a trip does not reset it:
    # past the pause (as long as the window), the service serves again.
    paused = time.monotonic()
    await until(lambda: d.daemon.states()[0].listening)
    assert time.monotonic() - paused > 1.5
    assert json.loads((await fetch(port)).data)["env"]["REMOTE_ADDR"] == "127.0.0.1"
    [state] = d.daemon.states()
    assert (state.listening, state.paused, state.port) == (True, False, port)


@pytest_twisted.ensureDeferred
async def test_portInUse(events: Any, monkeypatch: Any) -> None:
    """
    A port that cannot be bound fails its service only: the other serves.
    (The retries' count and spacing are unit-tested with a clock.)
    """
    monkeypatch.setattr(stream, "BIND_RETRY_DELAY", 0.02)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    busy = taken.getsockname()[1]
    text = service("busy", "env") + service("free", "env").replace(
        "port = 1", "port = 2"
    )
    records = [
        attrs.evolve(r, bind="127.0.0.1", port=busy if r.id == "busy" else 0)
        for r in loadText(text, "<test>", Lookups.system()).services
    ]
    daemon = fromRecords(records, reactor, SETTINGS)
    daemon.startService()
    try:
        # The free service serves at once, while the busy one retries as
        # xinetd does, then gives up with an error.
        port = daemon.listener("free").boundPort
        assert port is not None
        assert b"REMOTE_HOST" in (await fetch(port)).data
        for _ in range(100):
            errors = [e for e in events if "cannot listen" in e.get("log_format", "")]
            if errors:
                break
            await sleep(0.05)
        assert [e["service"] for e in errors] == ["busy"]
        assert daemon.listener("busy").port is None
        states = {s.id: (s.listening, s.settled) for s in daemon.states()}
        assert states == {"busy": (False, True), "free": (True, True)}
    finally:
        taken.close()
        await within(daemon.stopService())


def internal(name: str, socketType: str = "stream", extra: str = "") -> str:
    wait = "yes" if socketType == "dgram" else "no"
    return (
        f"service {name}\n{{\n\ttype = INTERNAL UNLISTED\n\tport = {next(PORTS)}\n"
        f"\tsocket_type = {socketType}\n\twait = {wait}\n{extra}}}\n"
    )


class Datagrams:
    """
    A UDP client: send one datagram, collect the replies.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    async def ask(self, port: int, data: bytes) -> bytes:
        self.sock.sendto(data, ("127.0.0.1", port))
        for _ in range(200):
            try:
                return self.sock.recv(65535)
            except BlockingIOError:
                await sleep(0.025)
        raise AssertionError("no reply")


@pytest_twisted.ensureDeferred
async def test_internalStream(daemons: Any) -> None:
    """
    Internal stream services run inside the daemon, behind the gate.
    """
    d = daemons(internal("echo") + internal("time"))
    assert await converse(reactor, d.port("echo"), b"ping\r\n") == b"ping\r\n"
    assert len((await fetch(d.port("time"))).data) == 4


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_datagramServices(daemons: Any) -> None:
    """
    dgram services: the wait = no bridge answers each datagram with its
    child's output; internal echo answers in the daemon.
    """
    bridged = (
        service("reply", "dgreply", "reply")
        .replace("socket_type = stream", "socket_type = dgram")
        .replace("cps = 1000 1", "cps = 1000 1\n\tprotocol = udp")
    )
    d = daemons(bridged + internal("echo", "dgram"))
    client = Datagrams()
    try:
        reply = await client.ask(d.port("reply"), b"hello")
        assert b"hello" in reply
        assert await client.ask(d.port("echo"), b"ping") == b"ping"
    finally:
        client.sock.close()


@pytest_twisted.ensureDeferred
async def test_internalStreamWaitYes(daemons: Any) -> None:
    """
    An internal stream service with C{wait = yes} is served in the daemon
    like one with C{wait = no} (issue 7 §2: no launch is planned for it).
    """
    d = daemons(
        internal("echo").replace("wait = no", "wait = yes")
        + internal("daytime").replace("wait = no", "wait = yes")
    )
    assert await converse(reactor, d.port("echo"), b"ping\r\n") == b"ping\r\n"
    assert (await fetch(d.port("daytime"))).data.endswith(b"\r\n")


@pytest_twisted.ensureDeferred
async def test_redirectMustNotWait(events: Any) -> None:
    """
    A redirected service with C{wait = yes} is skipped with the reason, as
    xinetd disables it ("must not wait"); the others serve.
    """
    text = internal("echo") + (
        "service fwd\n{\n\ttype = UNLISTED\n\tport = 1\n\tsocket_type = stream\n"
        "\twait = yes\n\tuser = -\n\tredirect = 127.0.0.1 2\n}\n"
    )
    d = runConfig(reactor, text, settings=SETTINGS)
    try:
        assert set(d.daemon.records) == {"echo"}
        [skipped] = [e for e in events if e.get("service") == "fwd"]
        assert "must not wait" in skipped["reason"]
    finally:
        await within(d.stop())


def test_unknownInternal() -> None:
    """
    An internal service xinetd does not have is a configuration error.
    """
    from twinetd.errors import ConfigError

    with pytest.raises(ConfigError, match="no such internal service: nosuch/stream"):
        runConfig(reactor, internal("nosuch"))


@pytest_twisted.ensureDeferred
async def test_redirect(daemons: Any, events: Any) -> None:
    """
    C{redirect} forwards inside the daemon, with half-close: the client's
    end of file reaches the target and the reply still comes back.
    """
    target = daemons(internal("echo"))
    fwd = (
        f"service fwd\n{{\n\ttype = UNLISTED\n\tport = {next(PORTS)}\n"
        "\tsocket_type = stream\n\twait = no\n\tuser = -\n"
        f"\tredirect = 127.0.0.1 {target.port('echo')}\n}}\n"
    )
    d = daemons(fwd)
    client = Client()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", d.port("fwd"))
    await within(connectProtocol(endpoint, client))
    client.transport.write(b"through\r\n")
    client.transport.loseWriteConnection()
    assert await within(client.done) == b"through\r\n"
    await until(lambda: any(e.get("twinetdEvent") == logs.TRAFFIC for e in events))
    [traffic] = [e for e in events if e.get("twinetdEvent") == logs.TRAFFIC]
    assert (traffic["bytesIn"], traffic["bytesOut"]) == (9, 9)


def fixed(text: str) -> str:
    """
    The service text on a free port below the ephemeral range (see
    L{fixedPort}).
    """
    return re.sub(r"port = \d+", f"port = {fixedPort()}", text)


def records(text: str) -> list[Any]:
    return [
        attrs.evolve(r, bind="127.0.0.1")
        for r in loadText(text, "<test>", Lookups.system()).services
    ]


@pytest_twisted.ensureDeferred
async def test_reload(daemons: Any, tmp_path: Path) -> None:
    """
    A reload changes only what differs: a removed service stops listening,
    a new one listens, a changed one listens with its new configuration
    while its running connection goes on; an unchanged one keeps listening.
    """
    keep = fixed(service("keep", "env"))
    change = fixed(service("change", "hold", str(tmp_path), "0.5"))
    d = daemons(keep + change + fixed(service("drop", "env")), ephemeral=False)
    keeper, dropped = d.daemon.getServiceNamed("keep"), d.daemon.getServiceNamed("drop")
    running = Client()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", d.port("change"))
    await within(connectProtocol(endpoint, running))

    changed = change.replace("cps = 1000 1", "cps = 1000 1\n\tenv = NEW=1")
    added = fixed(service("add", "env"))
    await within(d.daemon.reload(records(keep + changed + added)))

    assert dropped.port is None and not dropped.running
    # A child spawned just before may hold the old socket until its
    # close-on-exec pass: the port refuses connections a moment later.
    for _ in range(40):
        try:
            await fetch(dropped.config.port)
        except ConnectionRefusedError:
            break
        await sleep(0.05)
    else:
        raise AssertionError("the removed service still accepts connections")
    assert d.daemon.getServiceNamed("keep") is keeper
    assert b"REMOTE_HOST" in (await fetch(d.port("add"))).data
    assert sorted(d.daemon.records) == ["add", "change", "keep"]
    assert d.daemon.records["change"].env == (("NEW", "1"),)
    # The connection accepted before the reload still gets its reply.
    assert await within(running.done) == b"1\n"


@pytest_twisted.ensureDeferred
async def test_reloadKeepsListening(daemons: Any) -> None:
    """
    Clients connect in a loop to a changed and an unchanged service during
    repeated reloads: none is refused or dropped.  The changed service keeps
    its listener and its port (never closed), which serves the newest
    configuration.
    """
    keep = fixed(service("keep", "env"))
    change = fixed(service("change", "env"))
    d = daemons(keep + change, ephemeral=False)
    listener = d.daemon.getServiceNamed("change")
    port = listener.port
    failures: list[Any] = []
    served = {"keep": 0, "change": 0}
    reloading = True

    async def clients(name: str) -> None:
        while reloading:
            try:
                data = (await fetch(d.port(name))).data
            except Exception as e:
                failures.append((name, repr(e)))
                continue
            if b"REMOTE_HOST" in data:
                served[name] += 1
            else:
                failures.append((name, data))

    running = [
        defer.Deferred.fromCoroutine(clients(name))
        for name in ("keep", "change", "keep", "change")
    ]
    for generation in range(10):
        changed = change.replace(
            "cps = 1000 1", f"cps = 1000 1\n\tenv = GEN={generation}"
        )
        await within(d.daemon.reload(records(keep + changed)))
        await sleep(0.1)
    reloading = False
    for r in running:
        await within(r)
    assert failures == []
    assert served["keep"] >= 5 and served["change"] >= 5
    assert d.daemon.getServiceNamed("change") is listener and listener.port is port
    reply = json.loads((await fetch(d.port("change"))).data)
    assert reply["env"]["GEN"] == "9"


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_fileLog(daemons: Any, tmp_path: Path) -> None:
    """
    log_type = FILE writes xinetd's lines: START and EXIT for a served
    client, FAIL for a refused one, with xinetd's time stamps.
    """
    path = tmp_path / "service.log"
    d = daemons(
        service(
            "env",
            "env",
            extra=(
                f"\tlog_type = FILE {path}\n"
                "\tlog_on_success = PID HOST EXIT DURATION\n"
                "\tlog_on_failure = HOST\n\tonly_from = 127.0.0.1\n"
            ),
        )
    )
    await fetch(d.port("env"))
    await fetch(d.port("env"), bindAddress=("127.0.0.2", 0))
    stamp = r"\d\d/\d{1,2}/\d{1,2}@\d\d:\d\d:\d\d"
    expected = [
        rf"{stamp}: START: env pid=\d+ from=127\.0\.0\.1",
        rf"{stamp}: EXIT: env status=0 pid=\d+ duration=\d+\(sec\)",
        rf"{stamp}: FAIL: env address from=127\.0\.0\.2",
    ]
    for _ in range(100):
        lines = path.read_text().splitlines()
        if len(lines) == 3:
            break
        await sleep(0.05)
    assert len(lines) == 3, lines
    for pattern in expected:
        assert len([line for line in lines if re.fullmatch(pattern, line)]) == 1, (
            pattern,
            lines,
        )


@pytest_twisted.ensureDeferred
async def test_sensor(daemons: Any, events: Any) -> None:
    """
    A client that touches a SENSOR service is refused by every service for
    deny_time minutes; other clients are not.
    """
    sensor = (
        f"service trap\n{{\n\ttype = UNLISTED\n\tport = {next(PORTS)}\n"
        "\tsocket_type = stream\n\twait = no\n\tflags = SENSOR\n\tdeny_time = 10\n}\n"
    )
    d = daemons(sensor + service("env", "env"))
    assert (await fetch(d.port("env"), bindAddress=("127.0.0.2", 0))).data
    assert (await fetch(d.port("trap"), bindAddress=("127.0.0.2", 0))).data == b""
    assert (await fetch(d.port("env"), bindAddress=("127.0.0.2", 0))).data == b""
    assert (await fetch(d.port("env"))).data
    fails = [
        (e["service"], e["host"]) for e in events if e.get("twinetdEvent") == logs.FAIL
    ]
    assert fails == [("trap", "127.0.0.2"), ("env", "127.0.0.2")]


REDHAT_DEFAULTS = """\
defaults
{
	log_type	= SYSLOG daemon info
	log_on_failure	= HOST
	log_on_success	= PID HOST DURATION EXIT
	cps		= 50 10
	instances	= 50
	per_source	= 10
	v6only		= no
	groups		= yes
	umask		= 002
}

includedir {folder}
"""


@pytest_twisted.ensureDeferred
async def test_redHatDefaults(tmp_path: Path) -> None:
    """
    The defaults block Red Hat and openSUSE ship loads as it is, and the
    service behaves as there: umask 002 reaches the child, START and EXIT
    go to syslog (daemon.info) with xinetd's shapes.
    """
    folder = tmp_path / "xinetd.d"
    folder.mkdir()
    (folder / "env").write_text(service("env", "env").replace("\tcps = 1000 1\n", ""))
    main = tmp_path / "xinetd.conf"
    main.write_text(REDHAT_DEFAULTS.replace("{folder}", str(folder)))
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(str(tmp_path / "log"))
    syslog.setblocking(False)
    settings = attrs.evolve(SETTINGS, syslogPath=str(tmp_path / "log"))
    d = runConfig(reactor, path=str(main), settings=settings)
    try:
        assert d.result.problems == ()
        [config] = d.result.services
        assert (config.instances, config.perSource, config.cps) == (50, 10, (50, 10))
        child = json.loads((await fetch(d.port("env"))).data)
        assert child["umask"] == 0o002
        packets: list[bytes] = []
        for _ in range(100):
            with contextlib.suppress(BlockingIOError):
                packets.append(syslog.recv(4096))
            if len(packets) == 2:
                break
            await sleep(0.05)
        # <daemon(3)*8 + info(6)> = <30>
        assert re.fullmatch(
            rb"<30>\w{3} [ \d]\d \d\d:\d\d:\d\d twinetd\[\d+\]: START: env pid=\d+ "
            rb"from=127\.0\.0\.1",
            packets[0],
        ), packets
        assert re.search(
            rb"EXIT: env status=0 pid=\d+ duration=\d+\(sec\)$", packets[1]
        )
    finally:
        syslog.close()
        await within(d.stop())


def openDescriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def descriptorTargets() -> dict[str, str]:
    """
    This process's descriptors and what each is (for a failure's message).
    """
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return found


@bothSpawners
@pytest_twisted.ensureDeferred
async def test_noDescriptorLeak(daemons: Any) -> None:
    """
    After many connections ended every way (served, refused, client gone at
    once, client gone mid-session), the daemon holds no more descriptors
    than before.
    """
    d = daemons(
        service("env", "env")
        + service("hold", "stubborn", extra="\tonly_from = 127.0.0.1\n")
    )
    # Warm up (lazily opened descriptors: resolver, logs, ...).
    await fetch(d.port("env"))
    env = d.daemon.listener("env")
    await until(lambda: not env.busy)
    start = getattr(d.daemon.runtime.spawner, "start", None)
    if start is not None:
        # A spawner process that starts with the first start under load.
        start()
    before = openDescriptors()
    targets = descriptorTargets()
    for _ in range(40):
        await fetch(d.port("env"))
        with contextlib.suppress(Exception):
            await fetch(d.port("hold"), bindAddress=("127.0.0.2", 0))
        vanishing = socket.create_connection(("127.0.0.1", d.port("env")))
        vanishing.close()
        client = Client()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", d.port("hold"))
        await within(connectProtocol(endpoint, client))
        client.transport.abortConnection()
    # Children that outlived their clients are TERMed, then KILLed, within
    # two kill delays.
    for _ in range(100):
        if openDescriptors() <= before:
            break
        await sleep(0.05)
    now = descriptorTargets()
    assert openDescriptors() <= before, {
        fd: what for fd, what in now.items() if targets.get(fd) != what
    }


@pytest_twisted.ensureDeferred
async def test_pausedClientLeavesSlotReleased(daemons: Any, events: Any) -> None:
    """
    With instances = 1: a client fills a child that never reads (the daemon
    stops reading it) and resets.  The daemon notices without reading: the
    child gets SIGTERM within the kill delay, the slot is released (the
    next client is served) and the daemon's descriptors are back to their
    count before.
    """
    d = daemons(
        service(
            "pin",
            "stubborn",
            "noread",
            extra="\tinstances = 1\n\tenv = KEEP_TERM=1\n",
        )
    )
    port = d.port("pin")
    factory = d.daemon.listener("pin").factory
    # Warm up (the hang-up watcher's descriptor, the resolver, ...).
    warm = socket.create_connection(("127.0.0.1", port))
    await fillUntilPaused(warm, factory)
    warm.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    warm.close()
    await until(lambda: not factory.live)
    before = openDescriptors()

    client = socket.create_connection(("127.0.0.1", port))
    await fillUntilPaused(client, factory)
    assert openDescriptors() > before
    left = reactor.seconds()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    await until(lambda: not factory.live)
    assert reactor.seconds() - left < SETTINGS.killDelay + 1.0
    exits = [e for e in events if e.get("twinetdEvent") == logs.EXIT]
    assert exits[-1]["signal"] == 15
    assert openDescriptors() == before
    served = Client(want=b"ready\n")
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await within(connectProtocol(endpoint, served))
    await within(served.got)
    served.transport.abortConnection()
    await until(lambda: not factory.live)


@pytest_twisted.ensureDeferred
async def test_bannersBeforeHandoff(daemons: Any, tmp_path: Path) -> None:
    """
    A handed-off program's client gets C{banner} and C{banner_success}
    first, then what the program writes on the socket.
    """
    (tmp_path / "banner").write_bytes(b"hello\r\n")
    (tmp_path / "success").write_bytes(b"welcome\r\n")
    d = daemons(
        service(
            "handed",
            "env",
            extra="\ttwinetd_mode = handoff\n"
            f"\tbanner = {tmp_path / 'banner'}\n"
            f"\tbanner_success = {tmp_path / 'success'}\n",
        )
    )
    data = (await fetch(d.port("handed"))).data
    assert data.startswith(b"hello\r\nwelcome\r\n")
    assert b'"REMOTE_HOST": "127.0.0.1"' in data


@pytest_twisted.ensureDeferred
async def test_bannerNotReadDelaysNobody(
    daemons: Any, events: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """
    A client of a handed-off service that never reads its (large) banner:
    the daemon never blocks for it (no gap in a 10 ms heartbeat, other
    services' clients answered at once), drops it after the banner timeout
    (logged), releases its slot and starts nothing for it.
    """
    monkeypatch.setattr(front, "BANNER_TIMEOUT", 1.5)
    banner = tmp_path / "banner"
    banner.write_bytes(b"b" * (16 * 1024 * 1024))
    d = daemons(
        service(
            "slow",
            "env",
            extra=f"\ttwinetd_mode = handoff\n\tbanner_success = {banner}\n",
        )
        + internal("echo", extra="\tcps = 100000 1\n")
    )
    beats: list[float] = []
    heartbeat = task.LoopingCall(lambda: beats.append(time.monotonic()))
    heartbeat.start(0.01)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", d.port("slow")))
    try:
        latencies = []
        started = time.monotonic()
        while not any(e.get("twinetdBannerTimeout") for e in events):
            assert time.monotonic() - started < 10, "never dropped"
            asked = time.monotonic()
            assert await converse(reactor, d.port("echo"), b"ping") == b"ping"
            latencies.append(time.monotonic() - asked)
        dropped = time.monotonic() - started
    finally:
        heartbeat.stop()
        slow.close()
    assert 1.4 < dropped < 3.0
    # Generous bounds: the blocking send stalled everything for 2 s.
    assert len(latencies) > 5 and max(latencies) < 1.0
    assert max(b - a for a, b in itertools.pairwise(beats)) < 1.0
    starts = [e for e in events if e.get("twinetdEvent") == logs.START]
    assert [e for e in starts if e["service"] == "slow"] == []
    await until(lambda: d.daemon.runtime.gate.limits.running("slow") == 0)


def pendingLookups(monkeypatch: Any) -> tuple[list[str], defer.Deferred[str]]:
    """
    The reactor's resolver replaced: the names it is asked for, and the
    one answer they all wait for.
    """
    asked: list[str] = []
    answer: defer.Deferred[str] = defer.Deferred()

    def resolve(name: str, timeout: Any = None) -> defer.Deferred[str]:
        asked.append(name)
        return answer

    monkeypatch.setattr(reactor, "resolve", resolve)
    return asked, answer


@pytest_twisted.ensureDeferred
async def test_bindHostNameLookedUpOnce(daemons: Any, monkeypatch: Any) -> None:
    """
    A host name in C{bind} is looked up through the reactor's resolver (in
    the background: the other services serve meanwhile), once: a cps resume
    binds the address found then.
    """
    asked, answer = pendingLookups(monkeypatch)
    d = daemons(
        service("named", "env", extra="\tbind = localhost\n").replace(
            "cps = 1000 1", "cps = 2 1"
        )
        + service("plain", "env", extra="\tbind = 127.0.0.1\n"),
        bind=None,
    )
    named = d.daemon.listener("named")
    assert asked == ["localhost"] and named.port is None
    assert b"REMOTE_HOST" in (await fetch(d.port("plain"))).data
    answer.callback("127.0.0.1")
    assert b"REMOTE_HOST" in (await fetch(d.port("named"))).data
    port = d.port("named")
    for _ in range(3):
        with contextlib.suppress(ConnectionRefusedError):
            await fetch(port)
    # cps tripped: the port closes for a second, then listens again.
    await until(lambda: named.port is None)
    await until(lambda: named.port is not None)
    assert d.port("named") == port
    assert named.port.getHost().host == "127.0.0.1"
    assert asked == ["localhost"]


def _dgram(text: str) -> str:
    return text.replace("socket_type = stream", "socket_type = dgram").replace(
        "cps = 1000 1", "cps = 1000 1\n\tprotocol = udp"
    )


async def _askDatagram(port: int) -> bytes:
    client = Datagrams()
    try:
        return await client.ask(port, b"hello")
    finally:
        client.sock.close()


async def _acceptedOnce(port: int) -> bytes:
    return (await fetch(port)).data


_NAMED_KINDS = {
    # kind: (its service, how a client is served)
    "datagram": (
        _dgram(service("named", "dgreply", "reply", extra="\tbind = localhost\n")),
        _askDatagram,
    ),
    "datagram wait = yes": (
        _dgram(
            service("named", "udpserve", "blocking", extra="\tbind = localhost\n")
        ).replace("wait = no", "wait = yes"),
        _askDatagram,
    ),
    "stream wait = yes": (
        service("named", "acceptn", "1", extra="\tbind = localhost\n").replace(
            "wait = no", "wait = yes"
        ),
        _acceptedOnce,
    ),
}


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("kind", sorted(_NAMED_KINDS))
async def test_bindHostNameOtherKinds(
    daemons: Any, monkeypatch: Any, kind: str
) -> None:
    """
    Datagram and C{wait = yes} services too look a host name in C{bind} up
    through the reactor's resolver, never blocking the daemon: they bind
    the address found once it comes, and serve.
    """
    asked, answer = pendingLookups(monkeypatch)
    text, serve = _NAMED_KINDS[kind]
    d = daemons(text + service("plain", "env", extra="\tbind = 127.0.0.1\n"), bind=None)
    named = d.daemon.listener("named")
    assert asked == ["localhost"]
    assert named.boundPort is None and named.failure is None
    assert b"REMOTE_HOST" in (await fetch(d.port("plain"))).data
    answer.callback("127.0.0.1")
    # The record keeps the name (a reload compares it); the socket has the
    # address found.
    assert named.config.bind == "localhost"
    assert b"hello" in await serve(d.port("named"))
    assert asked == ["localhost"]


@pytest_twisted.ensureDeferred
async def test_bindHostNameUnknown(daemons: Any, events: Any, monkeypatch: Any) -> None:
    """
    A C{bind} name that cannot be looked up: that service cannot listen
    (logged as file:line: service: message); the others serve.
    """

    def resolve(name: str, timeout: Any = None) -> defer.Deferred[str]:
        return defer.fail(DNSLookupError(name))

    monkeypatch.setattr(reactor, "resolve", resolve)
    d = daemons(
        service("named", "env", extra="\tbind = nowhere.invalid\n")
        + _dgram(service("dnamed", "dgreply", extra="\tbind = nowhere.invalid\n"))
        + service("plain", "env", extra="\tbind = 127.0.0.1\n"),
        bind=None,
    )
    assert d.daemon.listener("named").failure is not None
    assert d.daemon.listener("dnamed").failure is not None
    cannot = [e for e in events if e.get("twinetdEvent") == logs.CANNOT_LISTEN]
    assert sorted(e["service"] for e in cannot) == ["dnamed", "named"]
    assert all("nowhere.invalid" in e["reason"] for e in cannot)
    assert b"REMOTE_HOST" in (await fetch(d.port("plain"))).data


async def until(condition: Any, seconds: float = 10.0) -> None:
    deadline = reactor.seconds() + seconds
    while not condition():
        assert reactor.seconds() < deadline, "condition not met in time"
        await sleep(0.02)


async def fillUntilPaused(sock: socket.socket, factory: Any) -> None:
    """
    Once the child said "ready", send on C{sock} until the daemon stops
    reading it (the child does not read).
    """
    sock.setblocking(False)
    got = b""
    deadline = reactor.seconds() + 10
    while got != b"ready\n":
        assert reactor.seconds() < deadline, got
        with contextlib.suppress(BlockingIOError):
            got += sock.recv(6 - len(got))
        await sleep(0.01)
    bridges: list[Any] = []

    def paused() -> bool:
        bridges[:] = [c for c in factory.live if isinstance(c, BridgeProtocol)]
        return bool(bridges) and bridges[0].transport not in reactor.getReaders()

    deadline = reactor.seconds() + 10
    while not paused():
        assert reactor.seconds() < deadline, "the daemon never stopped reading"
        with contextlib.suppress(BlockingIOError):
            sock.send(b"p" * 65536)
        await sleep(0.01)


@pytest_twisted.ensureDeferred
async def test_ipv4RuleOnDualStack(daemons: Any, events: Any) -> None:
    """
    On the default dual-stack socket, an IPv4 rule admits the IPv4 client
    (seen as ::ffff:127.0.0.1) and refuses ::1, a different source.
    """
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    d = daemons(service("env", "env", extra="\tonly_from = 127.0.0.1\n"), bind="::")
    env = json.loads((await fetch(d.port("env"))).data)["env"]
    assert env["REMOTE_HOST"] == "::ffff:127.0.0.1"
    assert (await fetch(d.port("env"), "::1")).data == b""
    fails = [e["host"] for e in events if e.get("twinetdEvent") == logs.FAIL]
    assert fails == ["::1"]


@pytest_twisted.ensureDeferred
async def test_waitStreamBehindTheGate(daemons: Any, events: Any) -> None:
    """
    A wait = yes stream service asks the gate before each child: with
    instances = 0 nothing starts and FAIL service_limit is logged, while the
    client waits queued.
    """
    text = service("acceptor", "acceptn", "1", extra="\tinstances = 0\n").replace(
        "wait = no", "wait = yes"
    )
    d = daemons(text)
    client = Client()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", d.port("acceptor"))
    await within(connectProtocol(endpoint, client))
    for _ in range(40):
        if any(e.get("twinetdEvent") == logs.FAIL for e in events):
            break
        await sleep(0.05)
    fails = [e for e in events if e.get("twinetdEvent") == logs.FAIL]
    assert [(e["reason"], e["host"]) for e in fails][:1] == [
        ("service_limit", "<no address>")
    ]
    starts = [e for e in events if e.get("twinetdEvent") == logs.START]
    assert [e for e in starts if e["service"] == "slow"] == []
    assert not client.done.called
    client.transport.loseConnection()
    await within(client.done)
