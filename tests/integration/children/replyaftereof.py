"""Waits DELAY seconds (default 0) without reading, then reads standard
input to end of file and reports how much it read."""

import os
import time

time.sleep(float(os.environ.get("DELAY", "0")))
total = 0
while True:
    data = os.read(0, 65536)
    if not data:
        break
    total += len(data)
os.write(1, b"read %d bytes\n" % total)
