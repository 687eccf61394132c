"""The layers of include/w365 (issue 14; docs/architecture.md): each module imports only its own
layer and those below it, so a rule has one home and a newcomer can read the house bottom up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "include" / "w365"

# Lowest first. A module may import from its own layer and any lower one; layers on one line are
# peers and may not import each other (integrations and operations).
LAYERS: list[tuple[str, ...]] = [
    ("errors", "hooks"),
    ("core",),
    ("config",),
    ("connections",),
    ("store",),
    ("notify",),
    ("billing",),
    ("integrations", "operations"),
    ("orchestration",),
    ("interfaces",),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
LOOSE_TOP_LEVEL = 10  # modules directly in include/w365
MAX_LINES = 450  # models and migrations excepted


def _layer(module: str) -> str:
    """'w365.billing.invoicing.loader' -> 'billing'; 'w365.errors' -> 'errors'."""
    return module.split(".")[1]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "w365":
                found |= {f"w365.{a.name}" for a in node.names}
            elif node.module.startswith("w365."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("w365.")}
    return found


def test_every_module_belongs_to_a_layer():
    """Issue 14: no module outside the layers (a new folder must be placed in LAYERS first)."""
    unplaced = sorted(m for m in _modules() if m.count(".") >= 1 and _layer(m) not in RANK and _layer(m) != "__main__")
    assert unplaced == []


def test_no_import_from_a_higher_layer_or_a_peer():
    """Issue 14: imports (lazy ones inside functions included) go down or sideways within a layer."""
    wrong = []
    for module, path in sorted(_modules().items()):
        if module.count(".") < 1 or _layer(module) == "__main__":
            continue
        here = _layer(module)
        for target in sorted(_imports(path)):
            there = _layer(target)
            if there == here:
                continue
            if RANK[there] >= RANK[here]:
                wrong.append(f"{module} imports {target} ({there} is not below {here})")
    assert wrong == []


def test_few_loose_modules_and_none_too_long():
    """Issue 14: at most ten modules loose at the top; no module over ~450 lines (models and
    migrations excepted: a schema is read as a list)."""
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= LOOSE_TOP_LEVEL, loose
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if "migrations" not in p.parts and p.name != "models.py"
        and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


@pytest.mark.parametrize("module", ["w365.core.money", "w365.core.calendar", "w365.core.ledger", "w365.core.tenant_time"])
def test_core_needs_no_database(module):
    """Issue 14: core/ is pure rules: it imports no SQLAlchemy, pandas or Airflow."""
    path = _modules()[module]
    heavy = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import) else []
        heavy |= {n for n in names if n.split(".")[0] in ("sqlalchemy", "pandas", "airflow", "psycopg2")}
    assert heavy == set()
