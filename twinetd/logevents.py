"""
Log events: their names, fields and xinetd-shaped text.

Every event carries C{twinetdEvent} (one of the names below) and named
fields; tests and sinks read the fields, people read the text.  The text of
C{START} and C{EXIT} follows xinetd's log lines.
"""

from __future__ import annotations

from twisted.logger import Logger

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
