"""
The real daemon: C{twistd -n twinetd} as a subprocess, driven by a client
socket, as an administrator would use it.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import fixedPort
from tests.processes import childStates

ROOT = Path(__file__).resolve().parents[2]
ETC = ROOT / "etc"
DEADLINE = 20.0
# twistd for this interpreter (`python -m twisted` is `twist`, which has no -n).
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def freePort() -> int:
    # Not an ephemeral port: a closed one must refuse connections (see
    # fixedPort).
    return fixedPort()


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    return env


def twistd(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*TWISTD, *args],
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kwargs,  # type: ignore[call-overload]
    )


def connect(port: int) -> socket.socket:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def readUntil(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    deadline = time.monotonic() + DEADLINE
    while not data.endswith(marker):
        assert time.monotonic() < deadline, data
        chunk = sock.recv(4096)
        assert chunk, f"EOF before {marker!r}; got {data!r}"
        data += chunk
    return data


def readToEnd(sock: socket.socket) -> bytes:
    data = b""
    for _ in range(10_000):
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    raise AssertionError("no EOF")


@pytest.fixture
def configDir(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """
    A copy of etc/ with the stamp service moved to a free port on loopback.
    """
    target = tmp_path / "etc"
    shutil.copytree(ETC, target)
    port = freePort()
    for name in ("enter", "pyserv", "prompt", "fromfd", "fromfdpeer", "stamp-tls"):
        (target / name).unlink()
    stamp = target / "stamp"
    text = stamp.read_text().replace("51423", str(port))
    text = text.replace("wait\t\t= no", "wait\t\t= no\n\tbind\t\t= 127.0.0.1")
    stamp.write_text(text)
    yield target, port


def serve(folder: Path, log: Path, *options: str) -> subprocess.Popen[bytes]:
    """
    C{twistd -n twinetd OPTIONS -c FOLDER}, logging to C{log}.
    """
    return twistd(
        "-n", "--pidfile=", "-l", str(log), "twinetd", *options, "-c", str(folder)
    )


@pytest.fixture
def daemon(
    configDir: tuple[Path, int], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    folder, port = configDir
    proc = serve(folder, tmp_path / "twistd.log", "--kill-delay", "1")
    try:
        yield proc, port
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """
    SIGTERM the daemon (SIGKILL if it lingers) and wait for it.
    """
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(DEADLINE)
    assert proc.stdout is not None
    proc.stdout.close()


STAMPED = re.compile(rb"\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] hello world!\n> $")


def test_seedStampSession(daemon: tuple[subprocess.Popen[bytes], int]) -> None:
    """
    The seed tutorial's telnet session against etc/stamp: a prompt, each line
    echoed with a timestamp, an empty line closes the connection.
    """
    proc, port = daemon
    with connect(port) as sock:
        assert readUntil(sock, b"> ") == b"Please enter a string:\n> "
        sock.sendall(b"hello world!\r\n")
        assert STAMPED.match(readUntil(sock, b"> "))
        sock.sendall(b"\r\n")
        assert readToEnd(sock) == b""
    assert proc.poll() is None, "the daemon must keep running"


def test_twoClientsAtOnce(daemon: tuple[subprocess.Popen[bytes], int]) -> None:
    """
    Each connection gets its own child: two clients are served concurrently.
    """
    _, port = daemon
    with connect(port) as one, connect(port) as two:
        assert readUntil(one, b"> ").startswith(b"Please")
        assert readUntil(two, b"> ").startswith(b"Please")
        two.sendall(b"second\n")
        one.sendall(b"first\n")
        assert b"] first\n" in readUntil(one, b"> ")
        assert b"] second\n" in readUntil(two, b"> ")


def test_spawnerProcess(configDir: tuple[Path, int], tmp_path: Path) -> None:
    """
    With C{--spawner-process}, the daemon's children are started by its
    spawner process (the daemon's only child while a client is served),
    and stopping the daemon ends the spawner process too.
    """
    folder, port = configDir
    proc = serve(folder, tmp_path / "twistd.log", "--spawner-process")
    try:
        with connect(port) as sock:
            assert readUntil(sock, b"> ") == b"Please enter a string:\n> "
            [spawner] = childStates(proc.pid)
            stamps = childStates(spawner)
            assert len(stamps) == 1
            sock.sendall(b"hello world!\r\n")
            assert STAMPED.match(readUntil(sock, b"> "))
            sock.sendall(b"\r\n")
            assert readToEnd(sock) == b""
    finally:
        stop(proc)
    assert not Path(f"/proc/{spawner}").exists()
    log = (tmp_path / "twistd.log").read_text()
    [stampPid] = stamps
    assert f"EXIT: stamp status=0 pid={stampPid} " in log


def test_pluginListed() -> None:
    """
    After installation twistd lists the plugin, and its options are
    documented.
    """
    out = subprocess.run(
        [*TWISTD, "--help"],
        env=environment(),
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    ).stdout
    assert re.search(rb"^\s+twinetd\s", out, re.M), out
    out = subprocess.run(
        [*TWISTD, "twinetd", "--help"],
        env=environment(),
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    ).stdout
    for option in (b"--config", b"--check", b"--kill-delay"):
        assert option in out


def runCheck(path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*TWISTD, "twinetd", "--check", "-c", str(path)],
        env=environment(),
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_checkClean() -> None:
    """
    C{--check} on the shipped etc/ finds no error and exits 0.
    """
    result = runCheck(ETC)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rb"^7 services loaded, 0 skipped", result.stdout, re.M), (
        result.stdout
    )


def test_checkErrors(tmp_path: Path) -> None:
    """
    C{--check} prints each problem as file:line: service: message and exits 1
    when there is an error.
    """
    broken = tmp_path / "broken"
    broken.write_text(
        "service broken\n{\n\tsocket_type = stream\n\twait = maybe\n"
        "\tuser = -\n\tserver = /bin/cat\n\ttype = UNLISTED\n\tport = 40000\n}\n"
    )
    result = runCheck(broken)
    assert result.returncode == 1, result.stdout
    assert re.search(rb"^.*broken:4: broken: .*wait", result.stdout, re.M), (
        result.stdout
    )
    assert b"0 services loaded, 1 skipped" in result.stdout


def test_sighupReloads(
    daemon: tuple[subprocess.Popen[bytes], int], configDir: tuple[Path, int]
) -> None:
    """
    SIGHUP reads the configuration again: a removed service stops
    listening, an added one serves.
    """
    proc, oldPort = daemon
    folder, _ = configDir
    with connect(oldPort) as sock:
        assert readUntil(sock, b"> ").startswith(b"Please")
    newPort = freePort()
    text = (ETC / "enter").read_text().replace("51424", str(newPort))
    (folder / "enter").write_text(
        text.replace("\twait", "\tbind\t\t= 127.0.0.1\n\twait")
    )
    (folder / "stamp").unlink()
    proc.send_signal(signal.SIGHUP)
    with connect(newPort) as sock:
        sock.sendall(b"abc\n")
        assert readToEnd(sock).endswith(b"You enterd 3 characters\n")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", oldPort), timeout=DEADLINE)
    assert proc.poll() is None


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGHUP])
def test_logRotation(tmp_path: Path, signum: int) -> None:
    """
    After the log file is moved away, SIGUSR1 (twistd's log rotation) and
    SIGHUP reopen it: the next lines go to a new file at the same path.
    """
    port = freePort()
    log = tmp_path / "service.log"
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "chars").write_text(
        (ETC / "pyserv")
        .read_text()
        .replace("51425", str(port))
        .replace("programs.d/", str(ETC / "programs.d") + "/")
        .replace(
            "\twait",
            f"\tbind\t\t= 127.0.0.1\n\tlog_type\t= FILE {log}\n"
            "\tlog_on_success\t= PID\n\twait",
        )
    )
    proc = twistd(
        "-n", "--pidfile=", "-l", str(tmp_path / "twistd.log"),
        "twinetd", "-c", str(tmp_path / "etc"),
    )  # fmt: skip
    try:
        for name in ("first", "second"):
            with connect(port) as sock:
                sock.sendall(b"abc\n")
                readToEnd(sock)
            deadline = time.monotonic() + DEADLINE
            while not (log.exists() and b"START" in log.read_bytes()):
                assert time.monotonic() < deadline, name
                time.sleep(0.05)
            if name == "first":
                log.rename(tmp_path / "service.log.1")
                proc.send_signal(signum)
                # Reopening creates the file again.
                deadline = time.monotonic() + DEADLINE
                while not log.exists():
                    assert time.monotonic() < deadline, "not reopened"
                    time.sleep(0.05)
        assert b"START: pyserv pid=" in (tmp_path / "service.log.1").read_bytes()
        assert b"START: pyserv" in log.read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(DEADLINE)
        assert proc.stdout is not None
        proc.stdout.close()


def test_installedPlugin(tmp_path: Path) -> None:
    """
    After a normal install (as dev.py and CI do), twistd finds the plugin
    without the checkout on PYTHONPATH.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run: Any = functools.partial(
        subprocess.run,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    found = run([sys.executable, "-c", "import twinetd; print(twinetd.__file__)"])
    if found.returncode != 0 or str(ROOT / "twinetd") in found.stdout.decode():
        pytest.skip("twinetd is not installed in this interpreter (pip install .)")
    out = run([*TWISTD, "--help"]).stdout
    assert re.search(rb"^\s+twinetd\s", out, re.M), out
