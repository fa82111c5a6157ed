#!/usr/bin/env python3
"""The seed tutorial's first program: reads one line, reports its length."""

import sys

print("Welcome.")
print("Please enter a string: ")
sys.stdout.flush()
line = sys.stdin.readline().strip()
print("You enterd %d characters" % len(line))
