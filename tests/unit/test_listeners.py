"""
L{twinetd.listeners.base}: the lifecycle every kind of listener shares,
with a listener kind made for the test, the fake reactor and its clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from twinetd import logs
from twinetd.errors import SourceLocation
from twinetd.listeners.base import Listener
from twinetd.model import ServiceConfig, SocketType
from twinetd.policy.gate import Admission
from twinetd.testing import MemoryProcessReactor

from ..runtime import runtimeFor

CONFIG = ServiceConfig(
    name="kind",
    source=SourceLocation("<test>", 1),
    socketType=SocketType.STREAM,
    wait=False,
    port=7000,
    server="/bin/true",
)


class Kind(Listener):
    """
    A listener kind that notes what the lifecycle asks of it.
    """

    bound = False
    fail = False

    def __init__(self, **kw: Any) -> None:
        self.reactor = MemoryProcessReactor()
        self.events: list[dict[str, Any]] = []
        self.calls: list[str] = []
        super().__init__(
            CONFIG,
            runtimeFor(self.reactor),
            serviceLog=logs.ServiceLog(
                "kind", logger=Logger(observer=self.events.append)
            ),
            **kw,
        )

    @property
    def boundPort(self) -> int | None:
        return 7000 if self.bound else None

    @property
    def listening(self) -> bool:
        return self.bound

    def _listen(self) -> None:
        self.calls.append("listen")
        if self.fail:
            self._cannotListen(OSError(98, "in use"), "::", "in use")
        else:
            self.bound = True

    def _startAccepting(self) -> None:
        self.calls.append("accept")

    def _stopAccepting(self) -> None:
        self.calls.append("stop accepting")

    def _stopListening(self) -> Deferred[None]:
        self.calls.append("stop listening")
        self.bound = False
        return succeed(None)

    def _stopServing(self) -> Deferred[None]:
        self.calls.append("stop serving")
        return succeed(None)


class LifecycleTests(SynchronousTestCase):
    def test_privilegedStartListensStartAccepts(self) -> None:
        """
        twistd: C{privilegedStartService} listens (as root), then
        C{startService} accepts, without listening again.
        """
        kind = Kind()
        kind.privilegedStartService()
        self.assertEqual(kind.calls, ["listen"])
        kind.startService()
        self.assertEqual(kind.calls, ["listen", "accept"])

    def test_startListensAndAccepts(self) -> None:
        kind = Kind()
        kind.startService()
        self.assertEqual(kind.calls, ["listen", "accept"])

    def test_failureLeavesIdle(self) -> None:
        """
        A listener that cannot listen logs why, keeps it, and accepts
        nothing.
        """
        kind = Kind()
        kind.fail = True
        kind.startService()
        self.assertEqual(kind.calls, ["listen"])
        self.assertIsInstance(kind.failure, OSError)
        [event] = [e for e in kind.events if e.get(logs.EVENT_FIELD)]
        self.assertEqual(event[logs.EVENT_FIELD], logs.CANNOT_LISTEN)

    def test_pauseAndResume(self) -> None:
        """
        A cps pause stops accepting for its seconds, then the listener
        accepts again on its own (xinetd's "Activating service" line); a
        second trip while paused changes nothing.
        """
        kind = Kind()
        kind.startService()
        kind.pauseFor(3)
        kind.pauseFor(30)
        self.assertTrue(kind.paused)
        self.assertEqual(kind.calls[2:], ["stop accepting"])
        kind.reactor.advance(3)
        self.assertFalse(kind.paused)
        self.assertEqual(kind.calls[2:], ["stop accepting", "accept"])
        self.assertTrue(
            any(
                e.get("log_format") == "Activating service {service}"
                for e in kind.events
            )
        )

    def test_askPauses(self) -> None:
        """
        An admission that trips cps pauses the listener that asked, before
        the asker sees it.
        """
        seen: list[bool] = []
        kind = Kind(
            admit=lambda peer: succeed(
                Admission.refused("connections per second", pause=5)
            )
        )
        kind.startService()
        kind.ask(None).addCallback(lambda a: seen.append(kind.paused))
        self.assertEqual(seen, [True])

    def test_stopEndsPause(self) -> None:
        kind = Kind()
        kind.startService()
        kind.pauseFor(3)
        self.successResultOf(kind.stopService())
        self.assertEqual(kind.reactor.getDelayedCalls(), [])
        self.assertEqual(kind.calls[-2:], ["stop listening", "stop serving"])

    def test_startWhilePausedDoesNotAccept(self) -> None:
        kind = Kind()
        kind.privilegedStartService()
        kind.pauseFor(3)
        kind.startService()
        self.assertNotIn("accept", kind.calls)
        kind.reactor.advance(3)
        self.assertIn("accept", kind.calls)
