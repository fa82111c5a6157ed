# -*- test-case-name: tests.unit.test_config -*-
"""
Sections to records: C{defaults} applied, every attribute converted through
the table in L{twinetd.config.attributes}, each service checked in named
steps, duplicates refused.  A broken service is left out with its problems;
every other one still loads.
"""

from __future__ import annotations

from typing import Any

import attrs

from twinetd.config import attributes
from twinetd.config.attributes import (
    ATTRIBUTES,
    DAEMON_USER,
    RLIMIT_ORDER,
    Context,
    rlimitField,
)
from twinetd.config.endpoints import listenProblems
from twinetd.config.entry import EntryReader, checkText
from twinetd.config.loader import Key, Loader, Located
from twinetd.config.lookups import Lookups, UserEntry
from twinetd.config.values import BadValue
from twinetd.errors import Problem, SourceLocation
from twinetd.model import INTERNAL_SERVICES, ServiceConfig, SocketType

_RECORD_FIELDS = frozenset(attrs.fields_dict(ServiceConfig))


@attrs.frozen
class LoadResult:
    """
    What a load produced.

    @ivar services: the services that can run, in file order.
    @ivar problems: errors and warnings, in file order.
    @ivar disabledIds: ids of services left out on purpose (C{disable = yes},
        or not admitted by C{defaults}' C{enabled}/C{disabled}).
    @ivar skippedNames: names of services left out because of errors.
    @ivar failed: the services left out because of errors whose id is
        known, each with its first error: a reload keeps serving the
        previous definition of such a service.
    @ivar unreadable: the problems (among C{problems}) that kept the
        configuration file or folder itself from being read at all: there
        is no configuration to serve, not even an empty one.
    """

    services: tuple[ServiceConfig, ...]
    problems: tuple[Problem, ...]
    disabledIds: tuple[str, ...] = ()
    skippedNames: tuple[str, ...] = ()
    unreadable: tuple[Problem, ...] = ()
    failed: tuple[tuple[str, Problem], ...] = ()

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


@attrs.define
class _Defaults:
    """
    The C{defaults} entry, converted: single values by field, and the
    cumulative ones (C{=} means C{+=} there).
    """

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

    def __init__(self, builder: _Builder, located: Located, defaults: _Defaults):
        self.lookups = builder.lookups
        self.problems = builder.loader.problems
        self.located = located
        self.section = located.section
        self.header = located.section.location
        self.defaults = defaults
        self.pending: list[tuple[Key, Problem]] = []
        self.broken = False
        self.serviceId = located.section.name
        self.values: dict[str, Any] = {}
        lists = dict(defaults.lists)
        lists.pop("enabled", None)
        lists.pop("disabled", None)
        self.reader = EntryReader(
            Context(self.lookups, located.baseDir),
            inDefaults=False,
            report=self.report,
            scalars=self.values,
            lists=lists,
        )

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

    def build(self) -> ServiceConfig | str | None:
        """
        The record; the service's id when it is disabled; C{None} when it
        is broken.  Problems are kept only for services not disabled.
        """
        self.checkName()
        self.reader.read(self.section.assignments)
        self.values.update(self.reader.lists)
        serviceId = self.serviceId = str(self.values.get("id", self.section.name))
        if self.values.get("disable") is True:
            return serviceId
        if not self.broken and not self.isEnabled(serviceId):
            return serviceId
        config = None if self.broken else self.check()
        for key, problem in self.pending:
            self.problems.add(key, problem)
        return None if self.broken else config

    def checkName(self) -> None:
        try:
            checkText(self.section.name, "bad service name")
        except BadValue as e:
            self.report(self.header, str(e))

    def isEnabled(self, serviceId: str) -> bool:
        """
        Whether C{defaults}' C{enabled} and C{disabled} admit the service.
        """
        enabled = self.defaults.enabled
        return (enabled is None or serviceId in enabled) and (
            serviceId not in self.defaults.disabled
        )

    def check(self) -> ServiceConfig | None:
        for field, value in self.defaults.scalars.items():
            self.values.setdefault(field, value)
        derived = _ServiceChecks(self).run()
        if self.broken or derived is None:
            return None
        return self.record(**derived)

    def record(self, **derived: Any) -> ServiceConfig:
        """
        The record: every table field this service has a value for, then
        what the steps derived.
        """
        fields: dict[str, Any] = {}
        for spec in ATTRIBUTES.values():
            if spec.field in _RECORD_FIELDS and spec.field in self.values:
                fields[spec.field] = spec.toRecord(self.values[spec.field])
        fields["rlimits"] = tuple(
            (name, self.values[rlimitField(name)])
            for name in RLIMIT_ORDER
            if rlimitField(name) in self.values
        )
        fields.update(derived)
        return ServiceConfig(name=self.section.name, source=self.header, **fields)


class _ServiceChecks:
    """
    The named steps that check one service's values, in the order L{run}
    takes them; each reports through the service and returns what it
    derives for the record.
    """

    def __init__(self, service: _ServiceBuilder) -> None:
        self.values = service.values
        self.lookups = service.lookups
        self.name = service.section.name
        self.header = service.header
        self.lines = service.reader.lines
        self.report = service.report
        self.types: frozenset[str] = self.values.get("types", frozenset())
        self.flags: frozenset[str] = self.values.get("flags", frozenset())

    def line(self, field: str) -> SourceLocation:
        """
        Where C{field} was set, or the service's header line.
        """
        return self.lines.get(field, self.header)

    def run(self) -> dict[str, Any] | None:
        """
        The fields the steps derive, or C{None} when the service cannot run.
        """
        socketType, protocol = self.socketAndProtocol()
        self.checkMissing(socketType)
        self.checkKind(socketType)
        self.checkFlagsAndLogs()
        self.checkListen(socketType)
        port = self.findPort(protocol)
        credentials = self.credentials()
        self.checkFiles()
        if socketType is None or port is None:
            return None
        return dict(
            socketType=socketType, protocol=protocol or "tcp", port=port, **credentials
        )

    def socketAndProtocol(self) -> tuple[SocketType | None, str | None]:
        """
        Each from the other when only one is given (xinetd's confparse.c),
        and they must agree.
        """
        socketType: SocketType | None = self.values.get("socketType")
        protocol: str | None = self.values.get("protocol")
        if protocol is None and socketType is not None:
            protocol = {SocketType.STREAM: "tcp", SocketType.DGRAM: "udp"}.get(
                socketType
            )
        if socketType is None and protocol is not None:
            socketType = SocketType.STREAM if protocol == "tcp" else SocketType.DGRAM
        if (socketType, protocol) in (
            (SocketType.STREAM, "udp"),
            (SocketType.DGRAM, "tcp"),
        ):
            assert socketType is not None
            self.report(
                self.line("protocol"),
                f"protocol {protocol} does not go with socket_type {socketType.value}",
                "protocol",
            )
        return socketType, protocol

    def checkMissing(self, socketType: SocketType | None) -> None:
        internal = "INTERNAL" in self.types or "SENSOR" in self.flags
        redirect = "redirect" in self.values
        missing = []
        if socketType is None:
            missing.append("socket_type")
        if "wait" not in self.values:
            missing.append("wait")
        if not internal and "userEntry" not in self.values and self.lookups.euid == 0:
            missing.append("user")
        if not internal and not redirect and "server" not in self.values:
            missing.append("server")
        for name in missing:
            self.report(self.header, f"missing attribute {name}", name)

    def checkKind(self, socketType: SocketType | None) -> None:
        """
        Kinds of service the runtime cannot run, and internal services that
        do not exist.
        """
        if socketType in attributes.UNSUPPORTED_SOCKET_TYPES:
            assert socketType is not None
            self.report(
                self.line("socketType"),
                f"socket_type {socketType.value} is not supported yet",
                "socket_type",
            )
        # xinetd picks the builtin by service name and socket type (SENSOR
        # services are always its sensor).
        if (
            "INTERNAL" in self.types
            and socketType in (SocketType.STREAM, SocketType.DGRAM)
            and "SENSOR" not in self.flags
            and self.name not in INTERNAL_SERVICES
        ):
            assert socketType is not None
            self.report(
                self.line("types"),
                f"no such internal service: {self.name}/{socketType.value}",
                "type",
            )
        for kind in sorted(self.types & attributes.UNSUPPORTED_TYPES):
            self.report(self.line("types"), f"type {kind} is not supported yet", "type")

    def checkFlagsAndLogs(self) -> None:
        if "NAMEINARGS" in self.flags and "serverArgs" not in self.values:
            self.report(
                self.line("flags"),
                "flag NAMEINARGS needs server_args (whose first word is argv[0])",
                "flags",
            )
        if (
            "TRAFFIC" in self.values.get("logOnSuccess", ())
            and "redirect" not in self.values
        ):
            self.report(
                self.line("logOnSuccess"),
                "log_on_success TRAFFIC is only for redirected services",
                "log_on_success",
            )

    def checkListen(self, socketType: SocketType | None) -> None:
        """
        What each kind of service supports over C{twinetd_listen}'s
        endpoints, and the PROXY header's balancers
        (L{twinetd.config.endpoints.listenProblems}).
        """
        problems = listenProblems(
            self.values.get("listen", ()),
            self.values.get("proxyFrom"),
            stream=socketType is not SocketType.DGRAM,
            waits=self.values.get("wait") is True
            and "INTERNAL" not in self.types
            and "SENSOR" not in self.flags,
            handoff=self.values.get("handoff") is True,
            written=frozenset(self.lines),
        )
        for field, attribute, message, severity in problems:
            self.report(self.line(field), message, attribute, severity)

    def findPort(self, protocol: str | None) -> int | None:
        """
        The port, as xinetd's service_fill and check_entry find it.  A
        service that listens on C{twinetd_listen}'s endpoints needs none.
        """
        given: int | None = self.values.get("port")
        name = self.name
        if self.values.get("listen"):
            known = self.lookups.servicePort(name, protocol or "tcp")
            return given if given is not None else (known or 0)
        if self.types & {"RPC", "TCPMUX", "TCPMUXPLUS"}:
            return given if given is not None else 0
        if "UNLISTED" in self.types:
            if given is None:
                self.report(
                    self.header,
                    "missing attribute port (needed by type UNLISTED)",
                    "port",
                )
            return given
        if protocol is None:
            return None
        known = self.lookups.servicePort(name, protocol)
        if known is None:
            self.report(
                self.line("port"),
                f"service {name}/{protocol} is not in the services database; "
                "add type = UNLISTED and a port",
                "port",
            )
            return None
        if given is not None and given != known:
            self.report(
                self.line("port"),
                f"port {given} disagrees with the services database "
                f"({name}/{protocol} is port {known})",
                "port",
            )
            return None
        return known

    def credentials(self) -> dict[str, Any]:
        """
        C{user}, C{uid} and C{gid} for the record: the daemon's own when
        C{user} is absent or C{-}; C{group} wins over the user's group.
        """
        user: UserEntry | None = self.values.get("userEntry")
        uid = gid = None
        if user is not None and user.name == DAEMON_USER:
            user = None
        elif user is not None:
            uid, gid = user.uid, user.gid
            if self.lookups.euid != 0 and user.uid != self.lookups.euid:
                self.report(
                    self.line("userEntry"),
                    f"user {user.name} differs from the daemon's user; "
                    "run as root to switch users",
                    "user",
                )
        if "gid" in self.values:
            gid = self.values["gid"]
        return {"user": user.name if user else None, "uid": uid, "gid": gid}

    def checkFiles(self) -> None:
        """
        Warn about a server or banner that is not there yet: it is looked
        for again at each connection.
        """
        server: str | None = self.values.get("server")
        if server is not None and not self.lookups.isExecutable(server):
            self.report(
                self.line("server"),
                f"server {server} does not exist or is not executable",
                "server",
                "warning",
            )
        for spec in (
            ATTRIBUTES[n] for n in ("banner", "banner_success", "banner_fail")
        ):
            path = self.values.get(spec.field)
            if path is not None and not self.lookups.isReadable(path):
                self.report(
                    self.line(spec.field),
                    f"{spec.name} {path} cannot be read; nothing is sent until it can",
                    spec.name,
                    "warning",
                )


class _Builder:
    """
    Every section a L{Loader} read, to a L{LoadResult}.
    """

    def __init__(self, loader: Loader, lookups: Lookups) -> None:
        self.loader = loader
        self.lookups = lookups
        self.defaults = _Defaults()
        self.services: list[ServiceConfig] = []
        self.disabled: list[str] = []
        self.skipped: list[str] = list(loader.dropped)
        self.failed: list[tuple[str, Problem]] = []
        self.byId: dict[str, ServiceConfig] = {}
        self.byAddress: dict[tuple[int, str, str], ServiceConfig] = {}

    def build(self) -> LoadResult:
        sections = self.loader.sections
        for located in sections:
            if located.section.kind == "defaults":
                self.readDefaults(located)
        for located in sections:
            if located.section.kind == "service":
                self.addService(located)
        problems = self.loader.problems.sorted()
        for name in self.loader.dropped:
            # A syntax error: the service's id is its name.
            first = next((p for p in problems if p.isError and p.service == name), None)
            if first is not None:
                self.failed.append((name, first))
        return LoadResult(
            tuple(self.services),
            problems,
            tuple(self.disabled),
            tuple(self.skipped),
            tuple(self.loader.unreadable),
            tuple(self.failed),
        )

    def readDefaults(self, located: Located) -> None:
        def report(
            location: SourceLocation,
            message: str,
            attribute: str | None,
            severity: str,
        ) -> None:
            self.loader.problems.add(
                located.key(location.line),
                Problem(location, "defaults", message, attribute, severity),
            )

        reader = EntryReader(
            Context(self.lookups, located.baseDir),
            inDefaults=True,
            report=report,
            scalars=self.defaults.scalars,
            lists=self.defaults.lists,
        )
        reader.read(located.section.assignments)

    def addService(self, located: Located) -> None:
        section = located.section
        builder = _ServiceBuilder(self, located, self.defaults)
        try:
            outcome = builder.build()
        except Exception as e:
            # A bug, not the configuration's fault: lose this service only.
            self.loader.problems.add(
                located.key(section.location.line),
                Problem(
                    section.location,
                    section.name,
                    f"internal error while reading this service ({e!r}); skipped; "
                    "please report it",
                ),
            )
            self.skipped.append(section.name)
            return
        if isinstance(outcome, str):
            self.disabled.append(outcome)
            return
        if outcome is None:
            self.skipped.append(section.name)
            first = next((p for _, p in builder.pending if p.isError), None)
            if first is not None:
                self.failed.append((builder.serviceId, first))
            return
        clash = self.clash(outcome)
        if clash is not None:
            message, attribute = clash
            self.loader.problems.add(
                located.key(section.location.line),
                Problem(section.location, section.name, message, attribute),
            )
            self.skipped.append(section.name)
            return
        self.byId[outcome.id] = outcome
        for address in _addresses(outcome):
            self.byAddress[address] = outcome
        self.services.append(outcome)

    def clash(self, config: ServiceConfig) -> tuple[str, str] | None:
        """
        Why C{config} cannot run beside the services already built: the
        same id, or the same port, protocol and address.
        """
        first = self.byId.get(config.id)
        if first is not None:
            return (
                f"duplicate service id {config.id} (already used by the "
                f"service at {first.source}); skipped",
                "id",
            )
        others = [(a, self.byAddress.get(a)) for a in _addresses(config)]
        address, other = next(
            ((a, o) for a, o in others if o is not None), (None, None)
        )
        if other is not None and address is not None and address[1] == "listen":
            return (
                f"twinetd_listen {address[2]} is already used by service "
                f"{other.id} at {other.source}; skipped",
                "twinetd_listen",
            )
        if other is not None:
            return (
                f"port {config.port}/{config.protocol} is already used by "
                f"service {other.id} at {other.source}; skipped",
                "port",
            )
        return None


def _addresses(config: ServiceConfig) -> tuple[tuple[int, str, str], ...]:
    """
    The addresses a service listens on, as far as the configuration tells:
    C{bind}, else IPv4 (C{flags = IPv4}), IPv6 only (C{v6only}) or both.
    An IPv4 and an IPv6-only service may share a port.
    """
    if config.listen:
        # Its endpoints: two services on the same description clash.
        return tuple((0, "listen", spec.text) for spec in config.listen)
    if config.bind is not None:
        hosts: tuple[str, ...] = (config.bind,)
    elif "IPv4" in config.flags:
        hosts = ("0.0.0.0",)
    elif config.v6only:
        hosts = ("::",)
    else:
        hosts = ("0.0.0.0", "::")
    return tuple((config.port, config.protocol, host) for host in hosts)


def build(loader: Loader, lookups: Lookups) -> LoadResult:
    """
    The records of everything C{loader} read.
    """
    return _Builder(loader, lookups).build()
