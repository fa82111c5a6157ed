"""
Tests for L{twinetd.config}: meaning, defaults, includes and validation.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import tempfile

import attrs
from twisted.trial.unittest import SynchronousTestCase

from twinetd.config import (
    ATTRIBUTES,
    LoadResult,
    Lookups,
    attributes,
    loadPath,
    loadText,
    parseAddress,
)
from twinetd.model import (
    AddressRule,
    FileTarget,
    ServiceConfig,
    SocketType,
    SyslogTarget,
)

LOOKUPS = Lookups.fromTables(
    users={"root": (0, 0), "nobody": (65534, 65534), "alice": (1000, 1001)},
    groups={"root": 0, "nogroup": 65534, "staff": 50},
    services={("telnet", "tcp"): 23, ("echo", "tcp"): 7, ("http", "tcp"): 80},
    euid=0,
    environ={"PATH": "/bin", "LANG": "C"},
)

BASE = """\
 type = UNLISTED
 socket_type = stream
 wait = no
 user = nobody
 server = /bin/cat
"""


def service(
    body: str, name: str = "s", port: int | None = 20000, base: str = BASE
) -> str:
    portLine = " #\n" if port is None else f" port = {port}\n"
    return f"service {name}\n{{\n{base}{portLine}{body}}}\n"


def load(text: str, lookups: Lookups = LOOKUPS) -> LoadResult:
    return loadText(text, "/etc/t/f.conf", lookups)


def one(
    test: SynchronousTestCase, text: str, lookups: Lookups = LOOKUPS
) -> ServiceConfig:
    result = load(text, lookups)
    test.assertEqual([str(p) for p in result.errors], [])
    test.assertEqual(len(result.services), 1)
    return result.services[0]


def problems(text: str, lookups: Lookups = LOOKUPS) -> list[str]:
    return [str(p) for p in load(text, lookups).problems]


class BasicTests(SynchronousTestCase):
    def test_minimal(self) -> None:
        """
        A complete stream service loads; protocol comes from the socket
        type, id from the name, group from the user.
        """
        result = load(service(""))
        self.assertEqual(result.problems, ())
        config = result.services[0]
        self.assertEqual(config.name, "s")
        self.assertEqual(config.id, "s")
        self.assertEqual(config.protocol, "tcp")
        self.assertEqual(config.socketType, SocketType.STREAM)
        self.assertEqual(
            (config.uid, config.gid, config.user), (65534, 65534, "nobody")
        )
        self.assertEqual(config.server, "/bin/cat")
        self.assertEqual(config.port, 20000)
        self.assertEqual(config.source.line, 1)
        self.assertFalse(config.wait)

    def test_seedConfig(self) -> None:
        """
        The tutorial's configuration (upper-case C{TCP}, NAMEINARGS) loads.
        """
        text = (
            "service pyserv\n{\nflags = NAMEINARGS\ntype = UNLISTED\nport = 12345\n"
            "socket_type = stream\nprotocol = TCP\nwait = no\nuser = root\n"
            "server = /root/day10/example.py\nserver_args = /root/day10/example.py\n}\n"
        )
        config = one(self, text)
        self.assertEqual(config.protocol, "tcp")
        self.assertEqual(config.flags, frozenset({"NAMEINARGS"}))
        self.assertEqual(config.serverArgs, ("/root/day10/example.py",))

    def test_trailingCommentsRejected(self) -> None:
        """
        A C{#} after values is a value in xinetd; the error says so.
        """
        self.assertEqual(
            problems(service(" nice = 10 # ten\n")),
            [
                "/etc/t/f.conf:9: s: attribute nice expects 1 value, got 3 ('#' "
                "starts a comment only at the start of a line)"
            ],
        )

    def test_caseInsensitive(self) -> None:
        """
        Attribute names and enumerated values are case-insensitive, as
        xinetd's strcasecmp makes them.
        """
        config = one(
            self,
            "service s\n{\n TYPE = unlisted\n Port = 1\n socket_type = STREAM\n"
            " wait = NO\n user = nobody\n server = /bin/cat\n"
            " flags = ipv4 keepalive\n}\n",
        )
        self.assertEqual(config.types, frozenset({"UNLISTED"}))
        self.assertEqual(config.flags, frozenset({"IPv4", "KEEPALIVE"}))

    def test_protocolImpliesSocketType(self) -> None:
        base = " type = UNLISTED\n protocol = tcp\n wait = no\n user = nobody\n"
        base += " server = /bin/cat\n"
        config = one(self, service("", base=base))
        self.assertEqual(config.socketType, SocketType.STREAM)

    def test_listedService(self) -> None:
        """
        A service in the services database gets its port from there; a
        C{port} that agrees is fine.
        """
        base = " socket_type = stream\n wait = no\n user = nobody\n server = /bin/cat\n"
        config = one(self, service("", name="telnet", port=23, base=base))
        self.assertEqual(config.port, 23)
        text = "service echo\n{\n" + base + "}\n"
        self.assertEqual(one(self, text).port, 7)

    def test_everyAttribute(self) -> None:
        """
        Every attribute is parsed into its field.
        """
        body = """\
 id = other
 flags = NAMEINARGS REUSE NODELAY
 group = staff
 groups = yes
 instances = 10
 per_source = UNLIMITED
 cps = 50 10
 max_load = 2.5
 nice = -5
 umask = 022
 server_args = cat -u
 libwrap = wrapname
 only_from = 10.0.0.0 127.0.0.{1,2} ::1 example.com .example.org 192.168.1.7/24
 no_access = 10.1.2.3
 access_times = 2:00-9:00 12:00-24:00
 log_type = FILE /var/log/x 10K
 log_on_success = PID HOST EXIT DURATION
 log_on_failure = HOST ATTEMPT
 env = A=1 B=x=y
 passenv = PATH
 bind = 127.0.0.1
 banner = banner.txt
 banner_success = /b/s
 banner_fail = /b/f
 mdns = no
 v6only = yes
 deny_time = 60
 rlimit_as = 8M
 rlimit_cpu = 20
 rlimit_data = UNLIMITED
 rlimit_rss = 1k
 rlimit_stack = 1024
 rlimit_files = 100
 rpc_number = 100
 rpc_version = 2-4
"""
        result = load(service(body))
        self.assertEqual(result.errors, ())
        config = result.services[0]
        self.assertEqual(config.id, "other")
        self.assertEqual(config.flags, frozenset({"NAMEINARGS", "REUSE", "NODELAY"}))
        self.assertEqual((config.uid, config.gid, config.groups), (65534, 50, True))
        self.assertEqual((config.instances, config.perSource), (10, None))
        self.assertEqual((config.cps, config.maxLoad), ((50, 10), 2.5))
        self.assertEqual((config.nice, config.umask), (-5, 0o22))
        self.assertEqual(config.serverArgs, ("cat", "-u"))
        self.assertEqual(config.libwrap, "wrapname")
        assert config.onlyFrom is not None
        self.assertEqual(
            [str(r.network) if r.network else r.hostname for r in config.onlyFrom],
            [
                "10.0.0.0/8",
                "127.0.0.1/32",
                "127.0.0.2/32",
                "::1/128",
                "example.com",
                ".example.org",
                "192.168.1.0/24",
            ],
        )
        self.assertEqual(
            config.noAccess[0].network, ipaddress.ip_network("10.1.2.3/32")
        )
        self.assertEqual(config.accessTimes, ((120, 540), (720, 1440)))
        self.assertEqual(config.logType, FileTarget("/var/log/x", 10240, 10240 + 5120))
        self.assertEqual(
            config.logOnSuccess, frozenset({"PID", "HOST", "EXIT", "DURATION"})
        )
        self.assertEqual(config.logOnFailure, frozenset({"HOST", "ATTEMPT"}))
        self.assertEqual(config.env, (("A", "1"), ("B", "x=y")))
        self.assertEqual(config.passenv, ("PATH",))
        self.assertEqual(config.bind, "127.0.0.1")
        self.assertEqual(config.banner, "/etc/t/banner.txt")
        self.assertEqual((config.bannerSuccess, config.bannerFail), ("/b/s", "/b/f"))
        self.assertEqual(
            (config.mdns, config.v6only, config.denyTime), (False, True, 3600)
        )
        self.assertEqual(
            config.rlimits,
            (
                ("as", 8 * 1024 * 1024),
                ("cpu", 20),
                ("data", None),
                ("rss", 1024),
                ("stack", 1024),
                ("files", 100),
            ),
        )
        self.assertEqual((config.rpcNumber, config.rpcVersion), (100, (2, 4)))

    def test_recordFromTable(self) -> None:
        """
        Every record field but those the builder derives (name, header,
        user ids, rlimits) is set by an attribute of the one table.
        """
        tableFields = {spec.field for spec in ATTRIBUTES.values()}
        recordFields = set(attrs.fields_dict(ServiceConfig))
        self.assertEqual(
            recordFields - tableFields, {"name", "source", "user", "uid", "rlimits"}
        )

    def test_unsupportedWarnings(self) -> None:
        """
        Each attribute the runtime does not implement yet gives one warning
        where it is written, and still loads.
        """
        self.assertIn("mdns", attributes.UNSUPPORTED_ATTRIBUTES)
        self.assertNotIn("server", attributes.UNSUPPORTED_ATTRIBUTES)
        self.patch(
            attributes, "UNSUPPORTED_ATTRIBUTES", frozenset({"instances", "only_from"})
        )
        result = load(
            service(" instances = 3\n only_from = 1.2.3.4\n only_from += ::1\n")
        )
        self.assertEqual(result.errors, ())
        self.assertEqual(
            [str(p) for p in result.warnings],
            [
                "/etc/t/f.conf:9: s: warning: attribute instances is recognised "
                "but not supported yet; ignored",
                "/etc/t/f.conf:10: s: warning: attribute only_from is recognised "
                "but not supported yet; ignored",
            ],
        )

    def test_unsupportedFlag(self) -> None:
        self.assertEqual(
            problems(service(" flags = IDONLY\n")),
            [
                "/etc/t/f.conf:9: s: warning: flag IDONLY is recognised but not "
                "supported yet; ignored"
            ],
        )

    def test_logTypeSyslog(self) -> None:
        config = one(self, service(" log_type = SYSLOG local3 debug\n"))
        self.assertEqual(config.logType, SyslogTarget("local3", "debug"))
        config = one(self, service(" log_type = syslog daemon\n"))
        self.assertEqual(config.logType, SyslogTarget("daemon", "info"))

    def test_denyTimeWords(self) -> None:
        self.assertEqual(
            one(self, service(" deny_time = FOREVER\n")).denyTime, float("inf")
        )
        self.assertEqual(one(self, service(" deny_time = never\n")).denyTime, 0)

    def test_relativeServer(self) -> None:
        """
        A relative server path is resolved against the file's folder; a
        server that is not executable is a warning.
        """
        lookups = Lookups.fromTables(users={"nobody": (65534, 65534)}, executables=[])
        base = BASE.replace("/bin/cat", "bin/prog.py")
        result = load(service("", base=base), lookups)
        self.assertEqual(result.services[0].server, "/etc/t/bin/prog.py")
        self.assertEqual(
            [str(p) for p in result.problems],
            [
                "/etc/t/f.conf:7: s: warning: server /etc/t/bin/prog.py does not "
                "exist or is not executable"
            ],
        )

    def test_passenvGivenOrNot(self) -> None:
        """
        A service without passenv has None (drop-in mode then passes the
        whole environment, as xinetd); an empty passenv, or one whose names
        are all unknown, is an empty tuple (nothing passed).
        """
        self.assertIsNone(load(service("")).services[0].passenv)
        self.assertEqual(load(service(" passenv =\n")).services[0].passenv, ())
        unknown = load(service(" passenv = NOPE\n")).services[0]
        self.assertEqual(unknown.passenv, ())

    def test_passenvUnknown(self) -> None:
        result = load(service(" passenv = PATH NOPE\n"))
        self.assertEqual(result.services[0].passenv, ("PATH",))
        self.assertEqual(
            [str(p) for p in result.problems],
            [
                "/etc/t/f.conf:9: s: warning: passenv: NOPE is not in the "
                "daemon's environment; ignored"
            ],
        )

    def test_repeatedAttribute(self) -> None:
        """
        A single-valued attribute given twice keeps its first value, with a
        warning (xinetd: "attribute already set").
        """
        result = load(service(" nice = 1\n nice = 2\n"))
        self.assertEqual(result.services[0].nice, 1)
        self.assertEqual(
            [str(p) for p in result.problems],
            [
                "/etc/t/f.conf:10: s: warning: attribute nice is already set at "
                "line 9; this line is ignored"
            ],
        )

    def test_listOperators(self) -> None:
        """
        C{=} replaces, C{+=} adds, C{-=} removes.
        """
        config = one(
            self,
            service(
                " env = A=1\n env += B=2\n passenv = PATH\n passenv += LANG\n"
                " passenv -= PATH\n log_on_success = PID\n log_on_success += HOST\n"
                " log_on_success -= PID\n"
            ),
        )
        self.assertEqual(config.env, (("A", "1"), ("B", "2")))
        self.assertEqual(config.passenv, ("LANG",))
        self.assertEqual(config.logOnSuccess, frozenset({"HOST"}))

    def test_onlyFromEmpty(self) -> None:
        """
        C{only_from} without values admits nobody; not given, everyone.
        """
        self.assertEqual(one(self, service(" only_from =\n")).onlyFrom, ())
        self.assertIsNone(one(self, service("")).onlyFrom)


class AddressTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(
            parseAddress("0.0.0.0"),
            (AddressRule("0.0.0.0", network=ipaddress.ip_network("0.0.0.0/0")),),
        )
        self.assertEqual(
            parseAddress("128.138.12.0")[0].network,
            ipaddress.ip_network("128.138.12.0/24"),
        )
        self.assertEqual(
            [r.network for r in parseAddress("128.138.{10,12}")],
            [
                ipaddress.ip_network("128.138.10.0/24"),
                ipaddress.ip_network("128.138.12.0/24"),
            ],
        )
        self.assertEqual(
            parseAddress("1234::/46")[0].network, ipaddress.ip_network("1234::/46")
        )
        self.assertEqual(
            parseAddress("Host.Example.COM")[0].hostname, "host.example.com"
        )

    def test_bad(self) -> None:
        for text in (
            "1.2.3.999",
            "a,b",
            "1.2.{3,}",
            "1.2.3",
            "::g",
            "1.2.3.4/40",
            "a..b",
        ):
            result = load(service(f" no_access = {text}\n"))
            self.assertEqual(result.services, ())
            self.assertTrue(
                str(result.errors[0]).startswith(
                    f"/etc/t/f.conf:9: s: bad address: {text!r}"
                ),
                str(result.errors[0]),
            )


class BadValueTests(SynchronousTestCase):
    """
    Each bad value is an error naming file, line, service and attribute;
    the service is skipped and the others load.
    """

    cases = [
        ("wait = maybe", "bad value for wait: 'maybe' (expected yes or no)"),
        (
            "port = 99999",
            "bad value for port: '99999' (expected a number from 0 to 65535)",
        ),
        ("user = bob", "unknown user: bob"),
        ("group = wheel2", "unknown group: wheel2"),
        (
            "umask = 999",
            "bad value for umask: '999' (expected an octal number up to 777)",
        ),
        (
            "socket_type = tube",
            "bad socket_type 'tube' (expected stream, dgram, raw, seqpacket)",
        ),
        ("protocol = sctp", "bad value for protocol: 'sctp' (expected tcp or udp)"),
        ("instances = -1", "bad value for instances: '-1' (expected a number from 0)"),
        ("nice = high", "bad value for nice: 'high' (expected a number)"),
        ("groups = maybe", "bad value for groups: 'maybe' (expected yes or no)"),
        ("cps = 1 x", "bad value for cps: 'x' (expected a number)"),
        ("max_load = 0", "bad value for max_load: '0' (expected a number above 0)"),
        (
            "access_times = 25:00-26:00",
            "bad value for access_times: '25:00-26:00' (expected hour:min-hour:min)",
        ),
        ("log_type = FILE", "log_type FILE expects a path and maybe two limits"),
        (
            "log_type = SYSLOG nowhere",
            "bad syslog facility 'nowhere' (expected daemon, auth, authpriv, user, "
            "mail, lpr, news, uucp, ftp, local0, local1, local2, local3, local4, "
            "local5, local6, local7)",
        ),
        (
            "log_type = FILE /x 2K 1K",
            "log_type hard limit (1024) is less than soft limit (2048)",
        ),
        (
            "log_on_success = SIZE",
            "bad log_on_success value 'SIZE' (expected PID, HOST, USERID, EXIT, "
            "DURATION, TRAFFIC)",
        ),
        ("env = NOEQUALS", "bad value for env: 'NOEQUALS' has no '='"),
        (
            "rlimit_as = 8G",
            "bad value for rlimit_as: '8G' (expected a number, optionally "
            "followed by K or M)",
        ),
        ("rlimit_cpu = 1K", "bad value for rlimit_cpu: '1K' (expected a number)"),
        (
            "deny_time = soon",
            "bad value for deny_time: 'soon' (expected minutes, FOREVER or NEVER)",
        ),
        ("rpc_version = 4-2", "bad value for rpc_version: '4-2' (empty range)"),
        ("redirect = 1.2.3.4 nope", "bad port for redirect: 'nope'"),
        ("bind = not..valid", "bad address for bind: 'not..valid'"),
        (
            "type = WEIRD",
            "bad type 'WEIRD' (expected RPC, INTERNAL, TCPMUX, TCPMUXPLUS, UNLISTED)",
        ),
        (
            "flags = FAST",
            "bad flag 'FAST' (expected REUSE, INTERCEPT, NORETRY, IDONLY, "
            "NAMEINARGS, NODELAY, KEEPALIVE, NOLIBWRAP, SENSOR, IPv4, IPv6, LABELED)",
        ),
        ("server_args =", "attribute server_args needs at least one value"),
        ("cps = 1", "attribute cps expects 2 values, got 1"),
        ("wait += no", "operator += cannot be used with attribute wait"),
        ("env -= A=1", "operator -= cannot be used with attribute env"),
        ("colour = blue", "unknown attribute colour"),
        ("disabled = x", "attribute disabled is only allowed in defaults"),
        ("include = x", "include may not be used inside a service"),
    ]

    def test_badValues(self) -> None:
        for line, message in self.cases:
            attribute = line.split()[0]
            base = "".join(
                b for b in BASE.splitlines(True) if b.split()[0] != attribute
            )
            body = ("" if base == BASE else " #\n") + " " + line + "\n"
            port = None if attribute == "port" else 20001
            text = service(body, port=port, base=base) + service("", name="ok")
            result = load(text)
            self.assertEqual(
                [str(p) for p in result.errors],
                [f"/etc/t/f.conf:9: s: {message}"],
                line,
            )
            self.assertEqual([s.name for s in result.services], ["ok"], line)
            self.assertEqual(result.skipped, 1)
            self.assertEqual(result.errors[0].service, "s")
            self.assertIsNotNone(result.errors[0].attribute)


class ServiceCheckTests(SynchronousTestCase):
    def test_missingAttributes(self) -> None:
        self.assertEqual(
            problems("service s\n{\n type = UNLISTED\n}\n"),
            [
                "/etc/t/f.conf:1: s: missing attribute socket_type",
                "/etc/t/f.conf:1: s: missing attribute wait",
                "/etc/t/f.conf:1: s: missing attribute user",
                "/etc/t/f.conf:1: s: missing attribute server",
                "/etc/t/f.conf:1: s: missing attribute port (needed by type UNLISTED)",
            ],
        )

    def test_notInServicesDatabase(self) -> None:
        base = " socket_type = stream\n wait = no\n user = nobody\n server = /bin/cat\n"
        self.assertEqual(
            problems("service zz\n{\n" + base + "}\n"),
            [
                "/etc/t/f.conf:1: zz: service zz/tcp is not in the services "
                "database; add type = UNLISTED and a port"
            ],
        )

    def test_portDisagrees(self) -> None:
        base = " socket_type = stream\n wait = no\n user = nobody\n server = /bin/cat\n"
        self.assertEqual(
            problems(service("", name="telnet", port=2323, base=base)),
            [
                "/etc/t/f.conf:7: telnet: port 2323 disagrees with the services "
                "database (telnet/tcp is port 23)"
            ],
        )

    def test_unsupportedKinds(self) -> None:
        cases = [
            (" socket_type = raw\n", "socket_type raw is not supported yet"),
            (" type = RPC UNLISTED\n", "type RPC is not supported yet"),
            (" type = INTERNAL UNLISTED\n", "no such internal service: s/stream"),
        ]
        for line, message in cases:
            base = BASE.replace(" " + line.split()[0], " #", 1)
            result = load(service(line, base=base))
            self.assertEqual(result.services, ())
            self.assertEqual(
                [str(p) for p in result.errors], [f"/etc/t/f.conf:9: s: {message}"]
            )

    def test_unreadableBanner(self) -> None:
        """
        A banner that cannot be read is a warning (it is read again for each
        connection), not an error.
        """
        lookups = attrs.evolve(LOOKUPS, isReadable=lambda path: False)
        result = load(service(" banner = /srv/hello\n"), lookups)
        self.assertEqual(len(result.services), 1)
        self.assertEqual(
            [str(p) for p in result.problems],
            [
                "/etc/t/f.conf:9: s: warning: banner /srv/hello cannot be read; "
                "nothing is sent until it can"
            ],
        )

    def test_twinetdExtensions(self) -> None:
        """
        twinetd_mode and twinetd_stderr choose handoff and where its stderr
        goes; unset, they are None (the daemon's default).
        """
        [plain, handed] = load(
            service("", port=1)
            + service(" twinetd_mode = handoff\n twinetd_stderr = socket\n", "t", 2)
        ).services
        self.assertEqual((plain.handoff, plain.stderrToSocket), (None, None))
        self.assertEqual((handed.handoff, handed.stderrToSocket), (True, True))
        self.assertEqual(
            problems(service(" twinetd_mode = fork\n")),
            [
                "/etc/t/f.conf:9: s: bad value for twinetd_mode: 'fork' (expected "
                "bridge or handoff)"
            ],
        )

    def test_nameInArgsNeedsArgs(self) -> None:
        self.assertEqual(
            problems(service(" flags = NAMEINARGS\n")),
            [
                "/etc/t/f.conf:9: s: flag NAMEINARGS needs server_args (whose "
                "first word is argv[0])"
            ],
        )

    def test_duplicateId(self) -> None:
        text = service("", port=1) + service(" id = s\n", name="t", port=2)
        result = load(text)
        self.assertEqual([s.name for s in result.services], ["s"])
        self.assertEqual(
            [str(p) for p in result.errors],
            [
                "/etc/t/f.conf:10: t: duplicate service id s (already used by the "
                "service at /etc/t/f.conf:1); skipped"
            ],
        )

    def test_samePort(self) -> None:
        result = load(service("", port=1) + service("", name="t", port=1))
        self.assertEqual(
            [str(p) for p in result.errors],
            [
                "/etc/t/f.conf:10: t: port 1/tcp is already used by service s at "
                "/etc/t/f.conf:1; skipped"
            ],
        )

    def test_didYouMean(self) -> None:
        """
        An unknown attribute, user or group close to a known one gets a
        suggestion; one close to nothing does not.
        """
        self.assertEqual(
            problems(service(" only_form = 1.2.3.4\n colour = red\n")),
            [
                "/etc/t/f.conf:9: s: unknown attribute only_form (did you mean "
                "only_from?)",
                "/etc/t/f.conf:10: s: unknown attribute colour",
            ],
        )
        base = BASE.replace("user = nobody", "user = nobdy")
        self.assertEqual(
            problems(service(" group = nogrup\n", base=base)),
            [
                "/etc/t/f.conf:6: s: unknown user: nobdy (did you mean nobody?)",
                "/etc/t/f.conf:9: s: unknown group: nogrup (did you mean nogroup?)",
            ],
        )

    def test_samePortOtherFamily(self) -> None:
        """
        An IPv4 service and an IPv6-only one may share a port (xinetd's two
        entries with C{flags = IPv4} and C{flags = IPv6}); a dual-stack one
        clashes with either.
        """
        four = service(" flags = IPv4\n", port=1)
        six = service(" flags = IPv6\n v6only = yes\n", name="t", port=1)
        both = service("", name="u", port=1)
        result = load(four + six + both)
        self.assertEqual([s.name for s in result.services], ["s", "t"])
        self.assertEqual(
            [str(p) for p in result.errors],
            [
                "/etc/t/f.conf:22: u: port 1/tcp is already used by service s at "
                "/etc/t/f.conf:1; skipped"
            ],
        )

    def test_disable(self) -> None:
        """
        C{disable = yes} skips a service quietly, even a broken one.
        """
        result = load(
            service(" disable = yes\n colour = x\n")
            + service(" disable = no\n", name="t", port=2)
        )
        self.assertEqual(result.problems, ())
        self.assertEqual([s.name for s in result.services], ["t"])
        self.assertEqual((result.disabled, result.disabledIds), (1, ("s",)))


class UserTests(SynchronousTestCase):
    def test_numericUser(self) -> None:
        config = one(self, service("", base=BASE.replace("nobody", "1000")))
        self.assertEqual((config.uid, config.gid, config.user), (1000, 1001, "alice"))
        config = one(self, service("", base=BASE.replace("nobody", "4242")))
        self.assertEqual((config.uid, config.gid), (4242, 4242))

    def test_notRootSameUser(self) -> None:
        lookups = Lookups.fromTables(users={"alice": (1000, 1001)}, euid=1000)
        config = one(self, service("", base=BASE.replace("nobody", "alice")), lookups)
        self.assertEqual(config.uid, 1000)

    def test_notRootNoUser(self) -> None:
        lookups = Lookups.fromTables(euid=1000)
        config = one(
            self, service("", base=BASE.replace(" user = nobody\n", "")), lookups
        )
        self.assertEqual((config.uid, config.gid, config.user), (None, None, None))

    def test_notRootOtherUser(self) -> None:
        lookups = Lookups.fromTables(users={"nobody": (65534, 65534)}, euid=1000)
        self.assertEqual(
            problems(service(""), lookups),
            [
                "/etc/t/f.conf:6: s: user nobody differs from the daemon's user; "
                "run as root to switch users"
            ],
        )


class DefaultsTests(SynchronousTestCase):
    def test_applied(self) -> None:
        """
        Defaults fill what a service does not set; cumulative ones take
        C{=} as C{+=} and services modify them with C{+=}/C{-=}.
        """
        text = (
            "defaults\n{\n umask = 077\n passenv = PATH\n passenv = LANG\n"
            " groups = yes\n}\n"
            + service(" passenv -= PATH\n")
            + service(" umask = 002\n", name="t", port=2)
        )
        result = load(text)
        self.assertEqual(result.errors, ())
        s, t = result.services
        self.assertEqual((s.umask, s.passenv, s.groups), (0o77, ("LANG",), True))
        self.assertEqual((t.umask, t.passenv), (0o2, ("PATH", "LANG")))

    def test_unsupportedWarnsOnce(self) -> None:
        self.patch(attributes, "UNSUPPORTED_ATTRIBUTES", frozenset({"instances"}))
        text = (
            "defaults\n{\n instances = 5\n}\n"
            + service("")
            + service("", name="t", port=2)
        )
        result = load(text)
        self.assertEqual(
            [str(p) for p in result.problems],
            [
                "/etc/t/f.conf:3: defaults: warning: attribute instances is "
                "recognised but not supported yet; ignored"
            ],
        )
        self.assertEqual([s.instances for s in result.services], [5, 5])

    def test_notAllowed(self) -> None:
        self.assertEqual(
            problems("defaults\n{\n user = root\n colour = x\n umask = 9\n}\n"),
            [
                "/etc/t/f.conf:3: defaults: attribute user is not allowed in "
                "defaults; ignored",
                "/etc/t/f.conf:4: defaults: unknown attribute colour; ignored",
                "/etc/t/f.conf:5: defaults: bad value for umask: '9' (expected an "
                "octal number up to 777); ignored",
            ],
        )

    def test_enabledDisabled(self) -> None:
        services = service("", name="a", port=1) + service("", name="b", port=2)
        services += service("", name="c", port=3)
        result = load("defaults\n{\n disabled = b\n}\n" + services)
        self.assertEqual([s.name for s in result.services], ["a", "c"])
        self.assertEqual(result.disabledIds, ("b",))
        result = load("defaults\n{\n enabled = a\n enabled = c\n}\n" + services)
        self.assertEqual([s.name for s in result.services], ["a", "c"])
        self.assertEqual(result.problems, ())

    def test_secondDefaults(self) -> None:
        self.assertEqual(
            problems("defaults\n{\n}\ndefaults\n{\n}\n"),
            [
                "/etc/t/f.conf:4: defaults: only one defaults entry is allowed per "
                "file (the first is at /etc/t/f.conf:1); this one is ignored"
            ],
        )


class FolderTests(SynchronousTestCase):
    def makeFolder(self, files: dict[str, str]) -> str:
        # Not trial's mktemp, which makes folders in the checkout under pytest.
        path = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, path)
        for name, text in files.items():
            full = os.path.join(path, name)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
        return path

    def test_folder(self) -> None:
        """
        Every file, in C order, skipping names with a dot or ending in
        C{~}; subfolders are skipped with a warning.
        """
        folder = self.makeFolder(
            {
                "b": service("", name="b", port=2),
                "B": service("", name="B", port=3),
                "a": service("", name="a", port=1),
                "x.rpmsave": service("", name="x", port=4),
                "y~": service("", name="y", port=5),
                "sub/z": service("", name="z", port=6),
            }
        )
        result = loadPath(folder, LOOKUPS)
        self.assertEqual([s.name for s in result.services], ["B", "a", "b"])
        self.assertEqual(
            [str(p) for p in result.problems],
            [f"{folder}: warning: {folder}/sub is not a regular file; skipped"],
        )

    def test_mainFileWithIncludes(self) -> None:
        """
        An xinetd.conf with defaults and a relative includedir works; include
        and includefile name files relative to the including file.
        """
        folder = self.makeFolder(
            {
                "xinetd.conf": "defaults\n{\n umask = 077\n}\nincludedir xinetd.d\n"
                "include extra/one\nincludefile extra/two\n",
                "xinetd.d/a": service("", name="a", port=1),
                "extra/one": service("", name="one", port=2),
                "extra/two": service("", name="two", port=3),
            }
        )
        result = loadPath(os.path.join(folder, "xinetd.conf"), LOOKUPS)
        self.assertEqual(result.problems, ())
        self.assertEqual([s.name for s in result.services], ["a", "one", "two"])
        self.assertEqual({s.umask for s in result.services}, {0o77})

    def test_problemsInFileOrder(self) -> None:
        folder = self.makeFolder(
            {
                "main": "service s\n{\n}\ninclude inc\nservice t\n{\n}\n",
                "inc": "service u\n{\n}\n",
            }
        )
        result = loadPath(os.path.join(folder, "main"), LOOKUPS)
        self.assertEqual(
            [(p.service, p.location.file.rsplit("/", 1)[1]) for p in result.errors][
                ::4
            ],
            [("s", "main"), ("u", "inc"), ("t", "main")],
        )

    def test_unreadable(self) -> None:
        folder = self.makeFolder({"main": "includedir nope\ninclude gone\n"})
        result = loadPath(os.path.join(folder, "main"), LOOKUPS)
        self.assertEqual(
            [str(p) for p in result.problems],
            [
                f"{folder}/main:1: cannot read folder {folder}/nope: No such file "
                "or directory",
                f"{folder}/main:2: cannot read {folder}/gone: No such file or "
                "directory",
            ],
        )
        missing = os.path.join(folder, "missing")
        self.assertEqual(
            [str(p) for p in loadPath(missing, LOOKUPS).problems],
            [f"{missing}: cannot read {missing}: No such file or directory"],
        )

    def test_cycle(self) -> None:
        folder = self.makeFolder(
            {"a": "include b\n" + service("", name="a"), "b": "include a\n"}
        )
        result = loadPath(os.path.join(folder, "a"), LOOKUPS)
        self.assertEqual([s.name for s in result.services], ["a"])
        self.assertEqual(
            [str(p) for p in result.problems],
            [f"{folder}/b:1: include cycle: {folder}/a includes itself"],
        )

    def test_syntaxErrorsCountAsSkipped(self) -> None:
        result = load("service a {\n}\n" + service(""))
        self.assertEqual(result.skipped, 1)
        self.assertEqual([s.name for s in result.services], ["s"])


class SystemLookupsTests(SynchronousTestCase):
    def test_system(self) -> None:
        """
        The real lookups answer from the system's databases.
        """
        lookups = Lookups.system()
        root = lookups.user("root")
        assert root is not None
        self.assertEqual((root.uid, root.name), (0, "root"))
        self.assertEqual(lookups.user("0"), root)
        self.assertIsNone(lookups.user("no-such-user-twinetd"))
        self.assertEqual(lookups.group("0"), 0)
        self.assertIsNone(lookups.group("no-such-group-twinetd"))
        self.assertIsNone(lookups.servicePort("no-such-service-twinetd", "tcp"))
        self.assertEqual(lookups.euid, os.geteuid())

    def test_defaultLookups(self) -> None:
        """
        Without C{lookups}, C{loadText} and C{loadPath} use the system's.
        """
        text = service(" user = -\n", name="mine")
        self.assertEqual([c.id for c in loadText(text, "/etc/t/f").services], ["mine"])
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        with open(os.path.join(folder, "mine"), "w") as f:
            f.write(text)
        self.assertEqual([c.id for c in loadPath(folder).services], ["mine"])


class FailedTests(SynchronousTestCase):
    """
    L{LoadResult.failed}: the services left out for errors, by id, each
    with its first error (what a reload needs to keep their previous
    definition).
    """

    def test_attributeError(self) -> None:
        result = load(
            service(" only_form = 1.2.3.4\n bogus = 1\n", name="s")
            + service(" id = other\n nice = lots\n", name="t", port=20001)
            + service("", name="good", port=20002)
        )
        self.assertEqual(
            [(i, str(p)) for i, p in result.failed],
            [
                (
                    "s",
                    "/etc/t/f.conf:9: s: unknown attribute only_form (did you "
                    "mean only_from?)",
                ),
                ("other", str(result.failed[1][1])),
            ],
        )
        self.assertIn("nice", str(result.failed[1][1]))
        self.assertEqual([c.id for c in result.services], ["good"])

    def test_syntaxError(self) -> None:
        """
        A service dropped for a syntax error is failed under its name.
        """
        result = load("service s\n{\n type = UNLISTED\n port = 1\n")
        self.assertEqual([i for i, _ in result.failed], ["s"])
        self.assertTrue(result.failed[0][1].isError)

    def test_disabledIsNotFailed(self) -> None:
        result = load(service(" disable = yes\n bogus = 1\n"))
        self.assertEqual(result.failed, ())
