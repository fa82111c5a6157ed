"""
Drop-in behaviour through the real daemon: C{twistd -n twinetd} as a
subprocess, with services and clients as an administrator would run them
(issue 7 and the shutdown of issue 8).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import CHILDREN, fixedPort
from tests.integration.test_twistd import TWISTD, connect, environment

DEADLINE = 20.0
#: C{user} for the services: root when the tests run as root (CI), else the
#: daemon's own user (twinetd's C{user = -}).
USER = "root" if os.geteuid() == 0 else "-"


def freeUdpPort() -> int:
    """
    A port free for both TCP and UDP on 127.0.0.1, below the ephemeral range.
    """
    for _ in range(100):
        port = fixedPort()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free UDP port")


def service(name: str, **attributes: str | int) -> str:
    """
    The text of one xinetd service entry.
    """
    attributes.setdefault("type", "UNLISTED")
    attributes.setdefault("user", USER)
    attributes.setdefault("bind", "127.0.0.1")
    lines = "".join(f"\t{key} = {value}\n" for key, value in attributes.items())
    return f"service {name}\n{{\n{lines}}}\n"


def child(name: str, *args: str) -> dict[str, str]:
    """
    C{server}, C{server_args} and C{flags} running C{children/NAME.py}
    (the interpreter's full path as argv[0]: with a bare name Python looks
    for its library from the working directory, / for every child).
    """
    script = str(CHILDREN / f"{name}.py")
    return {
        "server": sys.executable,
        "server_args": " ".join([sys.executable, script, *args]),
        "flags": "NAMEINARGS",
    }


class Daemon:
    """
    C{twistd -n twinetd} on a configuration file, its log in a file.

    @ivar proc: the twistd process.
    @ivar log: the path of twistd's log.
    """

    def __init__(
        self,
        folder: Path,
        config: str,
        *options: str,
        shell: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """
        @param shell: shell commands run before twistd is executed in the
            same process (C{ulimit}, C{trap}), in C{folder}.
        @param env: variables added to twistd's environment.
        """
        self.environment = {**environment(), **(env or {})}
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "services.conf"
        self.config.write_text(config)
        self.log = folder / "twistd.log"
        self.stdout = ""
        args = [
            "-n",
            "--pidfile=",
            "-l",
            str(self.log),
            "twinetd",
            "--kill-delay",
            "1",
            *options,
            "-c",
            str(self.config),
        ]
        prefix = [] if shell is None else ["/bin/sh", "-c", shell + '\nexec "$@"', "sh"]
        self.proc = subprocess.Popen(
            [*prefix, *TWISTD, *args],
            cwd=folder,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def logText(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def waitForLog(self, pattern: str, count: int = 1) -> list[re.Match[str]]:
        """
        Wait until C{pattern} matches C{count} times in the log.
        """
        deadline = time.monotonic() + DEADLINE
        while True:
            found = list(re.finditer(pattern, self.logText()))
            if len(found) >= count:
                return found
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, (pattern, self.logText())
            time.sleep(0.05)

    def output(self) -> str:
        """
        What twistd wrote to its standard output and its log (once it
        exited: the output is read to its end).
        """
        stdout = self.proc.stdout
        if stdout is not None and not stdout.closed and self.proc.poll() is not None:
            self.stdout += stdout.read().decode(errors="replace")
            stdout.close()
        return self.stdout + self.logText()

    def stop(self) -> int:
        """
        SIGTERM; the exit status.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(DEADLINE)
        self.output()
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE)
        self.output()


@contextlib.contextmanager
def running(
    folder: Path,
    config: str,
    *options: str,
    listening: int = 1,
    shell: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Daemon]:
    """
    A L{Daemon} serving C{config}, once C{listening} services listen;
    stopped (killed if SIGTERM does not end it) afterwards.
    """
    daemon = Daemon(folder, config, *options, shell=shell, env=env)
    try:
        daemon.waitForLog(r"listening on", listening)
        yield daemon
    finally:
        try:
            daemon.stop()
        finally:
            daemon.kill()


def ask(port: int, data: bytes, timeout: float = DEADLINE) -> bytes:
    """
    Send one datagram to 127.0.0.1:C{port}; the first reply.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        reply, _ = s.recvfrom(65535)
        return reply


def test_datagramWaitYesUnderTwistd(tmp_path: Path) -> None:
    """
    Issue 7 §1: C{wait = yes} datagram services run under the real daemon,
    for a program that reads with a blocking C{recvfrom} and one that calls
    C{recvfrom(..., MSG_DONTWAIT)} at once (the datagram is still queued
    for it); each child is logged, and the service serves again after it.
    """
    blocking, dontwait = freeUdpPort(), freeUdpPort()
    config = service(
        "blk",
        socket_type="dgram",
        protocol="udp",
        wait="yes",
        port=blocking,
        **child("udpserve", "blocking"),
    ) + service(
        "dw",
        socket_type="dgram",
        protocol="udp",
        wait="yes",
        port=dontwait,
        **child("udpserve", "dontwait"),
    )
    with running(tmp_path, config, listening=2) as daemon:
        for n in range(2):
            reply = ask(blocking, b"one%d" % n)
            assert re.fullmatch(rb"blocking:\d+:one%d" % n, reply), reply
            reply = ask(dontwait, b"two%d" % n)
            assert re.fullmatch(rb"dontwait:\d+:two%d" % n, reply), reply
        daemon.waitForLog(r"EXIT: blk status=0", 2)
        daemon.waitForLog(r"EXIT: dw status=0", 2)
        assert "START: dw pid=" in daemon.logText()
        assert f"blk listening on 127.0.0.1 port {blocking}" in daemon.logText()
        assert "Starting protocol" not in daemon.logText()


def test_internalStreamWaitYesUnderTwistd(tmp_path: Path) -> None:
    """
    Issue 7 §2: C{type = INTERNAL}, C{wait = yes} stream services (xinetd
    serves them) are served inside the daemon: echo answers, daytime sends
    its line, and nothing is logged as an error.
    """
    echo, daytime = freeUdpPort(), freeUdpPort()
    config = "".join(
        service(
            name,
            type="INTERNAL UNLISTED",
            id=f"{name}-stream",
            socket_type="stream",
            wait="yes",
            port=port,
        )
        for name, port in (("echo", echo), ("daytime", daytime))
    )
    with running(tmp_path, config, listening=2) as daemon:
        with socket.create_connection(("127.0.0.1", echo), timeout=DEADLINE) as s:
            s.sendall(b"ping\r\n")
            s.shutdown(socket.SHUT_WR)
            assert readAll(s) == b"ping\r\n"
        with socket.create_connection(("127.0.0.1", daytime), timeout=DEADLINE) as s:
            assert re.fullmatch(rb"\d\d [A-Z]{3} \d{4} [\d:]{8} \w+\r\n", readAll(s))
        daemon.waitForLog(r"START: daytime-stream pid=0")
        assert "Error" not in daemon.logText()
        assert "Traceback" not in daemon.logText()


def readAll(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def pidAlive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def stubbornClient(tmp_path: Path) -> Iterator[Daemon]:
    """
    A daemon serving the C{stubborn} child (it ignores SIGTERM), and one
    client connected to it, whose child is running.
    """
    port = freeUdpPort()
    config = service(
        "stub", socket_type="stream", wait="no", port=port, **child("stubborn")
    )
    daemon = Daemon(tmp_path, config)
    try:
        daemon.waitForLog("listening on")
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
            assert s.recv(100) == b"ready\n"
            yield daemon
    finally:
        daemon.kill()


def test_sigtermExitsZero(tmp_path: Path) -> None:
    """
    Issue 8 §4: SIGTERM stops the daemon cleanly, with status 0 as xinetd
    (not "killed by SIGTERM"), once every child is gone: here one that
    ignores SIGTERM and is killed after the kill delay.
    """
    with stubbornClient(tmp_path) as daemon:
        [start] = daemon.waitForLog(r"START: stub pid=(\d+)")
        pid = int(start.group(1))
        assert daemon.stop() == 0, daemon.output()
    assert not pidAlive(pid)
    assert re.search(rf"EXIT: stub signal=9 pid={pid}\b", daemon.logText())


def test_secondSigtermWhileStopping(tmp_path: Path) -> None:
    """
    A SIGTERM that comes while the daemon stops (its child given the kill
    delay) is logged and ignored: no critical traceback, still status 0.
    """
    with stubbornClient(tmp_path) as daemon:
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.waitForLog("Received SIGTERM")
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.waitForLog("SIGTERM while stopping: already stopping")
        assert daemon.stop() == 0, daemon.output()
    log = daemon.logText()
    assert log.count("Received SIGTERM") == 1, log
    assert "Traceback" not in log and "ReactorNotRunning" not in log, log
    assert re.search(r"EXIT: stub signal=9 pid=\d+", log), log


#: What a child reports of its set-up, read by /bin/sh (Python would
#: change the signal dispositions it reports).
SETUP_REPORT = """\
#!/bin/sh
echo "cwd=$(pwd -P)"
grep -E '^(Groups|SigIgn|SigBlk):' /proc/$$/status | sed 's/:[[:space:]]*/=/'
echo "nofile=$(ulimit -Sn)/$(ulimit -Hn)"
echo "nice=$(cut -d' ' -f19 /proc/$$/stat)"
"""


def setupServices(script: str, base: int, asRoot: bool) -> str:
    """
    Stream services on ports C{base}, C{base + 1}, ... running C{script}:
    as root, C{user = nobody} and C{root} with C{groups = no} and C{yes}
    and one with C{nice} and C{rlimit_files}; otherwise the daemon's own
    user.
    """
    kinds = [("own", USER, "no", {})]
    if asRoot:
        kinds = [
            ("nobodyno", "nobody", "no", {}),
            ("nobodyyes", "nobody", "yes", {}),
            ("rootno", "root", "no", {}),
            ("rootyes", "root", "yes", {}),
            ("limited", "nobody", "no", {"nice": "5", "rlimit_files": "300"}),
        ]
    return "".join(
        service(
            name,
            socket_type="stream",
            protocol="tcp",
            wait="no",
            user=user,
            groups=groups,
            port=base + n,
            server=script,
            **extra,
        )
        for n, (name, user, groups, extra) in enumerate(kinds)
    )


def collectSetup(base: int, count: int) -> list[dict[str, str]]:
    """
    The reports of the children of C{count} services from port C{base} on
    (waiting for each to listen).
    """
    reports = []
    for n in range(count):
        with connect(base + n) as s:
            text = readAll(s).decode()
        reports.append(dict(line.split("=", 1) for line in text.splitlines()))
    return reports


@contextlib.contextmanager
def setupScript() -> Iterator[str]:
    """
    L{SETUP_REPORT} in a folder every user may read (nobody runs it).
    """
    folder = Path(tempfile.mkdtemp(prefix="twinetd-setup-"))
    try:
        folder.chmod(0o755)
        script = folder / "report.sh"
        script.write_text(SETUP_REPORT)
        script.chmod(0o755)
        yield str(script)
    finally:
        shutil.rmtree(folder)


#: How both daemons are started: a low soft descriptor limit, SIGQUIT
#: ignored (as a shell's background job may leave it).
START_SHELL = "ulimit -Sn 256\ntrap '' QUIT"


def test_childSetup(tmp_path: Path) -> None:
    """
    Issue 7 §5, as xinetd sets its children up: the working directory is
    C{/} whatever the daemon's; no signal is ignored or blocked (not the
    daemon's inherited SIGQUIT, not glibc's 32 and 33); the soft descriptor
    limit is the hard one (the daemon was started with C{ulimit -Sn 256});
    as root, C{groups = no} gives no supplementary groups at all, C{groups =
    yes} the user's (also for root), and C{nice}/C{rlimit_files} apply.
    """
    asRoot = os.geteuid() == 0
    base = freeUdpPort()
    count = 5 if asRoot else 1
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with setupScript() as script:
        config = setupServices(script, base, asRoot)
        with running(tmp_path, config, listening=count, shell=START_SHELL):
            reports = collectSetup(base, count)
    for report in reports:
        assert report["cwd"] == "/", report
        assert int(report["SigIgn"], 16) == 0, report
        assert int(report["SigBlk"], 16) == 0, report
    if not asRoot:
        assert reports[0]["nofile"] == f"{hard}/{hard}"
        return
    nobody = pwd.getpwnam("nobody")
    expected = {
        "nobodyno": ("", f"{hard}/{hard}", "0"),
        "nobodyyes": (
            groupText(os.getgrouplist("nobody", nobody.pw_gid)),
            f"{hard}/{hard}",
            "0",
        ),
        "rootno": ("", f"{hard}/{hard}", "0"),
        "rootyes": (groupText(os.getgrouplist("root", 0)), f"{hard}/{hard}", "0"),
        "limited": ("", "300/300", "5"),
    }
    got = {
        name: (r["Groups"].strip(), r["nofile"], r["nice"])
        for name, r in zip(expected, reports, strict=True)
    }
    assert got == expected


def groupText(groups: list[int]) -> str:
    return " ".join(str(g) for g in sorted(set(groups)))


XINETD = "/usr/sbin/xinetd"


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(XINETD, os.X_OK),
    reason="needs root and Debian's xinetd",
)
def test_childSetupSameAsXinetd(tmp_path: Path) -> None:
    """
    The same services under xinetd and under twinetd, both started the same
    way: their children report the same set-up, field by field.
    """
    twinetdBase, xinetdBase = freeUdpPort(), freeUdpPort()
    with setupScript() as script:
        with running(
            tmp_path / "twinetd",
            setupServices(script, twinetdBase, True),
            listening=5,
            shell=START_SHELL,
        ):
            ours = collectSetup(twinetdBase, 5)
        folder = tmp_path / "xinetd"
        folder.mkdir()
        (folder / "xinetd.conf").write_text(setupServices(script, xinetdBase, True))
        command = [XINETD, "-dontfork", "-f", "xinetd.conf", "-pidfile", "x.pid"]
        xinetd = subprocess.Popen(
            ["/bin/sh", "-c", START_SHELL + '\nexec "$@"', "sh", *command],
            cwd=folder,
            stdin=subprocess.DEVNULL,
        )
        try:
            theirs = collectSetup(xinetdBase, 5)
        finally:
            xinetd.terminate()
            xinetd.wait(DEADLINE)
    assert ours == theirs


def childEnvironment(port: int) -> dict[str, str]:
    """
    The environment C{children/env.py} reports to a client of C{port}.
    """
    with connect(port) as s:
        report = json.loads(readAll(s))
    env: dict[str, str] = report["env"]
    env.pop("LC_CTYPE", None)  # Python's start-up may add it
    return env


@pytest.mark.parametrize("how", ["--handoff", "twinetd_mode"])
def test_dropInEnvironment(tmp_path: Path, how: str) -> None:
    """
    Issue 7 §4: in drop-in mode (C{--handoff}, or a service's
    C{twinetd_mode = handoff}) the environment is xinetd's: without C{env}
    and C{passenv}, the daemon's whole environment plus C{REMOTE_HOST};
    C{env} adds to it; C{passenv} restricts it.  A default-mode service of
    the same daemon keeps twinetd's rule (nothing of the daemon's
    environment unless named).
    """
    base = freeUdpPort()
    mode = {"twinetd_mode": "handoff"} if how == "twinetd_mode" else {}
    kinds: list[dict[str, str]] = [{}, {"env": "GREETING=hi"}, {"passenv": "HOME"}]
    config = "".join(
        service(
            f"env{n}",
            socket_type="stream",
            wait="no",
            port=base + n,
            **child("env"),
            **mode,
            **extra,
        )
        for n, extra in enumerate(kinds)
    )
    config += service(
        "bridged",
        socket_type="stream",
        wait="no",
        port=base + 3,
        twinetd_mode="bridge",
        **child("env"),
    )
    options = ["--handoff"] if how == "--handoff" else []
    marker = {"TWINETD_MARKER": "from-the-daemon"}
    with running(tmp_path, config, *options, listening=4, env=marker) as daemon:
        plain, added, restricted, bridged = (
            childEnvironment(base + n) for n in range(4)
        )
    daemonEnv = daemon.environment
    for name, value in daemonEnv.items():
        assert plain[name] == value, name
        assert added[name] == value, name
    assert plain["REMOTE_HOST"] == added["REMOTE_HOST"] == "127.0.0.1"
    assert added["GREETING"] == "hi"
    assert "GREETING" not in plain
    assert restricted["HOME"] == daemonEnv["HOME"]
    assert "TWINETD_MARKER" not in restricted and "PATH" not in restricted
    assert "TWINETD_MARKER" not in bridged and "HOME" not in bridged
    assert bridged["REMOTE_HOST"] == "127.0.0.1"


def cpuSeconds(pid: int) -> float:
    """
    The user and system CPU time process C{pid} has used so far.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mostAtOnce(log: str, serviceId: str) -> int:
    """
    The most children of C{serviceId} running at once by the log's START
    and EXIT lines (an upper bound: EXIT is logged when the child is reaped).
    """
    running = most = 0
    for kind in re.findall(rf"(START|EXIT): {serviceId} ", log):
        running += 1 if kind == "START" else -1
        most = max(most, running)
    return most


def collectAnswers(senders: list[socket.socket], most: int) -> int:
    """
    Count the datagrams the C{senders} receive, until C{most} or 2 s of
    silence.
    """
    answered = 0
    while answered < most:
        readable, _, _ = select.select(senders, [], [], 2.0)
        if not readable:
            break
        for sender in readable:
            sender.recvfrom(65535)
            answered += 1
    return answered


@pytest.mark.slow
def test_dropInDatagramWaitNo(tmp_path: Path) -> None:
    """
    Issue 7 §3: with C{--handoff}, a C{wait = no} datagram service's child
    gets the shared socket and receives its datagram itself.  While a child
    holds its datagram (here, 2 s before it reads) the daemon does not
    spin, even with datagrams arriving; a flood never has more than
    C{instances} children at once; the service answers afterwards.
    """
    late, quick = freeUdpPort(), freeUdpPort()
    common = {"socket_type": "dgram", "protocol": "udp", "wait": "no"}
    config = service(
        "late", port=late, instances=1, **common, **child("udpserve", "sleep", "2")
    ) + service(
        "quick",
        port=quick,
        instances=3,
        cps="10000 1",
        **common,
        **child("udpserve", "sleep", "0.05"),
    )
    with running(tmp_path, config, "--handoff", listening=2) as daemon:
        pid = daemon.proc.pid
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(DEADLINE)
            client.sendto(b"first", ("127.0.0.1", late))
            daemon.waitForLog(r"START: late pid=")
            before = cpuSeconds(pid)
            started = time.monotonic()
            for n in range(50):
                client.sendto(b"queued%d" % n, ("127.0.0.1", late))
            reply, _ = client.recvfrom(65535)
            held = time.monotonic() - started
            used = cpuSeconds(pid) - before
        assert re.fullmatch(rb"sleep:\d+:first", reply), reply
        assert held > 1.0
        assert used < 0.1 * held, (used, held)

        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        try:
            for n in range(60):
                senders[n % 3].sendto(b"flood%d" % n, ("127.0.0.1", quick))
            answered = collectAnswers(senders, 60)
        finally:
            for sender in senders:
                sender.close()
        # The kernel's receive buffer may drop some of the flood.
        assert answered > 10
        assert ask(quick, b"after").endswith(b":after")
        assert mostAtOnce(daemon.logText(), "quick") <= 3
        assert mostAtOnce(daemon.logText(), "late") <= 1
        assert "quick listening on 127.0.0.1" in daemon.logText()
