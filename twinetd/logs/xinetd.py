# -*- test-case-name: tests.unit.test_logevents -*-
"""
xinetd's per-service log lines (C{log_type}, C{log_on_success},
C{log_on_failure}), rendered from twinetd's events as xinetd's C{log.c}
writes them, and the time stamps of its FILE and SYSLOG logs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from twinetd.logs.events import (
    EXIT,
    FAIL,
    NO_ADDRESS,
    REASON_FORK,
    SPAWN_FAILED,
    START,
    TRAFFIC,
    USERID,
)

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


def _from(host: str | None) -> str:
    return f" from={NO_ADDRESS if host is None else host}"


def startLine(
    service: str, onSuccess: AbstractSet[str], pid: int | None, host: str | None
) -> str | None:
    """
    xinetd's C{START} line (C{svc_log_success}): written when
    C{log_on_success} has any value; C{pid=} with C{PID}, C{from=} with
    C{HOST} (C{host} C{None}: no address).
    """
    if not onSuccess:
        return None
    line = f"START: {service}"
    if "PID" in onSuccess:
        line += f" pid={0 if pid is None else pid}"
    if "HOST" in onSuccess:
        line += _from(host)
    return line


def exitLine(
    service: str,
    onSuccess: AbstractSet[str],
    pid: int | None,
    status: int | None,
    signal: int | None,
    duration: int,
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
        line += f" duration={duration}(sec)"
    return line


def failLine(
    service: str, onFailure: AbstractSet[str], reason: str, host: str | None
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
        line += _from(host)
    return line


def lineFor(
    event: Mapping[str, Any],
    onSuccess: AbstractSet[str],
    onFailure: AbstractSet[str],
) -> tuple[str, bool] | None:
    """
    The xinetd line of a twinetd event for a service with these
    C{log_on_success} / C{log_on_failure} values, and whether it counts
    towards a FILE log's size limits (xinetd writes C{USERID} and
    C{TRAFFIC} with C{XLOG_NO_SIZECHECK}); C{None} when xinetd writes no
    line for it.
    """
    kind = event.get("twinetdEvent")
    service = event.get("service", "")
    line: str | None
    if kind == START:
        line = startLine(service, onSuccess, event["pid"], event["host"])
    elif kind == EXIT:
        line = exitLine(
            service,
            onSuccess,
            event["pid"],
            event["status"],
            event["signal"],
            event["duration"],
        )
    elif kind == FAIL:
        line = failLine(service, onFailure, event["reason"], event["host"])
    elif kind == SPAWN_FAILED:
        line = failLine(service, onFailure, REASON_FORK, event["host"])
    elif kind == TRAFFIC:
        if "TRAFFIC" not in onSuccess:
            return None
        return (
            f"TRAFFIC: {service} in={event['bytesIn']}(bytes) "
            f"out={event['bytesOut']}(bytes)",
            False,
        )
    elif kind == USERID:
        return f"USERID: {service} {event['text']}", False
    else:
        return None
    return None if line is None else (line, True)
