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
    """The YAML content of ``path``; a missing or malformed file is a :class:`SpecError`."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(path, "file", f"cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        first_line = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise SpecError(path, "file", f"is not valid YAML ({first_line})") from exc


def error_message(exc: BaseException) -> str:
    """How a trial's ``error`` attribute records ``exc``: its type and message, kept short."""
    return f"{type(exc).__name__}: {exc}"[:1000]
