"""Layering: the engine is the core and never imports the web layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_no_engine_module_imports_web():
    offenders = {
        str(path.relative_to(ENGINE.parent)): sorted(
            m for m in imported_modules(path) if m == "web" or m.startswith("web.")
        )
        for path in ENGINE.rglob("*.py")
    }

    assert {k: v for k, v in offenders.items() if v} == {}


def test_loading_the_whole_engine_leaves_web_unloaded():
    code = (
        "import sys, engine.cli, engine.product, engine.serve, engine.worker; "
        "print(sorted(m for m in sys.modules if m == 'web' or m.startswith('web.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ENGINE.parent,
    )

    assert result.stdout.strip() == "[]"
