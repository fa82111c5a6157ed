# -*- test-case-name: tests.unit.test_twistedcompat -*-
"""
Every place twinetd relies on something of Twisted that is not public API: a
private name, an attribute or behaviour of a Twisted class that none of its
interfaces promises, or the text of a message Twisted logs.  Nothing else in
twinetd does.  Each has a test in C{tests/unit/test_twistedcompat.py} that
fails loudly when Twisted changes it; C{setup.py} pins Twisted below its next
major release.  C{docs/twisted-proposals.md} proposes the public APIs that
would retire some of them.

The seams:

  - the PROXY protocol's header parsers (private modules);
  - Twisted's log lines: its accept loop's, its ports', its factories' and
    protocols' start and stop lines; a publisher's observers; the event
    L{Logger.emit} makes (L{emitEvent});
  - twistd's re-raised stopping signal (C{ReactorBase._exitSignal}), and
    its C{SIGUSR1} log rotation, set only over an unset handler
    (L{UnsetHandler});
  - a stream transport's write buffers and its end, for a socket handed to
    a child (L{takeUnsentOutput}, L{releaseHandedOver});
  - a UDP port paused and resumed (L{pauseReading}, L{resumeReading});
  - a L{MultiService}'s children list, for a child detached without being
    stopped and one started before the others (L{detachService},
    L{addServiceFirst});
  - the reactor imported without pyOpenSSL (L{withoutPyOpenSSL});
  - systemd's variables, which Twisted removes from C{os.environ}
    (L{takeSystemdVariables}, L{startEnvironment});
  - process transports started by twinetd rather than by Twisted's fork
    (L{StartedProcess}, L{initWithoutStarting}, L{callProcessEnded}) and
    the reaping of children (L{reaping}, L{setReaper}).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

from twisted.application.service import IService, MultiService
from twisted.internet import process as _process
from twisted.internet._baseprocess import BaseProcess as _BaseProcess
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProcessProtocol,
    IPushProducer,
)
from twisted.logger import ILogObserver, Logger, LogLevel, LogPublisher
from twisted.python.failure import Failure
from twisted.python.systemd import ListenFDs

# twisted.protocols.haproxy exports only proxyEndpoint, whose wrapper makes
# the wrapped protocol's connection before the header is read and drops a
# bad header silently; twinetd's PROXY wrapper (listeners/proxy.py) uses
# the header parsers, which live in private modules.  They are imported on
# first use (L{__getattr__}): the package imports its wrapper, which imports
# twisted.internet.endpoints and through it pyOpenSSL and cryptography when
# installed, megabytes a daemon without a haproxy: listener never uses.
if TYPE_CHECKING:
    from twisted.protocols.haproxy._exceptions import (
        InvalidProxyHeader as InvalidProxyHeader,
    )
    from twisted.protocols.haproxy._info import ProxyInfo as ProxyInfo
    from twisted.protocols.haproxy._v1parser import V1Parser as V1Parser
    from twisted.protocols.haproxy._v2parser import V2Parser as V2Parser

_PROXY_NAMES = {
    "InvalidProxyHeader": "twisted.protocols.haproxy._exceptions",
    "ProxyInfo": "twisted.protocols.haproxy._info",
    "V1Parser": "twisted.protocols.haproxy._v1parser",
    "V2Parser": "twisted.protocols.haproxy._v2parser",
}


def __getattr__(name: str) -> Any:
    """
    The PROXY header parsers' names, imported when first asked for.
    """
    module = _PROXY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


# twisted.internet.tcp's accept loop (tcp._accept, logging through
# tcp.Port._logger): one event per connection it could not accept.
TCP_PORT_NAMESPACE = "twisted.internet.tcp.Port"
ACCEPT_ERROR_FORMAT = "Could not accept new connection ({acceptError})"
EMFILE_CLOSED_FORMAT = "EMFILE recovery: Closed socket from {address}"
EMFILE_NOTES = frozenset(
    {
        "EMFILE encountered; releasing reserved file descriptor.",
        "Re-reserving EMFILE recovery file descriptor.",
    }
)

# Legacy (twisted.python.log.msg) lines of every listening port:
# tcp.Port.startListening (its factory's logPrefix: a TLS or PROXY wrapping
# factory adds " (TLS)" or " (PROXY)"), unix.Port's, and tcp.Port /
# udp.Port / unix.Port connectionLost.
_PORT_LINES = re.compile(
    r"\S+( \((TLS|PROXY)\))* starting on (\d+|'[^']*')"
    r"|\((TCP|UDP) Port \d+ Closed\)|\(UNIX Port .+ Closed\)"
)

# protocol.Factory.doStart/doStop of a factory whose C{noisy} is set
# (twisted.logger, the factory as log_source), and DatagramProtocol's
# doStart/doStop (legacy text with the protocol's default repr).
_LIFECYCLE_FORMATS = frozenset(
    {"Starting factory {factory!r}", "Stopping factory {factory!r}"}
)
_PROTOCOL_LINE = re.compile(r"(Starting|Stopping) protocol <([\w.]+) object at .*")


def observersOf(publisher: LogPublisher) -> list[ILogObserver]:
    """
    The observers of C{publisher}, in order (C{LogPublisher._observers}).
    """
    return list(publisher._observers)


def emitEvent(
    logger: Logger, level: LogLevel, format: str, event: dict[str, object]
) -> None:
    """
    What C{logger.emit(level, format, **event)} does, for a C{level} known
    to be valid and an C{event} without C{log_trace}: C{event}, with the
    keys Twisted documents for every event added, to C{logger}'s observer.
    Without L{Logger.emit}'s check of the level, which sorts
    L{LogLevel}'s constants on every call (three events per connection).
    """
    event.update(
        log_logger=logger,
        log_level=level,
        log_namespace=logger.namespace,
        log_source=logger.source,
        log_format=format,
        # Wall-clock time, as Logger.emit stamps it: observers print it.
        log_time=time.time(),
    )
    logger.observer(event)


def acceptFailure(event: Mapping[str, Any]) -> str | None:
    """
    The errno name (C{EMFILE}, ...) when C{event} is Twisted's line for one
    connection a TCP port did not accept: C{accept()} failed, or the EMFILE
    recovery accepted and closed it at once.
    """
    if event.get("log_namespace") != TCP_PORT_NAMESPACE:
        return None
    format = event.get("log_format")
    if format == ACCEPT_ERROR_FORMAT:
        return str(event.get("acceptError"))
    if format == EMFILE_CLOSED_FORMAT:
        return "EMFILE"
    return None


def isAcceptNote(event: Mapping[str, Any]) -> bool:
    """
    Whether C{event} is one of the lines around Twisted's EMFILE recovery
    (releasing and re-reserving its spare descriptor).
    """
    return (
        event.get("log_namespace") == TCP_PORT_NAMESPACE
        and event.get("log_format") in EMFILE_NOTES
    )


def isPortLine(event: Mapping[str, Any]) -> bool:
    """
    Whether C{event} is a port's C{X starting on N} or C{(TCP Port N
    Closed)} line.
    """
    text = event.get("log_text")
    return (
        event.get("log_namespace") == "log_legacy"
        and isinstance(text, str)
        and _PORT_LINES.fullmatch(text) is not None
    )


def isLifecycleLine(event: Mapping[str, Any], modulePrefix: str) -> bool:
    """
    Whether C{event} is a C{Starting/Stopping factory/protocol} line of an
    object whose class lives under C{modulePrefix}.
    """
    if event.get("log_format") in _LIFECYCLE_FORMATS:
        source = event.get("log_source")
        return source is not None and type(source).__module__.startswith(modulePrefix)
    text = event.get("log_text")
    if event.get("log_namespace") != "log_legacy" or not isinstance(text, str):
        return False
    match = _PROTOCOL_LINE.fullmatch(text)
    return match is not None and match.group(2).startswith(modulePrefix)


def exitSignal(reactor: object) -> int | None:
    """
    The signal that stopped the reactor, which twistd re-raises once the
    reactor has stopped (C{ReactorBase._exitSignal}, read by
    C{twisted.application.app.ApplicationRunner.startReactor}).
    """
    signum: int | None = getattr(reactor, "_exitSignal", None)
    return signum


def clearExitSignal(reactor: object) -> None:
    """
    Let twistd exit normally after a signal stopped the reactor.
    """
    reactor._exitSignal = None  # type: ignore[attr-defined]


class UnsetHandler:
    """
    A signal handler twistd takes for no handler.

    twistd sets its own C{SIGUSR1} handler (its log file's rotation) only
    when the handler in place is false (C{None} or C{SIG_DFL}:
    C{UnixAppLogger._getLogObserver}); a handler of this class is false, so
    twistd's rotation replaces it as it replaces no handler.
    """

    def __bool__(self) -> bool:
        return False


def writeBuffered(transport: object) -> bool:
    """
    Whether a Twisted file descriptor transport (C{abstract.FileDescriptor}:
    TCP, UNIX) still holds bytes it has not written to its socket
    (C{dataBuffer} past C{offset}, and C{_tempDataBuffer}).
    """
    data = getattr(transport, "dataBuffer", b"")
    offset: int = getattr(transport, "offset", 0)
    temp: int = getattr(transport, "_tempDataLen", 0)
    return len(data) > offset or temp > 0


# A socket handed to a child (modes/handoff.py)


def takeUnsentOutput(transport: object) -> bytes:
    """
    Take what was written to a Twisted stream transport and is not sent yet
    out of its buffers (C{abstract.FileDescriptor}'s C{dataBuffer} from
    C{offset} on, then C{_tempDataBuffer}), leaving them empty: the handoff
    sends it itself before the socket becomes the child's.
    """
    t: Any = transport
    buffer = getattr(t, "dataBuffer", b"")
    offset = getattr(t, "offset", 0)
    later = getattr(t, "_tempDataBuffer", [])
    pending = bytes(buffer[offset:]) + b"".join(later)
    if pending:
        t.dataBuffer, t.offset, t._tempDataBuffer, t._tempDataLen = b"", 0, [], 0
    return pending


class _SocketTransport(TypingProtocol):
    """
    What L{releaseHandedOver} uses of Twisted's C{tcp.Server} (or
    C{unix.Server}): L{abstract.FileDescriptor}'s C{stopReading} and
    C{stopWriting}, the C{connectionLost} the reactor calls, the socket.
    """

    def getHandle(self) -> socket.socket: ...

    def stopReading(self) -> None: ...

    def stopWriting(self) -> None: ...

    def connectionLost(self, reason: Failure) -> None: ...


def releaseHandedOver(transport: object, reason: Failure) -> None:
    """
    Forget a Twisted connection whose socket a child now holds, as the
    reactor ends one: out of the reactor first (epoll keys its
    registrations on the open file, which the child keeps open), then its
    socket object closed, then the transport's C{connectionLost(reason)}
    (which tells its protocol).  Twisted's own C{shutdown()} in
    C{connectionLost} then acts on a closed socket object (C{EBADF},
    which it ignores), so the child's connection is never shut down, and a
    descriptor number reused meanwhile is never touched.
    """
    t: _SocketTransport = transport  # type: ignore[assignment]
    t.stopReading()
    t.stopWriting()
    t.getHandle().close()
    t.connectionLost(reason)


# A UDP port's reading (listeners/datagram.py)


def pauseReading(port: IListeningPort) -> None:
    """
    Stop reading a UDP port from C{adoptDatagramPort} or C{listenUDP}; its
    datagrams wait in the kernel.  Twisted's C{udp.Port} is an
    C{abstract.FileDescriptor}, a push producer whose C{pauseProducing}
    stops reading; C{IListeningPort} and C{IUDPTransport} do not promise it.
    """
    IPushProducer(port).pauseProducing()


def resumeReading(port: IListeningPort) -> None:
    """
    Read a UDP port paused by L{pauseReading} again.
    """
    IPushProducer(port).resumeProducing()


# A MultiService's children (service.py, tap.py)


def detachService(parent: MultiService, child: IService) -> None:
    """
    Take C{child} out of C{parent} without stopping it (a reload's
    replaced listener, whose connections go on).  C{removeService} would
    stop a running child; this edits C{MultiService}'s C{namedServices}
    and C{services} as it does, and clears the child's C{parent}.
    """
    if child.name:
        del parent.namedServices[child.name]
    parent.services.remove(child)
    child.parent = None


def cancelCall(call: IDelayedCall | None) -> IDelayedCall | None:
    """
    Cancel C{call} unless it ran or was cancelled already (or is C{None}):
    a delayed call may be cancelled only while it is active.

    @return: C{None}, to assign: C{self._timer = cancelCall(self._timer)}.
    """
    if call is not None and call.active():
        call.cancel()
    return None


def addServiceFirst(parent: MultiService, child: IService) -> None:
    """
    Add C{child} to C{parent} as its first child: a C{MultiService} starts
    its children in the order of its C{services} list (twistd's log and
    the daemon's control must start before the listeners bind).
    """
    child.setServiceParent(parent)  # type: ignore[no-untyped-call]
    parent.services.remove(child)
    parent.services.insert(0, child)


# The reactor's first import (tap.py)


@contextlib.contextmanager
def withoutPyOpenSSL() -> Iterator[None]:
    """
    While in this context, C{import OpenSSL} fails as if pyOpenSSL were not
    installed (a C{None} in C{sys.modules}).  Importing the reactor imports
    Twisted's TLS modules when it can (C{twisted.internet.posixbase}: the
    C{tls} and C{ssl} modules, for C{listenSSL}; C{twisted.internet.tcp}:
    C{_newtls}, for C{startTLS}), hence pyOpenSSL and cryptography, some
    14 MB resident, and works without them: its C{listenSSL} and a TCP
    transport's C{startTLS} are then missing, which twinetd does not use
    (its C{ssl:} listeners wrap a TCP endpoint's protocols themselves and
    import pyOpenSSL then).  A module imported before stays as it is.
    """
    if "OpenSSL" in sys.modules:
        yield
        return
    sys.modules["OpenSSL"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if "OpenSSL" in sys.modules and sys.modules["OpenSSL"] is None:
            del sys.modules["OpenSSL"]


# systemd's variables (listeners/endpoints.py, tap.py)


def takeSystemdVariables() -> None:
    """
    Take systemd's C{LISTEN_PID} and C{LISTEN_FDS} out of C{os.environ}
    when they are this process's, as importing C{twisted.internet.endpoints}
    does (its C{systemd:} parser's C{ListenFDs.fromEnvironment}): the daemon
    imports that module only for a C{twinetd_listen} endpoint, and the
    children's environment (C{passenv}) must not depend on whether one is
    used.
    """
    ListenFDs.fromEnvironment()


def startEnvironment() -> Mapping[str, str]:
    """
    The environment this process started with (C{/proc/self/environ}),
    else C{os.environ}.  Importing C{twisted.internet.endpoints} builds
    its C{systemd:} parser's C{ListenFDs}, which removes C{LISTEN_PID} and
    C{LISTEN_FDS} from C{os.environ} (and ignores the sockets when
    C{LISTEN_FDNAMES} is missing, as C{systemd-socket-activate} leaves it
    without C{--fdname}).
    """
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return os.environ
    found: dict[str, str] = {}
    for item in raw.split(b"\0"):
        name, equals, value = item.partition(b"=")
        if equals:
            found[os.fsdecode(name)] = os.fsdecode(value)
    return found


# Process transports (spawn.py, spawnclient.py)
#
# twinetd's children are Twisted's process transport (its pipes' readers
# and writers, exit reasons, processExited/processEnded order) with the
# start replaced.  Process.__init__ makes the pipes and calls
# self._fork(path, uid, gid, executable, args, environment, fdmap=fdmap);
# a transport whose child another process starts sets itself up as
# BaseProcess.__init__ does, makes its pipes with processReaderFactory /
# processWriterFactory, and ends as BaseProcess.maybeCallProcessEnded does
# (Process's own reaps first).  Twisted's SIGCHLD handling calls the module
# attribute process.reapAllProcesses, which reaps through the handlers in
# process.reapProcessHandlers.


#: What the protocol of every child that exited with status 0 gets, the
#: same Failure each time (as every cleanly closed connection gets
#: Twisted's C{connectionDone}): a Failure each, twice per child, was
#: about 4 % of a handed-off connection's instructions.
EXITED_ZERO = Failure(ProcessDone(0))  # type: ignore[no-untyped-call]

# Where Twisted's process transports log a protocol's failure.
_processLog = Logger(namespace=_BaseProcess.__module__)


def exitReason(reason: BaseException) -> Failure:
    """
    A child's end (C{Process._getReason}) as its protocol gets it.
    """
    if type(reason) is ProcessDone and reason.status == 0:
        return EXITED_ZERO
    return Failure(reason)  # type: ignore[no-untyped-call]


def callProcessExited(transport: _process.Process, reason: BaseException) -> None:
    """
    C{processExited} as Twisted's base process class calls it (an error in
    the protocol logged, not raised), with L{exitReason}.
    """
    proto = transport.proto
    if proto is not None:
        try:
            proto.processExited(exitReason(reason))
        except BaseException:
            _processLog.failure("while calling processExited:")


class StartedProcess(_process.Process):
    """
    Twisted's process transport, whose child is started by
    L{startChild} instead of Twisted's fork; its protocol's reasons come
    from L{exitReason}.
    """

    def _callProcessExited(self, reason: BaseException) -> None:
        callProcessExited(self, reason)

    def maybeCallProcessEnded(self) -> None:
        # Process's: every pipe closed and the child reaped, then the
        # protocol told (callProcessEnded, for the base class's).
        if self.pipes:
            return
        if not self.lostProcess:
            self.reapProcess()  # type: ignore[no-untyped-call]
            return
        callProcessEnded(self)

    def _fork(
        self,
        path: object,
        uid: object,
        gid: object,
        executable: str,
        args: list[str],
        environment: dict[str, str],
        **kwargs: Any,
    ) -> None:
        self.startChild(kwargs["fdmap"])

    def startChild(self, fdmap: dict[int, int]) -> None:
        """
        Start the child with C{fdmap} (child descriptor to the daemon's,
        the pipes made); set C{pid}.
        """
        raise NotImplementedError()


def initWithoutStarting(
    transport: _process.Process, protocol: IProcessProtocol
) -> None:
    """
    Set C{transport} up with its C{protocol} as Twisted's base process
    class does, without C{Process.__init__}'s pipes and fork.
    """
    _BaseProcess.__init__(transport, protocol)


def callProcessEnded(transport: _process.Process) -> None:
    """
    Call C{transport}'s protocol's C{processEnded} (once) with the reason
    its C{status} gives (L{exitReason}), as Twisted's base process class
    does once the child is reaped and the pipes closed.
    """
    proto = transport.proto
    if proto is None or transport.status is None:
        return
    reason = transport._getReason(transport.status)
    transport.proto = None
    try:
        proto.processEnded(exitReason(reason))
    except BaseException:
        _processLog.failure("while calling processEnded:")


def reaping() -> tuple[Callable[[], None], Mapping[int, Any]]:
    """
    What Twisted calls on every C{SIGCHLD}, and the process transports it
    reaps through (pid to transport, each with C{reapProcess()}).
    """
    return _process.reapAllProcesses, _process.reapProcessHandlers


def setReaper(reaper: Callable[[], None]) -> None:
    """
    Make Twisted call C{reaper} on every C{SIGCHLD} instead.
    """
    _process.reapAllProcesses = reaper
