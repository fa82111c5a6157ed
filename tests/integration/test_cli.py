"""
The C{twinetd} command, run as an administrator runs it: the installed
console script and C{python -m twinetd}, with xinetd's options.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import twinetd
from tests.integration.test_twistd import (
    DEADLINE,
    ETC,
    STAMPED,
    TWISTD,
    connect,
    environment,
    freePort,
    readToEnd,
    readUntil,
)

SCRIPT = Path(sys.executable).parent / "twinetd"


def stampConfig(folder: Path) -> tuple[Path, int]:
    """
    A folder with the seed's stamp service on a free loopback port, run by
    the daemon's own user.
    """
    folder.mkdir()
    port = freePort()
    shutil.copytree(ETC / "programs.d", folder / "programs.d")
    text = (ETC / "stamp").read_text().replace("51423", str(port))
    text = text.replace("wait\t\t= no", "wait\t\t= no\n\tbind\t\t= 127.0.0.1")
    (folder / "stamp").write_text(text)
    return folder, port


def run(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "twinetd", *argv],
        env=environment(),
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_version() -> None:
    """
    C{-version} names twinetd's version and Twisted's, like xinetd's; so
    does C{twistd twinetd --version}.
    """
    done = run("-version")
    assert done.returncode == 0
    assert done.stdout.decode().strip() == twinetd.versionText()
    plugin = subprocess.run(
        [*TWISTD, "twinetd", "--version"],
        env=environment(),
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert plugin.returncode == 0
    assert plugin.stdout.decode().strip() == twinetd.versionText()


@pytest.mark.skipif(not SCRIPT.exists(), reason="twinetd is not installed here")
def test_consoleScript(tmp_path: Path) -> None:
    """
    The installed C{twinetd} script checks a configuration like C{twistd
    twinetd --check}: problems as C{file:line: service: message}, exit 1.
    """
    broken = tmp_path / "broken"
    broken.write_text("service broken\n{\n\tsocket_type = stream\n\tbogus = 1\n}\n")
    done = subprocess.run(
        [str(SCRIPT), "-f", str(broken), "--check"],
        env=environment(),
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done
    assert f"{broken}:4: broken: ".encode() in done.stdout, done.stdout


def test_dontforkServes(tmp_path: Path) -> None:
    """
    C{twinetd -dontfork -f FOLDER -filelog FILE} serves the folder in the
    foreground (drop-in mode: the program gets the socket), logs to the
    file, and stops on SIGTERM.
    """
    folder, port = stampConfig(tmp_path / "etc")
    log = tmp_path / "daemon.log"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "twinetd", "-dontfork", "-f", str(folder)),
            *("-filelog", str(log), "--", "--kill-delay", "1"),
        ],
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with connect(port) as sock:
            assert readUntil(sock, b"> ") == b"Please enter a string:\n> "
            sock.sendall(b"hello world!\r\n")
            assert STAMPED.match(readUntil(sock, b"> "))
            sock.sendall(b"\r\n")
            assert readToEnd(sock) == b""
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
        assert proc.stdout is not None
        proc.stdout.close()
    text = log.read_text()
    assert "stamp listening on 127.0.0.1 port" in text, text
