# -*- test-case-name: tests.unit.test_inetdconf -*-
"""
inetd.conf lines as xinetd's C{-inetd_compat} reads them, turned into the
same C{service} sections an xinetd file gives, so that one builder checks
and builds both.

A line is C{name socket-type protocol wait[.max] user[.group] server
[argv...]}:

  - C{name} is a service of the services database, or (as Twisted's own
    inetd reads it) a port number;
  - C{protocol} is C{tcp}, C{udp} (IPv4, as openbsd-inetd and Twisted's
    inetd listen), C{tcp4}, C{udp4}, or C{tcp6}, C{udp6} (IPv6 only);
  - C{server} is a path, whose arguments start with C{argv[0]} (xinetd's
    C{NAMEINARGS}), or C{internal} for xinetd's builtins (echo, discard,
    chargen, daytime, time);
  - C{user.group} and C{user:group} both name a group;
  - a field starting with C{#} starts a comment to the end of the line.

RPC lines (C{name/version}, C{rpc/tcp}) are reported as not supported.
"""

from __future__ import annotations

import attrs

from twinetd.config.lookups import Lookups, asNumber
from twinetd.config.parser import Assignment, Section, splitValues
from twinetd.errors import Problem, SourceLocation

# The protocol field: xinetd's protocol, its address flag, v6only.
_PROTOCOLS: dict[str, tuple[str, str, str | None]] = {
    "tcp": ("tcp", "IPv4", None),
    "tcp4": ("tcp", "IPv4", None),
    "udp": ("udp", "IPv4", None),
    "udp4": ("udp", "IPv4", None),
    "tcp6": ("tcp", "IPv6", "yes"),
    "udp6": ("udp", "IPv6", "yes"),
}

_FIELDS = "name socket-type protocol wait user server [argv...]"


@attrs.frozen
class InetdConf:
    """
    What an inetd.conf gave.

    @ivar sections: one C{service} section per usable line.
    @ivar problems: what is wrong with the other lines.
    @ivar dropped: names of the services left out.
    """

    sections: tuple[Section, ...]
    problems: tuple[Problem, ...]
    dropped: tuple[str, ...]


def parseInetdConf(text: str, filename: str, lookups: Lookups) -> InetdConf:
    """
    Read inetd.conf text into service sections.

    @param filename: the name used in locations.
    @param lookups: the services database, for the port of each name.
    """
    sections: list[Section] = []
    problems: list[Problem] = []
    dropped: list[str] = []
    for index, line in enumerate(text.split("\n")):
        fields = _fields(line)
        if not fields:
            continue
        location = SourceLocation(filename, index + 1)
        name = fields[0]
        warnings: list[str] = []
        outcome = _section(fields, location, lookups, warnings)
        problems.extend(
            Problem(location, name, w, severity="warning") for w in warnings
        )
        if isinstance(outcome, Section):
            sections.append(outcome)
        else:
            problems.append(Problem(location, name, outcome))
            dropped.append(name)
    return InetdConf(tuple(sections), tuple(problems), tuple(dropped))


def _fields(line: str) -> list[str]:
    fields = []
    for field in splitValues(line.removesuffix("\r")):
        if field.startswith("#"):
            break
        fields.append(field)
    return fields


def _section(
    fields: list[str],
    location: SourceLocation,
    lookups: Lookups,
    warnings: list[str],
) -> Section | str:
    """
    One line's section, or what is wrong with the line; warnings are
    appended to C{warnings}.
    """
    if len(fields) < 6:
        return f"expected at least 6 fields ({_FIELDS}), got {len(fields)}"
    name, socketType, protocolField, wait, owner, server = fields[:6]
    if "/" in name or protocolField.startswith("rpc/"):
        return "RPC services are not supported; line skipped"
    if protocolField not in _PROTOCOLS:
        expected = ", ".join(_PROTOCOLS)
        return f"bad protocol {protocolField!r} (expected {expected}); line skipped"
    protocol, family, v6only = _PROTOCOLS[protocolField]
    waitWord, dot, perMinute = wait.partition(".")
    if waitWord not in ("wait", "nowait") or (dot and asNumber(perMinute) is None):
        return f"bad value for wait: {wait!r} (expected wait or nowait, maybe .MAX)"
    if dot:
        warnings.append(
            f"{wait}: the limit of {perMinute} servers a minute is not supported; "
            "ignored (cps applies)"
        )
    user, _, group = owner.replace(":", ".").partition(".")
    attributes: list[tuple[str, tuple[str, ...]]] = [
        ("socket_type", (socketType,)),
        ("protocol", (protocol,)),
        ("wait", ("yes" if waitWord == "wait" else "no",)),
        ("user", (user,)),
        ("groups", ("yes",)),  # inetd's initgroups(), as xinetd sets it
    ]
    if group:
        attributes.append(("group", (group,)))
    if v6only:
        attributes.append(("v6only", (v6only,)))
    types: list[str] = []
    flags = [family]
    if server == "internal":
        types.append("INTERNAL")
        # xinetd's ids for its builtins.
        serviceId = f"{name}-{socketType}"
    else:
        attributes.append(("server", (server,)))
        if len(fields) > 6:
            # inetd's arguments start with argv[0].
            flags.append("NAMEINARGS")
            attributes.append(("server_args", tuple(fields[6:])))
        # A tcp6 line may sit beside a tcp line for the same service.
        serviceId = f"{name}/{protocolField}" if v6only else name
    if asNumber(name) is not None:
        # Twisted's inetd.conf: a port number in place of the name.
        types.append("UNLISTED")
        attributes.append(("port", (name,)))
    elif lookups.servicePort(name, protocol) is None:
        return (
            f"service {name}/{protocol} is not in the services database (give "
            "its port number as the name)"
        )
    attributes.append(("flags", tuple(flags)))
    attributes.append(("id", (serviceId,)))
    if types:
        attributes.append(("type", tuple(types)))
    assignments = tuple(
        Assignment(attribute, "=", values, location) for attribute, values in attributes
    )
    return Section("service", name, location, assignments)
