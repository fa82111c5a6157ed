# -*- test-case-name: tests.unit.test_endpoints -*-
"""
C{twinetd_listen} values: Twisted's server endpoint descriptions
(C{tcp:8080}, C{unix:/run/x.sock:mode=660}, C{ssl:8443:privateKey=...},
C{systemd:domain=INET:index=0}, each optionally behind C{haproxy:}), read
and checked here into L{ListenSpec} records; L{twinetd.listeners.endpoints}
makes the endpoints.

The syntax is Twisted's (C{twisted.internet.endpoints.serverFromString}):
arguments separated by C{:}, keyword arguments as C{key=value}, a
backslash quoting the character after it.  Relative paths are relative to
the folder of the file that names them, as for C{server}.
"""

from __future__ import annotations

import os
import re

from twinetd.config.values import BadValue
from twinetd.model import AddressRule, ListenSpec

#: What each kind takes: its positional argument (the address, or C{None}),
#: and its keyword options, with the ones that name a file.
_KINDS: dict[str, tuple[str | None, frozenset[str], frozenset[str]]] = {
    "tcp": ("port", frozenset({"interface", "backlog"}), frozenset()),
    "tcp6": ("port", frozenset({"interface", "backlog"}), frozenset()),
    "unix": (
        "address",
        frozenset({"mode", "backlog", "lockfile", "wantPID"}),
        frozenset(),
    ),
    "ssl": (
        "port",
        frozenset(
            {
                "interface",
                "backlog",
                "privateKey",
                "certKey",
                "extraCertChain",
                "dhParameters",
                "caCerts",
                "verifyClient",
            }
        ),
        frozenset(
            {"privateKey", "certKey", "extraCertChain", "dhParameters", "caCerts"}
        ),
    ),
    "systemd": (None, frozenset({"domain", "index", "name"}), frozenset()),
}

#: The extra that brings TLS (pyOpenSSL, service_identity).
TLS_EXTRA = "pip install 'twinetd[tls]'"


def tokenize(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """
    A description's arguments and keyword arguments, as Twisted splits
    them: C{:} separates, C{=} makes a keyword argument (after it, only
    C{:} separates), C{\\} quotes the next character.
    """
    args: list[str] = []
    kwargs: list[tuple[str, str]] = []
    current = ""
    key: str | None = None
    chars = iter(text)
    for char in chars:
        if char == "\\":
            current += next(chars, "")
        elif char == "=" and key is None:
            key, current = current, ""
        elif char == ":":
            if key is None:
                args.append(current)
            else:
                kwargs.append((key, current))
            key, current = None, ""
        else:
            current += char
    if key is None:
        args.append(current)
    else:
        kwargs.append((key, current))
    return args, kwargs


def parseListen(text: str, baseDir: str, tlsAvailable: bool = True) -> ListenSpec:
    """
    One C{twinetd_listen} value.

    @param baseDir: the folder relative paths are relative to.
    @param tlsAvailable: whether pyOpenSSL and service_identity can be
        imported (an C{ssl:} listener needs them).
    @raise BadValue: what is wrong with it, for a person.
    """
    args, kwargs = tokenize(text)
    proxy = False
    if args and args[0] == "haproxy":
        proxy = True
        args = args[1:]
    if not args or not args[0]:
        raise BadValue(f"bad value for twinetd_listen: {text!r} (no endpoint type)")
    kind = args[0]
    if kind not in _KINDS:
        if kind == "haproxy":
            raise BadValue(f"bad value for twinetd_listen: {text!r} (haproxy: twice)")
        raise BadValue(
            f"bad value for twinetd_listen: {text!r} (unknown endpoint type "
            f"{kind!r}; expected {', '.join(sorted(_KINDS))}, optionally after "
            "haproxy:)"
        )
    positional, allowed, paths = _KINDS[kind]
    options = dict(kwargs)
    if len(options) != len(kwargs):
        raise BadValue(f"bad value for twinetd_listen: {text!r} (an option twice)")
    rest = args[1:]
    if positional is not None and positional in options:
        rest = [options.pop(positional), *rest]
    if len(rest) > (0 if positional is None else 1):
        raise BadValue(f"bad value for twinetd_listen: {text!r} (too many arguments)")
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise BadValue(
            f"bad value for twinetd_listen: {text!r} (unknown option "
            f"{unknown[0]!r} for {kind}:; expected {', '.join(sorted(allowed))})"
        )
    address = rest[0] if rest else ""
    for name in paths & options.keys():
        options[name] = _absolute(options[name], baseDir)
    if kind == "unix" and address:
        address = _absolute(address, baseDir)
    spec = ListenSpec(
        text=text,
        kind=kind,
        proxy=proxy,
        address=address,
        options=tuple(sorted(options.items())),
    )
    _check(spec)
    if kind == "ssl" and not tlsAvailable:
        raise BadValue(
            f"twinetd_listen {text!r}: ssl: listeners need pyOpenSSL and "
            f"service_identity, which this installation lacks: {TLS_EXTRA}"
        )
    return spec


def _absolute(path: str, baseDir: str) -> str:
    return os.path.abspath(os.path.join(baseDir, path))


def _check(spec: ListenSpec) -> None:
    text, kind = spec.text, spec.kind

    def bad(why: str) -> BadValue:
        return BadValue(f"bad value for twinetd_listen: {text!r} ({why})")

    isPort = re.fullmatch(r"[0-9]{1,5}", spec.address) is not None
    if kind in ("tcp", "tcp6", "ssl") and not (isPort and int(spec.address) < 65536):
        raise bad("expected a port from 0 to 65535")
    if kind == "unix" and not spec.address:
        raise bad("expected a socket path")
    backlog = spec.option("backlog")
    if backlog is not None and not re.fullmatch(r"[0-9]{1,6}", backlog):
        raise bad("backlog is a number")
    mode = spec.option("mode")
    if mode is not None and not re.fullmatch(r"0?[0-7]{1,4}", mode):
        raise bad("mode is an octal number such as 660")
    if kind == "ssl":
        if spec.option("privateKey") is None:
            raise bad("privateKey=FILE is needed")
        verify = spec.option("verifyClient")
        if verify is not None and verify not in ("optional", "require"):
            raise bad("verifyClient is optional or require")
        if verify is not None and spec.option("caCerts") is None:
            raise bad("verifyClient needs caCerts=FILE, the authorities to trust")
    if kind == "systemd":
        if spec.option("domain") not in ("INET", "INET6", "UNIX"):
            raise bad("domain=INET, INET6 or UNIX is needed")
        if (spec.option("index") is None) == (spec.option("name") is None):
            raise bad("exactly one of index=N and name=NAME is needed")
        index = spec.option("index")
        if index is not None and not re.fullmatch(r"[0-9]{1,4}", index):
            raise bad("index is a number")
    if spec.proxy and kind == "ssl":
        raise bad(
            "haproxy: over ssl: is not supported (a balancer sends its header "
            "before TLS; let it end TLS, or listen with ssl: alone)"
        )


#: One problem of a service's listeners: the field where it shows, the
#: attribute to name, the message and its severity.
ListenProblem = tuple[str, str, str, str]


def listenProblems(
    listen: tuple[ListenSpec, ...],
    proxyFrom: tuple[AddressRule, ...] | None,
    *,
    stream: bool,
    waits: bool,
    handoff: bool,
    written: frozenset[str],
) -> list[ListenProblem]:
    """
    What a service cannot do over its C{twinetd_listen} endpoints: a
    datagram or C{wait = yes} service listens on C{port}/C{bind}; a
    handed-off program needs a plain socket; a C{haproxy:} listener needs
    the balancers allowed to send a header; a UNIX-socket client has no
    address for the C{only_from}/C{no_access} written in the service
    (C{written}: the fields the service's own entry sets).
    """
    problems: list[ListenProblem] = []

    def problem(field: str, name: str, message: str, severity: str = "error") -> None:
        problems.append((field, name, message, severity))

    if listen and not stream:
        problem(
            "listen",
            "twinetd_listen",
            "twinetd_listen is for stream services; a datagram service listens "
            "on port and bind",
        )
    elif listen and waits:
        problem(
            "listen",
            "twinetd_listen",
            "twinetd_listen is for wait = no services (a wait = yes program "
            "accepts on the socket the daemon binds: use port and bind)",
        )
    for spec in listen:
        if handoff and not spec.plainSocket:
            why = "TLS" if spec.kind == "ssl" else "a PROXY header"
            problem(
                "handoff",
                "twinetd_mode",
                f"twinetd_mode = handoff needs a plain socket, and {spec.text} has "
                f"{why} the daemon reads first; use twinetd_mode = bridge",
            )
    if any(spec.proxy and not spec.unix for spec in listen) and proxyFrom is None:
        problem(
            "listen",
            "twinetd_listen",
            "haproxy: listeners need twinetd_proxy_from: the balancers allowed "
            "to send a PROXY header",
        )
    if proxyFrom is not None and not any(spec.proxy for spec in listen):
        problem(
            "proxyFrom",
            "twinetd_proxy_from",
            "twinetd_proxy_from has no effect without a haproxy: listener",
            "warning",
        )
    if any(spec.unix for spec in listen):
        for field, name in (("onlyFrom", "only_from"), ("noAccess", "no_access")):
            if field in written:
                problem(
                    field,
                    name,
                    f"{name} does not apply to a UNIX-socket client (it has no "
                    "address): the socket file's owner and mode decide",
                )
    return problems
