"""
L{twinetd.hangup.PausedReading} with a fake watcher and a Clock; the choice
of watcher per reactor.  (The epoll watcher itself is exercised with real
sockets in tests/integration/test_hangup.py.)
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from twinetd.hangup import END_OF_FILE, RESET, PausedReading, hangupWatcher
from twinetd.testing import FakeHangupWatcher

PATIENCE = 3.0


class Harness:
    def __init__(self, patience: float | None = PATIENCE) -> None:
        self.clock = Clock()
        self.transport = StringTransport()
        self.watcher = FakeHangupWatcher()
        self.gone: list[bool] = []
        self.reading = PausedReading(
            self.transport, self.watcher, self.clock, patience, self.gone.append
        )

    @property
    def watched(self) -> bool:
        return self.watcher.isWatched(self.transport)


class PausedReadingTests(SynchronousTestCase):
    def test_watchedOnlyWhilePaused(self) -> None:
        """
        Pausing pauses the transport and watches its peer; resuming stops
        watching and reads again.  A transport never paused is never
        watched.
        """
        h = Harness()
        self.assertFalse(h.watched)
        h.reading.pause()
        self.assertEqual(h.transport.producerState, "paused")
        self.assertTrue(h.watched and h.reading.paused)
        h.reading.resume()
        self.assertEqual(h.transport.producerState, "producing")
        self.assertFalse(h.watched or h.reading.paused)

    def test_resetIsGoneAtOnce(self) -> None:
        """
        A reset while paused: the peer is gone now, reported once; watching
        has stopped and the transport is left paused.
        """
        h = Harness()
        h.reading.pause()
        h.watcher.hangUp(h.transport, RESET)
        self.assertEqual(h.gone, [RESET])
        self.assertFalse(h.watched)
        self.assertEqual(h.transport.producerState, "paused")
        h.reading.resume()
        h.reading.pause()
        self.assertFalse(h.watched)
        self.assertEqual(h.gone, [RESET])

    def test_endOfFileAfterPatience(self) -> None:
        """
        An end of file while paused is a departure only once the transport
        has stayed paused C{patience} seconds.
        """
        h = Harness()
        h.reading.pause()
        h.watcher.hangUp(h.transport, END_OF_FILE)
        h.clock.advance(PATIENCE - 0.01)
        self.assertEqual(h.gone, [])
        h.clock.advance(0.01)
        self.assertEqual(h.gone, [END_OF_FILE])
        self.assertFalse(h.watched)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_progressRestartsPatience(self) -> None:
        """
        The reader taking more bytes (a resume) cancels the wait: a client
        that half-closed is served as long as its bytes keep moving.
        """
        h = Harness()
        h.reading.pause()
        h.watcher.hangUp(h.transport, END_OF_FILE)
        h.clock.advance(PATIENCE - 0.5)
        h.reading.resume()
        self.assertEqual(h.clock.getDelayedCalls(), [])
        h.reading.pause()
        h.watcher.hangUp(h.transport, END_OF_FILE)
        h.clock.advance(PATIENCE - 0.5)
        self.assertEqual(h.gone, [])
        h.clock.advance(0.5)
        self.assertEqual(h.gone, [END_OF_FILE])

    def test_resetDuringPatience(self) -> None:
        h = Harness()
        h.reading.pause()
        h.watcher.hangUp(h.transport, END_OF_FILE)
        h.clock.advance(1)
        h.watcher.hangUp(h.transport, RESET)
        self.assertEqual(h.gone, [RESET])
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_noPatience(self) -> None:
        """
        Without patience an end of file is never a departure; a reset is.
        """
        h = Harness(patience=None)
        h.reading.pause()
        h.watcher.hangUp(h.transport, END_OF_FILE)
        h.clock.advance(1000)
        self.assertEqual(h.gone, [])
        h.watcher.hangUp(h.transport, RESET)
        self.assertEqual(h.gone, [RESET])

    def test_patienceSetLater(self) -> None:
        """
        Patience given while not paused applies from the next pause.
        """
        h = Harness(patience=None)
        h.reading.pause()
        h.reading.resume()
        h.reading.patience = 1.0
        h.reading.pause()
        h.watcher.hangUp(h.transport, END_OF_FILE)
        h.clock.advance(1.0)
        self.assertEqual(h.gone, [END_OF_FILE])

    def test_closeStopsForGood(self) -> None:
        h = Harness()
        h.reading.pause()
        h.watcher.hangUp(h.transport, END_OF_FILE)
        h.reading.close()
        self.assertFalse(h.watched)
        self.assertEqual(h.clock.getDelayedCalls(), [])
        h.reading.resume()
        self.assertEqual(h.transport.producerState, "paused")

    def test_watchLater(self) -> None:
        """
        A pause expected to end at once is watched only when asked; never
        once closed or resumed.
        """
        h = Harness()
        h.reading.pause(watch=False)
        self.assertFalse(h.watched)
        h.reading.watch()
        self.assertTrue(h.watched)
        h.reading.resume()
        h.reading.watch()
        self.assertFalse(h.watched)
        h.reading.pause(watch=False)
        h.reading.close()
        h.reading.watch()
        self.assertEqual(h.watcher.watches, 1)

    def test_withoutWatcher(self) -> None:
        """
        Without a watcher (no epoll, a fake reactor) pausing still works.
        """
        clock = Clock()
        transport = StringTransport()
        reading = PausedReading(transport, None, clock, 1.0, lambda reset: None)
        reading.pause()
        self.assertEqual(transport.producerState, "paused")
        reading.resume()
        self.assertEqual(transport.producerState, "producing")


class WatcherChoiceTests(SynchronousTestCase):
    def test_onePerReactor(self) -> None:
        reactor = MemoryReactor()
        self.assertIs(hangupWatcher(reactor), hangupWatcher(reactor))
        self.assertIsNot(hangupWatcher(reactor), hangupWatcher(MemoryReactor()))

    def test_notAnFDSet(self) -> None:
        self.assertIsNone(hangupWatcher(Clock()))

    def test_noSocketNotWatched(self) -> None:
        """
        A transport without a socket (a fake) is not watched.
        """
        reactor = MemoryReactor()
        watcher = hangupWatcher(reactor)
        assert watcher is not None
        self.assertIsNone(watcher.watch(StringTransport(), lambda reset: None))
        self.assertEqual(reactor.getReaders(), [])
