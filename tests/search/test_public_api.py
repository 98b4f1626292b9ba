"""The package uses Optuna through its public modules only, so it runs on any storage and
survives Optuna's next major version."""

from __future__ import annotations

import ast
from pathlib import Path

import adamz

PACKAGE = Path(adamz.__file__).parent


def private_optuna_imports(source: str) -> list[str]:
    """The ``optuna`` modules that ``source`` imports with a private (``_``) component."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [
            name
            for name in names
            if name.split(".")[0] == "optuna"
            and any(part.startswith("_") for part in name.split(".")[1:])
        ]
    return found


def test_the_check_finds_private_imports_in_every_form() -> None:
    source = (
        "import optuna.storages._rdb.models\n"
        "from optuna.study._tell import _tell_with_warning\n"
        "from optuna.storages import _heartbeat\n"
        "from optuna.storages import RDBStorage\n"
        "import optuna\n"
    )
    assert private_optuna_imports(source) == [
        "optuna.storages._rdb.models",
        "optuna.study._tell",
        "optuna.study._tell._tell_with_warning",
        "optuna.storages._heartbeat",
    ]


def test_no_module_of_the_package_imports_a_private_optuna_module() -> None:
    found = {
        str(path.relative_to(PACKAGE)): private_optuna_imports(path.read_text())
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    assert {path: names for path, names in found.items() if names} == {}
