#!/usr/bin/env bash
# A short call on a lent GPU machine (about 130 s on an H200) that checks and
# times the gathered columns' gradient (BENCHMARKS.md, "Second GPU session"):
# the gradient and projection tests at full float32 precision, profiles of
# mel_2bar_big (batch 512) in both precisions and of trio_16bar_hier (256)
# in bfloat16, and mel_2bar_big's bfloat16 suite row beside PyTorch.
#
#   device run: bash bench/gpu_gather_check.sh   carry [".whl"], timeout_s 240
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
profile=(python3 bench/profile_step.py --out "$OUT" --steps 5 --trace_steps 1)
{
  timeout 45 env JAX_DEFAULT_MATMUL_PRECISION=highest python3 -m pytest -o addopts=-ra -n 6 --dist load -q -p no:cacheprovider -p no:benchmark \
    tests/test_models.py -k "gathered_columns or reverse_by_length or input_projection or batched_directions"
  echo "== tests exit $?"
  timeout 30 "${profile[@]}" --config mel_2bar_big --batch 512 --precision bfloat16
  echo "== exit $?"
  timeout 30 "${profile[@]}" --config mel_2bar_big --batch 512 --precision float32
  echo "== exit $?"
  timeout 60 python3 bench/suite.py --sizes real --batch 512 --steps 10 --out "$OUT" --skip_input --skip_sample \
    --only mel_2bar_big --precision bfloat16
  echo "== exit $?"
  timeout 45 "${profile[@]}" --config trio_16bar_hier --batch 256 --precision bfloat16 --steps 3
  echo "== exit $?"
} 2>&1 | tee "$OUT/gpu2.log" | grep -E "^==|step |passed|failed|train |ours|Device busy|^\| \`" | head -120
