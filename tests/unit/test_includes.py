"""
Tests for the bounds on includes in L{twinetd.config.loader}: each file and
folder read once per load, cycles reported where they close, a depth limit,
regular files only (a FIFO never blocks), size limits per file and per load.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

import pytest
from twisted.trial.unittest import SynchronousTestCase

from twinetd.config import LoadResult, Lookups, loader, loadPath, loadText

LOOKUPS = Lookups.fromTables(users={"root": (0, 0)})


def service(name: str, port: int) -> str:
    return (
        f"service {name}\n{{\n type = UNLISTED\n socket_type = stream\n wait = no\n"
        f" user = root\n server = /bin/cat\n port = {port}\n}}\n"
    )


class IncludeBoundsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder)

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.folder, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def messages(self, result: LoadResult) -> list[str]:
        return [str(p).replace(self.folder, "D") for p in result.problems]

    def test_longChain(self) -> None:
        """
        A chain of 600 included files (a RecursionError before) stops at
        the depth limit with one error at the include that goes too deep.
        """
        for index in range(600):
            self.write(
                f"f{index}", f"include f{index + 1}\n" + service(f"s{index}", index + 1)
            )
        result = loadPath(os.path.join(self.folder, "f0"), LOOKUPS)
        depth = loader.MAX_DEPTH
        self.assertEqual(len(result.services), depth)
        self.assertEqual(
            self.messages(result),
            [
                f"D/f{depth - 1}:1: includes nest more than {depth} deep; D/f{depth} "
                "is not read"
            ],
        )

    @pytest.mark.timeout(20)
    def test_device(self) -> None:
        """
        C{include /dev/zero} (read until memory ran out before) is refused
        without reading.
        """
        result = loadText("include /dev/zero\n", "/etc/t/f.conf", LOOKUPS)
        self.assertEqual(
            self.messages(result),
            ["/etc/t/f.conf:1: cannot read /dev/zero: not a regular file"],
        )

    @pytest.mark.timeout(20)
    def test_fifo(self) -> None:
        """
        A FIFO (which blocked the load, and a reload froze the daemon,
        until something wrote to it) is refused at once, included or named
        as the configuration itself.
        """
        fifo = os.path.join(self.folder, "fifo")
        os.mkfifo(fifo)
        main = self.write("main", "include fifo\n" + service("s", 1))
        result = loadPath(main, LOOKUPS)
        self.assertEqual([s.name for s in result.services], ["s"])
        self.assertEqual(
            self.messages(result), ["D/main:1: cannot read D/fifo: not a regular file"]
        )
        self.assertEqual(
            self.messages(loadPath(fifo, LOOKUPS)),
            ["D/fifo: cannot read D/fifo: not a regular file"],
        )

    def test_socket(self) -> None:
        path = os.path.join(self.folder, "sock")
        listener = socket.socket(socket.AF_UNIX)
        self.addCleanup(listener.close)
        listener.bind(path)
        result = loadText(f"include {path}\n", "/etc/t/f.conf", LOOKUPS)
        [problem] = self.messages(result)
        self.assertTrue(problem.startswith("/etc/t/f.conf:1: cannot read D/sock: "))

    @pytest.mark.timeout(60)
    def test_folderIncludingItself(self) -> None:
        """
        Seven files that each say C{includedir .} (7! = 5040 loads before):
        the folder is read once and each include is a cycle.
        """
        names = "abcdefg"
        for index, name in enumerate(names):
            self.write(name, "includedir .\n" + service(name, index + 1))
        result = loadPath(self.folder, LOOKUPS)
        self.assertEqual([s.name for s in result.services], list(names))
        self.assertEqual(
            self.messages(result),
            [f"D/{n}:1: include cycle: folder D/. includes itself" for n in names],
        )

    @pytest.mark.timeout(60)
    def test_includedTwice(self) -> None:
        """
        Each file includes the next twice (2^14 reads before): each is read
        once, and each second include is a warning (in file order: the
        deepest first, as it comes inside the first include of each).
        """
        depth = 14
        for index in range(depth):
            self.write(
                f"f{index}",
                f"include f{index + 1}\ninclude f{index + 1}\n"
                + service(f"s{index}", index + 1),
            )
        self.write(f"f{depth}", service(f"s{depth}", depth + 1))
        result = loadPath(os.path.join(self.folder, "f0"), LOOKUPS)
        self.assertEqual(len(result.services), depth + 1)
        self.assertEqual(
            self.messages(result),
            [
                f"D/f{i}:2: warning: D/f{i + 1} is already read; not read again"
                for i in reversed(range(depth))
            ],
        )

    def test_sameFileTwoNames(self) -> None:
        """
        A file is known by what it is, not by its name: a second path to it
        (a symbolic link) is not read again.
        """
        self.write("a", service("a", 1))
        os.symlink("a", os.path.join(self.folder, "link"))
        main = self.write("main", "include a\ninclude link\n")
        result = loadPath(main, LOOKUPS)
        self.assertEqual([s.name for s in result.services], ["a"])
        self.assertEqual(
            self.messages(result),
            ["D/main:2: warning: D/link is already read (as D/a); not read again"],
        )

    def test_fileSizeLimit(self) -> None:
        self.patch(loader, "MAX_FILE_SIZE", 300)
        self.write("big", service("big", 2) + "#" * 300 + "\n")
        main = self.write("main", service("s", 1) + "include big\n")
        result = loadPath(main, LOOKUPS)
        self.assertEqual([s.name for s in result.services], ["s"])
        self.assertEqual(
            self.messages(result),
            ["D/main:10: cannot read D/big: larger than 300 bytes"],
        )

    def test_loadSizeLimit(self) -> None:
        """
        The files of one load together stay under a limit: the file that
        would pass it is not read, the ones before it are.
        """
        self.patch(loader, "MAX_LOAD_SIZE", 300)
        sizes = []
        for index, name in enumerate("abc"):
            sizes.append(len(service(name, index + 1)))
            self.write(name, service(name, index + 1))
        self.assertLess(sizes[0] + sizes[1], 300)
        self.assertGreater(sum(sizes), 300)
        result = loadPath(self.folder, LOOKUPS)
        self.assertEqual([s.name for s in result.services], ["a", "b"])
        self.assertEqual(
            self.messages(result),
            [
                "D: cannot read D/c: the configuration would be larger than 300 "
                "bytes in all"
            ],
        )
