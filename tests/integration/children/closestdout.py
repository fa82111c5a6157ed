"""Writes a line, closes standard output, then lingers (bounded) reading stdin."""

import os
import time

os.write(1, b"bye\n")
os.close(1)
deadline = time.monotonic() + float(os.environ.get("LINGER", "1"))
while time.monotonic() < deadline:
    time.sleep(0.05)
