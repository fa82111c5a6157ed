# -*- test-case-name: tests.unit.test_config,tests.unit.test_parser -*-
"""
Exception types and the problem record shared by every layer.

Errors a user can cause are reported as C{file:line: service: message}, never
as a traceback.
"""

from __future__ import annotations

import attrs

__all__ = [
    "ConfigError",
    "Problem",
    "SourceLocation",
    "SpawnError",
    "TwinetdError",
    "printable",
]


@attrs.frozen
class SourceLocation:
    """
    Where a piece of configuration came from.

    @ivar file: the file name as given (or C{"<string>"} for text).
    @ivar line: the 1-based line number, or 0 when the whole file is meant.
    """

    file: str
    line: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}"
        return self.file


@attrs.frozen
class Problem:
    """
    One error or warning found while loading configuration.

    @ivar location: where it was found.
    @ivar service: the service name, or C{None} outside any service.
    @ivar attribute: the attribute concerned, if any.
    @ivar message: what is wrong, for a person.
    @ivar severity: C{"error"} or C{"warning"}.
    """

    location: SourceLocation
    service: str | None
    message: str
    attribute: str | None = None
    severity: str = "error"

    @property
    def isError(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        parts = [str(self.location)]
        if self.service is not None:
            parts.append(self.service)
        text = ": ".join(parts) + ": "
        if self.severity != "error":
            text += f"{self.severity}: "
        return printable(text + self.message)


def printable(text: str) -> str:
    """
    C{text} with what a terminal or a log line cannot show (control
    characters, NUL, undecodable bytes) escaped as Python would.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class TwinetdError(Exception):
    """
    Base class of twinetd's own exceptions.
    """


class ConfigError(TwinetdError):
    """
    A configuration problem that stops a service (or the whole load).

    @ivar problem: the L{Problem} describing it.
    """

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem

    @classmethod
    def at(
        cls,
        location: SourceLocation,
        service: str | None,
        message: str,
        attribute: str | None = None,
    ) -> ConfigError:
        return cls(Problem(location, service, message, attribute))


class SpawnError(TwinetdError):
    """
    A configured program could not be started.
    """


class SpawnerUnavailable(SpawnError):
    """
    The spawner process could not be started, so the program was not
    tried.
    """
