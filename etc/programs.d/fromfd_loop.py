#!/usr/bin/env python3
"""The seed tutorial's socket-object server: builds a socket from the
descriptor the super-server handed over, greets, then echoes each message
with a timestamp until an empty one (or end of input)."""

import socket
import sys
import time

s = socket.fromfd(sys.stdin.fileno(), socket.AF_INET, socket.SOCK_STREAM)
s.sendall(b"Welcome!\n> ")
while True:
    data = s.recv(4096).strip()
    if not data:
        break
    s.sendall(b"[%s] %s\n> " % (time.ctime().encode(), data))
s.close()
