"""
Starting a child process from a L{LaunchPlan}.

Twisted's C{spawnProcess} lists every open descriptor of the daemon and
C{fcntl}s each one before C{posix_spawnp} (and its fork path closes them one
by one), so a spawn costs about a microsecond per open descriptor: with a few
thousand connections open that caps the spawn rate.  L{PosixSpawner} starts
children with Python's C{fork_exec} (the C code behind L{subprocess.Popen},
which never reaps: Twisted does) and keeps Twisted's
L{twisted.internet.process.Process} for the pipes, flow control and
reaping.  C{fork_exec} places the child's descriptors 0-2 and closes the
rest with one C{close_range} call; with no user, group or groups to change
it uses C{vfork}, so the spawn does not copy the daemon's memory either.

Every child is set up as xinetd sets up its children:

  - its working directory is C{/} (xinetd changes to C{/} at start);
  - it leads a new session (C{setsid}): signals the daemon's terminal sends
    to its process group (^C, ^Z, hang-up) do not reach the children, and
    the bridge can signal a child's whole process group (L{IProcessGroup});
  - no signal is ignored in it: Python's ignored C{SIGPIPE} and C{SIGXFSZ}
    are restored, handled signals revert at exec.  (glibc's C{posix_spawn}
    before 2.38 sets the two signals it reserves, 32 and 33, to C{SIG_IGN}
    in the child, which stays so across exec: it is not used for that
    reason.  Signals the daemon I{inherited} as ignored are the embedder's
    business; C{twistd twinetd} turns them into handlers that do nothing,
    L{twinetd.control.prepareProcess}.)
  - C{user}, C{group}, supplementary groups and C{umask} are set by
    C{fork_exec} itself; a child whose ids and groups are the daemon's
    (C{user = root} under a root daemon) changes nothing and keeps the
    C{vfork} path;
  - descriptors 0-2 that C{childFDs} leaves out are C{/dev/null} (never
    closed: a program's next C{open} would land on its stdout).

C{nice} and C{rlimit_*} must be applied in the child, before the user
changes (a lower nice value or a higher limit needs privileges), as xinetd
does.  Running Python code between fork and exec (C{preexec_fn}) is unsafe
once the daemon has threads (the resolver's pool), so for those services
the child first executes a small Python program (L{_SHIM}: this
interpreter with C{-I -S}) that sets the limits, the priority, the groups,
the group and the user, and then executes the server in the same process
(same pid).  That costs one interpreter start-up per child (about 10 ms
here), only for services that set C{nice} or C{rlimit_*}.

The C{fork_exec} call itself is in L{twinetd.forkexec} (standard library
only), which the spawner process (L{twinetd.spawnclient}) uses too.
"""

from __future__ import annotations

import errno
import os
import pwd
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import (
    IProcessProtocol,
    IProcessTransport,
    IReactorProcess,
    IReactorTime,
)
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from twinetd import forkexec
from twinetd._twistedcompat import StartedProcess, reaping, setReaper
from twinetd.errors import SpawnError, SpawnerUnavailable
from twinetd.launch import LaunchPlan

ChildFDs = Mapping[int, "int | str"]

log = Logger()

#: Seconds a L{BusySpawner} starts programs itself after its spawner
#: process could not be started.
SPAWNER_RETRY = 30.0

_RLIMITS: dict[str, int] = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "data": resource.RLIMIT_DATA,
    "rss": resource.RLIMIT_RSS,
    "stack": resource.RLIMIT_STACK,
    "files": resource.RLIMIT_NOFILE,
}


class Spawner(Protocol):
    """
    Something that starts a child for a L{LaunchPlan}.
    """

    def spawn(
        self,
        protocol: IProcessProtocol,
        plan: LaunchPlan,
        childFDs: ChildFDs | None = None,
    ) -> IProcessTransport:
        """
        Start the child described by C{plan}, connected to C{protocol}.

        @param childFDs: as for C{spawnProcess}: child descriptor to C{"r"}
            (the daemon reads), C{"w"} (the daemon writes) or a daemon
            descriptor to give the child.  The default is C{{0: "w", 1: "r",
            2: "r"}}.
        @raise SpawnError: the program could not be started; nothing is left
            open or running.
        """


@runtime_checkable
class ClosingSpawner(Spawner, Protocol):
    """
    A L{Spawner} with something to end when the daemon stops (the spawner
    process of L{twinetd.spawnclient.ProcessSpawner}).
    """

    def close(self) -> Deferred[None]:
        """
        End what the spawner runs; fires when it has ended.
        """


class IProcessGroup(Interface):
    """
    A child that leads its own session and process group.
    """

    processGroup = Attribute("The process group id (the child's pid).")

    def signalProcessGroup(signalID: str | int) -> None:
        """
        Send a signal to every process of the child's group; as
        C{signalProcess}, C{"TERM"}, C{"KILL"}, ... or a number.

        @raise ProcessExitedAlready: nobody is left in the group.
        """


def _signalNumber(signalID: str | int) -> int:
    if isinstance(signalID, str):
        return int(getattr(signal, "SIG" + signalID))
    return signalID


def supplementaryGroups(plan: LaunchPlan) -> list[int] | None:
    """
    The supplementary groups C{plan}'s child must have, or C{None} to keep
    the daemon's: for C{groups = yes} those of the user as
    C{initgroups(name, primary gid)} gives them (the user's primary group,
    not a configured C{group}, as in xinetd), else none at all.
    """
    groups = plan.supplementaryGroups
    if groups is None:
        return None
    if groups == "user":
        assert plan.userName is not None
        try:
            entry = pwd.getpwnam(plan.userName)
        except KeyError:
            entry = pwd.getpwuid(int(plan.userName))
        return os.getgrouplist(entry.pw_name, entry.pw_gid)
    assert not isinstance(groups, str)
    return list(groups)


def _changes(plan: LaunchPlan) -> tuple[list[int] | None, bool]:
    """
    The supplementary groups to set (C{None}: keep the daemon's), and
    whether any id changes at all.
    """
    groups = supplementaryGroups(plan)
    if (
        groups is not None
        and plan.uid is None
        and plan.gid is None
        and set(groups) == set(os.getgroups())
    ):
        # Already the daemon's (a root daemon with no supplementary groups
        # running a user = root service): nothing to switch.
        groups = None
    return groups, groups is not None or plan.uid is not None or plan.gid is not None


#: The program a child with C{nice} or C{rlimit_*} runs first (see the
#: module's docstring).  argv: settings, the server's path, its argv.
#: Settings are words C{r=RESOURCE:LIMIT} (-1: unlimited), C{n=INCREMENT},
#: C{G=GID,GID,...}, C{g=GID}, C{u=UID}, and C{c=VALUE} or C{c-} for the
#: C{LC_CTYPE} the server must get (Python's start-up may add one).
_SHIM = """\
import os, resource, signal, sys
groups = gid = uid = None
env = os.environb
for word in sys.argv[1].split():
    key, value = word[0], word[2:]
    if key == "r":
        which, limit = (int(n) for n in value.split(":"))
        limit = resource.RLIM_INFINITY if limit < 0 else limit
        resource.setrlimit(which, (limit, limit))
    elif key == "n":
        os.nice(int(value))
    elif key == "G":
        groups = [int(g) for g in value.split(",") if g]
    elif key == "g":
        gid = int(value)
    elif key == "u":
        uid = int(value)
    elif word == "c-":
        env.pop(b"LC_CTYPE", None)
    elif key == "c":
        env[b"LC_CTYPE"] = os.fsencode(value)
if groups is not None:
    os.setgroups(groups)
if gid is not None:
    os.setresgid(gid, gid, gid)
if uid is not None:
    os.setresuid(uid, uid, uid)
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
try:
    os.execve(sys.argv[2], sys.argv[3:], env)
except OSError as e:
    os.write(2, f"{sys.argv[2]}: {e.strerror}\\n".encode())
    os._exit(127)
"""


def shimArgv(plan: LaunchPlan, groups: list[int] | None) -> list[str]:
    """
    The argument vector that runs C{plan}'s server through L{_SHIM}, which
    applies its limits, priority and credentials first.
    """
    words = []
    for name, value in plan.rlimits:
        words.append(f"r={_RLIMITS[name]}:{-1 if value is None else value}")
    if plan.nice is not None:
        words.append(f"n={plan.nice}")
    if groups is not None:
        words.append("G=" + ",".join(str(g) for g in groups))
    if plan.gid is not None:
        words.append(f"g={plan.gid}")
    if plan.uid is not None:
        words.append(f"u={plan.uid}")
    lcCtype = plan.environment.get("LC_CTYPE")
    words.append("c-" if lcCtype is None else "c=" + lcCtype)
    return [
        sys.executable,
        "-I",
        "-S",
        "-c",
        _SHIM,
        " ".join(words),
        plan.executable,
        *plan.argv,
    ]


@attrs.frozen
class ChildStart:
    """
    What L{twinetd.forkexec.startChild} is given for a plan (all but the
    descriptors).

    @ivar switches: whether the child changes ids or groups (no C{vfork}
        then).
    """

    argv: list[str]
    executable: str
    environment: Sequence[bytes]
    umask: int
    credentials: dict[str, Any]
    switches: bool


def childStart(plan: LaunchPlan) -> ChildStart:
    """
    How C{plan}'s child is started: through L{_SHIM} when it sets C{nice}
    or C{rlimit_*}, else directly with its credentials.

    @raise OSError: the start-up program would find out only after the
        spawn that the server cannot be executed.
    """
    groups, switches = _changes(plan)
    argv, executable = list(plan.argv), plan.executable
    credentials: dict[str, Any] = {
        "user": plan.uid,
        "group": plan.gid,
        "extra_groups": groups,
    }
    if plan.nice is not None or plan.rlimits:
        checkExecutable(executable)
        argv, executable = shimArgv(plan, groups), sys.executable
        credentials = {}
    umask = -1 if plan.umask is None else plan.umask
    environment = environmentBlock(plan)
    return ChildStart(argv, executable, environment, umask, credentials, switches)


#: Encoded L{LaunchPlan.sharedEnv}s: id to (the tuple, its encoding).
_sharedBlocks: dict[int, tuple[tuple[tuple[str, str], ...], list[bytes]]] = {}

#: How many L{_sharedBlocks} are kept (one per service that starts
#: programs); beyond it they are forgotten and encoded again.
SHARED_BLOCKS = 512


def environmentBlock(plan: LaunchPlan) -> list[bytes]:
    """
    C{plan}'s variables as L{forkexec.startChild} takes them; the part
    every child of its service shares (L{LaunchPlan.sharedEnv}) is encoded
    once.
    """
    shared = plan.sharedEnv
    if not shared:
        return forkexec.environmentBlock(plan.env)
    known = _sharedBlocks.get(id(shared))
    if known is None or known[0] is not shared:
        if len(_sharedBlocks) >= SHARED_BLOCKS:
            _sharedBlocks.clear()
        known = _sharedBlocks[id(shared)] = (shared, forkexec.environmentBlock(shared))
    return known[1] + forkexec.environmentBlock(plan.env[len(shared) :])


def checkExecutable(executable: str) -> None:
    """
    Raise the C{OSError} an C{execve} of C{executable} would give for a
    missing or non-executable file (checked with the daemon's ids).
    """
    if not os.access(executable, os.X_OK):
        code = errno.EACCES if os.path.exists(executable) else errno.ENOENT
        raise OSError(code, os.strerror(code), executable)


def childStdio(fdmap: Mapping[int, int]) -> tuple[int | None, int | None, int | None]:
    """
    The child's descriptors 0-2 (C{None}: C{/dev/null}).

    @raise ValueError: C{fdmap} places other descriptors.
    """
    extra = sorted(set(fdmap) - {0, 1, 2})
    if extra:
        raise ValueError(f"child descriptors {extra}: only 0, 1 and 2 are placed")
    return (fdmap.get(0), fdmap.get(1), fdmap.get(2))


def _spawn(plan: LaunchPlan, fdmap: Mapping[int, int]) -> tuple[int, bool]:
    """
    Start C{plan}'s child with Python's C{fork_exec}; return its pid and
    whether it changed ids or groups (no C{vfork} then).
    """
    stdio = childStdio(fdmap)
    start = childStart(plan)
    pid = forkexec.startChild(
        start.argv,
        start.executable,
        start.environment,
        stdio,
        start.umask,
        start.credentials,
    )
    return pid, start.switches


@implementer(IProcessGroup)
class SpawnedProcess(StartedProcess):
    """
    Twisted's process transport, started by L{_spawn} instead of
    C{spawnProcess}'s scan of every open descriptor.

    @ivar processGroup: the child's process group (and session) id.
    @ivar usedFastPath: whether it started with C{vfork} and directly: no
        ids or groups changed, no C{nice} or C{rlimit_*}.
    """

    processGroup: int | None = None
    usedFastPath = False

    def __init__(
        self,
        reactor: IReactorProcess,
        protocol: IProcessProtocol,
        plan: LaunchPlan,
        childFDs: ChildFDs | None,
    ) -> None:
        self._plan = plan
        super().__init__(  # type: ignore[no-untyped-call]
            reactor,
            plan.executable,
            list(plan.argv),
            # Twisted passes it only to its fork, replaced by startChild.
            {},
            None,
            protocol,
            childFDs=None if childFDs is None else dict(childFDs),
        )

    def startChild(self, fdmap: dict[int, int]) -> None:
        plan = self._plan
        pid, switches = _spawn(plan, fdmap)
        self.usedFastPath = not switches and plan.nice is None and not plan.rlimits
        self.pid = pid
        self.processGroup = pid
        self.status = -1

    def signalProcessGroup(self, signalID: str | int) -> None:
        if self.processGroup is None:
            raise ProcessExitedAlready()
        try:
            os.killpg(self.processGroup, _signalNumber(signalID))
        except ProcessLookupError:
            raise ProcessExitedAlready() from None


class _Spawning:
    """
    What both spawners share: a failed start is a L{SpawnError} with the
    reason a log line gives.

    @ivar reactor: the reactor (the bridge relays its children's pipes on
        it).
    """

    #: The errors of a failed start.
    _failures: tuple[type[Exception], ...] = (OSError,)

    def __init__(self, reactor: IReactorProcess) -> None:
        self._reactor = self.reactor = reactor

    def spawn(
        self,
        protocol: IProcessProtocol,
        plan: LaunchPlan,
        childFDs: ChildFDs | None = None,
    ) -> IProcessTransport:
        try:
            return self._start(protocol, plan, childFDs)
        except self._failures as e:
            raise SpawnError(_describe(plan, e)) from e

    def _start(
        self, protocol: IProcessProtocol, plan: LaunchPlan, childFDs: ChildFDs | None
    ) -> IProcessTransport:
        raise NotImplementedError()


class PosixSpawner(_Spawning):
    """
    The L{Spawner} for a real POSIX reactor: L{SpawnedProcess}.
    """

    _failures = (OSError, subprocess.SubprocessError)

    def _start(
        self, protocol: IProcessProtocol, plan: LaunchPlan, childFDs: ChildFDs | None
    ) -> IProcessTransport:
        return SpawnedProcess(self._reactor, protocol, plan, childFDs)


@runtime_checkable
class RemoteSpawner(ClosingSpawner, Protocol):
    """
    What L{BusySpawner} asks of the spawner process's spawner
    (L{twinetd.spawnclient.ProcessSpawner}).
    """

    #: The spawner process's pid, once started.
    pid: int | None
    #: How many children were still running at the last C{close} (killed).
    killedAtClose: int

    @property
    def running(self) -> Mapping[int, object]:
        """
        The children it started that have not ended.
        """

    def start(self) -> None:
        """
        Start the spawner process now if it is not running.
        """


class BusySpawner(PosixSpawner):
    """
    A L{Spawner} that starts a child from the daemon itself
    (L{PosixSpawner}) while at most C{threshold} children are running, and
    from a spawner process (a L{RemoteSpawner}) while more are: one at a
    time, the daemon's own start is the quicker (no message to another
    process and back); under load, the spawner process takes the wait in
    C{vfork} and the copy of the daemon's descriptor table off the daemon.
    Both kinds of children run side by side, each reaped by its parent.
    The spawner process's spawner is made when the first start needs it.
    If the spawner process cannot be started (L{SpawnerUnavailable}: a
    C{chroot} without the Python, an interpreter removed by an upgrade),
    the daemon starts the programs itself and tries it again after
    L{SPAWNER_RETRY} seconds.

    @ivar threshold: the most running children before starts move to the
        spawner process (0: every start while any child runs).
    """

    def __init__(
        self,
        reactor: IReactorProcess,
        threshold: int,
        remote: Callable[[IReactorProcess], RemoteSpawner],
    ) -> None:
        """
        @param remote: makes the spawner process's spawner
            (L{twinetd.spawnclient.ProcessSpawner}), once.
        """
        super().__init__(reactor)
        self.threshold = threshold
        self._makeRemote = remote
        self._remote: RemoteSpawner | None = None
        self._clock = IReactorTime(reactor)
        #: When the spawner process may be tried again after it could not
        #: be started.
        self._retry = float("-inf")

    @property
    def processSpawner(self) -> RemoteSpawner:
        """
        The spawner process's spawner (made at first use; its process is
        started by the first start it makes, or by L{start}).
        """
        if self._remote is None:
            self._remote = self._makeRemote(self._reactor)
        return self._remote

    @property
    def remote(self) -> RemoteSpawner | None:
        """
        The spawner process's spawner, if made (L{processSpawner} makes it).
        """
        return self._remote

    def running(self) -> int:
        """
        How many children run now: the daemon's own (those Twisted's
        reaper knows, but the spawner process) and the spawner process's.
        """
        handlers = reaping()[1]
        remote = self._remote
        if remote is None:
            return len(handlers)
        return len(handlers) - (remote.pid in handlers) + len(remote.running)

    def spawn(
        self,
        protocol: IProcessProtocol,
        plan: LaunchPlan,
        childFDs: ChildFDs | None = None,
    ) -> IProcessTransport:
        if self.running() > self.threshold and self._clock.seconds() >= self._retry:
            try:
                return self.processSpawner.spawn(protocol, plan, childFDs)
            except SpawnerUnavailable as e:
                # No program was tried: the daemon starts this one, and the
                # next ones for a while, itself.
                self._retry = self._clock.seconds() + SPAWNER_RETRY
                log.error(
                    "{error}; the daemon starts the programs itself for "
                    "{seconds:.0f} seconds",
                    error=e,
                    seconds=SPAWNER_RETRY,
                )
        return super().spawn(protocol, plan, childFDs)

    @property
    def killedAtClose(self) -> int:
        """
        As L{RemoteSpawner.killedAtClose} (0 without a spawner process).
        """
        remote = self._remote
        return 0 if remote is None else remote.killedAtClose

    def start(self) -> None:
        """
        Start the spawner process now if it is not running (else the first
        start it makes does).
        """
        self.processSpawner.start()

    def close(self) -> Deferred[None]:
        """
        End the spawner process, if there is one (L{RemoteSpawner.close}).
        """
        remote = self._remote
        return succeed(None) if remote is None else remote.close()


class ReactorSpawner(_Spawning):
    """
    A L{Spawner} calling C{reactor.spawnProcess}: for fake reactors, and for
    reactors that are not Twisted's POSIX ones.  It cannot apply C{umask},
    C{nice}, C{rlimits} or supplementary groups.
    """

    def _start(
        self, protocol: IProcessProtocol, plan: LaunchPlan, childFDs: ChildFDs | None
    ) -> IProcessTransport:
        return self._reactor.spawnProcess(
            protocol,
            plan.executable,
            plan.argv,
            env=plan.environment,
            uid=plan.uid,
            gid=plan.gid,
            childFDs=None if childFDs is None else dict(childFDs),
        )


def _describe(plan: LaunchPlan, e: BaseException) -> str:
    return f"cannot execute {plan.executable}: {startFailure(e)}"


def startFailure(e: BaseException) -> str:
    """
    Why a start failed, as a log line says it: the system's text for an
    C{OSError}'s number (without the file name), else the error's text.
    """
    if isinstance(e, OSError) and e.errno is not None:
        return os.strerror(e.errno)
    return str(e)


def spawnerFor(reactor: IReactorProcess) -> Spawner:
    """
    The best L{Spawner} for C{reactor}: L{PosixSpawner} for Twisted's POSIX
    reactors, L{ReactorSpawner} for anything else (fakes included).
    """
    from twisted.internet.posixbase import PosixReactorBase

    if isinstance(reactor, PosixReactorBase) and hasattr(os, "posix_spawn"):
        return PosixSpawner(reactor)
    return ReactorSpawner(reactor)


def installExitedReaper() -> Callable[[], None]:
    """
    Make Twisted reap only the children that exited.

    On every C{SIGCHLD}, Twisted calls C{waitpid(pid, WNOHANG)} for every
    child it knows (C{process.reapAllProcesses}): with hundreds of live
    children (a busy daemon's held connections) that scan costs more than
    the spawns themselves.  This asks the kernel which children exited
    (C{waitid(P_ALL, ..., WNOWAIT)}) and reaps just those, through Twisted's
    own handlers; a child Twisted does not know (one started by other code,
    which reaps it itself) falls back to Twisted's scan.  Global: the twistd
    plugin installs it (L{twinetd.control.DaemonControl}, while it runs); an
    embedding application may.

    @return: puts back the reaper this replaced, unless another has
        replaced this one since; does nothing when this reaper was there
        already (its installer puts it back).
    """
    original, handlers = reaping()
    if getattr(original, "twinetdExitedReaper", False):
        return _nothing

    def reapExited() -> None:
        for _ in range(len(handlers) + 1):
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            handler = handlers.get(info.si_pid)
            if handler is None:
                original()
                return
            handler.reapProcess()
            if info.si_pid in handlers:
                original()
                return

    reapExited.twinetdExitedReaper = True  # type: ignore[attr-defined]
    setReaper(reapExited)

    def uninstall() -> None:
        if reaping()[0] is reapExited:
            setReaper(original)

    return uninstall


def _nothing() -> None:
    pass
