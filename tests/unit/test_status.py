"""
Tests for L{twinetd.logs.counters}, L{twinetd.status} and the metrics
collector of L{twinetd.metrics}: counts from events, the status document
and table, the Prometheus families.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from twinetd.logs import DGRAM_DROPPED, ServiceLog, emit
from twinetd.logs.counters import Counters, Histogram
from twinetd.metrics import Snapshot, TwinetdCollector
from twinetd.model import Peer
from twinetd.status import (
    ServiceState,
    SpawnerProcessState,
    statusDocument,
    statusTable,
    summaryLine,
)

PEER = Peer("tcp", "127.0.0.1", 40000, "127.0.0.1", 7, accepted=10.0)


class FixedClock:
    def seconds(self) -> float:
        return 10.25


def counted() -> tuple[Counters, ServiceLog]:
    counters = Counters()
    return counters, ServiceLog("echo", Logger(observer=counters), clock=FixedClock())  # type: ignore[arg-type]


class CountersTests(SynchronousTestCase):
    def test_events(self) -> None:
        """
        START and SPAWN_FAILED count as accepted; FAIL and the summarised
        datagram drops by reason; RELAYED and TRAFFIC as bytes; START's
        latency goes to the histogram.
        """
        counters, serviceLog = counted()
        serviceLog.start(42, PEER)
        serviceLog.start(0, PEER)
        serviceLog.spawnFailed(PEER, "no such file")
        serviceLog.fail("address", PEER)
        emit(
            DGRAM_DROPPED, serviceLog.logger, service="echo", count=3,
            reasons={"address": 2, "service_limit": 1}, interval=1.0,
        )  # fmt: skip
        serviceLog.relayed(5, 7)
        serviceLog.traffic(1, 2)
        counts = counters.services["echo"]
        self.assertEqual((counts.accepted, counts.spawnFailures), (3, 1))
        self.assertEqual(counts.refused, {"address": 3, "service_limit": 1})
        self.assertEqual((counts.bytesIn, counts.bytesOut), (6, 9))
        # Only the real child's latency: pid 0 is served in the daemon.
        self.assertEqual((counters.latency.count, counters.latency.sum), (1, 0.25))

    def test_histogram(self) -> None:
        histogram = Histogram((0.1, 1.0))
        for value in (0.05, 0.1, 0.5, 3.0):
            histogram.observe(value)
        self.assertEqual(
            histogram.cumulative(), [(0.1, 2), (1.0, 3), (float("inf"), 4)]
        )


STATES = (
    ServiceState("echo", "tcp", 7, "::", "bridge", True, False, True, 2),
    ServiceState("tftp", "udp", 69, "0.0.0.0", "datagram", False, True, True, 0),
)


class StatusTests(SynchronousTestCase):
    def document(self) -> dict[str, object]:
        counters, serviceLog = counted()
        serviceLog.start(42, PEER)
        serviceLog.relayed(5, 7)
        counters.of("tftp").refused["address"] = 4
        return statusDocument(STATES, counters, pid=99, uptime=3725.5, version="1.0")

    def test_document(self) -> None:
        document = self.document()
        self.assertEqual(
            (document["listening"], document["running"], document["pid"]), (1, 2, 99)
        )
        echo, tftp = document["services"]  # type: ignore[misc]
        self.assertEqual(
            (echo["accepted"], echo["bytesIn"], echo["kind"]), (1, 5, "bridge")
        )
        self.assertEqual(tftp["refused"], {"address": 4})

    def test_table(self) -> None:
        self.assertEqual(
            statusTable(self.document()).splitlines(),
            [
                "twinetd 1.0 pid 99, up 1:02:05: 1 of 2 services listening, 2 "
                "servers running",
                "service  proto  port  kind      state         running  accepted  "
                "refused  spawn fail  bytes in  bytes out",
                "echo     tcp    7     bridge    listening           2         1  "
                "      0           0         5          7",
                "tftp     udp    69    datagram  paused (cps)        0         0  "
                "      4           0         0          0",
                "tftp refused: address 4",
            ],
        )

    def test_spawnerProcess(self) -> None:
        """
        A daemon with a spawner process says its pid and how many servers
        it runs (C{None} and 0 before it starts), in the document and in
        the table's last line; one without has C{None} and no line.
        """
        counters, _ = counted()
        for state, line in (
            (SpawnerProcessState(pid=1234, running=3), "pid 1234, 3 servers running"),
            (SpawnerProcessState(pid=None, running=0), "not started"),
        ):
            document = statusDocument(
                STATES, counters, pid=99, uptime=1, version="1", spawnerProcess=state
            )
            self.assertEqual(
                document["spawnerProcess"],
                {"pid": state.pid, "running": state.running},
            )
            self.assertEqual(
                statusTable(document).splitlines()[-1], f"spawner process: {line}"
            )
        document = statusDocument(STATES, counters, pid=99, uptime=1, version="1")
        self.assertIsNone(document["spawnerProcess"])
        self.assertNotIn("spawner", statusTable(document))

    def test_summaryLine(self) -> None:
        self.assertEqual(
            summaryLine(STATES), "1 of 2 services listening, 2 servers running"
        )


class CollectorTests(SynchronousTestCase):
    def test_exposition(self) -> None:
        """
        The families, rendered by prometheus_client from a snapshot.
        """
        counters, serviceLog = counted()
        serviceLog.start(42, PEER)
        serviceLog.relayed(5, 7)
        counters.of("tftp").refused["address"] = 4
        snapshot = Snapshot(
            STATES,
            dict(counters.services),
            (tuple(counters.latency.cumulative()), counters.latency.sum),
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(TwinetdCollector(lambda: snapshot))
        lines = set(generate_latest(registry).decode().splitlines())
        for line in [
            'twinetd_accepted_total{service="echo"} 1.0',
            'twinetd_refused_total{reason="address",service="tftp"} 4.0',
            'twinetd_bytes_total{direction="in",service="echo"} 5.0',
            'twinetd_bytes_total{direction="out",service="echo"} 7.0',
            'twinetd_running{service="echo"} 2.0',
            'twinetd_listening{service="echo"} 1.0',
            'twinetd_listening{service="tftp"} 0.0',
            'twinetd_datagrams_dropped_total{service="tftp"} 4.0',
            'twinetd_spawn_failures_total{service="echo"} 0.0',
            'twinetd_start_latency_seconds_bucket{le="0.25"} 1.0',
            'twinetd_start_latency_seconds_bucket{le="0.1"} 0.0',
            "twinetd_start_latency_seconds_count 1.0",
        ]:
            self.assertIn(line, lines)
        self.assertNotIn('twinetd_datagrams_dropped_total{service="echo"} 0.0', lines)
        self.assertFalse([line for line in lines if "spawner" in line])

    def test_spawnerProcess(self) -> None:
        """
        A daemon with a spawner process reports how many servers it runs.
        """
        snapshot = Snapshot(
            STATES, {}, (((float("inf"), 0),), 0.0), SpawnerProcessState(None, 0)
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(TwinetdCollector(lambda: snapshot))
        lines = generate_latest(registry).decode().splitlines()
        self.assertIn("twinetd_spawner_process_running 0.0", lines)
