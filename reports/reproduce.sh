#!/usr/bin/env bash
# Regenerates what reports/ shows with the project's own CLI, in stages that resume (see
# reports/README.md and reports/stages.py, which says how to add stages):
#
#   bash reports/reproduce.sh status            # the stages done, those left, estimated minutes
#   bash reports/reproduce.sh run [STAGE|next]  # run one stage; run it again to resume it
#   bash reports/reproduce.sh report [PAGE ...] # rebuild the pages from the committed storage
#
# Each stage keeps its studies in a file under reports/data/ and records its wall and CPU time
# in reports/data/stages.json: commit both after each stage, and the next session goes on from
# there. MNIST comes from $ADAMZ_DATA_DIR, else ../shared/data (torchvision's layout).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
exec "$PYTHON" reports/stages.py "${@:-status}"
