"""
SIGHUP, SIGUSR1 and SIGUSR2 while a real daemon (C{twistd -n twinetd}, the
C{twinetd} command) is still starting: it does not die, it serves, and it
answers them once started.

To send them at a known moment of the start, the daemon is parked on a
FIFO: its pid file (twistd reads an existing one before the configuration
is read) or its C{--log-json} file (opened after the configuration is
read).  A process parked in C{open()} of a FIFO sleeps in the kernel's
C{wait_for_partner}.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.daemon import (
    DEADLINE,
    TWISTD,
    environment,
    freePort,
    listening,
    service,
    until,
)
from tests.integration.test_sdnotify import stopped

#: A pid no process has (above any pid_max): twistd takes a pid file
#: naming it for a stale one, removes it and goes on.
NO_PROCESS = 2**31 - 2


def echoing(port: int, words: str) -> str:
    return service("words", port, f"\tserver = /bin/echo\n\tserver_args = {words}\n")


def ask(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data


def start(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def waitParked(proc: subprocess.Popen[bytes]) -> None:
    """
    Wait until C{proc} sleeps opening a FIFO with no signal pending (the
    ones sent are handled, and it went back to its C{open()}).
    """

    def parked() -> bool:
        assert proc.poll() is None, f"the daemon ended: {proc.returncode}"
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            wchan = Path(f"/proc/{proc.pid}/wchan").read_text()
        except OSError:
            return False
        pending = [int(line.split()[1], 16) for line in status if "Pnd:" in line]
        return wchan == "wait_for_partner" and not any(pending)

    until(parked)


def logged(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text()


@pytest.mark.parametrize("command", ["twistd", "twinetd"])
def test_signalsBeforeConfiguration(tmp_path: Path, command: str) -> None:
    """
    SIGHUP, SIGUSR1 and SIGUSR2 before the configuration is read (twistd
    reading its pid file): the daemon serves; SIGUSR1 and SIGUSR2 are
    answered once it started (the logs reopened, the status logged), the
    SIGHUP needs no reload (the configuration was read after it).
    """
    folder, log, pidfile = tmp_path / "etc", tmp_path / "daemon.log", tmp_path / "pid"
    folder.mkdir()
    port = freePort()
    (folder / "words").write_text(echoing(port, "served"))
    os.mkfifo(pidfile)
    if command == "twistd":
        argv = [*TWISTD, "-n", f"--pidfile={pidfile}", "-l", str(log), "twinetd"]
        argv += ["-c", str(folder)]
    else:
        argv = [sys.executable, "-m", "twinetd", "-dontfork", "-f", str(folder)]
        argv += ["-pidfile", str(pidfile), "-filelog", str(log)]
    proc = start(argv)
    try:
        waitParked(proc)
        for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            proc.send_signal(signum)
        waitParked(proc)
        fd = os.open(pidfile, os.O_WRONLY)
        os.write(fd, b"%d\n" % NO_PROCESS)
        os.close(fd)
        until(lambda: listening(port) or proc.poll() is not None)
        assert ask(port) == b"served\n"
        until(lambda: logged(log, "SIGUSR2 came while the daemon started"))
        assert proc.poll() is None
    finally:
        stopped(proc)
    text = log.read_text()
    assert "SIGUSR1 came while the daemon started" in text, text
    assert "SIGHUP" not in text, text


def test_sighupAfterConfiguration(tmp_path: Path) -> None:
    """
    A SIGHUP after the configuration was read (the daemon opening its
    JSON log), with the configuration changed meanwhile: the daemon does
    not die, and reloads once it started, serving the new configuration.
    """
    folder, log, events = tmp_path / "etc", tmp_path / "daemon.log", tmp_path / "ev"
    folder.mkdir()
    port = freePort()
    (folder / "words").write_text(echoing(port, "before"))
    os.mkfifo(events)
    argv = [*TWISTD, "-n", "--pidfile=", "-l", str(log), "twinetd", "-c", str(folder)]
    proc = start([*argv, "--log-json", str(events)])
    reader = None
    try:
        waitParked(proc)
        (folder / "words").write_text(echoing(port, "after"))
        proc.send_signal(signal.SIGHUP)
        waitParked(proc)
        # Kept open (and never full: a few lines) until the daemon stops.
        reader = os.open(events, os.O_RDONLY | os.O_NONBLOCK)
        until(lambda: listening(port) or proc.poll() is not None)
        until(lambda: ask(port) == b"after\n")
        assert proc.poll() is None
    finally:
        stopped(proc)
        if reader is not None:
            os.close(reader)
    text = log.read_text()
    assert text.count("SIGHUP: reloading") == 1, text
    assert "SIGHUP came while the daemon started" in text, text
