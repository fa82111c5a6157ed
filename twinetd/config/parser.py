# -*- test-case-name: tests.unit.test_parser -*-
"""
The syntax of xinetd's configuration language, and nothing else.

L{parse} turns text into L{Section}s (C{service NAME} and C{defaults}
entries, each a tuple of L{Assignment}s) and L{Include} directives, with the
L{SourceLocation} of everything.  Meaning (which attributes exist, what their
values are) belongs to L{twinetd.config}.

The rules are those of xinetd 2.3.15 (C{parse.c}, C{parsesup.c}):

  - a line whose first non-blank character is C{#} is a comment; a C{#}
    anywhere else is an ordinary character, so C{port = 80 # http} has two
    values (xinetd then rejects the line; so do we);
  - keywords (C{service}, C{defaults}, C{include}, C{includedir}) are
    case-insensitive, and words after the name on those lines are ignored;
  - C{{} and C{}} must each be alone on their line;
  - an assignment is C{NAME OP VALUE...} with white space between NAME and
    OP (C{port=80} is an error, as in xinetd), OP one of C{=}, C{+=},
    C{-=}; values are split on spaces and tabs and may be absent.

Extensions: C{includefile FILE} is a synonym of xinetd's C{include FILE};
a C{\\r} before the end of a line is ignored (xinetd keeps it in the value).

Error recovery differs from xinetd's where xinetd would silently swallow the
next entry: a C{service}/C{defaults} line inside an unclosed entry ends the
broken entry and starts a new one.
"""

from __future__ import annotations

import re

import attrs

from twinetd.errors import Problem, SourceLocation

KEYWORDS = frozenset({"service", "defaults", "include", "includefile", "includedir"})
OPERATORS = ("=", "+=", "-=")

_VALUE_SEPARATORS = re.compile(r"[ \t]+")


@attrs.frozen
class Assignment:
    """
    One C{attribute OP value...} line.

    @ivar attribute: the attribute name as written.
    @ivar operator: C{"="}, C{"+="} or C{"-="}.
    @ivar values: the values, split on spaces and tabs.
    @ivar location: where the line is.
    """

    attribute: str
    operator: str
    values: tuple[str, ...]
    location: SourceLocation


@attrs.frozen
class Section:
    """
    A C{service NAME { ... }} or C{defaults { ... }} entry.

    @ivar kind: C{"service"} or C{"defaults"}.
    @ivar name: the service name; C{"defaults"} for the defaults entry.
    @ivar location: where the C{service}/C{defaults} line is.
    @ivar assignments: the entry's assignments, in order.
    """

    kind: str
    name: str
    location: SourceLocation
    assignments: tuple[Assignment, ...] = ()


@attrs.frozen
class Include:
    """
    An C{include FILE} (C{kind="include"}) or C{includedir DIR}
    (C{kind="includedir"}) directive; the path is as written.
    """

    kind: str
    path: str
    location: SourceLocation


@attrs.frozen
class ParseResult:
    """
    @ivar items: sections and includes in file order; broken entries are
        left out.
    @ivar problems: syntax errors, in file order.
    @ivar dropped: names of the C{service} entries left out because of
        syntax errors.
    """

    items: tuple[Section | Include, ...]
    problems: tuple[Problem, ...]
    dropped: tuple[str, ...] = ()


def _isBlankOrComment(line: str) -> bool:
    stripped = line.lstrip()
    return not stripped or stripped.startswith("#")


def _hasOnly(line: str, char: str) -> bool:
    return line.strip() == char


def splitValues(text: str) -> tuple[str, ...]:
    """
    Split values the way xinetd does: on runs of spaces and tabs.
    """
    return tuple(word for word in _VALUE_SEPARATORS.split(text) if word)


def _firstWord(line: str) -> str:
    words = splitValues(line.strip())
    return words[0].lower() if words else ""


class _Parser:
    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        self.lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        self.index = 0
        self.items: list[Section | Include] = []
        self.problems: list[Problem] = []

    def location(self, index: int) -> SourceLocation:
        return SourceLocation(self.filename, index + 1)

    def error(
        self,
        index: int,
        service: str | None,
        message: str,
        attribute: str | None = None,
    ) -> None:
        self.problems.append(
            Problem(self.location(index), service, message, attribute=attribute)
        )

    def nextLine(self) -> int | None:
        """
        The index of the next significant line, consumed; C{None} at the end.
        """
        while self.index < len(self.lines):
            index = self.index
            self.index += 1
            if not _isBlankOrComment(self.lines[index]):
                return index
        return None

    def peekLine(self) -> int | None:
        index = self.index
        while index < len(self.lines):
            if not _isBlankOrComment(self.lines[index]):
                return index
            index += 1
        return None

    def skipEntry(self) -> None:
        """
        Skip to the end of a broken entry: past the next line holding only
        C{}}, or up to (not past) the next top-level keyword line.
        """
        while True:
            index = self.peekLine()
            if index is None:
                self.index = len(self.lines)
                return
            line = self.lines[index]
            if _isKeywordLine(line):
                self.index = index
                return
            self.index = index + 1
            if _hasOnly(line, "}"):
                return

    def parse(self) -> ParseResult:
        while True:
            index = self.nextLine()
            if index is None:
                break
            self.topLevel(index)
        dropped: list[str] = []
        for problem in self.problems:
            name = problem.service
            if name not in (None, "defaults") and (not dropped or dropped[-1] != name):
                assert name is not None
                dropped.append(name)
        return ParseResult(tuple(self.items), tuple(self.problems), tuple(dropped))

    def topLevel(self, index: int) -> None:
        line = self.lines[index]
        words = splitValues(line.strip())
        keyword = words[0].lower()
        if keyword in ("include", "includefile", "includedir"):
            if len(words) < 2:
                self.error(index, None, f"{keyword} needs a path")
                return
            kind = "includedir" if keyword == "includedir" else "include"
            self.items.append(Include(kind, words[1], self.location(index)))
            return
        if keyword == "service":
            if len(words) < 2:
                self.error(index, None, "service name missing after 'service'")
                self.skipBody()
                return
            self.entry(index, "service", words[1], words[2:])
            return
        if keyword == "defaults":
            self.entry(index, "defaults", "defaults", words[1:])
            return
        self.error(
            index,
            None,
            "syntax error: expected 'service NAME', 'defaults', "
            f"'include FILE' or 'includedir DIR', not {line.strip()!r}",
        )
        self.skipEntry()

    def skipBody(self) -> None:
        """
        After a broken header: skip the entry's body if one follows.
        """
        index = self.peekLine()
        if index is not None and _hasOnly(self.lines[index], "{"):
            self.index = index + 1
            self.skipEntry()

    def entry(self, index: int, kind: str, name: str, rest: tuple[str, ...]) -> None:
        brace = self.peekLine()
        if brace is None or not _hasOnly(self.lines[brace], "{"):
            if rest and rest[0].startswith("{"):
                message = "'{' must be on a line of its own"
            else:
                message = f"missing '{{' on the line after '{kind}'"
            self.error(index, name, f"syntax error: {message}")
            self.skipEntry()
            return
        self.index = brace + 1
        assignments: list[Assignment] = []
        while True:
            lineIndex = self.nextLine()
            if lineIndex is None:
                self.error(index, name, "syntax error: missing '}' at end of file")
                return
            line = self.lines[lineIndex]
            if _hasOnly(line, "}"):
                break
            parsed = _parseAssignment(line)
            if isinstance(parsed, str):
                word = _firstWord(line)
                if word in ("service", "defaults") and _isKeywordLine(line):
                    self.error(
                        index,
                        name,
                        f"syntax error: missing '}}' before line {lineIndex + 1}",
                    )
                    self.index = lineIndex
                    return
                if line.strip().startswith("}"):
                    # xinetd drops the entry too ("Bad operator for attribute: }").
                    self.error(
                        lineIndex,
                        name,
                        "syntax error: '}' must be on a line of its own "
                        "('#' starts a comment only at the start of a line)",
                    )
                    return
                if _isKeywordLine(line):
                    parsed = f"{word} may not be used inside an entry"
                self.error(lineIndex, name, f"syntax error: {parsed}")
                self.skipEntry()
                return
            attribute, operator, values = parsed
            assignments.append(
                Assignment(attribute, operator, values, self.location(lineIndex))
            )
        self.items.append(Section(kind, name, self.location(index), tuple(assignments)))


def _parseAssignment(line: str) -> tuple[str, str, tuple[str, ...]] | str:
    """
    Split C{NAME OP VALUES}; a string describes a syntax error.
    """
    text = line.lstrip()
    match = re.match(r"[^\s=]*", text)
    assert match is not None
    name = match.group()
    rest = text[len(name) :]
    if rest.startswith("="):
        # xinetd: "Attribute %s needs a space before operator".
        shown = name.rstrip("+-")
        if not shown:
            return "attribute name missing before the operator"
        return f"a space is needed between attribute {shown} and its operator"
    rest = rest.lstrip()
    if not rest:
        return f"attribute {name} has no operator (expected =, += or -=)"
    for operator in ("+=", "-=", "="):
        if rest.startswith(operator):
            return name, operator, splitValues(rest[len(operator) :])
    return f"bad operator for attribute {name} (expected =, += or -=)"


def _isKeywordLine(line: str) -> bool:
    """
    Whether a line is a top-level directive rather than an assignment.
    """
    return _firstWord(line) in KEYWORDS and isinstance(_parseAssignment(line), str)


def parse(text: str, filename: str) -> ParseResult:
    """
    Parse one file's text.

    @param text: the file's content.
    @param filename: the name used in locations.
    """
    return _Parser(text, filename).parse()
