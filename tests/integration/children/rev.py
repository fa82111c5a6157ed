"""
Each line of standard input reversed on standard output, as rev(1).
"""

import sys

for line in sys.stdin:
    sys.stdout.write(line.rstrip("\n")[::-1] + "\n")
    sys.stdout.flush()
