# -*- test-case-name: tests.unit.test_twistedcompat -*-
"""
Every place twinetd relies on something of Twisted that is not public API: a
private name, or the text of a message Twisted logs.  Each has a test in
C{tests/unit/test_twistedcompat.py} that fails loudly when Twisted changes
it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from twisted.logger import ILogObserver, LogPublisher

# twisted.protocols.haproxy exports only proxyEndpoint, whose wrapper makes
# the wrapped protocol's connection before the header is read and drops a
# bad header silently; twinetd's PROXY wrapper (listeners/proxy.py) builds
# on the same wrapper class and header parsers, which live in private
# modules.
from twisted.protocols.haproxy._exceptions import (
    InvalidProxyHeader as InvalidProxyHeader,
)
from twisted.protocols.haproxy._v1parser import V1Parser as V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser as V2Parser
from twisted.protocols.haproxy._wrapper import (
    HAProxyProtocolWrapper as HAProxyProtocolWrapper,
)
from twisted.protocols.haproxy._wrapper import (
    HAProxyWrappingFactory as HAProxyWrappingFactory,
)

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

# Legacy (twisted.python.log.msg) lines of every listening port:
# tcp.Port.startListening (its factory's logPrefix: a TLS or PROXY wrapping
# factory adds " (TLS)" or " (PROXY)"), unix.Port's, and tcp.Port /
# udp.Port / unix.Port connectionLost.
_PORT_LINES = re.compile(
    r"\S+( \((TLS|PROXY)\))* starting on (\d+|'[^']*')"
    r"|\((TCP|UDP) Port \d+ Closed\)|\(UNIX Port .+ Closed\)"
)

# protocol.Factory.doStart/doStop of a factory whose C{noisy} is set
# (twisted.logger, the factory as log_source), and DatagramProtocol's
# doStart/doStop (legacy text with the protocol's default repr).
_LIFECYCLE_FORMATS = frozenset(
    {"Starting factory {factory!r}", "Stopping factory {factory!r}"}
)
_PROTOCOL_LINE = re.compile(r"(Starting|Stopping) protocol <([\w.]+) object at .*")


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


def isPortLine(event: Mapping[str, Any]) -> bool:
    """
    Whether C{event} is a port's C{X starting on N} or C{(TCP Port N
    Closed)} line.
    """
    text = event.get("log_text")
    return (
        event.get("log_namespace") == "log_legacy"
        and isinstance(text, str)
        and _PORT_LINES.fullmatch(text) is not None
    )


def isLifecycleLine(event: Mapping[str, Any], modulePrefix: str) -> bool:
    """
    Whether C{event} is a C{Starting/Stopping factory/protocol} line of an
    object whose class lives under C{modulePrefix}.
    """
    if event.get("log_format") in _LIFECYCLE_FORMATS:
        source = event.get("log_source")
        return source is not None and type(source).__module__.startswith(modulePrefix)
    text = event.get("log_text")
    if event.get("log_namespace") != "log_legacy" or not isinstance(text, str):
        return False
    match = _PROTOCOL_LINE.fullmatch(text)
    return match is not None and match.group(2).startswith(modulePrefix)


def exitSignal(reactor: object) -> int | None:
    """
    The signal that stopped the reactor, which twistd re-raises once the
    reactor has stopped (C{ReactorBase._exitSignal}, read by
    C{twisted.application.app.ApplicationRunner.startReactor}).
    """
    signum: int | None = getattr(reactor, "_exitSignal", None)
    return signum


def clearExitSignal(reactor: object) -> None:
    """
    Let twistd exit normally after a signal stopped the reactor.
    """
    reactor._exitSignal = None  # type: ignore[attr-defined]


def writeBuffered(transport: object) -> bool:
    """
    Whether a Twisted file descriptor transport (C{abstract.FileDescriptor}:
    TCP, UNIX) still holds bytes it has not written to its socket
    (C{dataBuffer} past C{offset}, and C{_tempDataBuffer}).
    """
    data = getattr(transport, "dataBuffer", b"")
    offset: int = getattr(transport, "offset", 0)
    temp: int = getattr(transport, "_tempDataLen", 0)
    return len(data) > offset or temp > 0
