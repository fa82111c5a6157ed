"""
Log events: their names, fields and xinetd-shaped text.

Every event carries C{twinetdEvent} (one of the names below) and named
fields; tests and sinks read the fields, people read the text.  The text of
C{START} and C{EXIT} follows xinetd's log lines.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twinetd.model import (
    FileTarget,
    LogTarget,
    Peer,
    ServiceConfig,
    SocketType,
    SyslogTarget,
)

log = Logger(namespace="twinetd")

#: The field naming the kind of a twinetd event.
EVENT_FIELD = "twinetdEvent"

#: A child was started.  Fields: C{service}, C{pid}, C{host}, C{port}.
START = "start"
#: A child exited.  Fields: C{service}, C{pid}, C{status} (exit code, or
#: C{None} when killed by a signal), C{signal} (signal number or C{None}),
#: C{duration} (seconds, a float).
EXIT = "exit"
#: A child could not be started.  Fields: C{service}, C{host}, C{port},
#: C{message}.
SPAWN_FAILED = "spawnFailed"
#: One line a child wrote to its standard error.  Fields: C{service},
#: C{pid}, C{line} (text, without the line end), C{truncated} (whether the
#: line was cut at the length limit).
STDERR = "stderr"


def logStart(
    service: str, pid: int | None, host: str, port: int, logger: Logger = log
) -> None:
    """
    Log the start of a child for a client at C{host}:C{port}.
    """
    logger.info(
        "START: {service} pid={pid} from={host}",
        twinetdEvent=START,
        service=service,
        pid=pid,
        host=host,
        port=port,
    )


def logExit(
    service: str,
    pid: int | None,
    status: int | None,
    signal: int | None,
    duration: float,
    logger: Logger = log,
) -> None:
    """
    Log the end of a child: its exit C{status}, or the C{signal} that
    killed it.
    """
    if signal is not None:
        logger.info(
            "EXIT: {service} signal={signal} pid={pid} duration={duration:.0f}(sec)",
            twinetdEvent=EXIT,
            service=service,
            pid=pid,
            status=None,
            signal=signal,
            duration=duration,
        )
    else:
        logger.info(
            "EXIT: {service} status={status} pid={pid} duration={duration:.0f}(sec)",
            twinetdEvent=EXIT,
            service=service,
            pid=pid,
            status=status,
            signal=None,
            duration=duration,
        )


def logSpawnFailed(
    service: str, host: str, port: int, message: str, logger: Logger = log
) -> None:
    """
    Log that the server of C{service} could not be started for a client.
    """
    logger.error(
        "FAIL: {service} cannot start server for {host}: {message}",
        twinetdEvent=SPAWN_FAILED,
        service=service,
        host=host,
        port=port,
        message=message,
    )


def logStderr(
    service: str,
    pid: int | None,
    line: str,
    truncated: bool = False,
    logger: Logger = log,
) -> None:
    """
    Log one line of a child's standard error.
    """
    logger.warn(
        "{service}[{pid}]: {line}",
        twinetdEvent=STDERR,
        service=service,
        pid=pid,
        line=line,
        truncated=truncated,
    )


#: A redirect service's relay ended (xinetd's C{log_on_success = TRAFFIC}).
#: Fields: C{service}, C{bytesIn} (bytes read from the client),
#: C{bytesOut} (bytes read from the target, sent to the client).
TRAFFIC = "traffic"
#: A redirect service could not connect to its target; the client is closed.
#: Fields: C{service}, C{host}, C{port} (the client), C{targetHost},
#: C{targetPort}, C{reason} (text).
REDIRECT_FAILED = "redirectFailed"


def logTraffic(service: str, bytesIn: int, bytesOut: int, logger: Logger = log) -> None:
    """
    Log the bytes a redirect relayed each way, as xinetd's C{TRAFFIC} line.
    """
    logger.info(
        "TRAFFIC: {service} in={bytesIn}(bytes) out={bytesOut}(bytes)",
        twinetdEvent=TRAFFIC,
        service=service,
        bytesIn=bytesIn,
        bytesOut=bytesOut,
    )


def logRedirectFailed(
    service: str,
    host: str,
    port: int,
    targetHost: str,
    targetPort: int,
    reason: str,
    logger: Logger = log,
) -> None:
    """
    Log that a redirect could not reach its target for a client (xinetd's
    C{can't connect to remote host}).
    """
    logger.error(
        "FAIL: {service} can't connect to remote host {targetHost} port "
        "{targetPort} for {host}: {reason}",
        twinetdEvent=REDIRECT_FAILED,
        service=service,
        host=host,
        port=port,
        targetHost=targetHost,
        targetPort=targetPort,
        reason=reason,
    )


# Datagram services (twinetd.listeners.datagram).

#: A connection or datagram was refused (xinetd's C{FAIL} line).  Fields:
#: C{service}, C{reason} (xinetd's reason: C{address}, C{service_limit},
#: ...), C{detail}, C{host}, C{port}.
FAIL = "fail"
#: Datagrams were dropped since the last such event (at most one per
#: second per service).  Fields: C{service}, C{count}, C{reasons} (a dict
#: of reason to count), C{interval} (seconds covered).
DGRAM_DROPPED = "dgramDropped"
#: A child's reply did not fit in one datagram; the excess was dropped.
#: Fields: C{service}, C{pid}, C{sent} (bytes sent), C{dropped} (bytes
#: dropped).
REPLY_TRUNCATED = "replyTruncated"
#: A reply could not be sent.  Fields: C{service}, C{pid}, C{host},
#: C{port}, C{message}.
REPLY_FAILED = "replyFailed"
#: A C{wait = yes} datagram service waits before watching its socket again,
#: because its last child failed or left datagrams unread.  Fields:
#: C{service}, C{pid}, C{delay} (seconds), C{failures} (in a row).
DGRAM_BACKOFF = "dgramBackoff"


def logFail(
    service: str,
    reason: str,
    host: str,
    port: int | None,
    detail: str = "",
    logger: Logger = log,
) -> None:
    """
    Log a refusal as xinetd does: C{FAIL: service reason from=host}.
    """
    logger.info(
        "FAIL: {service} {reason} from={host}",
        twinetdEvent=FAIL,
        service=service,
        reason=reason,
        detail=detail,
        host=host,
        port=port,
    )


def logDatagramsDropped(
    service: str,
    reasons: dict[str, int],
    interval: float,
    logger: Logger = log,
) -> None:
    """
    Log a summary of the datagrams dropped over the last C{interval}
    seconds (a flood is logged at a bounded rate, not per datagram).
    """
    logger.warn(
        "{service}: dropped {count} datagrams in {interval:.1f}s: {reasons}",
        twinetdEvent=DGRAM_DROPPED,
        service=service,
        count=sum(reasons.values()),
        reasons=dict(reasons),
        interval=interval,
    )


def logReplyTruncated(
    service: str, pid: int | None, sent: int, dropped: int, logger: Logger = log
) -> None:
    """
    Log that a child wrote more than one datagram can carry.
    """
    logger.warn(
        "{service}[{pid}]: reply truncated to {sent} bytes, {dropped} bytes dropped",
        twinetdEvent=REPLY_TRUNCATED,
        service=service,
        pid=pid,
        sent=sent,
        dropped=dropped,
    )


def logReplyFailed(
    service: str,
    pid: int | None,
    host: str,
    port: int,
    message: str,
    logger: Logger = log,
) -> None:
    """
    Log that a child's reply could not be sent to C{host}.
    """
    logger.warn(
        "{service}[{pid}]: cannot send reply to {host}: {message}",
        twinetdEvent=REPLY_FAILED,
        service=service,
        pid=pid,
        host=host,
        port=port,
        message=message,
    )


def logDatagramBackoff(
    service: str,
    pid: int | None,
    delay: float,
    failures: int,
    logger: Logger = log,
) -> None:
    """
    Log that a C{wait = yes} datagram service pauses before its next child.
    """
    logger.warn(
        "{service}: child {pid} failed or left datagrams unread ({failures} in "
        "a row); waiting {delay:.1f}s before the next one",
        twinetdEvent=DGRAM_BACKOFF,
        service=service,
        pid=pid,
        delay=delay,
        failures=failures,
    )


# xinetd's per-service log: log_type, log_on_success, log_on_failure.
#
# The events above always go to twistd's log.  The xinetd-format lines below
# are written only for services with a log_type, with the fields their
# log_on_success / log_on_failure ask for, as xinetd's log.c does.  The
# runtime calls a ServiceLog, which does both, so nothing is emitted twice.

#: The client's identity as its ident server (RFC 1413) gave it.  Fields:
#: C{service}, C{text} (what follows C{USERID :} in the reply, e.g.
#: C{UNIX : alice}, as xinetd logs it).
USERID = "userid"
#: A per-service log sink has a problem: a FILE log passed its soft or hard
#: limit, could not be opened or written, or syslog is unreachable.  Fields:
#: C{sink} (the file's path, or C{syslog:PATH}), C{problem} (one of the
#: C{PROBLEM_*} values), C{error} (text, may be empty).
LOG_PROBLEM = "logProblem"

PROBLEM_SOFT_LIMIT = "softLimit"
PROBLEM_HARD_LIMIT = "hardLimit"
PROBLEM_OPEN = "open"
PROBLEM_WRITE = "write"
PROBLEM_SYSLOG = "syslog"

#: xinetd's FAIL reason when a server cannot be started (C{AC_FORK}).
REASON_FORK = "fork"
#: What xinetd prints for a client without an address (wait = yes stream).
NO_ADDRESS = "<no address>"

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

_MONTHS = [
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
]

LocalTime = Callable[[float], time.struct_time]


def logUserid(service: str, text: str, logger: Logger = log) -> None:
    """
    Log what the client's ident server said about the user.
    """
    logger.info(
        "USERID: {service} {text}", twinetdEvent=USERID, service=service, text=text
    )


def _logProblem(
    logger: Logger, sink: str, problem: str, error: str, message: str
) -> None:
    logger.warn(
        "log {sink}: {message}",
        twinetdEvent=LOG_PROBLEM,
        sink=sink,
        problem=problem,
        error=error,
        message=message,
    )


def defaultHardLimit(softLimit: int) -> int:
    """
    xinetd's hard limit for C{log_type = FILE path soft}: the soft limit plus
    1%, the extra kept within [L{LOG_EXTRA_MIN}, L{LOG_EXTRA_MAX}].
    """
    return softLimit + min(max(softLimit // 100, LOG_EXTRA_MIN), LOG_EXTRA_MAX)


def fileTimestamp(t: time.struct_time) -> str:
    """
    xinetd's FILE log time stamp, C{"%02d/%d/%d@%02d:%02d:%02d"} (filelog.c):
    month and day are I{not} zero-padded (C{26/1/5@09:03:07}).
    """
    return (
        f"{t.tm_year % 100:02d}/{t.tm_mon}/{t.tm_mday}"
        f"@{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


def syslogTimestamp(t: time.struct_time) -> str:
    """
    RFC 3164's C{TIMESTAMP} (C{Mmm dd hh:mm:ss}, the day space-padded), in
    English whatever the locale.
    """
    return (
        f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


def _from(peer: Peer | None) -> str:
    return f" from={peer.remoteHost if peer is not None else NO_ADDRESS}"


def startLine(
    service: str, onSuccess: AbstractSet[str], pid: int | None, peer: Peer | None
) -> str | None:
    """
    xinetd's C{START} line (C{svc_log_success}): written when
    C{log_on_success} has any value; C{pid=} with C{PID}, C{from=} with
    C{HOST}.
    """
    if not onSuccess:
        return None
    line = f"START: {service}"
    if "PID" in onSuccess:
        line += f" pid={0 if pid is None else pid}"
    if "HOST" in onSuccess:
        line += _from(peer)
    return line


def exitLine(
    service: str,
    onSuccess: AbstractSet[str],
    pid: int | None,
    status: int | None,
    signal: int | None,
    duration: float,
) -> str | None:
    """
    xinetd's C{EXIT} line (C{svc_log_exit}): written when C{log_on_success}
    has C{EXIT} or C{DURATION}; C{status=} or C{signal=} with C{EXIT},
    C{pid=} with C{PID}, C{duration=N(sec)} (whole seconds) with
    C{DURATION}, in that order.
    """
    if "EXIT" not in onSuccess and "DURATION" not in onSuccess:
        return None
    line = f"EXIT: {service}"
    if "EXIT" in onSuccess:
        if signal is not None:
            line += f" signal={signal}"
        else:
            line += f" status={0 if status is None else status}"
    if "PID" in onSuccess:
        line += f" pid={0 if pid is None else pid}"
    if "DURATION" in onSuccess:
        line += f" duration={max(int(duration), 0)}(sec)"
    return line


def failLine(
    service: str, onFailure: AbstractSet[str], reason: str, peer: Peer | None
) -> str | None:
    """
    xinetd's C{FAIL} line (C{svc_log_failure}): written when
    C{log_on_failure} has any value (C{ATTEMPT} alone gives the bare line);
    C{from=} with C{HOST}.
    """
    if not onFailure:
        return None
    line = f"FAIL: {service} {reason}"
    if "HOST" in onFailure:
        line += _from(peer)
    return line


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


class ServiceLog:
    """
    The log of one service: what the runtime calls at each step.  Every
    call emits its twisted.logger event, and writes xinetd's line to the
    service's sink when it has a C{log_type} and its C{log_on_success} /
    C{log_on_failure} ask for it.

    @ivar service: the service id.
    @ivar sink: where lines go, or C{None} (no C{log_type}).
    @ivar logger: where events go.
    """

    def __init__(
        self,
        service: str,
        onSuccess: AbstractSet[str] = frozenset(),
        onFailure: AbstractSet[str] = frozenset(),
        sink: LineSink | None = None,
        acceptsConnections: bool = True,
        logger: Logger = log,
    ) -> None:
        """
        @param acceptsConnections: C{wait = no} stream service: the only kind
            xinetd queries ident for (it drops C{USERID} from others).
        """
        self.service = service
        self.onSuccess = frozenset(onSuccess)
        self.onFailure = frozenset(onFailure)
        self.sink = sink
        self.acceptsConnections = acceptsConnections
        self.logger = logger

    @classmethod
    def fromConfig(
        cls, config: ServiceConfig, sink: LineSink | None, logger: Logger = log
    ) -> ServiceLog:
        return cls(
            config.id,
            config.logOnSuccess,
            config.logOnFailure,
            sink,
            not config.wait and config.socketType is SocketType.STREAM,
            logger,
        )

    @property
    def wantsUseridOnSuccess(self) -> bool:
        """
        Whether the runtime should query the client's ident server
        (L{twinetd.logs.ident.queryIdent}) after starting a server, and pass the
        answer to L{userid}.
        """
        return (
            self.sink is not None
            and self.acceptsConnections
            and "USERID" in self.onSuccess
        )

    @property
    def wantsUseridOnFailure(self) -> bool:
        """
        Whether the runtime should query ident after refusing a client.
        """
        return (
            self.sink is not None
            and self.acceptsConnections
            and "USERID" in self.onFailure
        )

    def _write(self, line: str | None, sizeCheck: bool = True) -> None:
        if line is not None and self.sink is not None:
            self.sink.write(line, sizeCheck)

    def start(self, pid: int | None, peer: Peer | None) -> None:
        """
        A server was started (C{pid} 0 or C{None} for a non-forking
        internal service); C{peer} is C{None} when there is no client
        address (C{wait = yes} stream).
        """
        logStart(
            self.service,
            pid,
            peer.remoteHost if peer is not None else NO_ADDRESS,
            peer.remotePort if peer is not None else 0,
            logger=self.logger,
        )
        self._write(startLine(self.service, self.onSuccess, pid, peer))

    def exit(
        self, pid: int | None, status: int | None, signal: int | None, duration: float
    ) -> None:
        """
        A server ended: its exit C{status}, or the C{signal} that killed it;
        C{duration} in seconds.
        """
        logExit(self.service, pid, status, signal, duration, logger=self.logger)
        self._write(
            exitLine(self.service, self.onSuccess, pid, status, signal, duration)
        )

    def fail(self, reason: str, peer: Peer | None, detail: str = "") -> None:
        """
        A client was refused; C{reason} is xinetd's word (C{address},
        C{time}, C{service_limit}, C{per_source_limit}, ...).
        """
        logFail(
            self.service,
            reason,
            peer.remoteHost if peer is not None else NO_ADDRESS,
            peer.remotePort if peer is not None else None,
            detail,
            logger=self.logger,
        )
        self._write(failLine(self.service, self.onFailure, reason, peer))

    def spawnFailed(self, peer: Peer | None, message: str) -> None:
        """
        The server could not be started: xinetd's C{FAIL: id fork}.
        """
        logSpawnFailed(
            self.service,
            peer.remoteHost if peer is not None else NO_ADDRESS,
            peer.remotePort if peer is not None else 0,
            message,
            logger=self.logger,
        )
        self._write(failLine(self.service, self.onFailure, REASON_FORK, peer))

    def traffic(self, bytesIn: int, bytesOut: int) -> None:
        """
        A redirect ended: C{bytesIn} read from the client, C{bytesOut} sent
        to it.  The line is written with C{TRAFFIC} in C{log_on_success}.
        """
        logTraffic(self.service, bytesIn, bytesOut, logger=self.logger)
        if "TRAFFIC" in self.onSuccess:
            self._write(
                f"TRAFFIC: {self.service} in={bytesIn}(bytes) out={bytesOut}(bytes)",
                sizeCheck=False,
            )

    def userid(self, text: str) -> None:
        """
        The client's ident server answered (see L{wantsUseridOnSuccess}).
        """
        logUserid(self.service, text, logger=self.logger)
        self._write(f"USERID: {self.service} {text}", sizeCheck=False)


class LogSinks:
    """
    The open sinks of one daemon, shared by services: one L{FileSink} per
    path (services with the same file, typically a C{log_type} in
    C{defaults}, write through one descriptor and share its limits, those
    of the first service that named it) and one L{SyslogSink} per facility
    and level.
    """

    def __init__(
        self,
        clock: IReactorTime,
        localtime: LocalTime = time.localtime,
        syslogPath: str = DEV_LOG,
        syslogTag: str = "twinetd",
        logger: Logger = log,
    ) -> None:
        self._clock = clock
        self._localtime = localtime
        self._syslogPath = syslogPath
        self._syslogTag = syslogTag
        self._log = logger
        self._files: dict[str, FileSink] = {}
        self._syslogs: dict[tuple[str, str], SyslogSink] = {}

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
                    self._log,
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
                logger=self._log,
            )
        return syslog

    def serviceLog(self, config: ServiceConfig) -> ServiceLog:
        """
        The L{ServiceLog} of a service.

        @raise OSError: its FILE log cannot be opened (xinetd disables such
            a service).
        """
        return ServiceLog.fromConfig(config, self.sinkFor(config.logType), self._log)

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


# A child's standard error as log events (shared by the bridge and handoff).

#: The longest stderr line logged as one event; longer lines are cut.
MAX_STDERR_LINE = 4096


class StderrLines:
    """
    Splits what a child writes to its standard error into lines, each logged
    as a L{STDERR} event; a line longer than L{MAX_STDERR_LINE} is logged in
    pieces marked C{truncated}.

    @ivar pid: the child's pid, for the events.
    """

    def __init__(self, service: str, pid: int | None, logger: Logger = log) -> None:
        self.service = service
        self.pid = pid
        self._logger = logger
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        """
        Log the complete lines of C{data}; keep the rest for later.
        """
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            self._log(line)
        while len(self._buffer) >= MAX_STDERR_LINE:
            line = self._buffer[:MAX_STDERR_LINE]
            self._buffer = self._buffer[MAX_STDERR_LINE:]
            self._log(line, truncated=True)

    def flush(self) -> None:
        """
        The stream ended: log an unterminated last line.
        """
        if self._buffer:
            line, self._buffer = self._buffer, b""
            self._log(line)

    def _log(self, line: bytes, truncated: bool = False) -> None:
        if len(line) > MAX_STDERR_LINE:
            line, truncated = line[:MAX_STDERR_LINE], True
        text = line.rstrip(b"\r").decode("utf-8", "backslashreplace")
        logStderr(self.service, self.pid, text, truncated, logger=self._logger)


#: A C{wait = yes} stream service's child ended quickly while a connection
#: was still waiting to be accepted, several times in a row: the next child
#: starts after a delay (no fork storm for a server that never accepts).
#: Fields: C{service}, C{pid} (the last child), C{delay} (seconds),
#: C{quickExits} (how many in a row).
STREAM_BACKOFF = "streamBackoff"


def logStreamBackoff(
    service: str,
    pid: int | None,
    delay: float,
    quickExits: int,
    logger: Logger = log,
) -> None:
    """
    Log that a C{wait = yes} stream service pauses before its next child.
    """
    logger.warn(
        "{service}: child {pid} exited at once leaving a connection pending "
        "({quickExits} in a row); waiting {delay:.1f}s before the next one",
        twinetdEvent=STREAM_BACKOFF,
        service=service,
        pid=pid,
        delay=delay,
        quickExits=quickExits,
    )


#: A service could not bind its address.  Fields: C{file}, C{line},
#: C{service}, C{address}, C{port}, C{reason}.
CANNOT_LISTEN = "cannotListen"


def logCannotListen(
    config: ServiceConfig, address: str, reason: object, logger: Logger = log
) -> None:
    """
    Log, as C{file:line: service: message}, that C{config} cannot listen on
    C{address}; the daemon's other services go on.
    """
    logger.error(
        "{file}:{line}: {service}: cannot listen on {address} port {port}: {reason}",
        twinetdEvent=CANNOT_LISTEN,
        file=config.source.file,
        line=config.source.line,
        service=config.id,
        address=address,
        port=config.port,
        reason=reason,
    )
