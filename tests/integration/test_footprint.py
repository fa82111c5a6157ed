"""
What the real daemon loads: C{twistd -n twinetd} serving an ordinary
xinetd configuration (a bridged and a handed-off stream service, a plain
C{twinetd_listen}, no TLS, no PROXY, no C{--metrics}) imports none of the
modules only those features need, also once it has served a connection in
each mode.  Each of them costs the idle daemon memory (pyOpenSSL and
cryptography alone some 14 MB resident).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration import test_listen
from tests.integration.conftest import fixedPort
from tests.integration.test_twistd import DEADLINE, environment

CHILDREN = Path(__file__).resolve().parent / "children"

#: Modules a plain configuration has no use for.
UNUSED = (
    "twisted.internet.endpoints",
    "twisted.protocols.haproxy",
    "OpenSSL",
    "cryptography",
    "service_identity",
    "twisted.web",
    "prometheus_client",
    "automat",
    # twinetd's own, for features the configuration does not use: the
    # spawner process (--spawner-process, or by default once more than 4
    # programs run), wait = yes, redirect.
    "twinetd.spawnclient",
    "twinetd.spawnerprocess",
    "twinetd.listeners.waitstream",
    "twinetd.listeners.waitdatagram",
    "twinetd.modes.redirect",
)

# twistd in this process, with a client thread that waits until the daemon
# listens, makes one connection to each service, then writes the names in
# sys.modules to argv[1] and stops the reactor (imported only then: the
# daemon imports it itself, as under twistd).
# A port given with a CA file is served over TLS.
DRIVER = """
import json, socket, ssl, sys, threading, time

def exchange(port, ca):
    deadline = time.monotonic() + {deadline}
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout={deadline})
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    if ca:
        context = ssl.create_default_context(cafile=ca)
        sock = context.wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(b"hello\\n")
        data = b""
        while not data.endswith(b"\\n") and (chunk := sock.recv(4096)):
            data += chunk
    return data

def client():
    try:
        found = {{"replies": [exchange(port, ca).decode() for port, ca in {ports!r}]}}
    except Exception as e:
        found = {{"replies": repr(e)}}
    def report():
        with open({out!r}, "w") as f:
            json.dump({{"modules": sorted(sys.modules), **found}}, f)
        reactor.stop()
    from twisted.internet import reactor
    reactor.callFromThread(report)

threading.Thread(target=client, daemon=True).start()
sys.argv = ["twistd", "-n", "--pidfile=", "-l", {log!r}, "twinetd", "-c", {conf!r}]
from twisted.scripts.twistd import run
run()
"""

SERVICE = """\
service {name}
{{
	type		= UNLISTED
	port		= {port}
	bind		= 127.0.0.1
	socket_type	= stream
	protocol	= tcp
	wait		= no
	user		= -
	server		= {python}
	server_args	= {child}
	twinetd_mode	= {mode}
{extra}}}
"""

pki = test_listen.pki


def serve(tmp_path: Path, services: list[tuple[str, int, str, str | None]]) -> set[str]:
    """
    Run C{twistd -n twinetd} on C{services} (name, port, mode, a C{twinetd_listen}
    or C{None}), one C{echo} connection to each, and return the names of the
    modules the daemon has imported then.
    """
    conf = tmp_path / "xinetd.d"
    conf.mkdir()
    ports: list[tuple[int, str | None]] = []
    for name, port, mode, listen in services:
        extra = "" if listen is None else f"\ttwinetd_listen\t= {listen}\n"
        (conf / name).write_text(
            SERVICE.format(
                name=name,
                port=port,
                python=sys.executable,
                child=CHILDREN / "echo.py",
                mode=mode,
                extra=extra,
            )
        )
        tls = listen is not None and listen.startswith("ssl:")
        ports.append((port, str(tmp_path / "ca.crt") if tls else None))
    out = tmp_path / "modules.json"
    driver = DRIVER.format(
        deadline=DEADLINE,
        ports=ports,
        out=str(out),
        log=str(tmp_path / "twistd.log"),
        conf=str(conf),
    )
    done = subprocess.run(
        [sys.executable, "-c", driver],
        env=environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=3 * DEADLINE,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(out.read_text())
    assert found["replies"] == ["hello\n"] * len(services)
    modules = set(found["modules"])
    # The check sees the daemon's modules.
    assert "twisted.internet.reactor" in modules
    return modules


def unused(modules: set[str]) -> list[str]:
    return sorted(
        name
        for name in modules
        if any(name == unused or name.startswith(unused + ".") for unused in UNUSED)
    )


def test_plainConfigurationImportsNoExtras(tmp_path: Path) -> None:
    """
    Serving a bridged and a handed-off service, and one on a C{tcp:}
    endpoint, the daemon has imported none of L{UNUSED}.
    """
    port = fixedPort()
    modules = serve(
        tmp_path,
        [
            ("bridge", fixedPort(), "bridge", None),
            ("handoff", fixedPort(), "handoff", None),
            ("endpoint", port, "bridge", f"tcp:{port}:interface=127.0.0.1"),
        ],
    )
    assert {"twinetd.modes.bridge", "twinetd.modes.handoff"} <= modules
    assert unused(modules) == []


def test_tlsUnderTwistd(tmp_path: Path, pki: Path) -> None:
    """
    The daemon's reactor, imported without pyOpenSSL, serves an C{ssl:}
    listener: pyOpenSSL comes with it.
    """
    port = fixedPort()
    listen = (
        f"ssl:{port}:interface=127.0.0.1:privateKey={pki}/server.key"
        f":certKey={pki}/server.crt"
    )
    modules = serve(tmp_path, [("tls", port, "bridge", listen)])
    assert "OpenSSL" in modules


def test_spawnerProcessImportsLittle() -> None:
    """
    The spawner process (C{python -S -m twinetd.spawnerprocess}) imports
    neither Twisted nor C{subprocess} nor C{typing}: its memory is mostly
    the interpreter's (each such import is a MB or more in every daemon
    that starts one).
    """
    probe = (
        "import json, sys, twinetd.spawnerprocess; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env=environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=DEADLINE,
        check=True,
    )
    modules = set(json.loads(done.stdout))
    assert "twinetd.forkexec" in modules
    loaded = {"twisted", "subprocess", "typing"} & {m.split(".")[0] for m in modules}
    assert loaded == set()
