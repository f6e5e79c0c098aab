"""Import layering, read from the source with ``ast`` (nothing is imported).

Units: each top-level package (``dupwatch``, ``ingest``, ``detect``, ``index``, ``inference``,
``export``, ``training``, ``evaluation``, ``scoring``, ``bench``), except that the command-line layer (``dupwatch.cli`` and
every package's ``cli`` module) is one unit of its own, above everything, and ``dupwatch.demo`` and
``dupwatch.testing`` are their own units (the demo and test services ship inside the base package).

Rules:

- no import cycle between units;
- no library module (anything but ``bench``, the CLI layer and ``dupwatch.testing``) imports
  ``bench``, ``tests`` or the CLI layer (benchmark data, metrics and the eval methods that training
  and calibration use live in ``evaluation`` and ``scoring``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from dupwatch.paths import REPO_ROOT

PACKAGES = (
    "dupwatch", "ingest", "detect", "index", "inference", "export", "training", "evaluation", "scoring", "bench",
)


def unit(module: str) -> str:
    parts = module.split(".")
    if parts[-1] == "cli" or parts[-1] == "__main__":
        return "cli"
    if parts[0] == "dupwatch" and len(parts) > 1 and parts[1] in ("demo", "testing"):
        return f"dupwatch.{parts[1]}"
    return parts[0]


def is_library(module: str) -> bool:
    return unit(module) not in ("cli", "bench", "dupwatch.testing")


def module_imports() -> dict[str, set[str]]:
    """``module → imported modules`` (absolute, relative ones resolved) for every module of the packages."""
    out: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in sorted((REPO_ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(REPO_ROOT).with_suffix("")
            module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            package = module if rel.name == "__init__" else module.rpartition(".")[0]
            names: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = package.split(".")[: len(package.split(".")) - node.level + 1]
                        names.add(".".join(base + ([node.module] if node.module else [])))
                    elif node.module:
                        names.add(node.module)
            out[module] = {n for n in names if n.split(".")[0] in (*PACKAGES, "tests")}
    return out


def unit_edges(imports: dict[str, set[str]]) -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for module, names in imports.items():
        for name in names:
            a, b = unit(module), unit(name)
            if a != b:
                edges.setdefault((a, b), []).append(f"{module} -> {name}")
    return edges


def find_cycle(edges: dict[tuple[str, str], list[str]]) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_packages() -> None:
    edges = unit_edges(module_imports())
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle " + " -> ".join(cycle) + ": " + "; ".join(
        edges[(a, b)][0] for a, b in zip(cycle, cycle[1:]))


def test_no_library_import_of_bench_tests_or_the_cli() -> None:
    bad = sorted((m, n) for m, names in module_imports().items() if is_library(m)
                 for n in names if unit(n) in ("bench", "cli") or n.split(".")[0] == "tests")
    assert not bad, "library modules import bench, tests or the CLI: " + "; ".join(f"{m} -> {n}" for m, n in bad)


def test_the_checks_see_a_cycle_and_a_forbidden_import() -> None:
    """The walker resolves relative imports and the cycle finder reports a two-package loop."""
    assert find_cycle({("a", "b"): ["a.x -> b.y"], ("b", "a"): ["b.y -> a.x"]}) == ["a", "b", "a"]
    assert find_cycle({("a", "b"): ["a.x -> b.y"]}) is None
    assert unit("ingest.cli") == unit("dupwatch.cli") == "cli" and unit("dupwatch.config") == "dupwatch"
    imports = module_imports()
    assert "inference.engines" in imports["inference.served"]
    assert not is_library("bench.rescoring") and is_library("ingest.worker")
