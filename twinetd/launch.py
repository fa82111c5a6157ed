# -*- test-case-name: tests.unit.test_launch -*-
"""
What to run for one connection: pure, from a service record and a peer.

Nothing here touches the operating system; L{twinetd.spawn} carries a
L{LaunchPlan} out.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

import attrs

from twinetd.model import Peer, ServiceConfig, TLSClient


@attrs.frozen
class LaunchPlan:
    """
    Everything needed to start one child.

    @ivar executable: the program to execute (absolute path).
    @ivar argv: the child's argument vector, C{argv[0]} included.
    @ivar env: the child's complete environment.
    @ivar uid: user id to switch to, or C{None} to keep the daemon's.
    @ivar gid: group id to switch to, or C{None} to keep the daemon's.
    @ivar supplementaryGroups: C{None} to keep the daemon's supplementary
        groups, C{"user"} for those of the user C{userName} (C{groups =
        yes}), or an empty tuple for none.
    @ivar umask: umask for the child, or C{None} to inherit.
    @ivar nice: nice increment for the child, or C{None}.
    @ivar rlimits: (name, limit) pairs as in L{ServiceConfig.rlimits}.
    @ivar userName: the user's name (or number), for C{groups = yes}.
    @ivar sharedEnv: see below; empty when nothing is shared.
    """

    executable: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    uid: int | None = None
    gid: int | None = None
    supplementaryGroups: str | tuple[int, ...] | None = None
    umask: int | None = None
    nice: int | None = None
    rlimits: tuple[tuple[str, int | None], ...] = ()
    userName: str | None = None
    #: The start of C{env} that every child of the service shares, the same
    #: tuple for each (a L{Planner}'s): a spawner may encode it once.
    sharedEnv: tuple[tuple[str, str], ...] = attrs.field(
        default=(), eq=False, repr=False
    )

    @property
    def environment(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def needsCredentials(self) -> bool:
        """
        Whether the child's user, group or groups differ from the daemon's.
        """
        return (
            self.uid is not None
            or self.gid is not None
            or self.supplementaryGroups is not None
        )


def argvFor(config: ServiceConfig) -> tuple[str, ...]:
    """
    The argument vector xinetd builds: without C{NAMEINARGS}, C{argv[0]} is
    the server's file name (xinetd uses the basename) and C{server_args}
    follow; with it, C{server_args} is the whole vector (its first word
    becoming C{argv[0]}).
    """
    assert config.server is not None
    if config.nameInArgs and config.serverArgs:
        return config.serverArgs
    return (posixpath.basename(config.server), *config.serverArgs)


def environmentFor(
    config: ServiceConfig,
    peer: Peer | None,
    daemonEnv: Mapping[str, str],
    inheritAll: bool = False,
) -> tuple[tuple[str, str], ...]:
    """
    The child's environment: the daemon's variables that C{passenv} names,
    then C{env}, then the peer's address.

    With C{inheritAll} (drop-in mode) the rule is xinetd's: a service that
    does not give C{passenv} at all gets the daemon's whole environment,
    to which C{env} adds; C{passenv} (even empty) restricts it to the
    variables it names.  Otherwise a service without C{passenv} gets none
    of the daemon's variables.

    Besides xinetd's C{REMOTE_HOST}, the plain C{REMOTE_ADDR}/C{REMOTE_PORT}
    and the UCSPI variables (C{PROTO}, C{TCPREMOTEIP}, ...) are set, so that a
    program whose standard input is a pipe still knows its client.  For
    C{wait = yes} services there is no peer and C{REMOTE_HOST} is
    C{<no address>}, as in xinetd.  A UNIX-socket client has no address:
    its variables are UCSPI's for UNIX sockets (C{PROTO=UNIX},
    C{UNIXLOCALPATH}, C{UNIXREMOTEPID}, C{UNIXREMOTEEUID},
    C{UNIXREMOTEEGID}).  Over TLS, Apache's and stunnel's C{SSL_*}
    variables tell the protocol, the cipher and the client certificate.
    """
    env = serviceVariables(config, daemonEnv, inheritAll)
    env.update(peerVariables(peer))
    return tuple(env.items())


def serviceVariables(
    config: ServiceConfig, daemonEnv: Mapping[str, str], inheritAll: bool = False
) -> dict[str, str]:
    """
    The part of L{environmentFor} that is the same for every client: the
    daemon's variables and C{env}.
    """
    env: dict[str, str] = {}
    if inheritAll and config.passenv is None:
        env.update(daemonEnv)
    for name in config.passenv or ():
        if name in daemonEnv:
            env[name] = daemonEnv[name]
    for name, value in config.env:
        env[name] = value
    return env


def peerVariables(peer: Peer | None) -> dict[str, str]:
    """
    The part of L{environmentFor} that tells the client.
    """
    if peer is None:
        return {"REMOTE_HOST": "<no address>"}
    if peer.protocol == "unix":
        env = _unixVariables(peer)
    else:
        proto = peer.protocol.upper()
        port = str(peer.remotePort)
        env = {
            "REMOTE_HOST": peer.remoteHost,
            "REMOTE_ADDR": peer.remoteAddress,
            "REMOTE_PORT": port,
            "PROTO": proto,
            proto + "REMOTEIP": peer.remoteAddress,
            proto + "REMOTEPORT": port,
            proto + "LOCALIP": peer.localAddress,
            proto + "LOCALPORT": str(peer.localPort),
        }
    if peer.tls is not None:
        env.update(_tlsVariables(peer.tls))
    return env


def _unixVariables(peer: Peer) -> dict[str, str]:
    # UCSPI's UNIX protocol (ucspi-unix's unixserver).
    env = {"PROTO": "UNIX", "UNIXLOCALPATH": peer.localHost}
    credentials = peer.credentials
    if credentials is not None:
        env["UNIXREMOTEPID"] = str(credentials.pid)
        env["UNIXREMOTEEUID"] = str(credentials.uid)
        env["UNIXREMOTEEGID"] = str(credentials.gid)
    return env


def _tlsVariables(tls: TLSClient) -> dict[str, str]:
    # As Apache's mod_ssl names them (stunnel sets the same subject as
    # SSL_CLIENT_DN); the distinguished names in RFC 4514's form.
    env = {
        "SSL_PROTOCOL": tls.protocol,
        "SSL_CIPHER": tls.cipher,
        "SSL_CLIENT_VERIFY": tls.verify,
    }
    if tls.subject is not None:
        env["SSL_CLIENT_S_DN"] = env["SSL_CLIENT_DN"] = tls.subject
    if tls.issuer is not None:
        env["SSL_CLIENT_I_DN"] = env["SSL_CLIENT_IDN"] = tls.issuer
    if tls.serial is not None:
        env["SSL_CLIENT_M_SERIAL"] = tls.serial
    return env


def planLaunch(
    config: ServiceConfig,
    peer: Peer | None,
    daemonEnv: Mapping[str, str],
    daemonUid: int,
    daemonGid: int | None = None,
    inheritAll: bool = False,
) -> LaunchPlan:
    """
    Build the L{LaunchPlan} for one child of C{config}.

    User and group ids are only switched where they differ from the
    daemon's.  Supplementary groups are xinetd's whenever a root daemon
    runs a service with a C{user}: those of the user with C{groups = yes}
    (C{initgroups}), none otherwise (C{setgroups(0, NULL)}), also for
    C{user = root}; the spawner switches nothing when the daemon already
    has exactly those (a root daemon without supplementary groups running
    a C{user = root} service, the common case in /etc/xinetd.d).

    @param daemonUid: the daemon's effective user id.
    @param daemonGid: the daemon's group id when its real, effective and
        saved group ids are all that one, else C{None}.
    @param inheritAll: xinetd's environment rule (drop-in mode), see
        L{environmentFor}.
    """
    return Planner(config, daemonEnv, daemonUid, daemonGid, inheritAll)(peer)


class Planner:
    """
    L{planLaunch} for every client of one service: what is the same for
    each (the program, its ids, the daemon's variables and C{env}) is
    worked out once.  A client's variables come last in C{env}, after
    the shared ones (L{LaunchPlan.sharedEnv}), unless one of them has a
    shared variable's name: then that variable keeps its place, with the
    client's value, as in L{environmentFor}.
    """

    def __init__(
        self,
        config: ServiceConfig,
        daemonEnv: Mapping[str, str],
        daemonUid: int,
        daemonGid: int | None = None,
        inheritAll: bool = False,
    ) -> None:
        """
        The arguments of L{planLaunch} but the client.  A service without a
        C{server} (internal, C{redirect}) gets a planner that is never
        called.
        """
        self._shared = serviceVariables(config, daemonEnv, inheritAll)
        self._sharedEnv = tuple(self._shared.items())
        self._fields: dict[str, Any] | None = None
        if config.server is None:
            return
        uid = config.uid if config.uid is not None and config.uid != daemonUid else None
        changeGroup = (
            daemonUid == 0 and config.gid is not None and config.gid != daemonGid
        )
        groups: str | tuple[int, ...] | None = None
        if daemonUid == 0 and config.uid is not None:
            # xinetd: groups = yes gives the user's supplementary groups
            # (initgroups); otherwise the child has none (setgroups(0, NULL)).
            groups = "user" if config.groups else ()
        self._fields = {
            "executable": config.server,
            "argv": argvFor(config),
            "uid": uid,
            "gid": config.gid if changeGroup else None,
            "supplementaryGroups": groups,
            "umask": config.umask,
            "nice": config.nice,
            "rlimits": config.rlimits,
            "userName": (config.user or str(config.uid)) if groups == "user" else None,
        }

    def __call__(self, peer: Peer | None) -> LaunchPlan:
        """
        The plan for one client.
        """
        fields = self._fields
        assert fields is not None, "a service without a server"
        own = peerVariables(peer)
        shared = self._shared
        if shared.keys().isdisjoint(own):
            sharedEnv = self._sharedEnv
            env = sharedEnv + tuple(own.items())
            return LaunchPlan(env=env, sharedEnv=sharedEnv, **fields)
        merged = dict(shared)
        merged.update(own)
        return LaunchPlan(env=tuple(merged.items()), **fields)
