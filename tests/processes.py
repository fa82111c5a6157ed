"""
Processes seen through /proc: this process's children, for the checks that
no test leaves one behind, and a daemon's, for tests that measure one.
"""

from __future__ import annotations

import os
from pathlib import Path


def childStates(parent: int) -> dict[int, tuple[str, str]]:
    """
    The children of process C{parent} (zombies included): pid to (command
    name, state letter such as C{"S"} or C{"Z"}).
    """
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: the fields
        # after the last ")" are fixed.
        name, fields = stat.rsplit(")", 1)
        state, ppid = fields.split()[:2]
        if int(ppid) == parent:
            found[int(entry)] = (name.split("(", 1)[1], state)
    return found


def childProcesses() -> dict[int, str]:
    """
    This process's children (zombies included), pid to command name.
    """
    return {pid: name for pid, (name, _) in childStates(os.getpid()).items()}
