"""
Tests for L{twinetd.config.inetdconf}: inetd.conf lines (xinetd's
C{-inetd_compat}) as services, alone and beside an xinetd configuration.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from twinetd.config import LoadResult, Lookups, loadPath
from twinetd.model import ServiceConfig, SocketType

LOOKUPS = Lookups.fromTables(
    users={"root": (0, 0), "nobody": (65534, 65534)},
    groups={"root": 0, "nogroup": 65534, "tty": 5},
    services={
        (name, protocol): port
        for name, port in (
            ("echo", 7),
            ("discard", 9),
            ("daytime", 13),
            ("chargen", 19),
            ("time", 37),
            ("finger", 79),
            ("telnet", 23),
            ("tftp", 69),
            ("ftp", 21),
        )
        for protocol in ("tcp", "udp")
    },
)

# As openbsd-inetd's inetd.conf(5) and Debian's update-inetd write them.
OPENBSD = """\
# /etc/inetd.conf: see inetd(8) for further informations.
#
# <service_name> <sock_type> <proto> <flags> <user> <server_path> <args>
#:INTERNAL: Internal services
echo		stream	tcp	nowait	root	internal
echo		dgram	udp	wait	root	internal
discard		stream	tcp	nowait	root	internal
daytime		stream	tcp6	nowait	root	internal
time		dgram	udp	wait	root	internal

#:INFO: Info services
finger		stream	tcp	nowait.400	nobody	/usr/sbin/in.fingerd	in.fingerd -w
telnet		stream	tcp	nowait	root:tty	/usr/sbin/in.telnetd	in.telnetd
telnet		stream	tcp6	nowait	root.tty	/usr/sbin/in.telnetd	in.telnetd
tftp		dgram	udp	wait	nobody	/usr/sbin/in.tftpd	in.tftpd /srv/tftp
#<off># ftp	stream	tcp	nowait	root	/usr/sbin/ftpd	ftpd
"""

# As Twisted's own inetd (twisted.runner.inetdtap) documents it: a port
# number for a name, and a comment after the fields.
TWISTED = """\
8123 stream tcp wait nobody /bin/cat - # an echo server
8124 stream tcp nowait nobody /bin/cat
"""


class InetdConfTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder)

    def load(self, inetd: str, xinetd: str | None = None) -> LoadResult:
        inetdPath = os.path.join(self.folder, "inetd.conf")
        with open(inetdPath, "w") as f:
            f.write(inetd)
        path = None
        if xinetd is not None:
            path = os.path.join(self.folder, "xinetd.conf")
            with open(path, "w") as f:
                f.write(xinetd)
        return loadPath(path, LOOKUPS, inetdConf=inetdPath)

    def messages(self, result: LoadResult) -> list[str]:
        return [str(p).replace(self.folder, "D") for p in result.problems]

    def byId(self, result: LoadResult) -> dict[str, ServiceConfig]:
        return {s.id: s for s in result.services}

    def test_openbsdInetd(self) -> None:
        """
        Every line of an openbsd-inetd file serves: internal services under
        xinetd's ids, argv[0] from the line (NAMEINARGS), groups as inetd's
        initgroups gives them, C{tcp} on IPv4 and C{tcp6} on IPv6 only, so
        both lines of one service can listen.
        """
        result = self.load(OPENBSD)
        self.assertEqual(
            self.messages(result),
            [
                "D/inetd.conf:12: finger: warning: nowait.400: the limit of 400 "
                "servers a minute is not supported; ignored (cps applies)"
            ],
        )
        services = self.byId(result)
        self.assertEqual(
            sorted(services),
            [
                "daytime-stream",
                "discard-stream",
                "echo-dgram",
                "echo-stream",
                "finger",
                "telnet",
                "telnet/tcp6",
                "tftp",
                "time-dgram",
            ],
        )
        echo = services["echo-dgram"]
        self.assertEqual(
            (echo.name, echo.socketType, echo.protocol, echo.wait, echo.port),
            ("echo", SocketType.DGRAM, "udp", True, 7),
        )
        self.assertTrue(echo.isInternal)
        finger = services["finger"]
        self.assertEqual(finger.server, "/usr/sbin/in.fingerd")
        self.assertEqual(finger.serverArgs, ("in.fingerd", "-w"))
        self.assertTrue(finger.nameInArgs)
        self.assertEqual((finger.uid, finger.gid, finger.groups), (65534, 65534, True))
        self.assertEqual(
            (finger.wait, finger.port, finger.flags & {"IPv4"}), (False, 79, {"IPv4"})
        )
        telnet, telnet6 = services["telnet"], services["telnet/tcp6"]
        self.assertEqual((telnet.uid, telnet.gid), (0, 5))
        self.assertEqual((telnet6.uid, telnet6.gid), (0, 5))
        self.assertEqual(
            (telnet.flags & {"IPv4", "IPv6"}, telnet.v6only), ({"IPv4"}, None)
        )
        self.assertEqual(
            (telnet6.flags & {"IPv4", "IPv6"}, telnet6.v6only), ({"IPv6"}, True)
        )
        self.assertEqual(services["tftp"].serverArgs, ("in.tftpd", "/srv/tftp"))

    def test_twistedInetd(self) -> None:
        """
        Twisted's inetd.conf: a port number in place of the name; a line
        without arguments runs the program under its own name.
        """
        result = self.load(TWISTED)
        self.assertEqual(result.problems, ())
        first, second = result.services
        self.assertEqual((first.name, first.port, first.wait), ("8123", 8123, True))
        self.assertEqual((first.server, first.serverArgs), ("/bin/cat", ("-",)))
        self.assertEqual(
            (second.port, second.serverArgs, second.nameInArgs), (8124, (), False)
        )

    def test_problems(self) -> None:
        """
        Each bad line is a C{file:line: service: message} error that skips
        only that line; RPC lines are reported as not supported.
        """
        text = (
            "rstatd/1-3 dgram rpc/udp wait root /usr/sbin/rpc.rstatd rpc.rstatd\n"
            "echo stream\n"
            "echo stream sctp nowait root internal\n"
            "echo stream tcp maybe root internal\n"
            "echo stream tcp nowait nosuchuser internal\n"
            "echo stream tcp nowait root.nosuchgroup internal\n"
            "nosuchservice stream tcp nowait root /bin/cat cat\n"
            "finger stream tcp nowait root internal\n"
            "echo stream tcp nowait root internal\n"
        )
        result = self.load(text)
        self.assertEqual(
            self.messages(result),
            [
                "D/inetd.conf:1: rstatd/1-3: RPC services are not supported; line "
                "skipped",
                "D/inetd.conf:2: echo: expected at least 6 fields (name "
                "socket-type protocol wait user server [argv...]), got 2",
                "D/inetd.conf:3: echo: bad protocol 'sctp' (expected tcp, tcp4, "
                "udp, udp4, tcp6, udp6); line skipped",
                "D/inetd.conf:4: echo: bad value for wait: 'maybe' (expected wait "
                "or nowait, maybe .MAX)",
                "D/inetd.conf:5: echo: unknown user: nosuchuser",
                "D/inetd.conf:6: echo: unknown group: nosuchgroup (did you mean "
                "nogroup?)",
                "D/inetd.conf:7: nosuchservice: service nosuchservice/tcp is not in "
                "the services database (give its port number as the name)",
                "D/inetd.conf:8: finger: no such internal service: finger/stream",
            ],
        )
        self.assertEqual([s.id for s in result.services], ["echo-stream"])

    def test_withXinetdConfig(self) -> None:
        """
        Beside C{-c}: the xinetd file's defaults apply to the inetd.conf
        services, which come after its own; a clash is an error at the
        inetd.conf line.
        """
        xinetd = (
            "defaults\n{\n umask = 077\n}\n"
            "service finger\n{\n socket_type = stream\n wait = no\n user = nobody\n"
            " server = /bin/cat\n}\n"
        )
        inetd = (
            "finger stream tcp nowait nobody /bin/cat cat\n"
            "echo stream tcp nowait root internal\n"
        )
        result = self.load(inetd, xinetd)
        self.assertEqual([s.id for s in result.services], ["finger", "echo-stream"])
        self.assertEqual({s.umask for s in result.services}, {0o77})
        [problem] = self.messages(result)
        self.assertTrue(
            problem.startswith(
                "D/inetd.conf:1: finger: duplicate service id finger (already used "
                "by the service at D/xinetd.conf:5)"
            ),
            problem,
        )

    def test_unreadable(self) -> None:
        missing = os.path.join(self.folder, "missing")
        result = loadPath(None, LOOKUPS, inetdConf=missing)
        self.assertEqual(
            self.messages(result),
            ["D/missing: cannot read D/missing: No such file or directory"],
        )
