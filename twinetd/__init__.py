"""
twinetd: a super-server in the xinetd tradition, built on Twisted.

It reads xinetd's configuration language and, for each connection or datagram,
starts the configured program with its standard input and output bridged to
the client.
"""

__version__ = "0.1.0.dev0"
