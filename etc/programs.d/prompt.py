#!/usr/bin/env python3
"""The seed tutorial's '>' loop: timestamps each line until an empty one."""

import sys
import time

sys.stdout.write(">")
sys.stdout.flush()
while True:
    data = sys.stdin.readline()
    if not data.strip():
        break
    sys.stdout.write("[%s] %s>" % (time.ctime(), data))
    sys.stdout.flush()
