# -*- test-case-name: tests.unit.test_access -*-
"""
Access control: C{only_from}, C{no_access}, C{access_times} and the SENSOR
deny list.

Pure: the caller passes the client's address, its reverse-resolved name (this
module never resolves names; see L{needsName}) and the local time.  Only
L{DenyList} keeps state, driven by an injected clock.

Semantics follow xinetd 2.3.15 (C{remote_address_check} in C{access.c},
C{addrlist_match} in C{addr.c}, C{ti_current_time_check} in C{time.c},
C{sensor.c}), checked against the installed xinetd 2.3.15.3:

  - C{only_from} not given: everyone is admitted; given without values:
    nobody is.
  - An address matched by both lists is refused, however specific either
    match is.  xinetd's manual still describes the older "better match wins"
    rule (xinetd 2.1 compared the masks); C{betterMatch=True} selects it.
  - IPv4 rules match IPv4-mapped IPv6 clients (C{::ffff:a.b.c.d}); IPv6
    rules match IPv6 clients, mapped ones included.
  - Host names compare case-insensitively; C{.domain} matches any name that
    ends with it.  A client whose name is unknown matches no name rule, and
    the numeric rules are still tried.
  - C{access_times}: minutes since local midnight, both bounds inclusive.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections.abc import Iterable
from typing import Protocol

import attrs
from twisted.logger import Logger

from twinetd.model import AddressRule, ServiceConfig

_log = Logger()

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: xinetd's FAIL reason for an address refusal (C{access_code_names}).
REASON_ADDRESS = "address"
#: xinetd's FAIL reason for a refusal outside C{access_times}.
REASON_TIME = "time"

#: xinetd's C{MAX_GLOBAL_NO_ACCESS}: the deny list holds at most this many.
MAX_DENIED = 10240

#: C{deny_time = FOREVER}, as L{ServiceConfig.denyTime} spells it.
FOREVER = math.inf


@attrs.frozen
class Decision:
    """
    The outcome of an access check.

    @ivar allowed: whether the connection may proceed.
    @ivar reason: xinetd's FAIL reason (L{REASON_ADDRESS}, L{REASON_TIME});
        empty when allowed.
    @ivar detail: why, for a person (which rule or list decided).
    @ivar sensor: the client touched a SENSOR service.
    """

    allowed: bool
    reason: str = ""
    detail: str = ""
    sensor: bool = False


ALLOWED = Decision(True)


class Clock(Protocol):
    """
    The part of C{IReactorTime} the deny list uses.
    """

    def seconds(self) -> float: ...


def parseAddress(address: str) -> IPAddress:
    """
    Parse a peer address as Twisted reports it (an IPv6 zone suffix is
    ignored).

    @raise ValueError: not an IP address.
    """
    return ipaddress.ip_address(address.partition("%")[0])


def sourceKey(address: str) -> str:
    """
    One spelling per client host: IPv4-mapped IPv6 addresses as dotted quads,
    IPv6 addresses compressed.  C{127.0.0.1} and C{::1} stay different.
    Text that is not an address is returned unchanged.
    """
    return parseSource(address)[1]


@functools.lru_cache(maxsize=1024)
def parseSource(address: str) -> tuple[IPAddress | None, str]:
    """
    C{address} parsed (L{parseAddress}; C{None} when it is not an IP
    address) and its L{sourceKey}, for the limits and the rules alike.
    Kept for the last distinct addresses, so a connection parses its
    client's address at most once: the same clients come back (both
    results are immutable).
    """
    try:
        parsed = parseAddress(address)
    except ValueError:
        return None, address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        return parsed, str(parsed.ipv4_mapped)
    return parsed, str(parsed)


def needsName(config: ServiceConfig) -> bool:
    """
    Whether checking C{config} needs the client's reverse-resolved name, that
    is whether C{only_from} or C{no_access} has a host or domain name.
    """
    rules = (*(config.onlyFrom or ()), *config.noAccess)
    return any(rule.hostname is not None for rule in rules)


def _normalName(name: str) -> str:
    return name.rstrip(".").lower()


def ruleSpecificity(rule: AddressRule, address: IPAddress, name: str | None) -> int:
    """
    How specifically C{rule} matches a client, or C{-1} when it does not.

    The value counts fixed address bits in IPv6 terms (an IPv4 C{/n} rule is
    C{96 + n}); an exact host name counts as a single host (128) and a
    C{.domain} rule as the least specific match (0).  Only
    C{betterMatch} compares the values; otherwise a match is a match.
    """
    if rule.network is not None:
        network = rule.network
        if isinstance(network, ipaddress.IPv4Network):
            # xinetd: "If it's a mapped address, and a v4 address is
            # specified, see if the mapped address matches the v4 equivalent."
            v4 = (
                address.ipv4_mapped
                if isinstance(address, ipaddress.IPv6Address)
                else address
            )
            if isinstance(v4, ipaddress.IPv4Address) and v4 in network:
                return 96 + network.prefixlen
            return -1
        if isinstance(address, ipaddress.IPv6Address) and address in network:
            return network.prefixlen
        return -1
    if rule.hostname is None or name is None:
        return -1
    wanted = _normalName(rule.hostname)
    actual = _normalName(name)
    if wanted.startswith("."):
        return 0 if actual.endswith(wanted) else -1
    return 128 if actual == wanted else -1


def bestMatch(
    rules: Iterable[AddressRule], address: IPAddress, name: str | None
) -> tuple[int, AddressRule | None]:
    """
    The most specific rule of C{rules} matching the client.

    @return: (specificity, rule), or C{(-1, None)} when none matches.
    """
    best: tuple[int, AddressRule | None] = (-1, None)
    for rule in rules:
        score = ruleSpecificity(rule, address, name)
        if score > best[0]:
            best = (score, rule)
    return best


def checkAddress(
    onlyFrom: tuple[AddressRule, ...] | None,
    noAccess: tuple[AddressRule, ...],
    peerAddress: str | None,
    peerName: str | None = None,
    *,
    betterMatch: bool = False,
) -> Decision:
    """
    Apply C{only_from} and C{no_access} to a client.

    @param onlyFrom: C{None} when C{only_from} is not given (everyone), else
        the rules (an empty tuple admits nobody).
    @param noAccess: the C{no_access} rules.
    @param peerAddress: the client's address as text (C{::ffff:a.b.c.d} on a
        dual-stack socket), or C{None} when unknown: xinetd then has
        "nothing to reject" and admits the client.
    @param peerName: the client's reverse-resolved name, or C{None}.
    @param betterMatch: when both lists match, let the more specific match
        decide (the rule xinetd's manual describes); equal matches are still
        refused.  By default any address on both lists is refused, as
        xinetd 2.3.15 does.
    @raise ValueError: C{peerAddress} is not an IP address.
    """
    if peerAddress is None:
        return ALLOWED
    address = parseSource(peerAddress)[0]
    if address is None:
        raise ValueError(f"{peerAddress!r} is not an IP address")
    naScore, naRule = bestMatch(noAccess, address, peerName)
    if onlyFrom is None:
        ofScore, ofRule = -1, None
    else:
        ofScore, ofRule = bestMatch(onlyFrom, address, peerName)
    if naRule is not None and ofRule is not None:
        if betterMatch and ofScore > naScore:
            return ALLOWED
        return Decision(
            False,
            REASON_ADDRESS,
            f"only_from {ofRule.text} and no_access {naRule.text} both match",
        )
    if naRule is not None:
        return Decision(False, REASON_ADDRESS, f"no_access {naRule.text}")
    if onlyFrom is not None and ofRule is None:
        return Decision(False, REASON_ADDRESS, "not in only_from")
    return ALLOWED


def checkTimes(accessTimes: Iterable[tuple[int, int]], minutes: int) -> Decision:
    """
    Apply C{access_times}.

    @param accessTimes: (start, end) minutes since local midnight, both
        inclusive; no windows means always open.  A window whose start is
        after its end (xinetd's parser rejects those) wraps past midnight.
    @param minutes: the current local time as minutes since midnight (see
        L{localMinutes}).
    """
    windows = tuple(accessTimes)
    if not windows:
        return ALLOWED
    for start, end in windows:
        inside = start <= minutes <= end if start <= end else not end < minutes < start
        if inside:
            return ALLOWED
    return Decision(False, REASON_TIME, "outside access_times")


def localMinutes(seconds: float) -> int:
    """
    Minutes since local midnight at the POSIX time C{seconds} (xinetd uses
    C{localtime}: hour * 60 + minute).
    """
    local = time.localtime(seconds)
    return local.tm_hour * 60 + local.tm_min


def checkAccess(
    config: ServiceConfig,
    peerAddress: str | None,
    peerName: str | None,
    minutes: int,
    denyList: DenyList | None = None,
    *,
    betterMatch: bool = False,
) -> Decision:
    """
    Every access check of one connection, in xinetd's order: C{access_times},
    then the SENSOR deny list (a SENSOR service records the client and
    always refuses), then C{only_from} / C{no_access}.

    @param config: the service.
    @param peerAddress: see L{checkAddress}.
    @param peerName: the client's reverse-resolved name, or C{None}; only
        needed when L{needsName} says so.
    @param minutes: local minutes since midnight (L{localMinutes}).
    @param denyList: the daemon's deny list, or C{None} when SENSOR services
        are not in use.
    @param betterMatch: see L{checkAddress}.
    """
    decision = checkTimes(config.accessTimes, minutes)
    if not decision.allowed:
        return decision
    if "SENSOR" in config.flags:
        if denyList is not None and peerAddress is not None:
            denyList.record(peerAddress, config.denyTime, config.id)
        return Decision(False, REASON_ADDRESS, "sensor", sensor=True)
    if (
        denyList is not None
        and peerAddress is not None
        and denyList.isDenied(peerAddress)
    ):
        return Decision(False, REASON_ADDRESS, "on the sensor deny list")
    return checkAddress(
        config.onlyFrom,
        config.noAccess,
        peerAddress,
        peerName,
        betterMatch=betterMatch,
    )


class DenyList:
    """
    xinetd's global C{no_access} list: clients that touched a SENSOR service,
    refused by every service until their C{deny_time} runs out.

    Expiry is exact (xinetd scrubs the list once a minute); entries are
    dropped lazily when looked at, so no timer is left behind.  One host is
    one entry whether it arrived over IPv4 or as an IPv4-mapped address.

    @ivar clock: provides C{seconds()}.
    @ivar maxEntries: at most this many clients are held (xinetd: 10240).
    """

    def __init__(self, clock: Clock, maxEntries: int = MAX_DENIED) -> None:
        self.clock = clock
        self.maxEntries = maxEntries
        self._expiries: dict[str, float] = {}

    def record(self, address: str, denyTime: float | None, service: str = "") -> bool:
        """
        Note that C{address} touched a sensor.

        @param denyTime: seconds to deny; L{FOREVER} (infinity) until the
            daemon restarts; C{0} or C{None} (NEVER, xinetd's default) only
            logs.  A repeated touch extends the time, never shortens it.
        @param service: the sensor's id, for the log.
        @return: whether the list changed.
        """
        key = sourceKey(address)
        if not denyTime:
            _log.info(
                "{address} touched sensor {service} (deny_time NEVER)",
                address=key,
                service=service,
            )
            return False
        now = self.clock.seconds()
        self._purge(now)
        expiry = now + denyTime
        old = self._expiries.get(key)
        if old is not None:
            if expiry > old:
                self._expiries[key] = expiry
                return True
            return False
        if len(self._expiries) >= self.maxEntries:
            _log.error(
                "Maximum global_no_access count reached; not adding {address}",
                address=key,
            )
            return False
        self._expiries[key] = expiry
        _log.critical(
            "Adding {address} to the global_no_access list for {denyTime} "
            "seconds (sensor {service})",
            address=key,
            denyTime=denyTime,
            service=service,
        )
        return True

    def isDenied(self, address: str) -> bool:
        """
        Whether C{address} is on the list now.
        """
        if not self._expiries:
            return False
        key = sourceKey(address)
        expiry = self._expiries.get(key)
        if expiry is None:
            return False
        if self.clock.seconds() >= expiry:
            del self._expiries[key]
            return False
        return True

    def expiry(self, address: str) -> float | None:
        """
        When C{address} comes off the list (infinity for FOREVER), or
        C{None} when it is not on it.
        """
        if not self.isDenied(address):
            return None
        return self._expiries[sourceKey(address)]

    def __len__(self) -> int:
        self._purge(self.clock.seconds())
        return len(self._expiries)

    def _purge(self, now: float) -> None:
        for key in [k for k, e in self._expiries.items() if now >= e]:
            del self._expiries[key]
