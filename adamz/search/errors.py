"""The one error type for a bad study or search-space file."""

from __future__ import annotations

from pathlib import Path


class SpecError(ValueError):
    """A study or search-space file breaks a rule: names the file, the key and the rule.

    The message is one line, ``FILE: KEY: RULE, got VALUE``, so the CLI can print it as is.
    """

    def __init__(self, source: str | Path, key: str, rule: str, value: object = ...) -> None:
        got = "" if value is ... else f", got {value!r}"
        super().__init__(f"{source}: {key}: {rule}{got}.")
        self.source = str(source)
        self.key = key
