"""Waits without reading, DELAY seconds (default 0) or, when GO names a
file, until that file exists (at most 20 s); then reads standard input to
end of file and reports how much it read."""

import os
import time

go = os.environ.get("GO")
if go:
    deadline = time.monotonic() + 20
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.01)
else:
    time.sleep(float(os.environ.get("DELAY", "0")))
total = 0
while True:
    data = os.read(0, 65536)
    if not data:
        break
    total += len(data)
os.write(1, b"read %d bytes\n" % total)
