"""The reconciler is pure: no network, database or file I/O, even through its imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sidecar.reconcile

RECONCILE = Path(sidecar.reconcile.__file__).resolve().parent

#: Modules sidecar.reconcile may import at run time (TYPE_CHECKING imports are not run).
ALLOWED = {
    "__future__", "array", "bisect", "collections", "collections.abc", "contextlib", "dataclasses",
    "datetime", "functools", "gc", "hashlib", "heapq", "itertools", "json", "operator", "re",
    "types", "typing",
    "sidecar.constants", "sidecar.cloudstack.models",
}


def test_importing_the_reconciler_loads_no_http_or_database_library() -> None:
    code = (
        "import sys, sidecar.reconcile\n"
        "bad = [m for m in ('httpx', 'sqlmodel', 'sqlalchemy', 'requests', 'socket', 'ssl')"
        " if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == ""


def _runtime_imports(tree: ast.Module) -> set[str]:
    """Modules imported outside ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for orelse in node.orelse:
                visit(orelse)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_every_reconciler_module_imports_only_pure_modules() -> None:
    sources = sorted(RECONCILE.rglob("*.py"))
    assert len(sources) >= 6
    for source in sources:
        imports = _runtime_imports(ast.parse(source.read_text(encoding="utf-8")))
        foreign = {m for m in imports if not m.startswith("sidecar.reconcile")} - ALLOWED
        assert not foreign, f"{source.name} imports {sorted(foreign)}"


def test_no_reconciler_module_opens_files_or_reads_the_clock() -> None:
    for source in sorted(RECONCILE.rglob("*.py")):
        text = source.read_text(encoding="utf-8")
        for call in ("open(", "datetime.now(", "time.time(", "date.today("):
            assert call not in text, f"{source.name} calls {call}"
