"""Ignores SIGTERM (unless KEEP_TERM is set) and end of file; says "ready",
then waits at most 60 seconds, reading standard input (not with argv[1] =
"noread").  With MARK set, each SIGTERM appends a line to that file."""

import contextlib
import os
import signal
import sys
import time

mark = os.environ.get("MARK")


def term(signum, frame):
    with open(mark, "a") as f:
        f.write("TERM\n")


if not os.environ.get("KEEP_TERM"):
    signal.signal(signal.SIGTERM, term if mark else signal.SIG_IGN)
reads = sys.argv[1:] != ["noread"]
os.write(1, b"ready\n")
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    if reads:
        with contextlib.suppress(OSError):
            os.read(0, 65536)
    time.sleep(0.05)
