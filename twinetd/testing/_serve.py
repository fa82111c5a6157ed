# -*- test-case-name: tests.integration.test_testingprocess -*-
"""
The child process of L{twinetd.testing.process.serveConfig}: C{python -m
twinetd.testing._serve SPEC.json}.

It serves the configuration with L{twinetd.testing.runConfig} on the global
reactor, writes one line of JSON to standard output (the services' ports
and the configuration's problems, or the error that stopped it), and runs
until C{SIGTERM} or until its standard input (a pipe from the test process)
closes; either way every child is stopped before it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.interfaces import IReactorSocket
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from twinetd.errors import ConfigError, Problem


def _line(report: dict[str, Any]) -> None:
    os.write(1, json.dumps(report).encode("utf-8") + b"\n")


def _problemFields(problem: Problem) -> dict[str, Any]:
    return {
        "file": problem.location.file,
        "line": problem.location.line,
        "service": problem.service,
        "message": problem.message,
        "attribute": problem.attribute,
    }


class _TestProcessGone(Protocol):
    """
    Stops the reactor when the test process closes our standard input (or
    goes away).
    """

    def __init__(self, stop: Callable[[], None]) -> None:
        self._stop = stop

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop()


def main(specPath: str) -> int:
    from twisted.internet import reactor
    from twisted.internet.stdio import StandardIO
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from twinetd.logs.jsonlog import JsonLog
    from twinetd.service import DaemonSettings
    from twinetd.testing.daemon import runConfig

    with open(specPath, encoding="utf-8") as f:
        spec = json.load(f)
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stderr), JsonLog(spec["events"])],
        redirectStandardIO=False,
    )
    try:
        daemon = runConfig(
            cast(IReactorSocket, reactor),
            spec["text"],
            path=spec["path"],
            settings=DaemonSettings(killDelay=spec["killDelay"]),
            bind=spec["bind"],
            ephemeral=spec["ephemeral"],
            strict=spec["strict"],
        )
    except ConfigError as e:
        _line({"error": _problemFields(e.problem)})
        return 1
    reactor.addSystemEventTrigger("before", "shutdown", daemon.stop)

    def report() -> None:
        ports = {}
        for config in daemon.result.services:
            with contextlib.suppress(KeyError):
                ports[config.id] = daemon.port(config.id)
        problems = [str(problem) for problem in daemon.result.problems]
        _line({"ports": ports, "problems": problems})
        StandardIO(_TestProcessGone(stopOnce))

    def stopOnce() -> None:
        if reactor.running:
            reactor.stop()

    reactor.callWhenRunning(report)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
