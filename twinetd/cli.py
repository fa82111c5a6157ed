# -*- test-case-name: tests.unit.test_cli,tests.integration.test_cli -*-
"""
The C{twinetd} command: xinetd's command line over the twistd plugin.

An init script or unit file written for xinetd changes only the binary::

    twinetd -f /etc/xinetd.conf -pidfile /run/twinetd.pid
    twinetd -dontfork -stayalive -limit 200

Every xinetd option is accepted in its own spelling (C{-dontfork}) and GNU
style (C{--dontfork}); the command runs C{twistd twinetd} in this process
with the matching options.  Like xinetd it forks into the background unless
C{-dontfork} or C{-d}, logs to syslog (facility C{daemon}) unless
C{-filelog} or C{-d}, and runs every stream program in drop-in mode (the
socket itself, as xinetd gives it; C{--bridge} for twinetd's bridge).
Options after C{--} go to C{twistd twinetd} unchanged.

C{twinetd status ENDPOINT} prints the status of a daemon started with
C{--metrics ENDPOINT} (the same description) as a table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import sys
from collections.abc import Sequence
from typing import Any, TextIO, cast

from twisted.logger import ILogObserver

import twinetd

DEFAULT_CONFIG = "/etc/xinetd.conf"
INETD_CONF = "/etc/inetd.conf"

#: syslog facilities C{-syslog} accepts (xinetd's list).
FACILITIES = ("daemon", "auth", "user", *(f"local{n}" for n in range(8)))


#: xinetd's switches: (spellings, destination, help).
_FLAGS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("-d", "--debug"),
        "debug",
        "stay in the foreground, log to standard output, no pid file",
    ),
    (
        ("-dontfork", "--dontfork", "--foreground"),
        "dontfork",
        "stay in the foreground (implies -stayalive, as in xinetd)",
    ),
    (
        ("-stayalive", "--stayalive"),
        "stayalive",
        "keep running when no service can be served",
    ),
    (
        ("-reuse", "--reuse"),
        "reuse",
        "accepted for xinetd's sake: SO_REUSEADDR is always set",
    ),
    (
        ("-inetd_compat", "--inetd-compat"),
        "inetdCompat",
        f"also read {INETD_CONF}, after the configuration",
    ),
    (
        ("-version", "--version"),
        "version",
        "print twinetd's and Twisted's versions and exit",
    ),
    (
        ("--check",),
        "check",
        "check the configuration, print every problem, and exit (0/1)",
    ),
    (
        ("--bridge",),
        "bridge",
        "bridge the programs' stdio instead of giving them the socket",
    ),
    (
        ("--spawner-process",),
        "spawnerProcess",
        "start every program from a small spawner process",
    ),
    (
        ("--no-spawner-process",),
        "noSpawnerProcess",
        "start every program from the daemon itself, also under load",
    ),
)

#: xinetd's options with a value: (spellings, destination, metavar, type,
#: help).
_VALUES: tuple[tuple[tuple[str, ...], str, str, type, str], ...] = (
    (("-pidfile", "--pidfile"), "pidfile", "FILE", str, "write the pid to FILE"),
    (
        ("-limit", "--limit"),
        "limit",
        "N",
        int,
        "the most servers running at once over all services",
    ),
    (
        ("--spawner-process-above",),
        "spawnerProcessAbove",
        "N",
        int,
        "start the programs from the spawner process only while more than "
        "N are running (default 4)",
    ),
    (
        ("-logprocs", "--logprocs"),
        "logprocs",
        "N",
        int,
        "accepted for xinetd's sake: ident queries need no processes",
    ),
    (
        ("-cc", "--cc"),
        "cc",
        "SECONDS",
        int,
        "accepted for xinetd's sake: there is no state to check",
    ),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twinetd",
        description=(
            "An xinetd-compatible super-server built on Twisted. Takes "
            "xinetd's options, in xinetd's spelling (-dontfork) or GNU "
            "style (--dontfork); options after -- go to 'twistd twinetd'."
        ),
        epilog=(
            "'twinetd status ENDPOINT' prints the status of a daemon started "
            "with '-- --metrics ENDPOINT'."
        ),
        allow_abbrev=False,
    )
    parser.add_argument(
        "-f",
        "--config",
        metavar="FILE",
        default=DEFAULT_CONFIG,
        help=f"configuration file or folder (default {DEFAULT_CONFIG})",
    )
    for names, dest, text in _FLAGS:
        parser.add_argument(*names, dest=dest, action="store_true", help=text)
    for names, dest, metavar, kind, text in _VALUES:
        parser.add_argument(*names, dest=dest, metavar=metavar, type=kind, help=text)
    log = parser.add_mutually_exclusive_group()
    log.add_argument(
        "-filelog",
        "--filelog",
        dest="filelog",
        metavar="FILE",
        help="the daemon's own messages go to FILE (appended)",
    )
    log.add_argument(
        "-syslog",
        "--syslog",
        dest="syslog",
        metavar="FACILITY",
        choices=FACILITIES,
        help="the daemon's own messages go to syslog FACILITY (default daemon)",
    )
    return parser


def twistdArgv(
    argv: Sequence[str], umask: int, cwd: str
) -> tuple[list[str], str | None]:
    """
    Translate C{twinetd}'s command line into C{twistd}'s.

    @param argv: the arguments after the command's name.
    @param umask: the invoking umask; the daemon keeps it with 022 added, as
        xinetd does (twistd would otherwise use 077 when it forks).
    @param cwd: the directory relative paths are taken from (the daemon
        changes to C{/} when it forks, and reloads read the path again).
    @return: twistd's arguments, and the syslog facility for the daemon's
        own messages (C{None} when they go to a file or standard error).
    @raise SystemExit: for C{-version}, C{--help} and usage errors (as
        argparse does).
    """
    before, passThrough = _split(argv)
    options = _parser().parse_args(before)
    if options.version:
        print(twinetd.versionText())
        raise SystemExit(0)

    def absolute(path: str) -> str:
        return os.path.normpath(os.path.join(cwd, path))

    foreground = options.debug or options.dontfork
    twistd = ["twistd"]
    if foreground:
        twistd.append("--nodaemon")
    if options.pidfile and not options.debug:
        twistd.append(f"--pidfile={absolute(options.pidfile)}")
    else:
        twistd.append("--pidfile=")
    twistd.append(f"--umask={umask | 0o022:04o}")
    facility: str | None = None
    if options.debug:
        twistd.append("--logfile=-")
    elif options.filelog:
        twistd.append(f"--logfile={absolute(options.filelog)}")
    else:
        facility = options.syslog or "daemon"
        twistd.append(f"--logger={__name__}.syslogObserver")
    twistd += ["twinetd", "--config", absolute(options.config)]
    if options.check:
        twistd.append("--check")
    if not options.bridge:
        twistd.append("--handoff")
    if options.spawnerProcess:
        twistd.append("--spawner-process")
    if options.noSpawnerProcess:
        twistd.append("--no-spawner-process")
    if options.spawnerProcessAbove is not None:
        twistd += ["--spawner-process-above", str(options.spawnerProcessAbove)]
    if options.stayalive or options.dontfork:
        twistd.append("--stayalive")
    if options.limit is not None:
        twistd += ["--limit", str(options.limit)]
    if options.inetdCompat:
        twistd += ["--inetd-conf", INETD_CONF]
    return twistd + passThrough, facility


def _split(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    args = list(argv)
    if "--" in args:
        index = args.index("--")
        return args[:index], args[index + 1 :]
    return args, []


#: The facility L{syslogObserver} uses (set by L{main} before twistd runs).
_facility = "daemon"


def syslogObserver() -> ILogObserver:
    """
    The daemon's log observer for syslog (twistd's C{--logger}): as
    xinetd, the daemon's own messages go to syslog under C{twinetd}, in the
    facility C{-syslog} named.
    """
    import syslog as _syslog

    from twisted.logger import LegacyLogObserverWrapper
    from twisted.python.syslog import SyslogObserver

    facility = getattr(_syslog, "LOG_" + _facility.upper())
    observer = SyslogObserver("twinetd", facility=facility)  # type: ignore[no-untyped-call]
    return LegacyLogObserverWrapper(cast(Any, observer.emit))


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def statusConnection(endpoint: str, timeout: float) -> http.client.HTTPConnection:
    """
    A connection to the C{--metrics} server named by its server endpoint
    description: C{tcp:PORT[:interface=ADDRESS]} (C{127.0.0.1} when it
    listens on every address), C{tcp6:...}, C{unix:PATH[:...]}.

    @raise ValueError: not such a description.
    """
    kind, _, rest = endpoint.partition(":")
    # Colons inside a value are escaped (interface=\:\:1).
    fields = [f.replace("\\:", ":") for f in re.split(r"(?<!\\):", rest)]
    options = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
    if kind in ("tcp", "tcp6") and fields[0].isdigit():
        wildcard = "::1" if kind == "tcp6" else "127.0.0.1"
        host = options.get("interface") or wildcard
        if host in ("0.0.0.0", "::"):
            host = wildcard
        return http.client.HTTPConnection(host, int(fields[0]), timeout=timeout)
    if kind == "unix" and fields[0]:
        return _UnixHTTPConnection(fields[0], timeout)
    raise ValueError(f"not a tcp: or unix: endpoint: {endpoint}")


def status(argv: Sequence[str], out: TextIO, timeout: float = 10.0) -> int:
    """
    C{twinetd status ENDPOINT}: print the status of the daemon whose
    C{--metrics} listens on ENDPOINT; 0, or 1 when it cannot be had.
    """
    from twinetd.status import statusTable

    parser = argparse.ArgumentParser(
        prog="twinetd status",
        description="Print the status of a daemon started with --metrics ENDPOINT.",
    )
    parser.add_argument(
        "endpoint",
        metavar="ENDPOINT",
        help="the daemon's --metrics (tcp:9465:interface=127.0.0.1, unix:PATH)",
    )
    endpoint = parser.parse_args(argv).endpoint
    try:
        connection = statusConnection(endpoint, timeout)
        connection.request("GET", "/status")
        response = connection.getresponse()
        body = response.read()
        connection.close()
        if response.status != 200:
            raise OSError(f"HTTP {response.status} {response.reason}")
        document = json.loads(body)
    except (OSError, ValueError) as e:
        sys.stderr.write(f"twinetd status: {endpoint}: {e}\n")
        return 1
    out.write(statusTable(document) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """
    Run the C{twinetd} command (the console script and C{python -m twinetd}).
    """
    global _facility
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["status"]:
        raise SystemExit(status(argv[1:], sys.stdout))
    # From the first moment, a SIGHUP (or SIGUSR1/2) must not end the
    # daemon: recorded now, answered once it runs (as xinetd does).
    from twinetd.earlysignals import installEarlySignals

    installEarlySignals()
    umask = os.umask(0o022)
    os.umask(umask)
    twistd, facility = twistdArgv(argv, umask, os.getcwd())
    if facility is not None:
        _facility = facility
    from twisted.scripts.twistd import run

    sys.argv = twistd
    run()  # type: ignore[no-untyped-call]
