"""
L{twinetd.launch}: what to run for one connection, as xinetd builds it.
"""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from twinetd.errors import SourceLocation
from twinetd.launch import Planner, argvFor, environmentFor, planLaunch
from twinetd.model import Peer, ServiceConfig, SocketType, TLSClient, UnixCredentials

CONFIG = ServiceConfig(
    name="svc",
    source=SourceLocation("/etc/xinetd.d/svc", 1),
    socketType=SocketType.STREAM,
    wait=False,
    port=7000,
    server="/usr/sbin/in.svcd",
    serverArgs=("-l", "-v"),
)
PEER = Peer("tcp", "::ffff:192.0.2.7", 40000, "::ffff:127.0.0.1", 7000)
UNIX_PEER = Peer(
    "unix",
    "<unix uid=1000 pid=4242>",
    0,
    "/run/svc.sock",
    0,
    credentials=UnixCredentials(pid=4242, uid=1000, gid=100),
)
TLS = TLSClient(
    "TLSv1.3",
    "TLS_AES_256_GCM_SHA384",
    "SUCCESS",
    "CN=client,O=Example",
    "CN=ca",
    "1F",
)


class ArgvTests(SynchronousTestCase):
    def test_basenameThenArgs(self) -> None:
        """
        Without NAMEINARGS, argv[0] is the server's file name (xinetd uses
        the basename) and server_args follow.
        """
        self.assertEqual(argvFor(CONFIG), ("in.svcd", "-l", "-v"))

    def test_nameInArgs(self) -> None:
        """
        With NAMEINARGS, server_args is the whole vector.
        """
        config = attrs.evolve(
            CONFIG, flags=frozenset({"NAMEINARGS"}), serverArgs=("tcpd", "in.svcd")
        )
        self.assertEqual(argvFor(config), ("tcpd", "in.svcd"))


class EnvironmentTests(SynchronousTestCase):
    def test_onlyPassenvThenEnvThenPeer(self) -> None:
        """
        Nothing of the daemon's environment but what passenv names; env
        overrides; then the peer, REMOTE_HOST as xinetd forms it and the
        plain addresses for REMOTE_ADDR and the UCSPI variables.
        """
        config = attrs.evolve(
            CONFIG, passenv=("PATH", "MISSING"), env=(("PATH", "/x"), ("A", "1"))
        )
        env = dict(environmentFor(config, PEER, {"PATH": "/bin", "HOME": "/root"}))
        self.assertEqual(
            env,
            {
                "PATH": "/x",
                "A": "1",
                "REMOTE_HOST": "::ffff:192.0.2.7",
                "REMOTE_ADDR": "192.0.2.7",
                "REMOTE_PORT": "40000",
                "PROTO": "TCP",
                "TCPREMOTEIP": "192.0.2.7",
                "TCPREMOTEPORT": "40000",
                "TCPLOCALIP": "127.0.0.1",
                "TCPLOCALPORT": "7000",
            },
        )

    def test_noPeer(self) -> None:
        """
        wait = yes streams have no peer: REMOTE_HOST is <no address>.
        """
        self.assertEqual(
            dict(environmentFor(CONFIG, None, {"PATH": "/bin"})),
            {"REMOTE_HOST": "<no address>"},
        )

    def test_dropInInheritsAll(self) -> None:
        """
        Drop-in mode, as xinetd: without passenv the daemon's whole
        environment, env adding to it and overriding; the peer after.
        """
        daemon = {"PATH": "/bin", "HOME": "/root"}
        config = attrs.evolve(CONFIG, env=(("PATH", "/x"), ("A", "1")))
        env = dict(environmentFor(config, None, daemon, inheritAll=True))
        self.assertEqual(
            env,
            {"PATH": "/x", "HOME": "/root", "A": "1", "REMOTE_HOST": "<no address>"},
        )
        plan = planLaunch(config, None, daemon, 0, 0, inheritAll=True)
        self.assertEqual(plan.environment, env)

    def test_dropInPassenvRestricts(self) -> None:
        """
        Drop-in mode: passenv given, even empty, restricts the environment
        to what it names.
        """
        daemon = {"PATH": "/bin", "HOME": "/root"}
        named = attrs.evolve(CONFIG, passenv=("HOME",))
        self.assertEqual(
            dict(environmentFor(named, None, daemon, inheritAll=True)),
            {"HOME": "/root", "REMOTE_HOST": "<no address>"},
        )
        empty = attrs.evolve(CONFIG, passenv=())
        self.assertEqual(
            dict(environmentFor(empty, None, daemon, inheritAll=True)),
            {"REMOTE_HOST": "<no address>"},
        )

    def test_unixClient(self) -> None:
        """
        A UNIX-socket client has no address: UCSPI's UNIX variables, with
        its process's credentials (SO_PEERCRED), and no REMOTE_*.
        """
        env = dict(environmentFor(CONFIG, UNIX_PEER, {}))
        self.assertEqual(
            env,
            {
                "PROTO": "UNIX",
                "UNIXLOCALPATH": "/run/svc.sock",
                "UNIXREMOTEPID": "4242",
                "UNIXREMOTEEUID": "1000",
                "UNIXREMOTEEGID": "100",
            },
        )

    def test_tlsClient(self) -> None:
        """
        Over TLS, Apache's (and stunnel's) variables: the protocol, the
        cipher, the verification and the client certificate.
        """
        env = dict(environmentFor(CONFIG, attrs.evolve(PEER, tls=TLS), {}))
        self.assertEqual(env["REMOTE_ADDR"], "192.0.2.7")
        tlsVariables = {k: v for k, v in env.items() if k.startswith("SSL_")}
        self.assertEqual(
            tlsVariables,
            {
                "SSL_PROTOCOL": "TLSv1.3",
                "SSL_CIPHER": "TLS_AES_256_GCM_SHA384",
                "SSL_CLIENT_VERIFY": "SUCCESS",
                "SSL_CLIENT_S_DN": "CN=client,O=Example",
                "SSL_CLIENT_DN": "CN=client,O=Example",
                "SSL_CLIENT_I_DN": "CN=ca",
                "SSL_CLIENT_IDN": "CN=ca",
                "SSL_CLIENT_M_SERIAL": "1F",
            },
        )
        anonymous = TLSClient("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")
        env = dict(environmentFor(CONFIG, attrs.evolve(PEER, tls=anonymous), {}))
        self.assertEqual(env["SSL_CLIENT_VERIFY"], "NONE")
        self.assertNotIn("SSL_CLIENT_S_DN", env)

    def test_udp(self) -> None:
        peer = Peer("udp", "192.0.2.7", 53, "127.0.0.1", 5353)
        env = dict(environmentFor(CONFIG, peer, {}))
        self.assertEqual((env["PROTO"], env["UDPREMOTEIP"]), ("UDP", "192.0.2.7"))


class CredentialsTests(SynchronousTestCase):
    def test_sameAsDaemonChangesNoIds(self) -> None:
        """
        A child that would run with the daemon's own ids switches no id
        (user = root under a root daemon), but gets xinetd's supplementary
        groups: none with groups = no, root's with groups = yes.
        """
        config = attrs.evolve(CONFIG, user="root", uid=0, gid=0)
        plan = planLaunch(config, PEER, {}, daemonUid=0, daemonGid=0)
        self.assertEqual(
            (plan.uid, plan.gid, plan.supplementaryGroups), (None, None, ())
        )
        grouped = planLaunch(attrs.evolve(config, groups=True), PEER, {}, 0, 0)
        self.assertEqual(
            (grouped.uid, grouped.supplementaryGroups, grouped.userName),
            (None, "user", "root"),
        )

    def test_otherUser(self) -> None:
        """
        Another user: uid and gid switch; groups = no gives no supplementary
        groups, groups = yes the user's own.
        """
        config = attrs.evolve(CONFIG, user="nobody", uid=65534, gid=65534)
        plan = planLaunch(config, PEER, {}, daemonUid=0, daemonGid=0)
        self.assertEqual(
            (plan.uid, plan.gid, plan.supplementaryGroups, plan.userName),
            (65534, 65534, (), None),
        )
        grouped = planLaunch(attrs.evolve(config, groups=True), PEER, {}, 0, 0)
        self.assertEqual(
            (grouped.supplementaryGroups, grouped.userName), ("user", "nobody")
        )

    def test_otherGroupOnly(self) -> None:
        """
        A root daemon switches the group alone when only it differs.
        """
        config = attrs.evolve(CONFIG, user="root", uid=0, gid=4)
        plan = planLaunch(config, PEER, {}, daemonUid=0, daemonGid=0)
        self.assertEqual((plan.uid, plan.gid), (None, 4))

    def test_notRoot(self) -> None:
        """
        A daemon that is not root switches nothing.
        """
        config = attrs.evolve(CONFIG, user="me", uid=1000, gid=1000)
        plan = planLaunch(config, PEER, {}, daemonUid=1000, daemonGid=1000)
        self.assertFalse(plan.needsCredentials)

    def test_processAttributes(self) -> None:
        config = attrs.evolve(CONFIG, umask=0o027, nice=5, rlimits=(("cpu", 10),))
        plan = planLaunch(config, PEER, {}, 0, 0)
        self.assertEqual(
            (plan.umask, plan.nice, plan.rlimits), (0o027, 5, (("cpu", 10),))
        )


class PlannerTests(SynchronousTestCase):
    """
    L{Planner}: L{planLaunch} for every client of a service, what they
    share worked out once.
    """

    daemonEnv = {"PATH": "/bin", "HOME": "/root", "LANG": "C.UTF-8"}

    def test_sameAsPlanLaunch(self) -> None:
        """
        Each plan is L{planLaunch}'s, its environment in the same order.
        """
        config = attrs.evolve(CONFIG, env=(("A", "1"),), uid=1000, gid=100)
        for inheritAll in (False, True):
            planner = Planner(config, self.daemonEnv, 0, 0, inheritAll)
            for peer in (PEER, None, UNIX_PEER, attrs.evolve(PEER, tls=TLS)):
                plan = planner(peer)
                expected = planLaunch(config, peer, self.daemonEnv, 0, 0, inheritAll)
                self.assertEqual(plan, expected)
                self.assertEqual(plan.env, expected.env)

    def test_sharedEnv(self) -> None:
        """
        Every plan's environment starts with the same tuple, the variables
        that are not the client's.
        """
        planner = Planner(CONFIG, self.daemonEnv, 0, 0, True)
        first, second = planner(PEER), planner(attrs.evolve(PEER, remotePort=40001))
        self.assertIs(first.sharedEnv, second.sharedEnv)
        self.assertEqual(dict(first.sharedEnv), self.daemonEnv)
        self.assertEqual(first.env[: len(first.sharedEnv)], first.sharedEnv)
        self.assertEqual(dict(second.env)["REMOTE_PORT"], "40001")

    def test_clientVariableOverrides(self) -> None:
        """
        A client's variable that the daemon has too keeps its place, with
        the client's value; nothing is shared then.
        """
        daemonEnv = {"PATH": "/bin", "REMOTE_HOST": "stale", "HOME": "/root"}
        plan = Planner(CONFIG, daemonEnv, 0, 0, True)(PEER)
        self.assertEqual(
            plan.env[:3],
            (("PATH", "/bin"), ("REMOTE_HOST", "::ffff:192.0.2.7"), ("HOME", "/root")),
        )
        self.assertEqual(plan.env, planLaunch(CONFIG, PEER, daemonEnv, 0, 0, True).env)
        self.assertEqual(plan.sharedEnv, ())

    def test_noServer(self) -> None:
        """
        A service without a program (internal, C{redirect}) gets a planner,
        which is never to be called.
        """
        planner = Planner(attrs.evolve(CONFIG, server=None), self.daemonEnv, 0)
        with self.assertRaises(AssertionError):
            planner(PEER)
