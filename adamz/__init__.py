"""AdamZ Search: the AdamZ optimizer for PyTorch and the service that tunes and compares it."""

from importlib.metadata import PackageNotFoundError, version

from adamz.optim import AdamZ, presets

try:
    __version__ = version("adamz-search")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["AdamZ", "__version__", "presets"]
