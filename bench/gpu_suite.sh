#!/usr/bin/env bash
# One call on a lent GPU machine: a correctness check; profiles of the step;
# the main job; sampling per family; then the benchmark suite in float32
# (TF32 on both sides, each framework's GPU default) and in bfloat16. Everything lands in $OUT (the device tool's output folder;
# runs/gpu when run by hand).
#
#   bash bench/fetch_device_wheels.sh          # here, once: the wheels the image lacks
#   device run: bash bench/gpu_suite.sh        carry [".whl"], timeout_s 595
#
# Each stage has its own time limit, so one slow stage leaves the others
# theirs, and the suite rewrites its JSON and Markdown after every row, so a
# stage cut short keeps what it measured. The limits add up to about 620 s,
# sized from the H200 runs in BENCHMARKS.md. The 16-bar batch is 256: at
# 512, float32 trio_16bar_hier needed more than an H200's memory.
# BATCH, BATCH_16BAR, ONLY, STEPS, PROFILE and the *_LIMIT variables resize
# it (a CPU dry run: BATCH=4 BATCH_16BAR=2 ...).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"

stage() {
  local limit=$1 start=$SECONDS
  shift
  echo "== $* (limit ${limit} s)"
  timeout "$limit" "$@"
  printf "\n== exit %s after %s s\n" "$?" "$((SECONDS - start))"
}

main() {
  if [ -d .whl ] && ! python3 -c 'import grain, mido, ml_collections' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
    export PYTHONPATH=/tmp/site
  fi
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  # JAX and PyTorch share the GPU in one process: neither takes it all up front.
  export XLA_PYTHON_CLIENT_PREALLOCATE=false

  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>/dev/null
  python3 - <<'PY' || return 1
import flax, grain, jax, optax, orbax.checkpoint, torch
print("jax", jax.__version__, jax.devices(), "| flax", flax.__version__, "| optax", optax.__version__,
      "| orbax", orbax.checkpoint.__version__, "| torch", torch.__version__, torch.cuda.is_available())
PY

  suite=(python3 bench/suite.py --sizes real --batch "${BATCH:-512}" --batch_16bar "${BATCH_16BAR:-256}"
    --steps "${STEPS:-10}" --steps_16bar "${STEPS_16BAR:-5}" --out "$OUT" --skip_input --skip_sample)
  local only=${ONLY:-trio_16bar_hier,mel_16bar_hier,mel_2bar_big}
  # pyproject's addopts (a worker per test file) replaced: these tests share one file, so spread them by test.
  local xdist=(-o addopts=-ra)
  python3 -c "import xdist" 2>/dev/null && xdist+=(-n 6 --dist load)

  # Gradients and batched decoding against their references, at full float32 precision.
  stage "${TEST_LIMIT:-120}" env JAX_DEFAULT_MATMUL_PRECISION=highest python3 -m pytest "${xdist[@]}" -x -q \
    -p no:cacheprovider -p no:benchmark tests/test_models.py \
    -k "sequence_vjp or batched_bars or batched_directions or input_projection or masking or gathered or reverse"

  # Where the device time goes (bench/profile_step.py): kernels summed by name, the GPU's busy share.
  local profile=(python3 bench/profile_step.py --precision bfloat16 --out "$OUT" --steps 3)
  stage "${PROFILE_LIMIT:-70}" bash -c "$(printf '%q ' "${profile[@]}" --config "${PROFILE:-mel_2bar_big}" \
    --batch "${BATCH:-512}") && $(printf '%q ' "${profile[@]}" --config trio_16bar_hier --batch "${BATCH_16BAR:-256}")"

  # The device tool brings back at most 8 files: one for the summaries, one for the traces.
  (cd "$OUT" && cat profile-*.md >profiles.md && rm profile-*.md && tar -cf traces.tar trace-*.json.gz && rm trace-*.json.gz)
  # The main job on the demo corpus. (Its start-up memory check, a reference-size float32 trio at batch 2048
  # stopping with a message that names config.batch_size, passed on an H200 on 2026-11-26; BENCHMARKS.md.)
  local demo
  demo=$(mktemp -d)/demo
  stage "${DEMO_LIMIT:-40}" python3 -m musicvae_jax.main --workdir "$demo" --config.train.num_steps=30 \
    --config.train.log_every=10
  # Sampling 32 sequences per family at reference size (compile time, then the best of 3 calls).
  stage "${SAMPLE_LIMIT:-90}" python3 bench/bench_sample.py --size real
  # Start-up: creating the parameters through a traced pass against the initialisers alone (fresh processes).
  stage "${INIT_LIMIT:-70}" python3 bench/bench_init.py --configs "${INIT_CONFIGS:-trio,mel_2bar}"

  stage "${FLOAT32_LIMIT:-120}" "${suite[@]}" --only "$only"
  stage "${BFLOAT16_LIMIT:-110}" "${suite[@]}" --only "$only" --precision bfloat16
}

main 2>&1 | tee "$OUT/gpu.log"
