# -*- test-case-name: tests.unit.test_config -*-
"""
The meaning of xinetd's configuration: from files to L{ServiceConfig} records.

L{loadPath} reads a configuration file or folder (and what it includes),
L{loadText} reads configuration given as text; both return a L{LoadResult}:
the services that can run and every problem found, each rendered
C{file:line: service: message}.  A broken service is left out and every
other one still loads.  Everything about the system (users, groups, the
services database, the daemon's uid and environment, whether a program is
executable) comes from an injected L{Lookups}.

The layer, in the order data flows through it: C{parser} (syntax),
C{inetdconf} (inetd.conf lines as service sections), C{loader} (files,
folders, includes), C{attributes} (the one table of
attributes, with C{values} parsing what they hold), C{lookups} (the
system), C{builder} (sections to records).

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

Attributes the runtime does not implement are still parsed, validated and
stored, with one warning per place they are written; services of a kind it
cannot run are errors (see L{twinetd.config.attributes}).
"""

from __future__ import annotations

import os

from twinetd.config.attributes import ATTRIBUTES, AttributeSpec
from twinetd.config.builder import LoadResult, build
from twinetd.config.loader import Loader
from twinetd.config.lookups import Lookups, UserEntry
from twinetd.config.values import parseAddress

__all__ = [
    "ATTRIBUTES",
    "AttributeSpec",
    "LoadResult",
    "Lookups",
    "UserEntry",
    "loadPath",
    "loadText",
    "parseAddress",
]


def loadText(
    text: str,
    filename: str,
    lookups: Lookups | None = None,
    baseDir: str | None = None,
) -> LoadResult:
    """
    Load configuration given as text.

    @param filename: the name used in problems.
    @param lookups: the system's users, groups and services; by default
        this machine's (L{Lookups.system}).
    @param baseDir: the folder relative includes, servers and banners are
        resolved against; by default the folder of C{filename}, else the
        current directory.
    """
    loader = Loader()
    if baseDir is None:
        baseDir = os.path.dirname(filename) or os.getcwd()
    loader.loadText(text, filename, baseDir, ())
    return build(loader, lookups or Lookups.system())


def loadPath(
    path: str | None,
    lookups: Lookups | None = None,
    inetdConf: str | None = None,
) -> LoadResult:
    """
    Load a configuration file (an C{xinetd.conf} with C{defaults} and
    C{includedir} works as is) or a folder (read as xinetd's C{includedir}
    reads one), and an inetd.conf file.

    @param path: the xinetd configuration, or C{None} for none.
    @param lookups: the system's users, groups and services; by default
        this machine's (L{Lookups.system}).
    @param inetdConf: an inetd.conf file whose lines are services too
        (xinetd's C{-inetd_compat}), or C{None}.
    """
    if lookups is None:
        lookups = Lookups.system()
    loader = Loader()
    if path is not None:
        loader.loadPath(path)
    if inetdConf is not None:
        loader.loadInetdConf(inetdConf, lookups)
    return build(loader, lookups)
