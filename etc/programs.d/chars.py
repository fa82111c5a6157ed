#!/usr/bin/env python3
"""The seed tutorial's second example (pyserv): counts the characters of one
line, with no newline after the answer."""

import sys

print("Welcome .")
print("Enter Line.")
sys.stdout.flush()
line = sys.stdin.readline().strip()
sys.stdout.write("You entered %s chars" % len(line))
