"""
Tests for L{twinetd.policy.limits}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twinetd.errors import SourceLocation
from twinetd.model import ServiceConfig, SocketType
from twinetd.policy.limits import (
    DEFAULT_CPS,
    REASON_CPS,
    REASON_LOAD,
    REASON_PER_SOURCE_LIMIT,
    REASON_PROCESS_LIMIT,
    REASON_SERVICE_LIMIT,
    Limits,
    Refusal,
    ServiceLimits,
    Ticket,
)

NO_CPS = (0, 0)


def service(name: str = "svc", **kw: Any) -> ServiceConfig:
    return ServiceConfig(
        name=name,
        source=SourceLocation("test.conf", 1),
        socketType=SocketType.STREAM,
        wait=False,
        port=36000,
        **kw,
    )


class LimitsTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.load = 0.0
        # The pauses the refusals asked for: (service, seconds).
        self.disabled: list[tuple[str, int]] = []
        self.limits = Limits(self.clock, loadAverage=lambda: self.load)

    def ticket(self, service: str = "svc", source: str | None = "192.0.2.1") -> Ticket:
        result = self.limits.acquire(service, source)
        assert isinstance(result, Ticket), result
        return result

    def refusal(self, service: str = "svc", source: str | None = "192.0.2.1") -> str:
        result = self.limits.acquire(service, source)
        assert isinstance(result, Refusal), result
        self.assertEqual(result.service, service)
        if result.pause:
            self.disabled.append((service, result.pause))
        return result.reason


class InstancesTests(LimitsTestCase):
    def test_unlimited(self) -> None:
        self.limits.updateConfig("svc", ServiceLimits(cps=NO_CPS))
        tickets = [self.ticket() for _ in range(500)]
        self.assertEqual(self.limits.running("svc"), 500)
        for t in tickets:
            t.release()
        self.assertEqual(self.limits.running("svc"), 0)
        self.assertEqual(self.limits.total, 0)

    def test_zeroRefusesAll(self) -> None:
        self.limits.updateConfig("svc", ServiceLimits(instances=0, cps=NO_CPS))
        self.assertEqual(self.refusal(), REASON_SERVICE_LIMIT)
        self.assertEqual(self.limits.running("svc"), 0)

    def test_exactWithInterleavedReleases(self) -> None:
        self.limits.updateConfig("svc", ServiceLimits(instances=2, cps=NO_CPS))
        a = self.ticket(source="192.0.2.1")
        b = self.ticket(source="192.0.2.2")
        self.assertEqual(self.refusal(source="192.0.2.3"), REASON_SERVICE_LIMIT)
        a.release()
        a.release()  # a second release gives nothing back
        self.assertTrue(a.released)
        c = self.ticket(source="192.0.2.3")
        self.assertEqual(self.refusal(), REASON_SERVICE_LIMIT)
        self.assertEqual(self.limits.running("svc"), 2)
        b.release()
        c.release()
        c.release()
        b.release()
        self.assertEqual(self.limits.running("svc"), 0)
        self.assertEqual(self.limits.total, 0)
        self.assertEqual(self.limits.runningFrom("svc", "192.0.2.3"), 0)
        d = self.ticket()
        e = self.ticket()
        self.assertEqual(self.refusal(), REASON_SERVICE_LIMIT)
        d.release()
        e.release()

    def test_servicesAreIndependent(self) -> None:
        self.limits.updateConfig("a", ServiceLimits(instances=1, cps=NO_CPS))
        self.limits.updateConfig("b", ServiceLimits(instances=1, cps=NO_CPS))
        self.ticket("a")
        self.ticket("b")
        self.assertEqual(self.refusal("a"), REASON_SERVICE_LIMIT)
        self.assertEqual(self.limits.total, 2)

    def test_unknownService(self) -> None:
        self.assertRaises(KeyError, self.limits.acquire, "nope", None)


class PerSourceTests(LimitsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.limits.updateConfig("svc", ServiceLimits(perSource=2, cps=NO_CPS))

    def test_perAddress(self) -> None:
        a1 = self.ticket(source="127.0.0.1")
        a2 = self.ticket(source="127.0.0.1")
        self.assertEqual(self.refusal(source="127.0.0.1"), REASON_PER_SOURCE_LIMIT)
        # 127.0.0.1 and ::1 are different sources.
        b1 = self.ticket(source="::1")
        self.ticket(source="::1")
        self.assertEqual(self.refusal(source="::1"), REASON_PER_SOURCE_LIMIT)
        a1.release()
        a1.release()
        self.assertEqual(self.limits.runningFrom("svc", "127.0.0.1"), 1)
        a3 = self.ticket(source="127.0.0.1")
        self.assertEqual(self.refusal(source="127.0.0.1"), REASON_PER_SOURCE_LIMIT)
        b1.release()
        self.assertEqual(self.limits.runningFrom("svc", "::1"), 1)
        a2.release()
        a3.release()
        self.assertEqual(self.limits.runningFrom("svc", "127.0.0.1"), 0)
        self.assertEqual(self.limits.running("svc"), 1)

    def test_mappedIsTheSameHost(self) -> None:
        self.ticket(source="::ffff:127.0.0.1")
        self.ticket(source="127.0.0.1")
        self.assertEqual(
            self.refusal(source="::ffff:127.0.0.1"), REASON_PER_SOURCE_LIMIT
        )
        self.assertEqual(self.limits.runningFrom("svc", "127.0.0.1"), 2)

    def test_unknownSourceIsNotCounted(self) -> None:
        for _ in range(5):
            self.ticket(source=None)
        self.assertEqual(self.limits.running("svc"), 5)

    def test_perSourceIsPerService(self) -> None:
        self.limits.updateConfig("other", ServiceLimits(perSource=1, cps=NO_CPS))
        self.ticket(source="::1")
        self.ticket(source="::1")
        self.ticket("other", source="::1")
        self.assertEqual(self.refusal("other", "::1"), REASON_PER_SOURCE_LIMIT)

    def test_instancesCheckedBeforePerSource(self) -> None:
        self.limits.updateConfig(
            "svc", ServiceLimits(instances=2, perSource=2, cps=NO_CPS)
        )
        self.ticket(source="::1")
        self.ticket(source="::1")
        self.assertEqual(self.refusal(source="::1"), REASON_SERVICE_LIMIT)


class ProcessLimitTests(LimitsTestCase):
    def test_daemonWide(self) -> None:
        self.limits.processLimit = 2
        self.limits.updateConfig("a", ServiceLimits(cps=NO_CPS))
        self.limits.updateConfig("b", ServiceLimits(cps=NO_CPS))
        a = self.ticket("a")
        self.ticket("b")
        self.assertEqual(self.refusal("a"), REASON_PROCESS_LIMIT)
        self.assertEqual(self.refusal("b"), REASON_PROCESS_LIMIT)
        a.release()
        a.release()
        self.ticket("b")
        self.assertEqual(self.limits.total, 2)


class LoadTests(LimitsTestCase):
    def test_maxLoad(self) -> None:
        self.limits.updateConfig("svc", ServiceLimits(maxLoad=2.5, cps=NO_CPS))
        self.load = 2.49
        t = self.ticket()
        self.load = 2.5  # xinetd: load >= max_load refuses
        self.assertEqual(self.refusal(), REASON_LOAD)
        self.load = 7.0
        self.assertEqual(self.refusal(), REASON_LOAD)
        self.assertEqual(self.limits.running("svc"), 1)
        self.load = 0.1
        self.ticket()
        t.release()

    def test_noMaxLoadNeverReadsTheLoad(self) -> None:
        def boom() -> float:
            raise AssertionError("load read")

        limits = Limits(self.clock, loadAverage=boom)
        limits.updateConfig("svc", ServiceLimits())
        self.assertIsInstance(limits.acquire("svc", None), Ticket)


class CpsTests(LimitsTestCase):
    def test_tripsAboveTheRateAndRecovers(self) -> None:
        """
        C{cps = 2 5}, as measured with xinetd 2.3.15.3: two connections in
        one second are served, the third trips the service off for five
        seconds, after which it is served again.
        """
        self.limits.updateConfig("svc", ServiceLimits(cps=(2, 5)))
        a = self.ticket()
        b = self.ticket()
        self.assertEqual(self.refusal(), REASON_CPS)
        self.assertEqual(self.disabled, [("svc", 5)])
        self.assertTrue(self.limits.isDisabled("svc"))
        # Connections accepted before the listener stopped are refused too.
        self.assertEqual(self.refusal(), REASON_CPS)
        self.clock.advance(4.9)
        self.assertTrue(self.limits.isDisabled("svc"))
        self.assertEqual(self.refusal(), REASON_CPS)
        self.clock.advance(0.1)
        self.assertFalse(self.limits.isDisabled("svc"))
        self.ticket()
        self.assertEqual(self.disabled, [("svc", 5)])
        a.release()
        b.release()
        self.assertEqual(self.limits.running("svc"), 1)

    def test_rateOverWholeSeconds(self) -> None:
        """
        xinetd counts since the first connection of a window of C{rate}
        seconds and trips when count // elapsed whole seconds > rate.
        """
        self.limits.updateConfig("svc", ServiceLimits(cps=(3, 10)))
        self.clock.advance(0.5)  # t = 1000000.5: the window opens at 1000000
        for _ in range(3):
            self.ticket().release()
        self.clock.advance(0.6)  # now 1000001: elapsed 1 -> 4 // 1 = 4 > 3
        self.assertEqual(self.refusal(), REASON_CPS)
        self.assertEqual(len(self.disabled), 1)

    def test_steadyRateTripsInTheSecondSecond(self) -> None:
        """
        Measured with xinetd 2.3.15.3 and C{cps = 4 10}: four connections a
        second, evenly spread, are served during the first second; the fifth
        (count 5 over 1 whole second elapsed) trips the service.
        """
        self.limits.updateConfig("svc", ServiceLimits(cps=(4, 10)))
        self.clock.advance(0.1)
        for _ in range(4):
            self.ticket().release()
            self.clock.advance(0.25)
        self.assertEqual(self.refusal(), REASON_CPS)

    def test_halfTheRateNeverTrips(self) -> None:
        self.limits.updateConfig("svc", ServiceLimits(cps=(4, 10)))
        for _ in range(60):
            self.ticket().release()
            self.clock.advance(0.5)
        self.assertEqual(self.disabled, [])

    def test_windowResetsAfterRateSeconds(self) -> None:
        """
        The window lasts C{rate} seconds; after it the count starts over.
        """
        self.limits.updateConfig("svc", ServiceLimits(cps=(2, 10)))
        self.ticket().release()
        self.ticket().release()
        self.clock.advance(2)  # elapsed 2 == rate: a new window
        self.ticket().release()
        self.ticket().release()
        self.assertEqual(self.refusal(), REASON_CPS)

    def test_refusedConnectionsCount(self) -> None:
        """
        cps is checked first, so connections refused for other reasons count.
        """
        self.limits.updateConfig("svc", ServiceLimits(instances=0, cps=(2, 10)))
        self.assertEqual(self.refusal(), REASON_SERVICE_LIMIT)
        self.assertEqual(self.refusal(), REASON_SERVICE_LIMIT)
        self.assertEqual(self.refusal(), REASON_CPS)

    def test_instancesHoldAcrossThePause(self) -> None:
        self.limits.updateConfig("svc", ServiceLimits(instances=2, cps=(2, 5)))
        held = [self.ticket(), self.ticket()]
        self.assertEqual(self.refusal(), REASON_CPS)
        self.assertEqual(self.disabled, [("svc", 5)])
        self.clock.advance(5)
        self.assertFalse(self.limits.isDisabled("svc"))
        self.assertEqual(self.refusal(), REASON_SERVICE_LIMIT)
        self.clock.advance(60)
        self.assertEqual(self.refusal(), REASON_SERVICE_LIMIT)
        self.assertEqual(self.limits.running("svc"), 2)
        held[0].release()
        self.clock.advance(60)
        self.ticket()
        self.clock.advance(60)
        self.assertEqual(self.refusal(), REASON_SERVICE_LIMIT)
        self.assertEqual(self.limits.running("svc"), 2)

    def test_defaultCps(self) -> None:
        """
        A service without C{cps} gets xinetd's default, 50 per second.
        """
        self.assertEqual(DEFAULT_CPS, (50, 10))
        self.limits.updateConfig("svc", service())
        for _ in range(50):
            self.ticket().release()
        self.assertEqual(self.refusal(), REASON_CPS)
        self.assertEqual(self.disabled, [("svc", 10)])

    def test_zeroRateDisables(self) -> None:
        self.limits.updateConfig("svc", service(cps=(0, 0)))
        for _ in range(1000):
            self.ticket().release()
        self.assertEqual(self.disabled, [])

    def test_pauseIsNoTimer(self) -> None:
        """
        A pause is a time on the clock: nothing is scheduled (the listener
        that was refused schedules its own resumption), so nothing is left
        to cancel when the daemon stops.
        """
        self.limits.updateConfig("svc", ServiceLimits(cps=(1, 30)))
        self.ticket()
        self.assertEqual(self.refusal(), REASON_CPS)
        self.assertEqual(self.disabled, [("svc", 30)])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ReloadTests(LimitsTestCase):
    def test_countsSurviveUpdate(self) -> None:
        self.limits.updateConfig("svc", service(instances=3, perSource=2, cps=(0, 0)))
        a = self.ticket(source="::1")
        b = self.ticket(source="::1")
        self.limits.updateConfig("svc", service(instances=2, perSource=5, cps=(0, 0)))
        self.assertEqual(self.limits.running("svc"), 2)
        self.assertEqual(self.refusal(source="::2"), REASON_SERVICE_LIMIT)
        a.release()
        self.ticket(source="::1")
        self.assertEqual(self.limits.runningFrom("svc", "::1"), 2)
        b.release()
        self.assertEqual(self.limits.running("svc"), 1)

    def test_fromConfig(self) -> None:
        limits = ServiceLimits.fromConfig(
            service(instances=4, perSource=1, cps=(9, 3), maxLoad=1.5)
        )
        self.assertEqual(limits, ServiceLimits(4, 1, (9, 3), 1.5))

    def test_removeWithTicketsOutstanding(self) -> None:
        self.limits.updateConfig("svc", ServiceLimits(instances=1, cps=NO_CPS))
        t = self.ticket()
        self.limits.removeService("svc")
        self.assertRaises(KeyError, self.limits.acquire, "svc", None)
        self.assertEqual(self.limits.total, 1)
        # Coming back before the old child ends: the child still counts.
        self.limits.updateConfig("svc", ServiceLimits(instances=1, cps=NO_CPS))
        self.assertEqual(self.refusal(), REASON_SERVICE_LIMIT)
        t.release()
        self.ticket()

    def test_removeThenRelease(self) -> None:
        self.limits.updateConfig("svc", ServiceLimits(instances=1, cps=NO_CPS))
        t = self.ticket()
        self.limits.removeService("svc")
        t.release()
        t.release()
        self.assertEqual(self.limits.total, 0)
        self.assertEqual(self.limits.running("svc"), 0)
        self.limits.updateConfig("svc", ServiceLimits(instances=1, cps=NO_CPS))
        self.ticket()

    def test_removeEndsPause(self) -> None:
        self.limits.updateConfig("svc", ServiceLimits(cps=(1, 30)))
        self.ticket()
        self.assertEqual(self.refusal(), REASON_CPS)
        self.limits.removeService("svc")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.limits.updateConfig("svc", ServiceLimits(cps=(1, 30)))
        self.assertFalse(self.limits.isDisabled("svc"))
        self.ticket()

    def test_pauseSurvivesUpdate(self) -> None:
        self.limits.updateConfig("svc", ServiceLimits(cps=(1, 30)))
        self.ticket()
        self.assertEqual(self.refusal(), REASON_CPS)
        self.limits.updateConfig("svc", ServiceLimits(cps=(5, 30)))
        self.assertTrue(self.limits.isDisabled("svc"))
        self.clock.advance(30)
        self.assertFalse(self.limits.isDisabled("svc"))


class TicketTests(LimitsTestCase):
    def test_repr(self) -> None:
        self.limits.updateConfig("svc", ServiceLimits())
        t = self.ticket(source="::ffff:10.0.0.1")
        self.assertEqual(t.source, "10.0.0.1")
        self.assertEqual(repr(t), "<Ticket svc from 10.0.0.1 held>")
        t.release()
        self.assertEqual(repr(t), "<Ticket svc from 10.0.0.1 released>")
