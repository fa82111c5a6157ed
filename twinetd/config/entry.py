# -*- test-case-name: tests.unit.test_config -*-
"""
One entry's assignments (a C{service}'s or C{defaults}') read through the
attribute table: each line looked up, checked (where it may be written,
operator, repetition, number of values, text) and converted, and the
values gathered by field.  What is wrong is reported line by line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twinetd.config import attributes
from twinetd.config.attributes import (
    ATTRIBUTES,
    AttributeSpec,
    Context,
    add,
    checkCount,
    didYouMean,
    hint,
    remove,
    unsupported,
)
from twinetd.config.parser import Assignment
from twinetd.config.values import BadValue
from twinetd.errors import SourceLocation

_INCLUDES = ("include", "includedir", "includefile")

#: How an entry reports a problem: location, message, attribute, severity.
Report = Callable[[SourceLocation, str, "str | None", str], None]


class EntryReader:
    """
    Reads the assignments of one entry (a service or C{defaults}) into
    values by field, reporting what is wrong with each line.

    In C{defaults} an error drops only its line (xinetd exits instead), and
    C{=} adds to a cumulative attribute.
    """

    def __init__(
        self,
        context: Context,
        inDefaults: bool,
        report: Report,
        scalars: dict[str, Any],
        lists: dict[str, tuple[Any, ...]],
    ) -> None:
        self.context = context
        self.inDefaults = inDefaults
        self.report = report
        self.scalars = scalars
        self.lists = lists
        self.lines: dict[str, SourceLocation] = {}
        self.warned: set[str] = set()

    def error(self, assignment: Assignment, message: str) -> None:
        if self.inDefaults:
            message += "; ignored"
        name = assignment.attribute.lower()
        self.report(assignment.location, message, name, "error")

    def warn(self, assignment: Assignment, message: str) -> None:
        name = assignment.attribute.lower()
        self.report(assignment.location, message, name, "warning")

    def read(self, assignments: tuple[Assignment, ...]) -> None:
        for assignment in assignments:
            spec = self.lookUp(assignment)
            if spec is None or not self.fits(spec, assignment):
                continue
            countError = checkCount(spec, assignment.values)
            if countError:
                self.error(assignment, countError)
                continue
            try:
                value = self.convert(spec, assignment)
            except BadValue as e:
                self.error(assignment, str(e) + hint(assignment.values))
                continue
            self.store(spec, assignment, value)
            self.warnUnsupported(spec, assignment, value)

    def lookUp(self, assignment: Assignment) -> AttributeSpec | None:
        name = assignment.attribute.lower()
        spec = ATTRIBUTES.get(name)
        place = "defaults" if self.inDefaults else "a service"
        if spec is None:
            if name in _INCLUDES:
                self.error(assignment, f"{name} may not be used inside {place}")
            else:
                self.error(
                    assignment,
                    f"unknown attribute {assignment.attribute}"
                    + didYouMean(name, list(ATTRIBUTES)),
                )
        elif self.inDefaults and not spec.inDefaults:
            self.error(assignment, f"attribute {name} is not allowed in defaults")
        elif not self.inDefaults and not spec.inService:
            self.error(assignment, f"attribute {name} is only allowed in defaults")
        else:
            return spec
        return None

    def fits(self, spec: AttributeSpec, assignment: Assignment) -> bool:
        """
        Whether the operator suits the attribute and a single-valued one is
        not set already.
        """
        operator = assignment.operator
        if operator != "=" and (
            not spec.isList or (spec.name == "env" and operator == "-=")
        ):
            self.error(
                assignment,
                f"operator {operator} cannot be used with attribute {spec.name}",
            )
            return False
        if not spec.isList and spec.field in self.lines:
            # As xinetd: the first value is kept.
            where = "in defaults" if self.inDefaults else "at line "
            if not self.inDefaults:
                where += str(self.lines[spec.field].line)
            self.warn(
                assignment,
                f"attribute {spec.name} is already set {where}; this line is ignored",
            )
            return False
        return True

    def convert(self, spec: AttributeSpec, assignment: Assignment) -> Any:
        for text in assignment.values:
            checkText(text, f"bad value for {spec.name}")
        value = spec.convert(self.context, assignment.values)
        if spec.name == "passenv":
            value = self.checkPassenv(assignment, value)
        return value

    def checkPassenv(
        self, assignment: Assignment, names: tuple[str, ...]
    ) -> tuple[str, ...]:
        kept = []
        for name in names:
            if name in self.context.lookups.environ:
                kept.append(name)
            else:
                # xinetd: "undefined environment variable", and drops it.
                self.warn(
                    assignment,
                    f"passenv: {name} is not in the daemon's environment; ignored",
                )
        return tuple(kept)

    def store(self, spec: AttributeSpec, assignment: Assignment, value: Any) -> None:
        field = spec.field
        self.lines.setdefault(field, assignment.location)
        if not spec.isList:
            self.scalars[field] = value
            return
        current = self.lists.get(field, ())
        if assignment.operator == "-=":
            self.lists[field] = remove(current, value)
        elif assignment.operator == "+=" or self.inDefaults:
            self.lists[field] = add(current, value)
        else:
            self.lists[field] = add((), value)

    def warnUnsupported(
        self, spec: AttributeSpec, assignment: Assignment, value: Any
    ) -> None:
        if spec.name == "flags":
            for flag in sorted(value & attributes.UNSUPPORTED_FLAGS):
                self.warn(
                    assignment,
                    f"flag {flag} is recognised but not supported yet; ignored",
                )
        unsupportedNow = spec.name in attributes.UNSUPPORTED_ATTRIBUTES
        if unsupportedNow and spec.name not in self.warned:
            self.warned.add(spec.name)
            self.warn(assignment, unsupported(spec.name))


def checkText(value: str, what: str) -> None:
    """
    Refuse what no program, path or name can hold: a NUL byte, or text that
    is not a file-system string (a lone surrogate given to L{loadText}).
    """
    if "\0" in value:
        raise BadValue(f"{what}: {value!r} contains a NUL byte")
    try:
        value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise BadValue(f"{what}: {value!r} is not valid text") from None
