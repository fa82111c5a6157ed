"""
L{twinetd.logs.jsonlog}: twinetd events as JSON lines, with their named
fields only.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from twinetd import logs
from twinetd.logs.jsonlog import JsonLog, eventAsJSON
from twinetd.model import Peer

PEER = Peer("tcp", "::ffff:127.0.0.1", 40000, "::ffff:127.0.0.1", 7)


def captured() -> tuple[list[dict[str, Any]], logs.ServiceLog]:
    seen: list[dict[str, Any]] = []
    return seen, logs.ServiceLog("echo", Logger(observer=seen.append))


class EventAsJSONTests(SynchronousTestCase):
    def test_start(self) -> None:
        """
        The event's fields, its kind, level, text and time; none of
        Twisted's own keys.
        """
        seen, serviceLog = captured()
        serviceLog.start(4242, PEER)
        [event] = seen
        event["log_time"] = 1795624058.25
        record = json.loads(eventAsJSON(event) or "")
        self.assertEqual(
            record,
            {
                "time": "2026-11-25T16:27:38.250000+00:00",
                "level": "info",
                "twinetdEvent": "start",
                "text": "START: echo pid=4242 from=::ffff:127.0.0.1",
                "service": "echo",
                "pid": 4242,
                "host": "::ffff:127.0.0.1",
                "port": 40000,
                "latency": None,
            },
        )

    def test_exit(self) -> None:
        seen, serviceLog = captured()
        serviceLog.exit(4242, None, 15, 3)
        record = json.loads(eventAsJSON(seen[0]) or "")
        self.assertEqual(
            {k: record[k] for k in ("status", "signal", "duration", "level")},
            {"status": None, "signal": 15, "duration": 3, "level": "info"},
        )

    def test_valuesMadePlain(self) -> None:
        """
        Values JSON has no type for become text; mappings and sequences
        are kept.
        """
        seen: list[dict[str, Any]] = []
        logger = Logger(observer=seen.append)
        logs.emit(
            logs.DGRAM_DROPPED,
            logger,
            service="tftp",
            count=3,
            reasons={"address": 3},
            interval=float("nan"),
        )
        logs.emit(
            logs.CANNOT_LISTEN,
            logger,
            file="f",
            line=1,
            service="s",
            address="::",
            port=69,
            reason=OSError(98, "Address already in use"),
        )
        dropped, cannot = (json.loads(eventAsJSON(e) or "") for e in seen)
        self.assertEqual(
            (dropped["reasons"], dropped["interval"]), ({"address": 3}, "nan")
        )
        self.assertEqual(cannot["reason"], "[Errno 98] Address already in use")
        self.assertEqual(cannot["level"], "error")

    def test_notOurs(self) -> None:
        self.assertIsNone(eventAsJSON({"log_format": "hello", "log_time": 0.0}))
        self.assertIsNone(eventAsJSON({"twinetdEvent": "nosuch"}))


class JsonLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.mkdir(self.dir)
        self.path = os.path.join(self.dir, "events.json")
        self.log = JsonLog(self.path)
        self.addCleanup(self.log.close)
        self.seen, self.serviceLog = captured()

    def records(self, path: str | None = None) -> list[dict[str, Any]]:
        with open(path or self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    def test_lines(self) -> None:
        """
        One object per line, appended; other events are left out.
        """
        with open(self.path, "w") as f:
            f.write('{"old": 1}\n')
        self.serviceLog.start(1, PEER)
        self.serviceLog.exit(1, 0, None, 0)
        for event in [*self.seen, {"log_format": "not ours", "log_time": 0.0}]:
            self.log(event)
        self.assertEqual(
            [r.get("twinetdEvent") for r in self.records()], [None, "start", "exit"]
        )
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o644)

    def test_reopen(self) -> None:
        self.serviceLog.start(1, PEER)
        self.log(self.seen[-1])
        os.rename(self.path, self.path + ".1")
        self.log.reopen()
        self.serviceLog.start(2, PEER)
        self.log(self.seen[-1])
        self.assertEqual([r["pid"] for r in self.records(self.path + ".1")], [1])
        self.assertEqual([r["pid"] for r in self.records()], [2])

    def test_closed(self) -> None:
        self.log.close()
        self.serviceLog.start(1, PEER)
        self.log(self.seen[-1])
        self.assertEqual(self.records(), [])

    def test_cannotOpen(self) -> None:
        self.assertRaises(OSError, JsonLog, os.path.join(self.dir, "no", "x.json"))
