# -*- test-case-name: tests.unit.test_testing -*-
"""
Fakes for unit tests of twinetd and of applications embedding it.

  - L{MemoryProcessReactor}: C{MemoryReactorClock} that also implements
    C{IReactorProcess}; C{spawnProcess} records the call and returns a
    L{FakeProcess} that a test drives (the child's output, its exit) and
    inspects (what was written to it, closed, signalled).  It implements
    C{IReactorUDP} too: C{listenUDP} returns a L{FakeUDPPort} that records
    the datagrams written and lets a test deliver datagrams;
    L{MemoryProcessReactor.bindDatagramPort} does the same for a
    L{twinetd.listeners.datagram.DatagramListener} (its C{bindPort}),
    binding no socket.
  - L{FakeHangupWatcher}: a L{twinetd.hangup.Watcher} whose peers a test
    hangs up (L{FakeHangupWatcher.hangUp}).
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import AnyStr

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProcessProtocol,
    IProcessTransport,
    IProducer,
    IPushProducer,
    IReactorProcess,
    IReactorUDP,
    ITransport,
    IUDPTransport,
)
from twisted.internet.protocol import AbstractDatagramProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from twinetd.listeners.datagram import MAX_DATAGRAM
from twinetd.listeners.sockets import listenAddress
from twinetd.model import ServiceConfig
from twinetd.spawn import IProcessGroup

# Paused sockets


class FakeHangupWatcher:
    """
    A L{twinetd.hangup.Watcher} for tests: it records which transports are
    watched, and L{hangUp} plays their peer's end of file or reset.

    @ivar watched: the watched transports and their callbacks, by token.
    @ivar watches: how many watches were ever asked for.
    """

    def __init__(self) -> None:
        self.watched: dict[int, tuple[ITransport, Callable[[bool], None]]] = {}
        self.watches = 0

    def watch(
        self, transport: ITransport, onHangup: Callable[[bool], None]
    ) -> int | None:
        self.watches += 1
        self.watched[self.watches] = (transport, onHangup)
        return self.watches

    def unwatch(self, token: int) -> None:
        self.watched.pop(token, None)

    def isWatched(self, transport: ITransport) -> bool:
        """
        Whether C{transport} is watched now.
        """
        return any(t is transport for t, _ in self.watched.values())

    def hangUp(self, transport: ITransport, reset: bool) -> None:
        """
        C{transport}'s peer resets the connection (C{reset}) or its end of
        file arrives: the watches of C{transport} are told.
        """
        for watched, onHangup in list(self.watched.values()):
            if watched is transport:
                onHangup(reset)


# Processes


@attrs.define
class SpawnCall:
    """
    The arguments of one C{spawnProcess} call.
    """

    executable: str
    args: tuple[str, ...]
    env: dict[str, str] | None
    path: str | None
    uid: int | None
    gid: int | None
    usePTY: bool
    childFDs: dict[int, int | str] | None


@implementer(IProcessTransport)
class FakeProcess:
    """
    A child process that never runs: the test plays its part.

    @ivar call: how it was spawned.
    @ivar proto: its process protocol.
    @ivar written: bytes written to its standard input, in order.
    @ivar closedFDs: child descriptors the parent closed, in order.
    @ivar signals: signals sent to the process, as given (C{"TERM"}, C{9}).
    @ivar groupSignals: signals sent to its process group (only with
        C{newSession}, when it provides L{IProcessGroup}).
    @ivar paused: whether its output is paused (producer state).
    @ivar producer: the producer registered for its standard input.
    """

    def __init__(
        self,
        proto: IProcessProtocol,
        call: SpawnCall,
        pid: int,
        newSession: bool = False,
    ) -> None:
        self.proto = proto
        self.call = call
        self.pid: int | None = pid
        self.written: list[bytes] = []
        self.closedFDs: list[int] = []
        self.signals: list[str | int] = []
        self.groupSignals: list[str | int] = []
        self.paused = False
        self.producer: IProducer | None = None
        self.streaming: bool | None = None
        self.exited = False
        self.ended = False
        childFDs = call.childFDs or {0: "w", 1: "r", 2: "r"}
        self.openFDs = {fd for fd, kind in childFDs.items() if kind in ("r", "w")}
        if newSession:
            self.processGroup: int | None = pid
            alsoProvides(self, IProcessGroup)

    # IProcessTransport

    def write(self, data: bytes) -> None:
        if 0 in self.openFDs and 0 not in self.closedFDs:
            self.written.append(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        for chunk in data:
            self.write(chunk)

    def closeChildFD(self, descriptor: int) -> None:
        if descriptor not in self.closedFDs:
            self.closedFDs.append(descriptor)

    def closeStdin(self) -> None:
        self.closeChildFD(0)

    def closeStdout(self) -> None:
        self.closeChildFD(1)

    def closeStderr(self) -> None:
        self.closeChildFD(2)

    def writeToChild(self, childFD: int, data: bytes) -> None:
        if childFD == 0:
            self.write(data)

    def loseConnection(self) -> None:
        for fd in (0, 1, 2):
            self.closeChildFD(fd)

    def signalProcess(self, signalID: str | int) -> None:
        if self.exited:
            raise ProcessExitedAlready()
        self.signals.append(signalID)

    def signalProcessGroup(self, signalID: str | int) -> None:
        if self.ended:
            raise ProcessExitedAlready()
        self.groupSignals.append(signalID)

    def getPeer(self) -> IAddress:
        raise NotImplementedError()

    def getHost(self) -> IAddress:
        raise NotImplementedError()

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        if 0 not in self.openFDs:
            producer.stopProducing()
            return
        self.producer, self.streaming = producer, streaming

    def unregisterProducer(self) -> None:
        self.producer = self.streaming = None

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.loseConnection()

    # Driving the child

    @property
    def stdinClosed(self) -> bool:
        return 0 in self.closedFDs

    def output(self, data: bytes, childFD: int = 1) -> None:
        """
        The child writes C{data} on C{childFD}.
        """
        self.proto.childDataReceived(childFD, data)

    def fdLost(self, childFD: int) -> None:
        """
        The pipe of C{childFD} closes (the child closed it, or the parent's
        close took effect); a producer on standard input is stopped.
        """
        if childFD in self.openFDs:
            self.openFDs.discard(childFD)
            if childFD == 0 and self.producer is not None:
                producer, self.producer = self.producer, None
                producer.stopProducing()
            self.proto.childConnectionLost(childFD)

    def exit(self, status: int = 0, signal: int | None = None) -> None:
        """
        The child exits with C{status}, or is killed by C{signal};
        C{processExited} runs.
        """
        self.exited = True
        if signal is not None:
            self._reason = Failure(ProcessTerminated(None, signal, signal))
        elif status:
            self._reason = Failure(ProcessTerminated(status, None, status << 8))
        else:
            self._reason = Failure(ProcessDone(0))
        self.pid = None
        self.proto.processExited(self._reason)

    def end(self, status: int = 0, signal: int | None = None) -> None:
        """
        The child exits (unless L{exit} already ran) and its pipes close:
        C{childConnectionLost} for every open pipe, then C{processEnded}.
        """
        if not self.exited:
            self.exit(status, signal)
        for fd in sorted(self.openFDs):
            self.fdLost(fd)
        self.ended = True
        self.proto.processEnded(self._reason)

    def endBySignal(self, signalID: str | int) -> None:
        """
        End the child as the last signal sent to it would: convenience for
        TERM/KILL tests.
        """
        number = (
            int(getattr(_signal, "SIG" + signalID))
            if isinstance(signalID, str)
            else signalID
        )
        self.end(signal=number)


#: A datagram's address: host and port.
Address = tuple[str, int]


@implementer(IListeningPort, IUDPTransport, IPushProducer)
class FakeUDPPort:
    """
    A UDP port that never touches the network: the test delivers datagrams
    and reads what the protocol wrote.

    @ivar protocol: the datagram protocol.
    @ivar written: C{(datagram, address)} pairs written, in order.
    @ivar listening: whether C{stopListening} has not been called yet.
    @ivar reading: whether the port reads (C{pauseProducing} and
        C{resumeProducing}, as Twisted's port, toggle it; L{deliver}
        refuses while not reading).
    @ivar writeErrors: raised (once each, in order) by the next writes.
    """

    def __init__(
        self,
        port: int,
        protocol: AbstractDatagramProtocol,
        interface: str,
        maxPacketSize: int,
    ) -> None:
        self.port = port
        self.protocol = protocol
        self.interface = interface
        self.maxPacketSize = maxPacketSize
        self.written: list[tuple[bytes, Address | None]] = []
        self.writeErrors: list[Exception] = []
        self.listening = True
        self.reading = True

    def deliver(self, datagram: bytes, addr: Address) -> None:
        """
        A datagram from C{addr} arrives.
        """
        assert self.listening and self.reading, "the port is not reading"
        self.protocol.datagramReceived(datagram, addr)

    # IUDPTransport

    def write(self, datagram: bytes, addr: Address | None = None) -> None:
        if self.writeErrors:
            raise self.writeErrors.pop(0)
        self.written.append((datagram, addr))

    def connect(self, host: str, port: int) -> None:
        raise NotImplementedError()

    def setBroadcastAllowed(self, enabled: bool) -> None:
        pass

    def getBroadcastAllowed(self) -> bool:
        return False

    # IListeningPort

    def startListening(self) -> None:
        self.protocol.makeConnection(self)

    def stopListening(self) -> None:
        if self.listening:
            self.listening = False
            self.protocol.doStop()

    def getHost(self) -> IPv4Address | IPv6Address:
        if ":" in self.interface:
            return IPv6Address("UDP", self.interface, self.port)
        return IPv4Address("UDP", self.interface or "0.0.0.0", self.port)

    # IPushProducer (Twisted's UDP port is one)

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True

    def stopProducing(self) -> None:
        self.stopListening()

    startReading = resumeProducing
    stopReading = pauseProducing


@implementer(IReactorProcess, IReactorUDP)
class MemoryProcessReactor(MemoryReactorClock):
    """
    A fake reactor (TCP, time) that also spawns L{FakeProcess}es and
    listens on L{FakeUDPPort}s.

    @ivar udpPortsListened: the UDP ports, in order.

    @ivar spawned: the processes, in order.
    @ivar spawnErrors: executables whose spawn raises the given C{OSError}.
    @ivar newSession: whether processes provide L{IProcessGroup}.
    """

    def __init__(self, newSession: bool = False) -> None:
        super().__init__()
        self.spawned: list[FakeProcess] = []
        self.spawnErrors: dict[str, OSError] = {}
        self.newSession = newSession
        self._nextPid = 1000
        self.udpPortsListened: list[FakeUDPPort] = []
        self._nextUDPPort = 40000

    def spawnProcess(
        self,
        processProtocol: IProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str] = (),
        env: Mapping[AnyStr, AnyStr] | None = None,
        path: bytes | str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        usePTY: bool = False,
        childFDs: Mapping[int, int | str] | None = None,
    ) -> FakeProcess:
        exe = executable.decode() if isinstance(executable, bytes) else executable
        if exe in self.spawnErrors:
            raise self.spawnErrors[exe]
        call = SpawnCall(
            executable=exe,
            args=tuple(a.decode() if isinstance(a, bytes) else a for a in args),
            env=None if env is None else {str(k): str(v) for k, v in env.items()},
            path=None if path is None else str(path),
            uid=uid,
            gid=gid,
            usePTY=usePTY,
            childFDs=None if childFDs is None else dict(childFDs),
        )
        self._nextPid += 1
        process = FakeProcess(processProtocol, call, self._nextPid, self.newSession)
        self.spawned.append(process)
        processProtocol.makeConnection(process)
        return process

    def listenUDP(
        self,
        port: int,
        protocol: AbstractDatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,
    ) -> FakeUDPPort:
        """
        Start a L{FakeUDPPort}; port 0 gets a made-up number.
        """
        if port == 0:
            self._nextUDPPort += 1
            port = self._nextUDPPort
        udp = FakeUDPPort(port, protocol, interface, maxPacketSize)
        self.udpPortsListened.append(udp)
        udp.startListening()
        return udp

    def bindDatagramPort(
        self, config: ServiceConfig, protocol: AbstractDatagramProtocol
    ) -> FakeUDPPort:
        """
        A L{twinetd.listeners.datagram.BindPort}: L{listenUDP} on C{config}'s port and
        address (with no socket, so C{v6only} has no effect).
        """
        return self.listenUDP(
            config.port,
            protocol,
            interface=listenAddress(config),
            maxPacketSize=MAX_DATAGRAM,
        )
