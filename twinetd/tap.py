"""
twistd glue: C{twistd -n twinetd -c PATH}.

This is the only module that imports the global reactor, inside
L{makeService}.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO, cast

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

import twinetd
from twinetd.config import LoadResult, Lookups, loadPath
from twinetd.errors import printable
from twinetd.launch import argvFor
from twinetd.model import ServiceConfig, SocketType

if TYPE_CHECKING:
    from twinetd.service import TwinetdService

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


def load(options: Options, lookups: Lookups) -> LoadResult:
    """
    The configuration the options name: C{-c} and C{--inetd-conf}.
    """
    return loadPath(options["config"], lookups, inetdConf=options["inetd-conf"])


def check(options: Options, lookups: Lookups, out: TextIO) -> int:
    """
    C{--check}: print every problem, with C{--verbose} each service that
    would be served, and a summary; return the exit code (0 without
    errors, 1 with).
    """
    result = load(options, lookups)
    for problem in result.problems:
        out.write(f"{problem}\n")
    if options["verbose"]:
        out.write("services that would be served:\n" if result.services else "")
        for config in result.services:
            out.write(f"  {describe(config, bool(options['handoff']))}\n")
    out.write(summary(result) + "\n")
    return 1 if result.errors else 0


def describe(config: ServiceConfig, handoff: bool) -> str:
    """
    One service as C{xinetd -d} shows what it will run: id, protocol and
    port, address, user, mode and argv.

    @param handoff: the daemon's C{--handoff}.
    """
    if config.bind is not None:
        address = config.bind
    elif "IPv4" in config.flags:
        address = "0.0.0.0 (IPv4)"
    elif config.v6only:
        address = ":: (IPv6 only)"
    else:
        address = "every address (IPv4 and IPv6)"
    user = "the daemon's" if config.user is None else config.user
    if config.uid is not None:
        user += f" (uid {config.uid}, gid {config.gid})"
    text = (
        f"{printable(config.id)}: {config.protocol} port {config.port}, bind "
        f"{address}, user {printable(user)}, mode {_mode(config, handoff)}"
    )
    if config.server is not None and not config.isInternal:
        argv = printable(shlex.join(argvFor(config)))
        text += f", argv {argv} ({printable(config.server)})"
    return text


def _mode(config: ServiceConfig, handoff: bool) -> str:
    if config.isInternal:
        return "internal"
    if config.redirect is not None:
        host, port = config.redirect
        return f"redirect to {host} port {port}"
    if config.wait:
        return "wait (the socket to the program)"
    if config.socketType is SocketType.DGRAM:
        return "one child per datagram"
    return (
        "handoff"
        if (handoff if config.handoff is None else config.handoff)
        else "bridge"
    )


def startup(options: Options, lookups: Lookups, stderr: TextIO) -> LoadResult:
    """
    Load the configuration at start-up and tell the person starting the
    daemon what is wrong, on C{stderr}: events logged now reach twistd's log
    only if the daemon goes on, and never the terminal it leaves when it
    goes to the background.

    Every problem and the summary are written when the configuration
    cannot be read (then the daemon exits 1), when no service can be
    served (it keeps running, as Debian's xinetd does, and serves what a
    later SIGHUP adds), and before it goes to the background.

    @raise SystemExit: (1) when the configuration cannot be read at all.
    """
    result = load(options, lookups)
    parent = getattr(options, "parent", None)
    daemonizing = parent is not None and not parent.get("nodaemon")
    if result.unreadable or not result.services or (daemonizing and result.problems):
        for problem in result.problems:
            stderr.write(f"twinetd: {problem}\n")
        stderr.write(f"twinetd: {summary(result)}\n")
    if result.unreadable:
        stderr.write("twinetd: cannot read the configuration. Exiting...\n")
        raise SystemExit(1)
    if not result.services:
        stderr.write("twinetd: warning: no services to serve; waiting for SIGHUP\n")
    stderr.flush()
    return result


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
            "Accepted for xinetd's -stayalive: the daemon always keeps running "
            "when its configuration can be read, even with no service to serve "
            "(as Debian's xinetd does).",
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
        [
            "verbose",
            "v",
            "With --check: also list each service that would be served (id, "
            "protocol and port, bind, user, mode, argv), as xinetd -d does.",
        ],
    ]
    optParameters = [
        [
            "config",
            "c",
            None,
            "Configuration file or folder (xinetd's -f); default "
            f"{DEFAULT_CONFIG}, or none when only --inetd-conf is given.",
            str,
        ],
        [
            "inetd-conf",
            None,
            None,
            "Also serve the lines of this inetd.conf file (as xinetd's "
            "-inetd_compat reads /etc/inetd.conf).",
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
        [
            "log-json",
            None,
            None,
            "Also log every twinetd event as one JSON object per line to this "
            "file ('-' for standard output); the fields are in the README.",
            str,
        ],
    ]

    def opt_version(self) -> None:
        """
        Print twinetd's and Twisted's versions and exit.
        """
        print(twinetd.versionText())
        raise SystemExit(0)

    def postOptions(self) -> None:
        if self["limit"] is not None and self["limit"] < 1:
            raise usage.UsageError("--limit must be at least 1")
        if self["kill-delay"] < 0:
            raise usage.UsageError("--kill-delay must not be negative")
        if self["config"] is None and self["inetd-conf"] is None:
            self["config"] = DEFAULT_CONFIG
        if self["check"]:
            raise SystemExit(check(self, Lookups.system(), sys.stdout))


def makeService(options: Options) -> IService:
    """
    Build the daemon's service tree from the options.
    """
    from twisted.internet import reactor

    from twinetd.service import DaemonSettings, fromRecords, logProblems
    from twinetd.spawn import installExitedReaper

    result = startup(options, Lookups.system(), sys.stderr)
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
    logProblems(result)
    if not result.services:
        log.warn("no services to serve; waiting for SIGHUP")
    daemon = fromRecords(result.services, reactor, settings)
    path = options["config"] or options["inetd-conf"]

    def reload() -> None:
        # xinetd's SIGHUP: read the configuration again, change what differs.
        log.info("SIGHUP: reloading {path}", path=path)
        daemon.runtime.sinks.reopenAll()
        reloaded = load(options, Lookups.system())
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
    _setUpLog(options, reactor, daemon, result)
    return daemon


def _setUpLog(
    options: Options, reactor: Any, daemon: TwinetdService, result: LoadResult
) -> None:
    """
    twistd's log for the daemon (L{TwistdLog}: without Twisted's per-port
    lines, failed accepts summarised, the JSON log, a startup summary),
    started before the daemon's listeners.
    """
    from twinetd.logs.jsonlog import JsonLog
    from twinetd.logs.twistd import LoadCounts, TwistdLog

    jsonLog = None
    if options["log-json"] is not None:
        try:
            jsonLog = JsonLog(options["log-json"])
        except OSError as e:
            sys.stderr.write(f"twinetd: --log-json {options['log-json']}: {e}\n")
            raise SystemExit(1) from None
    served = len(daemon.records)
    counts = LoadCounts(
        services=served,
        skipped=result.skipped + len(result.services) - served,
        errors=len(result.errors),
        warnings=len(result.warnings),
    )
    twistdLog = TwistdLog(reactor, daemon.runtime.sinks, counts, jsonLog)
    twistdLog.setServiceParent(daemon)  # type: ignore[no-untyped-call]
    daemon.services.remove(twistdLog)
    daemon.services.insert(0, twistdLog)
    cast(Any, reactor).addSystemEventTrigger(
        "after", "startup", _chainRotation, reactor, twistdLog.reopen
    )


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
