"""
A wait = no datagram child: reads the datagram from standard input until end
of file and answers on standard output.

Modes (argv[1]):
  - reply: C{b"reply:"} + the datagram
  - env: the sender as the environment gives it (REMOTE_HOST, PROTO,
    UDPREMOTEIP, UDPREMOTEPORT), one NAME=value per line
  - big N: N bytes of C{b"x"}, written in 4096-byte pieces
  - silent: no output
  - stderr: two lines on standard error, then the reply
  - sleep S: sleep S seconds, then the reply
  - record DIR S: write DIR/PID with the monotonic start and end times (ns)
    around a sleep of S seconds, then the reply
"""

from __future__ import annotations

import os
import sys
import time

data = sys.stdin.buffer.read()
mode = sys.argv[1] if len(sys.argv) > 1 else "reply"
out = sys.stdout.buffer
if mode == "reply":
    out.write(b"reply:" + data)
elif mode == "env":
    for name in ("REMOTE_HOST", "PROTO", "UDPREMOTEIP", "UDPREMOTEPORT"):
        out.write(f"{name}={os.environ.get(name, '')}\n".encode())
elif mode == "big":
    left = int(sys.argv[2])
    while left > 0:
        piece = min(left, 4096)
        out.write(b"x" * piece)
        left -= piece
elif mode == "silent":
    pass
elif mode == "stderr":
    sys.stderr.write("first line\nsecond line\n")
    sys.stderr.flush()
    out.write(b"reply:" + data)
elif mode == "sleep":
    time.sleep(float(sys.argv[2]))
    out.write(b"reply:" + data)
elif mode == "record":
    start = time.monotonic_ns()
    time.sleep(float(sys.argv[3]))
    end = time.monotonic_ns()
    path = os.path.join(sys.argv[2], str(os.getpid()))
    with open(path + ".tmp", "w") as f:
        f.write(f"{start} {end}\n")
    os.rename(path + ".tmp", path)
    out.write(b"reply:" + data)
out.flush()
