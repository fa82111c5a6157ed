"""
Tests for L{twinetd.policy.backoff}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twinetd.policy.backoff import Backoff, doubling


class BackoffTests(SynchronousTestCase):
    def test_freeThenDoubling(self) -> None:
        backoff = Backoff(doubling(0.5, 3.0), free=3)
        delays = [backoff.failed() for _ in range(8)]
        self.assertEqual(delays, [0, 0, 0, 0.5, 1.0, 2.0, 3.0, 3.0])
        self.assertEqual(backoff.failures, 8)

    def test_successResets(self) -> None:
        backoff = Backoff(doubling(1.0, 10.0), free=1)
        backoff.failed()
        self.assertEqual(backoff.failed(), 1.0)
        backoff.succeeded()
        self.assertEqual(backoff.failures, 0)
        self.assertEqual(backoff.failed(), 0)
        self.assertEqual(backoff.failed(), 1.0)

    def test_noFreeFailures(self) -> None:
        """
        The datagram listener's: 0.1 s after the first failure, doubling.
        """
        backoff = Backoff(doubling(0.1, 10.0))
        self.assertEqual([backoff.failed() for _ in range(3)], [0.1, 0.2, 0.4])

    def test_huge(self) -> None:
        backoff = Backoff(doubling(1.0, 10.0))
        for _ in range(5000):
            delay = backoff.failed()
        self.assertEqual(delay, 10.0)
