"""
L{twinetd.logs.repeats}: repeated events at a bounded rate, on a Clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from twinetd import logs
from twinetd.logs.repeats import DropSummary, Summariser
from twinetd.model import Peer

PEER = Peer("udp", "127.0.0.1", 5555, "127.0.0.1", 69)


class SummariserTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.summaries: list[tuple[dict[str, int], float]] = []
        self.repeats = Summariser(
            self.clock,
            lambda counts, interval: self.summaries.append((counts, interval)),
        )

    def test_firstAtOnce(self) -> None:
        """
        The first event is for the caller to log; the others wait for the
        summary, at most one a second.
        """
        self.assertTrue(self.repeats.add("EMFILE"))
        self.assertEqual([self.repeats.add("EMFILE") for _ in range(99)], [False] * 99)
        self.repeats.add("ENOBUFS")
        self.clock.advance(0.999)
        self.assertEqual(self.summaries, [])
        self.clock.advance(0.001)
        self.assertEqual(self.summaries, [({"EMFILE": 99, "ENOBUFS": 1}, 1.0)])
        self.assertEqual(self.repeats.counts, {"EMFILE": 100, "ENOBUFS": 1})

    def test_burstGoesOn(self) -> None:
        """
        While events keep coming, one summary a second; after a quiet
        second, the next event is a first again.
        """
        self.repeats.add("x")
        for _second in range(5):
            for _ in range(10):
                self.assertFalse(self.repeats.add("x"))
            self.clock.advance(1)
        self.assertEqual([c["x"] for c, _ in self.summaries], [10] * 5)
        self.clock.advance(1)  # nothing pending: the window closes
        self.clock.advance(5)
        self.assertEqual(len(self.summaries), 5)
        self.assertTrue(self.repeats.add("x"))

    def test_stopFlushes(self) -> None:
        self.repeats.add("x")
        self.repeats.add("x")
        self.repeats.stop()
        self.assertEqual(self.summaries, [({"x": 1}, 1.0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.repeats.stop()
        self.assertEqual(len(self.summaries), 1)


class DropSummaryTests(SynchronousTestCase):
    """
    A datagram service's drops: one FAIL, then summaries.
    """

    def test_flood(self) -> None:
        seen: list[dict[str, Any]] = []
        clock = Clock()
        serviceLog = logs.ServiceLog("tftp", Logger(observer=seen.append))
        drops = DropSummary(serviceLog, clock)

        def of(kind: str) -> list[dict[str, Any]]:
            return [e for e in seen if e.get(logs.EVENT_FIELD) == kind]

        for _ in range(100):
            drops.drop("address", PEER, "only_from")
        [fail] = of(logs.FAIL)
        self.assertEqual(
            (fail["service"], fail["reason"], fail["detail"], fail["host"]),
            ("tftp", "address", "only_from", "127.0.0.1"),
        )
        clock.advance(0.5)
        drops.drop("service_limit", PEER)
        clock.advance(0.5)
        [summary] = of(logs.DGRAM_DROPPED)
        self.assertEqual(
            (summary["count"], summary["reasons"], summary["interval"]),
            (100, {"address": 99, "service_limit": 1}, 1.0),
        )
        drops.drop("address", PEER)
        drops.stop()
        self.assertEqual([e["count"] for e in of(logs.DGRAM_DROPPED)], [100, 1])
        self.assertEqual(drops.counts, {"address": 101, "service_limit": 1})
        self.assertEqual(len(of(logs.FAIL)), 1)
