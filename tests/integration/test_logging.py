"""
xinetd-format service logs with real files and a real ident server on
127.0.0.1, with the real reactor.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol, ServerFactory
from twisted.protocols.basic import LineOnlyReceiver

from twinetd.child import peerFromTransport
from twinetd.errors import SourceLocation
from twinetd.logs import LogSinks, ServiceLog
from twinetd.logs.ident import queryIdent
from twinetd.model import FileTarget, ServiceConfig, SocketType

reactor: Any = _reactor
DEADLINE = 10.0
STAMP = r"\d\d/\d{1,2}/\d{1,2}@\d\d:\d\d:\d\d: "


def within(d: defer.Deferred[Any], seconds: float = DEADLINE) -> defer.Deferred[Any]:
    return d.addTimeout(seconds, reactor)


def config(name: str, logType: FileTarget, **kw: Any) -> ServiceConfig:
    return ServiceConfig(
        name=name,
        source=SourceLocation("<test>", 1),
        socketType=SocketType.STREAM,
        wait=False,
        port=0,
        logType=logType,
        **kw,
    )


class Identd(LineOnlyReceiver):
    """
    An RFC 1413 server: C{USERID : UNIX : alice} for any query.
    """

    delimiter = b"\r\n"
    factory: IdentdFactory

    def lineReceived(self, line: bytes) -> None:
        assert self.transport is not None
        self.factory.queries.append((line, self.transport.getPeer().host))
        if self.factory.answer:
            clientPort, _, serverPort = line.partition(b",")
            self.sendLine(
                clientPort.strip()
                + b" , "
                + serverPort.strip()
                + b" : USERID : UNIX : alice"
            )
            self.transport.loseConnection()


class IdentdFactory(ServerFactory):
    protocol = Identd

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.queries: list[tuple[bytes, str]] = []
        self.protocols: list[Protocol] = []

    def buildProtocol(self, addr: Any) -> Protocol | None:
        p = super().buildProtocol(addr)
        assert p is not None
        self.protocols.append(p)
        return p


class LoggedService(Protocol):
    """
    A service that logs as the runtime does: START, USERID from the client's
    ident server, then EXIT when the client leaves.
    """

    def __init__(self, log: ServiceLog, identPort: int) -> None:
        self.log = log
        self.identPort = identPort
        self.userid: defer.Deferred[str | None] = defer.Deferred()

    def connectionMade(self) -> None:
        peer = peerFromTransport(self.transport)  # type: ignore[arg-type]
        self.log.start(4242, peer)
        if self.log.wantsUseridOnSuccess:
            d = queryIdent(
                reactor,
                peer.remoteHost,
                peer.remotePort,
                peer.localHost,
                peer.localPort,
                timeout=5,
                identPort=self.identPort,
            )

            def got(text: str | None) -> None:
                if text is not None:
                    self.log.userid(text)
                self.userid.callback(text)
                assert self.transport is not None
                self.transport.loseConnection()

            d.addCallback(got)

    def connectionLost(self, reason: Any = None) -> None:
        self.log.exit(4242, 0, None, 0.0)


@pytest_twisted.ensureDeferred
async def test_useridFromARealIdentServer(tmp_path: Path) -> None:
    identd = IdentdFactory()
    identPort = reactor.listenTCP(0, identd, interface="127.0.0.1")
    sinks = LogSinks(reactor)
    path = tmp_path / "svc.log"
    log = sinks.serviceLog(
        config(
            "svc",
            FileTarget(str(path)),
            logOnSuccess=frozenset({"PID", "HOST", "USERID", "EXIT"}),
        )
    )
    services: list[LoggedService] = []

    def build(addr: Any) -> LoggedService:
        services.append(LoggedService(log, identPort.getHost().port))
        return services[-1]

    factory = Factory()
    factory.buildProtocol = build  # type: ignore[method-assign]
    servicePort = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        client = Protocol()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", servicePort.getHost().port)
        await within(connectProtocol(endpoint, client))
        clientPort = client.transport.getHost().port  # type: ignore[union-attr]
        [service] = services
        assert await within(service.userid) == "UNIX : alice"
        # The query named the client's port then ours, from our address.
        [(query, fromHost)] = identd.queries
        assert query == f"{clientPort},{servicePort.getHost().port}".encode()
        assert fromHost == "127.0.0.1"
        for _ in range(100):
            if path.read_text().count("EXIT") == 1:
                break
            await deferLaterSleep(0.02)
        lines = path.read_text().splitlines()
        assert [re.sub("^" + STAMP, "", line) for line in lines] == [
            "START: svc pid=4242 from=127.0.0.1",
            "USERID: svc UNIX : alice",
            "EXIT: svc status=0 pid=4242",
        ]
        assert all(re.match(STAMP, line) for line in lines)
    finally:
        await servicePort.stopListening()
        await identPort.stopListening()
        sinks.close()


async def deferLaterSleep(seconds: float) -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_identServerSilent() -> None:
    identd = IdentdFactory(answer=False)
    port = reactor.listenTCP(0, identd, interface="127.0.0.1")
    try:
        started = reactor.seconds()
        result = await within(
            queryIdent(
                reactor, "127.0.0.1", 5000, "127.0.0.1", 6000, 0.3, port.getHost().port
            )
        )
        assert result is None
        assert reactor.seconds() - started >= 0.25
        assert identd.queries == [(b"5000,6000", "127.0.0.1")]
    finally:
        for p in identd.protocols:
            if p.transport is not None:
                p.transport.loseConnection()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_noIdentServer() -> None:
    port = reactor.listenTCP(0, ServerFactory(), interface="127.0.0.1")
    free = port.getHost().port
    await port.stopListening()
    result = await within(
        queryIdent(reactor, "127.0.0.1", 5000, "127.0.0.1", 6000, 5, free)
    )
    assert result is None


@pytest_twisted.ensureDeferred
async def test_sharedFileAndRotation(tmp_path: Path) -> None:
    path = tmp_path / "shared.log"
    target = FileTarget(str(path), 10_000)
    sinks = LogSinks(reactor)
    try:
        one = sinks.serviceLog(config("one", target, logOnSuccess=frozenset({"PID"})))
        two = sinks.serviceLog(
            config("two", target, logOnFailure=frozenset({"HOST", "ATTEMPT"}))
        )
        from twinetd.model import Peer

        peer = Peer("tcp", "::ffff:127.0.0.1", 40000, "::ffff:127.0.0.1", 1)
        one.start(10, peer)
        two.fail("address", peer)
        os.rename(path, str(path) + ".1")
        one.start(11, peer)  # still into the renamed file
        sinks.reopenAll()
        two.fail("service_limit", peer)
        old = [
            re.sub("^" + STAMP, "", x)
            for x in (tmp_path / "shared.log.1").read_text().splitlines()
        ]
        new = [re.sub("^" + STAMP, "", x) for x in path.read_text().splitlines()]
        assert old == [
            "START: one pid=10",
            "FAIL: two address from=::ffff:127.0.0.1",
            "START: one pid=11",
        ]
        assert new == ["FAIL: two service_limit from=::ffff:127.0.0.1"]
    finally:
        sinks.close()
