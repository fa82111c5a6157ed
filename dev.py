#!/usr/bin/env python3
"""
Set-up and everyday commands for a checkout; needs only Python 3.10+.

    python3 dev.py serve [twistd twinetd options]   run the daemon on etc/
    python3 dev.py test                             lint, types, whole test suite
    python3 dev.py test [pytest args]               only pytest, with those args

The first call makes a virtual environment in .venv and installs twinetd's
dependencies into it (again whenever setup.py changes).  The checkout itself
is put on PYTHONPATH, so edits take effect without reinstalling.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / "twinetd-installed"


def ensureVenv() -> None:
    wanted = hashlib.sha256((ROOT / "setup.py").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    print("dev.py: installing twinetd and its test tools into .venv", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "-q", f"{ROOT}[test,dev]"], check=True)
    STAMP.write_text(wanted)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    return env


def run(argv: list[str]) -> int:
    print("+ " + " ".join(argv), flush=True)
    done = subprocess.run(argv, cwd=ROOT, env=environment(), stdin=subprocess.DEVNULL)
    return done.returncode


def serve(args: list[str]) -> int:
    argv = [str(BIN / "twistd"), "-n", "--pidfile=", "twinetd", "-c", "etc/", *args]
    print("+ " + " ".join(argv), flush=True)
    os.chdir(ROOT)
    os.execve(argv[0], argv, environment())


def test(args: list[str]) -> int:
    py = str(BIN / "python")
    if args:
        return run([py, "-m", "pytest", *args])
    sources = ["twinetd", "tests", "twisted", "bench", "dev.py"]
    steps = [
        [py, "-m", "ruff", "check", *sources],
        [py, "-m", "ruff", "format", "--check", *sources],
        [py, "-m", "mypy"],
        [py, "-m", "pytest", "-p", "no:cacheprovider", "tests"],
    ]
    failed = [step for step in steps if run(step) != 0]
    for step in failed:
        print("FAILED: " + " ".join(step[2:4]), flush=True)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("serve", "test"):
        print(__doc__.strip())
        return 2
    ensureVenv()
    return {"serve": serve, "test": test}[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
