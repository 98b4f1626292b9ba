"""The package's imports go one way, down the layers the README draws, with no circle, and a
package reaches another only through its public names."""

from __future__ import annotations

import ast
from pathlib import Path

import adamz

PACKAGE = Path(adamz.__file__).parent
LAYERS = ("adamz.cli", "adamz.reports", "adamz.search", "adamz.training", "adamz.workloads")
"""From the top down; ``adamz.optim`` imports nothing of the package (below them all)."""
BOTTOM = ("adamz.optim", "adamz.verbosity")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(name: str) -> set[str]:
    """The package's modules that module ``name`` imports, anywhere in it (at its top, inside
    a function, or for type checking alone)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = package
                for _ in range(node.level - 1):
                    prefix = prefix.rpartition(".")[0]
                base = f"{prefix}.{base}" if node.module else prefix
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("adamz") and target != name:
                found.add(target)
    return found


GRAPH = {name: imports(name) for name in MODULES}


def layer(name: str) -> int:
    """The module's layer: 0 for the command line, down to the optimizer below them all."""
    for rank, top in enumerate(LAYERS):
        if name == top or name.startswith(top + "."):
            return rank
    return len(LAYERS) if name.startswith(BOTTOM) else -1


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if layer(name) >= 0 and layer(target) >= 0 and layer(target) < layer(name)
    ]
    assert upward == []


def test_the_optimizer_imports_nothing_of_the_rest_of_the_package() -> None:
    optimizer = [name for name in GRAPH if name.startswith("adamz.optim")]
    assert optimizer
    assert [
        (name, target)
        for name in optimizer
        for target in GRAPH[name]
        if not target.startswith("adamz.optim")
    ] == []


def test_no_import_circle_anywhere_in_the_package() -> None:
    def reaches(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(GRAPH[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += GRAPH[name]
        return seen

    circles = sorted(name for name in GRAPH if name in reaches(name))
    assert circles == []


def test_a_package_reaches_another_only_through_its_public_names() -> None:
    private = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if target.rsplit(".", 1)[-1].startswith("_")
        and target.rpartition(".")[0] not in (name, name.rpartition(".")[0])
    ]
    assert private == []
