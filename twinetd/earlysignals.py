# -*- test-case-name: tests.unit.test_earlysignals -*-
"""
The daemon's signals before it runs: from the first moment of
C{twistd twinetd} and of the C{twinetd} command until L{DaemonControl}
starts, C{SIGHUP}, C{SIGUSR1} and C{SIGUSR2} are recorded instead of
ending the process (their default), as xinetd catches them before it reads
its configuration and answers them once it serves.

Only the daemon's entry points install this (L{installEarlySignals}): an
application that embeds twinetd keeps its own signal handling.

@see: L{twinetd.control.DaemonControl}, which answers what was recorded.
"""

from __future__ import annotations

import signal
from types import FrameType

from twinetd._twistedcompat import UnsetHandler

#: The signals recorded (those L{DaemonControl} answers).
EARLY_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


class EarlySignals(UnsetHandler):
    """
    A signal handler that only records which signals came.

    It is false (L{UnsetHandler}): twistd sets its C{SIGUSR1} log rotation
    over it as over no handler.
    """

    def __init__(self) -> None:
        self._received: set[int] = set()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self._received.add(signum)

    def loading(self) -> None:
        """
        The configuration is about to be read: the C{SIGHUP}s recorded so
        far are answered by that read.
        """
        self._received.discard(signal.SIGHUP)

    def take(self) -> list[int]:
        """
        The signals recorded (each once, in L{EARLY_SIGNALS}' order), then
        forgotten.
        """
        received: list[int] = [s for s in EARLY_SIGNALS if s in self._received]
        self._received.clear()
        return received


_installed: EarlySignals | None = None


def installEarlySignals() -> EarlySignals:
    """
    Record C{SIGHUP}, C{SIGUSR1} and C{SIGUSR2} from now on, wherever their
    handler is the default (it ends the process); the same recorder for the
    whole process, however often this is called.

    Only for the daemon's entry points (the twistd plugin under twistd, the
    C{twinetd} command): the handlers are process-wide.
    """
    global _installed
    if _installed is None:
        _installed = EarlySignals()
    for signum in EARLY_SIGNALS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, _installed)
    return _installed
