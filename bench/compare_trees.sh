#!/usr/bin/env bash
# Times the training step of several source trees side by side in one call
# (on a lent GPU above all, where each call costs device time): for each
# "config:batch:precision[:steps]" in RUNS, bench/profile_step.py runs once
# per tree, the trees in the order given, each in its own process. A tree
# is a folder holding a copy of musicvae_jax/ and configs/ (an edited copy:
# an experiment); "." is this checkout ("checkout" in the table). Profiles
# land in $OUT (runs/compare by hand) tagged with the tree's folder name and
# are gathered into profiles.md; the output ends with one table of the
# steps. SIZE=tiny times the tiny models at their configs' batch (a dry run).
#
#   mkdir -p .variants/B && cp -r musicvae_jax configs .variants/B/   # then edit the copy
#   echo /.variants/ >>.git/info/exclude
#   device run: TREES=". .variants/B" bash bench/compare_trees.sh   carry [".whl", ".variants"]
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-runs/compare}
TREES=${TREES:-.}
RUNS=${RUNS:-mel_2bar_big:512:bfloat16}
mkdir -p "$OUT"
if [ -d .whl ] && ! python3 -c 'import grain, mido, ml_collections' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv 2>/dev/null
table=()
for run in $RUNS; do
  IFS=: read -r config batch precision steps <<<"$run"
  for tree in $TREES; do
    name=$(basename "$(cd "$tree" && pwd)")
    [ "$tree" = . ] && name=checkout
    line=$(PYTHONPATH="$(cd "$tree" && pwd)${PYTHONPATH:+:$PYTHONPATH}" timeout "${RUN_LIMIT:-60}" python3 bench/profile_step.py \
      --config "$config" --size "${SIZE:-real}" --batch "$batch" --precision "$precision" --steps "${steps:-10}" --trace_steps 1 \
      --tag "$name" --out "$OUT" 2>&1 | tee -a "$OUT/compare.log" | grep -o "step [0-9.]* s (median of [0-9]*)")
    echo "== $config b$batch $precision, $name: ${line:-failed (compare.log)}"
    table+=("| $config | $batch | $precision | $name | ${line:-failed} |")
  done
done
(cd "$OUT" && cat profile-*.md >>profiles.md 2>/dev/null && rm -f profile-*.md trace-*.json.gz)
printf '| config | batch | precision | tree | step |\n|---|---|---|---|---|\n'
printf '%s\n' "${table[@]}"
