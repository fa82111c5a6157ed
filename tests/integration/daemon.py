"""
A real C{twistd -n twinetd} subprocess on a configuration folder the test
writes, measured from outside through /proc, as an administrator (or an
attacker) would see it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import CHILDREN, fixedPort
from tests.processes import childStates

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 20.0
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    return env


def child(name: str, *args: str) -> str:
    """
    The C{server}/C{server_args} lines running C{children/NAME.py}.
    """
    argv = " ".join([str(CHILDREN / f"{name}.py"), *args])
    return f"\tserver = {sys.executable}\n\tserver_args = {argv}\n"


def service(name: str, port: int, body: str, socketType: str = "stream") -> str:
    protocol = "tcp" if socketType == "stream" else "udp"
    return (
        f"service {name}\n{{\n\ttype = UNLISTED\n\tport = {port}\n"
        f"\tsocket_type = {socketType}\n\tprotocol = {protocol}\n"
        f"\twait = no\n\tuser = -\n\tbind = 127.0.0.1\n\tcps = 100000 1\n"
        f"{body}}}\n"
    )


def until(
    condition: Callable[[], object],
    seconds: float = DEADLINE,
    state: Callable[[], object] | None = None,
) -> None:
    """
    Wait until C{condition()} holds, at most C{seconds}; C{state()} says
    what was seen when it did not.
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            seen = "" if state is None else f": {state()}"
            raise AssertionError(f"condition not met in {seconds} seconds{seen}")
        time.sleep(0.02)


class Daemon:
    """
    One C{twistd -n twinetd} on a folder of service files.

    @ivar folder: the configuration folder.
    @ivar proc: the twistd process, once started.
    """

    def __init__(self, folder: Path, killDelay: float = 1.0) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.killDelay = killDelay
        self.log = folder.parent / "twistd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write(self, name: str, text: str) -> None:
        # Written whole and renamed: a SIGHUP never reads half a file.
        temporary = self.folder.parent / f".{name}.new"
        temporary.write_text(text)
        temporary.rename(self.folder / name)

    def start(self, *ports: int, extra: tuple[str, ...] = ()) -> None:
        """
        Start the daemon and wait until each of C{ports} accepts.
        """
        argv = [*TWISTD, "-n", "--pidfile=", "-l", str(self.log), "twinetd"]
        argv += ["--kill-delay", str(self.killDelay), *extra, "-c", str(self.folder)]
        self.proc = subprocess.Popen(
            argv,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports:
            self.waitListening(port)

    def waitListening(self, port: int) -> None:
        """
        Wait until a socket listens on C{port}, without connecting (a
        connection would start a child).
        """
        deadline = time.monotonic() + DEADLINE
        while not listening(port):
            assert self.proc is not None and self.proc.poll() is None, self.logText()
            assert time.monotonic() < deadline, self.logText()
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(DEADLINE)
        for pid in self.children():
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)

    def logText(self) -> str:
        try:
            return self.log.read_text()[-4000:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def children(self) -> dict[int, str]:
        """
        The programs the daemon runs, pid to state (C{Z} for a zombie): its
        child processes, and those of its spawner process (started by
        default while more than 4 run) instead of that process itself.
        """
        found = {}
        for pid, (_, state) in childStates(self.pid).items():
            if isSpawnerProcess(pid):
                found.update({child: st for child, (_, st) in childStates(pid).items()})
            else:
                found[pid] = state
        return found

    def descriptors(self) -> int:
        """
        The daemon's open descriptors, less the two (its socket and its
        standard error's pipe) it keeps for each spawner process it runs:
        one starts only once more than 4 programs run, and stays.
        """
        spawners = sum(map(isSpawnerProcess, childStates(self.pid)))
        return len(os.listdir(f"/proc/{self.pid}/fd")) - SPAWNER_DESCRIPTORS * spawners

    def fds(self) -> dict[int, str]:
        """
        The daemon's descriptors and what each is (C{socket:[inode]}, ...).
        """
        found = {}
        for name in os.listdir(f"/proc/{self.pid}/fd"):
            with contextlib.suppress(OSError):
                found[int(name)] = os.readlink(f"/proc/{self.pid}/fd/{name}")
        return found

    def rss(self) -> int:
        """
        The daemon's resident set, in bytes.
        """
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def settle(self, descriptors: int | None = None) -> None:
        """
        Wait until the daemon has no child left (none running, none
        unreaped) and, if given, holds C{descriptors} descriptors again.
        """
        until(
            lambda: (
                not self.children()
                and (descriptors is None or self.descriptors() <= descriptors)
            ),
            state=lambda: (
                f"children {self.children()}, descriptors {self.fds()} "
                f"(wanted {descriptors})"
            ),
        )


#: The descriptors the daemon keeps for its spawner process.
SPAWNER_DESCRIPTORS = 2


def isSpawnerProcess(pid: int) -> bool:
    """
    Whether process C{pid} is a twinetd spawner process.
    """
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"twinetd.spawnerprocess" in argv


def listening(port: int) -> bool:
    """
    Whether a TCP socket listens on C{port} (/proc/net/tcp and tcp6).
    """
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def freePort() -> int:
    return fixedPort()


def outQueue(sock: socket.socket) -> int:
    """
    Bytes C{sock} sent that its peer's kernel has not acknowledged yet.
    """
    queued = fcntl.ioctl(sock, termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", queued)[0])


def receiveQueue(localPort: int, remotePort: int) -> int | None:
    """
    Bytes the daemon's socket (local C{localPort}, peer C{remotePort}, on
    127.0.0.1) received that the daemon has not read, from /proc/net/tcp.
    """
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if (
            int(local.split(":")[1], 16) == localPort
            and int(remote.split(":")[1], 16) == remotePort
        ):
            return int(fields[4].split(":")[1], 16)
    return None


def reset(sock: socket.socket) -> None:
    """
    Close C{sock} with a reset (RST), as a client that aborts does.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def readExactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    sock.settimeout(DEADLINE)
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"end of file after {data!r}"
        data += chunk
    return data
