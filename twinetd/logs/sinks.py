# -*- test-case-name: tests.unit.test_logevents -*-
"""
Where xinetd-format lines go: the FILE and SYSLOG sinks of C{log_type}, and
the observers that feed them from the event stream.

A daemon's L{LogSinks} owns its open sinks and its event stream: every
service's events pass through the service's L{ServiceLines} (its xinetd
lines, as its C{log_on_success} / C{log_on_failure} ask) and then through
L{LogSinks.stream}, to which a status or metrics view adds itself as one
more observer, and which ends in twistd's log.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import Any
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import ILogObserver, Logger, LogPublisher
from zope.interface import implementer

from twinetd.logs.events import (
    LOG_PROBLEM,
    PROBLEM_HARD_LIMIT,
    PROBLEM_OPEN,
    PROBLEM_SOFT_LIMIT,
    PROBLEM_SYSLOG,
    PROBLEM_WRITE,
    ServiceLog,
    emit,
)
from twinetd.logs.events import log as eventLog
from twinetd.logs.xinetd import fileTimestamp, lineFor, syslogTimestamp
from twinetd.model import FileTarget, LogTarget, ServiceConfig, SyslogTarget

log = Logger()

#: Where the local syslog daemon listens.
DEV_LOG = "/dev/log"

# syslog.h's facility and level numbers (RFC 3164 section 4.1.1).
SYSLOG_FACILITY_CODES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}
SYSLOG_LEVEL_CODES = {
    "emerg": 0,
    "alert": 1,
    "crit": 2,
    "err": 3,
    "warning": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
}

# xconfig.h's LOG_EXTRA_MIN / LOG_EXTRA_MAX: how far the default hard limit
# lies above the soft limit (1% of it, within these bounds).
LOG_EXTRA_MIN = 5 * 1024
LOG_EXTRA_MAX = 20 * 1024

LocalTime = Callable[[float], time.struct_time]


def defaultHardLimit(softLimit: int) -> int:
    """
    xinetd's hard limit for C{log_type = FILE path soft}: the soft limit plus
    1%, the extra kept within [L{LOG_EXTRA_MIN}, L{LOG_EXTRA_MAX}].
    """
    return softLimit + min(max(softLimit // 100, LOG_EXTRA_MIN), LOG_EXTRA_MAX)


def _logProblem(
    logger: Logger, sink: str, problem: str, error: str, message: str
) -> None:
    emit(LOG_PROBLEM, logger, sink=sink, problem=problem, error=error, message=message)


class LineSink(TypingProtocol):
    """
    Where a service's xinetd-format lines go.
    """

    def write(self, message: str, sizeCheck: bool = True) -> None:
        """
        Write one line (without time stamp or line end).  C{sizeCheck=False}
        for lines xinetd writes with C{XLOG_NO_SIZECHECK} (C{USERID},
        C{TRAFFIC}): they do not count towards a FILE log's limits.
        """

    def reopen(self) -> None:
        """
        Close and open again (log rotation).
        """

    def close(self) -> None:
        """
        Release the file or socket.
        """


class FileSink:
    """
    C{log_type = FILE path [soft [hard]]}: xinetd-format lines appended to a
    file.

    Each line is one C{write(2)} on a descriptor opened with C{O_APPEND}
    (mode 0644, as xinetd's C{LOG_OPEN_FLAGS} and C{LOG_FILE_MODE}): lines
    of several services sharing the file never interleave.  The write is
    synchronous, as xinetd's; a local file takes microseconds.

    Size control (only with a soft limit), as xinetd's filelog.c: the size
    is the file's at opening plus what was written since; past the soft
    limit one warning goes to twistd's log; past the hard limit one error,
    and the file gets no more lines until L{reopen}.  The line that passes a
    limit is still written.

    @ivar path: the file.
    @ivar softLimit: bytes, or C{None} for no size control.
    @ivar hardLimit: bytes; defaults to L{defaultHardLimit}.
    @ivar size: the size as counted for the limits.
    @ivar closed: the hard limit was passed (or the file could not be
        opened): lines are dropped until L{reopen}.
    """

    def __init__(
        self,
        path: str,
        softLimit: int | None,
        hardLimit: int | None,
        clock: IReactorTime,
        localtime: LocalTime = time.localtime,
        logger: Logger = log,
    ) -> None:
        self.path = path
        self.softLimit = softLimit
        if hardLimit is None and softLimit is not None:
            hardLimit = defaultHardLimit(softLimit)
        self.hardLimit = hardLimit
        self._clock = clock
        self._localtime = localtime
        self._log = logger
        self._fd: int | None = None
        self.size = 0
        self.closed = True
        self._warnedSoft = False
        self._writeFailing = False

    def open(self) -> None:
        """
        Open (or create) the file.

        @raise OSError: it cannot be opened (xinetd then disables the
            service).
        """
        fd = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        self._close()
        self._fd = fd
        self.closed = False
        self._warnedSoft = False
        self._writeFailing = False
        try:
            self.size = os.fstat(fd).st_size
        except OSError:
            self.size = 0
        self._checkLimits()

    def write(self, message: str, sizeCheck: bool = True) -> None:
        if self._fd is None or self.closed:
            return
        stamp = fileTimestamp(self._localtime(self._clock.seconds()))
        data = f"{stamp}: {message}\n".encode("utf-8", "backslashreplace")
        try:
            os.write(self._fd, data)
        except OSError as e:
            if not self._writeFailing:
                self._writeFailing = True
                _logProblem(
                    self._log,
                    self.path,
                    PROBLEM_WRITE,
                    e.strerror or str(e),
                    "cannot write: lines are lost",
                )
            return
        self._writeFailing = False
        if sizeCheck and self.softLimit is not None:
            self.size += len(data)
            self._checkLimits()

    def _checkLimits(self) -> None:
        if self.softLimit is None or self.size <= self.softLimit:
            return
        if not self._warnedSoft:
            self._warnedSoft = True
            _logProblem(
                self._log,
                self.path,
                PROBLEM_SOFT_LIMIT,
                "",
                f"soft limit ({self.softLimit} bytes) exceeded",
            )
        if self.hardLimit is not None and self.size > self.hardLimit:
            self.closed = True
            _logProblem(
                self._log,
                self.path,
                PROBLEM_HARD_LIMIT,
                "",
                f"hard limit ({self.hardLimit} bytes) exceeded; log closed",
            )

    def reopen(self) -> None:
        """
        Close the file and open its path again (after rotation), measuring
        the size afresh; a failure is logged and the lines dropped until the
        next L{reopen}.
        """
        self._close()
        try:
            self.open()
        except OSError as e:
            _logProblem(
                self._log,
                self.path,
                PROBLEM_OPEN,
                e.strerror or str(e),
                "cannot open: lines are lost",
            )

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        self.closed = True

    def close(self) -> None:
        self._close()


class SyslogSink:
    """
    C{log_type = SYSLOG facility [level]}: xinetd-format lines (without the
    FILE time stamp) sent to the local syslog daemon.

    Packets are RFC 3164 as glibc's C{syslog(3)} sends them for xinetd,
    C{<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE}, without host name or line
    end, to an C{AF_UNIX} datagram socket in non-blocking mode.  When no
    daemon listens (no socket, C{ECONNREFUSED}) or it cannot keep up
    (C{EAGAIN}), lines are dropped: one warning goes to twistd's log per
    outage, and the next line tries again.

    @ivar priority: C{facility * 8 + level}.
    """

    def __init__(
        self,
        facility: str,
        level: str,
        clock: IReactorTime,
        localtime: LocalTime = time.localtime,
        path: str = DEV_LOG,
        tag: str = "twinetd",
        pid: Callable[[], int] = os.getpid,
        logger: Logger = log,
    ) -> None:
        """
        @param tag: the program name in each packet; xinetd's is C{xinetd}
            (give that for log parsers that expect it).
        @param pid: the daemon's pid, asked for each packet (twistd may
            fork after the sinks are made).
        """
        self.priority = SYSLOG_FACILITY_CODES[facility] * 8 + SYSLOG_LEVEL_CODES[level]
        self.path = path
        self.tag = tag
        self._clock = clock
        self._localtime = localtime
        self._pid = pid
        self._log = logger
        self._socket: socket.socket | None = None
        self._failing = False

    def packet(self, message: str) -> bytes:
        """
        The datagram for one line.
        """
        stamp = syslogTimestamp(self._localtime(self._clock.seconds()))
        text = f"<{self.priority}>{stamp} {self.tag}[{self._pid()}]: {message}"
        return text.encode("utf-8", "backslashreplace")

    def write(self, message: str, sizeCheck: bool = True) -> None:
        data = self.packet(message)
        try:
            if self._socket is None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                try:
                    s.setblocking(False)
                    s.connect(self.path)
                except OSError:
                    s.close()
                    raise
                self._socket = s
            self._socket.send(data)
        except OSError as e:
            if not isinstance(e, BlockingIOError):
                # Reconnect next time: the daemon may have restarted.
                self.close()
            if not self._failing:
                self._failing = True
                _logProblem(
                    self._log,
                    f"syslog:{self.path}",
                    PROBLEM_SYSLOG,
                    e.strerror or str(e),
                    "syslog unreachable: lines are lost",
                )
            return
        self._failing = False

    def reopen(self) -> None:
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            s, self._socket = self._socket, None
            s.close()


@implementer(ILogObserver)
class ServiceLines:
    """
    One service's xinetd lines: an observer of that service's events that
    writes to its sink the lines its C{log_on_success} / C{log_on_failure}
    ask for (L{lineFor}).
    """

    def __init__(
        self,
        sink: LineSink,
        onSuccess: AbstractSet[str] = frozenset(),
        onFailure: AbstractSet[str] = frozenset(),
    ) -> None:
        self.sink = sink
        self.onSuccess = frozenset(onSuccess)
        self.onFailure = frozenset(onFailure)

    def __call__(self, event: dict[str, Any]) -> None:
        found = lineFor(event, self.onSuccess, self.onFailure)
        if found is not None:
            line, sizeCheck = found
            self.sink.write(line, sizeCheck)


class LogSinks:
    """
    A daemon's log: its event stream and its open sinks.  Sinks are shared
    by services: one L{FileSink} per path (services with the same file,
    typically a C{log_type} in C{defaults}, write through one descriptor and
    share its limits, those of the first service that named it) and one
    L{SyslogSink} per facility and level.

    @ivar stream: every event of the daemon's services, after their xinetd
        lines; add observers to it (L{addObserver}).
    """

    def __init__(
        self,
        clock: IReactorTime,
        localtime: LocalTime = time.localtime,
        syslogPath: str = DEV_LOG,
        syslogTag: str = "twinetd",
        logger: Logger = log,
    ) -> None:
        """
        @param logger: where the stream ends (twistd's log by default).  The
            sinks' own problems (L{LOG_PROBLEM}) go through the stream too.
        """
        self._clock = clock
        self._localtime = localtime
        self._syslogPath = syslogPath
        self._syslogTag = syslogTag
        self.stream = LogPublisher(logger.observer)
        self._events = Logger(eventLog.namespace, observer=self.stream)
        self._files: dict[str, FileSink] = {}
        self._syslogs: dict[tuple[str, str], SyslogSink] = {}

    def addObserver(self, observer: ILogObserver) -> None:
        """
        Let C{observer} see every event of the daemon's services.
        """
        self.stream.addObserver(observer)

    def removeObserver(self, observer: ILogObserver) -> None:
        self.stream.removeObserver(observer)

    def sinkFor(self, target: LogTarget | None) -> LineSink | None:
        """
        The sink of a C{log_type}, opened on first use.

        @raise OSError: a FILE log cannot be opened.
        """
        if target is None:
            return None
        if isinstance(target, FileTarget):
            key = os.path.normpath(target.path)
            sink = self._files.get(key)
            if sink is None:
                sink = FileSink(
                    target.path,
                    target.softLimit,
                    target.hardLimit,
                    self._clock,
                    self._localtime,
                    self._events,
                )
                sink.open()
                self._files[key] = sink
            return sink
        syslogKey = (target.facility, target.level)
        syslog = self._syslogs.get(syslogKey)
        if syslog is None:
            syslog = self._syslogs[syslogKey] = SyslogSink(
                target.facility,
                target.level,
                self._clock,
                self._localtime,
                self._syslogPath,
                self._syslogTag,
                logger=self._events,
            )
        return syslog

    def serviceLog(self, config: ServiceConfig) -> ServiceLog:
        """
        The L{ServiceLog} of a service: its events go through its xinetd
        lines (when it has a C{log_type}) into L{stream}.

        @raise OSError: its FILE log cannot be opened (xinetd disables such
            a service).
        """
        sink = self.sinkFor(config.logType)
        lines = None
        if sink is not None:
            lines = ServiceLines(sink, config.logOnSuccess, config.logOnFailure)
        return ServiceLog.fromConfig(config, lines, self._events, self._clock)

    def keepOnly(self, targets: Iterable[LogTarget | None]) -> None:
        """
        Close the sinks no target of C{targets} uses (after a reload).
        """
        files = set()
        syslogs = set()
        for target in targets:
            if isinstance(target, FileTarget):
                files.add(os.path.normpath(target.path))
            elif isinstance(target, SyslogTarget):
                syslogs.add((target.facility, target.level))
        for key in set(self._files) - files:
            self._files.pop(key).close()
        for syslogKey in set(self._syslogs) - syslogs:
            self._syslogs.pop(syslogKey).close()

    def _sinks(self) -> list[LineSink]:
        return [*self._files.values(), *self._syslogs.values()]

    def reopenAll(self) -> None:
        """
        Reopen every sink (log rotation, C{SIGHUP}).
        """
        for sink in self._sinks():
            sink.reopen()

    def close(self) -> None:
        """
        Close every sink.
        """
        for sink in self._sinks():
            sink.close()
        self._files.clear()
        self._syslogs.clear()
