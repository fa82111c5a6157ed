# -*- test-case-name: tests.unit.test_factory -*-
"""
The admission gate every connection and datagram passes before anything is
spawned: limits (a ticket), then access control, in xinetd's order; one
typed answer, L{Admission}, for every kind of service.

xinetd checks C{cps}, load, C{instances}, C{per_source} and its process
limit in the parent, and access (C{access_times}, the SENSOR list,
C{only_from}/C{no_access}) after forking; twinetd does all of it before
spawning, so a refused client costs no process (and logs no START/EXIT,
unlike xinetd).  The limits come first so that refused connections still
count towards C{cps}, as in xinetd.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twinetd.model import Peer, ServiceConfig, unmapped
from twinetd.policy.access import (
    DenyList,
    checkAccess,
    localMinutes,
    needsName,
)
from twinetd.policy.limits import Limits, Ticket

log = Logger()

#: Seconds a reverse lookup may take before names-based rules are skipped.
NAME_TIMEOUT = 5.0

#: A reverse resolver: address -> Deferred firing with the name or None.
NameResolver = Callable[[str], "Deferred[str | None]"]


#: The FAIL reason of a connection the gate could not decide on (a bug).
REASON_ERROR = "error"


@attrs.frozen
class Admission:
    """
    The gate's one answer for a connection (or datagram, or C{wait = yes}
    child): admitted, holding a limits L{Ticket} until L{release}, or
    refused.

    @ivar reason: C{None} when admitted; else xinetd's FAIL reason
        (C{address}, C{time}, C{service_limit}, C{per_source_limit},
        C{connections per second}, C{process_limit}, C{load}, or
        L{REASON_ERROR}).
    @ivar detail: why it was refused, for a person.
    @ivar pause: when this connection tripped C{cps}: the seconds its
        listener stops accepting (L{twinetd.policy.limits.Refusal.pause}).
    @ivar ticket: the slot an admitted connection holds.
    """

    reason: str | None = None
    detail: str = ""
    pause: int = 0
    ticket: Ticket | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def refused(cls, reason: str, detail: str = "", pause: int = 0) -> Admission:
        return cls(reason, detail, pause)

    @property
    def admitted(self) -> bool:
        return self.reason is None

    def release(self) -> None:
        """
        Give the slot back (once: the ticket ignores a second release); a
        refusal holds none.
        """
        if self.ticket is not None:
            self.ticket.release()


#: What every listener asks for each connection, datagram or C{wait = yes}
#: child: the peer (C{None} when unknown) gives an L{Admission}, at once (the
#: admission itself, or a Deferred that has fired) or after a name lookup
#: (a Deferred); the Deferred never fails.
Admit = Callable[[Peer | None], "Admission | Deferred[Admission]"]


def deferred(decision: Admission | Deferred[Admission]) -> Deferred[Admission]:
    """
    An L{Admit}'s answer as a Deferred, whichever way it came.
    """
    if isinstance(decision, Deferred):
        return decision
    return succeed(decision)


def admitEveryone(peer: Peer | None) -> Deferred[Admission]:
    """
    An L{Admit} that admits everyone with no limits (for tests and
    embedders that want none).
    """
    return succeed(Admission())


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
            unmapped(address),
        )
        d.addTimeout(timeout, clock, onTimeoutCancel=lambda *_: None)
        d.addErrback(lambda _: None)
        return d

    return resolve


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

    def admitter(self, config: ServiceConfig) -> Admit:
        """
        The L{Admit} of one service: L{decide} with C{config}.
        """
        return functools.partial(self.decide, config)

    def admit(self, config: ServiceConfig, peer: Peer | None) -> Deferred[Admission]:
        """
        L{decide}, always as a Deferred.
        """
        return deferred(self.decide(config, peer))

    def decide(
        self, config: ServiceConfig, peer: Peer | None
    ) -> Admission | Deferred[Admission]:
        """
        Decide on one connection (or datagram) of C{config} from C{peer}
        (C{None} when unknown, as for C{wait = yes} services).  The result
        is an admitted L{Admission} whose ticket the caller holds while the
        server runs, or a refused one: at once, unless a names-based rule
        needs a reverse lookup (then a Deferred).  It never fails: a bug is
        logged and refuses the connection (L{REASON_ERROR}).
        """
        ticket: Ticket | None = None
        try:
            # As the socket reports it (::ffff:a.b.c.d on a dual-stack socket):
            # IPv6 rules match mapped clients too.  A UNIX-socket client has
            # none: no address rule or per_source applies to it.
            address = peer.address if peer is not None else None
            slot = self.limits.acquire(config.id, address)
            if not isinstance(slot, Ticket):
                return Admission.refused(slot.reason, "limit", slot.pause)
            ticket = slot
            if address is None or not needsName(config):
                # Most connections: no Deferred, no callbacks to run.
                return self._decide(None, config, address, ticket)
            name = self._resolveName(address)
            decided = name.addCallback(self._decide, config, address, ticket)
        except Exception:
            failure = Failure()  # type: ignore[no-untyped-call]
            return self._failed(failure, config, ticket)
        return decided.addErrback(self._failed, config, ticket)

    def _failed(
        self, failure: Failure, config: ServiceConfig, ticket: Ticket | None
    ) -> Admission:
        log.failure("{service}: while admitting", failure, service=config.id)
        if ticket is not None:
            ticket.release()
        return Admission.refused(REASON_ERROR, "admission failed")

    def _decide(
        self,
        name: str | None,
        config: ServiceConfig,
        address: str | None,
        ticket: Ticket,
    ) -> Admission:
        # Without access_times the time of day decides nothing.
        minutes = self._minutes(self._clock.seconds()) if config.accessTimes else 0
        decision = checkAccess(config, address, name, minutes, self.denyList)
        if decision.allowed:
            return Admission(ticket=ticket)
        ticket.release()
        return Admission.refused(decision.reason, decision.detail)
