"""A wait = yes stream server that never accepts: with "stubborn" it ignores
SIGTERM; it says "ready" on standard error once set up, and gives up after
60 seconds."""

import os
import signal
import sys
import time

if "stubborn" in sys.argv[1:]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.write(2, b"ready\n")
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.05)
