# -*- test-case-name: tests.unit.test_config -*-
"""
Everything the configuration needs from the system, injected: users, groups,
the services database, the daemon's uid and environment, and whether a
program or a banner file is there.

L{Lookups.system} answers from the real system, L{Lookups.fromTables} from
tables (tests, embedders).  A lookup never raises: a name the system cannot
even look up (a NUL byte, text that cannot be encoded) is unknown.
"""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
import socket
from collections.abc import Callable, Mapping, Sequence

import attrs


@attrs.frozen
class UserEntry:
    """
    A user as the system knows it.
    """

    uid: int
    gid: int
    name: str


@attrs.frozen
class Lookups:
    """
    Everything the configuration needs from the system, injected.

    @ivar user: a user name or number (as text) to its L{UserEntry}, or
        C{None} when unknown.
    @ivar group: a group name or number (as text) to its gid, or C{None}.
    @ivar servicePort: C{(service name, protocol)} to its port in the
        services database, or C{None}.
    @ivar euid: the daemon's effective user id.
    @ivar environ: the daemon's environment.
    @ivar isExecutable: whether a path names an executable file.
    @ivar isReadable: whether a path names a readable file (banners).
    @ivar userNames: every user name, for "did you mean" hints.
    @ivar groupNames: every group name, for "did you mean" hints.
    @ivar tlsAvailable: whether TLS can be served (pyOpenSSL and
        service_identity, the C{tls} extra, can be imported).
    """

    user: Callable[[str], UserEntry | None]
    group: Callable[[str], int | None]
    servicePort: Callable[[str, str], int | None]
    euid: int
    environ: Mapping[str, str]
    isExecutable: Callable[[str], bool]
    isReadable: Callable[[str], bool] = lambda path: True
    userNames: Callable[[], Sequence[str]] = lambda: ()
    groupNames: Callable[[], Sequence[str]] = lambda: ()
    tlsAvailable: Callable[[], bool] = lambda: _systemHasTLS()

    @classmethod
    def system(cls) -> Lookups:
        """
        The real system: C{pwd}, C{grp}, C{getservbyname}, C{geteuid},
        C{os.environ}, C{os.access}.
        """
        return cls(
            user=_systemUser,
            group=_systemGroup,
            servicePort=_systemServicePort,
            euid=os.geteuid(),
            environ=dict(os.environ),
            isExecutable=_systemIsExecutable,
            isReadable=_systemIsReadable,
            userNames=lambda: [entry.pw_name for entry in pwd.getpwall()],
            groupNames=lambda: [entry.gr_name for entry in grp.getgrall()],
        )

    @classmethod
    def fromTables(
        cls,
        users: Mapping[str, tuple[int, int]] | None = None,
        groups: Mapping[str, int] | None = None,
        services: Mapping[tuple[str, str], int] | None = None,
        euid: int = 0,
        environ: Mapping[str, str] | None = None,
        executables: Sequence[str] | None = None,
    ) -> Lookups:
        """
        Lookups answered from tables, for tests and embedders.

        @param users: user name to (uid, primary gid).
        @param groups: group name to gid.
        @param services: (name, protocol) to port.
        @param executables: the executable paths; C{None} means every path.
        """
        userTable = dict(users or {})
        groupTable = dict(groups or {})
        serviceTable = dict(services or {})

        def user(text: str) -> UserEntry | None:
            if text in userTable:
                uid, gid = userTable[text]
                return UserEntry(uid, gid, text)
            number = asNumber(text)
            for name, (uid, gid) in userTable.items():
                if number == uid:
                    return UserEntry(uid, gid, name)
            return None

        def group(text: str) -> int | None:
            if text in groupTable:
                return groupTable[text]
            return asNumber(text)

        def servicePort(name: str, protocol: str) -> int | None:
            return serviceTable.get((name, protocol))

        def isExecutable(path: str) -> bool:
            return executables is None or path in executables

        return cls(
            user=user,
            group=group,
            servicePort=servicePort,
            euid=euid,
            environ=dict(environ or {}),
            isExecutable=isExecutable,
            userNames=lambda: list(userTable),
            groupNames=lambda: list(groupTable),
        )


def asNumber(text: str) -> int | None:
    """
    C{text} as a decimal number of ASCII digits (C{"²"} is not one), or
    C{None}.
    """
    if text.isascii() and text.isdigit():
        return int(text)
    return None


# What the system's lookups raise for a name they cannot look up: KeyError
# (unknown), ValueError (a NUL byte; UnicodeEncodeError for text that is not
# a file-system name), OverflowError (a number too large for an id).
_CANNOT_LOOK_UP = (KeyError, ValueError, OverflowError)


def _systemIsReadable(path: str) -> bool:
    try:
        return os.path.isfile(path) and os.access(path, os.R_OK)
    except ValueError:
        return False


def _systemUser(text: str) -> UserEntry | None:
    number = asNumber(text)
    try:
        entry = pwd.getpwuid(number) if number is not None else pwd.getpwnam(text)
    except _CANNOT_LOOK_UP:
        return None
    return UserEntry(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _systemGroup(text: str) -> int | None:
    number = asNumber(text)
    if number is not None:
        return number
    try:
        return grp.getgrnam(text).gr_gid
    except _CANNOT_LOOK_UP:
        return None


def _systemServicePort(name: str, protocol: str) -> int | None:
    try:
        return socket.getservbyname(name, protocol)
    except (OSError, *_CANNOT_LOOK_UP):
        return None


def _systemIsExecutable(path: str) -> bool:
    try:
        return os.path.isfile(path) and os.access(path, os.X_OK)
    except ValueError:
        return False


def _systemHasTLS() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("OpenSSL", "service_identity")
    )
