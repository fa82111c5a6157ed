"""
The public API, pinned (as klein's test_exports does): a name added to or
dropped from a public module's C{__all__} must be a decision, made here.
"""

from __future__ import annotations

import importlib

from twisted.trial.unittest import SynchronousTestCase

PUBLIC = {
    "twinetd.config": [
        "ATTRIBUTES",
        "AttributeSpec",
        "LoadResult",
        "Lookups",
        "UserEntry",
        "loadPath",
        "loadText",
        "parseAddress",
    ],
    "twinetd.errors": [
        "ConfigError",
        "Problem",
        "SourceLocation",
        "SpawnError",
        "TwinetdError",
        "printable",
    ],
    "twinetd.model": [
        "INTERNAL_SERVICES",
        "AddressRule",
        "FileTarget",
        "IPNetwork",
        "LogTarget",
        "Peer",
        "ServiceConfig",
        "SocketType",
        "SyslogTarget",
        "unmapped",
    ],
    "twinetd.service": [
        "DaemonControl",
        "DaemonSettings",
        "TwinetdService",
        "fromPath",
        "fromRecords",
        "fromText",
        "keepPrevious",
        "logProblems",
        "summary",
        "unsupportedReason",
    ],
    "twinetd.testing": [
        "FakeHangupWatcher",
        "FakeProcess",
        "FakeUDPPort",
        "MemoryProcessReactor",
        "RunningDaemon",
        "SpawnCall",
        "converse",
        "daemonFixture",
        "runConfig",
        "serviceRecord",
    ],
}


class ExportsTests(SynchronousTestCase):
    def test_exports(self) -> None:
        for name, exported in PUBLIC.items():
            module = importlib.import_module(name)
            self.assertEqual(sorted(module.__all__), sorted(exported), name)
            for attribute in exported:
                self.assertTrue(hasattr(module, attribute), f"{name}.{attribute}")
