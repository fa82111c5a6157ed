#!/usr/bin/env python3
"""The seed tutorial's stdio loop: echoes each line with a timestamp; an empty
line (or end of input) closes the connection."""

import sys
import time

sys.stdout.write("Please enter a string:\n> ")
sys.stdout.flush()
while True:
    line = sys.stdin.readline().strip()
    if not line:
        break
    sys.stdout.write("[%s] %s\n> " % (time.ctime(), line))
    sys.stdout.flush()
