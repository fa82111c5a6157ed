# -*- test-case-name: tests.unit.test_config -*-
"""
Files and folders to sections: what C{include}, C{includefile} and
C{includedir} read, in which order, and where each section came from.

Meaning is the builder's job (L{twinetd.config.builder}); this module reads
text and parses it, within bounds, so that no configuration can make a load
(or a reload, in the reactor thread) slow, block or exhaust memory:

  - each file and each folder is read at most once per load: including one
    again is a warning, including one that is being read (a cycle) is an
    error at the including line;
  - includes nest at most L{MAX_DEPTH} deep;
  - only regular files are read: a FIFO, a device or a socket is an error,
    and a FIFO is opened without blocking (C{O_NONBLOCK}) and checked with
    C{fstat} before anything is read;
  - a file is at most L{MAX_FILE_SIZE} bytes, a whole load at most
    L{MAX_LOAD_SIZE}.
"""

from __future__ import annotations

import os
import stat

import attrs

from twinetd.config.inetdconf import parseInetdConf
from twinetd.config.lookups import Lookups
from twinetd.config.parser import Include, Section, parse
from twinetd.errors import Problem, SourceLocation

#: How deep includes may nest: files and folders being read at once.
MAX_DEPTH = 16
#: The largest configuration file read, in bytes.
MAX_FILE_SIZE = 1024 * 1024
#: The most bytes one load reads over all its files.
MAX_LOAD_SIZE = 16 * 1024 * 1024

# The sort key prefix of an inetd.conf: after every other file.
_AFTER_EVERYTHING = 2**62

#: A sort key: problems and sections sort in file order, an included file's
#: at the place of its include.
Key = tuple[int, ...]
# A file or folder: (device, inode).
_Identity = tuple[int, int]
# The files and folders being read, outermost first.
_Stack = tuple[_Identity, ...]
# Where to report a problem about a path: its sort key and location.
_Where = tuple[Key, SourceLocation]


class Problems:
    """
    Problems with a sort key that puts them in file order, included files
    at the place of their include.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[Key, int, Problem]] = []

    def add(self, key: Key, problem: Problem) -> None:
        self.entries.append((key, len(self.entries), problem))

    def sorted(self) -> tuple[Problem, ...]:
        return tuple(p for _, _, p in sorted(self.entries, key=lambda e: e[:2]))


@attrs.frozen
class Located:
    """
    A section with the folder of its file and its sort key prefix.
    """

    section: Section
    baseDir: str
    prefix: Key

    def key(self, line: int) -> Key:
        return (*self.prefix, line)


class Loader:
    """
    Reads configuration text, files and folders into L{Located} sections.

    @ivar problems: what went wrong, syntax errors included.
    @ivar sections: every section read, in reading order.
    @ivar dropped: names of services left out because of syntax errors.
    @ivar unreadable: the problems that kept a file or folder named by the
        caller (not by an include) from being read at all.
    """

    def __init__(self) -> None:
        self.problems = Problems()
        self.sections: list[Located] = []
        self.dropped: list[str] = []
        self.unreadable: list[Problem] = []
        # Files and folders read, by identity, with the path first read.
        self.seen: dict[_Identity, str] = {}
        self.size = 0

    def problem(self, where: _Where, message: str, severity: str = "error") -> None:
        key, location = where
        self.problems.add(key, Problem(location, None, message, None, severity))

    def loadText(
        self,
        text: str,
        filename: str,
        baseDir: str,
        prefix: Key,
        stack: _Stack = (),
    ) -> None:
        result = parse(text, filename)
        for problem in result.problems:
            self.problems.add((*prefix, problem.location.line), problem)
        self.dropped.extend(result.dropped)
        defaultsSeen: SourceLocation | None = None
        for item in result.items:
            key = (*prefix, item.location.line)
            if isinstance(item, Include):
                path = os.path.join(baseDir, item.path)
                where = (key, item.location)
                if item.kind == "includedir":
                    self.loadDirectory(path, key, stack, where)
                else:
                    self.loadFile(path, key, stack, where)
            elif item.kind == "defaults" and defaultsSeen is not None:
                self.problems.add(
                    key,
                    Problem(
                        item.location,
                        "defaults",
                        "only one defaults entry is allowed per file (the first "
                        f"is at {defaultsSeen}); this one is ignored",
                    ),
                )
            else:
                if item.kind == "defaults":
                    defaultsSeen = item.location
                self.sections.append(Located(item, baseDir, prefix))

    def admit(
        self, path: str, identity: _Identity, stack: _Stack, where: _Where, what: str
    ) -> bool:
        """
        Whether C{path} may be read now: not in a cycle, not read already,
        not nested too deep.
        """
        if identity in stack:
            self.problem(where, f"include cycle: {what}{path} includes itself")
        elif identity in self.seen:
            first = self.seen[identity]
            again = f" (as {first})" if first != path else ""
            self.problem(
                where,
                f"{what}{path} is already read{again}; not read again",
                "warning",
            )
        elif len(stack) >= MAX_DEPTH:
            self.problem(
                where,
                f"includes nest more than {MAX_DEPTH} deep; {what}{path} is not read",
            )
        else:
            self.seen[identity] = path
            return True
        return False

    def loadFile(self, path: str, prefix: Key, stack: _Stack, where: _Where) -> bool:
        """
        Read a file and what it includes; whether the file could be read.
        """
        got = self.readFile(path, stack, where)
        if got is None:
            return False
        text, identity = got
        self.loadText(text, path, os.path.dirname(path), prefix, (*stack, identity))
        return True

    def loadInetdConf(self, path: str, lookups: Lookups) -> None:
        """
        Read an inetd.conf file (xinetd's C{-inetd_compat}); its services
        come after those of every other file.
        """
        prefix = (_AFTER_EVERYTHING,)
        before = len(self.problems.entries)
        got = self.readFile(path, (), (prefix, SourceLocation(path)))
        if got is None:
            self.unreadable.extend(p for _, _, p in self.problems.entries[before:])
            return
        conf = parseInetdConf(got[0], path, lookups)
        for problem in conf.problems:
            self.problems.add((*prefix, problem.location.line), problem)
        self.dropped.extend(conf.dropped)
        baseDir = os.path.dirname(path)
        self.sections.extend(Located(s, baseDir, prefix) for s in conf.sections)

    def readFile(
        self, path: str, stack: _Stack, where: _Where
    ) -> tuple[str, _Identity] | None:
        """
        A regular file's text and identity, if it may be read now (see
        L{admit}) and is within the size limits; else C{None}, reported.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except (OSError, ValueError) as e:
            self.problem(where, f"cannot read {path}: {_reason(e)}")
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                self.problem(where, f"cannot read {path}: not a regular file")
                return None
            identity = (info.st_dev, info.st_ino)
            if not self.admit(path, identity, stack, where, ""):
                return None
            data = self.read(fd, path, where)
        finally:
            os.close(fd)
        if data is None:
            return None
        return data.decode("utf-8", errors="surrogateescape"), identity

    def read(self, fd: int, path: str, where: _Where) -> bytes | None:
        """
        The file's content, or C{None} (reported) when it is over a limit.
        """
        chunks = []
        size = 0
        try:
            while size <= MAX_FILE_SIZE:
                chunk = os.read(fd, MAX_FILE_SIZE + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as e:
            self.problem(where, f"cannot read {path}: {_reason(e)}")
            return None
        data = b"".join(chunks)
        if len(data) > MAX_FILE_SIZE:
            self.problem(
                where, f"cannot read {path}: larger than {MAX_FILE_SIZE} bytes"
            )
            return None
        if self.size + len(data) > MAX_LOAD_SIZE:
            self.problem(
                where,
                f"cannot read {path}: the configuration would be larger than "
                f"{MAX_LOAD_SIZE} bytes in all",
            )
            return None
        self.size += len(data)
        return data

    def loadDirectory(
        self, path: str, prefix: Key, stack: _Stack, where: _Where
    ) -> bool:
        """
        Read a folder's files; whether the folder could be read.
        """
        try:
            info = os.stat(path)
            names = os.listdir(path)
        except (OSError, ValueError) as e:
            self.problem(where, f"cannot read folder {path}: {_reason(e)}")
            return False
        identity = (info.st_dev, info.st_ino)
        if not self.admit(path, identity, stack, where, "folder "):
            return False
        # xinetd's includedir: C-locale order, skipping names with a dot or
        # ending with '~' (editor backups, package manager leftovers).
        names.sort(key=os.fsencode)
        for index, name in enumerate(names):
            if "." in name or name.endswith("~"):
                continue
            child = os.path.join(path, name)
            try:
                mode = os.stat(child).st_mode
            except (OSError, ValueError) as e:
                self.problem(where, f"cannot read {child}: {_reason(e)}")
                continue
            if not stat.S_ISREG(mode):
                self.problem(
                    where, f"{child} is not a regular file; skipped", "warning"
                )
                continue
            self.loadFile(child, (*prefix, index), (*stack, identity), where)
        return True

    def loadPath(self, path: str) -> None:
        """
        Read a file, or a folder as C{includedir} reads one.  When it cannot
        be read at all, the problems that say why are also in L{unreadable}.
        """
        where = ((), SourceLocation(path))
        before = len(self.problems.entries)
        if os.path.isdir(path):
            read = self.loadDirectory(path, (), (), where)
        else:
            read = self.loadFile(path, (), (), where)
        if not read:
            self.unreadable.extend(p for _, _, p in self.problems.entries[before:])


def _reason(error: OSError | ValueError) -> str:
    """
    Why a path cannot be read, for a person: the system's reason, or what
    is wrong with the path itself (a NUL byte, text that is no file name).
    """
    if isinstance(error, OSError):
        return str(error.strerror)
    if isinstance(error, UnicodeError):
        return "the path is not valid text"
    return "the path contains a NUL byte"
