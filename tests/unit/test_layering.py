"""
The one-way data flow of DESIGN.md, checked on the source: each module
imports only modules above it in the flow, the sibling modes never import
each other, and only the twistd glue imports the global reactor.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "twinetd"

# Flow order, as groups: a module may import any module of an earlier
# group.  Inside a group of several modules, each may import the ones
# listed before it, except in SIBLINGS groups, whose modules never import
# each other.
CONFIG = (
    "config.parser",
    "config.lookups",
    "config.values",
    "config.endpoints",
    "config.attributes",
    "config.entry",
    "config.inetdconf",
    "config.loader",
    "config.builder",
    "config",
)

MODES = (
    "modes.bridge",
    "modes.handoff",
    "modes.internal",
    "modes.redirect",
    "modes.datagram",
)

ORDER: list[tuple[str, ...]] = [
    ("errors",),
    ("model",),
    ("_twistedcompat",),
    ("earlysignals",),
    CONFIG,
    ("policy.access", "policy.limits", "policy.backoff", "policy.gate"),
    ("launch",),
    (
        "logs.ident",
        "logs.events",
        "logs.xinetd",
        "logs.sinks",
        "logs.stderr",
        "logs.repeats",
        "logs.jsonlog",
        "logs.twistd",
        "logs.counters",
        "logs",
    ),
    ("status",),
    ("forkexec", "spawnerprocess"),
    ("spawn", "spawnclient"),
    ("child",),
    ("hangup",),
    ("relay.loop", "relay.descriptors", "relay.pipe", "relay"),
    MODES,
    (
        "listeners.sockets",
        "listeners.base",
        "listeners.front",
        "listeners.connections",
        "listeners.endpoints",
        "listeners.proxy",
        "listeners.stream",
        "listeners.waitstream",
        "listeners.datagram",
        "listeners.waitdatagram",
    ),
    ("sdnotify",),
    ("control",),
    ("service",),
    ("metrics",),
    ("testing.fakes", "testing.daemon", "testing.process", "testing"),
    ("tap", "cli", "testing._serve"),
    ("__main__",),
]

SIBLINGS = {
    ("tap", "cli", "testing._serve"),
    MODES,
}

# Modules that must stay free of Twisted's reactor machinery.
PURE = {
    "errors",
    "model",
    *CONFIG,
    "policy.access",
    "policy.limits",
    "policy.backoff",
    "launch",
    "listeners.sockets",
    "logs.counters",
    "status",
    "forkexec",
    "spawnerprocess",
}


# Modules another branch owns for now, whose header it adds.
HEADER_PENDING = {"spawn", "child", "modes.bridge"}

_HEADER = re.compile(r"# -\*- test-case-name: ([\w.,]+) -\*-")


def moduleName(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {moduleName(p): p for p in PACKAGE.rglob("*.py")}
    found.pop("", None)
    return found


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


def twinetdImports(path: Path, known: set[str]) -> set[str]:
    """
    The twinetd modules C{path} imports (the longest known module name of
    each imported name).
    """
    found = set()
    for name in importsOf(path):
        if not name.startswith("twinetd."):
            continue
        parts = name.split(".")[1:]
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in known:
                found.add(candidate)
                break
    return found


def allowedImports(name: str) -> set[str]:
    allowed: set[str] = set()
    for group in ORDER:
        if name in group:
            if group not in SIBLINGS:
                allowed.update(group[: group.index(name)])
            return allowed
        allowed.update(group)
    raise KeyError(name)


class LayeringTests(SynchronousTestCase):
    def test_everyModuleIsPlaced(self) -> None:
        placed = {name for group in ORDER for name in group}
        # Packages whose __init__ holds nothing are folders, not modules.
        unplaced = {
            name
            for name, path in modules().items()
            if name not in placed and path.read_text(encoding="utf-8").strip()
        }
        self.assertEqual(unplaced, set())

    def test_importsFollowTheFlow(self) -> None:
        found = modules()
        known = set(found)
        problems = []
        for name, path in sorted(found.items()):
            if not path.read_text(encoding="utf-8").strip():
                continue
            allowed = allowedImports(name)
            for target in sorted(twinetdImports(path, known) - {name}):
                if target not in allowed and not name.startswith(target + "."):
                    problems.append(f"{name} imports {target}")
        self.assertEqual(problems, [])

    def test_siblingModesDoNotImportEachOther(self) -> None:
        # Part of the flow rule above; stated on its own as DESIGN.md does.
        found = modules()
        for group in SIBLINGS:
            for name in group:
                imported = twinetdImports(found[name], set(found))
                self.assertEqual(imported & (set(group) - {name}), set(), name)

    def test_pureModulesDoNotImportTheReactor(self) -> None:
        found = modules()
        problems = []
        for name in sorted(PURE):
            for imported in importsOf(found[name]):
                if imported.startswith("twisted.internet"):
                    problems.append(f"{name} imports {imported}")
        self.assertEqual(problems, [])

    def test_spawnerProcessStandardLibraryOnly(self) -> None:
        """
        The spawner process (C{python -S -m twinetd.spawnerprocess}) imports
        the standard library and L{twinetd.forkexec} only: no Twisted, no
        site packages.
        """
        import sys

        found = modules()
        problems = []
        for name in ("spawnerprocess", "forkexec"):
            for imported in importsOf(found[name]):
                top = imported.split(".")[0]
                if top == "twinetd":
                    module = imported.removesuffix("." + imported.split(".")[-1])
                    if "twinetd.forkexec" not in (imported, module):
                        problems.append(f"{name} imports {imported}")
                elif top not in sys.stdlib_module_names and top != "__future__":
                    problems.append(f"{name} imports {imported}")
        self.assertEqual(problems, [])

    def test_onlyTapImportsTheGlobalReactor(self) -> None:
        problems = [
            name
            for name, path in sorted(modules().items())
            # The programs: twistd's plugin, the command, and the daemon
            # process of twinetd.testing.serveConfig.
            if name not in ("tap", "cli", "testing._serve")
            and "twisted.internet.reactor" in importsOf(path)
        ]
        self.assertEqual(problems, [])

    def test_privateTwistedOnlyInCompat(self) -> None:
        """
        Only L{twinetd._twistedcompat} imports a private Twisted name (a
        module or name starting with C{_} below C{twisted}).
        """
        problems = [
            f"{name} imports {imported}"
            for name, path in sorted(modules().items())
            if name != "_twistedcompat"
            for imported in sorted(importsOf(path))
            if imported.startswith("twisted.")
            and any(part.startswith("_") for part in imported.split("."))
        ]
        self.assertEqual(problems, [])

    def test_oneLoggerNamespacePerModule(self) -> None:
        """
        A module's own logger is C{Logger()}, named after the module (a
        log line says which module it came from); only a logger made for
        someone else's namespace passes one on.
        """
        problems = []
        for name, path in sorted(modules().items()):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", None) == "Logger"
                ):
                    continue
                arguments = [*node.args, *(k.value for k in node.keywords)]
                if any(isinstance(a, ast.Constant) for a in arguments):
                    problems.append(f"{name}:{node.lineno}")
        self.assertEqual(problems, [])

    def test_siblingImportNoticed(self) -> None:
        """
        The rule catches a mode importing another, in either import form.
        """
        self.assertNotIn("modes.bridge", allowedImports("modes.datagram"))
        self.assertNotIn("modes.datagram", allowedImports("modes.handoff"))
        known = set(modules())
        scratch = Path(self.mktemp())
        scratch.mkdir()
        for text in (
            "from twinetd.modes.datagram import MAX_REPLY\n",
            "from twinetd.modes import datagram\n",
            "import twinetd.modes.datagram\n",
        ):
            path = scratch / "mode.py"
            path.write_text(text)
            self.assertIn("modes.datagram", twinetdImports(path, known), text)


class HeaderTests(SynchronousTestCase):
    def test_testCaseNames(self) -> None:
        """
        Every module's first line names the tests that cover it (Twisted's
        C{test-case-name}), and those test modules exist.
        """
        problems = []
        for name, path in sorted(modules().items()):
            text = path.read_text(encoding="utf-8")
            if not text.strip() or name in HEADER_PENDING:
                continue
            match = _HEADER.fullmatch(text.splitlines()[0])
            if match is None:
                problems.append(f"{name}: no test-case-name header")
                continue
            for test in match.group(1).split(","):
                if not (ROOT / (test.replace(".", "/") + ".py")).exists():
                    problems.append(f"{name}: {test} does not exist")
        self.assertEqual(problems, [])
