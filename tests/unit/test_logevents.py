"""
xinetd's per-service log: line shapes for every combination of
log_on_success / log_on_failure values xinetd distinguishes, FILE and
SYSLOG sinks fed by the event stream, and L{ServiceLog}.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twinetd import logs
from twinetd.errors import SourceLocation
from twinetd.logs import FileSink, LogSinks, ServiceLog, SyslogSink, wholeSeconds
from twinetd.logs.sinks import ServiceLines, defaultHardLimit
from twinetd.logs.xinetd import (
    exitLine,
    failLine,
    fileTimestamp,
    startLine,
    syslogTimestamp,
)
from twinetd.model import FileTarget, Peer, ServiceConfig, SocketType, SyslogTarget

PEER = Peer("tcp", "127.0.0.1", 40000, "127.0.0.1", 33001)
MAPPED = Peer("tcp", "::ffff:127.0.0.1", 40000, "::ffff:127.0.0.1", 33001)
HOST = PEER.remoteHost
MAPPED_HOST = MAPPED.remoteHost
# 2026-11-25 16:27:38 UTC; the tests use time.gmtime as local time.
T0 = 1795624058.0


def events() -> tuple[list[dict[str, Any]], Logger]:
    seen: list[dict[str, Any]] = []
    return seen, Logger(namespace="test", observer=seen.append)


def of(seen: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in seen if e.get(logs.EVENT_FIELD) == kind]


def config(name: str, **kw: Any) -> ServiceConfig:
    kw.setdefault("socketType", SocketType.STREAM)
    kw.setdefault("wait", False)
    kw.setdefault("port", 33001)
    return ServiceConfig(name=name, source=SourceLocation("test.conf", 1), **kw)


class ListSink:
    def __init__(self) -> None:
        self.lines: list[tuple[str, bool]] = []
        self.reopened = 0
        self.closed = 0

    def write(self, message: str, sizeCheck: bool = True) -> None:
        self.lines.append((message, sizeCheck))

    def reopen(self) -> None:
        self.reopened += 1

    def close(self) -> None:
        self.closed += 1


class StartLineTests(SynchronousTestCase):
    """
    C{START} (log.c C{svc_log_success}): any log_on_success value writes it.
    """

    def test_pidAndHost(self) -> None:
        self.assertEqual(
            startLine("plain", {"PID", "HOST", "EXIT"}, 5149, HOST),
            "START: plain pid=5149 from=127.0.0.1",
        )

    def test_mappedAddressKept(self) -> None:
        self.assertEqual(
            startLine("envs", {"PID", "HOST"}, 5155, MAPPED_HOST),
            "START: envs pid=5155 from=::ffff:127.0.0.1",
        )

    def test_pidOnly(self) -> None:
        self.assertEqual(startLine("s", {"PID"}, 7, HOST), "START: s pid=7")

    def test_hostOnly(self) -> None:
        self.assertEqual(startLine("s", {"HOST"}, 7, HOST), "START: s from=127.0.0.1")

    def test_neitherPidNorHost(self) -> None:
        # Measured: log_on_success = EXIT gives a bare START line.
        for options in ({"EXIT"}, {"DURATION"}, {"USERID"}, {"TRAFFIC"}):
            self.assertEqual(startLine("sysl2", options, 7, HOST), "START: sysl2")

    def test_nothing(self) -> None:
        self.assertIsNone(startLine("s", frozenset(), 7, HOST))

    def test_noAddress(self) -> None:
        self.assertEqual(
            startLine("waitstream", {"PID", "HOST"}, 6631, None),
            "START: waitstream pid=6631 from=<no address>",
        )

    def test_internalPidZero(self) -> None:
        self.assertEqual(
            startLine("daytime-stream", {"PID", "HOST"}, 0, MAPPED_HOST),
            "START: daytime-stream pid=0 from=::ffff:127.0.0.1",
        )
        self.assertEqual(startLine("d", {"PID"}, None, MAPPED_HOST), "START: d pid=0")


class ExitLineTests(SynchronousTestCase):
    """
    C{EXIT} (log.c C{svc_log_exit}): only with EXIT or DURATION.
    """

    def test_all(self) -> None:
        options = {"PID", "HOST", "EXIT", "DURATION"}
        self.assertEqual(
            exitLine("plain", options, 5149, 0, None, 1),
            "EXIT: plain status=0 pid=5149 duration=1(sec)",
        )
        self.assertEqual(
            exitLine("ex", options, 5541, 3, None, 0),
            "EXIT: ex status=3 pid=5541 duration=0(sec)",
        )
        self.assertEqual(
            exitLine("sig", options, 5538, None, 15, 0),
            "EXIT: sig signal=15 pid=5538 duration=0(sec)",
        )

    def test_exitOnly(self) -> None:
        self.assertEqual(
            exitLine("sysl2", {"EXIT"}, 9, 0, None, 3), "EXIT: sysl2 status=0"
        )
        self.assertEqual(exitLine("s", {"EXIT"}, 9, None, 13, 3), "EXIT: s signal=13")

    def test_durationOnly(self) -> None:
        # Measured: log_on_success = DURATION.
        self.assertEqual(
            exitLine("ftwo", {"DURATION"}, 9, 0, None, 0),
            "EXIT: ftwo duration=0(sec)",
        )

    def test_durationAsXinetdCountsIt(self) -> None:
        """
        xinetd subtracts two time(2) readings (measured: 0.7 s sessions
        logged 0 when they started at .1 s, 1 when at .5 s or .9 s).
        """
        self.assertEqual(wholeSeconds(100.1, 100.8), 0)
        self.assertEqual(wholeSeconds(100.5, 101.2), 1)
        self.assertEqual(wholeSeconds(100.9, 101.6), 1)
        self.assertEqual(wholeSeconds(100.0, 159.99), 59)
        self.assertEqual(wholeSeconds(101.0, 100.5), 0)

    def test_exitAndPid(self) -> None:
        self.assertEqual(
            exitLine("s", {"EXIT", "PID"}, 9, 1, None, 3), "EXIT: s status=1 pid=9"
        )

    def test_pidAndDuration(self) -> None:
        self.assertEqual(
            exitLine("s", {"PID", "DURATION"}, 9, 1, None, 3),
            "EXIT: s pid=9 duration=3(sec)",
        )

    def test_noExitLine(self) -> None:
        for options in (set(), {"PID"}, {"HOST"}, {"PID", "HOST", "USERID"}):
            self.assertIsNone(exitLine("s", options, 9, 0, None, 1))


class FailLineTests(SynchronousTestCase):
    """
    C{FAIL} (log.c C{svc_log_failure}): any log_on_failure value writes it.
    """

    def test_host(self) -> None:
        self.assertEqual(
            failLine("onlyfrom", {"HOST", "ATTEMPT"}, "address", MAPPED_HOST),
            "FAIL: onlyfrom address from=::ffff:127.0.0.1",
        )
        self.assertEqual(
            failLine("inst", {"HOST"}, "service_limit", MAPPED_HOST),
            "FAIL: inst service_limit from=::ffff:127.0.0.1",
        )

    def test_attemptOnly(self) -> None:
        # Measured: log_on_failure = ATTEMPT.
        self.assertEqual(
            failLine("sysl2", {"ATTEMPT"}, "address", HOST), "FAIL: sysl2 address"
        )

    def test_useridOnly(self) -> None:
        self.assertEqual(failLine("s", {"USERID"}, "time", HOST), "FAIL: s time")

    def test_reasonWithSpaces(self) -> None:
        self.assertEqual(
            failLine("s", {"HOST"}, "connections per second", HOST),
            "FAIL: s connections per second from=127.0.0.1",
        )

    def test_nothing(self) -> None:
        self.assertIsNone(failLine("s", frozenset(), "address", HOST))

    def test_noAddress(self) -> None:
        self.assertEqual(
            failLine("s", {"HOST"}, "fork", None), "FAIL: s fork from=<no address>"
        )


class TimestampTests(SynchronousTestCase):
    def test_file(self) -> None:
        self.assertEqual(fileTimestamp(time.gmtime(T0)), "26/11/25@16:27:38")

    def test_fileMonthAndDayNotPadded(self) -> None:
        # filelog.c: "%02d/%d/%d@%02d:%02d:%02d".
        t = time.struct_time((2026, 1, 5, 9, 3, 7, 0, 5, 0))
        self.assertEqual(fileTimestamp(t), "26/1/5@09:03:07")
        t = time.struct_time((2009, 12, 31, 23, 59, 59, 0, 365, 0))
        self.assertEqual(fileTimestamp(t), "09/12/31@23:59:59")

    def test_syslog(self) -> None:
        self.assertEqual(syslogTimestamp(time.gmtime(T0)), "Nov 25 16:27:38")
        t = time.struct_time((2026, 1, 5, 9, 3, 7, 0, 5, 0))
        self.assertEqual(syslogTimestamp(t), "Jan  5 09:03:07")

    def test_defaultHardLimit(self) -> None:
        # xconfig.h: 1% more, within [5K, 20K].
        self.assertEqual(defaultHardLimit(100), 100 + 5 * 1024)
        self.assertEqual(defaultHardLimit(1_000_000), 1_010_000)
        self.assertEqual(defaultHardLimit(10_000_000), 10_000_000 + 20 * 1024)


class FileSinkTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.mkdir(self.dir)
        self.path = os.path.join(self.dir, "x.log")
        self.clock = Clock()
        self.clock.advance(T0)
        self.seen, self.log = events()

    def sink(self, soft: int | None = None, hard: int | None = None) -> FileSink:
        sink = FileSink(self.path, soft, hard, self.clock, time.gmtime, self.log)
        sink.open()
        self.addCleanup(sink.close)
        return sink

    def content(self, path: str | None = None) -> str:
        with open(path or self.path, encoding="utf-8") as f:
            return f.read()

    def test_lines(self) -> None:
        sink = self.sink()
        sink.write("START: plain pid=5149 from=127.0.0.1")
        self.clock.advance(1)
        sink.write("EXIT: plain status=0 pid=5149 duration=1(sec)")
        self.assertEqual(
            self.content(),
            "26/11/25@16:27:38: START: plain pid=5149 from=127.0.0.1\n"
            "26/11/25@16:27:39: EXIT: plain status=0 pid=5149 duration=1(sec)\n",
        )
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o644)

    def test_appends(self) -> None:
        with open(self.path, "w") as f:
            f.write("old\n")
        self.sink().write("x")
        self.assertEqual(self.content(), "old\n26/11/25@16:27:38: x\n")

    def test_noLimitsWithoutSoftLimit(self) -> None:
        sink = self.sink()
        for _ in range(50):
            sink.write("y" * 100)
        self.assertEqual(len(self.content().splitlines()), 50)
        self.assertEqual(self.seen, [])

    def test_limitsAsMeasured(self) -> None:
        """
        xinetd with C{FILE path 100 200}, five connections: four lines
        written (the fourth passes the hard limit), then nothing.
        """
        sink = self.sink(100, 200)
        for pid in (31317, 31321, 31325, 31329, 31333):
            sink.write(f"START: flim pid={pid} from=127.0.0.1")
            sink.write(f"EXIT: flim status=0 pid={pid} duration=0(sec)")
        lines = self.content().splitlines()
        self.assertEqual(len(lines), 4)
        self.assertEqual(
            lines[3], "26/11/25@16:27:38: EXIT: flim status=0 pid=31321 duration=0(sec)"
        )
        self.assertEqual(os.path.getsize(self.path), 242)
        problems = [e["problem"] for e in of(self.seen, logs.LOG_PROBLEM)]
        self.assertEqual(problems, [logs.PROBLEM_SOFT_LIMIT, logs.PROBLEM_HARD_LIMIT])
        self.assertTrue(sink.closed)

    def test_softLimitWarnsOnce(self) -> None:
        sink = self.sink(10)
        for _ in range(5):
            sink.write("a line longer than ten bytes")
        self.assertEqual(len(self.content().splitlines()), 5)
        [event] = of(self.seen, logs.LOG_PROBLEM)
        self.assertEqual(event["problem"], logs.PROBLEM_SOFT_LIMIT)
        self.assertEqual(event["sink"], self.path)
        self.assertEqual(sink.hardLimit, 10 + 5 * 1024)

    def test_existingFileOverHardLimit(self) -> None:
        with open(self.path, "w") as f:
            f.write("z" * 300)
        sink = self.sink(100, 200)
        sink.write("START: s")
        self.assertEqual(self.content(), "z" * 300)
        problems = [e["problem"] for e in of(self.seen, logs.LOG_PROBLEM)]
        self.assertEqual(problems, [logs.PROBLEM_SOFT_LIMIT, logs.PROBLEM_HARD_LIMIT])

    def test_unchecked_linesDoNotCount(self) -> None:
        # USERID and TRAFFIC lines: XLOG_NO_SIZECHECK.
        sink = self.sink(30, 60)
        for _ in range(5):
            sink.write("TRAFFIC: r in=1(bytes) out=2(bytes)", sizeCheck=False)
        self.assertEqual(sink.size, 0)
        self.assertEqual(len(self.content().splitlines()), 5)
        self.assertEqual(self.seen, [])

    def test_reopenAfterRotation(self) -> None:
        sink = self.sink(100, 200)
        for _ in range(4):
            sink.write("START: s pid=1 from=127.0.0.1 padding padding")
        self.assertTrue(sink.closed)
        os.rename(self.path, self.path + ".1")
        sink.reopen()
        self.assertFalse(sink.closed)
        self.assertEqual(sink.size, 0)
        sink.write("EXIT: s status=0")
        self.assertEqual(self.content(), "26/11/25@16:27:38: EXIT: s status=0\n")
        self.assertEqual(len(self.content(self.path + ".1").splitlines()), 4)
        # The warnings are issued again for the new file.
        sink.write("x" * 100)
        problems = [e["problem"] for e in of(self.seen, logs.LOG_PROBLEM)]
        self.assertEqual(
            problems,
            [
                logs.PROBLEM_SOFT_LIMIT,
                logs.PROBLEM_HARD_LIMIT,
                logs.PROBLEM_SOFT_LIMIT,
            ],
        )

    def test_openFails(self) -> None:
        sink = FileSink(
            os.path.join(self.dir, "no", "such.log"),
            None,
            None,
            self.clock,
            time.gmtime,
        )
        self.assertRaises(OSError, sink.open)
        sink.write("dropped")  # no error

    def test_reopenFails(self) -> None:
        sink = self.sink()
        sub = os.path.join(self.dir, "sub")
        os.mkdir(sub)
        other = FileSink(
            os.path.join(sub, "y.log"), None, None, self.clock, time.gmtime, self.log
        )
        other.open()
        self.addCleanup(other.close)
        os.rename(sub, sub + ".gone")
        other.reopen()
        other.write("dropped")
        [event] = of(self.seen, logs.LOG_PROBLEM)
        self.assertEqual(event["problem"], logs.PROBLEM_OPEN)
        self.assertEqual(os.listdir(sub + ".gone"), ["y.log"])
        self.assertEqual(self.content(os.path.join(sub + ".gone", "y.log")), "")
        sink.write("still fine")
        self.assertEqual(self.content(), "26/11/25@16:27:38: still fine\n")

    def test_writeFailsWarnsOnce(self) -> None:
        if not os.path.exists("/dev/full"):
            raise self.skipTest("no /dev/full")
        sink = FileSink("/dev/full", None, None, self.clock, time.gmtime, self.log)
        sink.open()
        self.addCleanup(sink.close)
        sink.write("a")
        sink.write("b")
        [event] = of(self.seen, logs.LOG_PROBLEM)
        self.assertEqual(event["problem"], logs.PROBLEM_WRITE)
        self.assertEqual(event["sink"], "/dev/full")

    def test_close(self) -> None:
        sink = self.sink()
        sink.close()
        sink.write("dropped")
        sink.close()
        self.assertEqual(self.content(), "")


class SyslogSinkTests(SynchronousTestCase):
    """
    Packets to a real AF_UNIX datagram socket standing for /dev/log.
    """

    def setUp(self) -> None:
        # AF_UNIX paths are short (108 bytes): not under _trial_temp.
        self.dir = tempfile.mkdtemp(prefix="twinetd-syslog-")
        self.addCleanup(self._rmdir)
        self.path = os.path.join(self.dir, "log")
        self.clock = Clock()
        self.clock.advance(T0)
        self.seen, self.log = events()

    def _rmdir(self) -> None:
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def listen(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.bind(self.path)
        s.setblocking(False)
        return s

    def sink(
        self, facility: str = "local3", level: str = "notice", **kw: Any
    ) -> SyslogSink:
        sink = SyslogSink(
            facility,
            level,
            self.clock,
            time.gmtime,
            self.path,
            pid=lambda: 4242,
            logger=self.log,
            **kw,
        )
        self.addCleanup(sink.close)
        return sink

    def test_packet(self) -> None:
        """
        As xinetd's (measured): C{<157>Nov 25 16:47:22 xinetd[31229]: START:
        sysl pid=31234 from=127.0.0.1} for C{SYSLOG local3 notice}.
        """
        server = self.listen()
        sink = self.sink()
        sink.write("START: sysl pid=31234 from=127.0.0.1")
        self.assertEqual(
            server.recv(4096),
            b"<157>Nov 25 16:27:38 twinetd[4242]: START: sysl pid=31234 from=127.0.0.1",
        )
        self.assertEqual(self.seen, [])

    def test_priorityAndTag(self) -> None:
        server = self.listen()
        self.sink("daemon", "info", tag="xinetd").write("EXIT: sysl2 status=0")
        self.assertEqual(
            server.recv(4096), b"<30>Nov 25 16:27:38 xinetd[4242]: EXIT: sysl2 status=0"
        )
        self.sink("kern", "emerg").write("x")
        self.assertTrue(server.recv(4096).startswith(b"<0>"))
        self.sink("local7", "debug").write("x")
        self.assertTrue(server.recv(4096).startswith(b"<191>"))

    def test_noSyslog(self) -> None:
        """
        No socket: lines are dropped with one warning; once a daemon
        listens, lines arrive again.
        """
        sink = self.sink()
        sink.write("one")
        sink.write("two")
        [event] = of(self.seen, logs.LOG_PROBLEM)
        self.assertEqual(event["problem"], logs.PROBLEM_SYSLOG)
        self.assertEqual(event["sink"], f"syslog:{self.path}")
        server = self.listen()
        sink.write("three")
        self.assertTrue(server.recv(4096).endswith(b": three"))

    def test_connectionRefused(self) -> None:
        server = self.listen()
        sink = self.sink()
        sink.write("one")
        server.close()  # the path stays: ECONNREFUSED
        sink.write("two")
        sink.write("three")
        self.assertEqual(len(of(self.seen, logs.LOG_PROBLEM)), 1)

    def test_daemonTooSlow(self) -> None:
        """
        A full receive queue (EAGAIN): dropped, one warning, never blocks.
        """
        self.listen()
        sink = self.sink()
        for _ in range(5000):
            sink.write("x" * 200)
            if of(self.seen, logs.LOG_PROBLEM):
                break
        sink.write("more")
        [event] = of(self.seen, logs.LOG_PROBLEM)
        self.assertEqual(event["problem"], logs.PROBLEM_SYSLOG)

    def test_reopen(self) -> None:
        server = self.listen()
        sink = self.sink()
        sink.write("one")
        sink.reopen()
        sink.write("two")
        self.assertEqual(server.recv(4096)[-5:], b": one")
        self.assertEqual(server.recv(4096)[-5:], b": two")


class ServiceLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.seen, self.log = events()
        self.sink = ListSink()

    def serviceLog(
        self, success: set[str], failure: frozenset[str] = frozenset()
    ) -> ServiceLog:
        lines = ServiceLines(self.sink, frozenset(success), frozenset(failure))
        return ServiceLog.fromConfig(
            config(
                "svc",
                logOnSuccess=frozenset(success),
                logOnFailure=frozenset(failure),
            ),
            lines,
            self.log,
        )

    def lines(self) -> list[str]:
        return [line for line, _ in self.sink.lines]

    def test_start(self) -> None:
        self.serviceLog({"PID", "HOST"}).start(12, PEER)
        [event] = of(self.seen, logs.START)
        self.assertEqual(
            (event["service"], event["pid"], event["host"], event["port"]),
            ("svc", 12, "127.0.0.1", 40000),
        )
        self.assertEqual(self.lines(), ["START: svc pid=12 from=127.0.0.1"])

    def test_startWithoutAddress(self) -> None:
        self.serviceLog({"HOST"}).start(12, None)
        [event] = of(self.seen, logs.START)
        self.assertEqual(event["host"], "<no address>")
        self.assertEqual(self.lines(), ["START: svc from=<no address>"])

    def test_exit(self) -> None:
        log = self.serviceLog({"PID", "EXIT", "DURATION"})
        log.exit(12, None, 9, 2)
        [event] = of(self.seen, logs.EXIT)
        self.assertEqual(
            (event["pid"], event["status"], event["signal"], event["duration"]),
            (12, None, 9, 2),
        )
        self.assertEqual(self.lines(), ["EXIT: svc signal=9 pid=12 duration=2(sec)"])

    def test_exitText(self) -> None:
        """
        twistd's log shows the same EXIT as xinetd's line: the status, or
        the signal, and whole seconds.
        """
        log = self.serviceLog(set())
        log.exit(12, None, 9, 0)
        log.exit(13, 3, None, 1)
        self.assertEqual(
            [formatEvent(e) for e in of(self.seen, logs.EXIT)],
            [
                "EXIT: svc signal=9 pid=12 duration=0(sec)",
                "EXIT: svc status=3 pid=13 duration=1(sec)",
            ],
        )

    def test_eventsWithoutLines(self) -> None:
        """
        Events always go to twistd's log; lines only as the options say.
        """
        log = self.serviceLog(set(), set())
        log.start(1, PEER)
        log.exit(1, 0, None, 0)
        log.fail("address", PEER)
        log.traffic(1, 2)
        self.assertEqual(len(self.seen), 4)
        self.assertEqual(self.lines(), [])

    def test_noLogType(self) -> None:
        log = ServiceLog.fromConfig(
            config(
                "svc",
                logOnSuccess=frozenset({"PID", "USERID"}),
                logOnFailure=frozenset({"HOST"}),
            ),
            None,
            self.log,
        )
        log.start(1, PEER)
        log.exit(1, 0, None, 0)
        log.fail("address", PEER)
        self.assertEqual(len(self.seen), 3)
        self.assertFalse(log.wantsUseridOnSuccess)

    def test_fail(self) -> None:
        self.serviceLog(set(), {"HOST"}).fail("per_source_limit", MAPPED, "3 running")
        [event] = of(self.seen, logs.FAIL)
        self.assertEqual(
            (event["reason"], event["detail"], event["host"], event["port"]),
            ("per_source_limit", "3 running", "::ffff:127.0.0.1", 40000),
        )
        self.assertEqual(
            self.lines(), ["FAIL: svc per_source_limit from=::ffff:127.0.0.1"]
        )

    def test_spawnFailed(self) -> None:
        self.serviceLog(set(), {"HOST", "ATTEMPT"}).spawnFailed(PEER, "no such file")
        [event] = of(self.seen, logs.SPAWN_FAILED)
        self.assertEqual(event["message"], "no such file")
        self.assertEqual(self.lines(), ["FAIL: svc fork from=127.0.0.1"])

    def test_traffic(self) -> None:
        self.serviceLog({"TRAFFIC"}).traffic(6, 0)
        [event] = of(self.seen, logs.TRAFFIC)
        self.assertEqual((event["bytesIn"], event["bytesOut"]), (6, 0))
        self.assertEqual(
            self.sink.lines, [("TRAFFIC: svc in=6(bytes) out=0(bytes)", False)]
        )

    def test_trafficNotAsked(self) -> None:
        self.serviceLog({"PID"}).traffic(6, 0)
        self.assertEqual(len(of(self.seen, logs.TRAFFIC)), 1)
        self.assertEqual(self.sink.lines, [])

    def test_userid(self) -> None:
        self.serviceLog({"USERID"}).userid("UNIX : alice")
        [event] = of(self.seen, logs.USERID)
        self.assertEqual((event["service"], event["text"]), ("svc", "UNIX : alice"))
        self.assertEqual(self.sink.lines, [("USERID: svc UNIX : alice", False)])

    def test_wantsUserid(self) -> None:
        log = self.serviceLog({"USERID"}, {"HOST"})
        self.assertTrue(log.wantsUseridOnSuccess)
        self.assertFalse(log.wantsUseridOnFailure)
        log = self.serviceLog({"PID"}, {"USERID"})
        self.assertFalse(log.wantsUseridOnSuccess)
        self.assertTrue(log.wantsUseridOnFailure)

    def test_useridOnlyForConnectionServices(self) -> None:
        # xinetd clears USERID from wait = yes and datagram services.
        sinks = LogSinks(Clock())
        self.addCleanup(sinks.close)
        target = SyslogTarget("daemon")
        for kw in (
            {"wait": True},
            {"socketType": SocketType.DGRAM, "protocol": "udp"},
        ):
            log = sinks.serviceLog(
                config(
                    "s",
                    logType=target,
                    logOnSuccess=frozenset({"USERID"}),
                    logOnFailure=frozenset({"USERID"}),
                    **kw,
                )
            )
            self.assertFalse(log.wantsUseridOnSuccess)
            self.assertFalse(log.wantsUseridOnFailure)
        log = sinks.serviceLog(
            config("s", logType=target, logOnSuccess=frozenset({"USERID"}))
        )
        self.assertTrue(log.wantsUseridOnSuccess)


class LogSinksTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.mkdir(self.dir)
        self.path = os.path.join(self.dir, "shared.log")
        self.clock = Clock()
        self.clock.advance(T0)
        self.seen, self.log = events()
        self.sinks = LogSinks(self.clock, time.gmtime, logger=self.log)
        self.addCleanup(self.sinks.close)

    def content(self) -> str:
        with open(self.path, encoding="utf-8") as f:
            return f.read()

    def test_sharedFile(self) -> None:
        target = FileTarget(self.path, 1000, 2000)
        one = self.sinks.serviceLog(
            config("one", logType=target, logOnSuccess=frozenset({"PID"}))
        )
        two = self.sinks.serviceLog(
            config(
                "two",
                logType=FileTarget(self.dir + "//shared.log", 1000, 2000),
                logOnFailure=frozenset({"HOST"}),
            )
        )
        shared = self.sinks.sinkFor(target)
        self.assertIs(shared, self.sinks.sinkFor(FileTarget(self.dir + "//shared.log")))
        one.start(5, PEER)
        two.fail("address", PEER)
        one.start(6, PEER)
        self.assertEqual(
            self.content(),
            "26/11/25@16:27:38: START: one pid=5\n"
            "26/11/25@16:27:38: FAIL: two address from=127.0.0.1\n"
            "26/11/25@16:27:38: START: one pid=6\n",
        )
        # One size count for the file.
        assert isinstance(shared, FileSink)
        self.assertEqual(shared.size, len(self.content()))

    def test_noLogType(self) -> None:
        log = self.sinks.serviceLog(config("s", logOnSuccess=frozenset({"PID"})))
        log.start(1, PEER)
        self.assertEqual(len(of(self.seen, logs.START)), 1)
        self.assertEqual(os.listdir(self.dir), [])

    def test_stream(self) -> None:
        """
        Every event of every service passes through the stream, after its
        service's xinetd line: one more observer sees them all.
        """
        seen: list[dict[str, Any]] = []
        self.sinks.addObserver(seen.append)
        target = FileTarget(self.path)
        one = self.sinks.serviceLog(
            config("one", logType=target, logOnSuccess=frozenset({"PID"}))
        )
        two = self.sinks.serviceLog(config("two"))
        one.start(5, PEER)
        two.fail("address", PEER)
        self.assertEqual(
            [(e["twinetdEvent"], e["service"]) for e in seen],
            [(logs.START, "one"), (logs.FAIL, "two")],
        )
        self.assertEqual(self.content(), "26/11/25@16:27:38: START: one pid=5\n")
        self.sinks.removeObserver(seen.append)
        one.start(6, PEER)
        self.assertEqual(len(seen), 2)
        self.assertEqual(len(of(self.seen, logs.START)), 2)

    def test_syslogShared(self) -> None:
        a = self.sinks.sinkFor(SyslogTarget("daemon", "info"))
        self.assertIs(a, self.sinks.sinkFor(SyslogTarget("daemon", "info")))
        self.assertIsNot(a, self.sinks.sinkFor(SyslogTarget("daemon", "err")))

    def test_fileCannotBeOpened(self) -> None:
        target = FileTarget(os.path.join(self.dir, "missing", "x.log"))
        self.assertRaises(OSError, self.sinks.serviceLog, config("s", logType=target))

    def test_reopenAll(self) -> None:
        log = self.sinks.serviceLog(
            config("s", logType=FileTarget(self.path), logOnSuccess=frozenset({"PID"}))
        )
        log.start(1, PEER)
        os.rename(self.path, self.path + ".1")
        self.sinks.reopenAll()
        log.start(2, PEER)
        self.assertEqual(self.content(), "26/11/25@16:27:38: START: s pid=2\n")

    def test_keepOnly(self) -> None:
        kept = FileTarget(self.path)
        dropped = FileTarget(os.path.join(self.dir, "old.log"))
        keptSink = self.sinks.sinkFor(kept)
        droppedSink = self.sinks.sinkFor(dropped)
        syslog = self.sinks.sinkFor(SyslogTarget("daemon"))
        assert isinstance(keptSink, FileSink) and isinstance(droppedSink, FileSink)
        self.sinks.keepOnly([kept, None])
        self.assertFalse(keptSink.closed)
        self.assertTrue(droppedSink.closed)
        self.assertIsNot(self.sinks.sinkFor(SyslogTarget("daemon")), syslog)
        self.assertIsNot(self.sinks.sinkFor(dropped), droppedSink)

    def test_close(self) -> None:
        sink = self.sinks.sinkFor(FileTarget(self.path))
        assert isinstance(sink, FileSink)
        self.sinks.close()
        self.assertTrue(sink.closed)


class VocabularyTests(SynchronousTestCase):
    """
    The one table of event kinds and the one emitter.
    """

    def test_emitChecksFields(self) -> None:
        seen, log = events()
        self.assertRaises(TypeError, logs.emit, logs.USERID, log, service="s")
        self.assertRaises(
            TypeError, logs.emit, logs.USERID, log, service="s", text="t", extra=1
        )
        self.assertRaises(KeyError, logs.emit, "nosuch", log)
        self.assertEqual(seen, [])
        logs.emit(logs.USERID, log, service="s", text="UNIX : alice")
        [event] = seen
        self.assertEqual(
            (event["twinetdEvent"], event["service"], event["text"]),
            (logs.USERID, "s", "UNIX : alice"),
        )
        self.assertEqual(formatEvent(event), "USERID: s UNIX : alice")

    def test_emitAsLoggerEmit(self) -> None:
        """
        L{logs.emit}'s event is the one C{Logger.emit} makes of the kind,
        its text and its fields: the same keys, in the same order, and the
        same values but for the time.
        """
        seen, log = events()
        fields = {"service": "s", "bytesIn": 1, "bytesOut": 2}
        logs.emit(logs.TRAFFIC, log, **fields)
        text = logs.KINDS[logs.TRAFFIC].formats[0]
        log.emit(LogLevel.info, text, twinetdEvent=logs.TRAFFIC, **fields)
        ours, twisted = seen
        self.assertEqual(list(ours), list(twisted))
        del ours["log_time"], twisted["log_time"]
        self.assertEqual(ours, twisted)

    def test_kindFormatsUseItsFields(self) -> None:
        self.assertRaises(
            ValueError,
            logs.EventKind,
            "k",
            LogLevel.info,
            ("a",),
            ("{a} {b}",),
        )

    def test_everyKindExported(self) -> None:
        """
        Each kind's name is a constant of L{twinetd.logs}, and every name
        of C{__all__} exists.
        """
        exported = [getattr(logs, name) for name in logs.__all__]
        self.assertEqual([k for k in logs.KINDS if k not in exported], [])
