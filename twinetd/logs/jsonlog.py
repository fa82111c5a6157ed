# -*- test-case-name: tests.unit.test_jsonlog -*-
"""
The JSON log (C{twistd twinetd --log-json PATH}): one JSON object per line
for every twinetd event, with the event's named fields and nothing of
Twisted's internal keys.  The schema is documented in the README.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
from collections.abc import Mapping
from typing import Any

from twisted.logger import ILogObserver, formatEvent
from zope.interface import implementer

from twinetd.logs.events import EVENT_FIELD, KINDS

#: The path meaning standard output.
STDOUT = "-"


def _plain(value: object) -> object:
    # JSON's own types as they are; containers element by element; anything
    # else (an exception, an address object) as its text.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return str(value)


def eventAsJSON(event: Mapping[str, Any]) -> str | None:
    """
    One twinetd event as a JSON object on one line (without the line end):
    C{time} (ISO 8601, UTC), C{level}, C{twinetdEvent}, C{text} (what
    twistd's log shows) and the fields of its kind; C{None} for an event
    that is not a twinetd event.
    """
    kind = KINDS.get(event.get(EVENT_FIELD, ""))
    if kind is None:
        return None
    level = event.get("log_level")
    stamp = datetime.datetime.fromtimestamp(
        float(event.get("log_time", 0.0)), datetime.timezone.utc
    )
    record: dict[str, object] = {
        "time": stamp.isoformat(timespec="microseconds"),
        "level": getattr(level, "name", "info"),
        EVENT_FIELD: kind.name,
        "text": formatEvent(dict(event)),
    }
    for name in kind.fields:
        record[name] = _plain(event.get(name))
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


@implementer(ILogObserver)
class JsonLog:
    """
    Writes every twinetd event it observes as one line of JSON to a file
    (appended to, created with mode 0644) or to standard output.  Each line
    is one C{write(2)}, so lines never interleave with other writers.
    """

    def __init__(self, path: str) -> None:
        """
        @param path: the file, or L{STDOUT}.

        @raise OSError: the file cannot be opened.
        """
        self.path = path
        self._fd: int | None = None
        self._open()

    def _open(self) -> None:
        if self.path == STDOUT:
            self._fd = 1
            return
        self._fd = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )

    def __call__(self, event: dict[str, Any]) -> None:
        if self._fd is None:
            return
        line = eventAsJSON(event)
        if line is None:
            return
        # A log that cannot be written must not stop the daemon; the text
        # log still has the event.
        with contextlib.suppress(OSError):
            os.write(self._fd, (line + "\n").encode("utf-8", "backslashreplace"))

    def reopen(self) -> None:
        """
        Close the file and open its path again (log rotation); if that
        fails, lines are dropped until the next reopen.
        """
        self.close()
        with contextlib.suppress(OSError):
            self._open()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and fd != 1:
            with contextlib.suppress(OSError):
                os.close(fd)
