"""Never reads standard input; says "ready" and exits after LINGER seconds
(default 60)."""

import os
import time

os.write(1, b"ready\n")
deadline = time.monotonic() + float(os.environ.get("LINGER", "60"))
while time.monotonic() < deadline:
    time.sleep(0.05)
