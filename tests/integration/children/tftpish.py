"""
A wait = yes datagram server in the style of in.tftpd: the service's socket
is descriptor 0; it answers every datagram to its sender with
C{b"PID:REMOTE_HOST:"} + the datagram and exits after 0.5 s without one
(at most 30 s in all).  With argv[1] == "noread", it exits at once without
reading.
"""

from __future__ import annotations

import os
import socket
import sys
import time

if len(sys.argv) > 1 and sys.argv[1] == "noread":
    sys.exit(0)

sock = socket.socket(fileno=0)
sock.settimeout(0.5)
prefix = f"{os.getpid()}:{os.environ.get('REMOTE_HOST', '')}:".encode()
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        data, addr = sock.recvfrom(65535)
    except TimeoutError:
        break
    sock.sendto(prefix + data, addr)
sock.detach()
