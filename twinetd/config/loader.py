# -*- test-case-name: tests.unit.test_config -*-
"""
Files and folders to sections: what C{include}, C{includefile} and
C{includedir} read, in which order, and where each section came from.

Meaning is the builder's job (L{twinetd.config.builder}); this module reads
text and parses it.
"""

from __future__ import annotations

import os
import stat

import attrs

from twinetd.config.parser import Include, Section, parse
from twinetd.errors import Problem, SourceLocation

#: A sort key: problems and sections sort in file order, an included file's
#: at the place of its include.
Key = tuple[int, ...]


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
    """

    def __init__(self) -> None:
        self.problems = Problems()
        self.sections: list[Located] = []
        self.dropped: list[str] = []

    def problem(
        self,
        key: Key,
        location: SourceLocation,
        message: str,
        severity: str = "error",
    ) -> None:
        self.problems.add(key, Problem(location, None, message, None, severity))

    def loadText(
        self,
        text: str,
        filename: str,
        baseDir: str,
        prefix: Key,
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

    def loadFile(
        self,
        path: str,
        prefix: Key,
        stack: tuple[str, ...],
        where: tuple[Key, SourceLocation] | None,
    ) -> None:
        try:
            real = os.path.realpath(path)
        except ValueError:
            real = path
        if real in stack:
            key, location = where or (prefix, SourceLocation(path))
            self.problem(key, location, f"include cycle: {path} includes itself")
            return
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", errors="surrogateescape")
        except (OSError, ValueError) as e:
            key, location = where or (prefix, SourceLocation(path))
            self.problem(key, location, f"cannot read {path}: {_reason(e)}")
            return
        self.loadText(text, path, os.path.dirname(path), prefix, (*stack, real))

    def loadDirectory(
        self,
        path: str,
        prefix: Key,
        stack: tuple[str, ...],
        where: tuple[Key, SourceLocation] | None,
    ) -> None:
        key, location = where or (prefix, SourceLocation(path))
        try:
            names = os.listdir(path)
        except (OSError, ValueError) as e:
            self.problem(key, location, f"cannot read folder {path}: {_reason(e)}")
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
            except (OSError, ValueError) as e:
                self.problem(key, location, f"cannot read {child}: {_reason(e)}")
                continue
            if not stat.S_ISREG(mode):
                self.problem(
                    key,
                    location,
                    f"{child} is not a regular file; skipped",
                    severity="warning",
                )
                continue
            self.loadFile(child, (*prefix, index), stack, where)

    def include(
        self, item: Include, baseDir: str, key: Key, stack: tuple[str, ...]
    ) -> None:
        path = os.path.join(baseDir, item.path)
        where = (key, item.location)
        if item.kind == "includedir":
            self.loadDirectory(path, key, stack, where)
        else:
            self.loadFile(path, key, stack, where)

    def loadPath(self, path: str) -> None:
        """
        Read a file, or a folder as C{includedir} reads one.
        """
        if os.path.isdir(path):
            self.loadDirectory(path, (), (), None)
        else:
            self.loadFile(path, (), (), None)


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
