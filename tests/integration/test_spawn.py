"""
L{twinetd.spawn} with real children: the start-up program that applies
C{nice} and C{rlimit_*} leaves nothing of itself in the server.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from tests.integration.conftest import childPlan, reactor, within
from twinetd import forkexec
from twinetd.errors import SpawnError
from twinetd.launch import LaunchPlan
from twinetd.spawn import PosixSpawner

pytestmark = pytest.mark.usefixtures("noChildLeft")


class Output(ProcessProtocol):
    """
    Collects a child's standard output; C{ended} fires with it.
    """

    def __init__(self) -> None:
        self.data = b""
        self.ended: defer.Deferred[bytes] = defer.Deferred()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == 1:
            self.data += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(self.data)


async def run(plan: LaunchPlan) -> tuple[int, bytes]:
    output = Output()
    process: Any = PosixSpawner(reactor).spawn(output, plan)
    pid: int = process.pid
    data: bytes = await within(output.ended)
    return pid, data


@pytest_twisted.ensureDeferred
async def test_shimIsInvisible() -> None:
    """
    A child with C{nice} and C{rlimit_files} runs its server in the process
    the daemon started (same pid), with exactly the planned environment
    (Python's start-up adds C{LC_CTYPE}; the start-up program removes it),
    argv, working directory C{/}, the limit and the priority.
    """
    env = (("GREETING", "hi"), ("PATH", "/usr/bin:/bin"))
    limited = {"nice": 2, "rlimits": (("files", 99),)}
    plan = LaunchPlan(executable="/usr/bin/env", argv=("env",), env=env, **limited)
    _, data = await run(plan)
    assert data.decode().splitlines() == ["GREETING=hi", "PATH=/usr/bin:/bin"]
    _, data = await run(attrs.evolve(childPlan("env", "x"), **limited))
    report = json.loads(data)
    assert report["cwd"] == "/"
    assert report["argv"][1:] == ["x"]
    plan = attrs.evolve(childPlan("whoami"), **limited)
    pid, data = await run(plan)
    fields = dict(line.split("=", 1) for line in data.decode().splitlines())
    assert int(fields["pid"]) == pid
    assert fields["nofile"] == "99"
    assert int(fields["nice"]) == os.nice(0) + 2


def test_shimMissingServer() -> None:
    """
    A missing server is a spawn failure before anything starts, as on the
    other paths (not an exit of the start-up program).
    """
    plan = LaunchPlan(
        executable="/nonexistent/server", argv=("server",), env=(), nice=1
    )
    with pytest.raises(SpawnError, match="No such file or directory"):
        PosixSpawner(reactor).spawn(ProcessProtocol(), plan)


@pytest.fixture(params=["fork_exec", "Popen"])
def startPath(request: Any, monkeypatch: Any) -> str:
    """
    Each way L{spawn._spawn} starts a child: C{_posixsubprocess.fork_exec}
    directly (this Python's signature is known), or L{subprocess.Popen}
    (any other Python).
    """
    name: str = request.param
    if name == "Popen":
        monkeypatch.setattr(forkexec, "FORK_EXEC", None)
    elif forkexec.FORK_EXEC is None:
        pytest.skip("this Python's fork_exec is not one twinetd calls directly")
    return name


def test_forkExecKnown() -> None:
    """
    The Pythons twinetd supports and this project tests (3.10 to 3.13)
    start children without Popen.
    """
    if sys.version_info[:2] <= (3, 13):
        assert forkexec.FORK_EXEC is not None


@pytest_twisted.ensureDeferred
async def test_startPaths(startPath: str) -> None:
    """
    Both paths give the child exactly the planned argv, environment,
    working directory, session and standard input, output and error.
    """
    plan = attrs.evolve(childPlan("env", "x"), env=(("ONLY", "this"),))
    _, data = await run(plan)
    report = json.loads(data)
    assert report["cwd"] == "/"
    assert report["argv"][1:] == ["x"]
    # Python's start-up may add LC_CTYPE to the child's own view.
    assert set(report["env"]) - {"LC_CTYPE"} == {"ONLY"}
    assert report["env"]["ONLY"] == "this"


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing", "No such file or directory"), ("notExecutable", "Permission denied")],
)
def test_startPathErrors(
    startPath: str, tmp_path: Any, name: str, message: str
) -> None:
    """
    A child that cannot execute its server is the same spawn failure on
    both paths, and is reaped.
    """
    (tmp_path / "notExecutable").write_text("#!/bin/sh\n")
    (tmp_path / "notExecutable").chmod(0o644)
    plan = LaunchPlan(executable=str(tmp_path / name), argv=("server",), env=())
    with pytest.raises(SpawnError, match=message):
        PosixSpawner(reactor).spawn(ProcessProtocol(), plan)
