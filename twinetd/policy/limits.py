# -*- test-case-name: tests.unit.test_limits -*-
"""
Admission limits: C{instances}, C{per_source}, C{cps}, C{max_load} and the
daemon-wide cap on children (xinetd's C{-limit}).

L{Limits} hands out a L{Ticket} per admitted connection; the runtime
releases it when the connection's server ends.  Counters are keyed by
service id, so a reload (L{Limits.updateConfig}) keeps the live counts.
Time comes from an injected clock; the load average from an injected
function.  When C{cps} trips, the refusal says for how long
(L{Refusal.pause}): the listener that asked stops accepting for that long
itself; nothing here calls back into the runtime.

The checks and their FAIL reasons follow xinetd 2.3.15's
C{parent_access_control} (C{access.c}), in its order: cps, load, instances,
per_source, process limit.  (xinetd checks C{access_times} between load and
instances, and the address lists later, in the child; see L{twinetd.policy.access}.)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import attrs
from twisted.logger import Logger

from twinetd.model import ServiceConfig
from twinetd.policy.access import sourceKey

_log = Logger()

#: xinetd's FAIL reasons (C{access_code_names} in C{access.c}).
REASON_SERVICE_LIMIT = "service_limit"
REASON_PER_SOURCE_LIMIT = "per_source_limit"
REASON_CPS = "connections per second"
REASON_PROCESS_LIMIT = "process_limit"
REASON_LOAD = "load"

#: xinetd's C{cps} when none is configured (C{DEFAULT_LOOP_RATE},
#: C{DEFAULT_LOOP_TIME}).
DEFAULT_CPS = (50, 10)


class Clock(Protocol):
    """
    The part of C{IReactorTime} L{Limits} uses.
    """

    def seconds(self) -> float: ...


def systemLoadAverage() -> float:
    """
    The one-minute load average, as xinetd's C{max_load} reads it.
    """
    return os.getloadavg()[0]


@attrs.frozen
class ServiceLimits:
    """
    The limits of one service.

    @ivar instances: at most this many servers at once; C{None} is
        UNLIMITED, C{0} refuses everyone.
    @ivar perSource: at most this many servers per client address; C{None}
        is UNLIMITED.
    @ivar cps: (rate, seconds to pause); a rate of 0 disables the check.
    @ivar maxLoad: refuse when the one-minute load average reaches this, or
        C{None}.
    """

    instances: int | None = None
    perSource: int | None = None
    cps: tuple[int, int] = (0, 0)
    maxLoad: float | None = None

    @classmethod
    def fromConfig(cls, config: ServiceConfig) -> ServiceLimits:
        """
        The limits of C{config}; a service without C{cps} gets xinetd's
        default (L{DEFAULT_CPS}).
        """
        return cls(
            instances=config.instances,
            perSource=config.perSource,
            cps=config.cps if config.cps is not None else DEFAULT_CPS,
            maxLoad=config.maxLoad or None,
        )


@attrs.frozen
class Refusal:
    """
    A connection the limits turn away.

    @ivar reason: xinetd's FAIL reason (C{REASON_*}).
    @ivar service: the service id.
    @ivar source: the client address, as given to L{Limits.acquire}.
    @ivar pause: when this very connection tripped C{cps}: the seconds the
        service's listener stops accepting (xinetd closes the socket);
        otherwise 0.
    """

    reason: str
    service: str
    source: str | None
    pause: int = 0


@attrs.define(eq=False)
class _ServiceState:
    limits: ServiceLimits
    running: int = 0
    perSource: Counter[str] = attrs.field(factory=Counter)
    # xinetd's sc_time_conn and sc_time_limit.
    cpsCount: int = 0
    cpsStart: int = 0
    # The end of a cps pause, on the clock.
    disabledUntil: float = 0.0
    removed: bool = False


class Ticket:
    """
    One admitted connection.  Hold it while the connection's server runs and
    call L{release} when it ends; releasing twice does nothing.

    @ivar service: the service id.
    @ivar source: the client address (normalised), or C{None}.
    """

    def __init__(
        self, owner: Limits, state: _ServiceState, service: str, source: str | None
    ) -> None:
        self.service = service
        self.source = source
        self._owner = owner
        self._state: _ServiceState | None = state

    @property
    def released(self) -> bool:
        return self._state is None

    def release(self) -> None:
        """
        Give the slot back.  Idempotent.
        """
        state, self._state = self._state, None
        if state is not None:
            self._owner._release(self.service, state, self.source)

    def __repr__(self) -> str:
        status = "released" if self.released else "held"
        return f"<Ticket {self.service} from {self.source} {status}>"


class Limits:
    """
    The daemon's admission counters.

    @ivar processLimit: the daemon-wide cap on running servers (xinetd's
        C{-limit}), or C{None}.
    """

    def __init__(
        self,
        clock: Clock,
        processLimit: int | None = None,
        loadAverage: Callable[[], float] = systemLoadAverage,
    ) -> None:
        self._clock = clock
        self.processLimit = processLimit
        self._loadAverage = loadAverage
        self._services: dict[str, _ServiceState] = {}
        self._total = 0

    def updateConfig(self, service: str, limits: ServiceLimits | ServiceConfig) -> None:
        """
        Set the limits of C{service}, keeping its live counts (and its cps
        pause) across reloads.  New limits apply to new connections only.
        """
        if isinstance(limits, ServiceConfig):
            limits = ServiceLimits.fromConfig(limits)
        state = self._services.get(service)
        if state is None:
            self._services[service] = _ServiceState(limits)
        else:
            state.limits = limits
            state.removed = False

    def removeService(self, service: str) -> None:
        """
        Forget C{service}: its cps pause ends silently; its counts stay until
        its outstanding tickets are released (or the service comes back).
        """
        state = self._services.get(service)
        if state is None:
            return
        state.disabledUntil = 0.0
        state.cpsCount = 0
        if state.running:
            state.removed = True
        else:
            del self._services[service]

    def acquire(self, service: str, source: str | None) -> Ticket | Refusal:
        """
        Admit a connection from C{source} to C{service}, or refuse it.

        Every call counts towards C{cps}, refused ones included, as in
        xinetd.

        @param service: a service id given to L{updateConfig}.
        @param source: the client address (IPv4-mapped addresses count as
            their IPv4 host), or C{None} when unknown (no per_source check).
        @raise KeyError: unknown service.
        """
        state = self._services[service]
        if state.removed:
            raise KeyError(service)
        key = None if source is None else sourceKey(source)
        limits = state.limits
        if self._clock.seconds() < state.disabledUntil:
            # A connection accepted before the listener stopped.
            return Refusal(REASON_CPS, service, key)
        if limits.cps[0] and self._cpsTrips(service, state):
            return Refusal(REASON_CPS, service, key, pause=limits.cps[1])
        if limits.maxLoad is not None and self._loadAverage() >= limits.maxLoad:
            _log.warn(
                "refused connect from {source} due to excessive load",
                source=key,
                service=service,
            )
            return Refusal(REASON_LOAD, service, key)
        if limits.instances is not None and state.running >= limits.instances:
            return Refusal(REASON_SERVICE_LIMIT, service, key)
        if (
            limits.perSource is not None
            and key is not None
            and state.perSource[key] >= limits.perSource
        ):
            return Refusal(REASON_PER_SOURCE_LIMIT, service, key)
        if self.processLimit is not None and self._total + 1 > self.processLimit:
            return Refusal(REASON_PROCESS_LIMIT, service, key)
        state.running += 1
        if key is not None:
            state.perSource[key] += 1
        self._total += 1
        return Ticket(self, state, service, key)

    def _cpsTrips(self, service: str, state: _ServiceState) -> bool:
        """
        xinetd's cps check: a window opens at the first connection and lasts
        C{rate} seconds (the rate doubles as the window length); within it
        the service trips when connections / whole seconds elapsed (at least
        1) exceed the rate.  The count is not reset by a trip.
        """
        rate, pause = state.limits.cps
        now = int(self._clock.seconds())  # xinetd uses time(NULL)
        elapsed = now - state.cpsStart
        if state.cpsCount == 0:
            state.cpsCount = 1
            state.cpsStart = now
        elif elapsed < rate:
            state.cpsCount += 1
            if state.cpsCount // max(elapsed, 1) > rate:
                self._disable(service, state, pause)
                return True
        else:
            state.cpsStart = now
            state.cpsCount = 1
        return False

    def _disable(self, service: str, state: _ServiceState, pause: int) -> None:
        state.disabledUntil = self._clock.seconds() + pause
        _log.error(
            "Deactivating service {service} due to excessive incoming "
            "connections.  Restarting in {seconds} seconds.",
            service=service,
            seconds=pause,
        )

    def _release(self, service: str, state: _ServiceState, key: str | None) -> None:
        state.running -= 1
        self._total -= 1
        if key is not None:
            state.perSource[key] -= 1
            if not state.perSource[key]:
                del state.perSource[key]
        if state.removed and not state.running and self._services.get(service) is state:
            del self._services[service]

    def isDisabled(self, service: str) -> bool:
        """
        Whether C{service} is paused by C{cps}.
        """
        state = self._services.get(service)
        return state is not None and self._clock.seconds() < state.disabledUntil

    def running(self, service: str) -> int:
        """
        How many tickets of C{service} are held.
        """
        state = self._services.get(service)
        return 0 if state is None else state.running

    def runningFrom(self, service: str, source: str) -> int:
        """
        How many tickets of C{service} are held for C{source}.
        """
        state = self._services.get(service)
        return 0 if state is None else state.perSource[sourceKey(source)]

    @property
    def total(self) -> int:
        """
        How many tickets are held, all services together.
        """
        return self._total
