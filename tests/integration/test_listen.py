"""
C{twinetd_listen} against real sockets and real children: TLS with a
certificate the test makes (a client certificate too), a UNIX socket
(SO_PEERCRED), PROXY v1 and v2 headers (a spoofed one refused), a handed-off
UNIX connection, and systemd's socket activation through a real
C{systemd-socket-activate -- twistd -n twinetd}.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import threads

from twinetd import logs
from twinetd.service import DaemonSettings
from twinetd.testing import RunningDaemon, runConfig

from .conftest import CHILDREN, reactor, within

pytestmark = pytest.mark.usefixtures("noChildLeft")

SETTINGS = DaemonSettings(killDelay=1.0)
ROOT = Path(__file__).resolve().parents[2]


def service(name: str, child: str, listen: str, extra: str = "") -> str:
    argv = " ".join([sys.executable, str(CHILDREN / f"{child}.py")])
    return (
        f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
        f"\tflags = NAMEINARGS\n\twait = no\n\tuser = -\n"
        f"\tserver = {sys.executable}\n\tserver_args = {argv}\n"
        f"\ttwinetd_listen = {listen}\n{extra}}}\n"
    )


@pytest_twisted.async_yield_fixture
async def daemons() -> Any:
    running: list[RunningDaemon] = []

    def start(text: str) -> RunningDaemon:
        d = runConfig(reactor, text, settings=SETTINGS, bind=None)
        running.append(d)
        return d

    yield start
    for d in running:
        await within(d.stop())


def blocking(call: Any, *args: Any) -> Any:
    """
    A blocking client, in a thread, with the test's deadline.
    """
    return within(threads.deferToThread(call, *args))


def readAll(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# TLS


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "twinetd tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _certificate(
    subject: str, key: Any, issuer: str, signer: Any, ca: bool = False
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, key: Any, certificate: x509.Certificate) -> None:
    (path.with_suffix(".key")).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".crt").write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
    )


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """
    A certificate authority, a server certificate for localhost and a
    client certificate, made for the test (no key is kept anywhere else).
    """
    caKey = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test ca", caKey, "test ca", caKey, ca=True)
    _write(tmp_path / "ca", caKey, ca)
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(tmp_path / name, key, _certificate(name, key, "test ca", caKey))
    return tmp_path


def tlsEnvironment(port: int, pki: Path, clientCertificate: bool) -> dict[str, str]:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if clientCertificate:
        context.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        env: dict[str, str] = json.loads(readAll(sock))["env"]
        return env


@pytest_twisted.ensureDeferred
async def test_tls(daemons: Any, pki: Path) -> None:
    """
    A stdio program served over TLS sees plain bytes; a client certificate
    (asked for with caCerts) reaches its environment as Apache names it,
    and a client without one is served with SSL_CLIENT_VERIFY=NONE.
    """
    listen = (
        f"ssl:0:interface=127.0.0.1:privateKey={pki}/server.key"
        f":certKey={pki}/server.crt:caCerts={pki}/ca.crt"
    )
    d = daemons(service("tls", "env", listen))
    port = d.port("tls")
    env = await blocking(tlsEnvironment, port, pki, True)
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"] == "CN=client,O=twinetd tests"
    assert env["SSL_CLIENT_I_DN"] == "CN=test ca,O=twinetd tests"
    assert env["SSL_PROTOCOL"].startswith("TLSv1.")
    assert env["PROTO"] == "TCP" and env["REMOTE_ADDR"] == "127.0.0.1"
    anonymous = await blocking(tlsEnvironment, port, pki, False)
    assert anonymous["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_S_DN" not in anonymous


def tlsEcho(port: int, pki: Path, data: bytes) -> bytes:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(data)
        received = b""
        while len(received) < len(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


@pytest_twisted.ensureDeferred
async def test_tlsBytesBothWays(daemons: Any, pki: Path) -> None:
    """
    The program reads the client's decrypted bytes and its output goes back
    encrypted: a megabyte through an echoing child.
    """
    listen = (
        f"ssl:0:interface=127.0.0.1:privateKey={pki}/server.key"
        f":certKey={pki}/server.crt"
    )
    d = daemons(service("tlsecho", "echo", listen))
    data = os.urandom(1 << 20)
    assert await blocking(tlsEcho, d.port("tlsecho"), pki, data) == data


# UNIX sockets


def unixEnvironment(path: str) -> dict[str, str]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.shutdown(socket.SHUT_WR)
        env: dict[str, str] = json.loads(readAll(sock))["env"]
        return env


@pytest_twisted.ensureDeferred
async def test_unixSocket(daemons: Any, tmp_path: Path) -> None:
    """
    A UNIX-socket client: the socket file gets the mode asked for; the
    program sees UCSPI's UNIX variables with the client's pid, uid and gid
    (SO_PEERCRED), and no address.
    """
    path = str(tmp_path / "env.sock")
    daemons(service("unix", "env", f"unix:{path}:mode=600"))
    assert os.stat(path).st_mode & 0o777 == 0o600
    env = await blocking(unixEnvironment, path)
    assert env["PROTO"] == "UNIX"
    assert env["UNIXLOCALPATH"] == path
    assert env["UNIXREMOTEPID"] == str(os.getpid())
    assert env["UNIXREMOTEEUID"] == str(os.geteuid())
    assert env["UNIXREMOTEEGID"] == str(os.getegid())
    assert "REMOTE_HOST" not in env and "REMOTE_ADDR" not in env


def unixPeer(path: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        return readAll(sock).decode()


@pytest_twisted.ensureDeferred
async def test_unixHandoff(daemons: Any, tmp_path: Path) -> None:
    """
    A handed-off program gets the UNIX socket itself (descriptor 0 is the
    accepted connection).
    """
    path = str(tmp_path / "h.sock")
    daemons(
        service("unixh", "handoffinfo", f"unix:{path}", "\ttwinetd_mode = handoff\n")
    )
    info = dict(
        line.split("=", 1) for line in (await blocking(unixPeer, path)).splitlines()
    )
    assert info["family"] == "AF_UNIX"
    assert info["fd0"].startswith("socket:")


# PROXY


def proxied(port: int, header: bytes) -> bytes:
    """
    What comes back for C{header}; nothing when the daemon refuses (it may
    reset the connection before the header is even sent, or before the
    client half-closes: ENOTCONN).
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(header)
            sock.shutdown(socket.SHUT_WR)
            return readAll(sock)
    except OSError as e:
        if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
            return b""
        raise


def v2Header(source: str, sport: int, destination: str, dport: int) -> bytes:
    body = socket.inet_aton(source) + socket.inet_aton(destination)
    body += struct.pack("!HH", sport, dport)
    signature = b"\r\n\r\n\x00\r\nQUIT\n"
    return signature + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


@pytest_twisted.ensureDeferred
async def test_proxyHeaders(daemons: Any, events: Any) -> None:
    """
    Behind a PROXY-speaking balancer the program, the gate and the log see
    the client the header names (v1 and v2); only_from applies to it.
    """
    d = daemons(
        service(
            "px",
            "env",
            "haproxy:tcp:0:interface=127.0.0.1",
            "\ttwinetd_proxy_from = 127.0.0.1\n\tonly_from = 192.0.2.0/24\n",
        )
    )
    port = d.port("px")
    header = b"PROXY TCP4 192.0.2.9 203.0.113.1 5555 80\r\n"
    env = json.loads(await blocking(proxied, port, header))["env"]
    assert (env["REMOTE_HOST"], env["REMOTE_PORT"]) == ("192.0.2.9", "5555")
    assert (env["TCPLOCALIP"], env["TCPLOCALPORT"]) == ("203.0.113.1", "80")
    env = json.loads(
        await blocking(proxied, port, v2Header("192.0.2.10", 4242, "203.0.113.1", 81))
    )["env"]
    assert env["REMOTE_ADDR"] == "192.0.2.10"
    starts = [e for e in events if e.get(logs.EVENT_FIELD) == logs.START]
    assert [e["host"] for e in starts] == ["192.0.2.9", "192.0.2.10"]
    # A client only_from does not admit, named by the header.
    outside = b"PROXY TCP4 198.51.100.1 203.0.113.1 1 80\r\n"
    assert await blocking(proxied, port, outside) == b""
    [fail] = [e for e in events if e.get(logs.EVENT_FIELD) == logs.FAIL]
    assert (fail["reason"], fail["host"]) == ("address", "198.51.100.1")


@pytest_twisted.ensureDeferred
async def test_proxySpoofRefused(daemons: Any, events: Any) -> None:
    """
    A header from a source outside twinetd_proxy_from, or a connection
    without a valid header, is refused and logged: nothing starts.
    """
    d = daemons(
        service(
            "spoof",
            "env",
            "haproxy:tcp:0:interface=127.0.0.1",
            "\ttwinetd_proxy_from = 10.0.0.0/8\n",
        )
    )
    port = d.port("spoof")
    header = b"PROXY TCP4 10.1.1.1 203.0.113.1 5555 80\r\n"
    assert await blocking(proxied, port, header) == b""
    fails = [e for e in events if e.get(logs.EVENT_FIELD) == logs.FAIL]
    assert [(e["host"], e["detail"]) for e in fails] == [
        ("127.0.0.1", "a PROXY header from outside twinetd_proxy_from")
    ]
    assert not [e for e in events if e.get(logs.EVENT_FIELD) == logs.START]

    d2 = daemons(
        service(
            "noheader",
            "env",
            "haproxy:tcp:0:interface=127.0.0.1",
            "\ttwinetd_proxy_from = 127.0.0.1\n",
        )
    )
    assert await blocking(proxied, d2.port("noheader"), b"hello\r\n") == b""
    details = [e["detail"] for e in events if e.get(logs.EVENT_FIELD) == logs.FAIL]
    assert details[-1] == "no valid PROXY header"


# systemd


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="needs systemd-socket-activate (Debian's systemd package)",
)
@pytest.mark.slow
def test_systemdActivation(tmp_path: Path) -> None:
    """
    C{systemd-socket-activate -l PORT -- twistd -n twinetd}: the daemon
    serves the socket systemd passed, by index and by name (LISTEN_FDNAMES),
    and its children do not inherit it.
    """
    byIndex, byName = freePort(), freePort()
    config = tmp_path / "twinetd.d"
    config.mkdir()
    (config / "env").write_text(
        service("sdindex", "env", "systemd:domain=INET:index=0")
        + service("sdname", "env", "systemd:domain=INET:name=web")
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    twistd = str(Path(sys.executable).with_name("twistd"))
    daemon = subprocess.Popen(
        [
            "systemd-socket-activate",
            "-E",
            "PYTHONPATH",
            "-l",
            f"127.0.0.1:{byIndex}",
            "-l",
            f"127.0.0.1:{byName}",
            "--fdname=first:web",
            "--",
            twistd,
            "-n",
            "--pidfile=",
            "twinetd",
            "-c",
            str(config),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        # systemd-socket-activate starts the program at the first connection.
        first = fetchEnvironment(byIndex)
        assert first["env"]["TCPLOCALPORT"] == str(byIndex)
        second = fetchEnvironment(byName)
        assert second["env"]["TCPLOCALPORT"] == str(byName)
        # Its stdio is pipes: it holds no socket (not systemd's 3 and 4).
        assert second["sockets"] == [], second["sockets"]
    finally:
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=30)
    text = output.decode()
    assert "sdindex listening on systemd:domain=INET:index=0" in text, text
    assert "sdname listening on systemd:domain=INET:name=web" in text, text


def fetchEnvironment(port: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.shutdown(socket.SHUT_WR)
                data = readAll(sock)
            if data:
                report: dict[str, Any] = json.loads(data)
                return report
        except OSError:
            pass
        assert time.monotonic() < deadline, "no answer"
        time.sleep(0.1)


@pytest_twisted.ensureDeferred
async def test_relayWayBehindTheFront(
    daemons: Any, pki: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Through the daemon's per-connection front the bridge still moves a
    plain client's bytes with splice(2), also behind a PROXY header (once it
    is read; the bytes that came with the header reach the child first);
    under TLS it goes through the transport.
    """
    from twinetd import relay
    from twinetd.relay import pipe

    ways: list[str] = []
    start = relay.PipeRelay.start

    def recordingStart(self: relay.PipeRelay) -> None:
        ways.append(self.way)
        start(self)

    monkeypatch.setattr(relay.PipeRelay, "start", recordingStart)
    data = os.urandom(1 << 20)
    d = daemons(service("plain", "echo", "tcp:0:interface=127.0.0.1"))
    assert await d.converse("plain", data) == data
    d = daemons(
        service(
            "px",
            "echo",
            "haproxy:tcp:0:interface=127.0.0.1",
            "\ttwinetd_proxy_from = 127.0.0.1\n",
        )
    )
    header = b"PROXY TCP4 192.0.2.9 203.0.113.1 5555 80\r\n"
    assert await blocking(proxied, d.port("px"), header + b"first" + data) == (
        b"first" + data
    )
    listen = (
        f"ssl:0:interface=127.0.0.1:privateKey={pki}/server.key"
        f":certKey={pki}/server.crt"
    )
    d = daemons(service("tlsecho", "echo", listen))
    assert await blocking(tlsEcho, d.port("tlsecho"), pki, data) == data
    expected = "splice" if pipe.SPLICE else "copy"
    assert ways == [expected, expected, "transport"]
