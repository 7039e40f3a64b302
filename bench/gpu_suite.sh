#!/usr/bin/env bash
# One call on a lent GPU machine: a correctness check; profiles of the step
# and of the variants that could change where its time goes; the main job
# (and its start-up memory check); then the benchmark suite in float32 (TF32
# on both sides, each framework's GPU default) and in bfloat16. Everything
# lands in $OUT (the device tool's output folder; runs/gpu when run by hand).
#
#   bash bench/fetch_device_wheels.sh          # here, once: the wheels the image lacks
#   device run: bash bench/gpu_suite.sh        carry [".whl"], timeout_s 595
#
# Each stage has its own time limit, so one slow stage leaves the others
# theirs, and the suite rewrites its JSON and Markdown after every row, so a
# stage cut short keeps what it measured. The first H200 run (BENCHMARKS.md)
# found our bfloat16 step no faster than our float32 one, at half PyTorch's
# speed: the profiles come first to say why. The 16-bar batch is 256: at
# 512, float32 trio_16bar_hier needed more than an H200's 139 GiB then; the
# last stage prints the GPU compiler's count for it now (bench/step_memory.py).
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
  local xdist=()
  python3 -c "import xdist" 2>/dev/null && xdist=(-n 6)

  # Gradients and batched decoding against their references, at full float32 precision.
  stage "${TEST_LIMIT:-60}" env JAX_DEFAULT_MATMUL_PRECISION=highest python3 -m pytest "${xdist[@]}" -x -q \
    -p no:cacheprovider tests/test_models.py -k "sequence_vjp or batched_bars or batched_directions or input_projection or hoisted or masking"

  # Where the device time goes (bench/profile_step.py), then the variants that could change it.
  local profile=(python3 bench/profile_step.py --precision bfloat16 --out "$OUT" --steps 3)
  local config=${PROFILE:-mel_2bar_big} batch=${BATCH:-512}
  stage "${PROFILE_LIMIT:-100}" bash -c "$(printf '%q ' "${profile[@]}" --config "$config" --batch "$batch") && \
    $(printf '%q ' "${profile[@]}" --config trio_16bar_hier --batch "${BATCH_16BAR:-256}")"
  local variant=("${profile[@]}" --config "$config" --batch "$batch" --trace_steps 1)
  # The same step in float32 (TF32) first, so the two precisions' kernels sit side by side in profiles.md.
  stage "${VARIANT_LIMIT:-25}" "${variant[@]}" --precision float32
  for setting in model.unroll=2 model.sequence_vjp=False model.batch_directions=True; do
    stage "${VARIANT_LIMIT:-25}" "${variant[@]}" --set "$setting"
  done
  # Each loop as one CUDA graph, and XLA's own loop unrolling: do launches or loop trips cost the time?
  stage "${VARIANT_LIMIT:-25}" env XLA_FLAGS=--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL "${variant[@]}" --tag cmdbuf
  stage "${VARIANT_LIMIT:-25}" env XLA_FLAGS=--xla_gpu_enable_while_loop_unrolling=WHILE_LOOP_UNROLLING_AUTO_UNROLL \
    "${variant[@]}" --tag xla-unroll

  # The device tool brings back at most 8 files: one for the summaries, one for the traces.
  (cd "$OUT" && cat profile-*.md >profiles.md && rm profile-*.md && tar -cf traces.tar trace-*.json.gz && rm trace-*.json.gz)
  # The main job: the demo, then reference-size float32 trio at a batch no GPU holds, which must stop
  # at start-up naming config.batch_size (train.py's memory check), not at its first step.
  local demo
  demo=$(mktemp -d)/demo
  stage "${DEMO_LIMIT:-40}" python3 -m musicvae_jax.main --workdir "$demo" --config.train.num_steps=30 \
    --config.train.log_every=10
  stage "${OOM_LIMIT:-60}" python3 -m musicvae_jax.main --workdir "$demo-oom" --config configs/trio.py \
    --config.data.path="$demo/data/trio_16bar" --config.batch_size=2048

  stage "${FLOAT32_LIMIT:-90}" "${suite[@]}" --only "$only"
  stage "${BFLOAT16_LIMIT:-60}" "${suite[@]}" --only "$only" --precision bfloat16
  stage "${MEMORY_LIMIT:-30}" python3 bench/step_memory.py --config trio_16bar_hier --batch "$((2 * ${BATCH_16BAR:-256}))" \
    --top 12
}

main 2>&1 | tee "$OUT/gpu.log"
