"""
Suite-wide checks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import childProcesses


@pytest.fixture(autouse=True, scope="session")
def scratchDirectory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """
    Run the suite from a scratch folder: trial's C{mktemp} (used by the
    C{SynchronousTestCase} tests) makes its folders relative to the current
    one, which must not be the checkout.
    """
    scratch = tmp_path_factory.mktemp("cwd")
    previous = Path.cwd()
    os.chdir(scratch)
    try:
        yield scratch
    finally:
        os.chdir(previous)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """
    No test may leave a child process behind, running or unreaped.
    """
    left = [f"{pid} {name}" for pid, name in childProcesses().items()]
    if left:
        print(f"\nchild processes left behind by the suite: {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
