# -*- test-case-name: tests.unit.test_exports -*-
"""
twinetd: a super-server in the xinetd tradition, built on Twisted.

It reads xinetd's configuration language and, for each connection or datagram,
starts the configured program with its standard input and output bridged to
the client.
"""

__version__ = "0.1.0.dev0"


def versionText() -> str:
    """
    What C{twinetd -version} and C{twistd twinetd --version} print:
    twinetd's version and Twisted's.
    """
    import twisted

    return f"twinetd {__version__} (Twisted {twisted.__version__})"
