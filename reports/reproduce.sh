#!/usr/bin/env bash
# Regenerates everything in reports/ with the project's own CLI (see reports/README.md).
#
#   bash reports/reproduce.sh [STAGE ...]     # stages: paper tune confirm export holdout report atlas
#
# Storage: $ADAMZ_STORAGE, else out/reproduction.db. Data: $ADAMZ_DATA_DIR, else ../shared/data
# (MNIST in torchvision's layout). Workers: $WORKERS per run (default 2, one per core here).
#
# The protocol: every search selects on its validation split (studies/*.yaml: val_accuracy)
# with Hyperband; every optimizer gets the same budget and sends the same number of candidates
# (--candidates) to the seed confirmation, which picks each optimizer's winner by validation
# median and reports test; defaults are exported only after validation on every workload.
set -euo pipefail
cd "$(dirname "$0")/.."
export ADAMZ_STORAGE="${ADAMZ_STORAGE:-sqlite:///out/reproduction.db}"
DATA="${ADAMZ_DATA_DIR:-../shared/data}"
WORKERS="${WORKERS:-2}"
CLI="${CLI:-adamz-search}"
read -ra WORKLOADS <<< "${WORKLOADS:-digits circles mnist}"   # e.g. WORKLOADS="digits circles"
OPTIMIZERS=(adamz adam adam-cosine adam-plateau adamw sgd rmsprop)
declare -A BUDGET=([digits]=30 [circles]=25 [mnist]=20)
CANDIDATES=2   # per optimizer, the same for all
SEEDS=10       # fresh seeds of the confirmation
stages=("${@:-paper tune confirm export holdout report atlas}")
stages=(${stages[*]})
mkdir -p out

run() { echo "+ $*" >&2; "$@"; }
has() { [[ " ${stages[*]} " == *" $1 "* ]]; }
workers=(--data-dir "$DATA" --workers-per-device "$WORKERS")

if has paper; then  # 1. the paper's tables
  for name in paper-circles paper-mnist; do
    run $CLI create "studies/$name.yaml"
    run $CLI worker "$name" "${workers[@]}"
  done
fi
if has tune; then  # 2. every optimizer tuned with the same budget and pruner
  for workload in "${WORKLOADS[@]}"; do
    for optimizer in "${OPTIMIZERS[@]}"; do
      run $CLI create "studies/$workload-$optimizer.yaml"
      # The budget the study shows (status, studies, the dashboard) is the one it runs.
      run $CLI budget "$workload-$optimizer" "${BUDGET[$workload]}"
      run $CLI worker "$workload-$optimizer" "${workers[@]}"
    done
  done
fi
if has confirm; then  # 2b. each workload: every optimizer's top candidates on fresh seeds
  for workload in "${WORKLOADS[@]}"; do
    run $CLI report $(printf "$workload-%s " "${OPTIMIZERS[@]}") --confirm "$SEEDS" \
      --candidates "$CANDIDATES" "${workers[@]}" \
      --out "reports/fair-$workload" --plotly-js reports/plotly.min.js
  done
fi
if has export; then  # 4a. one default from the three AdamZ studies, validated on all three
  run $CLI export $(printf "%s-adamz " "${WORKLOADS[@]}") --seeds 5 "${workers[@]}" \
    --out reports/defaults/validated-all.yaml
fi
if has holdout; then  # 4b. leave one workload out: export from two, test on the third
  run $CLI export $(printf "%s-adamz " "${WORKLOADS[@]}") --leave-one-out --seeds "$SEEDS" \
    "${workers[@]}" | tee out/holdout.txt
fi
if has report; then
  for name in paper-circles paper-mnist; do
    run $CLI report "$name" --out "reports/$name" --plotly-js reports/plotly.min.js
  done
  for held in "${WORKLOADS[@]}"; do
    study=$(grep "^$held:" out/holdout.txt | sed 's/.*(adamz-search report \(.*\))$/\1/')
    run $CLI report "$study" --out "reports/holdout-$held" --plotly-js reports/plotly.min.js
  done
fi
if has atlas; then  # 5. the sensitivity atlas: a Sobol design over AdamZ's space, 3 seeds each
  for workload in "${WORKLOADS[@]}"; do
    run $CLI create "studies/$workload-adamz-atlas.yaml"
    started=$SECONDS
    run $CLI worker "$workload-adamz-atlas" "${workers[@]}"
    echo "atlas $workload: $((SECONDS - started)) s" | tee -a out/atlas-times.txt
  done
  run $CLI report $(printf "%s-adamz-atlas " "${WORKLOADS[@]}") --out reports/sensitivity-atlas \
    --plotly-js reports/plotly.min.js
fi
