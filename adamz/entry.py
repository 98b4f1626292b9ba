"""The ``adamz-search`` console script: Ctrl-C and SIGTERM handled from the first instant.

Importing the command line takes a second or more (torch, Optuna). A signal in that time
ends the process quietly with the exit code shells expect (130 for SIGINT, 143 for SIGTERM),
not with a traceback from the middle of an import.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

__all__ = ["main"]


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.stderr.flush()
    raise SystemExit(128 + signum)


def main() -> int:
    """Run ``adamz-search`` with ``sys.argv``; 130 or 143 if interrupted."""
    signal.signal(signal.SIGINT, _exit)
    signal.signal(signal.SIGTERM, _exit)
    from adamz.cli import main as cli_main

    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return cli_main()
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
