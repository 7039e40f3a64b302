#!/usr/bin/env bash
# A short call on a lent GPU machine (about 300 s on an H200) that checks and
# times the LSTM sequence pass's two layouts (models/lstm.py,
# is_feature_major; BENCHMARKS.md, "Third GPU session"): the layout and
# sequence-VJP tests at full float32 precision; profiles of mel_2bar_big
# (batch 512) and trio_16bar_hier (256) in bfloat16 with each layout, side
# by side; then the suite's rows beside PyTorch with the default ("auto",
# batch-major on a GPU) in both precisions.
#
#   device run: bash bench/gpu_layout_check.sh   carry [".whl"], timeout_s 400
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
profile=(python3 bench/profile_step.py --out "$OUT" --steps 5 --trace_steps 1 --precision bfloat16)
suite=(python3 bench/suite.py --sizes real --batch 512 --batch_16bar 256 --steps 10 --steps_16bar 5 --out "$OUT"
  --skip_input --skip_sample --only "mel_2bar_big,trio_16bar_hier")
{
  timeout 60 env JAX_DEFAULT_MATMUL_PRECISION=highest python3 -m pytest -n 4 -q -p no:cacheprovider -p no:benchmark \
    tests/test_models.py -k "sequence_vjp_layer or layouts_are_one_model"
  echo "== tests exit $?"
  for layout in feature_major batch_major; do
    timeout 35 "${profile[@]}" --config mel_2bar_big --batch 512 --set "model.sequence_layout=$layout"
    echo "== exit $?"
  done
  for layout in feature_major batch_major; do
    timeout 45 "${profile[@]}" --config trio_16bar_hier --batch 256 --steps 3 --set "model.sequence_layout=$layout"
    echo "== exit $?"
  done
  timeout 70 "${suite[@]}" --precision bfloat16
  echo "== exit $?"
  timeout 75 "${suite[@]}"
  echo "== exit $?"
} 2>&1 | tee "$OUT/gpu.log" | grep -E "^==|step |passed|failed|Error|train |ours|Device busy|^\| \`" | head -150
# The device tool brings back at most 8 files.
(cd "$OUT" && cat profile-*.md >profiles.md && rm profile-*.md && tar -cf traces.tar trace-*.json.gz && rm trace-*.json.gz)
