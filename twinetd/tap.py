"""
twistd glue: C{twistd -n twinetd -c PATH}.

This is the only module that imports the global reactor, inside
L{makeService}.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
from collections.abc import Callable
from typing import Any, TextIO, cast

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from twinetd.config import LoadResult, Lookups, loadPath

DEFAULT_CONFIG = "/etc/xinetd.conf"

log = Logger(namespace="twinetd")


def summary(result: LoadResult) -> str:
    """
    One line: how many services load, how many are skipped, how many
    warnings.
    """
    services = len(result.services)
    errors = len(result.errors)
    warnings = len(result.warnings)
    return (
        f"{services} service{'s' if services != 1 else ''} loaded, "
        f"{result.skipped} skipped, {result.disabled} disabled, "
        f"{errors} error{'s' if errors != 1 else ''}, "
        f"{warnings} warning{'s' if warnings != 1 else ''}"
    )


def check(path: str, lookups: Lookups, out: TextIO) -> int:
    """
    C{--check}: print every problem and a summary; return the exit code
    (0 without errors, 1 with).
    """
    result = loadPath(path, lookups)
    for problem in result.problems:
        out.write(f"{problem}\n")
    out.write(summary(result) + "\n")
    return 1 if result.errors else 0


class Options(usage.Options):
    """
    Command-line options of C{twistd twinetd}.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve the services of an xinetd configuration: PATH is an xinetd.conf "
        "style file (with defaults and includedir) or a folder of service files "
        "like /etc/xinetd.d."
    )

    optFlags = [
        [
            "stayalive",
            None,
            "Keep running when no service can be served (xinetd's -stayalive); "
            "without it the daemon exits with status 1, as xinetd does.",
        ],
        [
            "handoff",
            None,
            "Drop-in mode: give every stream service's program the socket "
            "itself, with standard error on the socket too, as xinetd does "
            "(a service's twinetd_mode / twinetd_stderr still wins).",
        ],
        [
            "check",
            None,
            "Load and validate the configuration, print every "
            "problem and a summary, and exit: 0 without errors, 1 with.",
        ],
    ]
    optParameters = [
        [
            "config",
            "c",
            DEFAULT_CONFIG,
            "Configuration file or folder (xinetd's -f).",
            str,
        ],
        [
            "limit",
            None,
            None,
            "The most children running at once over all services (xinetd's "
            "-limit); unlimited by default.",
            int,
        ],
        [
            "kill-delay",
            None,
            5.0,
            "Seconds a child may outlive its client before it gets SIGTERM, "
            "and again before SIGKILL.",
            float,
        ],
    ]

    def postOptions(self) -> None:
        if self["limit"] is not None and self["limit"] < 1:
            raise usage.UsageError("--limit must be at least 1")
        if self["kill-delay"] < 0:
            raise usage.UsageError("--kill-delay must not be negative")
        if self["check"]:
            raise SystemExit(check(self["config"], Lookups.system(), sys.stdout))


def makeService(options: Options) -> IService:
    """
    Build the daemon's service tree from the options.
    """
    from twisted.internet import reactor

    from twinetd.service import DaemonSettings, fromPath, logProblems
    from twinetd.spawn import installExitedReaper

    installExitedReaper()
    prepareProcess()

    # As xinetd: children inherit the daemon's umask with 022 added, unless
    # a service sets its own umask.
    os.umask(os.umask(0o077) | 0o022)
    settings = DaemonSettings(
        killDelay=options["kill-delay"],
        processLimit=options["limit"],
        handoff=bool(options["handoff"]),
    )
    daemon, result = fromPath(options["config"], reactor, settings)
    path = options["config"]

    def reload() -> None:
        # xinetd's SIGHUP: read the configuration again, change what differs.
        log.info("SIGHUP: reloading {path}", path=path)
        daemon.runtime.sinks.reopenAll()
        reloaded = loadPath(path, Lookups.system())
        logProblems(reloaded)
        log.info("{summary}", summary=summary(reloaded))
        daemon.reload(reloaded.services)

    signal.signal(signal.SIGHUP, lambda *_: cast(Any, reactor).callFromThread(reload))
    cast(Any, reactor).addSystemEventTrigger(
        "after", "shutdown", exitZeroOnTerm, reactor
    )
    cast(Any, reactor).addSystemEventTrigger(
        "after", "startup", _chainRotation, reactor, daemon.runtime.sinks.reopenAll
    )
    if not daemon.records and not options["stayalive"]:
        # As xinetd: with nothing to serve the daemon exits.
        sys.stderr.write(
            f"twinetd: {options['config']}: no services. Exiting...\n"
            f"{summary(result)}\n"
        )
        raise SystemExit(1)
    return daemon


def _ignore(signum: int, frame: Any) -> None:
    """
    A handler that does nothing: the daemon still ignores the signal, and
    its children, where handlers revert at exec, do not.
    """


def prepareProcess() -> None:
    """
    Set the daemon process up as xinetd sets itself up, for its children:

      - the soft C{RLIMIT_NOFILE} is raised to the hard limit (children
        inherit it, as xinetd's do);
      - signals the daemon inherited as ignored (C{nohup}, a shell's
        background job) are caught by a handler that does nothing instead,
        so that no child starts with them ignored (xinetd resets every
        signal in its children).  C{SIGPIPE} and C{SIGXFSZ}, which Python
        ignores, are reset in each child by the spawner;
      - a root daemon drops its own supplementary groups: xinetd's children
        get none unless C{groups = yes} (C{setgroups(0, NULL)}), and then a
        C{user = root} child needs no switch at all, the cheap spawn.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP, signal.SIGPIPE, signal.SIGXFSZ):
            continue
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signum) == signal.SIG_IGN:
                signal.signal(signum, _ignore)
    if os.geteuid() == 0 and os.getgroups():
        with contextlib.suppress(OSError):
            os.setgroups([])


def exitZeroOnTerm(reactor: Any) -> None:
    """
    After a shutdown caused by C{SIGTERM}, let twistd exit with status 0.

    twistd re-raises the signal that stopped the reactor once the reactor
    has stopped (the process ends "killed by SIGTERM", status 143); xinetd
    exits 0 on SIGTERM, and service managers count anything else as a
    failure.  This runs as an "after shutdown" trigger: every service has
    stopped by then, and every child has ended.  C{SIGINT} (^C) is left
    to twistd.
    """
    # Twisted's ReactorBase._exitSignal, read by twistd's runner after the
    # reactor stops (twisted.application.app.ApplicationRunner.startReactor).
    if getattr(reactor, "_exitSignal", None) == signal.SIGTERM:
        reactor._exitSignal = None


def _chainRotation(reactor: Any, reopen: Callable[[], None]) -> None:
    """
    twistd rotates its own log on SIGUSR1; reopen the services' log files
    then too (after twistd's handler, which is installed by then).
    """
    previous = signal.getsignal(signal.SIGUSR1)

    def rotate(signum: int, frame: Any) -> None:
        if callable(previous):
            previous(signum, frame)
        reactor.callFromThread(reopen)

    signal.signal(signal.SIGUSR1, rotate)
