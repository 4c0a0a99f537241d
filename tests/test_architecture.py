"""The layout's rules, read from the source: which wing may import which, and how big a module is.

Imports point one way (see the README's Architecture table): ``replies/`` needs nothing else of
ours, the policy and the engine build on it, the application-facing modules on the engine, the
command line on everything. Imports inside functions count; those under ``TYPE_CHECKING`` do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "smtp_resilience"
MAXIMUM_LINES = 400
MAXIMUM_TOP_LEVEL_MODULES = 8  # besides __init__ and __main__

# wing -> the wings it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "replies": set(),
    "report": {"replies"},
    "errors": {"replies", "report"},
    "policy": {"replies"},
    "engine": {"replies", "report", "errors", "policy"},
    "client": {"replies", "report", "errors", "policy", "engine"},
    "wrappers": {"replies", "report", "errors", "policy", "engine", "client"},
    "spool": {"replies", "report", "errors", "policy", "engine", "client"},
    "outbox": {"replies", "report", "errors", "policy", "engine", "client", "spool"},
    "ledger": {"replies", "report", "errors", "policy", "engine"},
    "celery": {"replies", "report", "errors", "policy", "engine", "client", "ledger"},
    "django": {
        "replies",
        "report",
        "errors",
        "policy",
        "engine",
        "client",
        "outbox",
        "spool",
        "celery",
    },
    "testing": {"replies"},
    "cli": {
        "replies",
        "report",
        "errors",
        "policy",
        "engine",
        "client",
        "testing",
        "outbox",
        "spool",
    },
    "__main__": {"cli"},
    "__init__": {"replies", "report", "errors", "policy", "engine", "client", "wrappers", "outbox"},
}


def wing_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def runtime_imports(tree: ast.AST) -> set[str]:
    """Our modules imported when the module runs (TYPE_CHECKING blocks left out)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name.startswith("smtp_resilience.")}


def target_wing(name: str) -> str:
    return name.split(".")[1]


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_point_one_way(path: Path) -> None:
    wing = wing_of(path)
    imported = {target_wing(name) for name in runtime_imports(ast.parse(path.read_text()))}
    forbidden = imported - ALLOWED[wing] - {wing}
    assert not forbidden, f"{wing} may not import {sorted(forbidden)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_is_over_the_size_limit(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAXIMUM_LINES


def test_every_wing_has_a_rule() -> None:
    assert {wing_of(path) for path in MODULES} <= set(ALLOWED)


def test_the_top_level_stays_small() -> None:
    top = [path for path in PACKAGE.glob("*.py") if path.stem not in ("__init__", "__main__")]
    assert len(top) <= MAXIMUM_TOP_LEVEL_MODULES, sorted(path.name for path in top)
