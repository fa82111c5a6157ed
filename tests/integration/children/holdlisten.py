"""A wait = yes stream server that never accepts: with "stubborn" it ignores
SIGTERM; it gives up after 60 seconds."""

import signal
import sys
import time

if "stubborn" in sys.argv[1:]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.05)
