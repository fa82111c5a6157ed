# -*- test-case-name: tests.integration.test_testing -*-
"""
Running configurations in-process for integration tests of inetd programs:
L{runConfig} (also C{async with}), L{daemonFixture} for pytest, L{converse}
and L{serviceRecord}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IReactorSocket, IReactorTCP, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from twinetd.config import LoadResult, Lookups, loadPath, loadText
from twinetd.errors import ConfigError, SourceLocation
from twinetd.model import ServiceConfig, SocketType

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from twinetd.service import DaemonSettings, TwinetdService

#: Seconds L{converse} waits for the whole answer by default.
CONVERSE_TIMEOUT = 10.0


def serviceRecord(name: str = "test", **fields: object) -> ServiceConfig:
    """
    A L{ServiceConfig} for tests, with defaults for what a test does not
    care about: a C{wait = no} stream service on an ephemeral port (C{port =
    0}), C{protocol} following C{socketType}, located at C{<test>}.  Give
    any other field by its record name (C{server="/bin/cat"},
    C{serverArgs=("-u",)}, C{instances=2}, ...).

    @raise TypeError: a field that L{ServiceConfig} does not have.
    """
    dgram = fields.get("socketType") is SocketType.DGRAM
    record = ServiceConfig(
        name=name,
        source=SourceLocation("<test>", 1),
        socketType=SocketType.STREAM,
        wait=False,
        port=0,
        protocol="udp" if dgram else "tcp",
    )
    # Checked at run time: attrs raises TypeError for a field it lacks.
    changes: dict[str, Any] = dict(fields)
    return attrs.evolve(record, **changes)


class RunningDaemon:
    """
    A configuration served in-process by L{runConfig}; also an asynchronous
    context manager that stops the daemon on exit::

        async with runConfig(reactor, CONFIG) as daemon:
            assert await daemon.converse("echo", b"hi") == b"hi"

    @ivar daemon: the service tree.
    @ivar result: the configuration load (services and problems).
    """

    def __init__(
        self, daemon: TwinetdService, result: LoadResult, reactor: IReactorTCP
    ) -> None:
        """
        @param reactor: connects to the daemon's services (L{converse}).
        """
        self.daemon = daemon
        self.result = result
        self._reactor = reactor

    def port(self, serviceId: str) -> int:
        """
        The port number the service C{serviceId} listens on.

        @raise KeyError: it does not listen (unknown, or its bind failed).
        """
        port = self.daemon.listener(serviceId).boundPort
        if port is None:
            raise KeyError(f"{serviceId} is not listening")
        return port

    def converse(
        self, serviceId: str, data: bytes, timeout: float = CONVERSE_TIMEOUT
    ) -> Deferred[bytes]:
        """
        L{converse} with the stream service C{serviceId} on loopback.
        """
        return converse(self._reactor, self.port(serviceId), data, timeout=timeout)

    def stop(self) -> Deferred[None]:
        """
        Stop listening and stop every child; fires when all have ended.
        """
        d: Deferred[None] = maybeDeferred(self.daemon.stopService)
        return d

    async def __aenter__(self) -> RunningDaemon:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def runConfig(
    reactor: IReactorSocket,
    text: str | None = None,
    *,
    path: str | None = None,
    records: Iterable[ServiceConfig] | None = None,
    settings: DaemonSettings | None = None,
    lookups: Lookups | None = None,
    bind: str | None = "127.0.0.1",
    ephemeral: bool = True,
    strict: bool = True,
) -> RunningDaemon:
    """
    Serve a configuration in-process on ephemeral ports, for tests: give
    exactly one of configuration C{text}, a C{path} or C{records}.

    Every service's C{port} is replaced by 0 (the kernel picks a free port;
    ask L{RunningDaemon.port}) unless C{ephemeral} is false, and its C{bind}
    by C{bind} (loopback by default; C{None} keeps the configured address).
    No root is needed: use C{user = -} (the daemon's own user) in the
    configuration.

    @param reactor: a real reactor (it serves as
        L{twinetd.service.fromRecords} says, and L{RunningDaemon.converse}
        connects with its L{IReactorTCP}).
    @param strict: raise L{ConfigError} when the configuration has errors,
        rather than serving what is left.
    @return: the running daemon; stop it in the test's cleanup, or use it
        as C{async with runConfig(...) as daemon}.
    """
    from twinetd.service import fromRecords

    if [text, path, records].count(None) != 2:
        raise TypeError("give exactly one of text, path and records")
    lookups = lookups or Lookups.system()
    if text is not None:
        result = loadText(text, "<test>", lookups)
    elif path is not None:
        result = loadPath(path, lookups)
    else:
        result = LoadResult(tuple(records or ()), ())
    if strict and result.errors:
        raise ConfigError(result.errors[0])
    served = list(result.services)
    if ephemeral:
        served = [attrs.evolve(config, port=0) for config in served]
    if bind is not None:
        served = [attrs.evolve(config, bind=bind) for config in served]
    daemon = fromRecords(served, reactor, settings)
    daemon.startService()
    return RunningDaemon(daemon, result, IReactorTCP(reactor))


class _Conversation(Protocol):
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._received: list[bytes] = []
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._data)
        # Half-close: the program reads end of file after the data.
        self.transport.loseWriteConnection()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self._received.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(b"".join(self._received))


def converse(
    reactor: IReactorTCP,
    port: int,
    data: bytes,
    *,
    host: str = "127.0.0.1",
    timeout: float = CONVERSE_TIMEOUT,
) -> Deferred[bytes]:
    """
    Connect to C{host}:C{port}, send C{data}, close the sending side (the
    program reads end of file) and collect everything the program sends
    until it closes the connection.

    @return: fires with the bytes received; fails with
        L{twisted.internet.defer.TimeoutError} after C{timeout} seconds.
    """
    conversation = _Conversation(data)
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    connected = connectProtocol(endpoint, conversation)

    def collect(_: object) -> Deferred[bytes]:
        return conversation.done

    d: Deferred[bytes] = connected.addCallback(collect)
    return d.addTimeout(timeout, IReactorTime(reactor))


class _RunOptions(TypedDict, total=False):
    """
    L{runConfig}'s keyword arguments, for L{daemonFixture}.
    """

    path: str | None
    records: Iterable[ServiceConfig] | None
    settings: DaemonSettings | None
    lookups: Lookups | None
    bind: str | None
    ephemeral: bool
    strict: bool


def daemonFixture(
    reactor: IReactorSocket,
    text: str | None = None,
    **options: Unpack[_RunOptions],
) -> Callable[[], Iterator[RunningDaemon]]:
    """
    A pytest fixture serving a configuration for each test that asks for it
    (as L{runConfig}, same arguments), stopped after the test; needs
    pytest-twisted::

        from twisted.internet import reactor

        greeter = daemonFixture(reactor, CONFIG)

        @pytest_twisted.ensureDeferred
        async def test_greeter(greeter):
            assert await greeter.converse("greeter", b"") == b"hello\\n"
    """
    import pytest
    import pytest_twisted  # type: ignore[import-untyped]

    @pytest.fixture
    def fixture() -> Iterator[RunningDaemon]:
        daemon = runConfig(reactor, text, **options)
        try:
            yield daemon
        finally:
            pytest_twisted.blockon(daemon.stop())

    result: Callable[[], Iterator[RunningDaemon]] = fixture
    return result
