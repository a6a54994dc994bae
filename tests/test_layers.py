"""The import rule: ``cli → ops → {cloudstack, ledger, reconcile} → model``, ``support`` below all
but ``model``, and a simulator that shares nothing with the sidecar but its constants.

Every import counts: module level, inside functions and under ``TYPE_CHECKING`` (a type-only
import in the wrong direction still ties a lower layer to a higher one).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Each layer's rank: a module may import its own layer and the layers of lower rank only.
#: Layers of equal rank are siblings and may not import each other.
RANKS = {
    "sidecar": 0,  # the package root holds only __version__
    "sidecar.model": 0,
    "sidecar.support": 1,
    "sidecar.cloudstack": 2,
    "sidecar.ledger": 2,
    "sidecar.clouddb": 2,
    "sidecar.reconcile": 2,
    "sidecar.ops": 3,
    "sidecar.cli": 4,
    "sidecar.__main__": 5,
}

#: The one sidecar module the simulator may use: a bug shared with the client would hide itself.
SIMULATOR_MAY_USE = frozenset({"sidecar.model.constants"})

#: Who may start the simulator: the ``demo`` and ``simulator`` commands.
SIMULATOR_USERS = ("sidecar.cli",)

#: Standard-library modules the pure reconciler may import at all.
PURE = frozenset({
    "__future__", "array", "bisect", "collections", "collections.abc", "contextlib",
    "dataclasses", "datetime", "functools", "hashlib", "heapq", "itertools", "json", "operator",
    "re", "types", "typing",
})

#: A module longer than this says why in its docstring (generated data is JSON, not Python).
MAX_LINES = 500
LONG_REASON = "Why this module is long:"


@dataclass(frozen=True)
class Import:
    """One import statement: who imports what, where, and whether a comment explains it."""

    module: str
    target: str
    line: int
    in_function: bool
    explained: bool


def layer_of(module: str) -> str | None:
    """The layer a sidecar module belongs to (the longest matching prefix of RANKS)."""
    best = None
    for name in RANKS:
        if (module == name or module.startswith(name + ".")) and (
            best is None or len(name) > len(best)
        ):
            best = name
    return best


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(module: str, source: str, *, is_package: bool = False) -> Iterator[Import]:
    """Every import in ``source``, with relative imports resolved against ``module``."""
    tree = ast.parse(source)
    lines = source.splitlines()
    package = module if is_package else module.rpartition(".")[0]

    def explained(node: ast.stmt) -> bool:
        own = lines[node.lineno - 1]
        before = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        return "#" in own or before.startswith("#")

    def visit(node: ast.AST, in_function: bool) -> Iterator[Import]:
        block_explained = False  # one comment explains a run of consecutive imports
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import | ast.ImportFrom):
                block_explained = block_explained or explained(child)
            else:
                block_explained = False
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, child.lineno, in_function, block_explained)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join([*base, *([child.module] if child.module else [])])
                else:
                    target = child.module or ""
                yield Import(module, target, child.lineno, in_function, block_explained)
            yield from visit(child, inner)

    yield from visit(tree, False)


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """What ``module`` imports against the rule, one line each."""
    found = []
    own = layer_of(module) if module.startswith("sidecar") else None
    for imp in imports_of(module, source, is_package=is_package):
        where = f"{module}:{imp.line} imports {imp.target}"
        first = imp.target.split(".")[0]
        if imp.in_function and first in ("sidecar", "cloudstack_simulator") and not imp.explained:
            found.append(f"{where} inside a function without a comment saying why")
        if module.startswith("cloudstack_simulator"):
            if first == "sidecar" and imp.target not in SIMULATOR_MAY_USE:
                found.append(f"{where}: the simulator may use only {sorted(SIMULATOR_MAY_USE)}")
            continue
        if own is None:
            continue
        if first == "cloudstack_simulator":
            if not module.startswith(SIMULATOR_USERS):
                found.append(f"{where}: only {SIMULATOR_USERS} may start the simulator")
            continue
        if own == "sidecar.reconcile" and first != "sidecar" and imp.target not in PURE:
            found.append(f"{where}: the reconciler is pure (standard library {sorted(PURE)})")
        if first != "sidecar":
            continue
        theirs = layer_of(imp.target)
        if theirs is None or theirs == own or imp.target == "sidecar":
            continue
        if RANKS[theirs] >= RANKS[own]:
            found.append(f"{where}: {own} may not import {theirs}")
    return found


def sources() -> Iterator[tuple[str, Path]]:
    for package in ("sidecar", "cloudstack_simulator"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue  # Alembic loads these itself
            yield module_name(path, ROOT), path


def test_every_module_of_the_distribution_follows_the_import_rule() -> None:
    found = [
        line
        for name, path in sources()
        for line in violations(name, path.read_text(encoding="utf-8"),
                               is_package=path.name == "__init__.py")
    ]
    assert not found, "\n".join(found)


def test_every_sidecar_module_belongs_to_a_layer() -> None:
    orphans = [name for name, _ in sources()
               if name.startswith("sidecar") and layer_of(name) in (None, "sidecar")
               and name != "sidecar"]
    assert not orphans, f"modules outside every layer: {orphans}"


@pytest.mark.parametrize(
    ("module", "source", "complaint"),
    [
        ("sidecar.model.bad", "from sidecar.ledger import Ledger\n",
         "sidecar.model may not import sidecar.ledger"),
        ("sidecar.support.bad", "import sidecar.ops.context\n",
         "sidecar.support may not import sidecar.ops"),
        ("sidecar.cloudstack.bad", "from sidecar.reconcile import build_plan\n",
         "sidecar.cloudstack may not import sidecar.reconcile"),
        ("sidecar.ledger.bad", "from ..cloudstack.client import CloudStackClient\n",
         "sidecar.ledger may not import sidecar.cloudstack"),
        ("sidecar.ops.bad", "from sidecar.cli.render import render_plan\n",
         "sidecar.ops may not import sidecar.cli"),
        ("sidecar.reconcile.bad", "import socket\n", "the reconciler is pure"),
        ("sidecar.reconcile.bad", "import gc\n", "the reconciler is pure"),
        ("sidecar.ops.bad", "from cloudstack_simulator import Simulator\n",
         "only ('sidecar.cli',) may start the simulator"),
        ("cloudstack_simulator.bad", "from sidecar.cloudstack.signing import sign\n",
         "the simulator may use only"),
        ("sidecar.ops.bad", "def f():\n    from sidecar.ledger import Ledger\n",
         "inside a function without a comment"),
        ("sidecar.model.bad",
         "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sidecar.ops import x\n",
         "sidecar.model may not import sidecar.ops"),
    ],
)
def test_a_forbidden_import_in_a_synthetic_module_is_caught(
    module: str, source: str, complaint: str
) -> None:
    found = violations(module, source)
    assert len(found) == 1 and complaint in found[0], found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("sidecar.cli.bad", "from sidecar.ops.cleanup import run_cleanup\n"),
        ("sidecar.ops.bad", "from sidecar.ledger.lease import claim_lease\n"),
        ("sidecar.reconcile.bad", "from sidecar.model.plan import Plan\nimport heapq\n"),
        ("sidecar.support.bad", "from sidecar.model.constants import MAX_PAGE_SIZE\n"),
        ("cloudstack_simulator.bad", "from sidecar.model.constants import MAX_PAGE_SIZE\n"),
        ("sidecar.cli.bad", "def f():\n    # the simulator is only for demos\n"
                            "    from cloudstack_simulator import Simulator\n"),
        ("sidecar.ledger.bad", "from . import schema\n"),
        ("sidecar.cli.bad", "def f():\n    # SQLAlchemy: not for --help\n"
                            "    from sidecar.ledger import Ledger\n"
                            "    from sidecar.ops.report import gather_plan\n"),
    ],
)
def test_an_allowed_import_in_a_synthetic_module_passes(module: str, source: str) -> None:
    assert violations(module, source) == []


def test_a_synthetic_module_written_into_a_tree_is_found_by_the_scan(tmp_path: Path) -> None:
    bad = tmp_path / "sidecar" / "model" / "leak.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from sidecar.cloudstack.client import CloudStackClient\n")
    found = violations(module_name(bad, tmp_path), bad.read_text())
    assert found == ["sidecar.model.leak:1 imports sidecar.cloudstack.client: "
                     "sidecar.model may not import sidecar.cloudstack"]


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


def test_no_reconciler_module_opens_files_or_reads_the_clock() -> None:
    for name, path in sources():
        if not name.startswith("sidecar.reconcile"):
            continue
        text = path.read_text(encoding="utf-8")
        for call in ("open(", "datetime.now(", "time.time(", "date.today("):
            assert call not in text, f"{path.name} calls {call}"


def test_a_module_over_500_lines_says_why_in_its_docstring() -> None:
    unexplained = []
    for name, path in sources():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if LONG_REASON not in doc:
                unexplained.append(f"{name} ({text.count(chr(10))} lines)")
    assert not unexplained, f"say '{LONG_REASON} …' in the docstring of {unexplained}"
