"""
The one-way data flow of DESIGN.md, checked on the source: each module
imports only modules above it in the flow.
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

PACKAGE = Path(__file__).resolve().parents[2] / "twinetd"

# Flow order: a module may import twinetd modules that come before it.
ORDER = [
    "errors",
    "model",
    "parser",
    "config",
    "access",
    "limits",
    "launch",
    "listen",
    "logevents",
    "ident",
    "gate",
    "spawn",
    "child",
    "bridge",
    "handoff",
    "internal",
    "redirect",
    "dgram",
    "factory",
    "service",
    "testing",
    "tap",
]

# Modules that must stay free of Twisted's reactor machinery.
PURE = {"errors", "model", "parser", "config", "access", "limits", "launch", "listen"}


def importsOf(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


class LayeringTests(SynchronousTestCase):
    def test_everyModuleIsPlaced(self) -> None:
        modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
        self.assertEqual(modules - set(ORDER), set())

    def test_importsFollowTheFlow(self) -> None:
        problems = []
        for path in sorted(PACKAGE.glob("*.py")):
            name = path.stem
            if name == "__init__":
                continue
            allowed = set(ORDER[: ORDER.index(name)])
            for imported in importsOf(path):
                if not imported.startswith("twinetd."):
                    continue
                target = imported.split(".")[1]
                if target in ORDER and target not in allowed:
                    problems.append(f"{name} imports {target}")
        self.assertEqual(problems, [])

    def test_pureModulesDoNotImportTheReactor(self) -> None:
        problems = []
        for name in sorted(PURE):
            path = PACKAGE / f"{name}.py"
            if not path.exists():
                continue
            for imported in importsOf(path):
                if imported.startswith("twisted.internet"):
                    problems.append(f"{name} imports {imported}")
        self.assertEqual(problems, [])

    def test_onlyTapImportsTheGlobalReactor(self) -> None:
        problems = [
            path.stem
            for path in sorted(PACKAGE.glob("*.py"))
            if path.stem != "tap" and "twisted.internet.reactor" in importsOf(path)
        ]
        self.assertEqual(problems, [])
