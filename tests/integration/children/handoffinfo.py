"""A handed-over socket's child: reports what it got on descriptors 0-2 as
key=value lines on descriptor 1, writes "to-stderr" on descriptor 2, and
exits (so the client sees end of file at once if nobody else holds the
socket)."""

import fcntl
import os
import socket

lines = []
for fd in (0, 1, 2):
    lines.append(f"fd{fd}={os.readlink(f'/proc/self/fd/{fd}')}")
flags = fcntl.fcntl(0, fcntl.F_GETFL)
lines.append(f"nonblocking={bool(flags & os.O_NONBLOCK)}")
sock = socket.socket(fileno=os.dup(0))
lines.append(f"family={sock.family.name}")
lines.append(f"peer={sock.getpeername()!r}")
lines.append(f"remote={os.environ.get('REMOTE_HOST', '')}")
sock.close()
os.write(2, b"to-stderr\n")
os.write(1, ("\n".join(lines) + "\n").encode())
