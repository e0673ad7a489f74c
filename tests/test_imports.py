"""The package has no import cycle: every module's imports of the package, at module level and
inside functions alike (a lazy import only hides a cycle until the function runs), form a DAG."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import mlm_dynamics

PACKAGE = Path(mlm_dynamics.__file__).parent
NAME = "mlm_dynamics"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, module: str, modules) -> list[str]:
    """The modules among ``modules`` that one import statement of ``module`` imports:
    ``from a import b, c`` imports the submodules among ``a.b``, ``a.c``, else ``a`` itself."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in modules]
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = (
            module.split(".") if modules[module].name == "__init__.py" else module.split(".")[:-1]
        )
        anchor = package[: len(package) - node.level + 1]
        base = ".".join([*anchor, *([base] if base else [])])
    submodules = [f"{base}.{alias.name}" for alias in node.names]
    return [name for name in submodules if name in modules] or [base] * (base in modules)


def type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """Imports under ``if TYPE_CHECKING:``: never executed, so no part of a cycle."""
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {inner for stmt in node.body for inner in ast.walk(stmt)}
    return hidden


def import_graph() -> dict[str, dict[str, str]]:
    """``{module: {imported module: "file:line: the import statement"}}`` within the package."""
    paths = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, dict[str, str]] = {module: {} for module in paths}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        hidden = type_checking_only(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or node in hidden:
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {ast.unparse(node)}"
            for target in imported(node, module, paths):
                if target != module:
                    graph[module].setdefault(target, where)
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """One cycle through each strongly connected component with more than one module
    (Tarjan's algorithm), as [a, b, ..., a]."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(cycle_in(graph, component, v))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def cycle_in(graph, component: set[str], start: str) -> list[str]:
    """A shortest cycle through ``start`` within ``component`` (breadth first)."""
    previous = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w in component and w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def describe(graph, cycle: list[str]) -> str:
    steps = [f"  {a} -> {b}  ({graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join(cycle) + "\n" + "\n".join(steps)


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert (
        "mlm_dynamics.activations.store" in graph["mlm_dynamics.probing.registry"]
    )  # from a import b
    assert "mlm_dynamics.errors" in graph["mlm_dynamics.probing.registry"]  # from a.b import c
    assert "mlm_dynamics.sources.checks" in graph["mlm_dynamics.pretrain"]  # inside a function
    assert "torch" not in str(graph["mlm_dynamics.pretrain"])  # outside the package


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(graph, c) for c in found)


def test_a_cycle_is_found_and_named():
    graph = {"a": {"b": "a.py:1: import b"}, "b": {"c": "b.py:2: import c"},
             "c": {"a": "c.py:3: import a"}, "d": {"a": "d.py:1: import a"}}  # fmt: skip
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert "b -> c  (b.py:2: import c)" in describe(graph, ["a", "b", "c", "a"])


def workflow_imports() -> list[str]:
    """The package's modules that the Snakefile and its rule files import (every parse of the
    workflow, a SLURM job's too, imports them)."""
    repo = PACKAGE.parent
    modules = set()
    for path in [repo / "Snakefile", *sorted((repo / "workflow" / "rules").glob("*.smk"))]:
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["from"] and words[1].startswith(NAME):
                names = " ".join(words[3:]).replace(",", " ").split()
                if words[1] == NAME:
                    modules |= {f"{NAME}.{name}" for name in names if name != "as"}
                else:
                    modules.add(words[1])
    return sorted(modules)


def test_parsing_the_workflow_imports_no_plotting_library():
    import subprocess
    import sys

    modules = workflow_imports()
    assert {"mlm_dynamics.figure_registry", "mlm_dynamics.plan", "mlm_dynamics.layout"} <= set(
        modules
    )
    heavy = ("matplotlib", "seaborn", "torch", "transformers")
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == [], f"the workflow's parse imports {loaded} (via {modules})"
