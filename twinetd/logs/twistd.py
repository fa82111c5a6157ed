# -*- test-case-name: tests.unit.test_twistdlog -*-
"""
What twistd's log shows of the daemon (C{twistd twinetd} sets this up; an
application embedding twinetd keeps its own log as it is):

  - each bridged connection's byte counts (L{RELAYED}, for the metrics)
    left out;
  - Twisted's per-service noise left out: each port's C{StreamFactory
    starting on N} and C{(TCP Port N Closed)}, and the C{Starting factory}
    / C{Starting protocol} lines of twinetd's own factories and protocols
    (the daemon logs one C{listening} line per service instead);
  - connections Twisted could not accept (a daemon out of descriptors logs
    one line per connection) logged once, then summarised at most once a
    second (L{ACCEPT_FAILED}, L{ACCEPT_FAILURES});
  - the JSON log, when asked for;
  - one summary line once the daemon has started (L{STARTED}).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogPublisher,
    globalLogPublisher,
)
from zope.interface import implementer

from twinetd._twistedcompat import (
    acceptFailure,
    isAcceptNote,
    isLifecycleLine,
    isPortLine,
    observersOf,
)
from twinetd.logs.events import (
    ACCEPT_FAILED,
    ACCEPT_FAILURES,
    CANNOT_LISTEN,
    EVENT_FIELD,
    LISTENING,
    RELAYED,
    STARTED,
    emit,
)
from twinetd.logs.jsonlog import JsonLog
from twinetd.logs.repeats import Summariser
from twinetd.logs.sinks import LogSinks

log = Logger()


def _strerror(name: str) -> str:
    number = getattr(errno, name, None)
    return os.strerror(number) if isinstance(number, int) else name


@implementer(ILogObserver)
class TwistdLogFilter:
    """
    Stands in front of twistd's log observers: leaves out Twisted's
    per-service noise and summarises failed accepts; everything else
    passes.
    """

    def __init__(
        self, observer: ILogObserver, clock: IReactorTime, logger: Logger = log
    ) -> None:
        """
        @param observer: where the events that pass go.
        @param logger: where the accept failures are logged (back through
            this filter when it observes C{logger}'s publisher).
        """
        self.observer = observer
        self._logger = logger
        self._accepts = Summariser(clock, self._summarise)

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get(EVENT_FIELD)
        if kind is not None:
            # twinetd's own (every connection's): no need to look further.
            if kind != RELAYED:
                self.observer(event)
            return
        reason = acceptFailure(event)
        if reason is not None:
            if self._accepts.add(reason):
                emit(
                    ACCEPT_FAILED,
                    self._logger,
                    reason=reason,
                    message=_strerror(reason),
                )
            return
        if (
            isAcceptNote(event)
            or isPortLine(event)
            or isLifecycleLine(event, "twinetd.")
        ):
            return
        self.observer(event)

    def _summarise(self, reasons: dict[str, int], interval: float) -> None:
        emit(
            ACCEPT_FAILURES,
            self._logger,
            count=sum(reasons.values()),
            reasons=reasons,
            interval=interval,
        )


class FastText:
    """
    The text of twistd's log for twinetd's own events (one line for each
    connection's C{START} and C{EXIT}), as Twisted's classic format writes
    it but without its general formatter and a time zone computation per
    line: their literal formats through C{str.format_map}, the time stamp
    once a second.  Any other event, or one this cannot format, goes to the
    original formatter.

    @ivar original: the formatter it stands in front of.
    """

    _PROBE = " [-] -\n"

    def __init__(self, original: Callable[[LogEvent], str | None]) -> None:
        self.original = original
        self._second: int | None = None
        self._stamp = ""

    @classmethod
    def inFrontOf(cls, original: Callable[[LogEvent], str | None]) -> FastText | None:
        """
        A L{FastText} for C{original}, or C{None} when its time stamps are
        not the same for a whole second (they change within one).
        """
        fast = cls(original)
        second = 1_700_000_000.0
        if fast._stampOf(second) != fast._stampOf(second + 0.999):
            return None
        return fast

    def _stampOf(self, when: float) -> str | None:
        text = self.original({"log_format": "-", "log_time": when, "log_system": "-"})
        if text is None or not text.endswith(self._PROBE):
            return None
        return text[: -len(self._PROBE)]

    def __call__(self, event: LogEvent) -> str | None:
        format = event.get("log_format")
        when = event.get("log_time")
        if (
            EVENT_FIELD not in event
            or "log_failure" in event
            or not isinstance(format, str)
            or not isinstance(when, float)
        ):
            return self.original(event)
        try:
            text = format.format_map(event)
        except Exception:
            return self.original(event)
        if not text:
            return None
        second = int(when)
        if second != self._second:
            stamp = self._stampOf(when)
            if stamp is None:
                return self.original(event)
            self._second, self._stamp = second, stamp
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            name = "-" if level is None else level.name
            system = f"{event.get('log_namespace', '-')}#{name}"
        line = f"{self._stamp} [{system}] {text}"
        return line.replace("\n", "\n\t") + "\n"


def fastText(observer: ILogObserver) -> None:
    """
    Put a L{FastText} in front of a text file observer's formatter.
    """
    if isinstance(observer, FileLogObserver) and not isinstance(
        observer.formatEvent, FastText
    ):
        fast = FastText.inFrontOf(observer.formatEvent)
        if fast is not None:
            observer.formatEvent = fast


def filterObservers(
    publisher: LogPublisher, clock: IReactorTime, logger: Logger = log
) -> TwistdLogFilter:
    """
    Put a L{TwistdLogFilter} in front of C{publisher}'s observers (twistd's
    log file, syslog, ...), once.
    """
    observers = observersOf(publisher)
    for observer in observers:
        if isinstance(observer, TwistdLogFilter):
            return observer
    for observer in observers:
        publisher.removeObserver(observer)
        fastText(observer)
    installed = TwistdLogFilter(LogPublisher(*observers), clock, logger)
    publisher.addObserver(installed)
    return installed


@attrs.frozen
class LoadCounts:
    """
    What the configuration load gave, for the startup summary.

    @ivar services: services to serve.
    @ivar skipped: services left out (errors in their configuration, or
        the runtime cannot serve them).
    @ivar errors: configuration errors.
    @ivar warnings: configuration warnings.
    """

    services: int
    skipped: int
    errors: int
    warnings: int


@implementer(ILogObserver)
class _Tally:
    """
    The services that reported listening.
    """

    def __init__(self) -> None:
        self.listening: set[str] = set()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get(EVENT_FIELD)
        if kind == LISTENING:
            self.listening.add(event["service"])
        elif kind == CANNOT_LISTEN:
            self.listening.discard(event["service"])


@attrs.define(eq=False, slots=False)
class TwistdLog(Service):
    """
    Sets up twistd's log for the daemon.  It must start before the
    daemon's listeners (they listen in C{privilegedStartService}, and
    Twisted logs a line for each port then): add it first.

    @ivar _sinks: the daemon's event stream (its listening lines).
    @ivar _counts: what the configuration load gave.
    @ivar jsonLog: the JSON log, or C{None}.
    @ivar _publisher: where twistd's observers are.
    """

    _clock: IReactorTime
    _sinks: LogSinks
    _counts: LoadCounts
    jsonLog: JsonLog | None = None
    _publisher: LogPublisher = globalLogPublisher
    _logger: Logger = log
    _tally: _Tally = attrs.field(factory=_Tally, init=False)
    filter: TwistdLogFilter | None = attrs.field(default=None, init=False)

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)  # type: ignore[no-untyped-call]
        if self.filter is None:
            # twistd adds its observers after makeService and before this.
            self.filter = filterObservers(self._publisher, self._clock, self._logger)
            if self.jsonLog is not None:
                self._publisher.addObserver(self.jsonLog)
            self._sinks.addObserver(self._tally)

    def startService(self) -> None:
        Service.startService(self)  # type: ignore[no-untyped-call]
        if self.filter is None:
            self.privilegedStartService()
        # Once every service has started (this one starts first).
        self._clock.callLater(0, self._started)

    def _started(self) -> None:
        self._sinks.removeObserver(self._tally)
        counts = self._counts
        listening = len(self._tally.listening)
        emit(
            STARTED,
            self._logger,
            services=counts.services,
            listening=listening,
            notListening=counts.services - listening,
            skipped=counts.skipped,
            errors=counts.errors,
            warnings=counts.warnings,
        )

    def reopen(self) -> None:
        """
        Reopen the JSON log (log rotation).
        """
        if self.jsonLog is not None:
            self.jsonLog.reopen()
