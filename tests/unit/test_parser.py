"""
Tests for L{twinetd.config.parser}: xinetd's configuration syntax.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twinetd.config.parser import Assignment, Include, Section, parse
from twinetd.errors import SourceLocation


def messages(text: str) -> list[str]:
    return [str(p) for p in parse(text, "f.conf").problems]


class ParseTests(SynchronousTestCase):
    """
    Well-formed text becomes sections and includes with locations.
    """

    def test_service(self) -> None:
        """
        A service entry has its name, location and assignments; comment and
        blank lines are skipped; values split on spaces and tabs.
        """
        result = parse(
            "# comment\n\nservice echo\n{\n  port\t= 7\n\t# x\n"
            "  only_from +=\ta  b\n}\n",
            "f.conf",
        )
        self.assertEqual(result.problems, ())
        self.assertEqual(
            result.items,
            (
                Section(
                    "service",
                    "echo",
                    SourceLocation("f.conf", 3),
                    (
                        Assignment("port", "=", ("7",), SourceLocation("f.conf", 5)),
                        Assignment(
                            "only_from", "+=", ("a", "b"), SourceLocation("f.conf", 7)
                        ),
                    ),
                ),
            ),
        )

    def test_operators(self) -> None:
        """
        C{=}, C{+=} and C{-=} are recognised; values may be absent; C{port =5}
        (no space after the operator) is fine.
        """
        result = parse(
            "defaults\n{\n a = 1\n b += 2\n c -= 3\n d =\n e =5\n}\n", "f.conf"
        )
        section = result.items[0]
        assert isinstance(section, Section)
        self.assertEqual(section.kind, "defaults")
        self.assertEqual(
            [(a.attribute, a.operator, a.values) for a in section.assignments],
            [
                ("a", "=", ("1",)),
                ("b", "+=", ("2",)),
                ("c", "-=", ("3",)),
                ("d", "=", ()),
                ("e", "=", ("5",)),
            ],
        )

    def test_keywordsCaseInsensitive(self) -> None:
        """
        xinetd compares keywords with strcasecmp; words after the service
        name are ignored (so C{service x # comment} works).
        """
        result = parse("SERVICE x # comment\n{\n}\nIncludeDir d\n", "f.conf")
        self.assertEqual(result.problems, ())
        self.assertEqual(
            result.items,
            (
                Section("service", "x", SourceLocation("f.conf", 1)),
                Include("includedir", "d", SourceLocation("f.conf", 4)),
            ),
        )

    def test_includes(self) -> None:
        """
        C{include} (xinetd) and C{includefile} (twinetd) name a file,
        C{includedir} a folder.
        """
        result = parse("include a\nincludefile b\nincludedir c\n", "f.conf")
        self.assertEqual(
            [(i.kind, i.path) for i in result.items if isinstance(i, Include)],
            [("include", "a"), ("include", "b"), ("includedir", "c")],
        )

    def test_crlf(self) -> None:
        """
        A carriage return before the newline is ignored.
        """
        result = parse("service x\r\n{\r\n a = b\r\n}\r\n", "f.conf")
        section = result.items[0]
        assert isinstance(section, Section)
        self.assertEqual(section.assignments[0].values, ("b",))

    def test_hashInValues(self) -> None:
        """
        A C{#} after values is an ordinary value, as in xinetd.
        """
        result = parse("service x\n{\n port = 1 # one\n}\n", "f.conf")
        section = result.items[0]
        assert isinstance(section, Section)
        self.assertEqual(section.assignments[0].values, ("1", "#", "one"))


class SyntaxErrorTests(SynchronousTestCase):
    """
    What xinetd rejects is a syntax error at file:line; the broken entry is
    dropped and parsing goes on.
    """

    def test_braceOnServiceLine(self) -> None:
        result = parse("service a {\n x = 1\n}\nservice b\n{\n}\n", "f.conf")
        self.assertEqual(
            [str(p) for p in result.problems],
            ["f.conf:1: a: syntax error: '{' must be on a line of its own"],
        )
        self.assertEqual(
            [i.name for i in result.items if isinstance(i, Section)], ["b"]
        )
        self.assertEqual(result.dropped, ("a",))

    def test_missingBrace(self) -> None:
        self.assertEqual(
            messages("service a\n x = 1\n}\n"),
            ["f.conf:1: a: syntax error: missing '{' on the line after 'service'"],
        )

    def test_noSpaceBeforeOperator(self) -> None:
        self.assertEqual(
            messages("service a\n{\n port=1\n}\n"),
            [
                "f.conf:3: a: syntax error: a space is needed between attribute "
                "port and its operator"
            ],
        )
        self.assertEqual(
            messages("service a\n{\n port+= 1\n}\n"),
            [
                "f.conf:3: a: syntax error: a space is needed between attribute "
                "port and its operator"
            ],
        )

    def test_badOperator(self) -> None:
        self.assertEqual(
            messages("service a\n{\n port : 1\n}\n"),
            [
                "f.conf:3: a: syntax error: bad operator for attribute port "
                "(expected =, += or -=)"
            ],
        )

    def test_noOperator(self) -> None:
        self.assertEqual(
            messages("service a\n{\n port\n}\n"),
            [
                "f.conf:3: a: syntax error: attribute port has no operator "
                "(expected =, += or -=)"
            ],
        )

    def test_closingBraceWithComment(self) -> None:
        """
        xinetd drops an entry ending in C{} # end}.
        """
        result = parse("service a\n{\n x = 1\n} # end\nservice b\n{\n}\n", "f.conf")
        self.assertEqual(
            [str(p) for p in result.problems],
            [
                "f.conf:4: a: syntax error: '}' must be on a line of its own "
                "('#' starts a comment only at the start of a line)"
            ],
        )
        self.assertEqual(
            [i.name for i in result.items if isinstance(i, Section)], ["b"]
        )

    def test_missingClosingBraceAtEnd(self) -> None:
        self.assertEqual(
            messages("service a\n{\n x = 1\n"),
            ["f.conf:1: a: syntax error: missing '}' at end of file"],
        )

    def test_missingClosingBraceBeforeService(self) -> None:
        """
        The next C{service} line ends an unclosed entry, and that next
        service still loads.
        """
        result = parse("service a\n{\n x = 1\nservice b\n{\n}\n", "f.conf")
        self.assertEqual(
            [str(p) for p in result.problems],
            ["f.conf:1: a: syntax error: missing '}' before line 4"],
        )
        self.assertEqual(
            [i.name for i in result.items if isinstance(i, Section)], ["b"]
        )

    def test_includeInsideEntry(self) -> None:
        self.assertEqual(
            messages("service a\n{\n includedir /x\n}\n"),
            ["f.conf:3: a: syntax error: includedir may not be used inside an entry"],
        )

    def test_strayLine(self) -> None:
        """
        A line that is not a directive is an error; a block after it is
        skipped, and the next service loads.
        """
        result = parse("servce a\n{\n x = 1\n}\nservice b\n{\n}\n", "f.conf")
        self.assertEqual(
            [str(p) for p in result.problems],
            [
                "f.conf:1: syntax error: expected 'service NAME', 'defaults', "
                "'include FILE' or 'includedir DIR', not 'servce a'"
            ],
        )
        self.assertEqual(
            [i.name for i in result.items if isinstance(i, Section)], ["b"]
        )

    def test_serviceWithoutName(self) -> None:
        result = parse("service\n{\n x = 1\n}\nservice b\n{\n}\n", "f.conf")
        self.assertEqual(
            [str(p) for p in result.problems],
            ["f.conf:1: service name missing after 'service'"],
        )
        self.assertEqual(
            [i.name for i in result.items if isinstance(i, Section)], ["b"]
        )

    def test_includeWithoutPath(self) -> None:
        self.assertEqual(
            messages("includedir\n"), ["f.conf:1: includedir needs a path"]
        )
