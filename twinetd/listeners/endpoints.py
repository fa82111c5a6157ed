# -*- test-case-name: tests.unit.test_endpoints -*-
"""
The endpoints of C{twinetd_listen}: each L{ListenSpec} (read and checked by
L{twinetd.config.endpoints}) to a server endpoint that listens as Twisted's
own endpoints do, through the reactor's C{listenTCP}, C{listenUNIX} and
C{adoptStreamPort}, without importing C{twisted.internet.endpoints} (which
imports pyOpenSSL and cryptography when installed, some 14 MB).

  - C{tcp:}, C{tcp6:}, C{unix:}: with Twisted's defaults (a UNIX socket is
    mode 666 with a lock file unless told otherwise);
  - C{ssl:}: TLS over TCP (pyOpenSSL, the C{tls} extra), as the reactor's
    C{listenSSL} makes it, with C{CertificateOptions} made here, so that
    C{caCerts} and C{verifyClient} can ask for a client certificate;
  - C{systemd:}: a socket systemd passed (C{LISTEN_FDS}, C{LISTEN_PID},
    C{LISTEN_FDNAMES}), adopted
    through a duplicate so that a C{cps} pause can close it and listen
    again; the inherited descriptor is made close-on-exec, or every child
    would inherit the listening socket.

C{haproxy:} is not an endpoint here: the stream listener wraps its factory
(L{twinetd.listeners.proxy}) so that the header's sender can be checked.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
from collections.abc import Callable, Mapping
from typing import cast

from twisted.internet.defer import Deferred, execute, fail, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorSocket,
    IReactorTCP,
    IReactorTime,
    IReactorUNIX,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import ServerFactory
from zope.interface import implementer

from twinetd._twistedcompat import startEnvironment
from twinetd.model import ListenSpec

_PEM = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)


class EndpointError(Exception):
    """
    An endpoint that cannot be made (a file missing, a systemd socket not
    passed); the message is for a person.
    """


def endpointFor(
    reactor: object, spec: ListenSpec, environ: Mapping[str, str] | None = None
) -> IStreamServerEndpoint:
    """
    The server endpoint C{spec} describes (without its C{haproxy:}).

    @param reactor: provides what the kind needs (C{IReactorTCP},
        C{IReactorUNIX}, C{IReactorSocket}; C{IReactorTime} for TLS's
        timeouts).
    @param environ: where systemd's variables are read (by default, the
        environment the process started with: L{startEnvironment}).
    @raise EndpointError: it cannot be made.
    """
    backlog = int(spec.option("backlog") or 50)
    if spec.kind == "tcp":
        interface = spec.option("interface") or ""
        return _tcp(reactor, int(spec.address), backlog, interface)
    if spec.kind == "tcp6":
        interface = spec.option("interface") or "::"
        return _tcp(reactor, int(spec.address), backlog, interface)
    if spec.kind == "unix":
        unix = cast(IReactorUNIX, reactor)
        return _Listen(
            functools.partial(
                unix.listenUNIX,
                spec.address,
                backlog=backlog,
                mode=int(spec.option("mode") or "666", 8),
                wantPID=spec.option("lockfile") != "0"
                and spec.option("wantPID") != "0",
            )
        )
    if spec.kind == "ssl":
        return _tlsEndpoint(reactor, spec, backlog)
    return _systemdEndpoint(reactor, spec, environ)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise EndpointError(f"cannot read {path}: {e.strerror}") from e


def _tlsEndpoint(
    reactor: object, spec: ListenSpec, backlog: int
) -> IStreamServerEndpoint:
    from OpenSSL.SSL import Error as TLSError
    from twisted.internet import ssl

    keyPath = spec.option("privateKey")
    assert keyPath is not None
    certPath = spec.option("certKey") or keyPath
    try:
        pem = _read(certPath) + b"\n" + _read(keyPath)
        mine = ssl.PrivateCertificate.loadPEM(pem)  # type: ignore[no-untyped-call]
        options: dict[str, object] = {}
        chain = spec.option("extraCertChain")
        if chain is not None:
            options["extraCertChain"] = _certificates(chain)
        dh = spec.option("dhParameters")
        if dh is not None:
            from twisted.python.filepath import FilePath

            parameters = ssl.DiffieHellmanParameters
            options["dhParameters"] = parameters.fromFile(FilePath(dh))  # type: ignore[no-untyped-call]
        authorities = spec.option("caCerts")
        if authorities is not None:
            # A client certificate is asked for, and verified against these
            # authorities; without verifyClient = require, one may be
            # missing (SSL_CLIENT_VERIFY=NONE).
            options["verify"] = True
            options["caCerts"] = _certificates(authorities)
            options["requireCertificate"] = spec.option("verifyClient") == "require"
        context = ssl.CertificateOptions(
            privateKey=mine.privateKey.original,
            certificate=mine.original,
            **options,  # type: ignore[arg-type]
        )
    except (TLSError, ValueError) as e:
        raise EndpointError(f"bad TLS key or certificate: {e}") from e
    tcp = _tcp(reactor, int(spec.address), backlog, spec.option("interface") or "")
    return _TLSOverTCP(tcp, context, IReactorTime(reactor, None))


def _tcp(
    reactor: object, port: int, backlog: int, interface: str
) -> IStreamServerEndpoint:
    return _Listen(
        functools.partial(
            cast(IReactorTCP, reactor).listenTCP,
            port,
            backlog=backlog,
            interface=interface,
        )
    )


@implementer(IStreamServerEndpoint)
class _Listen:
    """
    An endpoint that listens as Twisted's TCP and UNIX server endpoints do:
    C{listen} calls the reactor's method with the factory, its port or
    failure in a L{Deferred}.
    """

    def __init__(self, listen: Callable[[IProtocolFactory], IListeningPort]) -> None:
        self._listen = listen

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        return execute(self._listen, factory)


@implementer(IStreamServerEndpoint)
class AdoptedSocket:
    """
    A bound listening socket given to the reactor (C{adoptStreamPort},
    which duplicates it), then closed; closed too when the reactor cannot
    adopt it (Twisted's C{AdoptedStreamServerEndpoint} leaves it open then).
    """

    def __init__(
        self, reactor: IReactorSocket, fd: int, family: socket.AddressFamily
    ) -> None:
        self._reactor = reactor
        self._fd = fd
        self._family = family

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        try:
            os.set_blocking(self._fd, False)
            # Twisted's annotation asks for a ServerFactory; the reactor
            # uses only IProtocolFactory.
            port = self._reactor.adoptStreamPort(
                self._fd, self._family, cast(ServerFactory, factory)
            )
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            return fail()
        os.close(self._fd)
        return succeed(port)


@implementer(IStreamServerEndpoint)
class _TLSOverTCP:
    """
    TLS on a TCP endpoint, as the reactor's C{listenSSL} makes it (Twisted's
    C{SSL4ServerEndpoint} calls that): each connection's protocol wrapped in
    a L{TLSMemoryBIOProtocol}.  Made here because C{twistd twinetd} imports
    its reactor without pyOpenSSL (L{twinetd._twistedcompat.withoutPyOpenSSL}),
    which then has no C{listenSSL}.
    """

    def __init__(
        self,
        tcp: IStreamServerEndpoint,
        context: IOpenSSLServerConnectionCreator,
        clock: IReactorTime | None,
    ) -> None:
        self._tcp = tcp
        self._context = context
        self._clock = clock

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        wrapped = TLSMemoryBIOFactory(self._context, False, factory, self._clock)
        return self._tcp.listen(wrapped)


def _certificates(path: str) -> list[object]:
    from twisted.internet import ssl

    found = [ssl.Certificate.loadPEM(pem).original for pem in _PEM.findall(_read(path))]
    if not found:
        raise EndpointError(f"no PEM certificate in {path}")
    return found


def _systemdEndpoint(
    reactor: object, spec: ListenSpec, environ: Mapping[str, str] | None
) -> IStreamServerEndpoint:
    index, name = spec.option("index"), spec.option("name")
    try:
        fd = _passedSocket(reactor, spec, environ)
    except LookupError:
        which = f"index {index}" if index is not None else f"name {name}"
        raise EndpointError(
            f"systemd passed no socket with {which} (LISTEN_FDS, LISTEN_PID and "
            "LISTEN_FDNAMES: is twistd running in the foreground, -n?)"
        ) from None
    try:
        # Not for the children: they would all inherit the listening socket.
        os.set_inheritable(fd, False)
        copy = os.dup(fd)
    except OSError as e:
        raise EndpointError(f"systemd's socket {fd}: {e.strerror}") from e
    family = getattr(socket, "AF_" + str(spec.option("domain")))
    return AdoptedSocket(cast(IReactorSocket, reactor), copy, family)


def _passedSocket(
    reactor: object, spec: ListenSpec, environ: Mapping[str, str] | None
) -> int:
    """
    The descriptor systemd passed for C{spec} (C{LISTEN_FDS} from 3 on,
    named by C{LISTEN_FDNAMES} when given), if C{LISTEN_PID} is this
    process.

    @param environ: where systemd's variables are; by default the
        environment this process started with (L{startEnvironment}).
    @raise LookupError: none.
    """
    env = startEnvironment() if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        raise LookupError("not for this process")
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        raise LookupError("LISTEN_FDS is not a number") from None
    passed = list(range(_SD_LISTEN_FDS_START, _SD_LISTEN_FDS_START + count))
    index, name = spec.option("index"), spec.option("name")
    if index is not None:
        return passed[int(index)]
    names = env.get("LISTEN_FDNAMES", "")
    return dict(zip(names.split(":"), passed, strict=False))[str(name)]


#: The first descriptor systemd passes (C{SD_LISTEN_FDS_START}).
_SD_LISTEN_FDS_START = 3
