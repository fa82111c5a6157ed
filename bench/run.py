#!/usr/bin/env python3
"""
Benchmark twinetd against xinetd, socat and tcpserver on loopback.

Measures, for every server that is available:

  - connections per second with a tiny /bin/sh child that reads one line,
    echoes it and exits (concurrency 1 and 16);
  - bridged throughput of a large payload through /bin/cat (the client sends
    and reads back at the same time);
  - the same connection rate while many other connections to the same server
    are held open (each by a waiting /bin/sh child), so that a spawn cost that
    grows with the daemon's open descriptors (or children) shows;
  - UDP request rates: the internal dgram echo service (xinetd and twinetd)
    and a dgram wait = no service spawning /bin/cat per datagram (twinetd
    only: xinetd 2.3.15.3 busy-loops on those).

twinetd runs twice: bridging (the default) and in handoff mode
(twistd twinetd --handoff, the socket given to the child as xinetd and
tcpserver do), each with the daemon's default spawner (its own starts
while at most 4 programs run, the spawner process's above);
twinetd-spawner is the bridging daemon with --spawner-process
(twinetd-handoff-spawner, on request: both); twinetd-direct and
twinetd-handoff-direct (on request) with --no-spawner-process;
twinetd-busy (on request) bridges with --spawner-process-above 4,
twinetd-busyN with --spawner-process-above N, twinetd-handoff-busy[N]
hands off with it.

Standard library only. Run with any Python 3.9+; twinetd itself is started
with --twinetd-python (default: the checkout's .venv) and PYTHONPATH set
to the repository root. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
#: The checkout's virtual environment (`python3 dev.py test` makes it).
DEFAULT_PYTHON = Path(REPO) / ".venv" / "bin" / "python"
HOST = "127.0.0.1"
# Below the kernel's ephemeral range (32768-60999 here) and inside the
# range this project reserves for manual experiments.
BASE_PORT = 31000

ECHO_CHILD = '#!/bin/sh\nread line\necho "$line"\n'
#: The native helpers (children and the request/response client).
BENCHTOOL_C = os.path.join(HERE, "benchtool.c")
HOLD_CHILD = "#!/bin/sh\necho ready\nread line\n"

SERVERS = (
    "xinetd",
    "twinetd",
    "twinetd-handoff",
    "twinetd-spawner",
    "socat",
    "tcpserver",
)
#: Servers measured only when --servers names them.
EXTRA_SERVERS = (
    "twinetd-handoff-spawner",
    "twinetd-busy",
    "twinetd-direct",
    "twinetd-handoff-direct",
)
#: twinetd-busy's --spawner-process-above.
BUSY_ABOVE = 4
#: twinetd from another checkout (--base-repo), for before/after figures.
BASE_SERVERS = ("base", "base-handoff")
STREAM_SERVICES = ("echo", "cat", "hold")
#: Port offsets of the datagram services (after the three stream ones).
UDP_SERVICES = {"udpecho": 3, "udpspawn": 4}
#: Why a server has no number for a datagram service (shown in the table).
XINETD_DGRAM_NOWAIT = "n/a: xinetd 2.3.15.3 busy-loops on dgram wait = no"


class SetupError(Exception):
    """A server could not be started; it is skipped with this note."""


# ---------------------------------------------------------------- servers


class ServerProcesses:
    """
    A server's processes, each started in its own session (so L{stop}
    signals its whole process group) with its output in one log file.
    """

    def __init__(
        self,
        name: str,
        workdir: str | os.PathLike[str],
        logPath: str | os.PathLike[str],
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logPath = logPath
        self._log = open(logPath, "ab")  # noqa: SIM115 (closed in stop)

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.procs.append(
            subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )
        )

    def stop(self) -> None:
        """
        SIGTERM to every process group, SIGKILL to those still there 5 s
        later; the log is closed.
        """
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs = []
        self._log.close()


class Server(ServerProcesses):
    """
    One server under test: its processes and its ports.

    @cvar udpServices: the datagram services it serves (keys of
        L{UDP_SERVICES}); the others are reported with C{udpMissing}.
    @ivar ports: stream service name (C{echo}, C{cat}, C{hold}) to port.
    @ivar udpPorts: datagram service name to port.
    """

    udpServices: tuple[str, ...] = ()
    udpMissing = "n/a"

    def __init__(self, name: str, workdir: str, basePort: int) -> None:
        super().__init__(name, workdir, os.path.join(workdir, f"{name}.log"))
        self.ports = {svc: basePort + i for i, svc in enumerate(STREAM_SERVICES)}
        self.udpPorts = {svc: basePort + UDP_SERVICES[svc] for svc in self.udpServices}

    def start(self, children: dict[str, str]) -> None:
        raise NotImplementedError

    def mainPid(self) -> int | None:
        return self.procs[0].pid if self.procs else None

    def waitReady(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.ports.values())
        while pending and time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise SetupError(
                        f"exited with status {proc.returncode} at start-up; "
                        f"see {self.logPath}: {self.logTail()}"
                    )
            for port in list(pending):
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    pending.discard(port)
                except OSError:
                    pass
            if pending:
                time.sleep(0.1)
        if pending:
            raise SetupError(
                f"ports {sorted(pending)} not listening after {timeout:.0f}s; "
                f"see {self.logPath}: {self.logTail()}"
            )
        # The readiness probes spawned children (echo waits for a line that
        # never came, hold waits for EOF); give them a moment to finish.
        time.sleep(0.3)

    def logTail(self, lines: int = 3) -> str:
        try:
            with open(self.logPath, "rb") as f:
                text = f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def helperPids(self) -> list[int]:
        """
        Processes of the server besides those it was started as (none).
        """
        return []

    def daemonCpu(self) -> float | None:
        """
        CPU seconds used so far by the server's own processes and its
        helpers (every thread; children that exec'd are not counted), from
        schedstat.
        """
        total = 0
        for proc in self.procs:
            try:
                total += _cpuNanoseconds(proc.pid)
            except OSError:
                return None
        for pid in self.helperPids():
            with contextlib.suppress(OSError):
                total += _cpuNanoseconds(pid)
        return total / 1e9

    def daemonRss(self) -> float | None:
        """
        Resident memory of the main process and its helpers in MB (VmRSS).
        """
        main = _rssMb(self.mainPid())
        if main is None:
            return None
        return main + sum(filter(None, map(_rssMb, self.helperPids())))

    def daemonPss(self) -> float | None:
        """
        Proportional memory of the main process and its helpers in MB
        (C{Pss}: each page shared with other processes counted in part, so
        that a helper's libraries, shared with its daemon, count once).
        """
        main = _pssMb(self.mainPid())
        if main is None:
            return None
        return main + sum(filter(None, map(_pssMb, self.helperPids())))

    def daemonFds(self) -> int | None:
        """
        Open descriptors of the main daemon process (None if unknown).
        """
        pid = self.mainPid()
        if pid is None:
            return None
        try:
            return len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return None


def _cpuNanoseconds(pid: int) -> int:
    """
    CPU time of every thread of process C{pid} so far (schedstat).

    @raise OSError: no such process.
    """
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def _procMb(path: str, field: str) -> float | None:
    """
    The C{field} line (in kB) of the C{/proc} file C{path} in MB, if the
    process runs.
    """
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _rssMb(pid: int | None) -> float | None:
    """
    C{VmRSS} of process C{pid} in MB, if it runs.
    """
    return None if pid is None else _procMb(f"/proc/{pid}/status", "VmRSS:")


def _pssMb(pid: int | None) -> float | None:
    """
    C{Pss} of process C{pid} in MB (C{smaps_rollup}), if it runs.
    """
    return None if pid is None else _procMb(f"/proc/{pid}/smaps_rollup", "Pss:")


def xinetdConfig(
    ports: dict[str, int],
    children: dict[str, str],
    udpPorts: dict[str, int] | None = None,
    user: str | None = None,
) -> str:
    """
    One xinetd-language config with the stream services and the given
    datagram services (also read by twinetd). cps is raised from xinetd's
    default of 50/s, which would otherwise shut the service for 10 s in the
    middle of a run.

    @param user: the C{user} line; by default C{root} when running as root
        (xinetd requires one then) and none otherwise.
    """
    if user is None and os.geteuid() == 0:
        user = "root"
    userLine = f"\tuser = {user}\n" if user else ""
    common = f"\tbind = {HOST}\n{userLine}\tinstances = UNLIMITED\n\tcps = 100000 1\n"
    out = []
    for svc, port in ports.items():
        out.append(
            f"service bench-{svc}\n{{\n"
            "\ttype = UNLISTED\n"
            "\tsocket_type = stream\n"
            "\tprotocol = tcp\n"
            "\twait = no\n"
            f"\tport = {port}\n"
            f"\tserver = {children[svc]}\n"
            f"{common}}}\n"
        )
    udpPorts = udpPorts or {}
    if "udpecho" in udpPorts:
        # xinetd's built-in echo answers in the daemon, as twinetd's does.
        out.append(
            "service echo\n{\n"
            "\tid = bench-udpecho\n"
            "\ttype = INTERNAL UNLISTED\n"
            "\tsocket_type = dgram\n"
            "\tprotocol = udp\n"
            "\twait = yes\n"
            f"\tport = {udpPorts['udpecho']}\n"
            f"{common}}}\n"
        )
    if "udpspawn" in udpPorts:
        # One /bin/cat per datagram: the datagram is its stdin, its stdout
        # the reply (twinetd's dgram wait = no bridge).
        out.append(
            "service bench-udpspawn\n{\n"
            "\ttype = UNLISTED\n"
            "\tsocket_type = dgram\n"
            "\tprotocol = udp\n"
            "\twait = no\n"
            f"\tport = {udpPorts['udpspawn']}\n"
            f"\tserver = {children['cat']}\n"
            f"{common}}}\n"
        )
    return "\n".join(out)


class Xinetd(Server):
    udpServices: tuple[str, ...] = ("udpecho",)
    udpMissing = XINETD_DGRAM_NOWAIT

    def start(self, children: dict[str, str]) -> None:
        exe = shutil.which("xinetd") or (
            "/usr/sbin/xinetd" if os.path.exists("/usr/sbin/xinetd") else None
        )
        if exe is None:
            raise SetupError("xinetd not installed")
        conf = os.path.join(self.workdir, "xinetd.conf")
        with open(conf, "w") as f:
            f.write(xinetdConfig(self.ports, children, self.udpPorts))
        pid = os.path.join(self.workdir, "xinetd.pid")
        self.spawn([exe, "-dontfork", "-f", conf, "-pidfile", pid])


class Twinetd(Server):
    """
    twinetd bridging every stream (or, with C{handoff}, giving the socket
    to the child: C{--handoff}); with C{spawnerProcess}, children started
    by its spawner process (C{--spawner-process}).
    """

    udpServices: tuple[str, ...] = ("udpecho", "udpspawn")

    def __init__(
        self,
        name: str,
        workdir: str,
        basePort: int,
        python: str,
        user: str,
        handoff: bool = False,
        repo: str = REPO,
        spawnerProcess: bool = False,
        spawnerAbove: int | None = None,
        direct: bool = False,
    ) -> None:
        if handoff:
            # The datagram services do not depend on the stream mode: they
            # are measured once, in the bridging column.
            self.udpServices = ()
            self.udpMissing = "(as twinetd)"
        super().__init__(name, workdir, basePort)
        self.python = python
        self.user = user
        self.handoff = handoff
        self.repo = repo
        self.spawnerProcess = spawnerProcess
        self.spawnerAbove = spawnerAbove
        self.direct = direct

    def helperPids(self) -> list[int]:
        """
        The daemon's spawner process, while it runs (the daemon starts it
        at its first start from it).
        """
        pid = self.mainPid()
        if pid is None:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid != pid:
                    continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            if b"twinetd.spawnerprocess" in argv:
                found.append(int(entry))
        return found

    def start(self, children: dict[str, str]) -> None:
        if not os.path.exists(os.path.join(self.repo, "twinetd", "tap.py")):
            raise SetupError("twinetd/tap.py not found (daemon not built yet)")
        twistd = os.path.join(os.path.dirname(self.python), "twistd")
        if not os.path.exists(twistd):
            raise SetupError(f"{twistd} not found")
        confdir = os.path.join(self.workdir, f"{self.name}.d")
        os.makedirs(confdir, exist_ok=True)
        with open(os.path.join(confdir, "bench"), "w") as f:
            f.write(xinetdConfig(self.ports, children, self.udpPorts, self.user))
        env = dict(os.environ)
        env["PYTHONPATH"] = self.repo + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        argv = [twistd, "-n", "--pidfile", "", "-l", "-", "twinetd"]
        argv += ["--kill-delay", "2", "-c", confdir]
        if self.handoff:
            argv.append("--handoff")
        if self.spawnerProcess:
            argv.append("--spawner-process")
        if self.spawnerAbove is not None:
            argv += ["--spawner-process-above", str(self.spawnerAbove)]
        if self.direct:
            argv.append("--no-spawner-process")
        self.spawn(argv, env=env)


class Socat(Server):
    def start(self, children: dict[str, str]) -> None:
        exe = shutil.which("socat")
        if exe is None:
            raise SetupError("socat not installed")
        for svc, port in self.ports.items():
            self.spawn(
                [
                    exe,
                    f"TCP-LISTEN:{port},bind={HOST},fork,reuseaddr,backlog=1024",
                    f"EXEC:{children[svc]}",
                ]
            )


class Tcpserver(Server):
    def start(self, children: dict[str, str]) -> None:
        exe = shutil.which("tcpserver")
        if exe is None:
            raise SetupError("tcpserver (ucspi-tcp) not installed")
        for svc, port in self.ports.items():
            # -H -R -l 0: no DNS, no ident lookups; -c: tcpserver's default
            # limit of 40 children would cap the held-connections test.
            self.spawn(
                [
                    exe,
                    "-H",
                    "-R",
                    "-l",
                    "0",
                    "-c",
                    "5000",
                    "-b",
                    "1024",
                    HOST,
                    str(port),
                    children[svc],
                ]
            )


# ---------------------------------------------------------------- clients


async def echoOnce(port: int, timeout: float) -> float:
    """
    One full connection: connect, send a line, read until EOF.

    @return: the latency in seconds.
    @raise OSError, asyncio.TimeoutError, ValueError: on failure.
    """
    t0 = time.perf_counter()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(HOST, port), timeout
    )
    try:
        writer.write(b"hello\n")
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    if data != b"hello\n":
        raise ValueError(f"unexpected reply {data[:40]!r}")
    return time.perf_counter() - t0


async def connectionRate(
    port: int, concurrency: int, duration: float, maxCount: int, timeout: float
) -> dict[str, Any]:
    """
    Run C{concurrency} clients back to back for C{duration} seconds (or
    C{maxCount} connections, whichever comes first).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration
    started = 0
    latencies: list[float] = []
    errors: list[str] = []

    async def worker() -> None:
        nonlocal started
        while loop.time() < deadline and started < maxCount and len(errors) < 50:
            started += 1
            try:
                latencies.append(await echoOnce(port, timeout))
            except (OSError, asyncio.TimeoutError, ValueError) as e:
                errors.append(f"{type(e).__name__}: {e}")

    t0 = loop.time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = loop.time() - t0
    lat = sorted(latencies)
    return {
        "concurrency": concurrency,
        "completed": len(lat),
        "errors": len(errors),
        "firstErrors": sorted(set(errors))[:3],
        "seconds": round(elapsed, 3),
        "perSecond": round(len(lat) / elapsed, 1) if elapsed > 0 else 0.0,
        "latencyMedianMs": round(statistics.median(lat) * 1000, 2) if lat else None,
        "latencyP99Ms": round(lat[int(len(lat) * 0.99)] * 1000, 2) if lat else None,
    }


def throughput(
    port: int, nbytes: int, timeout: float, connections: int = 1
) -> dict[str, Any]:
    """
    Send C{nbytes} through the cat service on each of C{connections}
    connections at once, reading the echo back concurrently; MB/s (all
    connections together) until the last byte came back.
    """
    results: list[Any] = [None] * connections
    t0 = time.perf_counter()

    def one(i: int) -> None:
        try:
            results[i] = _throughputOne(port, nbytes, timeout)
        except BaseException as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    elapsed = time.perf_counter() - t0
    for r in results:
        if not isinstance(r, float):
            raise OSError(f"a connection failed: {r!r}")
    total = nbytes * connections
    return {
        "bytes": total,
        "connections": connections,
        "seconds": round(elapsed, 3),
        "mbPerSecond": round(total / 1e6 / elapsed, 1),
    }


def _throughputOne(port: int, nbytes: int, timeout: float) -> float:
    chunk = b"x" * (256 * 1024)
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.settimeout(timeout)
    sendError: list[BaseException] = []

    def sender() -> None:
        try:
            left = nbytes
            while left > 0:
                n = min(left, len(chunk))
                sock.sendall(chunk[:n])
                left -= n
            sock.shutdown(socket.SHUT_WR)
        except BaseException as e:  # reported by the main thread
            sendError.append(e)

    buf = bytearray(1024 * 1024)
    received = 0
    t0 = time.perf_counter()
    deadline = t0 + timeout
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        while received < nbytes and time.perf_counter() < deadline:
            n = sock.recv_into(buf)
            if n == 0:
                break
            received += n
        elapsed = time.perf_counter() - t0
    finally:
        # The sender shuts its side down once done: not on a closed socket.
        thread.join(timeout=timeout)
        sock.close()
    if sendError:
        raise OSError(f"sender failed: {sendError[0]!r}")
    if received != nbytes:
        raise OSError(f"received {received} of {nbytes} bytes")
    return elapsed


def requestResponse(
    tool: str, port: int, connections: int, seconds: float, size: int
) -> dict[str, Any]:
    """
    The native client: C{connections} connections to the cat service, each
    sending C{size} bytes and reading them back, in a loop.
    """
    done = subprocess.run(
        [tool, "rr", str(port), str(connections), str(seconds), str(size)],
        capture_output=True,
        timeout=seconds + 30,
        check=True,
    )
    requests, errors = (int(w) for w in done.stdout.split())
    return {
        "connections": connections,
        "size": size,
        "requests": requests,
        "errors": errors,
        "perSecond": round(requests / seconds, 1),
    }


def udpRate(
    port: int, concurrency: int, duration: float, maxCount: int, timeout: float
) -> dict[str, Any]:
    """
    C{concurrency} clients (threads), each sending one datagram and waiting
    for its reply before the next, for C{duration} seconds or C{maxCount}
    requests in all. Every receive has C{timeout}; a lost datagram counts as
    an error (at most 50, then the client stops). Each request carries a
    sequence number so a late reply is never counted for a later request.
    """
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    started = 0
    deadline = time.perf_counter() + duration

    def client(index: int) -> None:
        nonlocal started
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.connect((HOST, port))
            sock.settimeout(timeout)
            seq = 0
            while time.perf_counter() < deadline:
                with lock:
                    if started >= maxCount or len(errors) >= 50:
                        return
                    started += 1
                seq += 1
                payload = f"bench {index} {seq}\n".encode()
                t0 = time.perf_counter()
                try:
                    sock.send(payload)
                    # Skip late replies to earlier (timed out) requests.
                    for _ in range(64):
                        reply = sock.recv(65536)
                        if reply == payload:
                            break
                    else:
                        raise ValueError("no matching reply in 64 datagrams")
                except (OSError, ValueError) as e:
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t0)
        finally:
            sock.close()

    t0 = time.perf_counter()
    threads = [
        threading.Thread(target=client, args=(i,), daemon=True)
        for i in range(concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        # A client ends by the deadline plus at most one receive timeout
        # per remaining matching attempt; bound the join anyway.
        t.join(timeout=duration + 2 * timeout + 5)
    elapsed = time.perf_counter() - t0
    if any(t.is_alive() for t in threads):
        errors.append("client thread still running")
    lat = sorted(latencies)
    return {
        "concurrency": concurrency,
        "completed": len(lat),
        "errors": len(errors),
        "firstErrors": sorted(set(errors))[:3],
        "seconds": round(elapsed, 3),
        "perSecond": round(len(lat) / elapsed, 1) if elapsed > 0 else 0.0,
        "latencyMedianMs": round(statistics.median(lat) * 1000, 2) if lat else None,
        "latencyP99Ms": round(lat[int(len(lat) * 0.99)] * 1000, 2) if lat else None,
    }


async def holdConnections(
    port: int, count: int, timeout: float
) -> list[asyncio.StreamWriter]:
    """
    Open C{count} connections to the hold service and wait until each
    child has said C{ready}. Connections are opened a few at a time so the
    listen backlog never overflows.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    writers: list[asyncio.StreamWriter] = []
    sem = asyncio.Semaphore(16)

    async def one() -> None:
        async with sem:
            left = max(0.1, deadline - loop.time())
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, port), left
            )
            writers.append(writer)
            line = await asyncio.wait_for(
                reader.readline(), max(0.1, deadline - loop.time())
            )
            if line != b"ready\n":
                raise ValueError(f"hold child said {line!r}")

    results = await asyncio.gather(
        *(one() for _ in range(count)), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await releaseConnections(writers)
        raise OSError(
            f"{len(failures)} of {count} held connections failed: {failures[0]!r}"
        )
    return writers


async def releaseConnections(writers: list[asyncio.StreamWriter]) -> None:
    for w in writers:
        w.close()
    for w in writers:
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(w.wait_closed(), 5)


# ---------------------------------------------------------------- driver


def buildTool(workdir: str, log: Callable[[str], None]) -> str | None:
    """
    Compile L{BENCHTOOL_C} (static when possible); C{None} without a C
    compiler (the /bin/sh children are used then, and no request/response
    figure is measured).
    """
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        log("no C compiler: /bin/sh children, no request/response client")
        return None
    out = os.path.join(workdir, "benchtool")
    for static in (["-static"], []):
        done = subprocess.run(
            [cc, "-O2", *static, "-pthread", "-o", out, BENCHTOOL_C],
            capture_output=True,
        )
        if done.returncode == 0:
            return out
    log(f"cannot build {BENCHTOOL_C}: {done.stderr.decode(errors='replace')}")
    return None


def childStart(path: str, count: int) -> dict[str, float]:
    """
    What a start of the echo child costs this machine with no server in
    between: C{count} starts one after another (C{posix_spawn}, then
    C{waitpid}; standard input and output C{/dev/null}), in microseconds of
    wall time and of the children's CPU per start.

    Every server pays it for every connection.  In a virtual machine the C
    library's start-up alone (its CPU and cache detection, C{cpuid}
    instructions the hypervisor traps) can cost more than a server's own
    work per connection, and it moves with the host's load within minutes:
    measured just before each server's connection rates, it says whether
    they ran on the same machine.
    """
    null = os.open(os.devnull, os.O_RDWR)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        for _ in range(count):
            pid = os.posix_spawn(path, [path], {}, file_actions=actions)
            os.waitpid(pid, 0)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.close(null)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "starts": count,
        "wallUs": round(wall / count * 1e6, 1),
        "cpuUs": round(cpu / count * 1e6, 1),
    }


def profile(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "duration": 1.5,
            "maxCount": 3000,
            "bytes": 64 << 20,
            "held": 100,
            "timeout": 10.0,
            "udpDuration": 1.0,
            "udpMaxCount": 20000,
            "udpTimeout": 0.5,
            "childStarts": 50,
        }
    return {
        "duration": 5.0,
        "maxCount": 20000,
        "bytes": 256 << 20,
        "held": 500,
        "timeout": 30.0,
        "udpDuration": 4.0,
        "udpMaxCount": 100000,
        "udpTimeout": 0.5,
        "childStarts": 300,
    }


def benchServer(
    server: Server,
    prof: dict[str, Any],
    log: Callable[[str], None],
    tool: str | None = None,
    only: set[str] | None = None,
    echo: str | None = None,
) -> dict[str, Any]:
    """
    Every measurement of one server (those named in C{only}, if given).

    @param tool: the native helper (the request/response client), if built.
    @param echo: the echo child, started alone before the connection rates
        (L{childStart}).
    """
    res: dict[str, Any] = {}
    timeout = prof["timeout"]

    def step(key: str, fn: Callable[[], Any], before: set[str] | None = None) -> None:
        # before: the measurements this one goes with (it runs if one does).
        if only is not None and not ({key} | (before or set())) & only:
            return
        try:
            res[key] = fn()
        except Exception as e:  # one failed measurement must not stop the run
            res[key] = {"error": f"{type(e).__name__}: {e}"}
        log(f"  {key}: {res[key]}")

    # Warm-up (imports, page cache) before measuring.
    with contextlib.suppress(Exception):
        asyncio.run(connectionRate(server.ports["echo"], 1, 0.3, 20, timeout))

    def rate(c: int) -> dict[str, Any]:
        return asyncio.run(
            connectionRate(
                server.ports["echo"], c, prof["duration"], prof["maxCount"], timeout
            )
        )

    def measured(c: int) -> dict[str, Any]:
        # The server's own CPU per completed connection.
        before = server.daemonCpu()
        out = rate(c)
        after = server.daemonCpu()
        if before is not None and after is not None and out["completed"]:
            out["cpuPerConnectionUs"] = round(
                (after - before) / out["completed"] * 1e6, 1
            )
        return out

    step("rss_idle", lambda: {"mb": server.daemonRss(), "pssMb": server.daemonPss()})
    if echo is not None:
        step(
            "child_start",
            lambda: childStart(echo, prof["childStarts"]),
            before={"rate_c1", "rate_c16"},
        )
    step("rate_c1", lambda: measured(1))
    step("rate_c16", lambda: measured(16))
    step(
        "throughput",
        lambda: throughput(server.ports["cat"], prof["bytes"], max(timeout, 120)),
    )
    step(
        "throughput_c8",
        lambda: throughput(
            server.ports["cat"], prof["bytes"] // 2, max(timeout, 120), 8
        ),
    )
    if tool is not None:
        step(
            "rr_c16",
            lambda: requestResponse(
                tool, server.ports["cat"], 16, prof["duration"], 64
            ),
        )

    async def held() -> dict[str, Any]:
        fdsBefore = server.daemonFds()
        writers = await holdConnections(
            server.ports["hold"], prof["held"], max(timeout, 60)
        )
        try:
            fdsHeld = server.daemonFds()
            out: dict[str, Any] = {
                "held": len(writers),
                "daemonFdsIdle": fdsBefore,
                "daemonFdsHeld": fdsHeld,
                "rssHeldMb": server.daemonRss(),
                "pssHeldMb": server.daemonPss(),
            }
            for c in (1, 16):
                before = server.daemonCpu()
                out[f"c{c}"] = rated = await connectionRate(
                    server.ports["echo"], c, prof["duration"], prof["maxCount"], timeout
                )
                after = server.daemonCpu()
                if before is not None and after is not None and rated["completed"]:
                    rated["cpuPerConnectionUs"] = round(
                        (after - before) / rated["completed"] * 1e6, 1
                    )
            return out
        finally:
            await releaseConnections(writers)

    step("held", lambda: asyncio.run(held()))
    # Let the released hold children exit before the UDP runs.
    time.sleep(1.0)

    for svc in UDP_SERVICES:
        if svc not in server.udpPorts:
            for c in (1, 16):
                res[f"{svc}_c{c}"] = {"missing": server.udpMissing}
            continue
        port = server.udpPorts[svc]
        # Warm-up, which also waits (bounded) for the service to answer.
        with contextlib.suppress(Exception):
            udpRate(port, 1, 0.3, 20, prof["udpTimeout"])
        for c in (1, 16):
            step(
                f"{svc}_c{c}",
                lambda port=port, c=c: udpRate(  # type: ignore[misc]
                    port,
                    c,
                    prof["udpDuration"],
                    prof["udpMaxCount"],
                    prof["udpTimeout"],
                ),
            )
    return res


METRICS: list[tuple[str, str, Callable[[dict[str, Any]], float | None]]] = [
    ("conn/s  c=1", "rate_c1", lambda r: r.get("perSecond")),
    ("conn/s  c=16", "rate_c16", lambda r: r.get("perSecond")),
    ("cat MB/s", "throughput", lambda r: r.get("mbPerSecond")),
    ("cat MB/s, 8 conns", "throughput_c8", lambda r: r.get("mbPerSecond")),
    ("64 B req/s, 16 conns", "rr_c16", lambda r: r.get("perSecond")),
    ("daemon CPU us/conn c=16", "rate_c16", lambda r: r.get("cpuPerConnectionUs")),
    ("echo child alone, CPU us/start", "child_start", lambda r: r.get("cpuUs")),
    (
        "daemon CPU us/conn c=16, N held",
        "held",
        lambda r: (r.get("c16") or {}).get("cpuPerConnectionUs"),
    ),
    ("daemon RSS MB idle", "rss_idle", lambda r: r.get("mb")),
    ("daemon RSS MB, N held", "held", lambda r: r.get("rssHeldMb")),
    ("daemon PSS MB idle", "rss_idle", lambda r: r.get("pssMb")),
    ("daemon PSS MB, N held", "held", lambda r: r.get("pssHeldMb")),
    ("conn/s  c=1, N held", "held", lambda r: (r.get("c1") or {}).get("perSecond")),
    ("conn/s  c=16, N held", "held", lambda r: (r.get("c16") or {}).get("perSecond")),
    ("daemon fds, N held", "held", lambda r: r.get("daemonFdsHeld")),
    ("udp echo req/s  c=1", "udpecho_c1", lambda r: r.get("perSecond")),
    ("udp echo req/s  c=16", "udpecho_c16", lambda r: r.get("perSecond")),
    ("udp spawn req/s  c=1", "udpspawn_c1", lambda r: r.get("perSecond")),
    ("udp spawn req/s  c=16", "udpspawn_c16", lambda r: r.get("perSecond")),
]


def value(
    results: dict[str, Any], key: str, get: Callable[[dict[str, Any]], Any]
) -> Any:
    r = results.get(key)
    if not isinstance(r, dict) or "error" in r or "missing" in r:
        return None
    return get(r)


def medianValue(
    rounds: list[dict[str, Any]],
    name: str,
    key: str,
    get: Callable[[dict[str, Any]], Any],
) -> Any:
    """
    The median over the rounds of one server's metric (None if no round
    has it).
    """
    values = [value(r.get(name, {}), key, get) for r in rounds]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


#: Ratios the goals of issue 10 are stated in: (label, metric key, server,
#: reference server).
GOALS = [
    ("bridged cat, 1 conn / socat", "throughput", "twinetd", "socat"),
    ("bridged cat, 8 conns / socat", "throughput_c8", "twinetd", "socat"),
    ("bridged cat, 1 conn / handoff", "throughput", "twinetd", "twinetd-handoff"),
    ("bridged 64 B req/s / socat", "rr_c16", "twinetd", "socat"),
]


def table(rounds: list[dict[str, Any]], held: int) -> str:
    allResults = rounds[-1]
    names = [n for n in allResults if "skipped" not in allResults[n]]
    ref = allResults.get("xinetd", {})
    rows = [["metric", *names]]
    for label, key, get in METRICS:
        row = [label.replace("N held", f"{held} held")]
        base = medianValue(rounds, "xinetd", key, get) if "skipped" not in ref else None
        for n in names:
            v = medianValue(rounds, n, key, get)
            missing = (allResults[n].get(key) or {}).get("missing")
            if missing:
                row.append("n/a" if missing.startswith("n/a") else missing)
            elif v is None:
                row.append("error" if key in allResults[n] else "-")
            elif base and not label.startswith("daemon fds"):
                row.append(f"{v:g} ({v / base:.2f}x)")
            else:
                row.append(f"{v:g}")
            if v is not None and key.startswith("udp"):
                lost = allResults[n][key].get("errors")
                if lost:
                    row[-1] += f" [{lost} lost]"
        rows.append(row)
    for label, key, mine, theirs in GOALS:
        get = next(g for _, k, g in METRICS if k == key)
        a = medianValue(rounds, mine, key, get)
        b = medianValue(rounds, theirs, key, get)
        if a and b:
            rows.append([label, f"{a / b:.2f}x", *[""] * (len(names) - 1)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = sorted(
        {
            m["missing"]
            for r in allResults.values()
            for m in r.values()
            if isinstance(m, dict) and m.get("missing", "").startswith("n/a:")
        }
    )
    lines.extend(notes)
    lines.append(
        "[N lost]: requests without a reply within the receive timeout "
        "(each costs the timeout)"
    )
    lines.append(
        "n/a: socat and tcpserver: no datagram services configured; "
        "twinetd-handoff: datagram services are the same as twinetd's"
    )
    for n, r in allResults.items():
        if "skipped" in r:
            lines.append(f"{n}: skipped: {r['skipped']}")
        for key, m in r.items():
            if isinstance(m, dict) and "error" in m:
                lines.append(f"{n}: {key}: {m['error']}")
            elif isinstance(m, dict) and m.get("errors") and not key.startswith("udp"):
                lines.append(f"{n}: {key}: {m['errors']} failed: {m['firstErrors']}")
    return "\n".join(lines)


def busyThreshold(name: str) -> int | None:
    """
    The C{--spawner-process-above} of twinetd server C{name}: L{BUSY_ABOVE}
    for a name with C{-busy}, N for one with C{-busyN}
    (twinetd-handoff-busy16); C{None} without.
    """
    match = re.search(r"-busy(\d*)$", name)
    if match is None or not name.startswith("twinetd"):
        return None
    return int(match.group(1)) if match.group(1) else BUSY_ABOVE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small counts, < 60 s")
    p.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of " + ",".join((*SERVERS, *EXTRA_SERVERS)),
    )
    p.add_argument(
        "--twinetd-python",
        default=str(DEFAULT_PYTHON) if DEFAULT_PYTHON.exists() else sys.executable,
        help="the Python that runs twinetd (default: the checkout's .venv, "
        "made by `python3 dev.py test`, else this one)",
    )
    p.add_argument(
        "--twinetd-user",
        default="-",
        help="the user line of twinetd's services (default -: the daemon's "
        "user, no switch; root takes twinetd's credentials spawn path)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds (each runs every server in turn); the table shows medians",
    )
    p.add_argument(
        "--only",
        default="",
        help="comma-separated measurements to run (keys of the JSON: "
        "rate_c1, rate_c16, throughput, throughput_c8, rr_c16, held, ...)",
    )
    p.add_argument(
        "--base-repo",
        default=None,
        help="another twinetd checkout, run as the servers 'base' and "
        "'base-handoff' (before/after figures in one run)",
    )
    p.add_argument("--base-port", type=int, default=BASE_PORT)
    p.add_argument("--startup-timeout", type=float, default=30.0)
    p.add_argument("--results", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)

    prof = profile(args.quick)
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = (
        set(wanted)
        - set(SERVERS)
        - set(EXTRA_SERVERS)
        - (set(BASE_SERVERS) if args.base_repo else set())
        - {n for n in wanted if busyThreshold(n) is not None}
    )
    if unknown:
        p.error(f"unknown servers: {', '.join(sorted(unknown))}")

    def log(msg: str) -> None:
        print(msg, flush=True)

    # SIGTERM behaves like Ctrl-C, so the finally below always runs.
    def onTerm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, onTerm)

    workdir = tempfile.mkdtemp(prefix="twinetd-bench-")
    os.chmod(workdir, 0o755)
    children = {
        "echo": os.path.join(workdir, "echo1.sh"),
        "hold": os.path.join(workdir, "hold.sh"),
        "cat": shutil.which("cat") or "/bin/cat",
    }
    for key, text in (("echo", ECHO_CHILD), ("hold", HOLD_CHILD)):
        with open(children[key], "w") as f:
            f.write(text)
        os.chmod(children[key], 0o755)
    tool = buildTool(workdir, log)
    if tool is not None:
        for key, name in (("echo", "echo1"), ("hold", "hold")):
            children[key] = os.path.join(workdir, name)
            os.link(tool, children[key])
    only = {k.strip() for k in args.only.split(",") if k.strip()} or None

    rounds: list[dict[str, Any]] = []
    running: list[Server] = []
    t0 = time.monotonic()
    try:
        for _ in range(max(1, args.repeat)):
            allResults: dict[str, Any] = {}
            rounds.append(allResults)
            for i, name in enumerate(wanted):
                base = args.base_port + 10 * i
                server: Server
                if name.startswith("twinetd") or name in BASE_SERVERS:
                    server = Twinetd(
                        name,
                        workdir,
                        base,
                        args.twinetd_python,
                        args.twinetd_user,
                        handoff="-handoff" in name,
                        repo=args.base_repo if name in BASE_SERVERS else REPO,
                        spawnerProcess=name.endswith("-spawner"),
                        spawnerAbove=busyThreshold(name),
                        direct=name.endswith("-direct"),
                    )
                else:
                    server = {"xinetd": Xinetd, "socat": Socat, "tcpserver": Tcpserver}[
                        name
                    ](name, workdir, base)
                ports = sorted([*server.ports.values(), *server.udpPorts.values()])
                log(f"{name}: starting on ports {ports}")
                running.append(server)
                try:
                    server.start(children)
                    server.waitReady(args.startup_timeout)
                except SetupError as e:
                    log(f"{name}: skipped: {e}")
                    allResults[name] = {"skipped": str(e)}
                    server.stop()
                    running.remove(server)
                    continue
                try:
                    allResults[name] = benchServer(
                        server, prof, log, tool, only, children["echo"]
                    )
                finally:
                    server.stop()
                    running.remove(server)
    except KeyboardInterrupt:
        log("interrupted; stopping servers")
        return 130
    finally:
        for server in running:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    total = time.monotonic() - t0
    print()
    print(table(rounds, prof["held"]))
    print(
        f"\n({'quick' if args.quick else 'full'} run, {len(rounds)} round(s), "
        f"medians, {total:.0f} s, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at the end)"
    )

    os.makedirs(args.results, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = os.path.join(args.results, f"{stamp}{'-quick' if args.quick else ''}.json")
    with open(path, "w") as f:
        json.dump(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "mode": "quick" if args.quick else "full",
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                },
                "profile": prof,
                "results": rounds[-1],
                "rounds": rounds,
            },
            f,
            indent=2,
        )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
