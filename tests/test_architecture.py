"""The package's shape, checked: layers only import downwards and no module imports itself back.

Every import counts: those inside functions and those under ``if TYPE_CHECKING:`` too (a type
that must be imported from above, or in a circle, is a sign the code is in the wrong place).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import leadflow

ROOT = Path(leadflow.__file__).parent

# Lower numbers are lower layers; a module may import its own layer or lower ones.
LAYERS: dict[str, int] = {
    "errors": 0,
    "limits": 0,
    "activity_models": 1,
    "documents": 1,
    "condition_tree": 1,
    "fields": 1,
    "models": 1,
    "queries": 1,
    "facts": 1,
    "records": 1,
    "sequences": 1,
    "ports": 2,
    "clock": 2,
    "adapters": 2,
    "rules": 3,
    "stores": 4,
    "scheduling": 4,
    "runtime": 5,
    "lint": 6,
    "simulate": 6,
    "access": 6,
    "testing": 7,
    "contrib": 7,
    "cli": 7,
    "__init__": 8,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The leadflow modules ``path`` imports (resolved, TYPE_CHECKING blocks included)."""
    tree = ast.parse(path.read_text("utf-8"))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("leadflow"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("leadflow"):
                modules = {f"{target}.{a.name}" for a in node.names} & MODULES.keys()
                # `from . import contracts` names a module, not the package's __init__.
                found.update(modules or {target})
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(name)
    return found


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    assert top in LAYERS, f"{module}: give the new top-level module {top!r} a layer here"
    return LAYERS[top]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down(module: str) -> None:
    upward = sorted(t for t in GRAPH[module] if t in MODULES and _layer(t) > _layer(module))
    assert not upward, f"{module} imports higher layers: {upward}"


def test_no_import_cycles() -> None:
    # A package's __init__ re-exporting its own modules is not a cycle of concern: drop edges
    # from a package to its own submodules.
    edges = {
        m: {t for t in targets if t in MODULES and not t.startswith(m + ".")}
        for m, targets in GRAPH.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                walk(target)
        stack.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            walk(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_rules_package_is_pure() -> None:
    for module in MODULES:
        if module.startswith("leadflow.rules"):
            bad = {t for t in GRAPH[module] if _layer(t) > LAYERS["rules"]}
            assert not bad, f"{module} imports {bad}"


def test_the_checker_sees_a_planted_cycle_and_an_upward_import(tmp_path: Path) -> None:
    """The checks above can fail: a fake two-module cycle and an upward import are caught."""
    saved = dict(GRAPH)
    try:
        GRAPH["leadflow.models"] = {*GRAPH["leadflow.models"], "leadflow.runtime.flow"}
        with pytest.raises(AssertionError):
            test_imports_only_go_down("leadflow.models")
        GRAPH["leadflow.errors"] = {"leadflow.limits"}
        GRAPH["leadflow.limits"] = {"leadflow.errors"}
        with pytest.raises(AssertionError):
            test_no_import_cycles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


def test_no_cache_is_keyed_by_object_identity() -> None:
    """Caches keyed by ``id()`` go stale when an object dies and its id is reused; values that
    need a cache carry it (``WorkingCalendar.describe``) or are keyed by the object itself."""
    calls = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in MODULES.values()
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "id"
    ]
    assert not calls, calls
