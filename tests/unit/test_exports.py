"""
The public API, pinned (as klein's test_exports does): a name added to or
dropped from a public module's C{__all__} must be a decision, made here.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator

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
    ],
}


class ExportsTests(SynchronousTestCase):
    def test_exports(self) -> None:
        for name, exported in PUBLIC.items():
            module = importlib.import_module(name)
            self.assertEqual(sorted(module.__all__), sorted(exported), name)
            for attribute in exported:
                self.assertTrue(hasattr(module, attribute), f"{name}.{attribute}")

    def test_noAnyInSignatures(self) -> None:
        """
        What the public functions and classes take and return is typed:
        no C{Any} in their signatures (a JSON document excepted).
        """
        found = []
        for name, exported in PUBLIC.items():
            module = importlib.import_module(name)
            for attribute in exported:
                value = getattr(module, attribute)
                for where, annotation in _annotations(value):
                    place = f"{name}.{attribute}{where}"
                    if _ANY.search(annotation) and place not in _UNTYPED:
                        found.append(f"{place}: {annotation}")
        self.assertEqual(found, [])


_ANY = re.compile(r"\bAny\b")

_UNTYPED = {
    # The status document is JSON: a mapping of str to anything JSON holds.
    "twinetd.service.TwinetdService.status return",
    # The JSON log's events, read back.
    "twinetd.testing.DaemonProcess.events return",
    # The attribute table is heterogeneous: each row's values become its
    # own field's type.
    "twinetd.config.AttributeSpec.__init__",
}


def _annotations(value: object) -> Iterator[tuple[str, str]]:
    """
    The annotations of a public function, or of a public class's
    constructor and public methods, as written (with the place of each).
    """
    if inspect.isclass(value):
        methods = [
            (f".{name}", member)
            for name, member in vars(value).items()
            if inspect.isfunction(member)
            and (not name.startswith("_") or name == "__init__")
        ]
    elif inspect.isfunction(value):
        methods = [("", value)]
    else:
        return
    for place, function in methods:
        for parameter, annotation in function.__annotations__.items():
            where = f"{place} return" if parameter == "return" else place
            yield where, str(annotation)
