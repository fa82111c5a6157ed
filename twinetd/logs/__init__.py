# -*- test-case-name: tests.unit.test_logevents -*-
"""
twinetd's logging, by job:

  - L{twinetd.logs.events}: the event vocabulary (every event's name,
    fields and text), the one emitter L{emit}, and L{ServiceLog}, what the
    runtime calls for a service;
  - L{twinetd.logs.xinetd}: xinetd's START/EXIT/FAIL/USERID/TRAFFIC lines
    and time stamps;
  - L{twinetd.logs.sinks}: the FILE and SYSLOG sinks of C{log_type}, fed
    as log observers, and L{LogSinks}, a daemon's event stream;
  - L{twinetd.logs.stderr}: a child's standard error as events;
  - L{twinetd.logs.repeats}: repeated events at a bounded rate;
  - L{twinetd.logs.jsonlog} and L{twinetd.logs.twistd}: the JSON log and
    what twistd's log shows;
  - L{twinetd.logs.ident}: RFC 1413 queries for C{USERID}.
"""

from __future__ import annotations

from twinetd.logs.events import (
    ACCEPT_FAILED,
    ACCEPT_FAILURES,
    CANNOT_LISTEN,
    DGRAM_BACKOFF,
    DGRAM_DROPPED,
    EVENT_FIELD,
    EXIT,
    FAIL,
    KINDS,
    LISTENING,
    LOG_PROBLEM,
    NO_ADDRESS,
    PROBLEM_HARD_LIMIT,
    PROBLEM_OPEN,
    PROBLEM_SOFT_LIMIT,
    PROBLEM_SYSLOG,
    PROBLEM_WRITE,
    REASON_FORK,
    REDIRECT_FAILED,
    RELAYED,
    RELOADED,
    REPLY_FAILED,
    REPLY_TRUNCATED,
    SPAWN_FAILED,
    START,
    STARTED,
    STATUS,
    STDERR,
    STREAM_BACKOFF,
    TRAFFIC,
    USERID,
    EventKind,
    ServiceLog,
    cannotListen,
    emit,
    log,
    wholeSeconds,
)
from twinetd.logs.repeats import DropSummary, Summariser
from twinetd.logs.sinks import FileSink, LineSink, LogSinks, SyslogSink
from twinetd.logs.stderr import MAX_STDERR_LINE, StderrLines

__all__ = [
    "ACCEPT_FAILED",
    "ACCEPT_FAILURES",
    "CANNOT_LISTEN",
    "DGRAM_BACKOFF",
    "DGRAM_DROPPED",
    "EVENT_FIELD",
    "EXIT",
    "FAIL",
    "KINDS",
    "LISTENING",
    "LOG_PROBLEM",
    "MAX_STDERR_LINE",
    "NO_ADDRESS",
    "PROBLEM_HARD_LIMIT",
    "PROBLEM_OPEN",
    "PROBLEM_SOFT_LIMIT",
    "PROBLEM_SYSLOG",
    "PROBLEM_WRITE",
    "REASON_FORK",
    "REDIRECT_FAILED",
    "RELAYED",
    "RELOADED",
    "REPLY_FAILED",
    "REPLY_TRUNCATED",
    "SPAWN_FAILED",
    "START",
    "STARTED",
    "STATUS",
    "STDERR",
    "STREAM_BACKOFF",
    "TRAFFIC",
    "USERID",
    "DropSummary",
    "EventKind",
    "FileSink",
    "LineSink",
    "LogSinks",
    "ServiceLog",
    "StderrLines",
    "Summariser",
    "SyslogSink",
    "cannotListen",
    "emit",
    "log",
    "wholeSeconds",
]
