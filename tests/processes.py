"""
This process's children, for the checks that no test leaves one behind.
"""

from __future__ import annotations

import os
from pathlib import Path


def childProcesses() -> dict[int, str]:
    """
    This process's children (zombies included), pid to command name.
    """
    me = os.getpid()
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
        if int(fields.split()[1]) == me:
            found[int(entry)] = name.split("(", 1)[1]
    return found
