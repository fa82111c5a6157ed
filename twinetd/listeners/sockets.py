# -*- test-case-name: tests.unit.test_sockets -*-
"""
Listening sockets as xinetd makes them: which address, which options.

Every kind of service binds through L{bindSocket}, so the rules live in one
place: the address (L{listenAddress}), C{SO_REUSEADDR} (xinetd's REUSE is
implicit), C{IPV6_V6ONLY} from C{v6only} (default off: dual-stack, so IPv4
clients appear as C{::ffff:a.b.c.d}), and for streams C{SO_KEEPALIVE} and
C{TCP_NODELAY} from C{flags} (Linux copies both from the listening socket to
each accepted one).
"""

from __future__ import annotations

import functools
import socket

from twinetd.model import ServiceConfig

#: Pending connections the kernel queues per listening stream socket
#: (xinetd's C{LISTEN_BACKLOG} is 64).
BACKLOG = 128


@functools.cache
def ipv6Available() -> bool:
    """
    Whether this host can make IPv6 sockets.
    """
    if not socket.has_ipv6:
        return False
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    except OSError:
        return False
    return True


def listenAddress(config: ServiceConfig) -> str:
    """
    The address a service binds, as xinetd chooses it: C{bind} if given,
    C{0.0.0.0} with C{flags = IPv4}, else the IPv6 wildcard (dual-stack)
    where IPv6 is available.
    """
    if config.bind is not None:
        return config.bind
    if "IPv4" in config.flags or not ipv6Available():
        return "0.0.0.0"
    return "::"


def needsLookup(address: str) -> bool:
    """
    Whether C{address} (a C{bind} value) is a host name, which must be
    looked up before it can be bound (as an IPv4 address: a name binds an
    IPv4 socket, see L{bindSocket}).
    """
    if ":" in address:
        return False
    try:
        socket.inet_aton(address)
    except OSError:
        return True
    # inet_aton takes "127.1" and "1"; bind() resolves those without a
    # lookup too.
    return False


def bindSocket(
    config: ServiceConfig, kind: int = socket.SOCK_STREAM, *, blocking: bool = False
) -> socket.socket:
    """
    A socket bound to C{config}'s address and port (and listening, for a
    stream), with xinetd's options.  A host name in C{bind} is looked up by
    C{bind()} itself, blocking: callers in the reactor look it up first
    (L{needsLookup}).

    @param kind: C{SOCK_STREAM} or C{SOCK_DGRAM}.
    @param blocking: leave the socket blocking (one a child will use, as
        for C{wait = yes}); otherwise it is non-blocking, for the reactor.
    @raise OSError: the address cannot be bound.
    """
    address = listenAddress(config)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(
                socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if config.v6only else 0
            )
        if kind == socket.SOCK_STREAM:
            if "KEEPALIVE" in config.flags:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if "NODELAY" in config.flags:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((address, config.port))
        if kind == socket.SOCK_STREAM:
            sock.listen(BACKLOG)
        sock.setblocking(blocking)
    except BaseException:
        sock.close()
        raise
    return sock
