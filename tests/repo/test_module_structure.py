"""The package's shape stays what docs/ARCHITECTURE.md says: no import cycle among kpictl's
modules (imports at module level, the ones that run when a module is loaded), no module over
about 500 lines, and Alembic revisions that import nothing from `kpictl.services` (shared SQL
lives in `kpictl/db/`). No database."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "kpictl"
MAX_MODULE_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is loaded: its body's, and those inside module-level
    try/if blocks (but not `if TYPE_CHECKING:`), never those inside functions."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                pending += handler.body
    return found


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if MODULES[module].name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> set[str]:
    """The kpictl modules `module` loads when it is loaded (a package also loads its parents)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    targets: set[str] = set()
    for node in _top_level_imports(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = _resolve(module, node)
        targets.add(base)
        targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {target for target in targets if target in MODULES and target != module}


def graph() -> dict[str, set[str]]:
    return {module: imports_of(module) for module in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_the_package():
    edges = graph()
    assert len(edges) > 60
    assert "kpictl.errors" in edges["kpictl.services.pipeline.run"]
    assert (
        "kpictl.settings" in edges["kpictl.config"] or "kpictl.config" in edges["kpictl.settings"]
    )


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_no_module_over_about_500_lines():
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()
    }
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}


def test_revisions_import_nothing_from_the_services():
    for path in sorted((ROOT / "alembic" / "versions").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "kpictl.services" not in text, path.name
        assert "kpictl.cli" not in text, path.name


def test_the_adoption_is_split_by_step_in_files_of_about_300_lines():
    adoption = PACKAGE / "services" / "adoption"
    sizes = {
        path.name: len(path.read_text(encoding="utf-8").splitlines())
        for path in adoption.glob("*.py")
    }
    assert {"detect.py", "plan.py", "tables.py", "views.py", "functions.py", "run.py"} <= set(sizes)
    assert {name: lines for name, lines in sizes.items() if lines > 300} == {}
