"""
Suite-wide checks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _children() -> list[str]:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, fields = stat.rsplit(")", 1)
        if int(fields.split()[1]) == me:
            found.append(f"{entry} {name.split('(', 1)[1]}")
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """
    No test may leave a child process behind, running or unreaped.
    """
    left = _children()
    if left:
        print(f"\nchild processes left behind by the suite: {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
