# -*- test-case-name: tests.unit.test_logevents -*-
"""
A child's standard error as log events, one per line (shared by every mode
that gives its child a stderr pipe).
"""

from __future__ import annotations

from twisted.logger import Logger

from twinetd.logs.events import STDERR, emit

log = Logger()

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
        emit(
            STDERR,
            self._logger,
            service=self.service,
            pid=self.pid,
            line=text,
            truncated=truncated,
        )
