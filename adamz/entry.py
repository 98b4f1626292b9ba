"""The ``adamz-search`` console script: Ctrl-C and SIGTERM handled from the first instant.

Importing the command line takes a second or more (Optuna, SQLAlchemy; torch for some
commands), several on a busy machine. A signal in that time ends the process at once, with the
exit code shells expect (130 for SIGINT, 143 for SIGTERM): nothing has been written yet, so
there is nothing to finish, and leaving with ``os._exit`` needs no unwinding of a half-done
import (where an ``except BaseException`` could swallow a ``SystemExit``). Once the command
line is imported, SIGINT raises ``KeyboardInterrupt`` and SIGTERM ``SystemExit``, until a
command that must finish what it started installs a handler of its own (``worker``, from its
first storage call: :class:`adamz.search.launcher.Stop`).

A command that a signal stopped, and that finished what it had started (``worker``: its
children have exited, their trials queued), leaves without the interpreter's teardown, module
by module, which takes a second or more on a busy machine: a stop must end within a
container's grace period.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

__all__ = ["main"]

STOPPED = {128 + signal.SIGINT, 128 + signal.SIGTERM}


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(128 + signum)


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.stderr.flush()
    raise SystemExit(128 + signum)


def main() -> int:
    """Run ``adamz-search`` with ``sys.argv``; 130 or 143 if interrupted."""
    signal.signal(signal.SIGINT, _exit_now)
    signal.signal(signal.SIGTERM, _exit_now)
    from adamz.cli import main as cli_main

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit)
    try:
        code = cli_main()
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    if code in STOPPED:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
