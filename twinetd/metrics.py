# -*- test-case-name: tests.unit.test_status,tests.integration.test_metrics -*-
"""
C{--metrics ENDPOINT}: the Prometheus text format at C{/metrics}, through
C{prometheus_client} (its Twisted resource, with a registry of the daemon's
own), and the status document (L{twinetd.status}) as JSON at C{/status}.

The counters come from L{twinetd.logs.counters.Counters}, an observer of
the daemon's events; the gauges are read from the service tree when
Prometheus scrapes.  prometheus_client renders in a thread of the reactor's
pool: what it reads is copied in the reactor's thread first
(L{Snapshot}).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.threads import blockingCallFromThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from twinetd.logs.counters import Counters, ServiceCounts
from twinetd.service import TwinetdService
from twinetd.status import ServiceState, SpawnerProcessState

log = Logger()


@attrs.frozen
class Snapshot:
    """
    What one scrape reads, copied in the reactor's thread.

    @ivar states: each served service's state.
    @ivar counts: every service's counts, by id.
    @ivar latency: the start-latency histogram: cumulative C{(bound,
        count)} pairs and the sum.
    @ivar spawnerProcess: the spawner process, if the daemon has one.
    """

    states: tuple[ServiceState, ...]
    counts: dict[str, ServiceCounts]
    latency: tuple[tuple[tuple[float, int], ...], float]
    spawnerProcess: SpawnerProcessState | None = None

    @classmethod
    def of(cls, daemon: TwinetdService) -> Snapshot:
        counters: Counters = daemon.counters
        counts = {}
        for serviceId, c in counters.services.items():
            copy = counts[serviceId] = ServiceCounts()
            copy.accepted, copy.spawnFailures = c.accepted, c.spawnFailures
            copy.bytesIn, copy.bytesOut = c.bytesIn, c.bytesOut
            copy.refused.update(c.refused)
        histogram = counters.latency
        return cls(
            tuple(daemon.states()),
            counts,
            (tuple(histogram.cumulative()), histogram.sum),
            daemon.spawnerProcess(),
        )


class TwinetdCollector:
    """
    A prometheus_client collector for one daemon.
    """

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        """
        @param snapshot: gives what to report; called in the thread that
            renders.
        """
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        service = ["service"]
        accepted = CounterMetricFamily(
            "twinetd_accepted",
            "Connections or datagrams admitted (a server was started, or tried).",
            labels=service,
        )
        refused = CounterMetricFamily(
            "twinetd_refused",
            "Connections or datagrams refused, by xinetd's FAIL reason.",
            labels=["service", "reason"],
        )
        failures = CounterMetricFamily(
            "twinetd_spawn_failures",
            "Servers that could not be started.",
            labels=service,
        )
        relayed = CounterMetricFamily(
            "twinetd_bytes",
            "Bytes relayed by bridged and redirect services: in from clients, "
            "out to them.",
            labels=["service", "direction"],
        )
        for serviceId, counts in sorted(snap.counts.items()):
            accepted.add_metric([serviceId], counts.accepted)
            for reason, count in sorted(counts.refused.items()):
                refused.add_metric([serviceId, reason], count)
            failures.add_metric([serviceId], counts.spawnFailures)
            relayed.add_metric([serviceId, "in"], counts.bytesIn)
            relayed.add_metric([serviceId, "out"], counts.bytesOut)
        yield from (accepted, refused, failures, relayed)
        running = GaugeMetricFamily(
            "twinetd_running", "Servers running now.", labels=service
        )
        listening = GaugeMetricFamily(
            "twinetd_listening",
            "1 while the service listens; 0 while paused by cps or unable to bind.",
            labels=service,
        )
        dropped = CounterMetricFamily(
            "twinetd_datagrams_dropped",
            "Datagrams of datagram services not served (refused or over a limit).",
            labels=service,
        )
        for state in snap.states:
            running.add_metric([state.id], state.running)
            listening.add_metric([state.id], 1 if state.listening else 0)
            if state.kind == "datagram":
                counts = snap.counts.get(state.id, ServiceCounts())
                dropped.add_metric([state.id], sum(counts.refused.values()))
        yield from (running, listening, dropped)
        if snap.spawnerProcess is not None:
            yield GaugeMetricFamily(
                "twinetd_spawner_process_running",
                "Servers the spawner process started that run now (by default "
                "it starts them while more than 4 run).",
                value=snap.spawnerProcess.running,
            )
        buckets, total = snap.latency
        yield HistogramMetricFamily(
            "twinetd_start_latency_seconds",
            "Seconds from accepting a connection (or reading a datagram) to its "
            "server running.",
            buckets=[(_bound(bound), count) for bound, count in buckets],
            sum_value=total,
        )


def _bound(bound: float) -> str:
    # As prometheus_client writes "le" ("+Inf", "0.005").
    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return text


class StatusResource(Resource):
    """
    C{/status}: the status document as JSON.
    """

    isLeaf = True

    def __init__(self, daemon: TwinetdService) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._daemon = daemon

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")  # type: ignore[no-untyped-call]
        return json.dumps(self._daemon.status(), indent=2).encode() + b"\n"


class _QuietSite(Site):
    # One access line per scrape would fill twistd's log.
    noisy = False

    def log(self, request: http.Request) -> None:
        pass


def metricsSite(daemon: TwinetdService, reactor: Any) -> Site:
    """
    The web site of C{--metrics}: C{/metrics} and C{/status}.

    @param reactor: the global reactor (prometheus_client's resource runs
        on it and its thread pool).
    """
    # prometheus_client.twisted imports the global reactor.
    from prometheus_client.twisted import MetricsResource

    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        TwinetdCollector(lambda: blockingCallFromThread(reactor, Snapshot.of, daemon))
    )
    ProcessCollector(registry=registry)
    root = Resource()  # type: ignore[no-untyped-call]
    root.putChild(b"metrics", MetricsResource(registry))  # type: ignore[no-untyped-call]
    root.putChild(b"status", StatusResource(daemon))
    return _QuietSite(root)  # type: ignore[no-untyped-call]


class MetricsService(Service):
    """
    Serves L{metricsSite} on an endpoint.  A port that cannot be had is
    logged as one line; the daemon's services go on.

    @ivar port: the listening port, once listening.
    """

    port: IListeningPort | None = None

    def __init__(self, description: str, daemon: TwinetdService, reactor: Any) -> None:
        """
        @param description: a Twisted server endpoint description
            (C{tcp:9465:interface=127.0.0.1}, C{unix:/run/twinetd/m.sock}).

        @raise ValueError: the description is not one.
        """
        self.description = description
        self.endpoint: IStreamServerEndpoint = serverFromString(  # type: ignore[no-untyped-call]
            reactor, description
        )
        self._site = metricsSite(daemon, reactor)
        self._listening: Deferred[Any] | None = None

    def privilegedStartService(self) -> None:
        # As the listeners: a unix socket under /run, or a port below 1024.
        Service.privilegedStartService(self)  # type: ignore[no-untyped-call]
        self._listen()

    def startService(self) -> None:
        Service.startService(self)  # type: ignore[no-untyped-call]
        self._listen()

    def _listen(self) -> None:
        if self._listening is not None:
            return
        self._listening = self.endpoint.listen(self._site)
        self._listening.addCallbacks(self._listened, self._failed)

    def _listened(self, port: IListeningPort) -> None:
        self.port = port
        log.info(
            "metrics and status listening on {endpoint}", endpoint=self.description
        )

    def _failed(self, failure: Failure) -> None:
        log.error(
            "--metrics {endpoint}: cannot listen: {reason}",
            endpoint=self.description,
            reason=failure.getErrorMessage(),
        )

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)  # type: ignore[no-untyped-call]
        self._listening = None
        port, self.port = self.port, None
        if port is None:
            return None
        d: Deferred[Any] = maybeDeferred(port.stopListening)
        return d.addCallback(lambda _: None)
