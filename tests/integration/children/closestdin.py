"""Reads one line, echoes it, closes standard input, says "closed", and
exits after LINGER seconds (default 0.5)."""

import os
import time

line = b""
while not line.endswith(b"\n"):
    data = os.read(0, 1)
    if not data:
        break
    line += data
os.write(1, line)
os.close(0)
os.write(1, b"closed\n")
time.sleep(float(os.environ.get("LINGER", "0.5")))
