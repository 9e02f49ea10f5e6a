"""The house rule on layers, read from the source (AST): fusion_models imports neither demo, evals nor agents;
knowledge, the data layer fusion_models scores pathways with, imports no fusion_models; no package cycles."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "bench", "demo", "evals", "fusion_models", "knowledge", "prompts", "schemas", "toolkit")
FORBIDDEN = {
    "fusion_models": {"demo", "evals", "agents", "bench"},
    "knowledge": {"fusion_models", "demo", "evals", "agents"},
    "toolkit": {p for p in PACKAGES if p not in ("toolkit", "schemas")},
    "schemas": {"fusion_models", "demo", "evals", "agents", "knowledge", "bench"},
    "demo": {"agents", "evals", "bench"},
    "evals": {"agents", "bench"},
}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import, including those inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
    return found


def package_edges() -> dict[str, dict[str, list[str]]]:
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, top in imports(path):
                if top in PACKAGES and top != package:
                    edges[package][top].append(f"{path.relative_to(ROOT)}:{line}")
    return edges


EDGES = package_edges()


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_no_higher_layer(package):
    crossings = [where for target in FORBIDDEN[package] for where in EDGES[package].get(target, [])]
    assert crossings == [], f"{package} imports a layer above it: {crossings}"


def test_no_import_cycle_between_packages():
    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in EDGES[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cyclic = sorted(p for p in PACKAGES if reaches(p, p, {p}))
    assert cyclic == [], f"packages on an import cycle: {cyclic}; edges: { {p: sorted(EDGES[p]) for p in cyclic} }"


def test_the_checker_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from demo.training import x\n    import evals.metrics\n")
    assert imports(module) == [(2, "demo"), (3, "evals")]
