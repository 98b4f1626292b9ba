#!/usr/bin/env bash
# Regenerates everything in reports/ with the project's own CLI (see reports/README.md).
#
#   bash reports/reproduce.sh [STAGE ...]     # stages: paper tune confirm holdout report
#
# Storage: $ADAMZ_STORAGE, else out/reproduction.db. Data: $ADAMZ_DATA_DIR, else ../shared/data
# (MNIST in torchvision's layout). Workers: $WORKERS per run (default 2, one per core here).
set -euo pipefail
cd "$(dirname "$0")/.."
export ADAMZ_STORAGE="${ADAMZ_STORAGE:-sqlite:///out/reproduction.db}"
DATA="${ADAMZ_DATA_DIR:-../shared/data}"
WORKERS="${WORKERS:-2}"
CLI="${CLI:-adamz-search}"
WORKLOADS=(digits circles mnist)
OPTIMIZERS=(adamz adam adamw sgd rmsprop)
declare -A BUDGET=([digits]=30 [circles]=25 [mnist]=20)
stages=("${@:-paper tune confirm holdout report}")
stages=(${stages[*]})

run() { echo "+ $*" >&2; "$@"; }
has() { [[ " ${stages[*]} " == *" $1 "* ]]; }

if has paper; then  # 1. the paper's tables
  for name in paper-circles paper-mnist; do
    run $CLI create "studies/$name.yaml"
    run $CLI worker "$name" --data-dir "$DATA" --workers-per-device "$WORKERS"
  done
fi
if has tune; then  # 2. every optimizer tuned with the same budget and pruner
  for workload in "${WORKLOADS[@]}"; do
    for optimizer in "${OPTIMIZERS[@]}"; do
      run $CLI create "studies/$workload-$optimizer.yaml"
      run $CLI worker "$workload-$optimizer" --n-trials "${BUDGET[$workload]}" \
        --data-dir "$DATA" --workers-per-device "$WORKERS"
    done
  done
fi
if has confirm; then  # 2b. each workload: AdamZ's top 3 and each baseline's best, 10 fresh seeds
  for workload in "${WORKLOADS[@]}"; do
    run $CLI report $(printf "$workload-%s " "${OPTIMIZERS[@]}") --confirm 10 \
      --data-dir "$DATA" --workers-per-device "$WORKERS" \
      --out "reports/fair-$workload" --plotly-js reports/plotly.min.js
  done
fi
if has holdout; then  # 4. robust defaults from two workloads, tested on the third
  for held in "${WORKLOADS[@]}"; do
    tuned=()
    for workload in "${WORKLOADS[@]}"; do
      [[ $workload == "$held" ]] || tuned+=("$workload-adamz")
    done
    run $CLI export "${tuned[@]}" --out "reports/defaults/robust-without-$held.yaml"
    run $CLI create "studies/holdout-$held.yaml"
    run $CLI worker "holdout-$held" --data-dir "$DATA" --workers-per-device "$WORKERS"
  done
  run $CLI export $(printf "%s-adamz " "${WORKLOADS[@]}") --out reports/defaults/robust-all.yaml
fi
if has report; then
  for name in paper-circles paper-mnist $(printf "holdout-%s " "${WORKLOADS[@]}"); do
    run $CLI report "$name" --out "reports/$name" --plotly-js reports/plotly.min.js
  done
fi
