"""
C{twinetd_listen} and C{twinetd_proxy_from}: the descriptions read and
checked (L{twinetd.config.endpoints}), what each kind of service accepts
over them (the builder), and systemd's sockets found
(L{twinetd.listeners.endpoints}).
"""

from __future__ import annotations

import os

import attrs
from twisted.trial.unittest import SynchronousTestCase

from twinetd.config import Lookups
from twinetd.config.endpoints import parseListen, tokenize
from twinetd.config.values import BadValue
from twinetd.listeners.endpoints import EndpointError, _passedSocket, endpointFor
from twinetd.model import ListenSpec

from .test_config import LOOKUPS, load, one, problems, service


class TokenizeTests(SynchronousTestCase):
    def test_twistedSyntax(self) -> None:
        """
        As Twisted splits descriptions: C{:} separates, C{=} makes a
        keyword (its value may hold C{=}), a backslash quotes.
        """
        self.assertEqual(
            tokenize(r"unix:/run/a\:b.sock:mode=660:key=a=b"),
            (["unix", "/run/a:b.sock"], [("mode", "660"), ("key", "a=b")]),
        )
        self.assertEqual(tokenize("tcp:8080"), (["tcp", "8080"], []))


class ParseTests(SynchronousTestCase):
    def test_kinds(self) -> None:
        self.assertEqual(
            parseListen("tcp:8080:interface=127.0.0.1", "/etc/t"),
            ListenSpec(
                "tcp:8080:interface=127.0.0.1",
                "tcp",
                address="8080",
                options=(("interface", "127.0.0.1"),),
            ),
        )
        self.assertEqual(parseListen("tcp:port=81", "/").address, "81")
        spec = parseListen("haproxy:tcp6:8080", "/")
        self.assertEqual(
            (spec.kind, spec.proxy, spec.plainSocket), ("tcp6", True, False)
        )
        systemd = parseListen("systemd:domain=UNIX:name=finger", "/")
        self.assertTrue(systemd.unix)

    def test_relativePaths(self) -> None:
        """
        Paths are relative to the folder of the file that names them, as
        for C{server}.
        """
        unix = parseListen("unix:x.sock:mode=660", "/etc/t")
        self.assertEqual((unix.address, unix.option("mode")), ("/etc/t/x.sock", "660"))
        tls = parseListen("ssl:443:privateKey=k.pem:caCerts=/ca.pem", "/etc/t")
        self.assertEqual(tls.option("privateKey"), "/etc/t/k.pem")
        self.assertEqual(tls.option("caCerts"), "/ca.pem")
        self.assertFalse(tls.plainSocket)

    def test_errors(self) -> None:
        for text, why in [
            ("", "no endpoint type"),
            ("udp:53", "unknown endpoint type 'udp'"),
            ("haproxy:haproxy:tcp:1", "haproxy: twice"),
            ("tcp:http", "expected a port"),
            ("tcp:70000", "expected a port"),
            ("tcp:1:2", "too many arguments"),
            ("tcp:1:mode=1", "unknown option 'mode'"),
            ("tcp:1:backlog=1:backlog=2", "an option twice"),
            ("unix:", "expected a socket path"),
            ("unix:/x:mode=999", "octal"),
            ("ssl:443", "privateKey=FILE is needed"),
            ("ssl:443:privateKey=k:verifyClient=always", "optional or require"),
            ("ssl:443:privateKey=k:verifyClient=require", "needs caCerts"),
            ("systemd:index=0", "domain="),
            ("systemd:domain=INET", "exactly one of index"),
            ("systemd:domain=INET:index=0:name=x", "exactly one of index"),
            ("haproxy:ssl:443:privateKey=k", "haproxy: over ssl: is not supported"),
        ]:
            with self.assertRaises(BadValue, msg=text) as caught:
                parseListen(text, "/")
            self.assertIn(why, str(caught.exception), text)

    def test_tlsNeedsTheExtra(self) -> None:
        """
        Without pyOpenSSL and service_identity, an C{ssl:} listener is an
        error that names the extra to install.
        """
        with self.assertRaises(BadValue) as caught:
            parseListen("ssl:443:privateKey=k", "/", tlsAvailable=False)
        self.assertIn("pip install 'twinetd[tls]'", str(caught.exception))
        parseListen("tcp:443", "/", tlsAvailable=False)


NO_TLS = attrs.evolve(LOOKUPS, tlsAvailable=lambda: False)


class ServiceTests(SynchronousTestCase):
    def test_listenInsteadOfPort(self) -> None:
        """
        A service with C{twinetd_listen} needs no port (or service database
        entry); C{+=} adds endpoints.
        """
        config = one(
            self,
            service(
                " twinetd_listen = unix:/run/s.sock\n twinetd_listen += tcp:8080\n",
                port=None,
            ),
        )
        self.assertEqual(
            [spec.text for spec in config.listen], ["unix:/run/s.sock", "tcp:8080"]
        )
        self.assertEqual(config.port, 0)

    def test_sameEndpointClashes(self) -> None:
        text = service(" twinetd_listen = tcp:8080\n", name="a") + service(
            " twinetd_listen = tcp:8080\n", name="b"
        )
        self.assertIn(
            "/etc/t/f.conf:11: b: twinetd_listen tcp:8080 is already used by service a",
            problems(text)[0],
        )

    def test_tlsExtraMissing(self) -> None:
        [problem] = problems(
            service(" twinetd_listen = ssl:8443:privateKey=k.pem\n"), NO_TLS
        )
        self.assertRegex(
            problem,
            r"^/etc/t/f.conf:\d+: s: twinetd_listen 'ssl:8443:privateKey=k.pem': "
            r"ssl: listeners need pyOpenSSL and service_identity.*twinetd\[tls\]",
        )

    def test_datagramRefused(self) -> None:
        text = service(
            " twinetd_listen = tcp:1\n",
            base=" type = UNLISTED\n socket_type = dgram\n wait = yes\n"
            " user = nobody\n server = /bin/cat\n",
        )
        self.assertIn("twinetd_listen is for stream services", problems(text)[0])

    def test_waitYesRefused(self) -> None:
        text = service(
            " twinetd_listen = tcp:1\n",
            base=" type = UNLISTED\n socket_type = stream\n wait = yes\n"
            " user = nobody\n server = /bin/cat\n",
        )
        self.assertIn("twinetd_listen is for wait = no services", problems(text)[0])

    def test_handoffNeedsAPlainSocket(self) -> None:
        """
        A handed-off program gets the socket: not over TLS, nor behind a
        PROXY header; over UNIX or systemd sockets it does.
        """
        tls = service(
            " twinetd_mode = handoff\n twinetd_listen = ssl:8443:privateKey=k\n"
        )
        self.assertIn("twinetd_mode = handoff needs a plain socket", problems(tls)[0])
        proxy = service(
            " twinetd_mode = handoff\n twinetd_listen = haproxy:tcp:80\n"
            " twinetd_proxy_from = 10.0.0.1\n"
        )
        self.assertIn("a PROXY header the daemon reads first", problems(proxy)[0])
        one(
            self,
            service(
                " twinetd_mode = handoff\n twinetd_listen = unix:/s\n"
                " twinetd_listen += systemd:domain=INET:index=0\n"
            ),
        )

    def test_proxyNeedsBalancers(self) -> None:
        self.assertIn(
            "haproxy: listeners need twinetd_proxy_from",
            problems(service(" twinetd_listen = haproxy:tcp:80\n"))[0],
        )
        config = one(
            self,
            service(
                " twinetd_listen = haproxy:tcp:80\n"
                " twinetd_proxy_from = 10.0.0.0/8 192.168.{1,2}\n"
            ),
        )
        assert config.proxyFrom is not None
        self.assertEqual(len(config.proxyFrom), 3)

    def test_proxyFromAddressesOnly(self) -> None:
        [problem] = problems(
            service(
                " twinetd_listen = haproxy:tcp:80\n"
                " twinetd_proxy_from = lb.example.com\n"
            )
        )
        self.assertIn("addresses and ranges only, not host names", problem)

    def test_proxyFromWithoutProxyWarns(self) -> None:
        result = load(service(" twinetd_proxy_from = 10.0.0.1\n"))
        self.assertEqual(len(result.services), 1)
        [warning] = result.warnings
        self.assertIn("has no effect without a haproxy: listener", str(warning))

    def test_unixHasNoAddress(self) -> None:
        """
        C{only_from}/C{no_access} in a service with a UNIX listener are an
        error; from C{defaults} they apply to its network listeners only.
        """
        for rule in ("only_from = 127.0.0.1", "no_access = 10.0.0.1"):
            text = service(f" twinetd_listen = unix:/s\n {rule}\n")
            self.assertIn("does not apply to a UNIX-socket client", problems(text)[0])
        defaults = "defaults\n{\n only_from = 127.0.0.1\n}\n"
        one(self, defaults + service(" twinetd_listen = unix:/s\n"))


class SystemdTests(SynchronousTestCase):
    def environ(self, **extra: str) -> dict[str, str]:
        return {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", **extra}

    def test_byIndexAndName(self) -> None:
        byIndex = parseListen("systemd:domain=INET:index=1", "/")
        self.assertEqual(_passedSocket(None, byIndex, self.environ()), 4)
        byName = parseListen("systemd:domain=INET:name=b", "/")
        environ = self.environ(LISTEN_FDNAMES="a:b")
        self.assertEqual(_passedSocket(None, byName, environ), 4)

    def test_notPassed(self) -> None:
        """
        Sockets passed to another process (a forked daemon), or not at all,
        are an error that says what to look at.
        """
        spec = parseListen("systemd:domain=INET:index=0", "/")
        with self.assertRaises(EndpointError) as caught:
            endpointFor(None, spec, {"LISTEN_PID": "1", "LISTEN_FDS": "1"})
        self.assertIn("systemd passed no socket with index 0", str(caught.exception))
        with self.assertRaises(EndpointError):
            endpointFor(None, spec, {})
        named = parseListen("systemd:domain=INET:name=web", "/")
        with self.assertRaises(EndpointError):
            endpointFor(None, named, self.environ(LISTEN_FDNAMES="a:b"))

    def test_tlsFilesMissing(self) -> None:
        spec = parseListen("ssl:0:privateKey=/nonexistent/key.pem", "/")
        with self.assertRaises(EndpointError) as caught:
            endpointFor(None, spec)
        self.assertIn("cannot read /nonexistent/key.pem", str(caught.exception))


class LookupsTests(SynchronousTestCase):
    def test_tlsAvailableHere(self) -> None:
        """
        The test environment has the tls extra (dev.py installs it).
        """
        self.assertTrue(Lookups.system().tlsAvailable())
