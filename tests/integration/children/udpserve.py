"""
A C{wait = yes} datagram server as small C servers are written: descriptor
0 is the service's UDP socket; it receives one datagram and answers its
sender with C{b"MODE:PID:"} + the datagram, then exits.

Modes (argv[1]):
  - blocking: a blocking C{recvfrom};
  - dontwait: C{recvfrom(..., MSG_DONTWAIT)} at once, which fails (exit
    status 3) unless the datagram that started it is already waiting;
  - sleep S: sleeps S seconds, then a blocking C{recvfrom}.
"""

from __future__ import annotations

import os
import socket
import sys
import time

mode = sys.argv[1]
if mode == "sleep":
    time.sleep(float(sys.argv[2]))
sock = socket.socket(fileno=0)
try:
    if mode == "dontwait":
        try:
            data, addr = sock.recvfrom(65535, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sys.exit(3)
    else:
        data, addr = sock.recvfrom(65535)
    sock.sendto(f"{mode}:{os.getpid()}:".encode() + data, addr)
finally:
    sock.detach()
