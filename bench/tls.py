#!/usr/bin/env python3
"""
Benchmark a stdio program served over TLS: twinetd's own TLS listener
(twinetd_listen = ssl:...), stunnel in front of xinetd, and socat
(OPENSSL-LISTEN ... fork EXEC), on loopback.

Measures, for each:

  - TLS connections per second to a tiny /bin/sh child that reads one line,
    echoes it and exits (concurrency 1 and 16): a TLS 1.3 handshake (P-256
    key) plus a spawn per connection;
  - throughput of one TLS connection through /bin/cat (the client sends
    and reads back at the same time).

Each measurement runs --rounds times (servers interleaved, so that a load
that comes and goes hits every server alike); the table shows the median
and the spread, the machine's load average before and after, and ratios to
stunnel + xinetd.  Standard library only (the certificate is made with the
openssl command).  See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# bench/run.py, beside this file (the script's folder is on sys.path).
from run import ServerProcesses

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_PYTHON = REPO / ".venv" / "bin" / "python"
HOST = "127.0.0.1"
#: Below the kernel's ephemeral range, clear of bench/run.py's 31000-31049.
BASE_PORT = 31200

ECHO_CHILD = '#!/bin/sh\nread line\necho "$line"\n'
SERVERS = ("twinetd", "stunnel+xinetd", "socat")
BASELINE = "stunnel+xinetd"


class SetupError(Exception):
    pass


class Server(ServerProcesses):
    """
    One server under test: its processes (see L{ServerProcesses}) and its
    two TLS ports.
    """

    workdir: Path

    def __init__(self, name: str, workdir: Path, basePort: int) -> None:
        super().__init__(name, workdir, workdir / f"{name.replace('+', '-')}.log")
        self.ports = {"echo": basePort, "cat": basePort + 1}

    def start(self, pki: Path, echo: Path, basePort: int, python: Path) -> None:
        raise NotImplementedError

    def waitReady(self, timeout: float) -> None:
        context = clientContext()
        deadline = time.monotonic() + timeout
        pending = set(self.ports.values())
        while pending:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise SetupError(f"{self.name} exited; see {self.logPath}")
            for port in list(pending):
                with contextlib.suppress(OSError):
                    # A full TLS handshake: stunnel listens before xinetd.
                    raw = socket.create_connection((HOST, port), timeout=2)
                    with context.wrap_socket(raw) as sock:
                        sock.sendall(b"ready\n")
                        sock.recv(16)
                    pending.discard(port)
            if pending:
                if time.monotonic() > deadline:
                    raise SetupError(f"{self.name}: {sorted(pending)} not serving")
                time.sleep(0.2)


def _service(name: str, port: int, server: str, extra: str) -> str:
    return (
        f"service {name}\n{{\n\ttype = UNLISTED\n\tsocket_type = stream\n"
        f"\twait = no\n\tinstances = UNLIMITED\n\tcps = 100000 1\n"
        f"\tserver = {server}\n\tport = {port}\n{extra}}}\n"
    )


class Twinetd(Server):
    def start(self, pki: Path, echo: Path, basePort: int, python: Path) -> None:
        folder = self.workdir / "twinetd.d"
        folder.mkdir()
        tls = f"privateKey={pki / 'key.pem'}:certKey={pki / 'cert.pem'}"
        for name, server in (("echo", str(echo)), ("cat", "/bin/cat")):
            listen = f"ssl:{self.ports[name]}:interface={HOST}:{tls}"
            (folder / name).write_text(
                _service(
                    f"tls{name}",
                    self.ports[name],
                    server,
                    f"\tuser = -\n\ttwinetd_listen = {listen}\n",
                )
            )
        env = dict(os.environ, PYTHONPATH=str(REPO))
        twistd = str(python.with_name("twistd"))
        self.spawn(
            [
                twistd,
                "-n",
                "--pidfile=",
                "-l",
                "-",
                "twinetd",
                "--kill-delay",
                "2",
                "-c",
                str(folder),
            ],
            env,
        )


class StunnelXinetd(Server):
    """
    stunnel ends TLS and connects to xinetd, which serves the same programs
    over plain TCP on the next two ports.
    """

    def start(self, pki: Path, echo: Path, basePort: int, python: Path) -> None:
        plain = {"echo": basePort + 2, "cat": basePort + 3}
        user = "\tuser = root\n" if os.geteuid() == 0 else ""
        conf = self.workdir / "xinetd.conf"
        conf.write_text(
            "".join(
                _service(name, plain[name], server, f"{user}\tbind = {HOST}\n")
                for name, server in (("echo", str(echo)), ("cat", "/bin/cat"))
            )
        )
        self.spawn(
            [
                "xinetd",
                "-dontfork",
                "-f",
                str(conf),
                "-pidfile",
                str(self.workdir / "xinetd.pid"),
            ]
        )
        tunnels = self.workdir / "stunnel.conf"
        tunnels.write_text(
            "foreground = yes\npid =\n"
            f"cert = {pki / 'cert.pem'}\nkey = {pki / 'key.pem'}\n"
            + "".join(
                f"[{name}]\naccept = {HOST}:{self.ports[name]}\n"
                f"connect = {HOST}:{plain[name]}\n"
                for name in ("echo", "cat")
            )
        )
        self.spawn([stunnel(), str(tunnels)])


class Socat(Server):
    def start(self, pki: Path, echo: Path, basePort: int, python: Path) -> None:
        for name, server in (("echo", str(echo)), ("cat", "/bin/cat")):
            self.spawn(
                [
                    "socat",
                    f"OPENSSL-LISTEN:{self.ports[name]},bind={HOST},"
                    f"cert={pki / 'cert.pem'},key={pki / 'key.pem'},verify=0,"
                    "fork,reuseaddr,backlog=1024",
                    f"EXEC:{server}",
                ]
            )


def stunnel() -> str:
    return shutil.which("stunnel4") or shutil.which("stunnel") or "stunnel4"


def available(name: str) -> str | None:
    """
    Why C{name} cannot run here, or C{None}.
    """
    needs = {
        "twinetd": [],
        "stunnel+xinetd": ["xinetd", stunnel()],
        "socat": ["socat"],
    }[name]
    missing = [program for program in needs if shutil.which(program) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def makePki(folder: Path) -> Path:
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(folder / "key.pem"),
            "-out",
            str(folder / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return folder


def clientContext() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def connectionRate(
    port: int, concurrency: int, seconds: float, limit: int
) -> dict[str, Any]:
    """
    TLS connections to the echo child, back to back from C{concurrency}
    threads, for C{seconds} or C{limit} connections.
    """
    context = clientContext()
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if len(latencies) + errors[0] >= limit:
                    return
            start = time.monotonic()
            try:
                raw = socket.create_connection((HOST, port), timeout=10)
                with context.wrap_socket(raw) as sock:
                    sock.sendall(b"hello\n")
                    data = b""
                    while chunk := sock.recv(64):
                        data += chunk
                ok = data == b"hello\n"
            except (OSError, ssl.SSLError):
                ok = False
            with lock:
                if ok:
                    latencies.append(time.monotonic() - start)
                else:
                    errors[0] += 1

    began = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    elapsed = time.monotonic() - began
    return {
        "rate": len(latencies) / elapsed if elapsed else 0.0,
        "count": len(latencies),
        "errors": errors[0],
        "median_ms": 1000 * statistics.median(latencies) if latencies else None,
    }


def throughput(port: int, nbytes: int, timeout: float) -> dict[str, Any]:
    """
    One TLS connection to cat: C{nbytes} sent in 256 KiB writes while what
    comes back is read, in one thread (non-blocking, as one SSL object must
    not be used by two threads at once); MiB/s until the last byte is back.
    """
    raw = socket.create_connection((HOST, port), timeout=timeout)
    sock = clientContext().wrap_socket(raw)
    sock.setblocking(False)
    block = os.urandom(256 * 1024)
    sent = received = 0
    pending = b""
    start = time.monotonic()
    deadline = start + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while received < nbytes and time.monotonic() < deadline:
            if not pending and sent < nbytes:
                pending = block
            wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0)
            selector.modify(sock, wanted)
            selector.select(1.0)
            with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLWantWriteError):
                while pending:
                    count = sock.send(pending)
                    sent += count
                    pending = pending[count:]
            with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLWantWriteError):
                while received < nbytes:
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        deadline = 0.0
                        break
                    received += len(chunk)
    elapsed = time.monotonic() - start
    with contextlib.suppress(OSError, ssl.SSLError):
        sock.close()
    ok = received >= nbytes
    return {
        "mib_s": (received / (1 << 20)) / elapsed if ok else None,
        "bytes": received,
    }


def measure(server: Server, quick: bool) -> dict[str, Any]:
    seconds, limit = (1.5, 2000) if quick else (5.0, 20000)
    nbytes = (16 if quick else 64) << 20
    return {
        "conn_c1": connectionRate(server.ports["echo"], 1, seconds, limit),
        "conn_c16": connectionRate(server.ports["echo"], 16, seconds, limit),
        "cat": throughput(server.ports["cat"], nbytes, 120.0),
    }


def table(results: dict[str, list[dict[str, Any]]], notes: dict[str, str]) -> str:
    def series(name: str, key: str, field: str) -> list[float]:
        values = [r[key][field] for r in results.get(name, [])]
        return [v for v in values if v is not None]

    rows = [
        ("TLS conn/s c=1", "conn_c1", "rate", "{:.0f}"),
        ("TLS conn/s c=16", "conn_c16", "rate", "{:.0f}"),
        ("TLS cat MiB/s", "cat", "mib_s", "{:.1f}"),
    ]
    names = [n for n in SERVERS if n in results or n in notes]
    lines = ["| measure | " + " | ".join(names) + " |"]
    lines.append("|---" * (len(names) + 1) + "|")
    for label, key, field, fmt in rows:
        cells = []
        base = series(BASELINE, key, field)
        baseMedian = statistics.median(base) if base else None
        for name in names:
            if name in notes:
                cells.append(notes[name])
                continue
            values = series(name, key, field)
            if not values:
                cells.append("failed")
                continue
            median = statistics.median(values)
            spread = (max(values) - min(values)) / median if median else 0.0
            cell = fmt.format(median) + f" (±{100 * spread / 2:.0f}%)"
            if baseMedian:
                cell += f" x{median / baseMedian:.2f}"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument(
        "--twinetd-python",
        type=Path,
        default=DEFAULT_PYTHON if DEFAULT_PYTHON.exists() else Path(sys.executable),
    )
    parser.add_argument("--base-port", type=int, default=BASE_PORT)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    chosen = [name for name in args.servers.split(",") if name]
    unknown = set(chosen) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    kinds = {"twinetd": Twinetd, "stunnel+xinetd": StunnelXinetd, "socat": Socat}
    notes = {name: why for name in chosen if (why := available(name))}
    results: dict[str, list[dict[str, Any]]] = {}
    loads = {"before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="twinetd-tls-bench-") as scratch:
        root = Path(scratch)
        pki = makePki(root)
        echo = root / "echo.sh"
        echo.write_text(ECHO_CHILD)
        echo.chmod(0o755)
        for round in range(args.rounds):
            for index, name in enumerate(chosen):
                if name in notes:
                    continue
                workdir = root / f"{round}-{index}"
                workdir.mkdir()
                basePort = args.base_port + 10 * index
                server = kinds[name](name, workdir, basePort)
                try:
                    server.start(pki, echo, basePort, args.twinetd_python)
                    server.waitReady(30.0)
                    results.setdefault(name, []).append(measure(server, args.quick))
                except SetupError as e:
                    notes[name] = f"skipped ({e})"
                finally:
                    server.stop()
                print(f"round {round + 1}: {name} done", file=sys.stderr, flush=True)
    loads["after"] = os.getloadavg()
    report = {
        "results": results,
        "notes": notes,
        "load": loads,
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "rounds": args.rounds,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.results / f"tls-{stamp}.json").write_text(json.dumps(report, indent=2))
    print(table(results, notes))
    print(
        f"\nload average before {loads['before'][0]:.2f}, after "
        f"{loads['after'][0]:.2f}; {os.cpu_count()} CPUs; median of "
        f"{args.rounds} rounds (± half the spread), x: ratio to {BASELINE}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
