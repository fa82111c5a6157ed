"""
Suite-wide checks.
"""

from __future__ import annotations

import pytest

from tests.processes import childProcesses


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """
    No test may leave a child process behind, running or unreaped.
    """
    left = [f"{pid} {name}" for pid, name in childProcesses().items()]
    if left:
        print(f"\nchild processes left behind by the suite: {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
