# -*- test-case-name: tests.unit.test_testing,tests.integration.test_testing -*-
"""
Test helpers for inetd programs and for applications embedding twinetd.

Integration tests (real children, real loopback sockets, no root):
L{runConfig} serves a configuration in-process on ephemeral ports (also as
C{async with}), L{daemonFixture} makes that a pytest fixture, L{converse}
talks to a service, and L{serviceRecord} builds records without a
configuration file.  For test suites without a reactor, L{serveConfig}
(also C{with}) and L{daemonProcessFixture} serve it with a real twinetd in
a child process.

Unit tests (no processes, no sockets, no time): L{MemoryProcessReactor} is a
fake reactor that spawns L{FakeProcess}es the test drives and listens on
L{FakeUDPPort}s; L{FakeHangupWatcher} stands for the watcher that notices
paused clients leaving.
"""

from twinetd.testing.daemon import (
    RunningDaemon,
    converse,
    daemonFixture,
    runConfig,
    serviceRecord,
)
from twinetd.testing.fakes import (
    FakeHangupWatcher,
    FakeProcess,
    FakeUDPPort,
    MemoryProcessReactor,
    SpawnCall,
)
from twinetd.testing.process import (
    DaemonProcess,
    daemonProcessFixture,
    serveConfig,
)

__all__ = [
    "DaemonProcess",
    "FakeHangupWatcher",
    "FakeProcess",
    "FakeUDPPort",
    "MemoryProcessReactor",
    "RunningDaemon",
    "SpawnCall",
    "converse",
    "daemonFixture",
    "daemonProcessFixture",
    "runConfig",
    "serveConfig",
    "serviceRecord",
]
