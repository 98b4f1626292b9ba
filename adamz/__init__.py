"""AdamZ Search: the AdamZ optimizer for PyTorch and the service that tunes and compares it.

``AdamZ`` and ``presets`` are imported on first use, so that importing the package (the command
line's entry point, a worker supervisor) does not load torch.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("adamz-search")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from adamz.optim import AdamZ, presets

__all__ = ["AdamZ", "__version__", "presets"]


def __getattr__(name: str) -> Any:
    if name in ("AdamZ", "presets"):
        return getattr(import_module("adamz.optim"), name)
    raise AttributeError(f"module 'adamz' has no attribute {name!r}")
