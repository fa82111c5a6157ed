# -*- test-case-name: tests.unit.test_config -*-
"""
Values as xinetd reads them, whatever the attribute: words, numbers, byte
sizes, addresses, times of day, log targets.

Each parser returns the value or raises L{BadValue} with a message for a
person; L{twinetd.config.attributes} puts them behind attribute names.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence

from twinetd.model import AddressRule, FileTarget, LogTarget, SyslogTarget

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


class BadValue(Exception):
    """
    A value that cannot be converted; the message is for a person.
    """


def word(choices: Sequence[str], what: str) -> Callable[[str], str]:
    """
    A case-insensitive choice among C{choices}, spelt as in C{choices}.
    """
    table = {choice.lower(): choice for choice in choices}

    def convert(value: str) -> str:
        try:
            return table[value.lower()]
        except KeyError:
            raise BadValue(
                f"bad {what} {value!r} (expected {', '.join(choices)})"
            ) from None

    return convert


def integer(
    text: str, name: str, low: int | None = None, high: int | None = None
) -> int:
    """
    A decimal number of ASCII digits, optionally signed, within bounds.
    """
    if not re.fullmatch(r"[+-]?[0-9]+", text, re.ASCII):
        raise BadValue(f"bad value for {name}: {text!r} (expected a number)")
    if len(text) > 30:
        # No limit needs as many digits (Python refuses above 4300).
        raise BadValue(f"bad value for {name}: {text!r} (too large)")
    number = int(text)
    if (low is not None and number < low) or (high is not None and number > high):
        span = f"from {low}" if high is None else f"from {low} to {high}"
        raise BadValue(f"bad value for {name}: {text!r} (expected a number {span})")
    return number


def byteSize(text: str, name: str) -> int:
    """
    xinetd's C{get_limit}: a number of bytes with an optional K or M suffix.
    """
    match = re.fullmatch(r"([0-9]+)([kKmM]?)", text, re.ASCII)
    if match is None:
        raise BadValue(
            f"bad value for {name}: {text!r} (expected a number, optionally "
            "followed by K or M)"
        )
    multiplier = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    digits = match.group(1)
    if len(digits) > 30:
        raise BadValue(f"bad value for {name}: {text!r} (too large)")
    return int(digits) * multiplier


_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?", re.ASCII)


def isHostName(text: str) -> bool:
    """
    Whether C{text} can be a host name (not an address).
    """
    labels = text.removeprefix(".").removesuffix(".").split(".")
    if not text or len(text) > 255 or all(label.isdigit() for label in labels):
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


def address(text: str, name: str) -> str:
    """
    An IP address (normalised) or a host name.
    """
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if isHostName(text):
        return text
    raise BadValue(f"bad address for {name}: {text!r}")


def parseAddress(text: str) -> tuple[AddressRule, ...]:
    """
    One C{only_from}/C{no_access} value as xinetd reads it.

    @raise BadValue: when it is not an address.
    """
    bad = BadValue(f"bad address: {text!r}")
    if "," in text and "{" not in text:
        raise BadValue(f"bad address: {text!r} has a comma in it; remove the comma")
    if "{" in text:
        # Factorized: a.b.{c,d}: the braces come last; the parts not written
        # are wildcards.
        match = re.fullmatch(r"((?:[0-9]{1,3}\.){1,3})\{([0-9,]+)\}", text, re.ASCII)
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
            dotted = ".".join(str(p) for p in parts + [0] * (4 - len(parts)))
            network = ipaddress.ip_network(f"{dotted}/{8 * len(parts)}")
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
    if re.fullmatch(r"[0-9.]+", text, re.ASCII):
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
    if isHostName(text):
        return (AddressRule(text, hostname=text.lower()),)
    raise bad


def timeRange(value: str) -> tuple[int, int]:
    """
    One C{access_times} interval C{hour:min-hour:min} as minutes since
    midnight.
    """
    match = re.fullmatch(
        r"([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})", value, re.ASCII
    )
    bad = BadValue(
        f"bad value for access_times: {value!r} (expected hour:min-hour:min)"
    )
    if match is None:
        raise bad
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    for hour, minute in ((h1, m1), (h2, m2)):
        # The man page's own example ends an interval at 24:00.
        if minute > 59 or hour > 24 or (hour == 24 and minute):
            raise bad
    return (h1 * 60 + m1, h2 * 60 + m2)


def logTarget(values: tuple[str, ...]) -> LogTarget:
    """
    C{log_type = SYSLOG facility [level]} or C{FILE path [soft [hard]]}.
    """
    kind = values[0].upper()
    if kind == "SYSLOG":
        if len(values) not in (2, 3):
            raise BadValue("log_type SYSLOG expects a facility and maybe a level")
        facility = word(SYSLOG_FACILITIES, "syslog facility")(values[1])
        level = "info"
        if len(values) == 3:
            level = word(SYSLOG_LEVELS, "syslog level")(values[2])
        return SyslogTarget(facility, level)
    if kind == "FILE":
        if len(values) not in (2, 3, 4):
            raise BadValue("log_type FILE expects a path and maybe two limits")
        soft = hard = None
        if len(values) >= 3:
            soft = byteSize(values[2], "log_type soft limit")
            if len(values) == 4:
                hard = byteSize(values[3], "log_type hard limit")
                if hard < soft:
                    raise BadValue(
                        f"log_type hard limit ({hard}) is less than soft limit ({soft})"
                    )
            else:
                extra = min(max(soft // 100, _LOG_EXTRA_MIN), _LOG_EXTRA_MAX)
                hard = soft + extra
        return FileTarget(values[1], soft, hard)
    raise BadValue(f"bad value for log_type: {values[0]!r} (expected SYSLOG or FILE)")
