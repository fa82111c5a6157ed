"""
Tests for the option handling, C{--check} and start-up parts of
L{twinetd.tap}, in-process.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import tempfile

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from twinetd.config import Lookups
from twinetd.errors import SourceLocation
from twinetd.model import ServiceConfig, SocketType
from twinetd.tap import DEFAULT_CONFIG, Options, check, describe, startup

LOOKUPS = Lookups.fromTables(
    users={"root": (0, 0), "nobody": (65534, 65534)},
    groups={"nogroup": 65534},
    services={("echo", "tcp"): 7},
)
HERE = SourceLocation("/etc/xinetd.d/x", 1)


def record(**fields: object) -> ServiceConfig:
    values: dict[str, object] = {
        "name": "s",
        "source": HERE,
        "socketType": SocketType.STREAM,
        "wait": False,
        "port": 2000,
        "server": "/bin/cat",
    }
    values.update(fields)
    return ServiceConfig(**values)  # type: ignore[arg-type]


class OptionsTests(SynchronousTestCase):
    def test_defaultConfig(self) -> None:
        """
        Without C{-c}, xinetd's file; with only C{--inetd-conf}, none.
        """
        options = Options()
        options.parseOptions([])
        self.assertEqual(
            (options["config"], options["inetd-conf"]), (DEFAULT_CONFIG, None)
        )
        options = Options()
        options.parseOptions(["--inetd-conf", "/etc/inetd.conf"])
        self.assertEqual(options["config"], None)
        options = Options()
        options.parseOptions(["-c", "/x", "--inetd-conf", "/etc/inetd.conf"])
        self.assertEqual(options["config"], "/x")


class DescribeTests(SynchronousTestCase):
    """
    C{--check --verbose}: one line per service with what it will run.
    """

    def test_bridge(self) -> None:
        config = record(
            bind="127.0.0.1", user="nobody", uid=65534, gid=65534, serverArgs=("-n",)
        )
        self.assertEqual(
            describe(config, handoff=False),
            "s: tcp port 2000, bind 127.0.0.1, user nobody (uid 65534, gid 65534), "
            "mode bridge, argv cat -n (/bin/cat)",
        )
        self.assertIn("mode handoff", describe(config, handoff=True))
        self.assertIn("mode bridge", describe(record(handoff=False), handoff=True))

    def test_kinds(self) -> None:
        self.assertEqual(
            describe(
                record(
                    id="echo-stream", server=None, types=frozenset({"INTERNAL"}),
                    flags=frozenset({"IPv4"}),
                ),
                False,
            ),
            "echo-stream: tcp port 2000, bind 0.0.0.0 (IPv4), user the daemon's, "
            "mode internal",
        )  # fmt: skip
        self.assertIn(
            "bind :: (IPv6 only), user the daemon's, mode redirect to 10.0.0.1 port 80",
            describe(
                record(server=None, redirect=("10.0.0.1", 80), v6only=True), False
            ),
        )
        dgram = record(socketType=SocketType.DGRAM, protocol="udp")
        self.assertIn("udp port 2000", describe(dgram, False))
        self.assertIn("mode one child per datagram", describe(dgram, False))
        self.assertIn(
            "mode wait (the socket to the program), argv in.tftpd -s (/bin/cat)",
            describe(
                record(wait=True, serverArgs=("in.tftpd", "-s"), flags={"NAMEINARGS"}),
                False,
            ),
        )
        self.assertIn("bind every address (IPv4 and IPv6)", describe(record(), False))


class CheckTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder)
        with open(os.path.join(self.folder, "echo"), "w") as f:
            f.write(
                "service echo\n{\n socket_type = stream\n wait = no\n user = nobody\n"
                " server = /bin/cat\n only_form = 1.2.3.4\n}\n"
                "service echo2\n{\n type = UNLISTED\n port = 2001\n"
                " socket_type = stream\n wait = no\n user = nobody\n"
                " server = /bin/cat\n}\n"
            )

    def check(self, *args: str) -> tuple[int, str]:
        options = Options()
        options.parseOptions(["-c", self.folder, *args])
        out = io.StringIO()
        return check(options, LOOKUPS, out), out.getvalue().replace(self.folder, "D")

    def test_verbose(self) -> None:
        """
        With C{--verbose}, the services that would be served come after the
        problems and before the summary.
        """
        code, out = self.check("--verbose")
        self.assertEqual(code, 1)
        self.assertEqual(
            out.splitlines(),
            [
                "D/echo:7: echo: unknown attribute only_form (did you mean only_from?)",
                "services that would be served:",
                "  echo2: tcp port 2001, bind every address (IPv4 and IPv6), user "
                "nobody (uid 65534, gid 65534), mode bridge, argv cat (/bin/cat)",
                "1 service loaded, 1 skipped, 0 disabled, 1 error, 0 warnings",
            ],
        )

    def test_quiet(self) -> None:
        code, out = self.check()
        self.assertEqual(code, 1)
        self.assertNotIn("would be served", out)


GOOD = (
    "service good\n{\n type = UNLISTED\n port = 2002\n socket_type = stream\n"
    " wait = no\n user = nobody\n server = /bin/cat\n}\n"
)
TYPO = (
    "service slow\n{\n type = UNLISTED\n port = 2003\n socket_type = stream\n"
    " wait = no\n user = nobody\n server = /bin/cat\n only_form = 10.0.0.1\n}\n"
)


class StartupTests(SynchronousTestCase):
    """
    What the person starting the daemon reads on standard error.
    """

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder)

    def start(
        self,
        files: dict[str, str],
        *args: str,
        nodaemon: bool | None = True,
        path: str | None = None,
    ) -> tuple[int | None, list[str]]:
        for name, text in files.items():
            with open(os.path.join(self.folder, name), "w") as f:
                f.write(text)
        options = Options()
        options.parseOptions(["-c", path or self.folder, *args])
        if nodaemon is not None:
            options.parent = {"nodaemon": nodaemon}  # as twistd sets it
        err = io.StringIO()
        try:
            result = startup(options, LOOKUPS, err)
        except SystemExit as e:
            code: int | None = int(str(e.code))
        else:
            code = None
            self.result = result
        return code, err.getvalue().replace(self.folder, "D").splitlines()

    def test_unreadable(self) -> None:
        """
        A configuration that cannot be read at all: the reason on standard
        error and exit status 1.
        """
        code, err = self.start({}, path=os.path.join(self.folder, "missing"))
        self.assertEqual(code, 1)
        self.assertEqual(
            err,
            [
                "twinetd: D/missing: cannot read D/missing: No such file or directory",
                "twinetd: 0 services loaded, 0 skipped, 0 disabled, 1 error, 0 "
                "warnings",
                "twinetd: cannot read the configuration. Exiting...",
            ],
        )

    def test_emptyFolder(self) -> None:
        """
        A folder with no service: the daemon starts, with a warning.
        """
        code, err = self.start({})
        self.assertIsNone(code)
        self.assertEqual(
            err,
            [
                "twinetd: 0 services loaded, 0 skipped, 0 disabled, 0 errors, 0 "
                "warnings",
                "twinetd: warning: no services to serve; waiting for SIGHUP",
            ],
        )

    def test_nothingServable(self) -> None:
        """
        The only service has a typo: the line that says what is wrong is
        printed (it was lost before), and the daemon starts.
        """
        code, err = self.start({"slow": TYPO})
        self.assertIsNone(code)
        self.assertEqual(
            err[0],
            "twinetd: D/slow:9: slow: unknown attribute only_form (did you mean "
            "only_from?)",
        )
        self.assertEqual(
            err[-1], "twinetd: warning: no services to serve; waiting for SIGHUP"
        )

    def test_beforeBackground(self) -> None:
        """
        Going to the background, every problem is printed first; in the
        foreground they go to the log only.
        """
        code, err = self.start({"good": GOOD, "slow": TYPO}, nodaemon=False)
        self.assertIsNone(code)
        self.assertEqual(
            err,
            [
                "twinetd: D/slow:9: slow: unknown attribute only_form (did you "
                "mean only_from?)",
                "twinetd: 1 service loaded, 1 skipped, 0 disabled, 1 error, 0 warnings",
            ],
        )
        self.assertEqual(self.start({}, nodaemon=True), (None, []))
        self.assertEqual(self.start({}, nodaemon=None), (None, []))
        self.assertEqual([s.name for s in self.result.services], ["good"])


class MakeServiceTests(SynchronousTestCase):
    """
    C{makeService} only builds: the process is as it was.
    """

    def test_buildsOnly(self) -> None:
        from twisted.internet import process

        from twinetd.control import DaemonControl
        from twinetd.logs.twistd import TwistdLog
        from twinetd.service import TwinetdService
        from twinetd.tap import makeService

        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        with open(os.path.join(folder, "good"), "w") as f:
            f.write(GOOD.replace("user = nobody", "user = -"))
        signals = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
        handlers = [signal.getsignal(s) for s in signals]
        reaper = process.reapAllProcesses
        umask = os.umask(0o002)
        self.addCleanup(os.umask, umask)
        options = Options()
        options.parseOptions(["-c", folder])
        options.parent = {"nodaemon": True, "umask": None}  # as twistd sets it
        daemon = makeService(options)
        self.assertEqual([signal.getsignal(s) for s in signals], handlers)
        self.assertIs(process.reapAllProcesses, reaper)
        self.assertEqual(os.umask(0o002), 0o002)
        assert isinstance(daemon, TwinetdService)
        log, control, listener = list(daemon)
        self.assertIsInstance(log, TwistdLog)
        assert isinstance(control, DaemonControl)
        self.assertEqual(control.umask, 0o022)
        self.assertEqual(list(daemon.records), ["good"])
        self.assertIs(daemon.getServiceNamed("good"), listener)

    def test_earlySignalsUnderTwistd(self) -> None:
        """
        As twistd's subcommand, the options record SIGHUP, SIGUSR1 and
        SIGUSR2 from then on (L{twinetd.earlysignals}); C{makeService}
        reads the configuration, which answers a SIGHUP that came before.
        Parsed by anything else (an application, this module's other
        tests), they set no handler.
        """
        from twisted.scripts.twistd import ServerOptions

        from twinetd import earlysignals
        from twinetd.tap import makeService

        signals = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
        for signum in signals:
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))
            signal.signal(signum, signal.SIG_DFL)
        self.patch(earlysignals, "_installed", None)
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        options = Options()
        options.parseOptions(["-c", folder])
        self.assertEqual([signal.getsignal(s) for s in signals], [signal.SIG_DFL] * 3)
        self.assertIsNone(options.earlySignals)
        options.parent = ServerOptions()
        options.parseOptions(["-c", folder])
        early = options.earlySignals
        assert isinstance(early, earlysignals.EarlySignals)
        self.assertEqual([signal.getsignal(s) for s in signals], [early] * 3)
        early(signal.SIGHUP, None)
        early(signal.SIGUSR2, None)
        options.parent = {"nodaemon": True, "umask": None}
        makeService(options)
        self.assertEqual(early.take(), [signal.SIGUSR2])

    def _spawner(self, *extra: str) -> object:
        """
        The spawner of the daemon C{makeService} builds with C{extra}
        options, over an empty folder.
        """
        from twinetd.tap import makeService

        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        options = Options()
        options.parseOptions(["-c", folder, *extra])
        options.parent = {"nodaemon": True, "umask": None}
        return makeService(options).runtime.spawner  # type: ignore[attr-defined]

    def test_spawnerProcessByDefault(self) -> None:
        """
        By default the daemon starts its programs itself while at most
        L{DEFAULT_SPAWNER_PROCESS_ABOVE} run, from the spawner process
        above (a L{BusySpawner}), which C{makeService} does not start.
        """
        from twinetd.spawn import BusySpawner
        from twinetd.tap import DEFAULT_SPAWNER_PROCESS_ABOVE

        spawner = self._spawner()
        assert isinstance(spawner, BusySpawner)
        self.assertEqual(spawner.threshold, DEFAULT_SPAWNER_PROCESS_ABOVE)
        self.assertEqual(DEFAULT_SPAWNER_PROCESS_ABOVE, 4)
        self.assertIsNone(spawner.processSpawner.pid)

    def test_spawnerProcess(self) -> None:
        """
        C{--spawner-process} gives the daemon a L{ProcessSpawner}, started
        at its first spawn (C{makeService} only builds);
        C{--no-spawner-process} a L{PosixSpawner}: every start from the
        daemon.
        """
        from twinetd.spawn import PosixSpawner
        from twinetd.spawnclient import ProcessSpawner

        spawner = self._spawner("--spawner-process")
        self.assertIs(type(spawner), ProcessSpawner)
        self.assertIsNone(getattr(spawner, "pid", None))
        self.assertIs(type(self._spawner("--no-spawner-process")), PosixSpawner)

    def test_spawnerProcessAbove(self) -> None:
        """
        C{--spawner-process-above N} gives the daemon a L{BusySpawner} with
        that threshold; a negative one is refused.
        """
        from twinetd.spawn import BusySpawner

        spawner = self._spawner("--spawner-process-above", "8")
        assert isinstance(spawner, BusySpawner)
        self.assertEqual(spawner.threshold, 8)
        self.assertIsNone(spawner.processSpawner.pid)
        with self.assertRaises(UsageError):
            Options().parseOptions(["-c", "/", "--spawner-process-above", "-1"])

    def test_spawnerOptionsContradict(self) -> None:
        """
        Any two of C{--spawner-process}, C{--spawner-process-above} and
        C{--no-spawner-process} are a usage error naming both.
        """
        above = ["--spawner-process-above", "0"]
        for first, second in (
            (["--spawner-process"], above),
            (["--no-spawner-process"], above),
            (["--spawner-process"], ["--no-spawner-process"]),
        ):
            with self.assertRaises(UsageError) as caught:
                Options().parseOptions(["-c", "/", *first, *second])
            self.assertIn(first[0], str(caught.exception))
            self.assertIn(second[0], str(caught.exception))

    def test_umaskGiven(self) -> None:
        """
        With twistd's C{--umask}, that umask stands (the control sets none).
        """
        from twinetd.tap import _umask

        options = Options()
        options.parent = {"umask": 0o077}
        self.assertIsNone(_umask(options))
        options.parent = {"umask": None}
        umask = os.umask(0o007)
        self.addCleanup(os.umask, umask)
        self.assertEqual(_umask(options), 0o027)
