"""
L{twinetd.cli}: xinetd's command line translated into twistd's.
"""

from __future__ import annotations

import contextlib
import io

from twisted.trial.unittest import SynchronousTestCase

import twinetd
from twinetd.cli import status, statusConnection, twistdArgv


def translate(*argv: str, umask: int = 0o002) -> tuple[list[str], str | None]:
    return twistdArgv(list(argv), umask, "/srv")


class TwistdArgvTests(SynchronousTestCase):
    def test_defaultsAreXinetds(self) -> None:
        """
        Without options: /etc/xinetd.conf, into the background, no pid file,
        the daemon's messages to syslog's daemon facility, the invoking umask
        with 022 added, and every program given the socket (drop-in).
        """
        argv, facility = translate()
        self.assertEqual(
            argv,
            [
                "twistd",
                "--pidfile=",
                "--umask=0022",
                "--logger=twinetd.cli.syslogObserver",
                "twinetd",
                "--config",
                "/etc/xinetd.conf",
                "--handoff",
            ],
        )
        self.assertEqual(facility, "daemon")

    def test_xinetdSpellings(self) -> None:
        """
        xinetd's single-dash long options are accepted; relative paths are
        made absolute (the daemon changes to / and reloads read the path
        again).
        """
        argv, facility = translate(
            "-f",
            "conf/xinetd.conf",
            "-dontfork",
            "-pidfile",
            "run/x.pid",
            "-limit",
            "7",
            "-filelog",
            "log/x.log",
            "-reuse",
            "-inetd_compat",
            "-logprocs",
            "3",
            "-cc",
            "60",
        )
        self.assertEqual(
            argv,
            [
                "twistd",
                "--nodaemon",
                "--pidfile=/srv/run/x.pid",
                "--umask=0022",
                "--logfile=/srv/log/x.log",
                "twinetd",
                "--config",
                "/srv/conf/xinetd.conf",
                "--handoff",
                "--stayalive",
                "--limit",
                "7",
                "--inetd-conf",
                "/etc/inetd.conf",
            ],
        )
        self.assertIsNone(facility)

    def test_gnuSpellings(self) -> None:
        """
        Each option also has a GNU-style spelling.
        """
        self.assertEqual(
            translate("--config", "/x", "--dontfork", "--stayalive", "--limit=2"),
            translate("-f", "/x", "-dontfork", "-stayalive", "-limit", "2"),
        )

    def test_debug(self) -> None:
        """
        C{-d}: foreground, log to the terminal, no pid file even if one is
        named (as xinetd's debug mode).
        """
        argv, facility = translate("-d", "-pidfile", "/run/x.pid")
        self.assertIn("--nodaemon", argv)
        self.assertIn("--logfile=-", argv)
        self.assertIn("--pidfile=", argv)
        self.assertIsNone(facility)

    def test_syslogFacility(self) -> None:
        argv, facility = translate("-syslog", "local3")
        self.assertIn("--logger=twinetd.cli.syslogObserver", argv)
        self.assertEqual(facility, "local3")

    def test_umaskKeepsTheInvokersBits(self) -> None:
        argv, _ = translate(umask=0o077)
        self.assertIn("--umask=0077", argv)

    def test_bridgeCheckAndPassThrough(self) -> None:
        """
        C{--bridge} drops drop-in mode; C{--check} checks; what follows
        C{--} goes to the plugin unchanged.
        """
        argv, _ = translate("--bridge", "--check", "--", "--kill-delay", "1")
        self.assertNotIn("--handoff", argv)
        self.assertEqual(argv[-3:], ["--check", "--kill-delay", "1"])

    def test_spawnerProcess(self) -> None:
        argv, _ = translate("--spawner-process")
        self.assertIn("--spawner-process", argv)
        self.assertNotIn("--spawner-process", translate()[0])

    def test_noSpawnerProcess(self) -> None:
        argv, _ = translate("--no-spawner-process")
        self.assertIn("--no-spawner-process", argv)
        self.assertNotIn("--no-spawner-process", translate()[0])

    def test_spawnerProcessAboveDefault(self) -> None:
        """
        The help's default of C{--spawner-process-above} is the plugin's,
        which decides it (nothing is passed without the option).
        """
        from twinetd.cli import _parser
        from twinetd.tap import DEFAULT_SPAWNER_PROCESS_ABOVE

        text = " ".join(_parser().format_help().split())
        self.assertIn(f"(default {DEFAULT_SPAWNER_PROCESS_ABOVE})", text)

    def test_spawnerProcessAbove(self) -> None:
        argv, _ = translate("--spawner-process-above", "8")
        i = argv.index("--spawner-process-above")
        self.assertEqual(argv[i + 1], "8")
        self.assertNotIn("--spawner-process-above", translate()[0])

    def test_usageErrors(self) -> None:
        """
        Unknown options, a bad facility, and -filelog with -syslog are usage
        errors (exit status 2, as argparse's).
        """
        for argv in (
            ["-bogus"],
            ["-syslog", "kern"],
            ["-filelog", "/x", "-syslog", "daemon"],
            ["-limit", "many"],
        ):
            with (
                contextlib.redirect_stderr(io.StringIO()),
                self.assertRaises(SystemExit) as raised,
            ):
                translate(*argv)
            self.assertEqual(raised.exception.code, 2, argv)

    def test_version(self) -> None:
        out = io.StringIO()
        with (
            contextlib.redirect_stdout(out),
            self.assertRaises(SystemExit) as raised,
        ):
            translate("-version")
        self.assertEqual(raised.exception.code, 0)
        self.assertEqual(out.getvalue().strip(), twinetd.versionText())
        self.assertIn(twinetd.__version__, out.getvalue())


class StatusTests(SynchronousTestCase):
    """
    C{twinetd status ENDPOINT}: where it connects for each description.
    """

    def test_tcp(self) -> None:
        for endpoint, expected in [
            ("tcp:9465:interface=127.0.0.1", ("127.0.0.1", 9465)),
            ("tcp:9465", ("127.0.0.1", 9465)),
            ("tcp:9465:interface=0.0.0.0:backlog=5", ("127.0.0.1", 9465)),
            ("tcp6:9465:interface=\\:\\:1", ("::1", 9465)),
            ("tcp6:9465", ("::1", 9465)),
        ]:
            connection = statusConnection(endpoint, 1.0)
            self.assertEqual((connection.host, connection.port), expected, endpoint)

    def test_unix(self) -> None:
        connection = statusConnection("unix:/run/twinetd/metrics.sock:lockfile=1", 1)
        self.assertEqual(connection._path, "/run/twinetd/metrics.sock")  # type: ignore[attr-defined]

    def test_other(self) -> None:
        for endpoint in ("ssl:9465", "tcp:http", "unix:", "9465"):
            with self.assertRaises(ValueError):
                statusConnection(endpoint, 1.0)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.assertEqual(status(["ssl:9465"], io.StringIO()), 1)
        self.assertEqual(
            err.getvalue(),
            "twinetd status: ssl:9465: not a tcp: or unix: endpoint: ssl:9465\n",
        )
