# -*- test-case-name: tests.unit.test_status -*-
"""
What a daemon has done so far, counted from its event stream: one more
observer of L{twinetd.logs.sinks.LogSinks}, read by the status and the
metrics.

Counting costs one dictionary look-up and an addition per event; nothing is
computed until someone reads the counts.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

from twisted.logger import ILogObserver
from zope.interface import implementer

from twinetd.logs.events import (
    DGRAM_DROPPED,
    EVENT_FIELD,
    FAIL,
    RELAYED,
    SPAWN_FAILED,
    START,
    TRAFFIC,
)

#: The upper bounds (seconds) of the start-latency histogram's buckets: a
#: fork and exec takes about a millisecond, a loaded daemon tens.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class ServiceCounts:
    """
    The counts of one service (by id) since the daemon started; they
    survive reloads.

    @ivar accepted: connections or datagrams admitted (a server started for
        them, or could not be).
    @ivar refused: refusals by xinetd's C{FAIL} reason (C{address},
        C{service_limit}, ...), dropped datagrams included.
    @ivar spawnFailures: servers that could not be started.
    @ivar bytesIn: bytes read from clients (bridged and redirected).
    @ivar bytesOut: bytes sent to clients (bridged and redirected).
    """

    __slots__ = ("accepted", "bytesIn", "bytesOut", "refused", "spawnFailures")

    def __init__(self) -> None:
        self.accepted = 0
        self.refused: Counter[str] = Counter()
        self.spawnFailures = 0
        self.bytesIn = 0
        self.bytesOut = 0


class Histogram:
    """
    A histogram with fixed buckets (Prometheus' cumulative shape is made
    when it is read).

    @ivar bounds: each bucket's upper bound, ascending.
    @ivar counts: observations per bucket; the last one is above every
        bound.
    @ivar sum: the sum of the observations.
    """

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """
        C{(upper bound, observations at most that)} per bucket, the last
        bound C{inf}.
        """
        total = 0
        buckets = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets


@implementer(ILogObserver)
class Counters:
    """
    Counts a daemon's events, by service.

    @ivar services: the counts of every service seen so far, by id.
    @ivar latency: seconds from an accept (or a datagram's arrival) to its
        child running (C{START}'s C{latency}).
    """

    def __init__(self) -> None:
        self.services: dict[str, ServiceCounts] = {}
        self.latency = Histogram()

    def of(self, service: str) -> ServiceCounts:
        counts = self.services.get(service)
        if counts is None:
            counts = self.services[service] = ServiceCounts()
        return counts

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get(EVENT_FIELD)
        if kind == START:
            self.of(event["service"]).accepted += 1
            latency = event["latency"]
            if latency is not None:
                self.latency.observe(latency)
        elif kind == FAIL:
            self.of(event["service"]).refused[event["reason"]] += 1
        elif kind == SPAWN_FAILED:
            counts = self.of(event["service"])
            counts.accepted += 1
            counts.spawnFailures += 1
        elif kind in (RELAYED, TRAFFIC):
            counts = self.of(event["service"])
            counts.bytesIn += event["bytesIn"]
            counts.bytesOut += event["bytesOut"]
        elif kind == DGRAM_DROPPED:
            # The drops after the first, summarised (that one was a FAIL).
            self.of(event["service"]).refused.update(event["reasons"])
