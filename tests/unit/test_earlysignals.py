"""
Tests for L{twinetd.earlysignals}: the daemon's signals recorded before it
runs, and L{DaemonControl} answering them once it has started.
"""

from __future__ import annotations

import signal

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.test_control import FakeDaemon, FakeReactor, RecordingNotifier
from twinetd import earlysignals
from twinetd.config import LoadResult
from twinetd.control import DaemonControl
from twinetd.earlysignals import EARLY_SIGNALS, EarlySignals, installEarlySignals
from twinetd.logs import STATUS
from twinetd.testing import serviceRecord

HUP, USR1, USR2 = signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2


def keepHandlers(case: SynchronousTestCase) -> None:
    """
    Put the test process's handlers of L{EARLY_SIGNALS} back after C{case}.
    """
    for signum in EARLY_SIGNALS:
        case.addCleanup(signal.signal, signum, signal.getsignal(signum))


class EarlySignalsTests(SynchronousTestCase):
    def test_records(self) -> None:
        """
        Each signal that came is taken once, in L{EARLY_SIGNALS}' order,
        however often it came; then nothing is left.
        """
        early = EarlySignals()
        for signum in (USR2, HUP, USR2, USR1, HUP):
            early(signum, None)
        self.assertEqual(early.take(), [HUP, USR1, USR2])
        self.assertEqual(early.take(), [])

    def test_loading(self) -> None:
        """
        A SIGHUP that came before the configuration is read is answered by
        that read: only the SIGHUPs after it are kept.
        """
        early = EarlySignals()
        early(HUP, None)
        early(USR2, None)
        early.loading()
        self.assertEqual(early.take(), [USR2])
        early.loading()
        early(HUP, None)
        self.assertEqual(early.take(), [HUP])

    def test_unsetForTwistd(self) -> None:
        """
        The recorder is false, so that twistd sets its SIGUSR1 log rotation
        over it (L{twinetd._twistedcompat.UnsetHandler}).
        """
        self.assertFalse(EarlySignals())


class InstallTests(SynchronousTestCase):
    def setUp(self) -> None:
        keepHandlers(self)
        self.patch(earlysignals, "_installed", None)

    def test_overDefaults(self) -> None:
        """
        The recorder replaces the default handlers (which end the process)
        and nothing else; installing again keeps the same recorder.
        """

        def mine(signum: int, frame: object) -> None:
            pass

        signal.signal(HUP, signal.SIG_DFL)
        signal.signal(USR1, signal.SIG_DFL)
        signal.signal(USR2, mine)
        early = installEarlySignals()
        self.assertIs(signal.getsignal(HUP), early)
        self.assertIs(signal.getsignal(USR1), early)
        self.assertIs(signal.getsignal(USR2), mine)
        signal.signal(USR2, signal.SIG_DFL)
        self.assertIs(installEarlySignals(), early)
        self.assertEqual([signal.getsignal(s) for s in EARLY_SIGNALS], [early] * 3)


class AnsweredTests(SynchronousTestCase):
    """
    L{DaemonControl} takes over from the recorder and answers what it
    recorded once, as soon as it has started.
    """

    def setUp(self) -> None:
        keepHandlers(self)
        self.reactor = FakeReactor()
        self.daemon = FakeDaemon(self.reactor)
        self.early = EarlySignals()
        for signum in EARLY_SIGNALS:
            signal.signal(signum, self.early)
        self.events: list[dict[str, object]] = []
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def control(self) -> DaemonControl:
        stamp = serviceRecord("stamp", port=2000)
        control = DaemonControl(
            self.daemon, self.reactor, load=lambda: LoadResult((stamp,), ())
        )
        self.addCleanup(lambda: control.running and control.stopService())
        return control

    def statuses(self) -> int:
        return len([e for e in self.events if e.get("twinetdEvent") == STATUS])

    def test_answeredOnce(self) -> None:
        """
        A SIGHUP recorded twice reloads once, a SIGUSR1 reopens the logs
        once, a SIGUSR2 logs the status once; each answer is logged.
        """
        for signum in (HUP, HUP, USR1, USR2):
            self.early(signum, None)
        control = self.control()
        control.privilegedStartService()
        self.assertEqual(self.daemon.reloads, [])
        control.startService()
        self.assertEqual([[c.id for c in r] for r in self.daemon.reloads], [["stamp"]])
        # Once for the reload, once for SIGUSR1.
        self.assertEqual(self.daemon.runtime.reopened, 2)
        self.assertEqual(self.statuses(), 1)
        answered = [e["signal"] for e in self.events if "signal" in e]
        self.assertEqual(answered, ["SIGHUP", "SIGUSR1", "SIGUSR2"])
        control.stopService()
        # The recorder is back, with nothing left to answer.
        self.assertIs(signal.getsignal(HUP), self.early)
        control.startService()
        self.assertEqual(len(self.daemon.reloads), 1)
        self.assertEqual(self.statuses(), 1)

    def test_nothingRecorded(self) -> None:
        """
        Without recorded signals nothing is answered; the recorder is not
        chained to by SIGUSR1.
        """
        control = self.control()
        control.startService()
        self.assertEqual((self.daemon.reloads, self.statuses()), ([], 0))
        signal.getsignal(USR1)(USR1, None)  # type: ignore[operator]
        self.assertEqual(self.daemon.runtime.reopened, 1)
        self.assertEqual(self.early.take(), [])

    def test_hupBeforeLoading(self) -> None:
        """
        A SIGHUP before the configuration was read brings no reload.
        """
        self.early(HUP, None)
        self.early.loading()
        control = self.control()
        control.startService()
        self.assertEqual(self.daemon.reloads, [])

    def test_afterReadyUnderSystemd(self) -> None:
        """
        Under systemd, what was recorded is answered once the daemon told
        it C{READY=1}: the reload's C{RELOADING=1} comes after it.
        """
        self.early(HUP, None)
        notifier = RecordingNotifier()
        stamp = serviceRecord("stamp", port=2000)
        control = DaemonControl(
            self.daemon,
            self.reactor,
            load=lambda: LoadResult((stamp,), ()),
            notifier=notifier,
        )
        self.addCleanup(lambda: control.running and control.stopService())
        control.startService()
        self.assertEqual((notifier.sent, self.daemon.reloads), ([], []))
        self.reactor.advance(0)
        self.assertEqual(len(self.daemon.reloads), 1)
        self.reactor.advance(0)
        self.assertEqual(
            [sorted(fields) for fields in notifier.sent],
            [["READY", "STATUS"], ["MONOTONIC_USEC", "RELOADING"], ["READY", "STATUS"]],
        )
