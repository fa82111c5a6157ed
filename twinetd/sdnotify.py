# -*- test-case-name: tests.unit.test_control,tests.integration.test_sdnotify -*-
"""
systemd's notification protocol (sd_notify(3)): one datagram per state change
to the C{AF_UNIX} socket named by C{NOTIFY_SOCKET}.

The daemon says C{READY=1} once every service listens, C{RELOADING=1} (with
C{MONOTONIC_USEC}, as systemd 253 and later want for reloads) and then
C{READY=1} around a SIGHUP reload, C{STOPPING=1} when it begins to shut down,
and a C{STATUS=} line people read in C{systemctl status}.  Without
C{NOTIFY_SOCKET} nothing is sent.  No library is needed: it is one
C{sendto}.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, MutableMapping

from twisted.logger import Logger

log = Logger()

#: The environment variable systemd sets for C{Type=notify} services.
NOTIFY_SOCKET = "NOTIFY_SOCKET"


def socketAddress(name: str) -> str | bytes:
    """
    The C{AF_UNIX} address of a C{NOTIFY_SOCKET} value: a path, or an
    abstract-namespace name when it starts with C{@}.
    """
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def monotonicMicroseconds() -> int:
    """
    C{CLOCK_MONOTONIC} in microseconds, as C{MONOTONIC_USEC} wants it.
    """
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """
    Sends state changes to systemd.

    @ivar address: the socket's address.
    """

    def __init__(
        self,
        address: str | bytes,
        monotonic: Callable[[], int] = monotonicMicroseconds,
    ) -> None:
        self.address = address
        self._monotonic = monotonic
        self._failed = False

    @classmethod
    def fromEnvironment(
        cls, environ: MutableMapping[str, str] = os.environ
    ) -> Notifier | None:
        """
        The notifier for C{NOTIFY_SOCKET}, or C{None} when it is not set.
        The variable is removed from C{environ}, as C{sd_notify}'s
        C{unset_environment} does: children that get the daemon's environment
        must not speak for it.
        """
        name = environ.pop(NOTIFY_SOCKET, "")
        if not name:
            return None
        return cls(socketAddress(name))

    def send(self, **fields: str | int) -> None:
        """
        Send one notification; C{READY=1} is C{send(READY=1)}.  A failure is
        logged once and otherwise ignored: systemd going away must not stop
        the daemon.
        """
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(message.encode(), self.address)
        except OSError as e:
            if not self._failed:
                self._failed = True
                log.warn(
                    "cannot notify systemd at {address!r}: {error}",
                    address=self.address,
                    error=e.strerror,
                )

    def ready(self, status: str) -> None:
        """
        Every service listens (at start, and after a reload).
        """
        self.send(READY=1, STATUS=status)

    def reloading(self) -> None:
        """
        A reload begins; L{ready} ends it.
        """
        self.send(RELOADING=1, MONOTONIC_USEC=self._monotonic())

    def stopping(self) -> None:
        """
        Shutdown begins.
        """
        self.send(STOPPING=1, STATUS="stopping")

    def status(self, text: str) -> None:
        """
        A status line for C{systemctl status}.
        """
        self.send(STATUS=text)
