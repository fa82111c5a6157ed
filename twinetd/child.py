"""
What every service does with the children it starts (L{twinetd.modes.bridge},
L{twinetd.modes.handoff}, L{twinetd.listeners.datagram}):

  - L{ChildProcess}: a process protocol that logs C{START} and C{EXIT}
    through the service's L{logs.ServiceLog}, logs the lines of the
    child's standard error (when descriptor 2 is a pipe), sends C{SIGTERM}
    then C{SIGKILL} after a kill delay (to the child's process group when
    it leads one, L{IProcessGroup}), and calls C{onEnded} once;
  - L{ChildConnection}: the start of a connection protocol served by one
    child (started as its service's L{ChildSetup} says), whose C{onEnded}
    runs once when both the connection and the child are over;
  - L{spawnFailed}: how every mode and listener reports a child that could
    not be started.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any, cast

import attrs
from twisted.internet.address import UNIXAddress
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProcessTransport,
    IReactorTime,
    ISSLTransport,
    ITCPTransport,
)
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.python.failure import Failure

from twinetd import logs
from twinetd._twistedcompat import cancelCall
from twinetd.errors import SpawnError
from twinetd.launch import LaunchPlan
from twinetd.model import Peer, TLSClient, UnixCredentials
from twinetd.spawn import IProcessGroup, Spawner

#: C{struct ucred} (Linux): pid, uid, gid.
_CREDENTIALS = struct.Struct("3i")


def _hostAndPort(address: IAddress) -> tuple[str, int]:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        return str(address), 0
    return str(host), int(port)


def peerFromTransport(
    transport: ITCPTransport, protocol: str = "tcp", accepted: float | None = None
) -> Peer:
    """
    The L{Peer} of a connected transport.  An IPv4 client of a dual-stack
    IPv6 socket keeps its C{::ffff:a.b.c.d} form, as xinetd reports it.  A
    UNIX-socket client is known by its process (C{SO_PEERCRED}); a TLS
    connection tells its protocol, cipher and client certificate.

    @param accepted: see L{Peer.accepted}.
    """
    remote, local = transport.getPeer(), transport.getHost()
    tls = tlsClient(transport) if ISSLTransport.providedBy(transport) else None
    if isinstance(remote, UNIXAddress) or isinstance(local, UNIXAddress):
        credentials = peerCredentials(transport)
        who = (
            "<unix>"
            if credentials is None
            else f"<unix uid={credentials.uid} pid={credentials.pid}>"
        )
        path = getattr(local, "name", None)
        if isinstance(path, bytes):
            path = path.decode("utf-8", "surrogateescape")
        return Peer(
            "unix",
            who,
            0,
            path or "",
            0,
            credentials=credentials,
            tls=tls,
            accepted=accepted,
        )
    remoteHost, remotePort = _hostAndPort(remote)
    localHost, localPort = _hostAndPort(local)
    return Peer(
        protocol,
        remoteHost,
        remotePort,
        localHost,
        localPort,
        tls=tls,
        accepted=accepted,
    )


def peerCredentials(transport: object) -> UnixCredentials | None:
    """
    The process at the other end of a UNIX socket (C{SO_PEERCRED}: pid,
    uid, gid), or C{None} when the system does not say.
    """
    try:
        sock = cast(Any, transport).getHandle()
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    except (AttributeError, OSError):
        return None
    pid, uid, gid = _CREDENTIALS.unpack(raw)
    return UnixCredentials(pid, uid, gid)


def tlsClient(transport: object) -> TLSClient | None:
    """
    What a TLS transport (Twisted's over pyOpenSSL) tells of its client,
    once its handshake is over: the version, the cipher and, when the
    client sent a certificate (it was asked for one and it verified: the
    handshake fails otherwise), the certificate's subject and issuer.
    """
    try:
        connection = cast(Any, transport).getHandle()
        version = str(connection.get_protocol_version_name())
        cipher = str(connection.get_cipher_name())
        certificate = cast(Any, transport).getPeerCertificate()
    except Exception:
        return None
    if certificate is None:
        return TLSClient(version, cipher)
    parsed = certificate.to_cryptography()
    return TLSClient(
        version,
        cipher,
        verify="SUCCESS",
        subject=parsed.subject.rfc4514_string(),
        issuer=parsed.issuer.rfc4514_string(),
        serial=format(parsed.serial_number, "X"),
    )


def spawnFailed(
    serviceLog: logs.ServiceLog, peer: Peer | None, error: Exception
) -> None:
    """
    Report a child that could not be started (L{logs.SPAWN_FAILED}, and
    xinetd's FAIL line where asked): a L{SpawnError} (the system refused:
    no such program, no more processes, ...) with its message; anything
    else is a bug in the daemon, logged with its traceback too.

    @param peer: the client, or C{None} when there is none yet.
    @param error: what the attempt raised (planning it included).
    """
    if isinstance(error, SpawnError):
        message = str(error)
    else:
        serviceLog.logger.failure(
            "while starting {service}",
            Failure(error, type(error), error.__traceback__),  # type: ignore[no-untyped-call]
            service=serviceLog.service,
        )
        message = f"{type(error).__name__}: {error}"
    serviceLog.spawnFailed(peer, message)


def exitFields(reason: Failure) -> tuple[int | None, int | None]:
    """
    The exit status and the killing signal in a C{processExited} or
    C{processEnded} reason: C{(status, None)} for an exit, C{(None,
    signal)} for a death by signal, C{(None, None)} for anything else.
    """
    if isinstance(reason.value, ProcessTerminated):
        return reason.value.exitCode, reason.value.signal
    if isinstance(reason.value, ProcessDone):
        return 0, None
    return None, None


def signalChild(process: IProcessTransport, signalID: str | int) -> None:
    """
    Send a signal to a child's whole process group when it leads one (its
    own children go too), else to the child alone; a child already gone
    is not an error.
    """
    group = IProcessGroup(process, None)
    try:
        if group is not None:
            group.signalProcessGroup(signalID)
        else:
            process.signalProcess(signalID)
    except ProcessExitedAlready:
        pass


class ChildProcess(ProcessProtocol):
    """
    A child started for a service.  Subclasses that override the
    C{ProcessProtocol} methods call these too.

    @ivar serviceLog: the service's log.
    @ivar peer: the client, or C{None} (logged as C{<no address>}).
    @ivar killDelay: seconds from C{SIGTERM} to C{SIGKILL}.
    @ivar pid: the child's pid, once started.
    @ivar process: the child's process transport, once started.
    @ivar startTime: when it started (the clock's time).
    @ivar ended: whether the child has ended (exited, every pipe closed).
    @ivar exitStatus: its exit status once it exited (C{None} if killed).
    @ivar exitSignal: the signal that killed it, if one did.
    @ivar duration: seconds from start to exit, once it exited.
    """

    pid: int | None = None
    process: IProcessTransport | None = None
    ended = False
    exitStatus: int | None = None
    exitSignal: int | None = None
    duration: float | None = None
    _stopPending = False

    def __init__(
        self,
        serviceLog: logs.ServiceLog,
        peer: Peer | None,
        clock: IReactorTime,
        killDelay: float = 5.0,
        onEnded: Callable[[], None] | None = None,
    ) -> None:
        """
        @param clock: for the duration and the C{SIGKILL} timer.
        @param onEnded: called once, when the child has ended.
        """
        self.serviceLog = serviceLog
        self.peer = peer
        self.killDelay = killDelay
        self._clock = clock
        self._onEnded = onEnded
        self.startTime = clock.seconds()
        self._stderr = logs.StderrLines(serviceLog.service, None, serviceLog.logger)
        self._termCall: IDelayedCall | None = None
        self._killCall: IDelayedCall | None = None

    # ProcessProtocol

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.process = self.transport
        self.pid = self._stderr.pid = self.transport.pid
        self.startTime = self._clock.seconds()
        self.serviceLog.start(self.pid, self.peer)
        if self._stopPending:
            self.terminate()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 2:
            self._stderr.feed(data)

    def childConnectionLost(self, childFD: int) -> None:
        if childFD == 2:
            self._stderr.flush()

    def processExited(self, reason: Failure) -> None:
        self.exitStatus, self.exitSignal = exitFields(reason)
        now = self._clock.seconds()
        self.duration = now - self.startTime
        self.serviceLog.exit(
            self.pid,
            self.exitStatus,
            self.exitSignal,
            logs.wholeSeconds(self.startTime, now),
        )

    def processEnded(self, reason: Failure) -> None:
        if self.ended:
            return
        self.ended = True
        self._cancel()
        self._stderr.flush()
        if isinstance(reason.value, SpawnError) and self.pid is None:
            # Its start failed after the spawn returned (a spawner
            # process's execve): reported as a failed spawn is.
            spawnFailed(self.serviceLog, self.peer, reason.value)
        if self._onEnded is not None:
            self._onEnded()

    # the end

    def terminateLater(self, delay: float) -> None:
        """
        L{terminate} in C{delay} seconds, unless a signal is already on its
        way.
        """
        if self._termCall is None and self._killCall is None:
            self._termCall = self._clock.callLater(delay, self.terminate)

    def terminate(self) -> None:
        """
        C{SIGTERM} now, C{SIGKILL} after the kill delay if the child is
        still there; replaces whatever was scheduled.
        """
        self._cancel()
        self._stopPending = False
        if self.ended:
            return
        if self.process is None:
            # A spawner process has not told the pid yet
            # (L{twinetd.spawnclient}): as soon as it has.
            self._stopPending = True
            return
        signalChild(self.process, "TERM")
        self._killCall = self._clock.callLater(self.killDelay, self._kill)

    def stop(self) -> None:
        """
        L{terminate}, unless C{SIGTERM} was sent already and C{SIGKILL} is
        pending.
        """
        if self._killCall is None:
            self.terminate()

    def _kill(self) -> None:
        self._killCall = None
        if self.process is not None and not self.ended:
            signalChild(self.process, "KILL")

    def _cancel(self) -> None:
        self._termCall = cancelCall(self._termCall)
        self._killCall = cancelCall(self._killCall)


@attrs.frozen
class ChildSetup:
    """
    How a service starts the child of each of its connections, the same
    for all of them.

    @ivar serviceLog: the service's log (events, and xinetd's lines where
        C{log_type} asks for them).
    @ivar makePlan: what to run for a peer.
    @ivar spawner: starts the child.
    @ivar clock: for the kill timers and durations.
    @ivar killDelay: seconds from C{SIGTERM} to C{SIGKILL}.
    """

    serviceLog: logs.ServiceLog
    makePlan: Callable[[Peer], LaunchPlan]
    spawner: Spawner
    clock: IReactorTime
    killDelay: float = 5.0


class ChildConnection(Protocol):
    """
    A connection served by one child (started by the subclass): C{onEnded}
    runs once, when both the connection and the child are over (or the
    child could not be started).

    @ivar serviceLog: the service's log.
    @ivar serviceId: the service's id.
    @ivar log: where events go (L{twinetd.logs}).
    """

    def __init__(
        self, setup: ChildSetup, onEnded: Callable[[], None] | None = None
    ) -> None:
        """
        @param setup: how the child is started.
        @param onEnded: called once, when both the connection is closed and
            the child has ended (or could not be started).
        """
        self.serviceLog = setup.serviceLog
        self.serviceId = setup.serviceLog.service
        self.log = setup.serviceLog.logger
        self._makePlan = setup.makePlan
        self._spawner = setup.spawner
        self._clock = setup.clock
        self._killDelay = setup.killDelay
        self._onEnded = onEnded
        self._connectionDone = False
        self._childDone = False
        self._endedCalled = False

    def _maybeEnded(self) -> None:
        if self._connectionDone and self._childDone and not self._endedCalled:
            self._endedCalled = True
            if self._onEnded is not None:
                self._onEnded()
