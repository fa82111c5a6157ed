"""
Tests for L{twinetd.control}: what a reload keeps, and L{DaemonControl}'s
signals, umask and systemd notifications, with a fake daemon and a clock.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from typing import Any

from twisted.internet import process
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from twinetd.config import LoadResult
from twinetd.control import STOPPING_SIGNALS, DaemonControl, StopOnce, keepPrevious
from twinetd.errors import Problem, SourceLocation
from twinetd.logs import CANNOT_LISTEN, LISTENING, RELOADED, STATUS, LogSinks, emit
from twinetd.model import ServiceConfig
from twinetd.sdnotify import Notifier
from twinetd.status import ServiceState
from twinetd.testing import serviceRecord


def problem(name: str, line: int = 9) -> Problem:
    return Problem(
        SourceLocation(f"/etc/xinetd.d/{name}", line), name, "unknown attribute"
    )


class KeepPreviousTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.stamp = serviceRecord("stamp", port=2000)
        self.other = serviceRecord("other", port=2001)
        self.running = {"stamp": self.stamp, "other": self.other}

    def test_failedKept(self) -> None:
        """
        A running service whose new definition has errors keeps serving its
        previous one, with the first error.
        """
        error = problem("stamp")
        result = LoadResult((self.other,), (error,), failed=(("stamp", error),))
        records, kept = keepPrevious(self.running, result)
        self.assertEqual(records, [self.other, self.stamp])
        self.assertEqual(kept, [(self.stamp, error)])

    def test_removedNotKept(self) -> None:
        """
        A service no longer in the configuration, or a new service with
        errors, is not kept.
        """
        error = problem("new")
        result = LoadResult((self.other,), (error,), failed=(("new", error),))
        self.assertEqual(keepPrevious(self.running, result), ([self.other], []))

    def test_clash(self) -> None:
        """
        The previous definition is not kept when a loaded service now takes
        its port.
        """
        error = problem("stamp")
        taker = serviceRecord("taker", port=2000)
        result = LoadResult((taker,), (error,), failed=(("stamp", error),))
        self.assertEqual(keepPrevious({"stamp": self.stamp}, result), ([taker], []))

    def test_brokenFile(self) -> None:
        """
        A service missing from a file that now has an error outside any
        service (it cannot be read) is kept.
        """
        error = Problem(SourceLocation(self.stamp.source.file, 0), None, "cannot read")
        result = LoadResult((self.other,), (error,))
        records, kept = keepPrevious(self.running, result)
        self.assertEqual(records, [self.other, self.stamp])
        self.assertEqual(kept, [(self.stamp, error)])

    def test_unreadable(self) -> None:
        """
        A configuration that cannot be read keeps every running service.
        """
        error = Problem(SourceLocation("/etc/xinetd.conf", 0), None, "cannot read")
        result = LoadResult((), (error,), unreadable=(error,))
        records, kept = keepPrevious(self.running, result)
        self.assertEqual(records, [self.stamp, self.other])
        self.assertEqual([p for _, p in kept], [error, error])


@implementer(IReactorFromThreads)
class FakeReactor(Clock):
    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class FakeRuntime:
    def __init__(self, clock: Clock) -> None:
        self.sinks = LogSinks(clock)
        self.reopened = 0
        self.sinks.reopenAll = self.reopen  # type: ignore[method-assign]

    def reopen(self) -> None:
        self.reopened += 1


class FakeDaemon:
    """
    What L{DaemonControl} needs of a L{twinetd.service.TwinetdService}.
    """

    def __init__(self, clock: Clock) -> None:
        self.records: dict[str, ServiceConfig] = {}
        self.runtime = FakeRuntime(clock)
        self.reloads: list[list[ServiceConfig]] = []
        self.reloaded: Deferred[None] | None = None
        self.settled: dict[str, bool] = {}

    def reload(self, records: Iterable[ServiceConfig]) -> Deferred[None]:
        self.reloads.append(list(records))
        self.records = {c.id: c for c in self.reloads[-1]}
        return self.reloaded or succeed(None)

    def states(self) -> list[ServiceState]:
        return [
            ServiceState(i, "tcp", 1, "::", "bridge", s, False, s, 0)
            for i, s in self.settled.items()
        ]

    def status(self) -> dict[str, Any]:
        return {"version": "0", "pid": 1, "uptime": 0, "services": []}


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        super().__init__("unused", monotonic=lambda: 7)
        self.sent: list[dict[str, str | int]] = []

    def send(self, **fields: str | int) -> None:
        self.sent.append(fields)


class DaemonControlTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.daemon = FakeDaemon(self.reactor)
        self.loads: list[LoadResult] = []
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.before = {s: signal.getsignal(s) for s in (1, 10, 12)}

    def control(self, **kwargs: Any) -> DaemonControl:
        def load() -> LoadResult:
            return self.loads.pop(0)

        control = DaemonControl(self.daemon, self.reactor, load=load, **kwargs)
        self.addCleanup(lambda: control.running and control.stopService())
        return control

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("twinetdEvent") == kind]

    def test_signalsInstalledAndRestored(self) -> None:
        """
        SIGHUP, SIGUSR1 and SIGUSR2 are handled while the service runs; the
        handlers found at start are restored at stop.
        """
        control = self.control()
        control.privilegedStartService()
        control.startService()
        for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            self.assertNotEqual(signal.getsignal(signum), self.before[signum])
        control.stopService()
        self.assertEqual({s: signal.getsignal(s) for s in self.before}, self.before)

    def test_reaperRestored(self) -> None:
        """
        Twisted's reaper (the module attribute its C{SIGCHLD} handling
        calls) is twinetd's while the service runs and Twisted's own again
        after it stops, with every handler found at start; stopping again
        changes nothing.
        """
        reaper = process.reapAllProcesses
        chld = signal.getsignal(signal.SIGCHLD)
        control = self.control()
        control.privilegedStartService()
        control.startService()
        self.assertTrue(getattr(process.reapAllProcesses, "twinetdExitedReaper", 0))
        control.stopService()
        self.assertIs(process.reapAllProcesses, reaper)
        self.assertEqual(signal.getsignal(signal.SIGCHLD), chld)
        self.assertEqual({s: signal.getsignal(s) for s in self.before}, self.before)
        control.stopService()
        self.assertIs(process.reapAllProcesses, reaper)
        self.assertEqual({s: signal.getsignal(s) for s in self.before}, self.before)

    def test_restoredAfterFailedStart(self) -> None:
        """
        A start that fails half-way (a handler cannot be set) is undone
        by the stop: the reaper and the handlers set before the failure
        are back.
        """
        reaper = process.reapAllProcesses
        real = signal.signal

        def failing(signum: int, handler: Any) -> Any:
            if signum == signal.SIGUSR2:
                raise ValueError("signal only works in main thread")
            return real(signum, handler)

        self.patch(signal, "signal", failing)
        control = self.control()
        self.assertRaises(ValueError, control.startService)
        self.assertNotEqual(signal.getsignal(signal.SIGHUP), self.before[1])
        control.stopService()
        self.assertIs(process.reapAllProcesses, reaper)
        self.assertEqual({s: signal.getsignal(s) for s in self.before}, self.before)

    def test_umask(self) -> None:
        """
        The umask is set at start and the previous one restored at stop.
        """
        previous = os.umask(0o002)
        self.addCleanup(os.umask, previous)
        control = self.control(umask=0o027)
        control.startService()
        current = os.umask(0o027)
        self.assertEqual(current, 0o027)
        control.stopService()
        self.assertEqual(os.umask(0o002), 0o002)

    def test_sighupReloads(self) -> None:
        """
        SIGHUP loads the configuration again, reopens the logs and reloads
        the daemon, keeping a service whose new definition has errors.
        """
        stamp = serviceRecord("stamp", port=2000)
        self.daemon.records = {"stamp": stamp}
        error = problem("stamp")
        self.loads.append(LoadResult((), (error,), failed=(("stamp", error),)))
        control = self.control()
        control.startService()
        signal.getsignal(signal.SIGHUP)(signal.SIGHUP, None)  # type: ignore[operator]
        self.assertEqual(self.daemon.reloads, [[stamp]])
        self.assertEqual(self.daemon.runtime.reopened, 1)
        [kept] = self.of(RELOADED)
        self.assertEqual(
            (kept["service"], kept["change"], kept["detail"]),
            ("stamp", "kept", str(error)),
        )
        self.assertEqual(
            kept["log_format"], "{service}: {change} previous definition: {detail}"
        )

    def test_reloadsInTurn(self) -> None:
        """
        A SIGHUP during a reload starts the next reload after it.
        """
        self.loads += [LoadResult((), ()), LoadResult((), ())]
        self.daemon.reloaded = Deferred()
        control = self.control()
        control.startService()
        first, second = control.reload(), control.reload()
        self.assertEqual(len(self.daemon.reloads), 1)
        running, self.daemon.reloaded = self.daemon.reloaded, None
        running.callback(None)
        self.assertEqual(len(self.daemon.reloads), 2)
        self.successResultOf(first)
        self.successResultOf(second)

    def test_usr1ChainsAndReopens(self) -> None:
        """
        SIGUSR1 runs the handler that was there before (twistd's log
        rotation), then reopens the logs.
        """
        seen: list[int] = []
        previous = signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        control = self.control()
        control.startService()
        signal.getsignal(signal.SIGUSR1)(signal.SIGUSR1, None)  # type: ignore[operator]
        self.assertEqual((seen, self.daemon.runtime.reopened), ([signal.SIGUSR1], 1))

    def test_usr2LogsStatus(self) -> None:
        control = self.control()
        control.startService()
        signal.getsignal(signal.SIGUSR2)(signal.SIGUSR2, None)  # type: ignore[operator]
        [event] = self.of(STATUS)
        self.assertEqual(event["status"], self.daemon.status())
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertIn("service", event["table"])

    def test_readyOnceSettled(self) -> None:
        """
        READY=1 waits until every service listens or has given up (a
        service still retrying its bind holds it back).
        """
        notifier = RecordingNotifier()
        self.daemon.settled = {"a": True, "b": False}
        control = self.control(notifier=notifier)
        control.startService()
        self.reactor.advance(0)
        self.assertEqual(notifier.sent, [])
        self.daemon.settled["b"] = True
        logger = self.daemon.runtime.sinks._events
        emit(LISTENING, logger, service="b", address="::", port=1, protocol="tcp")
        self.reactor.advance(0)
        self.assertEqual(
            notifier.sent,
            [{"READY": 1, "STATUS": "2 of 2 services listening, 0 servers running"}],
        )
        emit(
            CANNOT_LISTEN, logger, file="f", line=1, service="b", address="::",
            port=1, reason="x",
        )  # fmt: skip
        self.reactor.advance(0)
        self.assertEqual(len(notifier.sent), 1)

    def test_reloadNotifies(self) -> None:
        """
        RELOADING=1 (with MONOTONIC_USEC) when a reload begins, READY=1 when
        the reloaded services have settled, STOPPING=1 at stop.
        """
        notifier = RecordingNotifier()
        self.loads.append(LoadResult((), ()))
        control = self.control(notifier=notifier)
        control.startService()
        self.reactor.advance(0)
        control.reload()
        self.reactor.advance(0)
        control.stopService()
        self.assertEqual(
            [sorted(fields) for fields in notifier.sent],
            [
                ["READY", "STATUS"],
                ["MONOTONIC_USEC", "RELOADING"],
                ["READY", "STATUS"],
                ["STATUS", "STOPPING"],
            ],
        )

    def test_statusRefreshed(self) -> None:
        """
        The STATUS= line is sent again when it changed.
        """
        notifier = RecordingNotifier()
        control = self.control(notifier=notifier)
        control.startService()
        self.reactor.advance(0)
        self.reactor.advance(control.statusInterval)
        self.assertEqual(len(notifier.sent), 1)
        self.daemon.settled = {"a": True}
        self.reactor.advance(control.statusInterval)
        self.assertEqual(
            notifier.sent[-1],
            {"STATUS": "1 of 1 services listening, 0 servers running"},
        )


class StopOnceTests(SynchronousTestCase):
    """
    L{StopOnce}: the first SIGTERM or SIGINT stops the daemon through the
    reactor's handler; one that comes while it stops is only logged.
    """

    def setUp(self) -> None:
        for signum in STOPPING_SIGNALS:
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))
        self.calls: list[int] = []
        self.reactor = FakeReactor()
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def handler(self, signum: int, frame: Any) -> None:
        self.calls.append(signum)

    def test_firstStopsThenLogged(self) -> None:
        for signum in STOPPING_SIGNALS:
            signal.signal(signum, self.handler)
        guard = StopOnce(self.reactor)
        guard.install()
        self.assertIs(signal.getsignal(signal.SIGTERM), guard)
        self.assertIs(signal.getsignal(signal.SIGINT), guard)
        guard(signal.SIGTERM, None)
        self.assertEqual(self.calls, [signal.SIGTERM])
        guard(signal.SIGTERM, None)
        guard(signal.SIGINT, None)
        self.assertEqual(self.calls, [signal.SIGTERM])
        texts = [e["log_format"].format(**e) for e in self.events]
        self.assertEqual(
            texts,
            [
                "SIGTERM while stopping: already stopping",
                "SIGINT while stopping: already stopping",
            ],
        )

    def test_noHandlerLeftAlone(self) -> None:
        """
        A signal without a handler of Python's (the reactor did not install
        its own) keeps its disposition.
        """
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, self.handler)
        StopOnce(self.reactor).install()
        self.assertEqual(signal.getsignal(signal.SIGTERM), signal.SIG_DFL)
        self.assertIsInstance(signal.getsignal(signal.SIGINT), StopOnce)
