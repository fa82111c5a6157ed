"""
The meaning of xinetd's configuration: from files to L{ServiceConfig} records.

L{loadPath} reads a configuration file or folder (and what it includes),
L{loadText} reads configuration given as text; both return a L{LoadResult}:
the services that can run and every problem found, each rendered
C{file:line: service: message}.  A broken service is left out and every
other one still loads.  Everything about the system (users, groups, the
services database, the daemon's uid and environment, whether a program is
executable) comes from an injected L{Lookups}.

xinetd 2.3.15's rules are followed (C{parse.c}, C{parsers.c},
C{confparse.c}): attribute names, keywords and enumerated values are
case-insensitive; C{defaults} accepts only some attributes, and for the
cumulative ones C{=} means C{+=}; a service that is not C{UNLISTED} must be
in the services database (and C{port}, if given, must agree with it).

Where twinetd differs:

  - a relative C{server} path, and a relative C{banner}, C{banner_success}
    or C{banner_fail} path, is resolved against the folder of the file
    that names it (xinetd requires absolute paths);
  - a C{server} that does not exist or is not executable is a warning, not
    an error: it may appear later, and each connection reports it;
  - an unknown attribute, a wrong number of values and an operator an
    attribute does not take are errors for the service (xinetd warns and
    ignores the line); a repeated single-valued attribute is a warning and
    the first value is kept, as in xinetd;
  - C{defaults} apply to every service wherever the C{defaults} entry is;
    an error in C{defaults} drops that attribute only (xinetd exits);
  - a C{user} needs the daemon to be root unless it is the daemon's own user;
    C{user = -} (an extension) names the daemon's own user;
  - two services may not share a port, protocol and C{bind} address;
  - network names (C{/etc/networks}) in C{only_from}/C{no_access} are taken
    as host names.

Attributes this milestone's runtime does not implement are still parsed,
validated and stored, with one warning per place they are written (see
L{UNSUPPORTED_ATTRIBUTES}); services of a kind it cannot run are errors (see
L{UNSUPPORTED_SOCKET_TYPES}, L{UNSUPPORTED_TYPES}, L{STREAM_WAIT_SUPPORTED},
L{REDIRECT_SUPPORTED}).
"""

from __future__ import annotations

import functools
import grp
import ipaddress
import os
import pwd
import re
import socket
import stat
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from twinetd.config.parser import Include, Section, parse
from twinetd.errors import Problem, SourceLocation
from twinetd.model import (
    INTERNAL_SERVICES,
    AddressRule,
    FileTarget,
    LogTarget,
    ServiceConfig,
    SocketType,
    SyslogTarget,
)

# What this milestone's runtime cannot do yet.  Later milestones remove
# entries: each is a one-line change.
UNSUPPORTED_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "libwrap",
        "mdns",
        "rpc_version",
        "rpc_number",
    }
)
UNSUPPORTED_SOCKET_TYPES: frozenset[SocketType] = frozenset(
    {SocketType.RAW, SocketType.SEQPACKET}
)
UNSUPPORTED_TYPES: frozenset[str] = frozenset({"RPC", "TCPMUX", "TCPMUXPLUS"})
UNSUPPORTED_FLAGS: frozenset[str] = frozenset(
    {"INTERCEPT", "NORETRY", "IDONLY", "NOLIBWRAP", "LABELED"}
)
STREAM_WAIT_SUPPORTED = True
REDIRECT_SUPPORTED = True

SERVICE_TYPES = ("RPC", "INTERNAL", "TCPMUX", "TCPMUXPLUS", "UNLISTED")
SERVICE_FLAGS = (
    "REUSE",
    "INTERCEPT",
    "NORETRY",
    "IDONLY",
    "NAMEINARGS",
    "NODELAY",
    "KEEPALIVE",
    "NOLIBWRAP",
    "SENSOR",
    "IPv4",
    "IPv6",
    "LABELED",
)
SUCCESS_LOG_OPTIONS = ("PID", "HOST", "USERID", "EXIT", "DURATION", "TRAFFIC")
FAILURE_LOG_OPTIONS = ("HOST", "USERID", "ATTEMPT")
SYSLOG_FACILITIES = (
    "daemon",
    "auth",
    "authpriv",
    "user",
    "mail",
    "lpr",
    "news",
    "uucp",
    "ftp",
    *(f"local{n}" for n in range(8)),
)
SYSLOG_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

# xinetd's LOG_EXTRA_MIN / LOG_EXTRA_MAX (xconfig.h): the default hard limit
# of a FILE log is the soft limit plus 1%, kept within these bounds.
_LOG_EXTRA_MIN = 5 * 1024
_LOG_EXTRA_MAX = 20 * 1024

_COMMENT_HINT = " ('#' starts a comment only at the start of a line)"


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
    """

    user: Callable[[str], UserEntry | None]
    group: Callable[[str], int | None]
    servicePort: Callable[[str, str], int | None]
    euid: int
    environ: Mapping[str, str]
    isExecutable: Callable[[str], bool]
    isReadable: Callable[[str], bool] = lambda path: True

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
            for name, (uid, gid) in userTable.items():
                if text.isdigit() and int(text) == uid:
                    return UserEntry(uid, gid, name)
            return None

        def group(text: str) -> int | None:
            if text in groupTable:
                return groupTable[text]
            if text.isdigit():
                return int(text)
            return None

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
        )


def _systemIsReadable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


def _systemUser(text: str) -> UserEntry | None:
    try:
        entry = pwd.getpwuid(int(text)) if text.isdigit() else pwd.getpwnam(text)
    except (KeyError, OverflowError):
        return None
    return UserEntry(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _systemGroup(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        return None


def _systemServicePort(name: str, protocol: str) -> int | None:
    try:
        return socket.getservbyname(name, protocol)
    except OSError:
        return None


def _systemIsExecutable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


@attrs.frozen
class LoadResult:
    """
    What a load produced.

    @ivar services: the services that can run, in file order.
    @ivar problems: errors and warnings, in file order.
    @ivar disabledIds: ids of services left out on purpose (C{disable = yes},
        or not admitted by C{defaults}' C{enabled}/C{disabled}).
    @ivar skippedNames: names of services left out because of errors.
    """

    services: tuple[ServiceConfig, ...]
    problems: tuple[Problem, ...]
    disabledIds: tuple[str, ...] = ()
    skippedNames: tuple[str, ...] = ()

    @property
    def disabled(self) -> int:
        """
        How many services are disabled.
        """
        return len(self.disabledIds)

    @property
    def skipped(self) -> int:
        """
        How many services are left out because of errors.
        """
        return len(self.skippedNames)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.isError)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if not p.isError)


class _BadValue(Exception):
    """
    A value that cannot be converted; the message is for a person.
    """


@attrs.frozen
class _Context:
    lookups: Lookups
    baseDir: str


# Value counts, as xinetd's attribute table: a positive number is exact.
_ANY = -1  # zero or more values
_SOME = -2  # one or more values


@attrs.frozen
class AttributeSpec:
    """
    One row of the attribute table.

    @ivar name: the attribute as written in the configuration.
    @ivar field: the L{ServiceConfig} field it sets, or C{None}.
    @ivar count: how many values: a positive number is exact, -1 is any,
        -2 is at least one.
    @ivar isList: whether C{+=} and C{-=} apply and the attribute may be
        repeated.
    @ivar inDefaults: whether it is allowed in C{defaults}.
    @ivar convert: values to the field's value; for list attributes, one
        value to a tuple of items.
    """

    name: str
    field: str | None
    count: int
    isList: bool
    inDefaults: bool
    convert: Callable[[_Context, tuple[str, ...]], Any]


def _word(choices: Sequence[str], what: str) -> Callable[[str], str]:
    table = {choice.lower(): choice for choice in choices}

    def convert(value: str) -> str:
        try:
            return table[value.lower()]
        except KeyError:
            raise _BadValue(
                f"bad {what} {value!r} (expected {', '.join(choices)})"
            ) from None

    return convert


def _twoWay(
    name: str, first: str, second: str, true: str
) -> Callable[[_Context, tuple[str, ...]], bool]:
    # A two-valued attribute, True for `true`; messages list `first` first.
    def convert(context: _Context, values: tuple[str, ...]) -> bool:
        value = values[0].lower()
        if value in (first, second):
            return value == true
        raise _BadValue(
            f"bad value for {name}: {values[0]!r} (expected {first} or {second})"
        )

    return convert


def _yesNo(name: str) -> Callable[[_Context, tuple[str, ...]], bool]:
    return _twoWay(name, "yes", "no", "yes")


# twinetd extensions: how a stream wait = no service meets its program, and
# where a handed-off program's standard error goes.
_convertMode = _twoWay("twinetd_mode", "bridge", "handoff", "handoff")
_convertStderr = _twoWay("twinetd_stderr", "log", "socket", "socket")


def _integer(
    text: str, name: str, low: int | None = None, high: int | None = None
) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise _BadValue(f"bad value for {name}: {text!r} (expected a number)")
    number = int(text)
    if (low is not None and number < low) or (high is not None and number > high):
        span = f"from {low}" if high is None else f"from {low} to {high}"
        raise _BadValue(f"bad value for {name}: {text!r} (expected a number {span})")
    return number


def _countOrUnlimited(name: str) -> Callable[[_Context, tuple[str, ...]], int | None]:
    def convert(context: _Context, values: tuple[str, ...]) -> int | None:
        if values[0].upper() == "UNLIMITED":
            return None
        return _integer(values[0], name, 0)

    return convert


def _limit(text: str, name: str) -> int:
    """
    xinetd's C{get_limit}: a number of bytes with an optional K or M suffix.
    """
    match = re.fullmatch(r"([0-9]+)([kKmM]?)", text)
    if match is None:
        raise _BadValue(
            f"bad value for {name}: {text!r} (expected a number, optionally "
            "followed by K or M)"
        )
    multiplier = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    return int(match.group(1)) * multiplier


def _rlimit(
    name: str, suffixes: bool = True
) -> Callable[[_Context, tuple[str, ...]], int | None]:
    def convert(context: _Context, values: tuple[str, ...]) -> int | None:
        if values[0].upper() == "UNLIMITED":
            return None
        if suffixes:
            return _limit(values[0], name)
        return _integer(values[0], name, 0)

    return convert


def _path(context: _Context, text: str) -> str:
    # Extension: relative paths are relative to the naming file's folder.
    return os.path.abspath(os.path.join(context.baseDir, text))


def _convertType(context: _Context, values: tuple[str, ...]) -> frozenset[str]:
    convert = _word(SERVICE_TYPES, "type")
    return frozenset(convert(value) for value in values)


def _convertFlags(context: _Context, values: tuple[str, ...]) -> frozenset[str]:
    convert = _word(SERVICE_FLAGS, "flag")
    return frozenset(convert(value) for value in values)


def _convertSocketType(context: _Context, values: tuple[str, ...]) -> SocketType:
    name = _word([t.value for t in SocketType], "socket_type")(values[0])
    return SocketType(name)


def _convertProtocol(context: _Context, values: tuple[str, ...]) -> str:
    value = values[0].lower()
    if value not in ("tcp", "udp"):
        raise _BadValue(f"bad value for protocol: {values[0]!r} (expected tcp or udp)")
    return value


# twinetd extension: `user = -` is the daemon's own user (no switch), so that
# one file serves root and non-root daemons alike (etc/ uses it).
DAEMON_USER = "-"


def _convertUser(context: _Context, values: tuple[str, ...]) -> UserEntry:
    text = values[0]
    if text == DAEMON_USER:
        return UserEntry(context.lookups.euid, -1, DAEMON_USER)
    entry = context.lookups.user(text)
    if entry is None:
        if text.isdigit():
            # xinetd takes an unknown number as uid and gid both.
            return UserEntry(int(text), int(text), text)
        raise _BadValue(f"unknown user: {text}")
    return entry


def _convertGroup(context: _Context, values: tuple[str, ...]) -> int:
    text = values[0]
    gid = context.lookups.group(text)
    if gid is None:
        if text.isdigit():
            return int(text)
        raise _BadValue(f"unknown group: {text}")
    return gid


def _convertServer(context: _Context, values: tuple[str, ...]) -> str:
    return _path(context, values[0])


def _convertServerArgs(context: _Context, values: tuple[str, ...]) -> tuple[str, ...]:
    return values


def _convertNice(context: _Context, values: tuple[str, ...]) -> int:
    return _integer(values[0], "nice")


def _convertId(context: _Context, values: tuple[str, ...]) -> str:
    return values[0]


def _convertPort(context: _Context, values: tuple[str, ...]) -> int:
    return _integer(values[0], "port", 0, 65535)


def _convertUmask(context: _Context, values: tuple[str, ...]) -> int:
    text = values[0]
    if not re.fullmatch(r"[0-7]+", text) or int(text, 8) > 0o777:
        raise _BadValue(
            f"bad value for umask: {text!r} (expected an octal number up to 777)"
        )
    return int(text, 8)


def _convertBind(context: _Context, values: tuple[str, ...]) -> str:
    text = values[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if _isHostName(text):
        return text
    raise _BadValue(f"bad address for bind: {text!r}")


def _convertBanner(context: _Context, values: tuple[str, ...]) -> str:
    return _path(context, values[0])


def _convertLibwrap(context: _Context, values: tuple[str, ...]) -> str:
    return values[0]


def _convertCps(context: _Context, values: tuple[str, ...]) -> tuple[int, int]:
    return (_integer(values[0], "cps", 0), _integer(values[1], "cps", 0))


def _convertMaxLoad(context: _Context, values: tuple[str, ...]) -> float:
    try:
        load = float(values[0])
    except ValueError:
        load = 0.0
    if not load > 0 or load == float("inf"):
        raise _BadValue(
            f"bad value for max_load: {values[0]!r} (expected a number above 0)"
        )
    return load


def _convertRedirect(context: _Context, values: tuple[str, ...]) -> tuple[str, int]:
    host, portText = values
    if portText.isdigit() and int(portText) > 0:
        port = int(portText)
        if port > 65535:
            raise _BadValue(f"bad port for redirect: {portText!r} (too large)")
    else:
        found = context.lookups.servicePort(portText, "tcp")
        if found is None:
            raise _BadValue(f"bad port for redirect: {portText!r}")
        port = found
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if not _isHostName(host):
            raise _BadValue(f"bad address for redirect: {host!r}") from None
    return (host, port)


def _convertRpcVersion(context: _Context, values: tuple[str, ...]) -> tuple[int, int]:
    match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", values[0])
    if match is None:
        raise _BadValue(f"bad value for rpc_version: {values[0]!r} (expected N or N-M)")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else low
    if low > high:
        raise _BadValue(f"bad value for rpc_version: {values[0]!r} (empty range)")
    return (low, high)


def _convertRpcNumber(context: _Context, values: tuple[str, ...]) -> int:
    return _integer(values[0], "rpc_number", 0)


def _convertDenyTime(context: _Context, values: tuple[str, ...]) -> float:
    text = values[0].upper()
    if text == "FOREVER":
        return float("inf")
    if text == "NEVER":
        return 0.0
    try:
        return 60.0 * _integer(values[0], "deny_time", 0)
    except _BadValue:
        raise _BadValue(
            f"bad value for deny_time: {values[0]!r} (expected minutes, FOREVER "
            "or NEVER)"
        ) from None


def _convertAccessTimes(
    context: _Context, values: tuple[str, ...]
) -> tuple[tuple[int, int], ...]:
    result = []
    for value in values:
        match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})", value)
        bad = _BadValue(
            f"bad value for access_times: {value!r} (expected hour:min-hour:min)"
        )
        if match is None:
            raise bad
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        for hour, minute in ((h1, m1), (h2, m2)):
            # The man page's own example ends an interval at 24:00.
            if minute > 59 or hour > 24 or (hour == 24 and minute):
                raise bad
        result.append((h1 * 60 + m1, h2 * 60 + m2))
    return tuple(result)


def _convertLogType(context: _Context, values: tuple[str, ...]) -> LogTarget:
    kind = values[0].upper()
    if kind == "SYSLOG":
        if len(values) not in (2, 3):
            raise _BadValue("log_type SYSLOG expects a facility and maybe a level")
        facility = _word(SYSLOG_FACILITIES, "syslog facility")(values[1])
        level = "info"
        if len(values) == 3:
            level = _word(SYSLOG_LEVELS, "syslog level")(values[2])
        return SyslogTarget(facility, level)
    if kind == "FILE":
        if len(values) not in (2, 3, 4):
            raise _BadValue("log_type FILE expects a path and maybe two limits")
        soft = hard = None
        if len(values) >= 3:
            soft = _limit(values[2], "log_type soft limit")
            if len(values) == 4:
                hard = _limit(values[3], "log_type hard limit")
                if hard < soft:
                    raise _BadValue(
                        f"log_type hard limit ({hard}) is less than soft limit ({soft})"
                    )
            else:
                extra = min(max(soft // 100, _LOG_EXTRA_MIN), _LOG_EXTRA_MAX)
                hard = soft + extra
        return FileTarget(values[1], soft, hard)
    raise _BadValue(f"bad value for log_type: {values[0]!r} (expected SYSLOG or FILE)")


def _listOf(
    item: Callable[[_Context, str], tuple[Any, ...]],
) -> Callable[[_Context, tuple[str, ...]], tuple[Any, ...]]:
    def convert(context: _Context, values: tuple[str, ...]) -> tuple[Any, ...]:
        result: list[Any] = []
        for value in values:
            result.extend(item(context, value))
        return tuple(result)

    return convert


def _logOption(
    choices: Sequence[str], what: str
) -> Callable[[_Context, str], tuple[str]]:
    convert = _word(choices, what)

    def item(context: _Context, value: str) -> tuple[str]:
        return (convert(value),)

    return item


def _envItem(context: _Context, value: str) -> tuple[tuple[str, str]]:
    name, equals, text = value.partition("=")
    if not equals:
        raise _BadValue(f"bad value for env: {value!r} has no '='")
    return ((name, text),)


def _nameItem(context: _Context, value: str) -> tuple[str]:
    return (value,)


def _addressItem(context: _Context, value: str) -> tuple[AddressRule, ...]:
    return parseAddress(value)


_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?")


def _isHostName(text: str) -> bool:
    labels = text.removeprefix(".").removesuffix(".").split(".")
    if not text or len(text) > 255 or all(label.isdigit() for label in labels):
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


def parseAddress(text: str) -> tuple[AddressRule, ...]:
    """
    One C{only_from}/C{no_access} value as xinetd reads it.

    @raise ValueError: (a L{_BadValue}) when it is not an address.
    """
    bad = _BadValue(f"bad address: {text!r}")
    if "," in text and "{" not in text:
        raise _BadValue(f"bad address: {text!r} has a comma in it; remove the comma")
    if "{" in text:
        # Factorized: a.b.{c,d}: the braces come last; the parts not written
        # are wildcards.
        match = re.fullmatch(r"((?:[0-9]{1,3}\.){1,3})\{([0-9,]+)\}", text)
        if match is None:
            raise bad
        prefix = [int(part) for part in match.group(1).split(".")[:-1]]
        rules = []
        for alternative in match.group(2).split(","):
            if not alternative:
                raise bad
            parts = [*prefix, int(alternative)]
            if any(part > 255 for part in parts):
                raise bad
            address = ".".join(str(p) for p in parts + [0] * (4 - len(parts)))
            network = ipaddress.ip_network(f"{address}/{8 * len(parts)}")
            rules.append(AddressRule(text, network=network))
        return tuple(rules)
    if "/" in text:
        try:
            return (
                AddressRule(text, network=ipaddress.ip_network(text, strict=False)),
            )
        except ValueError:
            raise bad from None
    if ":" in text:
        try:
            return (AddressRule(text, network=ipaddress.ip_network(text)),)
        except ValueError:
            raise bad from None
    if re.fullmatch(r"[0-9.]+", text):
        try:
            host = ipaddress.IPv4Address(text)
        except ValueError:
            raise bad from None
        # xinetd: trailing zero components are wildcards (0.0.0.0 is all).
        components = text.split(".")
        while components and components[-1] == "0":
            components.pop()
        network = ipaddress.ip_network(f"{host}/{8 * len(components)}")
        return (AddressRule(text, network=network),)
    if _isHostName(text):
        return (AddressRule(text, hostname=text.lower()),)
    raise bad


def _spec(
    name: str,
    field: str | None,
    count: int,
    convert: Callable[[_Context, tuple[str, ...]], Any],
    isList: bool = False,
    inDefaults: bool = False,
) -> AttributeSpec:
    return AttributeSpec(name, field, count, isList, inDefaults, convert)


def _rlimitField(name: str) -> str:
    return "rlimit:" + name


# The one table from xinetd attribute names to ServiceConfig fields (xinetd's
# parse.c service_attributes and default_attributes).  Fields named
# "rlimit:X" go into ServiceConfig.rlimits.
ATTRIBUTES: dict[str, AttributeSpec] = {
    spec.name: spec
    for spec in (
        _spec("id", "id", 1, _convertId),
        _spec("type", "types", _SOME, _convertType),
        _spec("flags", "flags", _SOME, _convertFlags),
        _spec("disable", None, 1, _yesNo("disable")),
        _spec("socket_type", "socketType", 1, _convertSocketType),
        _spec("protocol", "protocol", 1, _convertProtocol),
        _spec("wait", "wait", 1, _yesNo("wait")),
        _spec("user", "user", 1, _convertUser),
        _spec("group", "gid", 1, _convertGroup),
        _spec("groups", "groups", 1, _yesNo("groups"), inDefaults=True),
        _spec(
            "instances", "instances", 1, _countOrUnlimited("instances"), inDefaults=True
        ),
        _spec(
            "per_source",
            "perSource",
            1,
            _countOrUnlimited("per_source"),
            inDefaults=True,
        ),
        _spec("cps", "cps", 2, _convertCps, inDefaults=True),
        _spec("max_load", "maxLoad", 1, _convertMaxLoad, inDefaults=True),
        _spec("nice", "nice", 1, _convertNice),
        _spec("umask", "umask", 1, _convertUmask, inDefaults=True),
        _spec("server", "server", 1, _convertServer),
        _spec("server_args", "serverArgs", _SOME, _convertServerArgs),
        _spec("libwrap", "libwrap", 1, _convertLibwrap),
        _spec("only_from", "onlyFrom", _ANY, _listOf(_addressItem), True, True),
        _spec("no_access", "noAccess", _ANY, _listOf(_addressItem), True, True),
        _spec("access_times", "accessTimes", _SOME, _convertAccessTimes),
        _spec("log_type", "logType", _SOME, _convertLogType, inDefaults=True),
        _spec(
            "log_on_success",
            "logOnSuccess",
            _ANY,
            _listOf(_logOption(SUCCESS_LOG_OPTIONS, "log_on_success value")),
            True,
            True,
        ),
        _spec(
            "log_on_failure",
            "logOnFailure",
            _ANY,
            _listOf(_logOption(FAILURE_LOG_OPTIONS, "log_on_failure value")),
            True,
            True,
        ),
        _spec("rpc_version", "rpcVersion", 1, _convertRpcVersion),
        _spec("rpc_number", "rpcNumber", 1, _convertRpcNumber),
        _spec("env", "env", _ANY, _listOf(_envItem), isList=True),
        _spec("passenv", "passenv", _ANY, _listOf(_nameItem), True, True),
        _spec("port", "port", 1, _convertPort),
        _spec("redirect", "redirect", 2, _convertRedirect),
        _spec("bind", "bind", 1, _convertBind, inDefaults=True),
        _spec("interface", "bind", 1, _convertBind, inDefaults=True),
        _spec("banner", "banner", 1, _convertBanner, inDefaults=True),
        _spec("banner_success", "bannerSuccess", 1, _convertBanner, inDefaults=True),
        _spec("banner_fail", "bannerFail", 1, _convertBanner, inDefaults=True),
        _spec("mdns", "mdns", 1, _yesNo("mdns")),
        _spec("v6only", "v6only", 1, _yesNo("v6only"), inDefaults=True),
        # twinetd's own attributes.
        _spec("twinetd_mode", "handoff", 1, _convertMode, inDefaults=True),
        _spec("twinetd_stderr", "stderrToSocket", 1, _convertStderr, inDefaults=True),
        _spec("deny_time", "denyTime", 1, _convertDenyTime),
        _spec("rlimit_as", _rlimitField("as"), 1, _rlimit("rlimit_as")),
        _spec("rlimit_cpu", _rlimitField("cpu"), 1, _rlimit("rlimit_cpu", False)),
        _spec("rlimit_data", _rlimitField("data"), 1, _rlimit("rlimit_data")),
        _spec("rlimit_rss", _rlimitField("rss"), 1, _rlimit("rlimit_rss")),
        _spec("rlimit_stack", _rlimitField("stack"), 1, _rlimit("rlimit_stack")),
        _spec("rlimit_files", _rlimitField("files"), 1, _rlimit("rlimit_files")),
        _spec("enabled", None, _ANY, _listOf(_nameItem), True, True),
        _spec("disabled", None, _ANY, _listOf(_nameItem), True, True),
    )
}

_DEFAULTS_ONLY = frozenset({"enabled", "disabled"})
_RLIMIT_ORDER = ("as", "cpu", "data", "rss", "stack", "files")


class _Problems:
    """
    Problems with a sort key that puts them in file order, included files
    at the place of their include.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[tuple[int, ...], int, Problem]] = []

    def add(self, key: tuple[int, ...], problem: Problem) -> None:
        self.entries.append((key, len(self.entries), problem))

    def sorted(self) -> tuple[Problem, ...]:
        return tuple(p for _, _, p in sorted(self.entries, key=lambda e: e[:2]))


@attrs.frozen
class _Located:
    """
    A section with the folder of its file and its sort key prefix.
    """

    section: Section
    baseDir: str
    prefix: tuple[int, ...]

    def key(self, line: int) -> tuple[int, ...]:
        return (*self.prefix, line)


class _Loader:
    def __init__(self, lookups: Lookups) -> None:
        self.lookups = lookups
        self.problems = _Problems()
        self.sections: list[_Located] = []
        self.dropped: list[str] = []

    def problem(
        self,
        key: tuple[int, ...],
        location: SourceLocation,
        service: str | None,
        message: str,
        attribute: str | None = None,
        severity: str = "error",
    ) -> None:
        self.problems.add(key, Problem(location, service, message, attribute, severity))

    # Reading files

    def loadText(
        self,
        text: str,
        filename: str,
        baseDir: str,
        prefix: tuple[int, ...],
        stack: tuple[str, ...],
    ) -> None:
        result = parse(text, filename)
        for problem in result.problems:
            self.problems.add((*prefix, problem.location.line), problem)
        self.dropped.extend(result.dropped)
        defaultsSeen: SourceLocation | None = None
        for item in result.items:
            key = (*prefix, item.location.line)
            if isinstance(item, Include):
                self.include(item, baseDir, key, stack)
            elif item.kind == "defaults" and defaultsSeen is not None:
                self.problem(
                    key,
                    item.location,
                    "defaults",
                    "only one defaults entry is allowed per file (the first is "
                    f"at {defaultsSeen}); this one is ignored",
                )
            else:
                if item.kind == "defaults":
                    defaultsSeen = item.location
                self.sections.append(_Located(item, baseDir, prefix))

    def loadFile(
        self,
        path: str,
        prefix: tuple[int, ...],
        stack: tuple[str, ...],
        where: tuple[tuple[int, ...], SourceLocation] | None,
    ) -> None:
        real = os.path.realpath(path)
        if real in stack:
            key, location = where or (prefix, SourceLocation(path))
            self.problem(key, location, None, f"include cycle: {path} includes itself")
            return
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", errors="surrogateescape")
        except OSError as e:
            key, location = where or (prefix, SourceLocation(path))
            self.problem(key, location, None, f"cannot read {path}: {e.strerror}")
            return
        self.loadText(text, path, os.path.dirname(path), prefix, (*stack, real))

    def loadDirectory(
        self,
        path: str,
        prefix: tuple[int, ...],
        stack: tuple[str, ...],
        where: tuple[tuple[int, ...], SourceLocation] | None,
    ) -> None:
        key, location = where or (prefix, SourceLocation(path))
        try:
            names = os.listdir(path)
        except OSError as e:
            self.problem(
                key, location, None, f"cannot read folder {path}: {e.strerror}"
            )
            return
        # xinetd's includedir: C-locale order, skipping names with a dot or
        # ending with '~' (editor backups, package manager leftovers).
        names.sort(key=os.fsencode)
        for index, name in enumerate(names):
            if "." in name or name.endswith("~"):
                continue
            child = os.path.join(path, name)
            try:
                mode = os.stat(child).st_mode
            except OSError as e:
                self.problem(key, location, None, f"cannot read {child}: {e.strerror}")
                continue
            if not stat.S_ISREG(mode):
                self.problem(
                    key,
                    location,
                    None,
                    f"{child} is not a regular file; skipped",
                    severity="warning",
                )
                continue
            self.loadFile(child, (*prefix, index), stack, where)

    def include(
        self, item: Include, baseDir: str, key: tuple[int, ...], stack: tuple[str, ...]
    ) -> None:
        path = os.path.join(baseDir, item.path)
        where = (key, item.location)
        if item.kind == "includedir":
            self.loadDirectory(path, key, stack, where)
        else:
            self.loadFile(path, key, stack, where)

    # Meaning

    def build(self) -> LoadResult:
        defaults = _Defaults()
        for located in self.sections:
            if located.section.kind == "defaults":
                self.readDefaults(located, defaults)
        services: list[ServiceConfig] = []
        disabled: list[str] = []
        skipped: list[str] = list(self.dropped)
        byId: dict[str, ServiceConfig] = {}
        byAddress: dict[tuple[int, str, str | None], ServiceConfig] = {}
        for located in self.sections:
            if located.section.kind != "service":
                continue
            builder = _ServiceBuilder(self, located, defaults)
            outcome = builder.build()
            if isinstance(outcome, str):
                disabled.append(outcome)
                continue
            if outcome is None:
                skipped.append(located.section.name)
                continue
            section = located.section
            key = located.key(section.location.line)
            first = byId.get(outcome.id)
            if first is not None:
                self.problem(
                    key,
                    section.location,
                    section.name,
                    f"duplicate service id {outcome.id} (already used by the "
                    f"service at {first.source}); skipped",
                    "id",
                )
                skipped.append(section.name)
                continue
            address = (outcome.port, outcome.protocol, outcome.bind)
            other = byAddress.get(address)
            if other is not None:
                self.problem(
                    key,
                    section.location,
                    section.name,
                    f"port {outcome.port}/{outcome.protocol} is already used by "
                    f"service {other.id} at {other.source}; skipped",
                    "port",
                )
                skipped.append(section.name)
                continue
            byId[outcome.id] = outcome
            byAddress[address] = outcome
            services.append(outcome)
        return LoadResult(
            tuple(services), self.problems.sorted(), tuple(disabled), tuple(skipped)
        )

    def readDefaults(self, located: _Located, defaults: _Defaults) -> None:
        section = located.section
        context = _Context(self.lookups, located.baseDir)
        warned: set[str] = set()
        for assignment in section.assignments:
            name = assignment.attribute.lower()
            key = located.key(assignment.location.line)
            spec = ATTRIBUTES.get(name)

            report = functools.partial(
                self.reportDefaults, key, assignment.location, name
            )

            if spec is None:
                report(f"unknown attribute {assignment.attribute}")
                continue
            if not spec.inDefaults:
                report(f"attribute {name} is not allowed in defaults; ignored")
                continue
            if not spec.isList and assignment.operator != "=":
                report(
                    f"operator {assignment.operator} cannot be used with "
                    f"attribute {name}; ignored"
                )
                continue
            field = spec.field or name
            if not spec.isList and field in defaults.scalars:
                report(
                    f"attribute {name} is already set in defaults; this line is "
                    "ignored",
                    "warning",
                )
                continue
            countError = _checkCount(spec, assignment.values)
            if countError:
                report(countError + "; ignored")
                continue
            try:
                value = spec.convert(context, assignment.values)
            except _BadValue as e:
                report(f"{e}; ignored{_hint(assignment.values)}")
                continue
            if spec.isList:
                if name == "passenv":
                    value = self.checkPassenv(value, report)
                # In defaults, '=' means '+=' for cumulative attributes.
                current = defaults.lists.get(field, ())
                if assignment.operator == "-=":
                    defaults.lists[field] = _remove(current, value)
                else:
                    defaults.lists[field] = _add(current, value)
            else:
                defaults.scalars[field] = value
            if name in UNSUPPORTED_ATTRIBUTES and name not in warned:
                warned.add(name)
                report(_unsupported(name), "warning")

    def reportDefaults(
        self,
        key: tuple[int, ...],
        location: SourceLocation,
        attribute: str,
        message: str,
        severity: str = "error",
    ) -> None:
        self.problem(key, location, "defaults", message, attribute, severity)

    def checkPassenv(
        self, names: tuple[str, ...], report: Callable[[str, str], None]
    ) -> tuple[str, ...]:
        kept = []
        for name in names:
            if name in self.lookups.environ:
                kept.append(name)
            else:
                # xinetd: "undefined environment variable", and drops it.
                report(
                    f"passenv: {name} is not in the daemon's environment; ignored",
                    "warning",
                )
        return tuple(kept)


def _unsupported(name: str) -> str:
    return f"attribute {name} is recognised but not supported yet; ignored"


def _hint(values: tuple[str, ...]) -> str:
    return _COMMENT_HINT if any(v.startswith("#") for v in values) else ""


def _checkCount(spec: AttributeSpec, values: tuple[str, ...]) -> str | None:
    hint = _hint(values)
    if spec.count > 0 and len(values) != spec.count:
        plural = "value" if spec.count == 1 else "values"
        return (
            f"attribute {spec.name} expects {spec.count} {plural}, got "
            f"{len(values)}{hint}"
        )
    if spec.count == _SOME and not values:
        return f"attribute {spec.name} needs at least one value"
    return None


def _add(current: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
    result = list(current)
    for item in new:
        if item not in result:
            result.append(item)
    return tuple(result)


def _remove(current: tuple[Any, ...], gone: tuple[Any, ...]) -> tuple[Any, ...]:
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, AddressRule) and isinstance(b, AddressRule):
            return (a.network, a.hostname) == (b.network, b.hostname)
        return bool(a == b)

    return tuple(item for item in current if not any(same(item, g) for g in gone))


@attrs.define
class _Defaults:
    scalars: dict[str, Any] = attrs.Factory(dict)
    lists: dict[str, tuple[Any, ...]] = attrs.Factory(dict)

    @property
    def enabled(self) -> tuple[str, ...] | None:
        return self.lists.get("enabled")

    @property
    def disabled(self) -> tuple[str, ...]:
        return self.lists.get("disabled", ())


class _ServiceBuilder:
    """
    Turns one C{service} section into a L{ServiceConfig}, the id of a
    disabled service, or C{None} (broken: problems reported).
    """

    def __init__(self, loader: _Loader, located: _Located, defaults: _Defaults):
        self.loader = loader
        self.located = located
        self.section = located.section
        self.defaults = defaults
        self.context = _Context(loader.lookups, located.baseDir)
        self.pending: list[tuple[tuple[int, ...], Problem]] = []
        self.broken = False
        self.values: dict[str, Any] = {}
        self.lines: dict[str, SourceLocation] = {}

    def report(
        self,
        location: SourceLocation,
        message: str,
        attribute: str | None = None,
        severity: str = "error",
    ) -> None:
        if severity == "error":
            self.broken = True
        problem = Problem(location, self.section.name, message, attribute, severity)
        self.pending.append((self.located.key(location.line), problem))

    def reportAt(
        self, location: SourceLocation, attribute: str, message: str, severity: str
    ) -> None:
        self.report(location, message, attribute, severity)

    def flush(self) -> None:
        for key, problem in self.pending:
            self.loader.problems.add(key, problem)

    def build(self) -> ServiceConfig | str | None:
        self.readAssignments()
        serviceId = self.values.get("id", self.section.name)
        if self.values.get("disable") is True:
            return str(serviceId)
        if self.broken:
            self.flush()
            return None
        enabled = self.defaults.enabled
        if (enabled is not None and serviceId not in enabled) or (
            serviceId in self.defaults.disabled
        ):
            return str(serviceId)
        config = self.check()
        self.flush()
        return None if self.broken else config

    def readAssignments(self) -> None:
        lists: dict[str, tuple[Any, ...]] = dict(self.defaults.lists)
        lists.pop("enabled", None)
        lists.pop("disabled", None)
        warned: set[str] = set()
        for assignment in self.section.assignments:
            name = assignment.attribute.lower()
            location = assignment.location
            spec = ATTRIBUTES.get(name)
            if spec is None:
                if name in ("include", "includedir", "includefile"):
                    self.report(
                        location, f"{name} may not be used inside a service", name
                    )
                else:
                    self.report(
                        location, f"unknown attribute {assignment.attribute}", name
                    )
                continue
            if name in _DEFAULTS_ONLY:
                self.report(
                    location, f"attribute {name} is only allowed in defaults", name
                )
                continue
            if assignment.operator != "=" and (
                not spec.isList or (name == "env" and assignment.operator == "-=")
            ):
                self.report(
                    location,
                    f"operator {assignment.operator} cannot be used with "
                    f"attribute {name}",
                    name,
                )
                continue
            field = spec.field or name
            if not spec.isList and field in self.lines:
                self.report(
                    location,
                    f"attribute {name} is already set at line "
                    f"{self.lines[field].line}; this line is ignored",
                    name,
                    "warning",
                )
                continue
            countError = _checkCount(spec, assignment.values)
            if countError:
                self.report(location, countError, name)
                continue
            try:
                value = spec.convert(self.context, assignment.values)
            except _BadValue as e:
                self.report(location, str(e) + _hint(assignment.values), name)
                continue
            self.lines.setdefault(field, location)
            if spec.isList:
                if name == "passenv":
                    value = self.loader.checkPassenv(
                        value, functools.partial(self.reportAt, location, name)
                    )
                current = lists.get(field, ())
                if assignment.operator == "=":
                    lists[field] = _add((), value)
                elif assignment.operator == "+=":
                    lists[field] = _add(current, value)
                else:
                    lists[field] = _remove(current, value)
            else:
                self.values[field] = value
            if name == "flags":
                for flag in sorted(value & UNSUPPORTED_FLAGS):
                    self.report(
                        location,
                        f"flag {flag} is recognised but not supported yet; ignored",
                        name,
                        "warning",
                    )
            if name in UNSUPPORTED_ATTRIBUTES and name not in warned:
                warned.add(name)
                self.report(location, _unsupported(name), name, "warning")
        self.values.update(lists)

    def check(self) -> ServiceConfig | None:
        values = self.values
        for field, value in self.defaults.scalars.items():
            values.setdefault(field, value)
        header = self.section.location
        lookups = self.loader.lookups
        types: frozenset[str] = values.get("types", frozenset())
        flags: frozenset[str] = values.get("flags", frozenset())
        internal = "INTERNAL" in types or "SENSOR" in flags
        redirect = values.get("redirect") is not None

        socketType: SocketType | None = values.get("socketType")
        protocol: str | None = values.get("protocol")
        if protocol is None and socketType is not None:
            protocol = {SocketType.STREAM: "tcp", SocketType.DGRAM: "udp"}.get(
                socketType
            )
        if socketType is None and protocol is not None:
            # xinetd fills socket_type from protocol (confparse.c).
            socketType = SocketType.STREAM if protocol == "tcp" else SocketType.DGRAM
        if (socketType, protocol) in (
            (SocketType.STREAM, "udp"),
            (SocketType.DGRAM, "tcp"),
        ):
            self.report(
                self.lines["protocol"],
                f"protocol {protocol} does not go with socket_type "
                f"{socketType.value if socketType else ''}",
                "protocol",
            )

        missing = []
        if socketType is None:
            missing.append("socket_type")
        if "wait" not in values:
            missing.append("wait")
        if not internal and "user" not in values and lookups.euid == 0:
            missing.append("user")
        if not internal and not redirect and "server" not in values:
            missing.append("server")
        for name in missing:
            self.report(header, f"missing attribute {name}", name)

        # Kinds of service the runtime cannot run yet.
        if socketType in UNSUPPORTED_SOCKET_TYPES:
            assert socketType is not None
            self.report(
                self.lines.get("socketType", header),
                f"socket_type {socketType.value} is not supported yet",
                "socket_type",
            )
        if (
            values.get("wait") is True
            and socketType is SocketType.STREAM
            and not STREAM_WAIT_SUPPORTED
        ):
            self.report(
                self.lines["wait"],
                "wait = yes is not supported yet for stream services",
                "wait",
            )
        # xinetd picks the builtin by service name and socket type (SENSOR
        # services are always its sensor).
        if (
            "INTERNAL" in types
            and socketType in (SocketType.STREAM, SocketType.DGRAM)
            and "SENSOR" not in flags
            and self.section.name not in INTERNAL_SERVICES
        ):
            assert socketType is not None
            self.report(
                self.lines["types"],
                f"no such internal service: {self.section.name}/{socketType.value}",
                "type",
            )
        for kind in sorted(types & UNSUPPORTED_TYPES):
            self.report(
                self.lines["types"], f"type {kind} is not supported yet", "type"
            )
        if redirect and not REDIRECT_SUPPORTED:
            self.report(
                self.lines["redirect"], "redirect is not supported yet", "redirect"
            )

        if "NAMEINARGS" in flags and "serverArgs" not in values:
            self.report(
                self.lines["flags"],
                "flag NAMEINARGS needs server_args (whose first word is argv[0])",
                "flags",
            )
        if "TRAFFIC" in values.get("logOnSuccess", ()) and not redirect:
            self.report(
                self.lines.get("logOnSuccess", header),
                "log_on_success TRAFFIC is only for redirected services",
                "log_on_success",
            )

        port = self.findPort(types, protocol, header)

        user: UserEntry | None = values.get("user")
        uid = gid = None
        if user is not None and user.name == DAEMON_USER:
            user = None
        elif user is not None:
            uid, gid = user.uid, user.gid
            if lookups.euid != 0 and user.uid != lookups.euid:
                self.report(
                    self.lines["user"],
                    f"user {user.name} differs from the daemon's user; "
                    "run as root to switch users",
                    "user",
                )
        if "gid" in values:
            gid = values["gid"]

        server: str | None = values.get("server")
        if server is not None and not lookups.isExecutable(server):
            self.report(
                self.lines["server"],
                f"server {server} does not exist or is not executable",
                "server",
                "warning",
            )
        for field, attribute in (
            ("banner", "banner"),
            ("bannerSuccess", "banner_success"),
            ("bannerFail", "banner_fail"),
        ):
            path = values.get(field)
            if path is not None and not lookups.isReadable(path):
                # Read again for each connection: it may appear later.
                self.report(
                    self.lines.get(field, header),
                    f"{attribute} {path} cannot be read; nothing is sent until it can",
                    attribute,
                    "warning",
                )
        if self.broken or socketType is None or port is None:
            return None

        rlimits = tuple(
            (name, values[_rlimitField(name)])
            for name in _RLIMIT_ORDER
            if _rlimitField(name) in values
        )
        onlyFrom = values.get("onlyFrom")
        return ServiceConfig(
            name=self.section.name,
            source=header,
            socketType=socketType,
            wait=values["wait"],
            port=port,
            id=values.get("id", self.section.name),
            protocol=protocol or "tcp",
            types=types,
            flags=flags,
            server=server,
            serverArgs=values.get("serverArgs", ()),
            bind=values.get("bind"),
            user=user.name if user is not None else None,
            uid=uid,
            gid=gid,
            groups=values.get("groups", False),
            umask=values.get("umask"),
            nice=values.get("nice"),
            env=values.get("env", ()),
            passenv=values.get("passenv"),
            instances=values.get("instances"),
            perSource=values.get("perSource"),
            cps=values.get("cps"),
            maxLoad=values.get("maxLoad"),
            onlyFrom=tuple(onlyFrom) if onlyFrom is not None else None,
            noAccess=values.get("noAccess", ()),
            accessTimes=values.get("accessTimes", ()),
            logType=values.get("logType"),
            logOnSuccess=frozenset(values.get("logOnSuccess", ())),
            logOnFailure=frozenset(values.get("logOnFailure", ())),
            banner=values.get("banner"),
            bannerSuccess=values.get("bannerSuccess"),
            bannerFail=values.get("bannerFail"),
            redirect=values.get("redirect"),
            rlimits=rlimits,
            denyTime=values.get("denyTime"),
            v6only=values.get("v6only"),
            handoff=values.get("handoff"),
            stderrToSocket=values.get("stderrToSocket"),
            rpcVersion=values.get("rpcVersion"),
            rpcNumber=values.get("rpcNumber"),
            libwrap=values.get("libwrap"),
            mdns=values.get("mdns"),
        )

    def findPort(
        self, types: frozenset[str], protocol: str | None, header: SourceLocation
    ) -> int | None:
        """
        The port, as xinetd's service_fill and check_entry find it.
        """
        given: int | None = self.values.get("port")
        name = self.section.name
        if "RPC" in types or "TCPMUX" in types or "TCPMUXPLUS" in types:
            return given if given is not None else 0
        if "UNLISTED" in types:
            if given is None:
                self.report(
                    header, "missing attribute port (needed by type UNLISTED)", "port"
                )
            return given
        if protocol is None:
            return None
        known = self.loader.lookups.servicePort(name, protocol)
        if known is None:
            self.report(
                self.lines.get("port", header),
                f"service {name}/{protocol} is not in the services database; "
                "add type = UNLISTED and a port",
                "port",
            )
            return None
        if given is not None and given != known:
            self.report(
                self.lines["port"],
                f"port {given} disagrees with the services database "
                f"({name}/{protocol} is port {known})",
                "port",
            )
            return None
        return known


def loadText(
    text: str, filename: str, lookups: Lookups, baseDir: str | None = None
) -> LoadResult:
    """
    Load configuration given as text.

    @param filename: the name used in problems.
    @param baseDir: the folder relative includes, servers and banners are
        resolved against; by default the folder of C{filename}, else the
        current directory.
    """
    loader = _Loader(lookups)
    if baseDir is None:
        baseDir = os.path.dirname(filename) or os.getcwd()
    loader.loadText(text, filename, baseDir, (), ())
    return loader.build()


def loadPath(path: str, lookups: Lookups) -> LoadResult:
    """
    Load a configuration file (an C{xinetd.conf} with C{defaults} and
    C{includedir} works as is) or a folder (read as xinetd's C{includedir}
    reads one).
    """
    loader = _Loader(lookups)
    if os.path.isdir(path):
        loader.loadDirectory(path, (), (), None)
    else:
        loader.loadFile(path, (), (), None)
    return loader.build()
