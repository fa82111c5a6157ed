# -*- test-case-name: tests.integration.test_reloads -*-
"""
The runtime tree: service records and a reactor become a L{MultiService} with
one listener per record.

Embedders build the same tree as C{twistd twinetd} does, and add
L{DaemonControl} for what the plugin does beyond the tree (signals, umask,
reaping, systemd)::

    from twinetd.config import loadPath
    from twinetd.service import DaemonControl, fromPath
    daemon, result = fromPath("/etc/xinetd.d", reactor)
    daemon.setServiceParent(application)
    control = DaemonControl(daemon, reactor, load=lambda: loadPath("/etc/xinetd.d"))
    control.setServiceParent(application)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IReactorFDSet,
    IReactorProcess,
    IReactorSocket,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
)
from twisted.logger import Logger

import twinetd
from twinetd._twistedcompat import detachService
from twinetd.config import LoadResult, Lookups, loadPath, loadText
from twinetd.control import DaemonControl, keepPrevious, logProblems, summary
from twinetd.errors import ConfigError
from twinetd.listeners.base import Listener, Runtime
from twinetd.listeners.datagram import DatagramListener
from twinetd.listeners.sockets import listenAddress
from twinetd.listeners.stream import StreamListener
from twinetd.logs import RELOADED, LogSinks, emit
from twinetd.logs.counters import Counters
from twinetd.model import ServiceConfig, SocketType
from twinetd.modes.internal import ChargenRing, internalFor
from twinetd.policy.access import DenyList
from twinetd.policy.gate import Gate, noNames, threadedResolver
from twinetd.policy.limits import Limits
from twinetd.spawn import (
    BusySpawner,
    ClosingSpawner,
    PosixSpawner,
    RemoteSpawner,
    spawnerFor,
)
from twinetd.status import ServiceState, SpawnerProcessState, statusDocument

if TYPE_CHECKING:
    from twinetd.spawnclient import ProcessSpawner

__all__ = [
    "DaemonControl",
    "DaemonSettings",
    "TwinetdService",
    "fromPath",
    "fromRecords",
    "fromText",
    "keepPrevious",
    "logProblems",
    "summary",
    "unsupportedReason",
]

log = Logger()


@attrs.frozen
class DaemonSettings:
    """
    Daemon-wide settings (the C{twistd twinetd} options).

    @ivar killDelay: seconds a child may outlive its client before SIGTERM
        (and again before SIGKILL).
    @ivar processLimit: the most children running at once over all services
        (xinetd's C{-limit}), or C{None}.
    @ivar handoff: hand every stream service's socket to its program (with
        standard error on the socket), as xinetd does, unless the service
        sets C{twinetd_mode} / C{twinetd_stderr}.
    @ivar syslogPath: the local syslog socket for C{log_type = SYSLOG}.
    @ivar environment: the daemon's environment, from which C{passenv} takes
        variables.
    @ivar uid: the daemon's effective user id.
    @ivar gid: the daemon's group id if its real, effective and saved group
        ids agree, else C{None}.
    @ivar spawnerProcess: start children from a spawner process
        (L{twinetd.spawnclient}) on a reactor that can.
    @ivar spawnerProcessAbove: start children from a spawner process only
        while more than this many are running, from the daemon otherwise
        (L{twinetd.spawn.BusySpawner}); C{None}: as
        C{spawnerProcess} says.
    """

    killDelay: float = 5.0
    processLimit: int | None = None
    handoff: bool = False
    syslogPath: str = "/dev/log"
    environment: tuple[tuple[str, str], ...] = attrs.field(
        factory=lambda: tuple(os.environ.items())
    )
    uid: int = attrs.field(factory=os.geteuid)
    gid: int | None = attrs.field(factory=lambda: _soleGid())
    spawnerProcess: bool = False
    spawnerProcessAbove: int | None = None


def _soleGid() -> int | None:
    gids = set(os.getresgid())
    return gids.pop() if len(gids) == 1 else None


def unsupportedReason(config: ServiceConfig) -> str | None:
    """
    Why the runtime cannot serve C{config} yet, or C{None} if it can.
    """
    if config.socketType not in (SocketType.STREAM, SocketType.DGRAM):
        return f"socket_type {config.socketType.value} is not supported"
    if config.isInternal:
        try:
            internalFor(config)
        except ConfigError as e:
            return e.problem.message
        return None
    if config.redirect is not None:
        if config.wait:
            # xinetd: "Redirected service X must not wait" (disabled).
            return "a redirected service must not wait (wait = no)"
        return None
    if config.server is None:
        return "no server to run"
    return None


class TwinetdService(MultiService):
    """
    The daemon: one child service per served record.

    @ivar records: the records being served, by id.
    @ivar runtime: what the services share (spawner, gate, ...).
    @ivar counters: what the services have done so far, counted from
        their events (for the status and the metrics).
    @ivar startedAt: when the daemon started (the reactor's clock), once it
        has.
    """

    startedAt: float | None = None

    def __init__(self, runtime: Runtime, reactor: IReactorSocket) -> None:
        """
        @param reactor: listens; it must provide what L{fromRecords} says.
        """
        super().__init__()
        self.runtime = runtime
        self._reactor = reactor
        self.records: dict[str, ServiceConfig] = {}
        # Listeners replaced by a reload, whose connections still run.
        self._retired: set[StreamListener] = set()
        self.counters = Counters()
        runtime.sinks.addObserver(self.counters)

    def startService(self) -> None:
        self.startedAt = self.runtime.clock.seconds()
        super().startService()

    def states(self) -> list[ServiceState]:
        """
        Each served service as it is now, read from the tree.
        """
        limits = self.runtime.gate.limits
        states = []
        for serviceId, config in self.records.items():
            listener = self._listenerOf(serviceId)
            bound = listener.boundPort if listener is not None else None
            failed = listener is not None and listener.failure is not None
            paused = limits.isDisabled(serviceId)
            states.append(
                ServiceState(
                    id=serviceId,
                    protocol=config.protocol,
                    port=config.port if bound is None else bound,
                    address=_address(config),
                    kind=_kind(config, self.runtime),
                    listening=bound is not None and not paused,
                    paused=paused,
                    settled=bound is not None or failed or paused,
                    running=limits.running(serviceId),
                )
            )
        return states

    def status(self) -> dict[str, Any]:
        """
        The status document (C{/status}, SIGUSR2, C{twinetd status}).
        """
        now = self.runtime.clock.seconds()
        return statusDocument(
            self.states(),
            self.counters,
            pid=os.getpid(),
            uptime=0.0 if self.startedAt is None else now - self.startedAt,
            version=twinetd.__version__,
            spawnerProcess=self.spawnerProcess(),
        )

    def spawnerProcess(self) -> SpawnerProcessState | None:
        """
        The state of the daemon's spawner process, if it has one: always
        with C{--spawner-process}, with C{--spawner-process-above} (the
        daemon's default) also before it is started.
        """
        return _spawnerProcessState(self.runtime.spawner)

    def listener(self, serviceId: str) -> Listener:
        """
        The listener of the service C{serviceId}.
        """
        child = self.getServiceNamed(serviceId)
        assert isinstance(child, Listener)
        return child

    def _listenerOf(self, serviceId: str) -> Listener | None:
        try:
            child = self.getServiceNamed(serviceId)
        except KeyError:
            return None
        return child if isinstance(child, Listener) else None

    def reload(self, records: Iterable[ServiceConfig]) -> Deferred[None]:
        """
        Serve C{records} instead of the current set, changing only what
        differs (xinetd's SIGHUP): a removed service stops listening and its
        running servers are stopped (as xinetd terminates them); a new one
        starts; a changed C{wait = no} stream service whose socket is the
        same (address, port, socket options) keeps its listening port, which
        serves the new configuration from the next connection on (no client
        is refused or dropped), while connections already running go on to
        their end; one whose socket changed stops listening and the new
        configuration listens; a changed datagram or C{wait = yes} service
        is restarted.  Live counts (C{instances}, C{per_source}, C{cps})
        carry over by service id.

        @return: fires when every stopped service has stopped.
        """
        wanted: dict[str, ServiceConfig] = {}
        for config in records:
            reason = unsupportedReason(config)
            if reason is None:
                wanted[config.id] = config
            else:
                _logSkipped(config, reason)
        for serviceId in sorted(wanted.keys() - self.records.keys()):
            emit(RELOADED, log, service=serviceId, change="added", detail=None)
        stopping: list[Deferred[Any]] = []
        self._retired = {child for child in self._retired if child.busy}
        for serviceId, old in list(self.records.items()):
            new = wanted.get(serviceId)
            if new is not None and _sameService(old, new):
                self.records[serviceId] = new
                continue
            child = self.getServiceNamed(serviceId)
            if new is not None and self._takeOver(child, new):
                emit(RELOADED, log, service=serviceId, change="changed", detail=None)
                continue
            del self.records[serviceId]
            if new is not None and isinstance(child, StreamListener):
                # Detached without stopService: its running connections keep
                # their servers (stopped with the daemon at the latest).
                detachService(self, child)
                self._retired.add(child)
                stopping.append(child.stopListening())
            else:
                self.runtime.gate.limits.removeService(serviceId)
                # Stops it (and its servers) when the daemon runs.
                stopping.append(maybeDeferred(child.disownServiceParent))
            change = "removed" if new is None else "changed"
            emit(RELOADED, log, service=serviceId, change=change, detail=None)
        done = gatherResults(stopping) if stopping else succeed([])
        return done.addCallback(lambda _: self._startNew(wanted))

    def _takeOver(self, child: Service, config: ServiceConfig) -> bool:
        """
        Give a running stream listener C{config} if its socket stays the
        same (L{StreamListener.takeOver}).
        """
        if not isinstance(child, StreamListener):
            return False
        try:
            successor = _serviceFor(config, self.runtime, self._reactor)
        except OSError:
            return False
        if not isinstance(successor, StreamListener) or not child.takeOver(successor):
            return False
        self.runtime.gate.limits.updateConfig(config.id, config)
        self.records[config.id] = config
        return True

    def _startNew(self, wanted: dict[str, ServiceConfig]) -> None:
        for serviceId, config in wanted.items():
            if serviceId in self.records:
                continue
            self._add(config)
        self.runtime.sinks.keepOnly(c.logType for c in self.records.values())

    def _add(self, config: ServiceConfig) -> None:
        try:
            child = _serviceFor(config, self.runtime, self._reactor)
        except OSError as e:
            _logSkipped(config, f"cannot open its log: {e.strerror}")
            return
        self.runtime.gate.limits.updateConfig(config.id, config)
        child.setServiceParent(self)
        self.records[config.id] = config

    def stopService(self) -> Deferred[None]:
        retired = [maybeDeferred(child.stopService) for child in self._retired]
        self._retired.clear()
        d: Deferred[Any] = maybeDeferred(MultiService.stopService, self)
        return gatherResults([d, *retired]).addBoth(self._stopped)

    def _stopped(self, result: Any) -> Deferred[None] | None:
        self.runtime.sinks.close()
        if isinstance(self.runtime.spawner, ClosingSpawner):
            # Every child has ended: the spawner process goes too.
            return self.runtime.spawner.close()
        return None


def _address(config: ServiceConfig) -> str:
    if config.listen:
        return " ".join(spec.text for spec in config.listen)
    return listenAddress(config)


def _kind(config: ServiceConfig, runtime: Runtime) -> str:
    if config.isInternal:
        return "internal"
    if config.redirect is not None:
        return "redirect"
    if config.socketType is SocketType.DGRAM:
        return "datagram"
    if config.wait:
        return "wait"
    return "handoff" if runtime.handsOff(config) else "bridge"


def _sameService(old: ServiceConfig, new: ServiceConfig) -> bool:
    # Moving a service within its file is no change.
    return attrs.evolve(old, source=new.source) == new


def _logSkipped(config: ServiceConfig, reason: str) -> None:
    log.error(
        "{file}:{line}: {service}: {reason}; service skipped",
        file=config.source.file,
        line=config.source.line,
        service=config.id,
        reason=reason,
    )


def _spawnerProcessState(spawner: object) -> SpawnerProcessState | None:
    """
    The state of C{spawner}'s spawner process, if it has one: always with
    C{--spawner-process}, once made with C{--spawner-process-above}.
    """
    if isinstance(spawner, BusySpawner):
        remote = spawner.remote
        if remote is None:
            return SpawnerProcessState(pid=None, running=0)
        spawner = remote
    if not isinstance(spawner, RemoteSpawner):
        return None
    return SpawnerProcessState(pid=spawner.pid, running=len(spawner.running))


def _processSpawner(reactor: IReactorProcess) -> ProcessSpawner:
    """
    A spawner process's spawner: its client imported only by a daemon that
    uses one.
    """
    from twinetd.spawnclient import ProcessSpawner

    return ProcessSpawner(reactor)


def _runtime(reactor: IReactorSocket, settings: DaemonSettings) -> Runtime:
    clock = IReactorTime(reactor)
    resolver = (
        threadedResolver(reactor) if IReactorThreads.providedBy(reactor) else noNames
    )
    gate = Gate(
        clock,
        Limits(clock, processLimit=settings.processLimit),
        DenyList(clock),
        resolveName=resolver,
    )
    spawner = spawnerFor(IReactorProcess(reactor))
    if settings.spawnerProcessAbove is not None and isinstance(spawner, PosixSpawner):
        spawner = BusySpawner(
            spawner.reactor, settings.spawnerProcessAbove, _processSpawner
        )
    elif settings.spawnerProcess and isinstance(spawner, PosixSpawner):
        spawner = _processSpawner(spawner.reactor)
    return Runtime(
        spawner=spawner,
        chargenRing=ChargenRing(),
        clock=clock,
        tcp=IReactorTCP(reactor),
        sinks=LogSinks(clock, syslogPath=settings.syslogPath),
        gate=gate,
        environment=dict(settings.environment),
        uid=settings.uid,
        gid=settings.gid,
        killDelay=settings.killDelay,
        handoff=settings.handoff,
    )


def fromRecords(
    records: Iterable[ServiceConfig],
    reactor: IReactorSocket,
    settings: DaemonSettings | None = None,
) -> TwinetdService:
    """
    Build the service tree for C{records} on C{reactor}.

    Records the runtime cannot serve are logged and left out.

    @param reactor: listens (L{IReactorSocket}); it must also provide
        L{IReactorProcess} (children), L{IReactorTCP} (C{redirect}, ident),
        L{IReactorTime}, L{IReactorFDSet} (sockets watched without being
        read) and L{IReactorCore} (a host name in C{bind}); with
        L{IReactorThreads}, C{only_from} names are looked up.  Twisted's
        reactors on POSIX do, and so does
        L{twinetd.testing.MemoryProcessReactor}.
    """
    runtime = _runtime(reactor, settings or DaemonSettings())
    daemon = TwinetdService(runtime, reactor)
    for config in records:
        reason = unsupportedReason(config)
        if reason is not None:
            _logSkipped(config, reason)
            continue
        daemon._add(config)
    return daemon


def _serviceFor(
    config: ServiceConfig, runtime: Runtime, reactor: IReactorSocket
) -> Listener:
    """
    The listener serving C{config}.

    @raise OSError: its log file cannot be opened (xinetd disables such a
        service).
    """
    serviceLog = runtime.sinks.serviceLog(config)
    if config.socketType is SocketType.DGRAM:
        if config.isInternal:
            return DatagramListener(
                config,
                runtime,
                reactor,
                serviceLog=serviceLog,
                internal=internalFor(config, runtime.chargenRing),
            )
        if config.wait or runtime.handsOff(config):
            from twinetd.listeners.waitdatagram import WaitDatagramListener

            return WaitDatagramListener(
                config, runtime, IReactorFDSet(reactor), serviceLog=serviceLog
            )
        return DatagramListener(config, runtime, reactor, serviceLog=serviceLog)
    if config.wait and not config.isInternal:
        # Internal services are served in the daemon whatever wait says.
        from twinetd.listeners.waitstream import WaitStreamListener

        return WaitStreamListener(
            config, runtime, IReactorFDSet(reactor), serviceLog=serviceLog
        )
    return StreamListener(config, runtime, reactor, serviceLog=serviceLog)


def fromPath(
    path: str,
    reactor: IReactorSocket,
    settings: DaemonSettings | None = None,
    lookups: Lookups | None = None,
) -> tuple[TwinetdService, LoadResult]:
    """
    Load a configuration file or folder and build its service tree.  Problems
    are logged and returned; broken services are left out.

    @param reactor: as L{fromRecords}'s.
    """
    result = loadPath(path, lookups or Lookups.system())
    logProblems(result)
    return fromRecords(result.services, reactor, settings), result


def fromText(
    text: str,
    reactor: IReactorSocket,
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
