"""
L{twinetd.logs.twistd}: what twistd's log shows of the daemon, with a Clock
and plain publishers.
"""

from __future__ import annotations

import io
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher, formatEvent, textFileLogObserver
from twisted.trial.unittest import SynchronousTestCase

from twinetd import _twistedcompat as compat
from twinetd import logs
from twinetd.errors import SourceLocation
from twinetd.logs.jsonlog import JsonLog
from twinetd.logs.sinks import LogSinks
from twinetd.logs.twistd import (
    FastText,
    LoadCounts,
    TwistdLog,
    TwistdLogFilter,
    filterObservers,
)
from twinetd.model import ServiceConfig, SocketType


def couldNotAccept(error: str = "EMFILE") -> dict[str, Any]:
    # As Twisted's accept loop logs it (test_twistedcompat checks the shape).
    return {
        "log_namespace": compat.TCP_PORT_NAMESPACE,
        "log_format": compat.ACCEPT_ERROR_FORMAT,
        "acceptError": error,
    }


def closedAtOnce() -> dict[str, Any]:
    return {
        "log_namespace": compat.TCP_PORT_NAMESPACE,
        "log_format": compat.EMFILE_CLOSED_FORMAT,
        "address": ("127.0.0.1", 40000),
    }


def note() -> dict[str, Any]:
    return {
        "log_namespace": compat.TCP_PORT_NAMESPACE,
        "log_format": sorted(compat.EMFILE_NOTES)[0],
    }


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.passed: list[dict[str, Any]] = []
        self.logged: list[dict[str, Any]] = []
        self.filter = TwistdLogFilter(
            self.passed.append, self.clock, Logger(observer=self.logged.append)
        )

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.logged if e.get(logs.EVENT_FIELD) == kind]


class AcceptFailureTests(SynchronousTestCase):
    def test_floodSummarised(self) -> None:
        """
        A daemon out of descriptors: the first failed accept is logged at
        once, the others as one summary a second; Twisted's own lines are
        left out.
        """
        h = Harness()
        for _ in range(300):
            h.filter(note())
            h.filter(closedAtOnce())
            h.filter(couldNotAccept())
            h.filter(note())
        [first] = h.of(logs.ACCEPT_FAILED)
        self.assertEqual(
            (first["reason"], first["message"]), ("EMFILE", "Too many open files")
        )
        self.assertEqual(h.of(logs.ACCEPT_FAILURES), [])
        h.clock.advance(1)
        [summary] = h.of(logs.ACCEPT_FAILURES)
        self.assertEqual(
            (summary["count"], summary["reasons"], summary["interval"]),
            (599, {"EMFILE": 599}, 1.0),
        )
        h.clock.advance(10)
        self.assertEqual(len(h.logged), 2)
        self.assertEqual(h.passed, [])

    def test_otherErrors(self) -> None:
        h = Harness()
        h.filter(couldNotAccept("ENOBUFS"))
        h.filter(couldNotAccept("EMFILE"))
        [first] = h.of(logs.ACCEPT_FAILED)
        self.assertEqual(first["reason"], "ENOBUFS")
        h.clock.advance(1)
        [summary] = h.of(logs.ACCEPT_FAILURES)
        self.assertEqual(summary["reasons"], {"EMFILE": 1})

    def test_othersPass(self) -> None:
        h = Harness()
        events = [
            {"log_namespace": "twinetd.logs.events", "log_format": "x"},
            {"log_namespace": compat.TCP_PORT_NAMESPACE, "log_format": "other"},
        ]
        for event in events:
            h.filter(event)
        self.assertEqual(h.passed, events)


def ours() -> object:
    # An object of a twinetd class, as the source of Twisted's lines.
    return type("Factory", (), {"__module__": "twinetd.listeners.stream"})()


class NoiseTests(SynchronousTestCase):
    def test_portLines(self) -> None:
        """
        Each port's start and stop lines are left out (the daemon logs its
        own listening line).
        """
        h = Harness()
        for text in (
            "StreamFactory starting on 51423",
            "(TCP Port 51423 Closed)",
            "_GatedDatagram starting on 69",
            "(UDP Port 69 Closed)",
        ):
            h.filter({"log_namespace": "log_legacy", "log_text": text})
        self.assertEqual(h.passed, [])

    def test_lifecycleLines(self) -> None:
        """
        The start and stop lines of twinetd's own factories and protocols
        are left out; other code's stay.
        """
        h = Harness()
        h.filter(
            {
                "log_format": "Starting factory {factory!r}",
                "log_source": ours(),
                "factory": ours(),
            }
        )
        h.filter(
            {
                "log_namespace": "log_legacy",
                "log_text": "Stopping protocol <twinetd.listeners.datagram."
                "_GatedDatagram object at 0x7f00>",
            }
        )
        theirs = {
            "log_format": "Starting factory {factory!r}",
            "log_source": object(),
            "factory": object(),
        }
        h.filter(theirs)
        self.assertEqual(h.passed, [theirs])


class InstallTests(SynchronousTestCase):
    def test_filterObservers(self) -> None:
        """
        The filter stands in front of the publisher's observers, once.
        """
        clock = Clock()
        one: list[dict[str, Any]] = []
        two: list[dict[str, Any]] = []
        publisher = LogPublisher(one.append, two.append)
        installed = filterObservers(publisher, clock)
        self.assertEqual(compat.observersOf(publisher), [installed])
        self.assertIs(filterObservers(publisher, clock), installed)
        publisher(note())
        publisher({"log_format": "hello"})
        self.assertEqual(one, [{"log_format": "hello"}])
        self.assertEqual(two, one)

    def test_service(self) -> None:
        """
        The service installs the filter when the daemon starts (twistd's
        observers are in place by then), and the JSON log beside it.
        """
        h = ServiceHarness()
        h.start()
        self.assertIsNotNone(h.service.filter)
        h.publisher(couldNotAccept())
        h.publisher(couldNotAccept())
        self.assertEqual(h.kinds(), [logs.ACCEPT_FAILED])
        h.clock.advance(1)
        self.assertEqual(
            h.kinds(), [logs.ACCEPT_FAILED, logs.STARTED, logs.ACCEPT_FAILURES]
        )
        self.assertEqual(h.kinds(h.json), h.kinds())


COUNTS = LoadCounts(services=3, skipped=1, errors=2, warnings=4)


class ServiceHarness:
    def __init__(self, counts: LoadCounts = COUNTS) -> None:
        self.clock = Clock()
        self.seen: list[dict[str, Any]] = []
        self.json: list[dict[str, Any]] = []
        self.publisher = LogPublisher()
        self.sinks = LogSinks(self.clock, logger=Logger(observer=self.publisher))
        self.service = TwistdLog(
            self.clock,
            self.sinks,
            counts,
            cast(JsonLog, self.json.append),
            self.publisher,
            Logger(observer=self.publisher),
        )
        self.publisher.addObserver(self.seen.append)

    def start(self) -> None:
        self.service.privilegedStartService()
        self.service.startService()

    def kinds(self, events: list[dict[str, Any]] | None = None) -> list[str]:
        return [
            e[logs.EVENT_FIELD]
            for e in (self.seen if events is None else events)
            if logs.EVENT_FIELD in e
        ]


def record(name: str) -> ServiceConfig:
    return ServiceConfig(
        name=name,
        source=SourceLocation("/etc/xinetd.d/" + name, 3),
        socketType=SocketType.STREAM,
        wait=False,
        port=7,
    )


class StartupSummaryTests(SynchronousTestCase):
    def test_summary(self) -> None:
        """
        Once every service has started: how many listen, and what the load
        left out.
        """
        h = ServiceHarness()
        h.service.privilegedStartService()
        for name in ("a", "b"):
            h.sinks.serviceLog(record(name)).listening("::", 7, "tcp")
        h.sinks.serviceLog(record("c")).cannotListen(record("c"), "::", "in use")
        h.service.startService()
        self.assertEqual(h.kinds(), [logs.LISTENING] * 2 + [logs.CANNOT_LISTEN])
        h.clock.advance(0)
        [started] = [e for e in h.seen if e.get(logs.EVENT_FIELD) == logs.STARTED]
        self.assertEqual(
            formatEvent(started),
            "twinetd started: 2 of 3 services listening, 1 not listening, "
            "1 skipped, 2 errors, 4 warnings",
        )
        # Later listening lines (after a cps pause) change nothing.
        h.sinks.serviceLog(record("c")).listening("::", 7, "tcp")
        h.clock.advance(10)
        self.assertEqual(h.kinds().count(logs.STARTED), 1)


class FastTextTests(SynchronousTestCase):
    """
    L{FastText} writes exactly what Twisted's classic text format writes.
    """

    def setUp(self) -> None:
        self.out = io.StringIO()
        self.observer = textFileLogObserver(self.out)
        self.original = self.observer.formatEvent
        fast = FastText.inFrontOf(self.original)
        assert fast is not None
        self.fast = fast
        self.events: list[dict[str, Any]] = []
        self.logger = Logger(namespace="twinetd.test", observer=self.events.append)

    def assertSame(self, event: dict[str, Any]) -> None:
        self.assertEqual(self.fast(event), self.original(event))

    def test_twinetdEvents(self) -> None:
        logs.emit(
            logs.START,
            self.logger,
            service="echo",
            pid=12,
            host="192.0.2.1",
            port=4000,
            latency=None,
        )
        logs.emit(
            logs.EXIT,
            self.logger,
            service="echo",
            pid=12,
            status=None,
            signal=9,
            duration=3,
        )
        logs.emit(
            logs.DGRAM_DROPPED,
            self.logger,
            service="udp",
            count=3,
            interval=1.25,
            reasons={"EAGAIN": 3},
        )
        for event in self.events:
            self.assertSame(event)
            self.assertIsNotNone(self.fast(event))

    def test_linesAndSystem(self) -> None:
        """
        A multi-line text continues on tab-indented lines; C{log_system}
        replaces the namespace and level.
        """
        event = {
            "twinetdEvent": "x",
            "log_format": "one\ntwo {x!r}",
            "x": "y",
            "log_time": 1700000000.5,
            "log_system": "sys",
        }
        self.assertSame(event)
        self.assertIn("\n\ttwo 'y'", self.fast(event) or "")

    def test_leftToTwisted(self) -> None:
        """
        Events that are not twinetd's, with a failure, or with a format
        Python's own cannot render (Twisted's call syntax) go to the
        original formatter.
        """
        calls: list[dict[str, Any]] = []

        def original(event: dict[str, Any]) -> str:
            calls.append(event)
            return cast(str, self.original(event))

        fast = FastText(original)
        for event in (
            {"log_format": "plain", "log_time": 1.0},
            {
                "twinetdEvent": "x",
                "log_format": "{f()}",
                "f": lambda: 1,
                "log_time": 1.0,
            },
            {"twinetdEvent": "x", "log_format": "{missing}", "log_time": 1.0},
        ):
            calls.clear()
            self.assertEqual(fast(event), self.original(event))
            self.assertIn(event, calls)

    def test_installed(self) -> None:
        """
        L{filterObservers} puts it in front of twistd's text file observer.
        """
        publisher = LogPublisher(self.observer)
        filterObservers(publisher, Clock())
        self.assertIsInstance(self.observer.formatEvent, FastText)
        logs.emit(
            logs.EXIT,
            Logger(namespace="twinetd.test", observer=publisher),
            service="echo",
            pid=12,
            status=0,
            signal=None,
            duration=0,
        )
        self.assertIn(
            "EXIT: echo status=0 pid=12 duration=0(sec)\n", self.out.getvalue()
        )
