"""
The real daemon's start-up as an administrator meets it: C{twistd
twinetd} as a subprocess with inetd.conf files, configurations that cannot
serve anything, and configurations that cannot be read.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
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


def cat(name: str, port: int, extra: str = "") -> str:
    return (
        f"service {name}\n{{\n type = UNLISTED\n socket_type = stream\n"
        f" wait = no\n user = -\n server = /bin/cat\n port = {port}\n"
        f" bind = 127.0.0.1\n{extra}}}\n"
    )


def waitFor(proc: subprocess.Popen[bytes], marker: bytes) -> bytes:
    """
    What the daemon printed up to and including C{marker}.
    """
    assert proc.stdout is not None
    data = b""
    deadline = time.monotonic() + DEADLINE
    while marker not in data:
        assert time.monotonic() < deadline, data
        assert proc.poll() is None, data + proc.stdout.read()
        data += proc.stdout.readline()
    return data


def test_nothingToServeThenSighup(tmp_path: Path) -> None:
    """
    The only service has a typo: the daemon says what is wrong on standard
    error (it was lost before), keeps running with a warning, and serves
    the service once it is fixed and SIGHUP is sent.
    """
    port = freePort()
    folder = tmp_path / "xinetd.d"
    folder.mkdir()
    (folder / "slow").write_text(cat("slow", port, " only_form = 127.0.0.1\n"))
    proc = twistd(
        "-n", "--pidfile=", "-l", str(tmp_path / "twistd.log"),
        "twinetd", "-c", str(folder),
    )  # fmt: skip
    try:
        printed = waitFor(proc, b"waiting for SIGHUP")
        assert (
            f"twinetd: {folder}/slow:10: slow: unknown attribute only_form (did "
            "you mean only_from?)".encode()
        ) in printed
        (folder / "slow").write_text(cat("slow", port, " only_from = 127.0.0.1\n"))
        # At once, the daemon possibly still starting: a SIGHUP after the
        # configuration was read is answered by a reload once it started.
        proc.send_signal(signal.SIGHUP)
        with connect(port) as sock:
            sock.sendall(b"fixed\n")
            sock.shutdown(socket.SHUT_WR)
            assert readToEnd(sock) == b"fixed\n"
    finally:
        stop(proc)


def test_emptyFolderKeepsRunning(tmp_path: Path) -> None:
    folder = tmp_path / "xinetd.d"
    folder.mkdir()
    proc = twistd(
        "-n", "--pidfile=", "-l", str(tmp_path / "twistd.log"),
        "twinetd", "-c", str(folder),
    )  # fmt: skip
    try:
        waitFor(proc, b"twinetd: warning: no services to serve; waiting for SIGHUP")
        assert proc.poll() is None
    finally:
        stop(proc)


def test_unreadableExits(tmp_path: Path) -> None:
    """
    A configuration that cannot be read at all: exit status 1 and the
    reason on standard error.
    """
    missing = tmp_path / "missing.conf"
    proc = twistd("-n", "--pidfile=", "twinetd", "-c", str(missing))
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1, out
    assert (
        f"twinetd: {missing}: cannot read {missing}: No such file or "
        "directory\n".encode()
    ) in out
    assert b"twinetd: cannot read the configuration. Exiting...\n" in out


def test_problemsBeforeBackground(tmp_path: Path) -> None:
    """
    Started in the background (no C{-n}), the daemon prints every problem
    to standard error before it leaves the terminal, and serves the rest.
    """
    port = freePort()
    folder = tmp_path / "xinetd.d"
    folder.mkdir()
    (folder / "good").write_text(cat("good", port))
    (folder / "slow").write_text(cat("slow", freePort(), " only_form = 1.2.3.4\n"))
    pidfile = tmp_path / "twistd.pid"
    proc = subprocess.run(
        [*TWISTD, "--pidfile", str(pidfile), "-l", str(tmp_path / "twistd.log"),
         "twinetd", "-c", str(folder)],
        env=environment(), capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + DEADLINE
    while not pidfile.exists():
        assert time.monotonic() < deadline, proc
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    try:
        assert proc.returncode == 0, proc
        assert proc.stderr.splitlines() == [
            f"twinetd: {folder}/slow:10: slow: unknown attribute only_form (did "
            "you mean only_from?)".encode(),
            b"twinetd: 1 service loaded, 1 skipped, 0 disabled, 1 error, 0 warnings",
        ]
        with connect(port) as sock:
            sock.sendall(b"bg\n")
            sock.shutdown(socket.SHUT_WR)
            assert readToEnd(sock) == b"bg\n"
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + DEADLINE
        while pidfile.exists():
            assert time.monotonic() < deadline, "the daemon did not stop"
            time.sleep(0.05)
