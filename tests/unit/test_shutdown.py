"""
Tests for the daemon's shutdown glue in L{twinetd.control}.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet.base import ReactorBase
from twisted.trial.unittest import SynchronousTestCase

from twinetd.control import exitZeroOnTerm


class _Stopping:
    """
    Enough of a reactor for Twisted's own signal handlers.
    """

    _exitSignal: int | None = None

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.calls.append(f)

    def stop(self) -> None:
        pass


class ExitZeroOnTermTests(SynchronousTestCase):
    def test_term(self) -> None:
        """
        After Twisted's SIGTERM handler, the signal twistd would re-raise
        is forgotten: twistd exits 0.
        """
        reactor = _Stopping()
        ReactorBase.sigTerm(reactor, signal.SIGTERM)  # type: ignore[arg-type]
        self.assertEqual(reactor._exitSignal, signal.SIGTERM)
        exitZeroOnTerm(reactor)
        self.assertIsNone(reactor._exitSignal)

    def test_interrupt(self) -> None:
        """
        SIGINT (^C) is left to twistd.
        """
        reactor = _Stopping()
        ReactorBase.sigInt(reactor, signal.SIGINT)  # type: ignore[arg-type]
        exitZeroOnTerm(reactor)
        self.assertEqual(reactor._exitSignal, signal.SIGINT)
