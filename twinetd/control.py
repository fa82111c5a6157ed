# -*- test-case-name: tests.unit.test_control -*-
"""
What C{twistd twinetd} does around a running daemon, as a service an
embedding application adds to its tree (L{DaemonControl}, exported by
L{twinetd.service}): signals, umask, reaping, systemd notifications, and
the record-level part of a reload (L{keepPrevious}).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import Any, cast
from typing import Protocol as TypingProtocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, Logger

from twinetd._twistedcompat import clearExitSignal, exitSignal
from twinetd.config import LoadResult
from twinetd.earlysignals import EARLY_SIGNALS, EarlySignals
from twinetd.errors import Problem
from twinetd.logs import (
    CANNOT_LISTEN,
    EVENT_FIELD,
    LISTENING,
    RELOADED,
    STATUS,
    LogSinks,
    emit,
)
from twinetd.model import ServiceConfig
from twinetd.sdnotify import Notifier
from twinetd.spawn import installExitedReaper
from twinetd.status import ServiceState, statusTable, summaryLine

log = Logger()


class _Runtime(TypingProtocol):
    @property
    def sinks(self) -> LogSinks: ...


class Controlled(TypingProtocol):
    """
    What L{DaemonControl} needs of the daemon (a
    L{twinetd.service.TwinetdService}).
    """

    @property
    def records(self) -> Mapping[str, ServiceConfig]: ...

    @property
    def runtime(self) -> _Runtime: ...

    def reload(self, records: Iterable[ServiceConfig]) -> Deferred[None]: ...

    def states(self) -> list[ServiceState]: ...

    def status(self) -> dict[str, Any]: ...


def logProblems(result: LoadResult) -> None:
    """
    Log every problem of a configuration load, errors as errors.
    """
    for problem in result.problems:
        if problem.isError:
            log.error("{problem}", problem=str(problem), twinetdProblem=problem)
        else:
            log.warn("{problem}", problem=str(problem), twinetdProblem=problem)


def summary(result: LoadResult) -> str:
    """
    One line: how many services load, how many are skipped, how many
    warnings.
    """
    services = len(result.services)
    errors = len(result.errors)
    warnings = len(result.warnings)
    return (
        f"{services} service{'s' if services != 1 else ''} loaded, "
        f"{result.skipped} skipped, {result.disabled} disabled, "
        f"{errors} error{'s' if errors != 1 else ''}, "
        f"{warnings} warning{'s' if warnings != 1 else ''}"
    )


def keepPrevious(
    running: Mapping[str, ServiceConfig], result: LoadResult
) -> tuple[list[ServiceConfig], list[tuple[ServiceConfig, Problem]]]:
    """
    What a reload serves: the services C{result} loaded, plus the running
    definition of each service whose new one has errors (as nginx and
    HAProxy keep a configuration that does not load; xinetd drops the
    service).  A service missing from a file that now has an error outside
    any service (the file cannot be read, a line no entry holds) is kept
    too, and when the configuration cannot be read at all, every running
    service is.  A kept service that would clash with a loaded one
    (its id, or its port and protocol) is not kept.

    @param running: the records being served, by id.
    @return: the records to serve, and each kept record with the first
        error of its new definition.
    """
    records = list(result.services)
    kept: list[tuple[ServiceConfig, Problem]] = []
    if result.unreadable:
        failed = {serviceId: result.unreadable[0] for serviceId in running}
    else:
        failed = dict(result.failed)
    broken: dict[str, Problem] = {}
    for error in result.errors:
        if error.service is None:
            broken.setdefault(error.location.file, error)
    taken = {c.id for c in records} | {(c.port, c.protocol) for c in records}
    for serviceId, old in running.items():
        problem = failed.get(serviceId) or broken.get(old.source.file)
        if problem is None or serviceId in taken or (old.port, old.protocol) in taken:
            continue
        records.append(old)
        kept.append((old, problem))
    return records, kept


def _ignore(signum: int, frame: Any) -> None:
    """
    A handler that does nothing: the daemon still ignores the signal, and
    its children, where handlers revert at exec, do not.
    """


def prepareProcess() -> None:
    """
    Set the daemon process up as xinetd sets itself up, for its children:

      - the soft C{RLIMIT_NOFILE} is raised to the hard limit (children
        inherit it, as xinetd's do);
      - signals the daemon inherited as ignored (C{nohup}, a shell's
        background job) are caught by a handler that does nothing instead,
        so that no child starts with them ignored (xinetd resets every
        signal in its children).  C{SIGPIPE} and C{SIGXFSZ}, which Python
        ignores, are reset in each child by the spawner;
      - a root daemon drops its own supplementary groups: xinetd's children
        get none unless C{groups = yes} (C{setgroups(0, NULL)}), and then a
        C{user = root} child needs no switch at all, the cheap spawn.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP, signal.SIGPIPE, signal.SIGXFSZ):
            continue
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signum) == signal.SIG_IGN:
                signal.signal(signum, _ignore)
    if os.geteuid() == 0 and os.getgroups():
        with contextlib.suppress(OSError):
            os.setgroups([])


def exitZeroOnTerm(reactor: object) -> None:
    """
    After a shutdown caused by C{SIGTERM}, let twistd exit with status 0.

    twistd re-raises the signal that stopped the reactor once the reactor
    has stopped (the process ends "killed by SIGTERM", status 143); xinetd
    exits 0 on SIGTERM, and service managers count anything else as a
    failure.  Run as an "after shutdown" trigger: every service has stopped
    by then, and every child has ended.  C{SIGINT} (^C) is left to twistd.
    """
    if exitSignal(reactor) == signal.SIGTERM:
        clearExitSignal(reactor)


#: The signals L{DaemonControl} answers to.
_SIGNALS = EARLY_SIGNALS

#: The signals whose handlers (the reactor's) stop the daemon.
STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnce:
    """
    Stands in front of the reactor's C{SIGTERM} and C{SIGINT} handlers: the
    first of them stops the daemon, as before; one that comes while it is
    stopping (a second C{kill}, a service manager and a person, ^C twice)
    is logged and does nothing else.  Twisted's handler would ask the
    reactor to stop again, which logs a critical C{ReactorNotRunning}
    traceback; xinetd ignores it.
    """

    def __init__(self, fromThreads: IReactorFromThreads) -> None:
        self._fromThreads = fromThreads
        self._handlers: dict[int, Callable[[int, FrameType | None], object]] = {}
        self.stopping = False

    def install(self) -> None:
        """
        Stand in front of the handlers there now (the reactor installs its
        own as it starts running: call this once it runs).
        """
        for signum in STOPPING_SIGNALS:
            handler = signal.getsignal(signum)
            if callable(handler) and handler is not self:
                self._handlers[signum] = handler
                signal.signal(signum, self)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            self._fromThreads.callFromThread(
                log.info,
                "{signal} while stopping: already stopping",
                signal=signal.Signals(signum).name,
            )
            return
        self.stopping = True
        handler = self._handlers.get(signum)
        if handler is not None:
            handler(signum, frame)


class DaemonControl(Service):
    """
    What C{twistd twinetd} does beyond building the tree, as a service an
    embedding application adds to its own (once):

      - B{SIGHUP} (xinetd's): the configuration is loaded again with
        C{load}, the log files reopened, and the daemon changed to the new
        records (L{TwinetdService.reload}); a service whose new definition
        has errors keeps its previous one (L{keepPrevious});
      - B{SIGUSR1}: the log files are reopened, after whatever handler was
        there before (twistd rotates its own log on it);
      - B{SIGUSR2}: the status table is logged (xinetd dumps its state on
        SIGUSR1, which twistd has taken);
      - the umask children inherit (unless a service sets its own);
      - with C{processLikeXinetd}, the process set up for its children as
        xinetd's (L{prepareProcess}), exit status 0 after SIGTERM, and a
        SIGTERM or SIGINT that comes while the daemon stops logged and
        otherwise ignored (L{StopOnce}; not undone at stop);
      - Twisted reaps only the children that exited
        (L{installExitedReaper}; Twisted's reaper is back at stop);
      - systemd is told C{READY=1} once every service listens or has given
        up binding, C{RELOADING=1} and C{READY=1} around a reload,
        C{STOPPING=1} at shutdown, with a C{STATUS=} line, refreshed while
        it changes.

    A signal recorded before it starts (L{twinetd.earlysignals}: the
    daemon's entry points record them from their first moment, so that
    they do not end the process) is answered once, as soon as it has
    started (under systemd, once it was told C{READY=1}): a reload, the
    logs reopened, the status logged.  A C{SIGHUP}
    that came before the configuration was read needs no reload
    (L{EarlySignals.loading}).

    Everything is set up when the service starts and undone (the previous
    signal handlers, reaper and umask restored) when it stops, also after
    a start that failed half-way; stopping twice undoes nothing twice.

    @ivar daemon: the daemon it controls.
    @ivar umask: the umask set at start, or C{None} to leave it.
    @ivar notifier: systemd's notification socket, or C{None}.
    """

    #: Seconds between C{STATUS=} refreshes (sent only when it changed).
    statusInterval = 5.0

    def __init__(
        self,
        daemon: Controlled,
        reactor: IReactorTime,
        load: Callable[[], LoadResult] | None = None,
        *,
        umask: int | None = None,
        notifier: Notifier | None = None,
        reopen: Iterable[Callable[[], None]] = (),
        processLikeXinetd: bool = False,
    ) -> None:
        """
        @param reactor: the clock (status refreshes); it must also provide
            L{IReactorFromThreads} (signals are handled in the reactor's
            thread) and, with C{processLikeXinetd}, L{IReactorCore}.
        @param processLikeXinetd: at start, set the whole process up as
            xinetd does for its children (L{prepareProcess}), and let a
            SIGTERM shutdown exit 0 (L{exitZeroOnTerm}); the plugin does,
            an embedding application may.
        @param load: loads the configuration again (SIGHUP); C{None}: SIGHUP
            only reopens the log files.
        @param reopen: more to reopen with the services' log files (the
            plugin's JSON log).
        """
        self.daemon = daemon
        self._reactor = reactor
        self._fromThreads = IReactorFromThreads(reactor)
        self._load = load
        self.umask = umask
        self.notifier = notifier
        self._reopen = [daemon.runtime.sinks.reopenAll, *reopen]
        self._previous: dict[int, Any] = {}
        self._previousUmask: int | None = None
        self._uninstallReaper: Callable[[], None] | None = None
        self._early: list[int] = []
        self._queue: Deferred[None] = succeed(None)
        self._waiting = False
        self._status = ""
        self._refresh: LoopingCall | None = None
        self._installed = False
        self._observer = cast(ILogObserver, self._listenEvent)
        self._processLikeXinetd = processLikeXinetd
        self._exitTrigger: object = None

    # starting and stopping

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)  # type: ignore[no-untyped-call]
        self._install()

    def startService(self) -> None:
        Service.startService(self)  # type: ignore[no-untyped-call]
        self._install()
        if self.notifier is None:
            self._answerEarly()
        else:
            # The signals recorded during the start are answered once
            # systemd was told READY=1 (_checkSettled): a reload's
            # RELOADING=1 must not come before it.
            self.daemon.runtime.sinks.addObserver(self._observer)
            self._awaitSettled()
            self._refresh = LoopingCall(self._refreshStatus)
            self._refresh.clock = self._reactor
            self._refresh.start(self.statusInterval, now=False)

    def _install(self) -> None:
        # Before the listeners (they bind in privilegedStartService) and
        # after twistd daemonized, which sets umask 077 unless told.
        if self._installed:
            return
        self._installed = True
        if self.umask is not None:
            self._previousUmask = os.umask(self.umask)
        if self._processLikeXinetd:
            prepareProcess()
            if self._exitTrigger is None:
                core = IReactorCore(self._reactor)
                self._exitTrigger = core.addSystemEventTrigger(
                    "after", "shutdown", exitZeroOnTerm, self._reactor
                )
                # For the rest of the process's life: a second SIGTERM may
                # come while the children are given their kill delay.
                core.callWhenRunning(StopOnce(self._fromThreads).install)
        self._uninstallReaper = installExitedReaper()
        handlers = (self._hup, self._usr1, self._usr2)
        recorder = None
        for signum, handler in zip(_SIGNALS, handlers, strict=True):
            previous = signal.signal(signum, handler)
            self._previous[signum] = previous
            if isinstance(previous, EarlySignals):
                recorder = previous
        if recorder is not None:
            self._early = recorder.take()

    def _answerEarly(self) -> None:
        # As xinetd, whose handlers queue the signals from before it reads
        # its configuration until its loop answers them: once each here.
        actions: dict[int, Callable[[], object]] = {
            signal.SIGHUP: self.reload,
            signal.SIGUSR1: self.reopenLogs,
            signal.SIGUSR2: self.logStatus,
        }
        early, self._early = self._early, []
        for signum in early:
            log.info(
                "{signal} came while the daemon started: answered now",
                signal=signal.Signals(signum).name,
            )
            self._fromThreads.callFromThread(actions[signum])

    def stopService(self) -> None:
        Service.stopService(self)  # type: ignore[no-untyped-call]
        if self.notifier is not None:
            self.notifier.stopping()
            self.daemon.runtime.sinks.removeObserver(self._observer)
        if self._refresh is not None and self._refresh.running:
            self._refresh.stop()
        self._refresh = None
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
        if self._uninstallReaper is not None:
            self._uninstallReaper()
            self._uninstallReaper = None
        if self._previousUmask is not None:
            os.umask(self._previousUmask)
            self._previousUmask = None
        self._installed = False

    # signals: handled in the reactor's thread, outside the handler

    def _hup(self, signum: int, frame: FrameType | None) -> None:
        self._fromThreads.callFromThread(self.reload)

    def _usr1(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum)
        if callable(previous) and not isinstance(previous, EarlySignals):
            previous(signum, frame)
        self._fromThreads.callFromThread(self.reopenLogs)

    def _usr2(self, signum: int, frame: FrameType | None) -> None:
        self._fromThreads.callFromThread(self.logStatus)

    # what they do

    def reopenLogs(self) -> None:
        """
        Reopen the services' log files (and the others given).
        """
        for reopen in self._reopen:
            reopen()

    def logStatus(self) -> None:
        """
        Log the status (SIGUSR2): the table, and the document as a field.
        """
        document = self.daemon.status()
        emit(STATUS, log, table=statusTable(document), status=document)

    def reload(self) -> Deferred[None]:
        """
        Load the configuration again and serve it (SIGHUP); reloads asked
        for while one runs follow it in turn.

        @return: fires when this reload is done.
        """
        done: Deferred[None] = Deferred()

        def step(_: object) -> Deferred[None]:
            d: Deferred[None] = maybeDeferred(self._reloadNow)
            d.addErrback(lambda f: log.failure("while reloading", f))
            return d.addBoth(lambda _: done.callback(None))

        self._queue.addCallback(step)
        return done

    def _reloadNow(self) -> Deferred[None]:
        if self._load is None:
            self.reopenLogs()
            return succeed(None)
        log.info("SIGHUP: reloading the configuration")
        if self.notifier is not None:
            self.notifier.reloading()
        self.reopenLogs()
        result = self._load()
        logProblems(result)
        log.info("{summary}", summary=summary(result))
        records, kept = keepPrevious(self.daemon.records, result)
        for config, problem in kept:
            emit(RELOADED, log, service=config.id, change="kept", detail=str(problem))
        d = self.daemon.reload(records)
        return d.addCallback(lambda _: self._awaitSettled())

    # systemd

    def _awaitSettled(self) -> None:
        if self.notifier is None:
            return
        self._waiting = True
        # Once the services started with this one (or by this reload) have.
        self._reactor.callLater(0, self._checkSettled)

    def _listenEvent(self, event: dict[str, Any]) -> None:
        if self._waiting and event.get(EVENT_FIELD) in (LISTENING, CANNOT_LISTEN):
            self._reactor.callLater(0, self._checkSettled)

    def _checkSettled(self) -> None:
        states = self.daemon.states()
        ready = self._waiting and self.running and all(s.settled for s in states)
        if ready and self.notifier is not None:
            self._waiting = False
            self._status = summaryLine(states)
            self.notifier.ready(self._status)
            self._answerEarly()

    def _refreshStatus(self) -> None:
        status = summaryLine(self.daemon.states())
        if self.notifier is not None and not self._waiting and status != self._status:
            self._status = status
            self.notifier.status(status)
