"""
L{twinetd.spawn.installExitedReaper}, in a process of its own (it changes
Twisted's global reaping).
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import os, sys
from twisted.internet import reactor, defer, process
from twisted.internet.protocol import ProcessProtocol
from twinetd.spawn import installExitedReaper

installExitedReaper()
ended = []

class Child(ProcessProtocol):
    def __init__(self, name):
        self.name = name
        self.done = defer.Deferred()
    def processEnded(self, reason):
        ended.append((self.name, reason.value.exitCode))
        self.done.callback(None)

def spawn(name, *argv):
    child = Child(name)
    reactor.spawnProcess(child, argv[0], argv, env={})
    return child

async def main():
    sleepers = [spawn(f"sleep{i}", "/bin/sleep", "30") for i in range(5)]
    quick = [spawn(f"quick{i}", "/bin/sh", "-c", f"exit {i % 3}") for i in range(30)]
    # A child Twisted does not know: its own reaper must still get it.
    other = subprocess.Popen(["/bin/true"])
    for child in quick:
        await child.done
    assert other.wait(10) == 0
    assert len(process.reapProcessHandlers) == 5, process.reapProcessHandlers
    for child in sleepers:
        os.kill(child.transport.pid, 15)
    for child in sleepers:
        await child.done
    assert process.reapProcessHandlers == {}
    codes = sorted(code for name, code in ended if name.startswith("quick"))
    assert codes == sorted(i % 3 for i in range(30)), codes
    print("ok", len(ended))

import subprocess
def run():
    d = defer.ensureDeferred(main())
    d.addErrback(lambda f: (f.printTraceback(), os._exit(1)))
    d.addBoth(lambda _: reactor.stop())
reactor.callWhenRunning(run)
reactor.callLater(60, lambda: (print("timeout"), os._exit(1)))
reactor.run()
"""


def test_reapsOnlyExited() -> None:
    """
    Every child is reaped and reported with its own exit code, while others
    still run; a child started outside Twisted is left to its owner.
    """
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    assert done.stdout.strip() == b"ok 35", done.stdout + done.stderr
