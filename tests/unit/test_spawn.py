"""
L{twinetd.spawn} without starting processes: groups, the shim's arguments,
the fake-reactor spawner.
"""

from __future__ import annotations

import errno
import os
import resource
import sys
from typing import Any

from attrs import evolve
from twisted.internet import process as twistedProcess
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.test_launch import CONFIG, PEER
from twinetd import forkexec, spawn
from twinetd.errors import SpawnError, SpawnerUnavailable
from twinetd.launch import LaunchPlan, Planner
from twinetd.spawn import BusySpawner, PosixSpawner, ReactorSpawner, spawnerFor
from twinetd.testing import MemoryProcessReactor

PLAN = LaunchPlan(
    executable="/usr/bin/server", argv=("server", "-v"), env=(("A", "1"),)
)


class GroupsTests(SynchronousTestCase):
    def test_noSupplementaryGroups(self) -> None:
        """
        "None" is an empty list (setgroups(0, NULL), as xinetd); a plan
        that says nothing keeps the daemon's.
        """
        plan = evolve(PLAN, uid=65534, gid=65534, supplementaryGroups=())
        self.assertEqual(spawn.supplementaryGroups(plan), [])
        self.assertIsNone(spawn.supplementaryGroups(PLAN))

    def test_userGroups(self) -> None:
        """
        groups = yes: the user's groups as initgroups gives them, with the
        user's own primary group (by name or by number).
        """
        plan = evolve(PLAN, gid=4, supplementaryGroups="user", userName="root")
        self.assertEqual(spawn.supplementaryGroups(plan), os.getgrouplist("root", 0))
        byNumber = evolve(plan, userName="0")
        self.assertEqual(
            spawn.supplementaryGroups(byNumber), os.getgrouplist("root", 0)
        )

    def test_sameGroupsSwitchNothing(self) -> None:
        """
        Groups equal to the daemon's own, with no id to change, switch
        nothing (the vfork path); other groups or an id change do.
        """
        mine = os.getgroups()
        same = evolve(PLAN, supplementaryGroups=tuple(reversed(mine)))
        self.assertEqual(spawn._changes(same), (None, False))
        other = evolve(PLAN, supplementaryGroups=(*mine, 424242))
        self.assertEqual(spawn._changes(other), ([*mine, 424242], True))
        self.assertEqual(spawn._changes(evolve(same, uid=65534))[1], True)
        self.assertEqual(spawn._changes(PLAN), (None, False))


class ShimTests(SynchronousTestCase):
    def test_argv(self) -> None:
        """
        nice and rlimits go through the shim: this interpreter, isolated,
        with the settings in xinetd's order, then the server and its argv.
        """
        plan = evolve(
            PLAN,
            nice=5,
            rlimits=(("files", 300), ("cpu", None)),
            uid=65534,
            gid=65533,
            env=(("LC_CTYPE", "fr_FR.UTF-8"),),
        )
        argv = spawn.shimArgv(plan, [])
        self.assertEqual(argv[:4], [sys.executable, "-I", "-S", "-c"])
        self.assertEqual(
            argv[5].split(),
            [
                f"r={resource.RLIMIT_NOFILE}:300",
                f"r={resource.RLIMIT_CPU}:-1",
                "n=5",
                "G=",
                "g=65533",
                "u=65534",
                "c=fr_FR.UTF-8",
            ],
        )
        self.assertEqual(argv[6:], ["/usr/bin/server", "server", "-v"])
        self.assertIn("c-", spawn.shimArgv(PLAN, None)[5].split())

    def test_extraChildFDsRefused(self) -> None:
        with self.assertRaises(ValueError):
            spawn._spawn(evolve(PLAN, umask=0o22), {0: 5, 1: 6, 2: 7, 3: 8})


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


class EnvironmentBlockTests(SynchronousTestCase):
    """
    A child's variables encoded for C{fork_exec} as C{subprocess} encodes
    them; what every child of a service shares, once.
    """

    def test_entry(self) -> None:
        """
        As C{os.fsencode} encodes; kept from child to child.
        """
        self.assertEqual(
            forkexec.environmentEntry("A", "b=c é\udcff"),
            os.fsencode("A") + b"=" + os.fsencode("b=c é\udcff"),
        )
        self.assertIs(
            forkexec.environmentEntry("A", "b=c é"),
            forkexec.environmentEntry("A", "b=c é"),
        )

    def test_illegalName(self) -> None:
        """
        A name with C{=} is refused every time (an error is not kept).
        """
        for _ in range(2):
            with self.assertRaises(ValueError):
                forkexec.environmentEntry("A=B", "c")

    def test_planWithoutSharedPart(self) -> None:
        plan = evolve(PLAN, env=(("A", "1"), ("B", "é")))
        self.assertEqual(spawn.environmentBlock(plan), [b"A=1", "B=é".encode()])

    def test_sharedPartEncodedOnce(self) -> None:
        """
        Plans of one L{Planner} share their encoded common part; each
        block is the whole environment.
        """
        planner = Planner(CONFIG, {"PATH": "/bin", "HOME": "/root"}, 0, 0, True)
        first = spawn.environmentBlock(planner(PEER))
        second = spawn.environmentBlock(planner(evolve(PEER, remotePort=2)))
        self.assertEqual(first[:2], [b"PATH=/bin", b"HOME=/root"])
        self.assertIs(first[0], second[0])
        self.assertIn(b"REMOTE_PORT=40000", first)
        self.assertIn(b"REMOTE_PORT=2", second)
        self.assertEqual(len(first), len(planner(PEER).env))

    def test_sharedPartsForgottenBeyondTheBound(self) -> None:
        """
        Beyond L{spawn.SHARED_BLOCKS} services, the kept encodings are
        forgotten (and each is made again when needed).
        """
        self.patch(spawn, "_sharedBlocks", {})
        self.patch(spawn, "SHARED_BLOCKS", 2)
        planners = [Planner(CONFIG, {"N": str(n)}, 0, 0, True) for n in range(3)]
        for n, planner in enumerate(planners):
            self.assertEqual(
                spawn.environmentBlock(planner(PEER))[0], f"N={n}".encode()
            )
        self.assertEqual(len(spawn._sharedBlocks), 1)


class FakeRemote:
    """
    A L{spawn.RemoteSpawner} that records what it is asked.
    """

    def __init__(self, reactor: object) -> None:
        self.reactor = reactor
        self.pid: int | None = None
        self.killedAtClose = 0
        self.running: dict[int, object] = {}
        self.calls: list[str] = []

    #: What its spawns raise, if anything.
    failure: Exception | None = None

    def spawn(self, protocol: Any, plan: LaunchPlan, childFDs: Any = None) -> Any:
        self.calls.append("spawn")
        if self.failure is not None:
            raise self.failure
        return None

    def start(self) -> None:
        self.calls.append("start")

    def close(self) -> Deferred[None]:
        self.calls.append("close")
        return succeed(None)


class BusySpawnerTests(SynchronousTestCase):
    """
    L{BusySpawner}: the daemon's own start while few children run, the
    spawner process's under load.
    """

    def setUp(self) -> None:
        self.reactor = MemoryProcessReactor()
        self.made: list[FakeRemote] = []

        def remote(reactor: object) -> FakeRemote:
            self.made.append(FakeRemote(reactor))
            return self.made[-1]

        self.busy = BusySpawner(self.reactor, 2, remote)
        self.used: list[str] = []

        def own(this: Any, protocol: Any, plan: LaunchPlan, childFDs: Any) -> Any:
            self.used.append("daemon")
            return None

        self.patch(PosixSpawner, "_start", own)
        self.handlers: dict[int, Any] = {}
        self.patch(twistedProcess, "reapProcessHandlers", self.handlers)

    def test_running(self) -> None:
        """
        The running children are the daemon's own (Twisted's reaper knows
        them) and the spawner process's.
        """
        self.handlers.update({10: object(), 11: object()})
        self.assertEqual(self.busy.running(), 2)
        remote = self.busy.processSpawner
        assert isinstance(remote, FakeRemote)
        remote.running[0] = object()
        self.assertEqual(self.busy.running(), 3)
        # The spawner process itself is not one of them.
        remote.pid = 12
        self.handlers[12] = object()
        self.assertEqual(self.busy.running(), 3)

    def test_switches(self) -> None:
        """
        Up to C{threshold} running, the daemon starts the child; above, the
        spawner process (made then, once, for the daemon's reactor); below
        again, the daemon.
        """
        for pid in range(3):
            self.busy.spawn(ProcessProtocol(), PLAN)
            self.handlers[100 + pid] = object()
        self.assertEqual(self.made, [])
        self.busy.spawn(ProcessProtocol(), PLAN)
        self.busy.spawn(ProcessProtocol(), PLAN)
        self.handlers.clear()
        self.busy.spawn(ProcessProtocol(), PLAN)
        self.assertEqual(self.used, ["daemon"] * 3 + ["daemon"])
        [remote] = self.made
        self.assertIs(remote.reactor, self.reactor)
        self.assertEqual(remote.calls, ["spawn", "spawn"])

    def test_spawnerUnavailable(self) -> None:
        """
        When the spawner process cannot be started, the daemon starts the
        program itself, logs why once, and starts the next ones itself
        too, for L{spawn.SPAWNER_RETRY} seconds; then it tries the spawner
        process again.  A program that fails in the spawner process is
        not retried (only L{SpawnerUnavailable} is).
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.handlers.update({10: object(), 11: object(), 12: object()})
        remote = self.busy.processSpawner
        assert isinstance(remote, FakeRemote)
        remote.failure = SpawnerUnavailable("cannot start the spawner process")
        self.busy.spawn(ProcessProtocol(), PLAN)
        self.busy.spawn(ProcessProtocol(), PLAN)
        self.assertEqual(remote.calls, ["spawn"])
        self.assertEqual(self.used, ["daemon", "daemon"])
        [logged] = [e for e in events if "error" in e]
        self.assertIs(logged["error"], remote.failure)
        self.assertEqual(logged["log_level"], LogLevel.error)
        self.reactor.advance(spawn.SPAWNER_RETRY - 1)
        self.busy.spawn(ProcessProtocol(), PLAN)
        self.assertEqual(remote.calls, ["spawn"])
        self.reactor.advance(1)
        remote.failure = None
        self.busy.spawn(ProcessProtocol(), PLAN)
        self.assertEqual(remote.calls, ["spawn", "spawn"])
        self.assertEqual(self.used, ["daemon"] * 3)
        remote.failure = SpawnError("cannot execute /bin/sh: Exec format error")
        self.assertRaises(SpawnError, self.busy.spawn, ProcessProtocol(), PLAN)
        self.assertEqual(self.used, ["daemon"] * 3)

    def test_noSpawnerProcessUntilNeeded(self) -> None:
        """
        While no start went to the spawner process, none is made: counting,
        closing and the count killed at close ask nothing of it.
        """
        self.handlers.update({10: object()})
        self.assertEqual(self.busy.running(), 1)
        self.assertEqual(self.busy.killedAtClose, 0)
        self.assertIsNone(self.successResultOf(self.busy.close()))
        self.assertEqual(self.made, [])

    def test_closes(self) -> None:
        """
        Closing it closes its spawner process; what was killed then is its
        spawner process's count.
        """
        remote = self.busy.processSpawner
        assert isinstance(remote, FakeRemote)
        self.assertIsNone(self.successResultOf(self.busy.close()))
        self.assertEqual(remote.calls, ["close"])
        remote.killedAtClose = 2
        self.assertEqual(self.busy.killedAtClose, 2)

    def test_start(self) -> None:
        """
        C{start} starts its spawner process now.
        """
        self.busy.start()
        self.assertEqual(self.made[0].calls, ["start"])
