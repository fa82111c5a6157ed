"""
Nothing given to the loader raises: every input ends as problems of the
form C{file:line: service: message} that skip only their service.

Named cases that raised before, then property-based fuzzing (hypothesis)
of text, bytes and include graphs, bounded in examples and time.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from twisted.trial.unittest import SynchronousTestCase

from twinetd.config import ATTRIBUTES, LoadResult, Lookups, loadPath, loadText
from twinetd.errors import Problem
from twinetd.model import ServiceConfig

TABLES = Lookups.fromTables(
    users={"root": (0, 0), "nobody": (65534, 65534)},
    groups={"root": 0, "nogroup": 65534},
    services={("echo", "tcp"): 7, ("echo", "udp"): 7},
    environ={"PATH": "/bin"},
)
SYSTEM = Lookups.system()

GOOD = """\
service good
{
 type = UNLISTED
 socket_type = stream
 wait = no
 user = root
 server = /bin/cat
 port = 20001
}
"""

# Hypothesis keeps caches (Unicode tables, constants) in a folder: not in
# the checkout.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "twinetd-hypothesis"))

# Deterministic in CI; no example database.
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def checkResult(test: SynchronousTestCase, result: LoadResult) -> None:
    """
    Only problems and records came out, each problem printable and none a
    caught internal error.
    """
    test.assertIsInstance(result, LoadResult)
    for problem in result.problems:
        test.assertIsInstance(problem, Problem)
        text = str(problem)
        test.assertTrue(text.isprintable(), text)
        test.assertNotIn("internal error", text)
    for record in result.services:
        test.assertIsInstance(record, ServiceConfig)


def service(name: str, body: str) -> str:
    return (
        f"service {name}\n{{\n type = UNLISTED\n socket_type = stream\n wait = no\n"
        f" server = /bin/cat\n port = 20000\n{body}}}\n"
    )


class NamedCasesTests(SynchronousTestCase):
    """
    Inputs that raised from C{loadText}/C{loadPath} before; each is now a
    problem for its service, and the good service beside it still loads.
    """

    def assertOnlyItsService(
        self, text: str, expected: str, lookups: Lookups = SYSTEM
    ) -> None:
        result = loadText(GOOD + text, "/etc/t/f.conf", lookups)
        checkResult(self, result)
        self.assertEqual([s.name for s in result.services], ["good"])
        self.assertEqual([str(p) for p in result.errors], [expected])

    def test_superscriptDigitUser(self) -> None:
        for lookups in (SYSTEM, TABLES):
            self.assertOnlyItsService(
                service("s", " user = \u00b2\n"),
                "/etc/t/f.conf:17: s: unknown user: \u00b2",
                lookups,
            )

    def test_superscriptDigitGroup(self) -> None:
        for lookups in (SYSTEM, TABLES):
            self.assertOnlyItsService(
                service("s", " user = root\n group = \u00b2\n"),
                "/etc/t/f.conf:18: s: unknown group: \u00b2",
                lookups,
            )

    def test_nulInUserAndGroup(self) -> None:
        self.assertOnlyItsService(
            service("s", " user = a\0b\n"),
            "/etc/t/f.conf:17: s: bad value for user: 'a\\x00b' contains a NUL byte",
        )
        self.assertOnlyItsService(
            service("s", " user = root\n group = a\0b\n"),
            "/etc/t/f.conf:18: s: bad value for group: 'a\\x00b' contains a NUL byte",
        )

    def test_nulInServiceNameWithoutPort(self) -> None:
        text = "service a\0b\n{\n socket_type = stream\n wait = no\n user = root\n}\n"
        self.assertOnlyItsService(
            text,
            "/etc/t/f.conf:10: a\\x00b: bad service name: 'a\\x00b' contains a "
            "NUL byte",
        )

    def test_undecodableServiceNameWithoutPort(self) -> None:
        """
        A byte that is not UTF-8 in a file is kept (as C{surrogateescape}
        does) and the services database simply does not know the name.
        """
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        with open(os.path.join(folder, "f"), "wb") as f:
            f.write(
                GOOD.encode()
                + b"service a\xffb\n{\n socket_type = stream\n wait = no\n"
                b" user = root\n server = /bin/cat\n}\n"
            )
        result = loadPath(folder, SYSTEM)
        checkResult(self, result)
        self.assertEqual([s.name for s in result.services], ["good"])
        self.assertEqual(
            [str(p) for p in result.errors],
            [
                f"{folder}/f:10: a\\udcffb: service a\\udcffb/tcp is not in the "
                "services database; add type = UNLISTED and a port"
            ],
        )

    def test_loneSurrogateInUser(self) -> None:
        self.assertOnlyItsService(
            service("s", " user = \ud800\n"),
            "/etc/t/f.conf:17: s: bad value for user: '\\ud800' is not valid text",
        )

    def test_loneSurrogateOrNulInIncludes(self) -> None:
        for line, reason in (
            (
                "includedir /tmp/\ud800",
                "folder /tmp/\\ud800: the path is not valid text",
            ),
            ("include /tmp/\ud800", "/tmp/\\ud800: the path is not valid text"),
            ("include /tmp/a\0b", "/tmp/a\\x00b: the path contains a NUL byte"),
            (
                "includedir /tmp/a\0b",
                "folder /tmp/a\\x00b: the path contains a NUL byte",
            ),
        ):
            result = loadText(GOOD + line + "\n", "/etc/t/f.conf", SYSTEM)
            checkResult(self, result)
            self.assertEqual([s.name for s in result.services], ["good"])
            self.assertEqual(
                [str(p) for p in result.errors],
                [f"/etc/t/f.conf:10: cannot read {reason}"],
            )

    def test_hugeNumber(self) -> None:
        """
        More digits than any limit needs is a bad value (Python would refuse
        to convert more than 4300).
        """
        for digits in (31, 5000):
            result = loadText(
                GOOD + service("s", f" user = root\n nice = {'9' * digits}\n"),
                "/etc/t/f.conf",
                TABLES,
            )
            checkResult(self, result)
            self.assertEqual([s.name for s in result.services], ["good"])
            [error] = result.errors
            self.assertTrue(str(error).endswith("(too large)"), str(error))


# Strategies: pieces of configuration, good and bad.

_ATTRIBUTE_NAMES = [*sorted(ATTRIBUTES), "include", "colour", "only_form", "USER"]
_GOOD_VALUES = [
    "yes",
    "no",
    "stream",
    "dgram",
    "raw",
    "tcp",
    "udp",
    "root",
    "nobody",
    "-",
    "0",
    "65535",
    "65536",
    "-1",
    "022",
    "UNLIMITED",
    "10K",
    "1M",
    "127.0.0.1",
    "::1",
    "10.0.{1,2}",
    "example.com",
    "/bin/cat",
    "relative/path",
    "A=1",
    "PATH",
    "SYSLOG",
    "FILE",
    "daemon",
    "INTERNAL",
    "UNLISTED",
    "NAMEINARGS",
    "SENSOR",
    "PID",
    "HOST",
    "TRAFFIC",
    "2:00-9:00",
    "FOREVER",
    "2-4",
    "handoff",
    "socket",
    "#",
    "{",
    "}",
]
_nasty = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()),
    max_size=12,
)
_value = st.one_of(
    st.sampled_from(_GOOD_VALUES),
    _nasty.filter(lambda v: v.strip(" \t\n") == v and v != ""),
    st.integers(-(10**40), 10**40).map(str),
)
_assignment = st.builds(
    lambda name, op, values: f" {name} {op} {' '.join(values)}",
    st.sampled_from(_ATTRIBUTE_NAMES),
    st.sampled_from(["=", "+=", "-=", "", "=="]),
    st.lists(_value, max_size=4),
)
_header = st.one_of(
    st.builds(
        lambda name: f"service {name}",
        st.one_of(st.sampled_from(["echo", "s", "t", "good"]), _nasty),
    ),
    st.just("defaults"),
    st.just("service"),
    st.builds(lambda path: f"include {path}", _nasty),
)
_line = st.one_of(
    _assignment,
    st.sampled_from(["{", "}", " }", "# comment", "", "\r", "service x {", "x=1"]),
    _nasty,
    st.integers(1000, 20000).map(lambda n: "x" * n),
)
_entry = st.builds(
    lambda header, opening, lines, closing: "\n".join(
        [header, *(["{"] if opening else []), *lines, *(["}"] if closing else [])]
    ),
    _header,
    st.booleans(),
    st.lists(_line, max_size=10),
    st.booleans(),
)
_text = st.lists(_entry, max_size=5).map(lambda entries: "\n".join(entries) + "\n")


class FuzzTests(SynchronousTestCase):
    """
    Property: whatever the input, only problems and records come out.
    """

    @settings(FUZZ, max_examples=500)
    @given(text=_text, system=st.booleans())
    def test_text(self, text: str, system: bool) -> None:
        checkResult(self, loadText(text, "/etc/t/f.conf", SYSTEM if system else TABLES))

    @FUZZ
    @given(data=st.binary(max_size=2000), good=st.booleans())
    def test_bytes(self, data: bytes, good: bool) -> None:
        folder = tempfile.mkdtemp()
        try:
            with open(os.path.join(folder, "f"), "wb") as f:
                f.write((GOOD.encode() if good else b"") + data)
            result = loadPath(folder, SYSTEM)
        finally:
            shutil.rmtree(folder)
        checkResult(self, result)
        if good:
            self.assertIn("good", [s.name for s in result.services])

    @settings(FUZZ, max_examples=150)
    @given(
        graph=st.lists(
            st.lists(
                st.tuples(
                    st.sampled_from(["include", "includedir", "includefile"]),
                    st.sampled_from(
                        ["a", "b", "c", "d", "sub", "sub/e", ".", "..", "x"]
                    ),
                ),
                max_size=4,
            ),
            min_size=5,
            max_size=5,
        ),
        root=st.sampled_from(["a", "b", "sub", "."]),
    )
    def test_includeGraph(self, graph: list[list[tuple[str, str]]], root: str) -> None:
        """
        Random includes among five files (two folders, cycles, missing
        files, the folder itself): only problems come out.
        """
        folder = tempfile.mkdtemp()
        try:
            os.mkdir(os.path.join(folder, "sub"))
            for index, (name, includes) in enumerate(
                zip(["a", "b", "c", "d", "sub/e"], graph, strict=True)
            ):
                lines = [f"{kind} {target}" for kind, target in includes]
                port = 20000 + index
                lines.append(service(f"s{index}", "").replace("20000", str(port)))
                with open(os.path.join(folder, name), "w") as f:
                    f.write("\n".join(lines))
            result = loadPath(os.path.join(folder, root), TABLES)
        finally:
            shutil.rmtree(folder)
        checkResult(self, result)
