"""
L{twinetd.listeners.sockets}: which C{bind} values need a lookup.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twinetd.listeners.sockets import needsLookup


class NeedsLookupTests(SynchronousTestCase):
    def test_names(self) -> None:
        for name in ("localhost", "example.org", "host-1"):
            self.assertTrue(needsLookup(name), name)

    def test_literals(self) -> None:
        for literal in ("127.0.0.1", "0.0.0.0", "::", "::1", "fe80::1%lo", "10.1"):
            self.assertFalse(needsLookup(literal), literal)
