# -*- test-case-name: tests.unit.test_logevents -*-
"""
The event vocabulary: every twinetd log event, its fields and its text, and
the one emitter that logs them.

Every event carries C{twinetdEvent} (one of the names below) and exactly
the named fields its L{EventKind} declares; tests, sinks, the JSON log and
any status view read the fields, people read the text.  The texts of
C{START}, C{EXIT}, C{FAIL}, C{USERID} and C{TRAFFIC} follow xinetd's log
lines.

A service's events go through its L{ServiceLog}, bound to the service's id
and to the observers of its daemon (L{twinetd.logs.sinks.LogSinks}).
"""

from __future__ import annotations

import enum
import math
import string

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import ILogObserver, Logger, LogLevel, LogPublisher

from twinetd._twistedcompat import emitEvent
from twinetd.model import Peer, ServiceConfig, SocketType

log = Logger()

#: The field naming the kind of a twinetd event.
EVENT_FIELD = "twinetdEvent"

#: xinetd's FAIL reason when a server cannot be started (C{AC_FORK}).
REASON_FORK = "fork"
#: What xinetd prints for a client without an address (wait = yes stream).
NO_ADDRESS = "<no address>"

# The names of the events (the value of EVENT_FIELD); their fields and
# texts are in KINDS below.

#: A server was started (C{pid} 0 for a service served inside the daemon);
#: C{latency}: seconds from the accept (or the datagram's arrival) to the
#: child running, when known (C{None} for C{pid} 0 and C{wait = yes}).
START = "start"
#: A server ended: C{status} (exit code, or C{None} when killed by a
#: signal), C{signal} (or C{None}), C{duration} in whole seconds as xinetd
#: counts them (L{wholeSeconds}).
EXIT = "exit"
#: A client was refused (xinetd's C{FAIL} line); C{reason} is xinetd's word
#: (C{address}, C{service_limit}, ...).
FAIL = "fail"
#: A server could not be started (xinetd's C{FAIL: id fork}).
SPAWN_FAILED = "spawnFailed"
#: One line of a child's standard error (C{truncated}: cut at the length
#: limit).
STDERR = "stderr"
#: What the client's ident server (RFC 1413) said: C{text} follows
#: C{USERID :} in its reply (C{UNIX : alice}).
USERID = "userid"
#: A redirect ended: C{bytesIn} read from the client, C{bytesOut} read from
#: the target.
TRAFFIC = "traffic"
#: A bridged connection ended: C{bytesIn} read from the client (to the
#: child), C{bytesOut} sent to it (from the child).  Debug level: it feeds
#: the metrics; xinetd has no such line.
RELAYED = "relayed"
#: A redirect could not reach its target; the client is closed.
REDIRECT_FAILED = "redirectFailed"
#: Datagrams dropped since the last such event (at most one per second per
#: service): C{reasons} maps a reason to a count.
DGRAM_DROPPED = "dgramDropped"
#: A child's reply did not fit in one datagram; the excess was dropped.
REPLY_TRUNCATED = "replyTruncated"
#: A datagram reply could not be sent.
REPLY_FAILED = "replyFailed"
#: A C{wait = yes} datagram service waits before watching its socket again.
DGRAM_BACKOFF = "dgramBackoff"
#: A C{wait = yes} stream service's children exit at once leaving a
#: connection pending: the next one starts after a delay.
STREAM_BACKOFF = "streamBackoff"
#: A service listens (at start, and again after a C{cps} pause).
LISTENING = "listening"
#: A service cannot bind its address; the daemon's other services go on.
CANNOT_LISTEN = "cannotListen"
#: A per-service log sink has a problem (one of the C{PROBLEM_*} values):
#: C{sink} is the file's path or C{syslog:PATH}.
LOG_PROBLEM = "logProblem"

#: The daemon could not accept a connection (C{reason}: the errno name, as
#: C{EMFILE}); repeats within a second are summarised by L{ACCEPT_FAILURES}.
ACCEPT_FAILED = "acceptFailed"
#: Connections not accepted since the last L{ACCEPT_FAILED} or summary.
ACCEPT_FAILURES = "acceptFailures"

#: The daemon has started: how many services listen, were skipped, ...
STARTED = "started"
#: A reload changed a service: C{change} is C{added}, C{changed},
#: C{removed} or C{kept} (its new definition has errors: C{detail}, the
#: first of them, and the previous definition still serves).
RELOADED = "reloaded"
#: The status (SIGUSR2): C{table} for people, C{status} the document
#: C{/status} serves.
STATUS = "status"

PROBLEM_SOFT_LIMIT = "softLimit"
PROBLEM_HARD_LIMIT = "hardLimit"
PROBLEM_OPEN = "open"
PROBLEM_WRITE = "write"
PROBLEM_SYSLOG = "syslog"


def _referenced(format: str) -> frozenset[str]:
    return frozenset(
        name.split(".")[0].split("[")[0]
        for _, name, _, _ in string.Formatter().parse(format)
        if name
    )


@attrs.frozen
class EventKind:
    """
    One kind of event.

    @ivar name: the value of L{EVENT_FIELD}.
    @ivar level: its log level.
    @ivar fields: the names of its fields, all required.
    @ivar formats: its texts (literal format strings over C{fields}); the
        first whose fields are all set (not C{None}) is used.
    @ivar fieldSet: C{fields} as a set.
    """

    name: str
    level: LogLevel
    fields: tuple[str, ...]
    formats: tuple[str, ...]
    _choices: tuple[tuple[str, frozenset[str]], ...] = attrs.field(
        init=False, repr=False
    )
    fieldSet: frozenset[str] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        referenced = tuple(_referenced(f) for f in self.formats)
        unknown = frozenset().union(*referenced) - set(self.fields)
        if unknown:
            raise ValueError(f"{self.name}: unknown fields {sorted(unknown)}")
        # The last format is the one left when no other fits: only the
        # others are checked (none, for most kinds).
        choices = tuple(zip(self.formats[:-1], referenced[:-1], strict=True))
        object.__setattr__(self, "_choices", choices)
        object.__setattr__(self, "fieldSet", frozenset(self.fields))

    def formatFor(self, fields: dict[str, object]) -> str:
        """
        The text for these field values.
        """
        for format, names in self._choices:
            for name in names:
                if fields[name] is None:
                    break
            else:
                return format
        return self.formats[-1]


_info, _warn, _error = LogLevel.info, LogLevel.warn, LogLevel.error

#: Every kind of event, by name.
KINDS: dict[str, EventKind] = {
    kind.name: kind
    for kind in [
        EventKind(
            START,
            _info,
            ("service", "pid", "host", "port", "latency"),
            ("START: {service} pid={pid} from={host}",),
        ),
        EventKind(
            EXIT,
            _info,
            ("service", "pid", "status", "signal", "duration"),
            (
                "EXIT: {service} signal={signal} pid={pid} duration={duration}(sec)",
                "EXIT: {service} status={status} pid={pid} duration={duration}(sec)",
            ),
        ),
        EventKind(
            FAIL,
            _info,
            ("service", "reason", "detail", "host", "port"),
            ("FAIL: {service} {reason} from={host}",),
        ),
        EventKind(
            SPAWN_FAILED,
            _error,
            ("service", "host", "port", "message"),
            ("FAIL: {service} cannot start server for {host}: {message}",),
        ),
        EventKind(
            STDERR,
            _warn,
            ("service", "pid", "line", "truncated"),
            ("{service}[{pid}]: {line}",),
        ),
        EventKind(USERID, _info, ("service", "text"), ("USERID: {service} {text}",)),
        EventKind(
            TRAFFIC,
            _info,
            ("service", "bytesIn", "bytesOut"),
            ("TRAFFIC: {service} in={bytesIn}(bytes) out={bytesOut}(bytes)",),
        ),
        EventKind(
            RELAYED,
            LogLevel.debug,
            ("service", "bytesIn", "bytesOut"),
            ("{service}: relayed in={bytesIn}(bytes) out={bytesOut}(bytes)",),
        ),
        EventKind(
            REDIRECT_FAILED,
            _error,
            ("service", "host", "port", "targetHost", "targetPort", "reason"),
            (
                "FAIL: {service} can't connect to remote host {targetHost} port "
                "{targetPort} for {host}: {reason}",
            ),
        ),
        EventKind(
            DGRAM_DROPPED,
            _warn,
            ("service", "count", "reasons", "interval"),
            ("{service}: dropped {count} datagrams in {interval:.1f}s: {reasons}",),
        ),
        EventKind(
            REPLY_TRUNCATED,
            _warn,
            ("service", "pid", "sent", "dropped"),
            (
                "{service}[{pid}]: reply truncated to {sent} bytes, {dropped} bytes "
                "dropped",
            ),
        ),
        EventKind(
            REPLY_FAILED,
            _warn,
            ("service", "pid", "host", "port", "message"),
            ("{service}[{pid}]: cannot send reply to {host}: {message}",),
        ),
        EventKind(
            DGRAM_BACKOFF,
            _warn,
            ("service", "pid", "delay", "failures"),
            (
                "{service}: child {pid} failed or left datagrams unread ({failures} "
                "in a row); waiting {delay:.1f}s before the next one",
            ),
        ),
        EventKind(
            STREAM_BACKOFF,
            _warn,
            ("service", "pid", "delay", "quickExits"),
            (
                "{service}: child {pid} exited at once leaving a connection pending "
                "({quickExits} in a row); waiting {delay:.1f}s before the next one",
            ),
        ),
        EventKind(
            LISTENING,
            _info,
            ("service", "address", "port", "protocol"),
            (
                "{service} listening on {address} port {port}/{protocol}",
                "{service} listening on {address}",
            ),
        ),
        EventKind(
            CANNOT_LISTEN,
            _error,
            ("file", "line", "service", "address", "port", "reason"),
            (
                "{file}:{line}: {service}: cannot listen on {address} port {port}: "
                "{reason}",
                "{file}:{line}: {service}: cannot listen on {address}: {reason}",
            ),
        ),
        EventKind(
            LOG_PROBLEM,
            _warn,
            ("sink", "problem", "error", "message"),
            ("log {sink}: {message}",),
        ),
        EventKind(
            ACCEPT_FAILED,
            _warn,
            ("reason", "message"),
            ("cannot accept a connection: {reason} ({message})",),
        ),
        EventKind(
            ACCEPT_FAILURES,
            _warn,
            ("count", "reasons", "interval"),
            ("{count} more connections not accepted in {interval:.1f}s: {reasons}",),
        ),
        EventKind(
            STARTED,
            _info,
            (
                "services",
                "listening",
                "notListening",
                "skipped",
                "errors",
                "warnings",
            ),
            (
                "twinetd started: {listening} of {services} services listening, "
                "{notListening} not listening, {skipped} skipped, {errors} errors, "
                "{warnings} warnings",
            ),
        ),
        EventKind(
            RELOADED,
            _info,
            ("service", "change", "detail"),
            (
                "{service}: {change} previous definition: {detail}",
                "{service}: {change}",
            ),
        ),
        EventKind(STATUS, _info, ("table", "status"), ("twinetd status:\n{table}",)),
    ]
}


def emit(kind: str, logger: Logger = log, **fields: object) -> None:
    """
    Log one event of C{kind} with exactly its fields.

    @raise KeyError: an unknown kind.
    @raise TypeError: missing or unknown fields (a bug in the caller).
    """
    spec = KINDS[kind]
    if fields.keys() != spec.fieldSet:
        raise TypeError(
            f"{kind}: fields {sorted(fields)} instead of {sorted(spec.fields)}"
        )
    # The kind first, then the fields, as Logger.emit's keywords were.
    event = {EVENT_FIELD: kind, **fields}
    emitEvent(logger, spec.level, spec.formatFor(fields), event)


class _Default(enum.Enum):
    DEFAULT = enum.auto()


_DEFAULT = _Default.DEFAULT


def wholeSeconds(start: float, end: float) -> int:
    """
    A duration as xinetd logs it: the difference of two C{time(2)} readings
    (C{log.c} C{svc_log_exit}: C{time(NULL) - SERVER_STARTTIME}), so a 0.7 s
    session is C{0} or C{1} depending on whether a second boundary passed.
    """
    return max(math.floor(end) - math.floor(start), 0)


def _host(peer: Peer | None) -> str:
    return peer.remoteHost if peer is not None else NO_ADDRESS


class ServiceLog:
    """
    The log of one service: what the runtime calls at each step.  Each call
    emits one event to C{logger}, whose observers (the daemon's xinetd
    FILE/SYSLOG lines, twistd's log, the JSON log) do the rest.

    @ivar service: the service id.
    @ivar logger: where events go.
    @ivar wantsUseridOnSuccess: whether the runtime should query the
        client's ident server (L{twinetd.logs.ident.queryIdent}) after
        starting a server, and pass the answer to L{userid}.
    @ivar wantsUseridOnFailure: the same after refusing a client.
    @ivar clock: the reactor's time, for C{START}'s C{latency} (C{None}: not
        measured).
    """

    def __init__(
        self,
        service: str,
        logger: Logger = log,
        *,
        wantsUseridOnSuccess: bool = False,
        wantsUseridOnFailure: bool = False,
        clock: IReactorTime | None = None,
    ) -> None:
        self.service = service
        self.logger = logger
        self.clock = clock
        self.wantsUseridOnSuccess = wantsUseridOnSuccess
        self.wantsUseridOnFailure = wantsUseridOnFailure

    @classmethod
    def fromConfig(
        cls,
        config: ServiceConfig,
        lines: ILogObserver | None = None,
        logger: Logger = log,
        clock: IReactorTime | None = None,
    ) -> ServiceLog:
        """
        The log of C{config}'s service.

        @param lines: an observer of this service's events alone (its
            xinetd lines: L{twinetd.logs.sinks.LogSinks.serviceLog}), or
            C{None}.
        @param logger: where events go (after C{lines}).
        @param clock: see L{clock}.
        """
        # xinetd queries ident only for wait = no stream services (it drops
        # USERID from the others) and only when there is a log to write.
        asks = (
            lines is not None
            and not config.wait
            and config.socketType is SocketType.STREAM
        )
        if lines is not None:
            logger = Logger(
                logger.namespace, observer=LogPublisher(lines, logger.observer)
            )
        return cls(
            config.id,
            logger,
            wantsUseridOnSuccess=asks and "USERID" in config.logOnSuccess,
            wantsUseridOnFailure=asks and "USERID" in config.logOnFailure,
            clock=clock,
        )

    def emit(self, kind: str, **fields: object) -> None:
        """
        Log an event of this service (L{emit} with C{service} set).
        """
        emit(kind, self.logger, service=self.service, **fields)

    def start(self, pid: int | None, peer: Peer | None) -> None:
        """
        A server was started (C{pid} 0 for one served inside the daemon);
        C{peer} is C{None} when there is no client address (C{wait = yes}
        stream).
        """
        port = peer.remotePort if peer is not None else 0
        latency = None
        if pid and peer is not None and peer.accepted is not None and self.clock:
            latency = self.clock.seconds() - peer.accepted
        self.emit(START, pid=pid, host=_host(peer), port=port, latency=latency)

    def exit(
        self, pid: int | None, status: int | None, signal: int | None, duration: int
    ) -> None:
        """
        A server ended: its exit C{status}, or the C{signal} that killed it;
        C{duration} in whole seconds (L{wholeSeconds}).
        """
        self.emit(EXIT, pid=pid, status=status, signal=signal, duration=duration)

    def fail(self, reason: str, peer: Peer | None, detail: str = "") -> None:
        """
        A client was refused; C{reason} is xinetd's word (C{address},
        C{time}, C{service_limit}, C{per_source_limit}, ...).
        """
        port = peer.remotePort if peer is not None else None
        self.emit(FAIL, reason=reason, detail=detail, host=_host(peer), port=port)

    def spawnFailed(self, peer: Peer | None, message: str) -> None:
        """
        The server could not be started: xinetd's C{FAIL: id fork}.
        """
        port = peer.remotePort if peer is not None else 0
        self.emit(SPAWN_FAILED, host=_host(peer), port=port, message=message)

    def traffic(self, bytesIn: int, bytesOut: int) -> None:
        """
        A redirect ended: C{bytesIn} read from the client, C{bytesOut} sent
        to it.
        """
        self.emit(TRAFFIC, bytesIn=bytesIn, bytesOut=bytesOut)

    def relayed(self, bytesIn: int, bytesOut: int) -> None:
        """
        A bridged connection ended: C{bytesIn} read from the client,
        C{bytesOut} sent to it.
        """
        self.emit(RELAYED, bytesIn=bytesIn, bytesOut=bytesOut)

    def userid(self, text: str) -> None:
        """
        The client's ident server answered (see L{wantsUseridOnSuccess}).
        """
        self.emit(USERID, text=text)

    def listening(self, address: str, port: int | None, protocol: str) -> None:
        """
        The service listens on C{address} C{port} (C{tcp} or C{udp}).
        """
        self.emit(LISTENING, address=address, port=port, protocol=protocol)

    def cannotListen(
        self,
        config: ServiceConfig,
        address: str,
        reason: object,
        port: int | _Default | None = _DEFAULT,
    ) -> None:
        """
        The service cannot bind C{address}: logged as C{file:line: service:
        message}.

        @param port: by default C{config}'s; C{None} when C{address} says
            it all (an endpoint description).
        """
        cannotListen(config, address, reason, self.logger, port)


def cannotListen(
    config: ServiceConfig,
    address: str,
    reason: object,
    logger: Logger = log,
    port: int | _Default | None = _DEFAULT,
) -> None:
    """
    Log, as C{file:line: service: message}, that C{config} cannot listen on
    C{address} (and C{port}: by default C{config}'s; C{None} when C{address}
    is an endpoint description); the daemon's other services go on.
    """
    emit(
        CANNOT_LISTEN,
        logger,
        file=config.source.file,
        line=config.source.line,
        service=config.id,
        address=address,
        port=config.port if isinstance(port, _Default) else port,
        reason=reason,
    )
