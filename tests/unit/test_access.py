"""
Tests for L{twinetd.policy.access}.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from twinetd.errors import SourceLocation
from twinetd.model import AddressRule, ServiceConfig, SocketType
from twinetd.policy.access import (
    FOREVER,
    REASON_ADDRESS,
    REASON_TIME,
    Decision,
    DenyList,
    checkAccess,
    checkAddress,
    checkTimes,
    localMinutes,
    needsName,
    parseSource,
    sourceKey,
)


def net(text: str, network: str | None = None) -> AddressRule:
    """
    A numeric rule: C{text} as written, C{network} as the parser builds it.
    """
    return AddressRule(text=text, network=ipaddress.ip_network(network or text))


def host(name: str) -> AddressRule:
    return AddressRule(text=name, hostname=name)


def factorized(text: str, networks: list[str]) -> tuple[AddressRule, ...]:
    """
    C{128.138.{10,12}} becomes one rule per network, sharing the text.
    """
    return tuple(net(text, n) for n in networks)


def service(name: str = "svc", **kw: Any) -> ServiceConfig:
    return ServiceConfig(
        name=name,
        source=SourceLocation("test.conf", 1),
        socketType=SocketType.STREAM,
        wait=False,
        port=36000,
        **kw,
    )


def refusedBy(reason: str, decision: Decision) -> bool:
    return not decision.allowed and decision.reason == reason


class OnlyFromTests(SynchronousTestCase):
    """
    C{only_from} alone.
    """

    def test_notGivenAdmitsEveryone(self) -> None:
        for address in ["127.0.0.1", "::1", "10.1.2.3", "::ffff:192.0.2.1"]:
            self.assertEqual(checkAddress(None, (), address), Decision(True))

    def test_emptyAdmitsNobody(self) -> None:
        for address in ["127.0.0.1", "::1", "::ffff:10.0.0.1"]:
            decision = checkAddress((), (), address)
            self.assertTrue(refusedBy(REASON_ADDRESS, decision), address)

    def test_singleHost(self) -> None:
        rules = (net("127.0.0.1", "127.0.0.1/32"),)
        self.assertTrue(checkAddress(rules, (), "127.0.0.1").allowed)
        self.assertTrue(refusedBy(REASON_ADDRESS, checkAddress(rules, (), "127.0.0.2")))

    def test_trailingZeroesAreARange(self) -> None:
        """
        C{128.138.12.0} is C{128.138.12.0/24}; C{0.0.0.0} is everyone.
        """
        rules = (net("128.138.12.0", "128.138.12.0/24"),)
        self.assertTrue(checkAddress(rules, (), "128.138.12.200").allowed)
        self.assertFalse(checkAddress(rules, (), "128.138.13.1").allowed)
        everyone = (net("0.0.0.0", "0.0.0.0/0"),)
        self.assertTrue(checkAddress(everyone, (), "203.0.113.9").allowed)
        self.assertTrue(checkAddress(everyone, (), "::ffff:203.0.113.9").allowed)
        self.assertFalse(checkAddress(everyone, (), "::1").allowed)

    def test_explicitMask(self) -> None:
        rules = (net("10.0.0.0/255.255.0.0", "10.0.0.0/16"), net("192.0.2.64/26"))
        self.assertTrue(checkAddress(rules, (), "10.0.255.1").allowed)
        self.assertFalse(checkAddress(rules, (), "10.1.0.1").allowed)
        self.assertTrue(checkAddress(rules, (), "192.0.2.127").allowed)
        self.assertFalse(checkAddress(rules, (), "192.0.2.128").allowed)

    def test_factorized(self) -> None:
        rules = factorized("128.138.{10,12}", ["128.138.10.0/24", "128.138.12.0/24"])
        self.assertTrue(checkAddress(rules, (), "128.138.10.5").allowed)
        self.assertTrue(checkAddress(rules, (), "128.138.12.5").allowed)
        refused = checkAddress(rules, (), "128.138.11.5")
        self.assertTrue(refusedBy(REASON_ADDRESS, refused))

    def test_ipv6(self) -> None:
        rules = (net("2001:db8::/32"), net("::1", "::1/128"))
        self.assertTrue(checkAddress(rules, (), "2001:db8:1::5").allowed)
        self.assertTrue(checkAddress(rules, (), "::1").allowed)
        self.assertFalse(checkAddress(rules, (), "2001:db9::1").allowed)
        self.assertFalse(checkAddress(rules, (), "127.0.0.1").allowed)

    def test_ipv6ZoneIgnored(self) -> None:
        rules = (net("fe80::/10"),)
        self.assertTrue(checkAddress(rules, (), "fe80::1%eth0").allowed)

    def test_mappedClientMatchesIPv4Rules(self) -> None:
        """
        On a dual-stack socket an IPv4 client is C{::ffff:a.b.c.d}; IPv4 rules
        apply to it (xinetd's addrlist_match).
        """
        rules = (net("127.0.0.1", "127.0.0.1/32"),)
        self.assertTrue(checkAddress(rules, (), "::ffff:127.0.0.1").allowed)
        self.assertFalse(checkAddress(rules, (), "::ffff:127.0.0.2").allowed)
        self.assertFalse(checkAddress(rules, (), "::1").allowed)

    def test_mappedClientMatchesIPv6Rules(self) -> None:
        rules = (net("::/0"),)
        self.assertTrue(checkAddress(rules, (), "::ffff:127.0.0.1").allowed)
        self.assertFalse(checkAddress(rules, (), "127.0.0.1").allowed)

    def test_unknownAddressIsAdmitted(self) -> None:
        """
        xinetd: "The IP address is unknown. Nothing to reject, so accept it."
        """
        self.assertTrue(checkAddress((), (), None).allowed)

    def test_badAddress(self) -> None:
        self.assertRaises(ValueError, checkAddress, None, (), "not-an-address")


class NameTests(SynchronousTestCase):
    """
    Host and domain name rules.
    """

    def test_exactNameCaseInsensitive(self) -> None:
        rules = (host("Client.Example.COM"),)
        self.assertTrue(
            checkAddress(rules, (), "192.0.2.1", "client.example.com").allowed
        )
        self.assertTrue(
            checkAddress(rules, (), "192.0.2.1", "CLIENT.example.com.").allowed
        )
        self.assertFalse(
            checkAddress(rules, (), "192.0.2.1", "other.example.com").allowed
        )
        self.assertFalse(
            checkAddress(rules, (), "192.0.2.1", "xclient.example.com").allowed
        )

    def test_domainSuffix(self) -> None:
        rules = (host(".example.com"),)
        self.assertTrue(checkAddress(rules, (), "192.0.2.1", "a.b.EXAMPLE.com").allowed)
        self.assertFalse(checkAddress(rules, (), "192.0.2.1", "example.com").allowed)
        self.assertFalse(checkAddress(rules, (), "192.0.2.1", "badexample.com").allowed)
        self.assertFalse(
            checkAddress(rules, (), "192.0.2.1", "a.example.com.evil").allowed
        )

    def test_unknownNameFallsBackToNumbers(self) -> None:
        """
        A client whose name cannot be resolved matches no name rule; xinetd
        keeps searching the list for a numeric match.
        """
        rules = (host(".example.com"), net("192.0.2.0/24"))
        self.assertTrue(checkAddress(rules, (), "192.0.2.1", None).allowed)
        self.assertFalse(checkAddress(rules, (), "198.51.100.1", None).allowed)
        self.assertFalse(checkAddress((host("x.example.com"),), (), "::1").allowed)

    def test_noAccessByName(self) -> None:
        decision = checkAddress(None, (host(".evil.example"),), "::1", "h.evil.example")
        self.assertTrue(refusedBy(REASON_ADDRESS, decision))
        self.assertIn(".evil.example", decision.detail)

    def test_needsName(self) -> None:
        self.assertFalse(needsName(service()))
        self.assertFalse(needsName(service(onlyFrom=(net("10.0.0.0/8"),))))
        self.assertTrue(needsName(service(onlyFrom=(host("a.example"),))))
        self.assertTrue(needsName(service(noAccess=(host(".example"),))))
        self.assertFalse(needsName(service(onlyFrom=())))


class BothListsTests(SynchronousTestCase):
    """
    C{no_access}, alone and with C{only_from}.
    """

    def test_noAccessAlone(self) -> None:
        rules = (net("10.0.0.0/8"),)
        self.assertTrue(
            refusedBy(REASON_ADDRESS, checkAddress(None, rules, "10.9.9.9"))
        )
        self.assertTrue(checkAddress(None, rules, "11.0.0.1").allowed)
        self.assertTrue(
            refusedBy(REASON_ADDRESS, checkAddress(None, rules, "::ffff:10.0.0.1"))
        )

    def test_onlyOneListMatches(self) -> None:
        onlyFrom = (net("10.0.0.0/8"),)
        noAccess = (net("192.0.2.0/24"),)
        self.assertTrue(checkAddress(onlyFrom, noAccess, "10.1.1.1").allowed)
        self.assertFalse(checkAddress(onlyFrom, noAccess, "192.0.2.1").allowed)
        self.assertFalse(checkAddress(onlyFrom, noAccess, "172.16.0.1").allowed)

    def test_bothMatchIsRefused(self) -> None:
        """
        xinetd 2.3.15 refuses an address on both lists whichever match is
        more specific (verified against the installed xinetd 2.3.15.3:
        C{only_from = 127.0.0.1}, C{no_access = 127.0.0.0} logs
        C{FAIL: ... address}).
        """
        cases = [
            ((net("127.0.0.1", "127.0.0.1/32"),), (net("127.0.0.0", "127.0.0.0/8"),)),
            ((net("127.0.0.0", "127.0.0.0/8"),), (net("127.0.0.1", "127.0.0.1/32"),)),
            ((net("127.0.0.1/32"),), (net("127.0.0.1/32"),)),
        ]
        for onlyFrom, noAccess in cases:
            for address in ["127.0.0.1", "::ffff:127.0.0.1"]:
                decision = checkAddress(onlyFrom, noAccess, address)
                self.assertTrue(
                    refusedBy(REASON_ADDRESS, decision), (onlyFrom, address)
                )
                self.assertIn("both match", decision.detail)

    def test_betterMatchMoreSpecificWins(self) -> None:
        """
        With C{betterMatch}, the rule xinetd's manual documents: the more
        specific list decides; equal matches are refused.
        """
        wide = (net("128.138.209.0", "128.138.209.0/24"),)
        narrow = (net("128.138.209.10", "128.138.209.10/32"),)
        # The manual's example: only_from wide, no_access narrow -> refused.
        self.assertFalse(
            checkAddress(wide, narrow, "128.138.209.10", betterMatch=True).allowed
        )
        self.assertTrue(
            checkAddress(wide, narrow, "128.138.209.11", betterMatch=True).allowed
        )
        # The reverse: only_from is the better match -> admitted.
        self.assertTrue(
            checkAddress(narrow, wide, "128.138.209.10", betterMatch=True).allowed
        )
        self.assertTrue(
            checkAddress(
                narrow, wide, "::ffff:128.138.209.10", betterMatch=True
            ).allowed
        )
        self.assertFalse(
            checkAddress(narrow, wide, "128.138.209.11", betterMatch=True).allowed
        )
        # Equal specificity -> refused.
        decision = checkAddress(narrow, narrow, "128.138.209.10", betterMatch=True)
        self.assertTrue(refusedBy(REASON_ADDRESS, decision))

    def test_betterMatchUsesTheBestRuleOfEachList(self) -> None:
        onlyFrom = (net("10.0.0.0/8"), net("10.1.2.0/24"))
        noAccess = (net("10.1.0.0/16"),)
        self.assertTrue(
            checkAddress(onlyFrom, noAccess, "10.1.2.3", betterMatch=True).allowed
        )
        self.assertFalse(
            checkAddress(onlyFrom, noAccess, "10.1.3.3", betterMatch=True).allowed
        )

    def test_betterMatchNames(self) -> None:
        """
        An exact host name counts as a single host, a domain as the least
        specific match.
        """
        self.assertTrue(
            checkAddress(
                (host("ok.example.com"),),
                (net("192.0.2.0/24"),),
                "192.0.2.7",
                "ok.example.com",
                betterMatch=True,
            ).allowed
        )
        self.assertFalse(
            checkAddress(
                (host(".example.com"),),
                (net("0.0.0.0", "0.0.0.0/0"),),
                "192.0.2.7",
                "ok.example.com",
                betterMatch=True,
            ).allowed
        )
        self.assertTrue(
            checkAddress(
                (net("192.0.2.0/24"),),
                (host(".example.com"),),
                "192.0.2.7",
                "ok.example.com",
                betterMatch=True,
            ).allowed
        )


class TimesTests(SynchronousTestCase):
    """
    C{access_times}.
    """

    def test_noWindowsIsAlwaysOpen(self) -> None:
        self.assertTrue(checkTimes((), 0).allowed)

    def test_boundsInclusive(self) -> None:
        window = ((8 * 60 + 30, 17 * 60),)
        self.assertFalse(checkTimes(window, 8 * 60 + 29).allowed)
        self.assertTrue(checkTimes(window, 8 * 60 + 30).allowed)
        self.assertTrue(checkTimes(window, 12 * 60).allowed)
        self.assertTrue(checkTimes(window, 17 * 60).allowed)
        decision = checkTimes(window, 17 * 60 + 1)
        self.assertTrue(refusedBy(REASON_TIME, decision))

    def test_severalWindows(self) -> None:
        windows = ((2 * 60, 4 * 60), (20 * 60, 23 * 60 + 59))
        expected = {
            0: False,
            2 * 60: True,
            3 * 60: True,
            4 * 60 + 1: False,
            19 * 60 + 59: False,
            20 * 60: True,
            23 * 60 + 59: True,
        }
        for minutes, allowed in expected.items():
            self.assertEqual(checkTimes(windows, minutes).allowed, allowed, minutes)

    def test_wrapAroundMidnight(self) -> None:
        window = ((22 * 60, 2 * 60),)
        self.assertTrue(checkTimes(window, 23 * 60).allowed)
        self.assertTrue(checkTimes(window, 0).allowed)
        self.assertTrue(checkTimes(window, 2 * 60).allowed)
        self.assertFalse(checkTimes(window, 12 * 60).allowed)

    def test_localMinutes(self) -> None:
        now = 1_700_000_000.0
        local = time.localtime(now)
        self.assertEqual(localMinutes(now), local.tm_hour * 60 + local.tm_min)

    def test_timeCheckedFirst(self) -> None:
        """
        xinetd checks access_times in the parent, before the address lists.
        """
        config = service(accessTimes=((0, 1),), onlyFrom=())
        self.assertTrue(refusedBy(REASON_TIME, checkAccess(config, "::1", None, 60)))
        self.assertTrue(refusedBy(REASON_ADDRESS, checkAccess(config, "::1", None, 0)))


class CheckAccessTests(SynchronousTestCase):
    """
    L{checkAccess} with a service record.
    """

    def test_lists(self) -> None:
        config = service(
            onlyFrom=(net("192.0.2.0/24"), host(".example.com")),
            noAccess=(net("192.0.2.13/32"),),
        )
        self.assertTrue(checkAccess(config, "192.0.2.1", None, 0).allowed)
        self.assertTrue(checkAccess(config, "203.0.113.1", "a.example.com", 0).allowed)
        self.assertFalse(checkAccess(config, "203.0.113.1", None, 0).allowed)
        self.assertFalse(checkAccess(config, "192.0.2.13", None, 0).allowed)

    def test_defaultsAdmit(self) -> None:
        self.assertEqual(checkAccess(service(), "::1", None, 0), Decision(True))


class SensorTests(SynchronousTestCase):
    """
    SENSOR services and L{DenyList}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.deny = DenyList(self.clock)
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def sensor(self, denyTime: float | None) -> ServiceConfig:
        return service(name="trap", flags=frozenset({"SENSOR"}), denyTime=denyTime)

    def test_sensorRefusesAndRecords(self) -> None:
        other = service(name="ok")
        self.assertTrue(checkAccess(other, "192.0.2.1", None, 0, self.deny).allowed)
        decision = checkAccess(self.sensor(600), "192.0.2.1", None, 0, self.deny)
        self.assertTrue(refusedBy(REASON_ADDRESS, decision))
        self.assertTrue(decision.sensor)
        refused = checkAccess(other, "192.0.2.1", None, 0, self.deny)
        self.assertTrue(refusedBy(REASON_ADDRESS, refused))
        self.assertFalse(refused.sensor)
        self.assertTrue(checkAccess(other, "192.0.2.2", None, 0, self.deny).allowed)
        added = [e for e in self.events if e.get("address") == "192.0.2.1"]
        self.assertEqual(len(added), 1)
        self.assertEqual(added[0]["denyTime"], 600)
        self.assertEqual(added[0]["service"], "trap")

    def test_denyOverridesOnlyFrom(self) -> None:
        other = service(onlyFrom=(net("192.0.2.0/24"),))
        checkAccess(self.sensor(60), "192.0.2.1", None, 0, self.deny)
        self.assertFalse(checkAccess(other, "192.0.2.1", None, 0, self.deny).allowed)

    def test_expiry(self) -> None:
        self.deny.record("192.0.2.1", 60)
        self.assertEqual(self.deny.expiry("192.0.2.1"), 1060)
        self.clock.advance(59.9)
        self.assertTrue(self.deny.isDenied("192.0.2.1"))
        self.clock.advance(0.1)
        self.assertFalse(self.deny.isDenied("192.0.2.1"))
        self.assertEqual(len(self.deny), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_repeatExtendsNeverShortens(self) -> None:
        self.assertTrue(self.deny.record("192.0.2.1", 600))
        self.clock.advance(100)
        self.assertFalse(self.deny.record("192.0.2.1", 60))
        self.assertEqual(self.deny.expiry("192.0.2.1"), 1600)
        self.assertTrue(self.deny.record("192.0.2.1", 600))
        self.assertEqual(self.deny.expiry("192.0.2.1"), 1700)

    def test_forever(self) -> None:
        checkAccess(self.sensor(FOREVER), "2001:db8::1", None, 0, self.deny)
        self.clock.advance(10 * 365 * 86400)
        self.assertTrue(self.deny.isDenied("2001:db8::1"))
        self.assertEqual(self.deny.expiry("2001:db8::1"), FOREVER)
        self.assertFalse(self.deny.record("2001:db8::1", 60))
        self.assertTrue(self.deny.isDenied("2001:db8::1"))

    def test_neverOnlyLogs(self) -> None:
        for denyTime in (0, None):
            decision = checkAccess(
                self.sensor(denyTime), "192.0.2.1", None, 0, self.deny
            )
            self.assertTrue(refusedBy(REASON_ADDRESS, decision))
            self.assertFalse(self.deny.isDenied("192.0.2.1"))
        self.assertEqual(len(self.deny), 0)
        self.assertEqual(
            [e["address"] for e in self.events if "address" in e],
            ["192.0.2.1", "192.0.2.1"],
        )

    def test_mappedAndPlainAreOneHost(self) -> None:
        self.deny.record("::ffff:192.0.2.1", 60)
        self.assertTrue(self.deny.isDenied("192.0.2.1"))
        self.assertTrue(self.deny.isDenied("::FFFF:192.0.2.1"))
        self.assertFalse(self.deny.isDenied("::1"))

    def test_maxEntries(self) -> None:
        deny = DenyList(self.clock, maxEntries=2)
        self.assertTrue(deny.record("192.0.2.1", 60))
        self.assertTrue(deny.record("192.0.2.2", 60))
        self.assertFalse(deny.record("192.0.2.3", 60))
        self.assertFalse(deny.isDenied("192.0.2.3"))
        self.clock.advance(60)
        self.assertTrue(deny.record("192.0.2.3", 60))

    def test_sensorWithoutDenyList(self) -> None:
        decision = checkAccess(self.sensor(60), "192.0.2.1", None, 0)
        self.assertTrue(refusedBy(REASON_ADDRESS, decision))


class SourceKeyTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(sourceKey("::ffff:127.0.0.1"), "127.0.0.1")
        self.assertEqual(sourceKey("127.0.0.1"), "127.0.0.1")
        self.assertEqual(sourceKey("::1"), "::1")
        self.assertEqual(sourceKey("2001:DB8:0::1"), "2001:db8::1")
        self.assertEqual(sourceKey("not an address"), "not an address")

    def test_parsedOnce(self) -> None:
        """
        A client that comes back is not parsed again: the same parsed
        address, equal to a fresh parse.
        """
        first = parseSource("192.0.2.77")
        self.assertIs(parseSource("192.0.2.77"), first)
        self.assertEqual(first, (ipaddress.ip_address("192.0.2.77"), "192.0.2.77"))
        self.assertEqual(parseSource("::ffff:192.0.2.77")[1], "192.0.2.77")
