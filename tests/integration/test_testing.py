"""
L{twinetd.testing} as a user's test suite uses it: a configuration served
in-process, talked to with L{converse}, stopped by C{async with} or by the
pytest fixture.
"""

from __future__ import annotations

import sys

import pytest
import pytest_twisted
from twisted.internet.error import ConnectionRefusedError

from twinetd.model import SocketType
from twinetd.testing import (
    RunningDaemon,
    converse,
    daemonFixture,
    runConfig,
    serviceRecord,
)

from .conftest import CHILDREN, reactor

pytestmark = pytest.mark.usefixtures("noChildLeft")

CONFIG = f"""
service rev
{{
    type        = UNLISTED
    port        = 1
    socket_type = stream
    wait        = no
    user        = -
    flags       = NAMEINARGS
    server      = {sys.executable}
    server_args = {sys.executable} {CHILDREN / "rev.py"}
}}

service echo
{{
    type        = INTERNAL
    id          = echo-stream
    socket_type = stream
    wait        = no
}}
"""

served = daemonFixture(reactor, CONFIG)


@pytest_twisted.ensureDeferred
async def test_asyncWith() -> None:
    """
    C{async with runConfig(...)} serves, and stops everything on the way
    out: the port is closed afterwards.
    """
    async with runConfig(reactor, CONFIG) as daemon:
        port = daemon.port("rev")
        assert await daemon.converse("rev", b"hello\nworld\n") == b"olleh\ndlrow\n"
        assert await daemon.converse("echo-stream", b"ping") == b"ping"
    with pytest.raises(ConnectionRefusedError):
        await converse(reactor, port, b"x")


@pytest_twisted.ensureDeferred
async def test_fixture(served: RunningDaemon) -> None:
    """
    L{daemonFixture} gives each test a running daemon.
    """
    assert await served.converse("rev", b"abc\n") == b"cba\n"


@pytest_twisted.ensureDeferred
async def test_records() -> None:
    """
    Records built by L{serviceRecord} serve without any configuration text.
    """
    record = serviceRecord("cat", server="/bin/cat", serverArgs=())
    async with runConfig(reactor, records=[record]) as daemon:
        assert await daemon.converse("cat", b"x" * 100_000) == b"x" * 100_000
    assert serviceRecord(socketType=SocketType.DGRAM).protocol == "udp"
