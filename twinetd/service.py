"""
The runtime tree: service records and a reactor become a L{MultiService} with
one listener per record.

Embedders build the same tree as C{twistd twinetd} does::

    from twinetd.service import fromPath
    daemon, result = fromPath("/etc/xinetd.d", reactor)
    daemon.setServiceParent(application)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorProcess,
    IReactorTCP,
    IReactorTime,
)
from twisted.logger import Logger

from twinetd.config import LoadResult, Lookups, loadPath, loadText
from twinetd.factory import StreamFactory
from twinetd.model import ServiceConfig, SocketType
from twinetd.spawn import spawnerFor

log = Logger(namespace="twinetd")


@attrs.frozen
class DaemonSettings:
    """
    Daemon-wide settings (the C{twistd twinetd} options).

    @ivar killDelay: seconds a child may outlive its client before SIGTERM
        (and again before SIGKILL).
    @ivar environment: the daemon's environment, from which C{passenv} takes
        variables.
    @ivar uid: the daemon's effective user id.
    """

    killDelay: float = 5.0
    environment: tuple[tuple[str, str], ...] = attrs.field(
        factory=lambda: tuple(os.environ.items())
    )
    uid: int = attrs.field(factory=os.geteuid)


def unsupportedReason(config: ServiceConfig) -> str | None:
    """
    Why the runtime cannot serve C{config} yet, or C{None} if it can.
    """
    if config.socketType is not SocketType.STREAM:
        return f"socket_type {config.socketType.value} is not supported yet"
    if config.wait:
        return "wait = yes is not supported yet"
    if config.isInternal:
        return "internal services are not supported yet"
    if config.redirect is not None and config.server is None:
        return "redirect is not supported yet"
    if config.server is None:
        return "no server to run"
    return None


def _listenAddress(config: ServiceConfig) -> str:
    if config.bind is not None:
        return config.bind
    if "IPv6" in config.flags:
        return "::"
    return "0.0.0.0"


class ListenerService(Service):
    """
    Listens on one service's port.  A port that cannot be bound is logged and
    leaves this service idle; the daemon's other services are unaffected.

    @ivar port: the listening port once started, else C{None}.
    @ivar failure: why listening failed, if it did.
    """

    port: IListeningPort | None = None
    failure: Exception | None = None

    def __init__(
        self, config: ServiceConfig, factory: StreamFactory, reactor: IReactorTCP
    ) -> None:
        self.config = config
        self.factory = factory
        self._reactor = reactor
        self.setName(config.id)

    def privilegedStartService(self) -> None:
        # Before twistd drops privileges: ports below 1024 need root.
        Service.privilegedStartService(self)
        self._listen()

    def startService(self) -> None:
        Service.startService(self)
        if self.port is None and self.failure is None:
            self._listen()

    def _listen(self) -> None:
        config = self.config
        try:
            port = self._reactor.listenTCP(
                config.port, self.factory, interface=_listenAddress(config)
            )
        except CannotListenError as e:
            self.failure = e
            log.error(
                "{file}:{line}: {service}: cannot listen on {address} port "
                "{port}: {reason}",
                file=config.source.file,
                line=config.source.line,
                service=config.id,
                address=_listenAddress(config),
                port=config.port,
                reason=e.socketError,
            )
            return
        self.port = port
        _applySocketFlags(port, config)
        log.info(
            "{service} listening on {address} port {port}",
            service=config.id,
            address=_listenAddress(config),
            port=port.getHost().port,  # type: ignore[attr-defined]
        )

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, then stop the children of live connections; the
        result fires when the port is closed and every child has ended.
        """
        Service.stopService(self)
        port, self.port = self.port, None
        stopped: Deferred[Any] = succeed(None)
        if port is not None:
            stopped = maybeDeferred(port.stopListening)
        children = self.factory.stop()
        return gatherResults([stopped, children]).addCallback(lambda _: None)


def _applySocketFlags(port: IListeningPort, config: ServiceConfig) -> None:
    # Linux copies SO_KEEPALIVE and TCP_NODELAY from the listening socket to
    # every accepted one, so setting them once here covers all connections.
    sock = getattr(port, "socket", None)
    if sock is None:
        return
    if "KEEPALIVE" in config.flags:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if "NODELAY" in config.flags:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class TwinetdService(MultiService):
    """
    The daemon: one L{ListenerService} child per served record.

    @ivar records: the records being served, by id.
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, ServiceConfig] = {}

    def listener(self, serviceId: str) -> ListenerService:
        child = self.getServiceNamed(serviceId)
        assert isinstance(child, ListenerService)
        return child


def fromRecords(
    records: Iterable[ServiceConfig],
    reactor: Any,
    settings: DaemonSettings | None = None,
) -> TwinetdService:
    """
    Build the service tree for C{records} on C{reactor} (which must provide
    L{IReactorTCP}, L{IReactorProcess} and L{IReactorTime}).

    Records the runtime cannot serve are logged and left out.
    """
    settings = settings or DaemonSettings()
    spawner = spawnerFor(IReactorProcess(reactor))
    clock = IReactorTime(reactor)
    tcp = IReactorTCP(reactor)
    environment: Mapping[str, str] = dict(settings.environment)
    daemon = TwinetdService()
    for config in records:
        reason = unsupportedReason(config)
        if reason is not None:
            log.error(
                "{file}:{line}: {service}: {reason}; service skipped",
                file=config.source.file,
                line=config.source.line,
                service=config.id,
                reason=reason,
            )
            continue
        factory = StreamFactory(
            config, spawner, clock, environment, settings.uid, settings.killDelay
        )
        ListenerService(config, factory, tcp).setServiceParent(daemon)
        daemon.records[config.id] = config
    return daemon


def logProblems(result: LoadResult) -> None:
    """
    Log every problem of a configuration load, errors as errors.
    """
    for problem in result.problems:
        if problem.isError:
            log.error("{problem}", problem=str(problem), twinetdProblem=problem)
        else:
            log.warn("{problem}", problem=str(problem), twinetdProblem=problem)


def fromPath(
    path: str,
    reactor: Any,
    settings: DaemonSettings | None = None,
    lookups: Lookups | None = None,
) -> tuple[TwinetdService, LoadResult]:
    """
    Load a configuration file or folder and build its service tree.  Problems
    are logged and returned; broken services are left out.
    """
    result = loadPath(path, lookups or Lookups.system())
    logProblems(result)
    return fromRecords(result.services, reactor, settings), result


def fromText(
    text: str,
    reactor: Any,
    settings: DaemonSettings | None = None,
    lookups: Lookups | None = None,
    filename: str = "<string>",
) -> tuple[TwinetdService, LoadResult]:
    """
    Like L{fromPath}, for configuration given as text.
    """
    result = loadText(text, filename, lookups or Lookups.system())
    logProblems(result)
    return fromRecords(result.services, reactor, settings), result
