"""Copies standard input to standard output until end of file."""

import os

while True:
    data = os.read(0, 65536)
    if not data:
        break
    os.write(1, data)
