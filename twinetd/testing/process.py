# -*- test-case-name: tests.integration.test_testingprocess -*-
"""
A configuration served by a real twinetd in a child process, for test
suites that do not run a Twisted reactor (plain pytest, unittest):
L{serveConfig} (also C{with}), L{daemonProcessFixture} for pytest, and
L{DaemonProcess.converse} over a plain socket.

The child process is C{python -m twinetd.testing._serve}: it serves the
configuration as L{twinetd.testing.runConfig} does (ephemeral loopback
ports by default, C{user = -} for the test runner's own user), reports its
ports on a pipe, logs twistd's text to a file and every twinetd event as
JSON (the C{--log-json} schema) to another, and stops everything when it
gets C{SIGTERM} or when the test process goes away (its standard input, a
pipe from this process, closes).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict

from twinetd.errors import ConfigError, Problem, SourceLocation

if TYPE_CHECKING:
    from typing_extensions import Unpack

#: Seconds L{serveConfig} waits for the daemon to listen by default.
START_TIMEOUT = 30.0

#: Seconds L{DaemonProcess.converse} waits for the whole answer by default.
CONVERSE_TIMEOUT = 10.0


class DaemonProcess:
    """
    A twinetd serving a configuration in a child process (L{serveConfig});
    a context manager that stops it on exit::

        with serveConfig(CONFIG) as daemon:
            assert daemon.converse("echo", b"hi") == b"hi"

    @ivar process: the child process.
    @ivar problems: the configuration's warnings (and, with C{strict=False},
        its errors), as text.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        workdir: Path,
        ports: dict[str, int],
        problems: list[str],
        killDelay: float,
    ) -> None:
        self.process = process
        self.problems = problems
        self._workdir = workdir
        self._ports = ports
        self._killDelay = killDelay

    def port(self, serviceId: str) -> int:
        """
        As L{RunningDaemon.port<twinetd.testing.RunningDaemon.port>}: where
        C{serviceId} listens; L{KeyError} if it does not.
        """
        try:
            return self._ports[serviceId]
        except KeyError:
            raise KeyError(f"{serviceId} is not listening") from None

    def converse(
        self,
        serviceId: str,
        data: bytes,
        *,
        host: str = "127.0.0.1",
        timeout: float = CONVERSE_TIMEOUT,
    ) -> bytes:
        """
        Connect to the stream service C{serviceId}, send C{data}, close the
        sending side (the program reads end of file) and return everything
        the program sends until it closes the connection.

        @raise TimeoutError: the answer took longer than C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        with socket.create_connection((host, self.port(serviceId)), timeout) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            received: list[bytes] = []
            while True:
                s.settimeout(max(0.0, deadline - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    raise TimeoutError(
                        f"{serviceId} did not finish answering in {timeout} s"
                    ) from None
                if not chunk:
                    return b"".join(received)
                received.append(chunk)

    def events(self) -> list[dict[str, Any]]:
        """
        Every twinetd event logged so far, one dictionary each (the fields
        of the C{--log-json} schema in the README: C{twinetdEvent},
        C{service}, C{pid}, C{status}, ...).
        """
        path = self._workdir / "events.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def log(self) -> str:
        """
        The daemon's log so far, as twistd would print it.
        """
        path = self._workdir / "log"
        return path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float | None = None) -> int:
        """
        Stop the daemon as SIGTERM stops twistd: listening ends and every
        child gets SIGTERM (and SIGKILL a kill delay later).  Stopping
        twice is harmless.

        @param timeout: seconds to wait before killing the daemon outright
            (default: two kill delays and 10 s).
        @return: the daemon's exit status (0 after a clean stop).
        @raise TimeoutError: it had to be killed.
        """
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        wait = 2 * self._killDelay + 10.0 if timeout is None else timeout
        try:
            status = process.wait(wait)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise TimeoutError(f"the daemon did not stop within {wait} s") from None
        finally:
            if process.stdout is not None:
                process.stdout.close()
        return status

    def close(self) -> None:
        """
        L{stop}, then remove the log files.
        """
        try:
            self.stop()
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _environment() -> dict[str, str]:
    # The child imports this very twinetd: from its checkout when it is not
    # installed (an installed one is on the interpreter's own path).
    env = dict(os.environ)
    here = Path(__file__).resolve().parents[2]
    if here.name not in ("site-packages", "dist-packages"):
        paths = [str(here), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _readReport(process: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """
    The child's one line of JSON on its standard output, or C{{}} if it
    exits or stays silent for C{timeout} seconds.
    """
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                return {}
            chunk = os.read(fd, 65536)
            if not chunk:
                return {}
            data += chunk
    report: dict[str, Any] = json.loads(data.split(b"\n", 1)[0])
    return report


def _problem(fields: dict[str, Any]) -> ConfigError:
    return ConfigError(
        Problem(
            SourceLocation(fields["file"], fields["line"]),
            fields["service"],
            fields["message"],
            fields["attribute"],
        )
    )


def serveConfig(
    text: str | None = None,
    *,
    path: str | None = None,
    killDelay: float = 5.0,
    bind: str | None = "127.0.0.1",
    ephemeral: bool = True,
    strict: bool = True,
    python: str = sys.executable,
    startTimeout: float = START_TIMEOUT,
) -> DaemonProcess:
    """
    Serve a configuration (its C{text}, or the file or folder at C{path})
    with a real twinetd in a child process, on ephemeral ports: as
    L{twinetd.testing.runConfig}, without a reactor in the test process.

    @param killDelay: seconds a program may outlive its client (and the
        daemon's stop) before SIGTERM, and again before SIGKILL.
    @param bind: the address every service listens on; C{None} keeps the
        configured ones.
    @param ephemeral: replace every C{port} by one the kernel picks (ask
        L{DaemonProcess.port}).
    @param strict: raise L{ConfigError} when the configuration has errors,
        rather than serving what is left.
    @param python: the interpreter that runs the daemon.
    @return: the running daemon; stop it (L{DaemonProcess.close}) when done,
        or use it as C{with serveConfig(...) as daemon}.
    @raise ConfigError: the configuration has errors (with C{strict}).
    @raise RuntimeError: the daemon did not start within C{startTimeout}
        seconds (the message holds its log).
    """
    if (text is None) == (path is None):
        raise TypeError("give exactly one of text and path")
    workdir = Path(tempfile.mkdtemp(prefix="twinetd-test-"))
    spec = {
        "text": text,
        "path": None if path is None else os.path.abspath(path),
        "killDelay": killDelay,
        "bind": bind,
        "ephemeral": ephemeral,
        "strict": strict,
        "events": str(workdir / "events.jsonl"),
    }
    (workdir / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    with open(workdir / "log", "wb") as log:
        process = subprocess.Popen(
            [python, "-m", "twinetd.testing._serve", str(workdir / "spec.json")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=_environment(),
        )
    daemon = DaemonProcess(process, workdir, {}, [], killDelay)
    try:
        report = _readReport(process, startTimeout)
        if "error" in report:
            raise _problem(report["error"])
        if "ports" not in report:
            raise RuntimeError(
                f"twinetd did not start within {startTimeout} s:\n{daemon.log()}"
            )
    except BaseException:
        with contextlib.suppress(TimeoutError):
            daemon.close()
        raise
    daemon._ports.update(report["ports"])
    daemon.problems.extend(report["problems"])
    return daemon


class _ServeOptions(TypedDict, total=False):
    """
    L{serveConfig}'s keyword arguments, for L{daemonProcessFixture}.
    """

    path: str | None
    killDelay: float
    bind: str | None
    ephemeral: bool
    strict: bool
    python: str
    startTimeout: float


def daemonProcessFixture(
    text: str | None = None, **options: Unpack[_ServeOptions]
) -> Callable[[], Iterator[DaemonProcess]]:
    """
    A pytest fixture serving a configuration in a child process for each
    test that asks for it (as L{serveConfig}, same arguments), stopped after
    the test; no pytest-twisted needed::

        greeter = daemonProcessFixture(CONFIG)

        def test_greeter(greeter):
            assert greeter.converse("greeter", b"Ada\\n") == b"Hello, Ada!\\n"
    """
    import pytest

    @pytest.fixture
    def fixture() -> Iterator[DaemonProcess]:
        with serveConfig(text, **options) as daemon:
            yield daemon

    result: Callable[[], Iterator[DaemonProcess]] = fixture
    return result
