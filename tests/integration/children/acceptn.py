"""A wait = yes stream server: accepts N clients (argv[1]) one after
another on descriptor 0, the listening socket, greets each with its number,
this process's pid and whether descriptor 0 is blocking, then exits."""

import os
import socket
import sys

count = int(sys.argv[1])
blocking = os.get_blocking(0)
listening = socket.socket(fileno=os.dup(0))
for number in range(count):
    client, address = listening.accept()
    client.sendall(f"hello {number} pid={os.getpid()} blocking={blocking}\n".encode())
    client.close()
