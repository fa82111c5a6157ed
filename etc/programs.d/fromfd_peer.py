#!/usr/bin/env python3
"""The seed tutorial's second socket-object server: greets, tells the client
its own address and the time, and exits."""

import socket
import sys
import time

s = socket.fromfd(sys.stdin.fileno(), socket.AF_INET, socket.SOCK_STREAM)
s.sendall(b"Welcome!\n")
s.sendall(f"you are connected from {s.getpeername()}\n".encode())
s.sendall(f"Now: {time.ctime()}\n".encode())
s.close()
