"""
The real daemon's start-up as an administrator meets it: C{twistd
twinetd} as a subprocess with inetd.conf files, configurations that cannot
serve anything, and configurations that cannot be read.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path

from tests.integration.test_twistd import (
    DEADLINE,
    TWISTD,
    connect,
    environment,
    freePort,
    readToEnd,
    twistd,
)


def me() -> str:
    # The daemon's own user: a root daemon (CI) and a user's daemon alike.
    return pwd.getpwuid(os.geteuid()).pw_name


def stop(proc: subprocess.Popen[bytes]) -> bytes:
    """
    Stop a daemon started by the test and return what it printed.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=DEADLINE)
    return out


def test_inetdConf(tmp_path: Path) -> None:
    """
    C{--inetd-conf} alone serves a Twisted-style inetd.conf line (a port
    number as the name, argv[0] given).
    """
    port = freePort()
    conf = tmp_path / "inetd.conf"
    conf.write_text(f"{port} stream tcp nowait {me()} /bin/cat cat  # echo\n")
    proc = twistd(
        "-n", "--pidfile=", "-l", str(tmp_path / "twistd.log"),
        "twinetd", "--inetd-conf", str(conf),
    )  # fmt: skip
    try:
        with connect(port) as sock:
            sock.sendall(b"hello\n")
            sock.shutdown(1)
            assert readToEnd(sock) == b"hello\n"
        assert proc.poll() is None
    finally:
        stop(proc)


def test_checkInetdConfWithConfig(tmp_path: Path) -> None:
    """
    C{--check} reads C{-c} and C{--inetd-conf} together.
    """
    (tmp_path / "xinetd.d").mkdir()
    (tmp_path / "xinetd.d" / "cat").write_text(
        "service cat\n{\n type = UNLISTED\n socket_type = stream\n wait = no\n"
        " user = -\n server = /bin/cat\n port = 40001\n}\n"
    )
    conf = tmp_path / "inetd.conf"
    conf.write_text("echo stream tcp nowait root internal\nrpc/1 dgram rpc/udp\n")
    result = subprocess.run(
        [*TWISTD, "twinetd", "--check", "-c", str(tmp_path / "xinetd.d"),
         "--inetd-conf", str(conf)],
        env=environment(), capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert result.stdout.splitlines() == [
        f"{conf}:2: rpc/1: expected at least 6 fields (name socket-type protocol "
        "wait user server [argv...]), got 3".encode(),
        b"2 services loaded, 1 skipped, 0 disabled, 1 error, 0 warnings",
    ]
