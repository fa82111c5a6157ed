# -*- test-case-name: tests.unit.test_config,tests.unit.test_launch -*-
"""
Immutable records describing configured services.

Only the standard library and attrs are used here: records are built by
L{twinetd.config} and read by the runtime, and never refer back to either.
Field names follow xinetd's concepts in Twisted's camelCase; the table that
maps xinetd attribute names to these fields lives in L{twinetd.config}.
"""

from __future__ import annotations

import enum
import ipaddress

import attrs

from twinetd.errors import SourceLocation

__all__ = [
    "INTERNAL_SERVICES",
    "AddressRule",
    "FileTarget",
    "IPNetwork",
    "LogTarget",
    "Peer",
    "ServiceConfig",
    "SocketType",
    "SyslogTarget",
    "unmapped",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


#: xinetd's builtin services (C{type = INTERNAL}), by service name.
INTERNAL_SERVICES = frozenset({"echo", "discard", "chargen", "daytime", "time"})


class SocketType(enum.Enum):
    """
    xinetd's C{socket_type} values.
    """

    STREAM = "stream"
    DGRAM = "dgram"
    RAW = "raw"
    SEQPACKET = "seqpacket"


@attrs.frozen
class AddressRule:
    """
    One entry of C{only_from} or C{no_access}.

    Exactly one of C{network} and C{hostname} is set.  A factorized entry
    (C{128.138.{10,12}}) becomes several rules sharing the same C{text}.

    @ivar text: the entry as written, for messages and logs.
    @ivar network: an address range; a single host is a /32 or /128 network.
        IPv4 entries with trailing zero components are ranges (C{10.0.0.0} is
        C{10.0.0.0/8}; C{0.0.0.0} matches everyone), as in xinetd.
    @ivar hostname: a host name compared with the client's reverse-resolved
        name, case-insensitively; one starting with C{.} matches any name in
        that domain.
    """

    text: str
    network: IPNetwork | None = None
    hostname: str | None = None


@attrs.frozen
class SyslogTarget:
    """
    C{log_type = SYSLOG facility [level]}.
    """

    facility: str
    level: str = "info"


@attrs.frozen
class FileTarget:
    """
    C{log_type = FILE path [soft [hard]]}; limits in bytes.
    """

    path: str
    softLimit: int | None = None
    hardLimit: int | None = None


LogTarget = SyslogTarget | FileTarget


@attrs.frozen
class ListenSpec:
    """
    One C{twinetd_listen} value: a Twisted server endpoint description,
    read and checked (L{twinetd.config.endpoints}).

    @ivar text: the description as written.
    @ivar kind: C{tcp}, C{tcp6}, C{unix}, C{ssl} or C{systemd}.
    @ivar proxy: behind C{haproxy:}: each connection starts with a PROXY
        header (v1 or v2) naming the real client.
    @ivar address: the port (C{tcp}, C{tcp6}, C{ssl}) or the socket's path
        (C{unix}, absolute); empty for C{systemd}.
    @ivar options: the keyword options, sorted, paths absolute.
    """

    text: str
    kind: str
    proxy: bool = False
    address: str = ""
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str) -> str | None:
        """
        The value of option C{name}, or C{None}.
        """
        return dict(self.options).get(name)

    @property
    def plainSocket(self) -> bool:
        """
        Whether a connection's bytes are the client's own on its socket, with
        nothing the daemon reads first: what a handed-off program needs.
        """
        return self.kind != "ssl" and not self.proxy

    @property
    def unix(self) -> bool:
        """
        Whether its clients are UNIX-socket clients (no address).
        """
        return self.kind == "unix" or (
            self.kind == "systemd" and self.option("domain") == "UNIX"
        )


@attrs.frozen
class UnixCredentials:
    """
    A UNIX-socket client, as the kernel tells it (C{SO_PEERCRED}): the
    process that connected.
    """

    pid: int
    uid: int
    gid: int


@attrs.frozen
class TLSClient:
    """
    What a TLS connection tells of its client.

    @ivar protocol: the TLS version (C{TLSv1.3}).
    @ivar cipher: the cipher suite.
    @ivar verify: Apache's C{SSL_CLIENT_VERIFY}: C{SUCCESS} (a certificate,
        verified against C{caCerts}) or C{NONE} (none was sent).
    @ivar subject: the certificate's subject (RFC 4514), if one was sent.
    @ivar issuer: its issuer (RFC 4514).
    @ivar serial: its serial number, in hexadecimal.
    """

    protocol: str
    cipher: str
    verify: str = "NONE"
    subject: str | None = None
    issuer: str | None = None
    serial: str | None = None


@attrs.frozen
class ServiceConfig:
    """
    One configured service, fully resolved: C{defaults} applied, names looked
    up, values converted.  The runtime reads nothing else.

    @ivar name: the service name (C{service NAME}).
    @ivar id: xinetd's C{id}; defaults to C{name}.  Unique among services.
    @ivar source: where the C{service} line is.
    @ivar socketType: C{socket_type}.
    @ivar protocol: C{"tcp"} or C{"udp"} (from C{protocol}, else from the
        socket type).
    @ivar wait: C{wait = yes}.
    @ivar types: C{type} values (C{INTERNAL}, C{UNLISTED}, C{RPC},
        C{TCPMUX}, C{TCPMUXPLUS}).
    @ivar flags: C{flags} values, upper case as xinetd spells them
        (C{NAMEINARGS}, C{IPv4}, C{IPv6}, C{REUSE}, C{KEEPALIVE}, C{NODELAY},
        C{SENSOR}, ...).
    @ivar server: absolute path of the program, or C{None} (internal or
        redirect services).
    @ivar serverArgs: C{server_args} split on white space.
    @ivar port: the port to listen on (from C{port} or the services database).
    @ivar bind: the address to bind (C{bind}/C{interface}), or C{None} for
        every address.
    @ivar user: the user name as configured (for messages), or C{None}.
    @ivar uid: the numeric user id the child runs as, or C{None} for the
        daemon's own.
    @ivar gid: the numeric group id the child runs as, or C{None} for the
        daemon's own.
    @ivar groups: C{groups = yes}: the child gets the supplementary groups of
        its user; otherwise it gets none when the user changes.
    @ivar umask: C{umask}, or C{None} to inherit.
    @ivar nice: C{nice}, or C{None} to inherit.
    @ivar env: C{env} as (name, value) pairs, in order.
    @ivar passenv: names of the daemon's environment variables to pass on;
        C{None} when C{passenv} is not given at all (xinetd then passes its
        whole environment, as twinetd's drop-in mode does).
    @ivar instances: C{instances}; C{None} is UNLIMITED.
    @ivar perSource: C{per_source}; C{None} is UNLIMITED.
    @ivar cps: C{cps} as (connections per second, seconds to pause).
    @ivar maxLoad: C{max_load}, or C{None}.
    @ivar onlyFrom: C{only_from} rules; C{None} when not given at all (everyone
        admitted), an empty tuple when given without values (nobody).
    @ivar noAccess: C{no_access} rules.
    @ivar accessTimes: C{access_times} as (start, end) minutes since local
        midnight, both inclusive.
    @ivar logType: where xinetd-style log lines go, or C{None}.
    @ivar logOnSuccess: C{log_on_success} values.
    @ivar logOnFailure: C{log_on_failure} values.
    @ivar banner: C{banner} file path.
    @ivar bannerSuccess: C{banner_success} file path.
    @ivar bannerFail: C{banner_fail} file path.
    @ivar redirect: C{redirect} as (host, port).
    @ivar rlimits: C{rlimit_*} as (name, limit) pairs, name being C{as},
        C{cpu}, C{data}, C{rss}, C{stack} or C{files}; a limit of C{None} is
        UNLIMITED.
    @ivar denyTime: C{deny_time} in seconds; C{None} when not set, C{0} for
        NEVER, C{float("inf")} for FOREVER.
    @ivar v6only: C{v6only}, or C{None} when not set.
    @ivar handoff: twinetd's C{twinetd_mode}: C{True} (C{handoff}) gives the
        accepted socket itself to the program, as xinetd does; C{False}
        (C{bridge}) relays its stdio; C{None} when not set (the daemon's
        default, C{bridge} unless C{twistd twinetd --handoff}).
    @ivar stderrToSocket: twinetd's C{twinetd_stderr}: C{True} (C{socket},
        xinetd's behaviour) makes a handed-off program's standard error the
        socket too; C{False} (C{log}) sends it to the daemon's log; C{None}
        when not set (C{log}, or C{socket} with C{--handoff}).
    @ivar rpcVersion: C{rpc_version} as (lowest, highest), or C{None}.
    @ivar rpcNumber: C{rpc_number}, or C{None}.
    @ivar libwrap: C{libwrap}: the service name given to libwrap, or C{None}.
    @ivar mdns: C{mdns}, or C{None} when not set.
    @ivar listen: twinetd's C{twinetd_listen}: the endpoints a stream
        service listens on instead of C{port}/C{bind}; empty for xinetd's
        own socket.
    @ivar proxyFrom: twinetd's C{twinetd_proxy_from}: the balancers allowed
        to send a PROXY header on a C{haproxy:} listener, or C{None}.
    """

    name: str
    source: SourceLocation
    socketType: SocketType
    wait: bool
    port: int
    id: str = ""
    protocol: str = "tcp"
    types: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()
    server: str | None = None
    serverArgs: tuple[str, ...] = ()
    bind: str | None = None
    user: str | None = None
    uid: int | None = None
    gid: int | None = None
    groups: bool = False
    umask: int | None = None
    nice: int | None = None
    env: tuple[tuple[str, str], ...] = ()
    passenv: tuple[str, ...] | None = None
    instances: int | None = None
    perSource: int | None = None
    cps: tuple[int, int] | None = None
    maxLoad: float | None = None
    onlyFrom: tuple[AddressRule, ...] | None = None
    noAccess: tuple[AddressRule, ...] = ()
    accessTimes: tuple[tuple[int, int], ...] = ()
    logType: LogTarget | None = None
    logOnSuccess: frozenset[str] = frozenset()
    logOnFailure: frozenset[str] = frozenset()
    banner: str | None = None
    bannerSuccess: str | None = None
    bannerFail: str | None = None
    redirect: tuple[str, int] | None = None
    rlimits: tuple[tuple[str, int | None], ...] = ()
    denyTime: float | None = None
    v6only: bool | None = None
    handoff: bool | None = None
    stderrToSocket: bool | None = None
    rpcVersion: tuple[int, int] | None = None
    rpcNumber: int | None = None
    libwrap: str | None = None
    mdns: bool | None = None
    listen: tuple[ListenSpec, ...] = ()
    proxyFrom: tuple[AddressRule, ...] | None = None

    def __attrs_post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.name)

    @property
    def isInternal(self) -> bool:
        # xinetd: "The SENSOR flag will also cause xinetd to consider the
        # server attribute to be INTERNAL".
        return "INTERNAL" in self.types or "SENSOR" in self.flags

    @property
    def nameInArgs(self) -> bool:
        return "NAMEINARGS" in self.flags

    @property
    def plainSockets(self) -> bool:
        """
        Whether every connection comes on a plain socket (no TLS, no PROXY
        header): what a handed-off program needs.
        """
        return all(spec.plainSocket for spec in self.listen)


@attrs.frozen
class Peer:
    """
    The two ends of a connection (or the sender of a datagram), as plain text.

    @ivar protocol: C{"tcp"}, C{"udp"} or C{"unix"} (a UNIX-socket client,
        which has no address).
    @ivar remoteHost: the client's address as xinetd puts it in
        C{REMOTE_HOST} (on a dual-stack socket an IPv4 client is
        C{::ffff:a.b.c.d}); for a UNIX-socket client, who it is
        (C{<unix uid=1000 pid=4242>}), for the log.
    @ivar remotePort: the client's port (0 for a UNIX-socket client).
    @ivar localHost: the address the client reached (a UNIX socket's path).
    @ivar localPort: the port the client reached.
    @ivar accepted: when the connection was accepted (or the datagram
        read), on the reactor's clock, if known; not part of the peer's
        identity.
    @ivar credentials: a UNIX-socket client's process.
    @ivar tls: what TLS tells of the client, on a TLS connection.
    """

    protocol: str
    remoteHost: str
    remotePort: int
    localHost: str
    localPort: int
    accepted: float | None = attrs.field(default=None, eq=False, repr=False)
    credentials: UnixCredentials | None = None
    tls: TLSClient | None = None

    @property
    def address(self) -> str | None:
        """
        The client's address as the socket reports it (L{remoteHost}), or
        C{None} for a UNIX-socket client: address rules and C{per_source}
        do not apply to it.
        """
        return None if self.protocol == "unix" else self.remoteHost

    @property
    def remoteAddress(self) -> str:
        """
        The client's plain address: IPv4-mapped IPv6 addresses as dotted quads.
        """
        return unmapped(self.remoteHost)

    @property
    def localAddress(self) -> str:
        return unmapped(self.localHost)

    @property
    def mapped(self) -> bool:
        """
        Whether the client is an IPv4 client of a dual-stack IPv6 socket.
        """
        return self.remoteAddress != self.remoteHost


def unmapped(host: str) -> str:
    """
    C{host} without the C{::ffff:} of an IPv4-mapped IPv6 address (as a
    dotted quad); any other text unchanged.  The one place twinetd unmaps.
    """
    if "ffff" not in host.lower():
        # Not parsed (a few microseconds, several times per connection):
        # every spelling of an IPv4-mapped address has its ffff group.
        return host
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return host
