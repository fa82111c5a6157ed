# -*- test-case-name: tests.unit.test_ident -*-
"""
RFC 1413 identification: ask the client's ident server who opened a
connection, for xinetd's C{log_on_success} / C{log_on_failure = USERID}.

As xinetd's C{log_remote_user} (ident.c): connect to port 113 of the client
from the address the client reached (a multi-homed host's ident server
knows the connection by that address), send C{CLIENTPORT,SERVERPORT\\r\\n},
read one line of at most 1024 bytes, check that it names the same two ports
and says C{USERID}, and keep what follows C{USERID :} (C{OS : user}, e.g.
C{UNIX : alice}) for the C{USERID} line.  Anything else (no server, an
C{ERROR} reply, a malformed or oversized reply, the timeout) gives C{None}:
xinetd then writes no C{USERID} line at all.  The query never blocks the
reactor and its result never fails.
"""

from __future__ import annotations

import contextlib
import re

from twisted.internet.defer import Deferred
from twisted.internet.error import NotConnectingError
from twisted.internet.interfaces import (
    IConnector,
    IDelayedCall,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from twinetd._twistedcompat import cancelCall
from twinetd.model import unmapped

log = Logger()

#: The ident service's port (RFC 1413).
IDENT_PORT = 113
#: xinetd's C{LOGUSER_SUCCESS_TIMEOUT} and C{LOGUSER_FAILURE_TIMEOUT}
#: (xconfig.h), the 30 seconds RFC 1413 suggests.
IDENT_TIMEOUT = 30.0
#: The longest reply line, line end included (xinetd's C{IBUFSIZE}; RFC 1413
#: allows replies of up to 1000 characters).
MAX_REPLY = 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def _port(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        return None
    return int(text)


def parseIdentReply(line: bytes, clientPort: int, serverPort: int) -> str | None:
    """
    The text after C{USERID :} in an ident reply, or C{None} when the reply
    is not a C{USERID} reply for these ports (C{ERROR} replies included).

    Control characters left in the text are escaped (C{\\x0a}), so that a
    hostile ident server cannot forge log lines.

    @param line: one reply line, with or without its line end.
    @param clientPort: the client's port, the first number of the reply.
    @param serverPort: our port, the second number.
    """
    text = line.decode("utf-8", "backslashreplace").removesuffix("\n")
    text = text.removesuffix("\r")
    ports, colon, rest = text.partition(":")
    if not colon:
        return None
    first, comma, second = ports.partition(",")
    if not comma or _port(first) != clientPort or _port(second) != serverPort:
        return None
    kind, colon, info = rest.partition(":")
    if not colon or kind.strip() != "USERID":
        return None
    info = info.lstrip()
    if not info:
        return None
    return _CONTROL.sub(_escape, info)


class _Query:
    def __init__(
        self, clock: IReactorTime, clientPort: int, serverPort: int, timeout: float
    ) -> None:
        self.clientPort = clientPort
        self.serverPort = serverPort
        self.result: Deferred[str | None] = Deferred(self._cancel)
        self.connector: IConnector | None = None
        self.protocol: _IdentProtocol | None = None
        self._timer: IDelayedCall | None = clock.callLater(timeout, self._timedOut)
        self._done = False

    def finish(self, userid: str | None) -> None:
        if self._done:
            return
        self._done = True
        self._timer = cancelCall(self._timer)
        self._hangUp()
        self.result.callback(userid)

    def _hangUp(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.abortConnection()  # type: ignore[attr-defined]
        elif self.connector is not None:
            connector, self.connector = self.connector, None
            with contextlib.suppress(NotConnectingError):
                connector.stopConnecting()

    def _timedOut(self) -> None:
        self._timer = None
        self.finish(None)

    def _cancel(self, d: Deferred[str | None]) -> None:
        self._done = True
        self._timer = cancelCall(self._timer)
        self._hangUp()


class _IdentProtocol(Protocol):
    def __init__(self, query: _Query) -> None:
        self._query = query
        self._buffer = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self._query.protocol = self
        query = self._query
        self.transport.write(f"{query.clientPort},{query.serverPort}\r\n".encode())

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        line, newline, _ = self._buffer.partition(b"\n")
        if newline and len(line) < MAX_REPLY:
            query = self._query
            self._query.finish(
                parseIdentReply(line, query.clientPort, query.serverPort)
            )
        elif len(self._buffer) >= MAX_REPLY:
            log.debug("ident reply too long")
            self._query.finish(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._query.protocol = None
        self._query.finish(None)


class _IdentFactory(ClientFactory):
    # One query per connection: no "Starting factory" line for each.
    noisy = False

    def __init__(self, query: _Query) -> None:
        self._query = query

    def buildProtocol(self, addr: object) -> Protocol:
        protocol = _IdentProtocol(self._query)
        protocol.factory = self
        return protocol

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._query.connector = None
        self._query.finish(None)


def queryIdent(
    reactor: IReactorTCP,
    peerHost: str,
    peerPort: int,
    localHost: str,
    localPort: int,
    timeout: float = IDENT_TIMEOUT,
    identPort: int = IDENT_PORT,
) -> Deferred[str | None]:
    """
    Ask the ident server of the client at C{peerHost}:C{peerPort} who owns
    its connection to C{localHost}:C{localPort}.

    @param reactor: provides L{IReactorTCP} and L{IReactorTime}.
    @param timeout: seconds for the whole query (connection and reply).
    @param identPort: the ident server's port (113; tests give another).
    @return: fires with the text after C{USERID :} (see L{parseIdentReply})
        or C{None}; never fails.  Cancelling it hangs up.
    """
    query = _Query(IReactorTime(reactor), peerPort, localPort, timeout)
    try:
        query.connector = reactor.connectTCP(
            unmapped(peerHost),
            identPort,
            _IdentFactory(query),
            timeout=max(int(timeout), 1),
            bindAddress=(unmapped(localHost), 0),
        )
    except Exception:
        log.failure("ident query to {host} failed to start", host=peerHost)
        query.finish(None)
    return query.result
