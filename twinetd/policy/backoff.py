# -*- test-case-name: tests.unit.test_backoff -*-
"""
Backing off a service whose children keep failing at once, so that a
program that never takes its connection or datagram cannot make the daemon
start it in a loop: one policy for every listener that hands a socket to
its children (C{wait = yes} streams, C{wait = yes} and drop-in datagrams).

The delays are Twisted's own reconnection policy
(L{twisted.application.internet.backoffPolicy}: attempt number to seconds),
without jitter, doubling.
"""

from __future__ import annotations

from collections.abc import Callable

#: A child that ends within this many seconds, leaving its connection or
#: datagram untaken, failed at once.
QUICK_EXIT = 1.0

#: A backoff policy: the number of the delay (0 for the first) to seconds.
Policy = Callable[[int], float]


def doubling(first: float, longest: float) -> Policy:
    """
    C{first} seconds, doubling with each delay, at most C{longest}.
    """
    # Here: twisted.application.internet imports automat, which a daemon
    # without a wait = yes service has no use for.
    from twisted.application.internet import backoffPolicy

    return backoffPolicy(first, longest, factor=2.0, jitter=lambda: 0.0)


class Backoff:
    """
    A service's children failing in a row, and how long to wait after the
    latest before watching for the next client: nothing for the first
    C{free} failures in a row, then C{policy}'s delays.  One success starts
    the count again.

    @ivar failures: failures in a row so far.
    """

    def __init__(self, policy: Policy, free: int = 0) -> None:
        self.failures = 0
        self._policy = policy
        self._free = free

    def failed(self) -> float:
        """
        One more failure: the seconds to wait before the next start.
        """
        self.failures += 1
        over = self.failures - self._free
        return 0.0 if over <= 0 else self._policy(over - 1)

    def succeeded(self) -> None:
        self.failures = 0
