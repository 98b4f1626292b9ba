"""``python -m adamz.cli``: the same as the ``adamz-search`` console script."""

from __future__ import annotations

import sys

from adamz.cli import main

sys.exit(main())
