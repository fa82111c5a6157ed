#!/usr/bin/env python3
"""
The daemon's user-space instructions per spawned connection, under
callgrind: steady to about 1 % where CPU time moves by 15 % or more on a
shared machine.

twinetd (twistd -n twinetd, logging to a file as the benchmark's daemon
does to its pipe) serves one wait = no stream service, the benchmark's
static echo child (bench/benchtool.c, run as echo1), bridged or handed off.
The client makes N connections one after the other (each: hello, the
reply, the server's close), then callgrind's counters are zeroed, then N
more are made and the counters dumped: instructions / N.  The N warm-up
connections leave out start-up and first-use costs.

Standard library only; needs valgrind and a C compiler.  See bench/README.md.

    python3 bench/instructions.py                 # bridged and handoff, N=300
    python3 bench/instructions.py --modes bridged --count 150
    python3 bench/instructions.py --repo /tmp/base  # another checkout
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
HOST = "127.0.0.1"

CONFIG = """\
service bench-echo
{{
\ttype = UNLISTED
\tsocket_type = stream
\tprotocol = tcp
\twait = no
\tport = {port}
\tserver = {server}
\tbind = 127.0.0.1
\tuser = -
\tinstances = UNLIMITED
\tcps = 100000 1
}}
"""

# twistd as the benchmark runs it (-n, no pid file, the log to a file).
LAUNCH = (
    "import sys; from twisted.scripts.twistd import run; "
    "sys.argv = ['twistd', '-n', '--pidfile', '', '-l', '-'] + sys.argv[1:]; run()"
)


def connect(port: int, timeout: float) -> None:
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(b"hello\n")
        reply = b""
        while len(reply) < 100:
            data = s.recv(4096)
            if not data:
                break
            reply += data
    if reply != b"hello\n":
        raise RuntimeError(f"unexpected reply {reply!r}")


def waitListening(port: int, deadline: float) -> None:
    while True:
        try:
            connect(port, 5.0)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def measure(
    repo: str,
    python: str,
    server: str,
    mode: str,
    count: int,
    port: int,
    work: str,
    extra: tuple[str, ...] = (),
) -> int:
    """
    Instructions per connection of one daemon (see the module docstring).
    """
    confdir = os.path.join(work, f"{mode}.d")
    os.makedirs(confdir, exist_ok=True)
    with open(os.path.join(confdir, "bench"), "w") as f:
        f.write(CONFIG.format(port=port, server=server))
    out = os.path.join(work, f"{mode}.callgrind")
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--dump-instr=no",
        f"--callgrind-out-file={out}",
        python,
        "-c",
        LAUNCH,
        "twinetd",
        "--kill-delay",
        "2",
        "-c",
        confdir,
    ]
    if mode == "handoff":
        argv.append("--handoff")
    argv += extra
    env = dict(os.environ, PYTHONPATH=repo)
    with open(os.path.join(work, f"{mode}.log"), "w") as log:
        # In the scratch folder: `python -c` puts the working directory
        # first on sys.path, before PYTHONPATH (--repo).
        daemon = subprocess.Popen(
            argv,
            env=env,
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        waitListening(port, time.monotonic() + 300)
        for _ in range(count):
            connect(port, 30.0)
        # Let the last child's exit and the relay's end be handled.
        time.sleep(1)
        control = ["callgrind_control"]
        zero = [*control, "-z", str(daemon.pid)]
        subprocess.run(zero, check=True, timeout=60, capture_output=True)
        for _ in range(count):
            connect(port, 30.0)
        time.sleep(1)
        dump = [*control, "-d", "measured", str(daemon.pid)]
        subprocess.run(dump, check=True, timeout=60, capture_output=True)
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
    for name in os.listdir(work):
        if not name.startswith(f"{mode}.callgrind"):
            continue
        with open(os.path.join(work, name)) as f:
            text = f.read()
        if re.search(r"^desc: Trigger: .*measured", text, re.M):
            total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            if total is not None:
                return int(total.group(1)) // count
    raise RuntimeError(f"no measured dump in {work}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", default=REPO, help="the twinetd checkout to run")
    p.add_argument(
        "--python",
        default=os.path.join(REPO, ".venv", "bin", "python"),
        help="the Python with Twisted (default: this checkout's .venv)",
    )
    p.add_argument("--modes", default="bridged,handoff")
    p.add_argument("--count", type=int, default=300, help="N (see above)")
    p.add_argument("--port", type=int, default=31090)
    p.add_argument(
        "--daemon-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="one more option of twistd twinetd, e.g. "
        "--daemon-option=--metrics=tcp:0:interface=127.0.0.1 (repeatable)",
    )
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="twinetd-instructions-")
    os.chmod(work, 0o755)
    tool = os.path.join(work, "echo1")
    subprocess.run(
        [
            "cc",
            "-O2",
            "-static",
            "-pthread",
            "-o",
            tool,
            os.path.join(HERE, "benchtool.c"),
        ],
        check=True,
    )
    for i, mode in enumerate(m.strip() for m in args.modes.split(",") if m.strip()):
        perConnection = measure(
            args.repo,
            args.python,
            tool,
            mode,
            args.count,
            args.port + i,
            work,
            tuple(args.daemon_option),
        )
        print(f"{mode}: {perConnection} instructions per connection", flush=True)
    print(f"(files in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
