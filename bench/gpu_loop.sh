#!/usr/bin/env bash
# One call on a lent GPU machine: the training loop against its bare step
# (bench/bench_loop.py) for the fastest 2-bar steps, where a GPU step is
# quickest to outrun the loader. Results in $OUT (runs/gpu_loop by hand).
#
#   data, here, once (ignored under runs/): runs/device_data/groove_2bar (the Groove
#   MIDI Dataset's groove_2bar shards) and runs/device_data/melody_2bar (the demo
#   corpus, 512 songs); see BENCHMARKS.md "The training loop on a GPU"
#   device run: bash bench/gpu_loop.sh       carry [".whl", "runs/device_data"], timeout_s 540
#
# READINGS (workers:cache_mb), STEPS and LOOP_LIMIT resize it (a CPU dry run:
# SIZE=tiny BATCH=64 STEPS=100 OUT=/tmp/gpuloop bash bench/gpu_loop.sh).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-runs/gpu_loop}
DATA=${DATA:-runs/device_data}
mkdir -p "$OUT"

main() {
  if [ -d .whl ] && ! python3 -c 'import grain, mido, ml_collections' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
    export PYTHONPATH=/tmp/site
  fi
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  local loop=(python3 bench/bench_loop.py --size "${SIZE:-real}" --batch "${BATCH:-512}" --steps "${STEPS:-400}"
    --log_every 40 --readings="${READINGS:-0:0,-1:0,-1:1024}" --out "$OUT")
  local start=$SECONDS
  timeout "${LOOP_LIMIT:-230}" "${loop[@]}" --config groovae_2bar_humanize --data "$DATA/groove_2bar"
  echo "== exit $? after $((SECONDS - start)) s"
  start=$SECONDS
  timeout "${LOOP_LIMIT:-230}" "${loop[@]}" --config mel_2bar_small --data "$DATA/melody_2bar"
  echo "== exit $? after $((SECONDS - start)) s"
  (cd "$OUT" && tar -cf logs.tar ./loop-*.log && rm ./loop-*.log)
}

main 2>&1 | tee "$OUT/gpu_loop.log"
