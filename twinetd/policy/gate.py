"""
The admission gate every connection and datagram passes before anything is
spawned: limits (a ticket), then access control, in xinetd's order.

xinetd checks C{cps}, load, C{instances}, C{per_source} and its process
limit in the parent, and access (C{access_times}, the SENSOR list,
C{only_from}/C{no_access}) after forking; twinetd does all of it before
spawning, so a refused client costs no process (and logs no START/EXIT,
unlike xinetd).  The limits come first so that refused connections still
count towards C{cps}, as in xinetd.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twinetd.model import Peer, ServiceConfig
from twinetd.policy.access import (
    DenyList,
    checkAccess,
    localMinutes,
    needsName,
    sourceKey,
)
from twinetd.policy.limits import Limits, Ticket

log = Logger(namespace="twinetd.gate")

#: Seconds a reverse lookup may take before names-based rules are skipped.
NAME_TIMEOUT = 5.0

#: A reverse resolver: address -> Deferred firing with the name or None.
NameResolver = Callable[[str], "Deferred[str | None]"]


@attrs.frozen
class Refused:
    """
    A connection turned away.

    @ivar reason: xinetd's FAIL reason (C{address}, C{time},
        C{service_limit}, C{per_source_limit}, C{connections per second},
        C{process_limit}, C{load}).
    @ivar detail: why, for a person.
    """

    reason: str
    detail: str = ""


def noNames(address: str) -> Deferred[str | None]:
    """
    A resolver that knows no names: names-based rules never match.
    """
    return succeed(None)


def threadedResolver(reactor: object, timeout: float = NAME_TIMEOUT) -> NameResolver:
    """
    Reverse lookups with the system's resolver (C{gethostbyaddr}, as xinetd:
    /etc/hosts, DNS, ...) in the reactor's thread pool, so the reactor never
    blocks; a lookup that fails or takes longer than C{timeout} gives C{None}.
    """
    from twisted.internet.interfaces import IReactorThreads
    from twisted.internet.threads import deferToThreadPool

    threads = IReactorThreads(reactor)
    clock = IReactorTime(reactor)

    def lookup(address: str) -> str | None:
        try:
            return socket.gethostbyaddr(address)[0]
        except OSError:
            return None

    def resolve(address: str) -> Deferred[str | None]:
        d: Deferred[str | None] = deferToThreadPool(
            reactor,  # type: ignore[arg-type]
            threads.getThreadPool(),
            lookup,
            _unmapped(address),
        )
        d.addTimeout(timeout, clock, onTimeoutCancel=lambda *_: None)
        d.addErrback(lambda _: None)
        return d

    return resolve


def _unmapped(address: str) -> str:
    if address.lower().startswith("::ffff:") and "." in address:
        return address[len("::ffff:") :]
    return address


class Gate:
    """
    The daemon's admission decisions: one instance shared by every service,
    so that the process limit and the SENSOR deny list are global.

    @ivar limits: the counters.
    @ivar denyList: clients that touched a SENSOR service.
    """

    def __init__(
        self,
        clock: IReactorTime,
        limits: Limits,
        denyList: DenyList | None = None,
        resolveName: NameResolver = noNames,
        minutes: Callable[[float], int] = localMinutes,
    ) -> None:
        self._clock = clock
        self.limits = limits
        self.denyList = denyList if denyList is not None else DenyList(clock)
        self._resolveName = resolveName
        self._minutes = minutes

    def admit(
        self, config: ServiceConfig, peer: Peer | None
    ) -> Deferred[Ticket | Refused]:
        """
        Decide on one connection (or datagram) of C{config} from C{peer}
        (C{None} when unknown, as for C{wait = yes} services).  The result is
        a L{Ticket} to hold while the server runs (release it when it ends)
        or a L{Refused}.  It fires at once unless a names-based rule needs a
        reverse lookup.
        """
        address = peer.remoteHost if peer is not None else None
        source = sourceKey(address) if address is not None else None
        admission = self.limits.acquire(config.id, source)
        if not isinstance(admission, Ticket):
            return succeed(Refused(admission.reason, "limit"))
        ticket = admission
        if address is not None and needsName(config):
            d = self._resolveName(address)
        else:
            d = succeed(None)
        return d.addCallback(self._decide, config, address, ticket)

    def _decide(
        self,
        name: str | None,
        config: ServiceConfig,
        address: str | None,
        ticket: Ticket,
    ) -> Ticket | Refused:
        decision = checkAccess(
            config,
            address,
            name,
            self._minutes(self._clock.seconds()),
            self.denyList,
        )
        if decision.allowed:
            return ticket
        ticket.release()
        return Refused(decision.reason, decision.detail)
