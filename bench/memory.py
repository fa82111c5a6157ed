#!/usr/bin/env python3
"""
The daemon's idle resident memory, and what it is made of.

Starts the real daemon as the benchmark does (twistd -n --pidfile '' -l -
twinetd -c DIR) on a configuration with one plain stream service and one
dgram service (wait = no, /bin/cat), waits until both ports are bound and
reads VmRSS (RssAnon, RssFile) from /proc.  The same is done for bare
Python and for twistd with the reactor serving an empty application
(pyOpenSSL blocked as twinetd blocks it): the floor twinetd cannot go
below.

Then, through a SIGWINCH handler that only the benchmark's launch line
installs (nothing in twinetd), it dumps the daemon's sys.modules and tries
gc.collect(), gc.freeze() and malloc_trim(0), reading RSS after each.
Last, a second daemon runs with a profile hook (the launch line's too)
that records each import's own RSS growth, less that of the imports it
made, as python -X importtime does for time: the largest modules and
packages, and who first imported each.  Page-granular and shifted by
where the allocator grows its arenas: read the groups, not the last KB.

Standard library only.  See bench/README.md, "Memory".

    python3 bench/memory.py                # the checkout's .venv
    python3 bench/memory.py --repo /tmp/base --top 25
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

CONFIG = """\
service memory-stream
{{
\ttype = UNLISTED
\tsocket_type = stream
\tprotocol = tcp
\twait = no
\tport = {port}
\tserver = /bin/cat
\tbind = 127.0.0.1
\tuser = -
}}

service memory-dgram
{{
\ttype = UNLISTED
\tsocket_type = dgram
\tprotocol = udp
\twait = no
\tport = {dgram}
\tserver = /bin/cat
\tbind = 127.0.0.1
\tuser = -
}}
"""

# The probe: on SIGWINCH, do what the file PROBE.cmd says, then create
# PROBE.done.  With TWINETD_MEMORY_IMPORTS set, a profile hook records
# each module's own RSS cost (its import's growth less its nested
# imports') and its importer, as python -X importtime does for time.
# Part of the benchmark's launch line only.
PROBE = """
import json, os, signal, sys
def _rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
_stack, _costs = [], {}
def _profile(frame, event, arg):
    code = frame.f_code
    if code.co_name != "_load_unlocked" or event not in ("call", "return"):
        return
    if event == "call":
        _stack.append([frame.f_locals["spec"].name, _rss(), 0])
        return
    name, before, nested = _stack.pop()
    total = _rss() - before
    _costs[name] = [total - nested, _stack[-1][0] if _stack else ""]
    if _stack:
        _stack[-1][2] += total
def _probe(signum, frame):
    base = os.environ["TWINETD_MEMORY_PROBE"]
    with open(base + ".cmd") as f:
        command = f.read().strip()
    if command == "modules":
        with open(base + ".modules", "w") as f:
            json.dump({"modules": list(sys.modules), "costs": _costs}, f)
    elif command == "collect":
        import gc; gc.collect()
    elif command == "freeze":
        import gc; gc.freeze()
    elif command == "trim":
        import ctypes; ctypes.CDLL(None).malloc_trim(0)
    open(base + ".done", "w").close()
if os.environ.get("TWINETD_MEMORY_PROBE"):
    signal.signal(signal.SIGWINCH, _probe)
if os.environ.get("TWINETD_MEMORY_IMPORTS"):
    sys.setprofile(_profile)
"""

# twistd as the benchmark runs it (-n, no pid file, the log to stdout).
LAUNCH = PROBE + (
    "from twisted.scripts.twistd import run\n"
    "sys.argv = ['twistd', '-n', '--pidfile', '', '-l', '-'] + sys.argv[1:]\n"
    "run()\n"
)

# The floor: twistd, its reactor (imported without pyOpenSSL, as twinetd
# imports it) and an application with no service.
FLOOR_TAC = """\
import sys
from twisted.application.service import Application
if "twisted.internet.reactor" not in sys.modules and "OpenSSL" not in sys.modules:
    sys.modules["OpenSSL"] = None
    from twisted.internet import reactor
    del sys.modules["OpenSSL"]
application = Application("floor")
"""

WARM = (
    "from twisted.plugin import getPlugins\n"
    "from twisted.application.service import IServiceMaker\n"
    "list(getPlugins(IServiceMaker))\n"
)

BARE = "import signal; print('reactor class: none', flush=True); signal.pause()"


def status(pid: int) -> dict[str, int]:
    """
    VmRSS, RssAnon and RssFile of C{pid}, in KB.
    """
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                values[key] = int(value.split()[0])
    return values


def bound(pid: int, ports: list[int]) -> bool:
    """
    Whether C{pid}'s network namespace has every port of C{ports} bound on
    127.0.0.1 (a listening TCP socket or a UDP socket).
    """
    found = set()
    for table, state in (("tcp", "0A"), ("udp", "07")):
        with open(f"/proc/{pid}/net/{table}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                address, port = fields[1].split(":")
                if address == "0100007F" and fields[3] == state:
                    found.add(int(port, 16))
    return set(ports) <= found


class Process:
    """
    One measured process: started, waited for, probed, stopped.
    """

    def __init__(self, argv: list[str], env: dict[str, str], work: str, name: str):
        self.probe = os.path.join(work, name)
        self.log = os.path.join(work, name + ".log")
        with open(self.log, "w") as log:
            self.popen = subprocess.Popen(
                argv,
                env=dict(env, TWINETD_MEMORY_PROBE=self.probe),
                stdin=subprocess.DEVNULL,
                stdout=log,
                # Not the caller's directory: python -c puts it first on
                # sys.path, before --repo.
                cwd=work,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def waitReady(self, ports: list[int], timeout: float = 60.0) -> None:
        """
        Until twistd has logged its reactor and C{ports} are bound, then
        a second for what start-up left to do.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"exited; see {self.log}")
            with open(self.log) as f:
                started = "reactor class" in f.read()
            if started and bound(self.popen.pid, ports):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout} s; see {self.log}")
            time.sleep(0.2)
        time.sleep(1.0)

    def rss(self) -> dict[str, int]:
        return status(self.popen.pid)

    def command(self, command: str, timeout: float = 10.0) -> None:
        done = self.probe + ".done"
        if os.path.exists(done):
            os.unlink(done)
        with open(self.probe + ".cmd", "w") as f:
            f.write(command)
        os.kill(self.popen.pid, signal.SIGWINCH)
        deadline = time.monotonic() + timeout
        while not os.path.exists(done):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer to {command}")
            time.sleep(0.05)
        time.sleep(0.2)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)


def mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def show(label: str, values: dict[str, int]) -> None:
    print(
        f"{label:<44} {mb(values['VmRSS']):>6} MB"
        f"  (anon {mb(values['RssAnon'])}, file {mb(values['RssFile'])})",
        flush=True,
    )


def group(name: str) -> str:
    parts = name.split(".")
    if parts[0] in ("twisted", "twinetd") and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0].lstrip("_") or name


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", default=REPO, help="the twinetd checkout to run")
    p.add_argument(
        "--python",
        default=os.path.join(REPO, ".venv", "bin", "python"),
        help="the Python with Twisted (default: this checkout's .venv)",
    )
    p.add_argument("--port", type=int, default=31190, help="stream; dgram +1")
    p.add_argument("--top", type=int, default=15, help="contributors listed")
    p.add_argument(
        "--python-option",
        action="append",
        default=[],
        help="an option for every measured Python (-OO: no docstrings)",
    )
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="twinetd-memory-")
    confdir = os.path.join(work, "conf.d")
    os.makedirs(confdir)
    ports = [args.port, args.port + 1]
    with open(os.path.join(confdir, "memory"), "w") as f:
        f.write(CONFIG.format(port=ports[0], dgram=ports[1]))
    tac = os.path.join(work, "floor.tac")
    with open(tac, "w") as f:
        f.write(FLOOR_TAC)
    env = dict(os.environ, PYTHONPATH=args.repo)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    daemonArgv = [*args.python_option, "-c", LAUNCH, "twinetd", "-c", confdir]
    # twistd's plugin scan, as twistd makes it: a stale dropin.cache makes
    # twistd import every plugin module, TLS with them (+14 MB).
    subprocess.run(
        [args.python, *args.python_option, "-c", WARM],
        env=env,
        stdin=subprocess.DEVNULL,
        check=True,
        cwd=work,
    )

    bare = Process([args.python, *args.python_option, "-c", BARE], env, work, "bare")
    try:
        bare.waitReady([])
        show("python, bare", bare.rss())
    finally:
        bare.stop()
    floor = Process(
        [args.python, *args.python_option, "-c", LAUNCH, "-y", tac], env, work, "floor"
    )
    try:
        floor.waitReady([])
        show("python + twistd + reactor (the floor)", floor.rss())
    finally:
        floor.stop()
    daemon = Process([args.python, *daemonArgv], env, work, "daemon")
    try:
        daemon.waitReady(ports)
        show("twinetd idle (stream + dgram service)", daemon.rss())
        daemon.command("modules")
        with open(daemon.probe + ".modules") as f:
            modules = f.read().split()
        for command in ("collect", "freeze", "trim"):
            daemon.command(command)
            label = {"collect": "gc.collect()", "freeze": "+ gc.freeze()"}
            show("  after " + label.get(command, "+ malloc_trim(0)"), daemon.rss())
    finally:
        daemon.stop()
    print(f"{len(modules)} modules in sys.modules", flush=True)
    if "OpenSSL" in modules:
        print("  (pyOpenSSL imported: is twistd's plugin cache stale?)")

    # Again, each import's cost recorded (see PROBE).
    env["TWINETD_MEMORY_IMPORTS"] = "1"
    daemon = Process([args.python, *daemonArgv], env, work, "imports")
    try:
        daemon.waitReady(ports, timeout=120)
        show("twinetd idle, import costs recorded", daemon.rss())
        daemon.command("modules")
        with open(daemon.probe + ".modules") as f:
            found = json.load(f)["costs"]
    finally:
        daemon.stop()
    costs = {name: kb for name, (kb, parent) in found.items()}
    parents = {name: parent for name, (kb, parent) in found.items()}
    print(f"imports: +{mb(sum(costs.values()))} MB in all")
    groups: collections.Counter[str] = collections.Counter()
    for name, kb in costs.items():
        groups[group(name)] += kb
    print("\nlargest packages (MB; first imported by)")
    for name, kb in groups.most_common(args.top):
        members = {m for m in costs if group(m) == name}
        via = sorted({parents[m] for m in members} - members)
        via = [v for v in via if group(v) != name] or via
        print(f"  {mb(kb):>5}  {name:<24} {', '.join(via)[:46]}")
    print("\nlargest modules (MB; first imported by)")
    for name, kb in sorted(costs.items(), key=lambda item: -item[1])[: args.top]:
        print(f"  {mb(kb):>5}  {name:<40} {parents[name]}")
    ours = sum(kb for name, kb in costs.items() if name.startswith("twinetd"))
    print(f"\ntwinetd's own modules: {mb(ours)} MB")
    print(f"(files in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
