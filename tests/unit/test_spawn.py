"""
L{twinetd.spawn} without starting processes: the fast path's file actions,
the choice of path, the fake-reactor spawner.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from typing import Any

from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SynchronousTestCase

from twinetd import spawn
from twinetd.errors import SpawnError
from twinetd.launch import LaunchPlan
from twinetd.spawn import (
    ReactorSpawner,
    fastFileActions,
    spawnerFor,
)
from twinetd.testing import MemoryProcessReactor

PLAN = LaunchPlan(
    executable="/usr/bin/server", argv=("server", "-v"), env=(("A", "1"),)
)


def childTable(
    parent: Mapping[int, str], actions: list[tuple[Any, ...]]
) -> dict[int, tuple[str, bool]]:
    """
    Apply C{posix_spawn} file actions to a descriptor table (descriptor to
    (what it refers to, close-on-exec)), then exec: what the child has.
    """
    table = {fd: (what, True) for fd, what in parent.items()}
    for action in actions:
        if action[0] == os.POSIX_SPAWN_DUP2:
            _, source, target = action
            assert source in table, f"dup2 of closed descriptor {source}"
            if source != target:
                table[target] = (table[source][0], False)
        elif action[0] == os.POSIX_SPAWN_CLOSE:
            table.pop(action[1])
        else:
            _, fd, path, _flags, _mode = action
            table[fd] = (path, False)
    return {fd: entry for fd, entry in table.items() if not entry[1]}


class FileActionsTests(SynchronousTestCase):
    def test_plainPipes(self) -> None:
        """
        The usual case: three pipe ends placed on 0, 1 and 2.
        """
        parent = {0: "tty", 1: "tty", 2: "tty", 9: "in", 10: "out", 11: "err"}
        parent = {fd: what for fd, what in parent.items()}
        child = childTable(parent, fastFileActions({0: 9, 1: 10, 2: 11}))
        self.assertEqual(
            child, {0: ("in", False), 1: ("out", False), 2: ("err", False)}
        )

    def test_collisions(self) -> None:
        """
        Sources that are themselves targets (a daemon whose stdio was closed
        gets pipes on 0-2) are moved aside first; a descriptor mapped onto
        itself loses close-on-exec.
        """
        parent = {0: "a", 1: "b", 2: "c"}
        child = childTable(parent, fastFileActions({0: 1, 1: 0, 2: 2}))
        self.assertEqual(child, {0: ("b", False), 1: ("a", False), 2: ("c", False)})

    def test_sameSourceTwice(self) -> None:
        """
        One socket as stdin, stdout and stderr (the handoff case).
        """
        parent = {5: "socket"}
        child = childTable(parent, fastFileActions({0: 5, 1: 5, 2: 5}))
        self.assertEqual(child, {fd: ("socket", False) for fd in (0, 1, 2)})

    def test_extraDescriptor(self) -> None:
        parent = {3: "x", 4: "y", 7: "sock"}
        child = childTable(parent, fastFileActions({0: 4, 1: 3, 2: 7, 3: 7}))
        self.assertEqual(
            child,
            {0: ("y", False), 1: ("x", False), 2: ("sock", False), 3: ("sock", False)},
        )

    def test_unmappedStdioIsDevNull(self) -> None:
        child = childTable({8: "sock"}, fastFileActions({0: 8}))
        self.assertEqual(
            child,
            {0: ("sock", False), 1: (os.devnull, False), 2: (os.devnull, False)},
        )

    def test_constantSize(self) -> None:
        """
        The actions depend on the child's mapping only, not on descriptor
        numbers (how many the daemon has open).
        """
        low = fastFileActions({0: 5, 1: 6, 2: 7})
        high = fastFileActions({0: 5005, 1: 5006, 2: 5007})
        self.assertEqual(len(low), 3)
        self.assertEqual(len(high), 3)


class PathChoiceTests(SynchronousTestCase):
    def test_plainPlanIsFast(self) -> None:
        self.assertFalse(spawn._needsFullPath(PLAN))

    def test_anyAttributeNeedsFullPath(self) -> None:
        from attrs import evolve

        for change in [
            {"uid": 65534},
            {"gid": 65534},
            {"supplementaryGroups": ()},
            {"umask": 0o22},
            {"nice": 5},
            {"rlimits": (("files", 64),)},
        ]:
            self.assertTrue(spawn._needsFullPath(evolve(PLAN, **change)), change)

    def test_noSupplementaryGroups(self) -> None:
        """
        "None" is the primary group alone (setgroups with it, which every
        Python version performs).
        """
        from attrs import evolve

        plan = evolve(PLAN, uid=65534, gid=65534, supplementaryGroups=())
        self.assertEqual(spawn._supplementaryGroups(plan), [65534])
        self.assertIsNone(spawn._supplementaryGroups(PLAN))

    def test_userGroups(self) -> None:
        from attrs import evolve

        plan = evolve(PLAN, uid=0, gid=0, supplementaryGroups="user", userName="root")
        self.assertEqual(spawn._supplementaryGroups(plan), os.getgrouplist("root", 0))

    def test_extraChildFDsOnFullPathRefused(self) -> None:
        from attrs import evolve

        with self.assertRaises(ValueError):
            spawn._spawnFull(evolve(PLAN, umask=0o22), {0: 5, 1: 6, 2: 7, 3: 8})


class SpawnerForTests(SynchronousTestCase):
    def test_fakeReactor(self) -> None:
        self.assertIsInstance(spawnerFor(MemoryProcessReactor()), ReactorSpawner)


class ReactorSpawnerTests(SynchronousTestCase):
    def test_passesPlan(self) -> None:
        reactor = MemoryProcessReactor()
        proto = ProcessProtocol()
        process = ReactorSpawner(reactor).spawn(proto, PLAN)
        [fake] = reactor.spawned
        self.assertIs(process, fake)
        self.assertIs(proto.transport, fake)
        self.assertEqual(fake.call.executable, "/usr/bin/server")
        self.assertEqual(fake.call.args, ("server", "-v"))
        self.assertEqual(fake.call.env, {"A": "1"})
        self.assertIsNone(fake.call.childFDs)

    def test_childFDs(self) -> None:
        reactor = MemoryProcessReactor()
        ReactorSpawner(reactor).spawn(ProcessProtocol(), PLAN, {0: 7, 1: 7, 2: "r"})
        self.assertEqual(reactor.spawned[0].call.childFDs, {0: 7, 1: 7, 2: "r"})

    def test_errorIsSpawnError(self) -> None:
        """
        An OSError becomes a SpawnError naming the path and the errno text.
        """
        reactor = MemoryProcessReactor()
        reactor.spawnErrors["/usr/bin/server"] = PermissionError(
            errno.EACCES, "Permission denied"
        )
        with self.assertRaises(SpawnError) as caught:
            ReactorSpawner(reactor).spawn(ProcessProtocol(), PLAN)
        self.assertEqual(
            str(caught.exception), "cannot execute /usr/bin/server: Permission denied"
        )
