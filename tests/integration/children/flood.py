"""Writes argv[1] bytes to standard output (in 64 KiB writes), then exits."""

import os
import sys

remaining = int(sys.argv[1])
chunk = b"x" * 65536
while remaining > 0:
    remaining -= os.write(1, chunk[: min(remaining, len(chunk))])
