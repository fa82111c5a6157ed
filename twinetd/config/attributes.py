# -*- test-case-name: tests.unit.test_config -*-
"""
The one table of xinetd's attributes: name to L{ServiceConfig} field,
converter, number of values, and where the attribute may be written.

A record is built from this table: every attribute whose field is a
L{ServiceConfig} field sets it (through its C{toRecord}); the builder
derives only what no single attribute gives (the socket type and protocol
from each other, the port from the services database, the user's ids, the
C{rlimit_*} pairs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from twinetd.config.endpoints import parseListen
from twinetd.config.lookups import Lookups, UserEntry, asNumber
from twinetd.config.values import (
    BadValue,
    address,
    byteSize,
    integer,
    logTarget,
    parseAddress,
    timeRange,
    word,
)
from twinetd.model import AddressRule, SocketType

# What the runtime cannot do yet: each entry is a one-line change.
UNSUPPORTED_ATTRIBUTES: frozenset[str] = frozenset(
    {"libwrap", "mdns", "rpc_version", "rpc_number"}
)
UNSUPPORTED_SOCKET_TYPES: frozenset[SocketType] = frozenset(
    {SocketType.RAW, SocketType.SEQPACKET}
)
UNSUPPORTED_TYPES: frozenset[str] = frozenset({"RPC", "TCPMUX", "TCPMUXPLUS"})
UNSUPPORTED_FLAGS: frozenset[str] = frozenset(
    {"INTERCEPT", "NORETRY", "IDONLY", "NOLIBWRAP", "LABELED"}
)

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

# twinetd extension: `user = -` is the daemon's own user (no switch), so that
# one file serves root and non-root daemons alike (etc/ uses it).
DAEMON_USER = "-"

_COMMENT_HINT = " ('#' starts a comment only at the start of a line)"


@attrs.frozen
class Context:
    """
    What a converter may consult: the system and the folder of the file
    being read (relative paths are relative to it).
    """

    lookups: Lookups
    baseDir: str


Converter = Callable[[Context, tuple[str, ...]], Any]

# Value counts, as xinetd's attribute table: a positive number is exact.
ANY = -1  # zero or more values
SOME = -2  # one or more values


def _same(value: Any) -> Any:
    return value


@attrs.frozen
class AttributeSpec:
    """
    One row of the attribute table.

    @ivar name: the attribute as written in the configuration.
    @ivar field: the L{ServiceConfig} field it sets, or a name of the
        builder's own for attributes that set no field directly
        (C{disable}, C{userEntry}, C{rlimit:NAME}, C{enabled}, C{disabled}).
    @ivar count: how many values: a positive number is exact, L{ANY} is
        any, L{SOME} is at least one.
    @ivar convert: values to the field's value; for list attributes, the
        values to a tuple of items.
    @ivar isList: whether C{+=} and C{-=} apply and the attribute may be
        repeated.
    @ivar inService: whether it is allowed in a C{service} entry.
    @ivar inDefaults: whether it is allowed in C{defaults}.
    @ivar toRecord: the field's value as the record holds it.
    """

    name: str
    field: str
    count: int
    convert: Converter
    isList: bool = False
    inService: bool = True
    inDefaults: bool = False
    toRecord: Callable[[Any], Any] = _same


def _twoWay(name: str, first: str, second: str, true: str) -> Converter:
    # A two-valued attribute, True for `true`; messages list `first` first.
    def convert(context: Context, values: tuple[str, ...]) -> bool:
        value = values[0].lower()
        if value in (first, second):
            return value == true
        raise BadValue(
            f"bad value for {name}: {values[0]!r} (expected {first} or {second})"
        )

    return convert


def _yesNo(name: str) -> Converter:
    return _twoWay(name, "yes", "no", "yes")


def _words(choices: Sequence[str], what: str) -> Converter:
    convert = word(choices, what)

    def words(context: Context, values: tuple[str, ...]) -> frozenset[str]:
        return frozenset(convert(value) for value in values)

    return words


def _number(name: str, low: int | None = None, high: int | None = None) -> Converter:
    def convert(context: Context, values: tuple[str, ...]) -> int:
        return integer(values[0], name, low, high)

    return convert


def _countOrUnlimited(name: str) -> Converter:
    def convert(context: Context, values: tuple[str, ...]) -> int | None:
        if values[0].upper() == "UNLIMITED":
            return None
        return integer(values[0], name, 0)

    return convert


def _rlimit(name: str, suffixes: bool = True) -> Converter:
    def convert(context: Context, values: tuple[str, ...]) -> int | None:
        if values[0].upper() == "UNLIMITED":
            return None
        if suffixes:
            return byteSize(values[0], name)
        return integer(values[0], name, 0)

    return convert


def _text(context: Context, values: tuple[str, ...]) -> str:
    return values[0]


def _all(context: Context, values: tuple[str, ...]) -> tuple[str, ...]:
    return values


def _path(context: Context, values: tuple[str, ...]) -> str:
    # Extension: relative paths are relative to the naming file's folder.
    return os.path.abspath(os.path.join(context.baseDir, values[0]))


def _convertSocketType(context: Context, values: tuple[str, ...]) -> SocketType:
    return SocketType(word([t.value for t in SocketType], "socket_type")(values[0]))


def _convertProtocol(context: Context, values: tuple[str, ...]) -> str:
    value = values[0].lower()
    if value not in ("tcp", "udp"):
        raise BadValue(f"bad value for protocol: {values[0]!r} (expected tcp or udp)")
    return value


def _convertUser(context: Context, values: tuple[str, ...]) -> UserEntry:
    text = values[0]
    if text == DAEMON_USER:
        return UserEntry(context.lookups.euid, -1, DAEMON_USER)
    entry = context.lookups.user(text)
    if entry is not None:
        return entry
    # xinetd takes an unknown number as uid and gid both.
    number = _numberOrUnknown(text, "user", context.lookups.userNames())
    return UserEntry(number, number, text)


def _convertGroup(context: Context, values: tuple[str, ...]) -> int:
    gid = context.lookups.group(values[0])
    if gid is not None:
        return gid
    return _numberOrUnknown(values[0], "group", context.lookups.groupNames())


def _numberOrUnknown(text: str, what: str, names: Sequence[str]) -> int:
    """
    An id the system does not know, given as a number; else an error that
    suggests a close name.
    """
    number = asNumber(text)
    if number is None:
        raise BadValue(f"unknown {what}: {text}" + didYouMean(text, names))
    return number


def _convertUmask(context: Context, values: tuple[str, ...]) -> int:
    text = values[0]
    if not re.fullmatch(r"[0-7]+", text) or int(text, 8) > 0o777:
        raise BadValue(
            f"bad value for umask: {text!r} (expected an octal number up to 777)"
        )
    return int(text, 8)


def _convertBind(context: Context, values: tuple[str, ...]) -> str:
    return address(values[0], "bind")


def _convertCps(context: Context, values: tuple[str, ...]) -> tuple[int, int]:
    return (integer(values[0], "cps", 0), integer(values[1], "cps", 0))


def _convertMaxLoad(context: Context, values: tuple[str, ...]) -> float:
    try:
        load = float(values[0])
    except ValueError:
        load = 0.0
    if not load > 0 or load == float("inf"):
        raise BadValue(
            f"bad value for max_load: {values[0]!r} (expected a number above 0)"
        )
    return load


def _convertRedirect(context: Context, values: tuple[str, ...]) -> tuple[str, int]:
    host, portText = values
    port = asNumber(portText)
    if port is not None and port > 0:
        if port > 65535:
            raise BadValue(f"bad port for redirect: {portText!r} (too large)")
    else:
        port = context.lookups.servicePort(portText, "tcp")
        if port is None:
            raise BadValue(f"bad port for redirect: {portText!r}")
    return (address(host, "redirect"), port)


def _convertRpcVersion(context: Context, values: tuple[str, ...]) -> tuple[int, int]:
    match = re.fullmatch(r"([0-9]{1,9})(?:-([0-9]{1,9}))?", values[0])
    if match is None:
        raise BadValue(f"bad value for rpc_version: {values[0]!r} (expected N or N-M)")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else low
    if low > high:
        raise BadValue(f"bad value for rpc_version: {values[0]!r} (empty range)")
    return (low, high)


def _convertDenyTime(context: Context, values: tuple[str, ...]) -> float:
    text = values[0].upper()
    if text == "FOREVER":
        return float("inf")
    if text == "NEVER":
        return 0.0
    try:
        return 60.0 * integer(values[0], "deny_time", 0)
    except BadValue:
        raise BadValue(
            f"bad value for deny_time: {values[0]!r} (expected minutes, FOREVER "
            "or NEVER)"
        ) from None


def _convertAccessTimes(
    context: Context, values: tuple[str, ...]
) -> tuple[tuple[int, int], ...]:
    return tuple(timeRange(value) for value in values)


def _convertLogType(context: Context, values: tuple[str, ...]) -> Any:
    return logTarget(values)


def _listOf(item: Callable[[str], tuple[Any, ...]]) -> Converter:
    def convert(context: Context, values: tuple[str, ...]) -> tuple[Any, ...]:
        result: list[Any] = []
        for value in values:
            result.extend(item(value))
        return tuple(result)

    return convert


def _logOptions(name: str, field: str, choices: Sequence[str]) -> AttributeSpec:
    """
    The row of C{log_on_success} or C{log_on_failure}: a list of option
    words, allowed in defaults, kept as a set.
    """
    convert = word(choices, f"{name} value")
    return AttributeSpec(
        name,
        field,
        ANY,
        _listOf(lambda value: (convert(value),)),
        isList=True,
        inDefaults=True,
        toRecord=frozenset,
    )


def _envItem(value: str) -> tuple[tuple[str, str]]:
    name, equals, text = value.partition("=")
    if not equals:
        raise BadValue(f"bad value for env: {value!r} has no '='")
    return ((name, text),)


def _nameItem(value: str) -> tuple[str]:
    return (value,)


def _convertListen(context: Context, values: tuple[str, ...]) -> tuple[Any, ...]:
    tls = context.lookups.tlsAvailable()
    return tuple(parseListen(value, context.baseDir, tls) for value in values)


def _proxyAddress(value: str) -> tuple[AddressRule, ...]:
    rules = parseAddress(value)
    if any(rule.hostname is not None for rule in rules):
        # Whom to believe about a client's address must not depend on
        # what a name server answers.
        raise BadValue(
            f"bad address for twinetd_proxy_from: {value!r} (addresses and "
            "ranges only, not host names)"
        )
    return rules


def rlimitField(name: str) -> str:
    """
    The builder's field for C{rlimit_NAME}.
    """
    return "rlimit:" + name


RLIMIT_ORDER = ("as", "cpu", "data", "rss", "stack", "files")

_S = AttributeSpec

# The one table from xinetd attribute names to fields (xinetd's parse.c
# service_attributes and default_attributes).
ATTRIBUTES: dict[str, AttributeSpec] = {
    spec.name: spec
    for spec in (
        _S("id", "id", 1, _text),
        _S("type", "types", SOME, _words(SERVICE_TYPES, "type")),
        _S("flags", "flags", SOME, _words(SERVICE_FLAGS, "flag")),
        _S("disable", "disable", 1, _yesNo("disable")),
        _S("socket_type", "socketType", 1, _convertSocketType),
        _S("protocol", "protocol", 1, _convertProtocol),
        _S("wait", "wait", 1, _yesNo("wait")),
        _S("user", "userEntry", 1, _convertUser),
        _S("group", "gid", 1, _convertGroup),
        _S("groups", "groups", 1, _yesNo("groups"), inDefaults=True),
        _S(
            "instances", "instances", 1, _countOrUnlimited("instances"), inDefaults=True
        ),
        _S(
            "per_source",
            "perSource",
            1,
            _countOrUnlimited("per_source"),
            inDefaults=True,
        ),
        _S("cps", "cps", 2, _convertCps, inDefaults=True),
        _S("max_load", "maxLoad", 1, _convertMaxLoad, inDefaults=True),
        _S("nice", "nice", 1, _number("nice")),
        _S("umask", "umask", 1, _convertUmask, inDefaults=True),
        _S("server", "server", 1, _path),
        _S("server_args", "serverArgs", SOME, _all),
        _S("libwrap", "libwrap", 1, _text),
        _S(
            "only_from",
            "onlyFrom",
            ANY,
            _listOf(parseAddress),
            isList=True,
            inDefaults=True,
        ),
        _S(
            "no_access",
            "noAccess",
            ANY,
            _listOf(parseAddress),
            isList=True,
            inDefaults=True,
        ),
        _S("access_times", "accessTimes", SOME, _convertAccessTimes),
        _S("log_type", "logType", SOME, _convertLogType, inDefaults=True),
        _logOptions("log_on_success", "logOnSuccess", SUCCESS_LOG_OPTIONS),
        _logOptions("log_on_failure", "logOnFailure", FAILURE_LOG_OPTIONS),
        _S("rpc_version", "rpcVersion", 1, _convertRpcVersion),
        _S("rpc_number", "rpcNumber", 1, _number("rpc_number", 0)),
        _S("env", "env", ANY, _listOf(_envItem), isList=True),
        _S(
            "passenv",
            "passenv",
            ANY,
            _listOf(_nameItem),
            isList=True,
            inDefaults=True,
        ),
        _S("port", "port", 1, _number("port", 0, 65535)),
        _S("redirect", "redirect", 2, _convertRedirect),
        _S("bind", "bind", 1, _convertBind, inDefaults=True),
        _S("interface", "bind", 1, _convertBind, inDefaults=True),
        _S("banner", "banner", 1, _path, inDefaults=True),
        _S("banner_success", "bannerSuccess", 1, _path, inDefaults=True),
        _S("banner_fail", "bannerFail", 1, _path, inDefaults=True),
        _S("mdns", "mdns", 1, _yesNo("mdns")),
        _S("v6only", "v6only", 1, _yesNo("v6only"), inDefaults=True),
        # twinetd's own attributes: how a stream wait = no service meets its
        # program, and where a handed-off program's standard error goes.
        _S(
            "twinetd_mode",
            "handoff",
            1,
            _twoWay("twinetd_mode", "bridge", "handoff", "handoff"),
            inDefaults=True,
        ),
        _S(
            "twinetd_stderr",
            "stderrToSocket",
            1,
            _twoWay("twinetd_stderr", "log", "socket", "socket"),
            inDefaults=True,
        ),
        # Where a stream service listens (Twisted endpoint descriptions),
        # and which balancers may send a PROXY header there.
        _S("twinetd_listen", "listen", SOME, _convertListen, isList=True),
        _S(
            "twinetd_proxy_from",
            "proxyFrom",
            ANY,
            _listOf(_proxyAddress),
            isList=True,
        ),
        _S("deny_time", "denyTime", 1, _convertDenyTime),
        _S("rlimit_as", rlimitField("as"), 1, _rlimit("rlimit_as")),
        _S("rlimit_cpu", rlimitField("cpu"), 1, _rlimit("rlimit_cpu", False)),
        _S("rlimit_data", rlimitField("data"), 1, _rlimit("rlimit_data")),
        _S("rlimit_rss", rlimitField("rss"), 1, _rlimit("rlimit_rss")),
        _S("rlimit_stack", rlimitField("stack"), 1, _rlimit("rlimit_stack")),
        _S("rlimit_files", rlimitField("files"), 1, _rlimit("rlimit_files")),
        _S(
            "enabled",
            "enabled",
            ANY,
            _listOf(_nameItem),
            isList=True,
            inService=False,
            inDefaults=True,
        ),
        _S(
            "disabled",
            "disabled",
            ANY,
            _listOf(_nameItem),
            isList=True,
            inService=False,
            inDefaults=True,
        ),
    )
}


def didYouMean(text: str, candidates: Sequence[str]) -> str:
    """
    C{" (did you mean X?)"} when a candidate is close to C{text}, else
    C{""}.
    """
    # Imported here: only a configuration with an error needs it.
    import difflib

    close = difflib.get_close_matches(text, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def unsupported(name: str) -> str:
    return f"attribute {name} is recognised but not supported yet; ignored"


def hint(values: tuple[str, ...]) -> str:
    """
    A hint when a value looks like a trailing comment.
    """
    return _COMMENT_HINT if any(v.startswith("#") for v in values) else ""


def checkCount(spec: AttributeSpec, values: tuple[str, ...]) -> str | None:
    """
    What is wrong with the number of values, or C{None}.
    """
    if spec.count > 0 and len(values) != spec.count:
        plural = "value" if spec.count == 1 else "values"
        return (
            f"attribute {spec.name} expects {spec.count} {plural}, got "
            f"{len(values)}{hint(values)}"
        )
    if spec.count == SOME and not values:
        return f"attribute {spec.name} needs at least one value"
    return None


def add(current: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
    """
    C{+=}: the items of C{new} not already in C{current}, appended.
    """
    result = list(current)
    for item in new:
        if item not in result:
            result.append(item)
    return tuple(result)


def remove(current: tuple[Any, ...], gone: tuple[Any, ...]) -> tuple[Any, ...]:
    """
    C{-=}: C{current} without the items of C{gone} (address rules compared
    by what they match).
    """

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, AddressRule) and isinstance(b, AddressRule):
            return (a.network, a.hostname) == (b.network, b.hostname)
        return bool(a == b)

    return tuple(item for item in current if not any(same(item, g) for g in gone))
