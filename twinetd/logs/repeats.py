# -*- test-case-name: tests.unit.test_logrepeats -*-
"""
No log floods: repeated events are logged at a bounded rate.  The first of a
burst is logged at once, in full; the rest are counted and summarised at
most once per interval while the burst lasts (a datagram flood, a daemon
out of descriptors refusing connections).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from twinetd._twistedcompat import cancelCall
from twinetd.logs.events import DGRAM_DROPPED, ServiceLog
from twinetd.model import Peer

#: Seconds between two summaries.
SUMMARY_INTERVAL = 1.0


class Summariser:
    """
    Counts repeated events by key.  L{add} says whether an event is the
    first after a quiet interval (log it in full); the others are counted
    and handed to C{summarise} at most once per interval while they go on.
    After an interval without any, the next one is a first again.

    @ivar counts: every event since the start, by key.
    @ivar interval: seconds between two summaries.
    """

    def __init__(
        self,
        clock: IReactorTime,
        summarise: Callable[[dict[str, int], float], None],
        interval: float = SUMMARY_INTERVAL,
    ) -> None:
        """
        @param summarise: called with the counts by key of the events not
            logged yet, and the interval.
        """
        self.counts: Counter[str] = Counter()
        self.interval = interval
        self._clock = clock
        self._summarise = summarise
        self._pending: Counter[str] = Counter()
        self._window: IDelayedCall | None = None

    def add(self, key: str) -> bool:
        """
        Count one event; whether the caller should log it now.
        """
        self.counts[key] += 1
        if self._window is None:
            self._open()
            return True
        self._pending[key] += 1
        return False

    def stop(self) -> None:
        """
        Summarise what is pending now, and stop the timer.
        """
        self._window = cancelCall(self._window)
        self._flushPending()

    def _open(self) -> None:
        self._window = self._clock.callLater(self.interval, self._windowEnded)

    def _windowEnded(self) -> None:
        self._window = None
        if self._flushPending():
            # Still busy: the next event is summarised too.
            self._open()

    def _flushPending(self) -> bool:
        if not self._pending:
            return False
        pending = dict(self._pending)
        self._pending.clear()
        self._summarise(pending, self.interval)
        return True


class DropSummary:
    """
    A datagram service's dropped datagrams: the first of a burst is logged
    as a C{FAIL} event with its reason, the rest as one L{DGRAM_DROPPED}
    summary per second while they go on.
    """

    def __init__(
        self,
        serviceLog: ServiceLog,
        clock: IReactorTime,
        interval: float = SUMMARY_INTERVAL,
    ) -> None:
        self._serviceLog = serviceLog
        self._repeats = Summariser(clock, self._summarise, interval)

    @property
    def counts(self) -> Counter[str]:
        """
        Every datagram dropped so far, by reason.
        """
        return self._repeats.counts

    def drop(self, reason: str, peer: Peer | None, detail: str = "") -> None:
        """
        A datagram from C{peer} was dropped for C{reason} (xinetd's word).
        """
        if self._repeats.add(reason):
            self._serviceLog.fail(reason, peer, detail)

    def stop(self) -> None:
        """
        Log what is pending (the service stops).
        """
        self._repeats.stop()

    def _summarise(self, reasons: dict[str, int], interval: float) -> None:
        self._serviceLog.emit(
            DGRAM_DROPPED,
            count=sum(reasons.values()),
            reasons=reasons,
            interval=interval,
        )
