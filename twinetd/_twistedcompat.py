# -*- test-case-name: tests.unit.test_twistedcompat -*-
"""
Every place twinetd relies on something of Twisted that is not public API: a
private name, or the text of a message Twisted logs.  Each has a test in
C{tests/unit/test_twistedcompat.py} that fails loudly when Twisted changes
it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.logger import ILogObserver, LogPublisher

# twisted.internet.tcp's accept loop (tcp._accept, logging through
# tcp.Port._logger): one event per connection it could not accept.
TCP_PORT_NAMESPACE = "twisted.internet.tcp.Port"
ACCEPT_ERROR_FORMAT = "Could not accept new connection ({acceptError})"
EMFILE_CLOSED_FORMAT = "EMFILE recovery: Closed socket from {address}"
EMFILE_NOTES = frozenset(
    {
        "EMFILE encountered; releasing reserved file descriptor.",
        "Re-reserving EMFILE recovery file descriptor.",
    }
)


def observersOf(publisher: LogPublisher) -> list[ILogObserver]:
    """
    The observers of C{publisher}, in order (C{LogPublisher._observers}).
    """
    return list(publisher._observers)


def acceptFailure(event: Mapping[str, Any]) -> str | None:
    """
    The errno name (C{EMFILE}, ...) when C{event} is Twisted's line for one
    connection a TCP port did not accept: C{accept()} failed, or the EMFILE
    recovery accepted and closed it at once.
    """
    if event.get("log_namespace") != TCP_PORT_NAMESPACE:
        return None
    format = event.get("log_format")
    if format == ACCEPT_ERROR_FORMAT:
        return str(event.get("acceptError"))
    if format == EMFILE_CLOSED_FORMAT:
        return "EMFILE"
    return None


def isAcceptNote(event: Mapping[str, Any]) -> bool:
    """
    Whether C{event} is one of the lines around Twisted's EMFILE recovery
    (releasing and re-reserving its spare descriptor).
    """
    return (
        event.get("log_namespace") == TCP_PORT_NAMESPACE
        and event.get("log_format") in EMFILE_NOTES
    )
