"""``python -m adamz.cli``: the same as the ``adamz-search`` console script."""

from __future__ import annotations

import sys

from adamz.cli import main

if __name__ == "__main__":  # not when a spawned worker process imports it
    sys.exit(main())
