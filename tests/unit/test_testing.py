"""
L{twinetd.testing}'s fakes provide the interfaces they stand in for, and its
record builder fills in what a test leaves out.
"""

from __future__ import annotations

from twisted.internet.interfaces import (
    IListeningPort,
    IProcessTransport,
    IPushProducer,
    IReactorProcess,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
    IUDPTransport,
)
from twisted.internet.protocol import DatagramProtocol, ProcessProtocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twinetd.model import SocketType
from twinetd.spawn import IProcessGroup
from twinetd.testing import MemoryProcessReactor, serviceRecord


class FakesTests(SynchronousTestCase):
    def test_reactor(self) -> None:
        reactor = MemoryProcessReactor()
        for interface in (IReactorProcess, IReactorUDP, IReactorTCP, IReactorTime):
            self.assertTrue(verifyObject(interface, reactor), interface)

    def test_process(self) -> None:
        reactor = MemoryProcessReactor(newSession=True)
        process = reactor.spawnProcess(ProcessProtocol(), "/bin/true", ["true"])
        self.assertTrue(verifyObject(IProcessTransport, process))
        self.assertTrue(verifyObject(IProcessGroup, process))

    def test_udpPort(self) -> None:
        port = MemoryProcessReactor().listenUDP(0, DatagramProtocol())
        self.assertTrue(verifyObject(IListeningPort, port))
        self.assertTrue(verifyObject(IUDPTransport, port))
        self.assertTrue(verifyObject(IPushProducer, port))


class ServiceRecordTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        A C{wait = no} stream service on an ephemeral port, its id its name.
        """
        record = serviceRecord("echo", server="/bin/cat")
        self.assertEqual(
            (record.id, record.socketType, record.protocol, record.wait, record.port),
            ("echo", SocketType.STREAM, "tcp", False, 0),
        )
        self.assertEqual(record.server, "/bin/cat")

    def test_datagramProtocol(self) -> None:
        record = serviceRecord(socketType=SocketType.DGRAM, wait=True)
        self.assertEqual((record.protocol, record.wait), ("udp", True))
