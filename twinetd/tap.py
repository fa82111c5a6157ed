# -*- test-case-name: tests.unit.test_tap,tests.integration.test_twistd -*-
"""
twistd glue: C{twistd -n twinetd -c PATH}.

This is the only module that imports the global reactor, inside
L{makeService}.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import TYPE_CHECKING, Any, TextIO

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorSocket
from twisted.logger import Logger
from twisted.python import usage

import twinetd
from twinetd._twistedcompat import (
    addServiceFirst,
    takeSystemdVariables,
    withoutPyOpenSSL,
)
from twinetd.config import LoadResult, Lookups, loadPath
from twinetd.control import logProblems, summary
from twinetd.earlysignals import EarlySignals, installEarlySignals
from twinetd.errors import printable
from twinetd.launch import argvFor
from twinetd.model import ServiceConfig, SocketType

if TYPE_CHECKING:
    from twinetd.logs.twistd import TwistdLog
    from twinetd.service import TwinetdService

DEFAULT_CONFIG = "/etc/xinetd.conf"
#: The daemon's C{--spawner-process-above} unless told otherwise: one
#: connection at a time (a few running) the daemon starts programs itself,
#: under load (held connections, many clients at once) the spawner process
#: does (bench/README.md, "Spawner process by default").
DEFAULT_SPAWNER_PROCESS_ABOVE = 4

log = Logger()


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
            "spawner-process",
            None,
            "Start every program from a small spawner process holding a few "
            "descriptors, so the daemon neither waits for each program's "
            "start nor copies its descriptor table.",
        ],
        [
            "no-spawner-process",
            None,
            "Start every program from the daemon itself, also under load "
            "(by default the spawner process starts them while more than "
            f"{DEFAULT_SPAWNER_PROCESS_ABOVE} are running).",
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
            "spawner-process-above",
            None,
            None,
            "Start the programs from the spawner process (see "
            "--spawner-process) only while more than N are running, from "
            "the daemon itself otherwise: the daemon's own start is quicker "
            "one at a time, the spawner process under load "
            f"(default {DEFAULT_SPAWNER_PROCESS_ABOVE}).",
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
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics and a JSON status at /status "
            "on this Twisted server endpoint (tcp:9465:interface=127.0.0.1, "
            "unix:/run/twinetd/metrics.sock).",
            str,
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

    #: What records the daemon's signals until it runs: set when the
    #: options are twistd's subcommand (not when an application parses them).
    earlySignals: EarlySignals | None = None

    def postOptions(self) -> None:
        from twisted.application.app import ServerOptions

        if isinstance(getattr(self, "parent", None), ServerOptions):
            # The daemon starts: a SIGHUP from now on must not end it.
            self.earlySignals = installEarlySignals()
        if self["limit"] is not None and self["limit"] < 1:
            raise usage.UsageError("--limit must be at least 1")
        if self["kill-delay"] < 0:
            raise usage.UsageError("--kill-delay must not be negative")
        above = self["spawner-process-above"]
        if above is not None and above < 0:
            raise usage.UsageError("--spawner-process-above must not be negative")
        given = [
            name
            for name, value in (
                ("--spawner-process", self["spawner-process"]),
                ("--spawner-process-above", above is not None),
                ("--no-spawner-process", self["no-spawner-process"]),
            )
            if value
        ]
        if len(given) > 1:
            raise usage.UsageError(f"{' and '.join(given)} contradict each other")
        if self["config"] is None and self["inetd-conf"] is None:
            self["config"] = DEFAULT_CONFIG
        # As importing twisted.internet.endpoints used to, at start-up.
        takeSystemdVariables()
        if self["check"]:
            raise SystemExit(check(self, Lookups.system(), sys.stdout))


def spawnerProcessAbove(options: Options) -> int | None:
    """
    The daemon's C{spawnerProcessAbove} (L{DaemonSettings}): C{None} (no
    threshold) with C{--spawner-process} or C{--no-spawner-process}, else
    C{--spawner-process-above}, by default
    L{DEFAULT_SPAWNER_PROCESS_ABOVE}.
    """
    if options["spawner-process"] or options["no-spawner-process"]:
        return None
    above: int | None = options["spawner-process-above"]
    return DEFAULT_SPAWNER_PROCESS_ABOVE if above is None else above


def makeService(options: Options) -> IService:
    """
    Build the daemon's service tree from the options, without touching the
    process: signal handlers, the umask, the reaper and systemd's
    notifications are set up when the tree starts (L{DaemonControl}).
    (Under twistd, the options set handlers that record C{SIGHUP},
    C{SIGUSR1} and C{SIGUSR2} until then: L{twinetd.earlysignals}.)

    The tree: the daemon (L{TwinetdService}), whose first children are
    twistd's log set-up (L{TwistdLog}), L{DaemonControl} and the
    C{--metrics} server, then one listener per service.
    """
    if options["metrics"] is None:
        # Its first import (twistd has not imported it yet): pyOpenSSL
        # and cryptography are imported only for an ssl: listener.
        # --metrics takes any Twisted endpoint (ssl: too, through the
        # reactor's listenSSL).
        with withoutPyOpenSSL():
            from twisted.internet import reactor
    else:
        from twisted.internet import reactor

    from twinetd.sdnotify import NOTIFY_SOCKET, Notifier
    from twinetd.service import DaemonControl, DaemonSettings, fromRecords

    if options.earlySignals is not None:
        options.earlySignals.loading()
    result = startup(options, Lookups.system(), sys.stderr)
    settings = DaemonSettings(
        killDelay=options["kill-delay"],
        processLimit=options["limit"],
        handoff=bool(options["handoff"]),
        spawnerProcess=bool(options["spawner-process"]),
        spawnerProcessAbove=spawnerProcessAbove(options),
        environment=tuple(
            (name, value) for name, value in os.environ.items() if name != NOTIFY_SOCKET
        ),
    )
    logProblems(result)
    if not result.services:
        log.warn("no services to serve; waiting for SIGHUP")
    daemon = fromRecords(result.services, IReactorSocket(reactor), settings)
    twistdLog = _twistdLog(options, reactor, daemon, result)
    control = DaemonControl(
        daemon,
        reactor,
        load=lambda: load(options, Lookups.system()),
        umask=_umask(options),
        notifier=Notifier.fromEnvironment(dict(os.environ)),
        reopen=[twistdLog.reopen],
        processLikeXinetd=True,
    )
    first: list[IService] = [twistdLog, control]
    if options["metrics"] is not None:
        from twinetd.metrics import MetricsService

        try:
            first.append(MetricsService(options["metrics"], daemon, reactor))
        except ValueError as e:
            sys.stderr.write(f"twinetd: --metrics {options['metrics']}: {e}\n")
            raise SystemExit(1) from None
    # Before the listeners: they listen in privilegedStartService.
    for service in reversed(first):
        addServiceFirst(daemon, service)
    return daemon


def _umask(options: Options) -> int | None:
    """
    The umask children inherit, as xinetd's: the invoking one with 022
    added.  twistd sets 077 after L{makeService} when it goes to the
    background, so L{DaemonControl} sets this one when the daemon starts;
    C{None} when twistd was given C{--umask}, which then stands.
    """
    parent = getattr(options, "parent", None)
    if parent is not None and parent.get("umask") is not None:
        return None
    # Read without changing it (there is no getumask).
    invoking = os.umask(0o022)
    os.umask(invoking)
    return invoking | 0o022


def _twistdLog(
    options: Options, reactor: Any, daemon: TwinetdService, result: LoadResult
) -> TwistdLog:
    """
    twistd's log for the daemon (L{TwistdLog}: without Twisted's per-port
    lines, failed accepts summarised, the JSON log, a startup summary);
    it must start before the daemon's listeners.
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
    return TwistdLog(reactor, daemon.runtime.sinks, counts, jsonLog)
