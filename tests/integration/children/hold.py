"""
Counts the copies of itself running at once: creates a marker in the folder
given as argv[1], reports how many markers exist, holds for argv[2] seconds,
removes its marker.
"""

import os
import sys
import time

folder, hold = sys.argv[1], float(sys.argv[2])
marker = os.path.join(folder, str(os.getpid()))
open(marker, "w").close()
try:
    sys.stdout.write(f"{len(os.listdir(folder))}\n")
    sys.stdout.flush()
    time.sleep(hold)
finally:
    os.unlink(marker)
