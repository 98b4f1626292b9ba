"""The one error type for a bad study or search-space file, the one reader of those files, and
how a trial records the exception it ended with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class SpecError(ValueError):
    """A study or search-space file breaks a rule: names the file, the key and the rule.

    The message is one line, ``FILE: KEY: RULE, got VALUE``, so the CLI can print it as is.
    """

    def __init__(self, source: str | Path, key: str, rule: str, value: object = ...) -> None:
        got = "" if value is ... else f", got {value!r}"
        super().__init__(f"{source}: {key}: {rule}{got}.")
        self.source = str(source)
        self.key = key


def read_yaml(path: Path) -> Any:
    """The YAML content of ``path``.

    Raises:
        SpecError: the file cannot be read, or is not YAML; a syntax error names its line and
            column (counted from 1, as editors do).
    """
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(path, "file", f"cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise SpecError(path, "file", f"is not valid YAML: {_yaml_problem(exc)}") from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """``exc`` in one line: the problem, then where it is (PyYAML's own text spans lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or exc.context or type(exc).__name__
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split()) or type(exc).__name__


def referenced_file(name: str, *, source: str | Path, key: str, base_dir: Path) -> Path:
    """The file that ``key: name`` in the file ``source`` names, relative to ``base_dir`` (the
    folder of ``source``) unless ``name`` is absolute.

    Raises:
        SpecError: that file cannot be read. The message says what the path is relative to and
            where it leads: a copied study file often keeps a path meant for its old folder.
    """
    path = base_dir / name
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        where = (
            "" if Path(name).is_absolute() else f" (relative to {source}, i.e. {path.resolve()})"
        )
        raise SpecError(source, key, f"{name}{where} cannot be read ({exc.strerror})") from exc
    return path


def error_message(exc: BaseException) -> str:
    """How a trial's ``error`` attribute records ``exc``: its type and message, kept short."""
    return f"{type(exc).__name__}: {exc}"[:1000]
