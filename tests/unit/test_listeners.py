"""
L{twinetd.listeners.base}: the lifecycle every kind of listener shares,
with a listener kind made for the test, the fake reactor and its clock.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from twinetd import logs
from twinetd.config.endpoints import parseListen
from twinetd.errors import SourceLocation
from twinetd.listeners.base import Listener
from twinetd.listeners.stream import StreamListener
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


class StreamEndpointTests(SynchronousTestCase):
    """
    A stream listener on C{twinetd_listen} endpoints, with the fake reactor
    (its TCP and UNIX ports record what listened).
    """

    def listener(self, *descriptions: str) -> tuple[StreamListener, list[Any]]:
        reactor = MemoryProcessReactor()
        events: list[dict[str, Any]] = []
        config = attrs.evolve(
            CONFIG, listen=tuple(parseListen(d, "/run") for d in descriptions)
        )
        listener = StreamListener(
            config,
            runtimeFor(reactor),
            reactor,
            serviceLog=logs.ServiceLog("kind", logger=Logger(observer=events.append)),
        )
        return listener, events

    def test_everyEndpoint(self) -> None:
        """
        Each endpoint listens; the first numbered port is the bound port;
        each logs its own listening line with its description.
        """
        listener, events = self.listener("unix:s.sock:mode=600", "tcp:8080")
        listener.startService()
        self.assertEqual(len(listener.ports), 2)
        self.assertEqual(listener.boundPort, 8080)
        listening = [e for e in events if e.get(logs.EVENT_FIELD) == logs.LISTENING]
        self.assertEqual(
            [(e["address"], e["protocol"]) for e in listening],
            [("unix:s.sock:mode=600", "unix"), ("tcp:8080", "tcp")],
        )
        self.successResultOf(listener.stopService())
        self.assertEqual(listener.ports, [])

    def test_oneFailsOthersListen(self) -> None:
        """
        An endpoint that cannot be made (no socket passed by systemd) is
        logged with its description, and the others listen.
        """
        listener, events = self.listener("systemd:domain=INET:index=0", "tcp:8080")
        listener.startService()
        self.assertEqual(listener.boundPort, 8080)
        [failed] = [e for e in events if e.get(logs.EVENT_FIELD) == logs.CANNOT_LISTEN]
        self.assertEqual(
            (failed["address"], failed["port"]), ("systemd:domain=INET:index=0", None)
        )
        self.assertIn("systemd passed no socket", failed["reason"])

    def test_cpsPauseClosesAll(self) -> None:
        """
        A cps pause closes every endpoint of the service; it listens on
        them all again after the pause.
        """
        listener, _ = self.listener("tcp:8080", "tcp:8081")
        listener.startService()
        reactor = listener.runtime.clock
        listener.pauseFor(2)
        self.assertEqual(listener.ports, [])
        reactor.advance(2)  # type: ignore[attr-defined]
        self.assertEqual(len(listener.ports), 2)
        self.assertEqual(len(reactor.tcpServers), 4)  # type: ignore[attr-defined]
