"""
Operating the real daemon as an administrator does: the umask its children
get, a reload through a real SIGHUP that keeps a broken service's previous
definition, and an embedding application that adds L{DaemonControl}.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from tests.integration.conftest import CHILDREN, reactor, within
from tests.integration.test_twistd import (
    DEADLINE,
    TWISTD,
    connect,
    environment,
    freePort,
    readToEnd,
)
from twinetd.config import loadPath
from twinetd.logs import RELOADED
from twinetd.service import DaemonControl, DaemonSettings, fromPath


def service(name: str, port: int, script: str = "umask.py", extra: str = "") -> str:
    return (
        f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
        "\tsocket_type = stream\n\twait = no\n\tuser = -\n\tbind = 127.0.0.1\n"
        f"\tserver = {sys.executable}\n\tserver_args = {CHILDREN / script}\n"
        f"{extra}}}\n"
    )


def ask(port: int) -> bytes:
    with connect(port) as sock:
        sock.shutdown(1)
        return readToEnd(sock)


def waitFor(check: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def killByPidFile(pidfile: Path) -> None:
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DEADLINE
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if pidfile.exists():
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("daemonize", [False, True])
def test_childUmask(tmp_path: Path, daemonize: bool) -> None:
    """
    Children get the invoking umask with 022 added, as under xinetd, also
    when twistd goes to the background (it sets 077 after building the
    service; the umask is set when the daemon starts).
    """
    port = freePort()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "umask").write_text(service("umask", port))
    pidfile = tmp_path / "twistd.pid"
    proc = subprocess.Popen(
        [
            *TWISTD,
            *([] if daemonize else ["-n"]),
            f"--pidfile={pidfile}",
            *("-l", str(tmp_path / "twistd.log"), "--rundir", str(tmp_path)),
            *("twinetd", "-c", str(tmp_path / "etc")),
        ],
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        umask=0o002,
    )
    try:
        assert ask(port) == b"0022\n"
    finally:
        waitFor(pidfile.exists, "no pid file")
        killByPidFile(pidfile)
        proc.wait(DEADLINE)


def jsonEvents(path: Path, kind: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in events if e["twinetdEvent"] == kind]


def test_safeReload(tmp_path: Path) -> None:
    """
    A typo in a running service's file followed by SIGHUP: the service
    keeps its previous definition and its port serves; the log says so
    (C{kept}), and distinct lines name added, changed and removed
    services.
    """
    ports = [freePort() for _ in range(4)]
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "kept").write_text(service("kept", ports[0]))
    (etc / "changed").write_text(service("changed", ports[1]))
    (etc / "removed").write_text(service("removed", ports[2]))
    log = tmp_path / "events.json"
    proc = subprocess.Popen(
        [
            *(*TWISTD, "-n", "--pidfile=", "-l", str(tmp_path / "twistd.log")),
            *("twinetd", "-c", str(etc), "--log-json", str(log)),
        ],
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert ask(ports[0]).endswith(b"\n")
        (etc / "kept").write_text(
            service("kept", ports[0], extra="\tonly_form = 127.0.0.1\n")
        )
        (etc / "changed").write_text(service("changed", ports[1], script="echo.py"))
        (etc / "removed").unlink()
        (etc / "added").write_text(service("added", ports[3]))
        proc.send_signal(signal.SIGHUP)
        changes = waitFor(
            lambda: len(jsonEvents(log, RELOADED)) >= 4 and jsonEvents(log, RELOADED),
            "no reload lines",
        )
        byService = {e["service"]: e for e in changes}
        assert {s: e["change"] for s, e in byService.items()} == {
            "kept": "kept",
            "changed": "changed",
            "removed": "removed",
            "added": "added",
        }
        kept = byService["kept"]
        assert kept["detail"] == (
            f"{etc / 'kept'}:11: kept: unknown attribute only_form (did you mean "
            "only_from?)"
        )
        assert kept["text"] == f"kept: kept previous definition: {kept['detail']}"
        assert ask(ports[0]).endswith(b"\n")
        assert ask(ports[3]).endswith(b"\n")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(DEADLINE)


@pytest_twisted.ensureDeferred
async def test_embeddedSighup(tmp_path: Path, noChildLeft: None) -> None:
    """
    An application that adds L{DaemonControl} to its tree reloads on a real
    SIGHUP (instead of dying); the previous handler is back after it stops.
    """
    etc = tmp_path / "etc"
    etc.mkdir()
    first, second = freePort(), freePort()
    (etc / "one").write_text(service("one", first))
    daemon, _ = fromPath(str(etc), reactor, DaemonSettings(killDelay=1))
    control = DaemonControl(daemon, reactor, load=lambda: loadPath(str(etc)))
    before = signal.getsignal(signal.SIGHUP)
    daemon.startService()
    control.startService()
    try:
        (etc / "two").write_text(service("two", second))
        reloaded: defer.Deferred[None] = defer.Deferred()
        original = control.reload

        def reload() -> defer.Deferred[None]:
            d = original()
            d.addCallback(reloaded.callback)
            return d

        control.reload = reload  # type: ignore[method-assign]
        os.kill(os.getpid(), signal.SIGHUP)
        await within(reloaded)
        assert sorted(daemon.records) == ["one", "two"]
    finally:
        control.stopService()
        await daemon.stopService()
    assert signal.getsignal(signal.SIGHUP) == before
