"""
Starting a child process from a L{LaunchPlan}.

Twisted's C{spawnProcess} lists every open descriptor of the daemon and
C{fcntl}s each one before C{posix_spawnp} (and its fork path closes them one
by one), so a spawn costs about a microsecond per open descriptor: with a few
thousand connections open that caps the spawn rate.  Python makes every
descriptor it creates close-on-exec (PEP 446), so a spawn that only places
the child's own descriptors is enough and costs the same however many
connections are open.  L{PosixSpawner} does that, while keeping Twisted's
L{twisted.internet.process.Process} for the pipes, flow control and reaping.

Two ways to start a child, chosen per plan:

  - the fast path, C{os.posix_spawn} with a constant number of file actions,
    for plans that change nothing but the program, arguments and
    environment;
  - the credentials path, Python's C{fork_exec} (through
    L{subprocess.Popen}, which never reaps: Twisted does) for plans with
    C{uid}, C{gid}, supplementary groups or C{umask}; with C{nice} or
    C{rlimits}, the limits and the priority are set in the child before it
    drops privileges, in the order xinetd uses.

Every child starts a new session (C{setsid}): signals the daemon's terminal
sends to its process group (^C, ^Z, hang-up) do not reach the children, and
the bridge can signal a child's whole process group (L{IProcessGroup}).
Child descriptors 0-2 that C{childFDs} leaves out are C{/dev/null} in the
child (never closed: a program's next C{open} would land on its stdout).

The fast path relies on every daemon descriptor above 2 being close-on-exec.
Python opens them so (PEP 446), but a daemon may inherit inheritable ones
from whatever started it: the first fast spawn marks every descriptor above
2 that is open at that moment close-on-exec, once (one pass over the open
descriptors per daemon, not per spawn).  A descriptor made inheritable on
purpose after that is inherited by fast-path children.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from twisted.internet import process as _process
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import (
    IProcessProtocol,
    IProcessTransport,
    IReactorProcess,
)
from zope.interface import Attribute, Interface, implementer

from twinetd.errors import SpawnError
from twinetd.launch import LaunchPlan

ChildFDs = Mapping[int, "int | str"]

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


def _needsFullPath(plan: LaunchPlan) -> bool:
    return (
        plan.needsCredentials
        or plan.umask is not None
        or plan.nice is not None
        or bool(plan.rlimits)
    )


def fastFileActions(fdmap: Mapping[int, int]) -> list[tuple[Any, ...]]:
    """
    C{posix_spawn} file actions giving the child C{fdmap} (child descriptor
    to daemon descriptor) and C{/dev/null} on unmapped descriptors 0-2.

    The number of actions depends only on C{fdmap}, never on how many
    descriptors the daemon has open: the daemon's other descriptors are all
    close-on-exec.
    """
    targets = set(fdmap)
    sources = set(fdmap.values())
    used = targets | sources
    actions: list[tuple[Any, ...]] = []
    moved: dict[int, int] = {}
    spare = 3
    # A source that is also a target would be overwritten before it is
    # copied (or, mapped onto itself, keep its close-on-exec flag: dup2 of a
    # descriptor onto itself changes nothing): copy those aside first.  The
    # spare numbers may be close-on-exec daemon descriptors, which the child
    # may overwrite freely.
    for source in sorted(sources & targets):
        while spare in used:
            spare += 1
        moved[source] = spare
        used.add(spare)
        actions.append((os.POSIX_SPAWN_DUP2, source, spare))
    for target, source in sorted(fdmap.items()):
        actions.append((os.POSIX_SPAWN_DUP2, moved.get(source, source), target))
    for spareFD in moved.values():
        actions.append((os.POSIX_SPAWN_CLOSE, spareFD))
    for fd in range(3):
        if fd not in targets:
            actions.append((os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0))
    return actions


_inheritedSwept = False


def _sweepInheritable() -> None:
    """
    Make every open descriptor above 2 close-on-exec, the first time only.
    """
    global _inheritedSwept
    if _inheritedSwept:
        return
    _inheritedSwept = True
    for name in os.listdir(
        "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    ):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
            except OSError:
                pass  # the directory's own descriptor, now closed


# Every signal to its default disposition in the child (Python ignores
# SIGPIPE and SIGXFSZ, and the daemon may have inherited other ignored
# signals), as Twisted's own spawn does; computed once, not per spawn.
_DEFAULT_SIGNALS = sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})


def _supplementaryGroups(plan: LaunchPlan) -> list[int] | None:
    groups = plan.supplementaryGroups
    if groups is None:
        return None
    if groups == "user":
        gid = plan.gid if plan.gid is not None else os.getegid()
        if plan.userName is None:
            return [gid]
        return os.getgrouplist(plan.userName, gid)
    assert not isinstance(groups, str)
    if groups:
        return list(groups)
    # "No supplementary groups": the primary group alone is equivalent (the
    # process holds it anyway) and, unlike an empty list, every Python
    # version passes it to setgroups().
    return [plan.gid if plan.gid is not None else os.getegid()]


def _childSetup(plan: LaunchPlan, groups: list[int] | None) -> Callable[[], None]:
    """
    The code run in the child between fork and exec for plans with C{nice}
    or C{rlimits}: like xinetd, limits and priority first, while still
    privileged, then supplementary groups, group and user.
    """
    limits = [
        (_RLIMITS[name], resource.RLIM_INFINITY if value is None else value)
        for name, value in plan.rlimits
    ]
    nice = plan.nice
    uid, gid = plan.uid, plan.gid

    def setup() -> None:
        for which, value in limits:
            resource.setrlimit(which, (value, value))
        if nice is not None:
            os.nice(nice)
        if groups is not None:
            os.setgroups(groups)
        if gid is not None:
            os.setregid(gid, gid)
        if uid is not None:
            os.setreuid(uid, uid)

    return setup


def _spawnFull(plan: LaunchPlan, fdmap: Mapping[int, int]) -> int:
    """
    Start a child that changes credentials, umask, priority or limits with
    Python's C{fork_exec}; return its pid.
    """
    extra = sorted(set(fdmap) - {0, 1, 2})
    if extra:
        raise ValueError(
            f"child descriptors {extra} need a plan without user, group, "
            "umask, nice or rlimits"
        )
    groups = _supplementaryGroups(plan)
    credentials: dict[str, Any] = {}
    preexec: Callable[[], None] | None = None
    if plan.nice is not None or plan.rlimits:
        preexec = _childSetup(plan, groups)
    else:
        credentials = {"user": plan.uid, "group": plan.gid, "extra_groups": groups}
    popen = subprocess.Popen(
        list(plan.argv),
        executable=plan.executable,
        env=plan.environment,
        stdin=fdmap.get(0, subprocess.DEVNULL),
        stdout=fdmap.get(1, subprocess.DEVNULL),
        stderr=fdmap.get(2, subprocess.DEVNULL),
        close_fds=True,
        restore_signals=True,
        start_new_session=True,
        umask=-1 if plan.umask is None else plan.umask,
        preexec_fn=preexec,
        **credentials,
    )
    # Twisted reaps the child: a returncode keeps Popen.__del__ from adding
    # it to subprocess._active, whose cleanup would reap it behind Twisted's
    # back.
    popen.returncode = 0
    return popen.pid


@implementer(IProcessGroup)
class SpawnedProcess(_process.Process):
    """
    Twisted's process transport, started by L{fastFileActions} or
    L{_spawnFull} instead of C{spawnProcess}'s scan of every open descriptor.

    @ivar processGroup: the child's process group (and session) id.
    @ivar usedFastPath: whether C{posix_spawn} started it.
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
            plan.environment,
            None,
            protocol,
            childFDs=None if childFDs is None else dict(childFDs),
        )

    def _fork(  # type: ignore[override]
        self,
        path: object,
        uid: object,
        gid: object,
        executable: str,
        args: list[str],
        environment: dict[str, str],
        *,
        fdmap: dict[int, int],
    ) -> None:
        plan = self._plan
        if _needsFullPath(plan):
            pid = _spawnFull(plan, fdmap)
        else:
            _sweepInheritable()
            spawn = os.posix_spawn if "/" in executable else os.posix_spawnp
            pid = spawn(
                executable,
                args,
                environment,
                file_actions=fastFileActions(fdmap),
                setsigdef=_DEFAULT_SIGNALS,
                setsigmask=(),
                setsid=True,
            )
            self.usedFastPath = True
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


class PosixSpawner:
    """
    The L{Spawner} for a real POSIX reactor: L{SpawnedProcess}.
    """

    def __init__(self, reactor: IReactorProcess) -> None:
        self._reactor = reactor

    def spawn(
        self,
        protocol: IProcessProtocol,
        plan: LaunchPlan,
        childFDs: ChildFDs | None = None,
    ) -> IProcessTransport:
        try:
            return SpawnedProcess(self._reactor, protocol, plan, childFDs)
        except (OSError, subprocess.SubprocessError) as e:
            raise SpawnError(_describe(plan, e)) from e


class ReactorSpawner:
    """
    A L{Spawner} calling C{reactor.spawnProcess}: for fake reactors, and for
    reactors that are not Twisted's POSIX ones.  It cannot apply C{umask},
    C{nice}, C{rlimits} or supplementary groups.
    """

    def __init__(self, reactor: IReactorProcess) -> None:
        self._reactor = reactor

    def spawn(
        self,
        protocol: IProcessProtocol,
        plan: LaunchPlan,
        childFDs: ChildFDs | None = None,
    ) -> IProcessTransport:
        try:
            return self._reactor.spawnProcess(
                protocol,
                plan.executable,
                plan.argv,
                env=plan.environment,
                uid=plan.uid,
                gid=plan.gid,
                childFDs=None if childFDs is None else dict(childFDs),
            )
        except OSError as e:
            raise SpawnError(_describe(plan, e)) from e


def _describe(plan: LaunchPlan, e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno is not None:
        return f"cannot execute {plan.executable}: {os.strerror(e.errno)}"
    return f"cannot execute {plan.executable}: {e}"


def spawnerFor(reactor: IReactorProcess) -> Spawner:
    """
    The best L{Spawner} for C{reactor}: L{PosixSpawner} for Twisted's POSIX
    reactors, L{ReactorSpawner} for anything else (fakes included).
    """
    from twisted.internet.posixbase import PosixReactorBase

    if isinstance(reactor, PosixReactorBase) and hasattr(os, "posix_spawn"):
        return PosixSpawner(reactor)
    return ReactorSpawner(reactor)


def installExitedReaper() -> None:
    """
    Make Twisted reap only the children that exited.

    On every C{SIGCHLD}, Twisted calls C{waitpid(pid, WNOHANG)} for every
    child it knows (C{process.reapAllProcesses}): with hundreds of live
    children (a busy daemon's held connections) that scan costs more than
    the spawns themselves.  This asks the kernel which children exited
    (C{waitid(P_ALL, ..., WNOWAIT)}) and reaps just those, through Twisted's
    own handlers; a child Twisted does not know (one started by other code,
    which reaps it itself) falls back to Twisted's scan.  Global: the twistd
    plugin installs it; an embedding application may.
    """
    original = _process.reapAllProcesses
    if getattr(original, "twinetdExitedReaper", False):
        return

    def reapExited() -> None:
        handlers = _process.reapProcessHandlers
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
            handler.reapProcess()  # type: ignore[no-untyped-call]
            if info.si_pid in handlers:
                original()
                return

    reapExited.twinetdExitedReaper = True  # type: ignore[attr-defined]
    _process.reapAllProcesses = reapExited
