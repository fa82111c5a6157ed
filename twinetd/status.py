# -*- test-case-name: tests.unit.test_status -*-
"""
The daemon's status: each service's state read from the running tree, with
its counts, as one document (C{/status} of C{--metrics}, SIGUSR2's dump,
C{twinetd status}) and as a table for people.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from twinetd.errors import printable
from twinetd.logs.counters import Counters

#: The version of the document's shape; fields are only added.
STATUS_VERSION = 1


@attrs.frozen
class ServiceState:
    """
    One served service as it is now.

    @ivar id: the service id.
    @ivar protocol: C{tcp} or C{udp}.
    @ivar port: the port bound, else the configured one.
    @ivar address: the address listened on, as the listening line says it.
    @ivar kind: what it runs: C{bridge}, C{handoff}, C{wait}, C{datagram},
        C{internal} or C{redirect}.
    @ivar listening: bound and accepting (not paused by C{cps}).
    @ivar paused: C{cps} has tripped: not listening for a while.
    @ivar settled: listening, or given up (no more bind retries).
    @ivar running: servers running now (connections being served).
    """

    id: str
    protocol: str
    port: int | None
    address: str
    kind: str
    listening: bool
    paused: bool
    settled: bool
    running: int


@attrs.frozen
class SpawnerProcessState:
    """
    The spawner process as it is now (L{twinetd.spawnclient}).

    @ivar pid: the pid of the last one started (one that died is replaced
        at the next start); C{None} before the first.
    @ivar running: the programs it started that have not ended.
    """

    pid: int | None
    running: int


def statusDocument(
    states: Sequence[ServiceState],
    counters: Counters,
    *,
    pid: int,
    uptime: float,
    version: str,
    spawnerProcess: SpawnerProcessState | None = None,
) -> dict[str, Any]:
    """
    The status as plain data (JSON-ready).

    @param uptime: seconds since the daemon started.
    @param spawnerProcess: the spawner process, if the daemon has one
        (also before it starts it).
    """
    services = []
    for state in states:
        counts = counters.of(state.id)
        services.append(
            {
                **attrs.asdict(state),
                "accepted": counts.accepted,
                "refused": dict(counts.refused),
                "spawnFailures": counts.spawnFailures,
                "bytesIn": counts.bytesIn,
                "bytesOut": counts.bytesOut,
            }
        )
    return {
        "statusVersion": STATUS_VERSION,
        "version": version,
        "pid": pid,
        "uptime": round(uptime, 3),
        "services": services,
        "listening": sum(1 for s in states if s.listening),
        "running": sum(s.running for s in states),
        "spawnerProcess": (
            None if spawnerProcess is None else attrs.asdict(spawnerProcess)
        ),
    }


def summaryLine(states: Iterable[ServiceState]) -> str:
    """
    C{N of M services listening, K servers running} (systemd's C{STATUS=}).
    """
    listed = list(states)
    listening = sum(1 for s in listed if s.listening)
    running = sum(s.running for s in listed)
    return (
        f"{listening} of {len(listed)} services listening, {running} "
        f"server{'s' if running != 1 else ''} running"
    )


_COLUMNS = (
    ("service", "id"),
    ("proto", "protocol"),
    ("port", "port"),
    ("kind", "kind"),
    ("state", "state"),
    ("running", "running"),
    ("accepted", "accepted"),
    ("refused", "refusedTotal"),
    ("spawn fail", "spawnFailures"),
    ("bytes in", "bytesIn"),
    ("bytes out", "bytesOut"),
)


def _state(service: Mapping[str, Any]) -> str:
    if service.get("listening"):
        return "listening"
    if service.get("paused"):
        return "paused (cps)"
    return "not listening" if service.get("settled") else "binding"


def statusTable(document: Mapping[str, Any]) -> str:
    """
    The status for a person: a header line, then one row per service.
    """
    rows = [[title for title, _ in _COLUMNS]]
    for service in document.get("services", ()):
        values = {
            **service,
            "state": _state(service),
            "refusedTotal": sum(dict(service.get("refused", {})).values()),
        }
        rows.append([_cell(values[key]) for _, key in _COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        f"twinetd {document.get('version', '?')} pid {document.get('pid', '?')}, "
        f"up {_duration(float(document.get('uptime', 0)))}: "
        f"{document.get('listening', 0)} of {len(rows) - 1} services listening, "
        f"{document.get('running', 0)} servers running"
    ]
    for row in rows:
        cells = [
            cell.ljust(width) if i < 5 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    for service in document.get("services", ()):
        refused = dict(service.get("refused", {}))
        if refused:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(refused.items()))
            lines.append(f"{printable(str(service['id']))} refused: {reasons}")
    spawner = document.get("spawnerProcess")
    if isinstance(spawner, Mapping):
        if spawner.get("pid") is None:
            lines.append("spawner process: not started")
        else:
            lines.append(
                f"spawner process: pid {_cell(spawner['pid'])}, "
                f"{_cell(spawner.get('running'))} servers running"
            )
    return "\n".join(lines)


def _cell(value: object) -> str:
    return "-" if value is None else printable(str(value))


def _duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text
