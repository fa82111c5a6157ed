"""Writes two lines to standard error and "out" to standard output."""

import os

os.write(2, b"first problem\nsecond ")
os.write(2, b"problem\n")
os.write(1, b"out\n")
