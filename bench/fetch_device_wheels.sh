#!/usr/bin/env bash
# Downloads into .whl/ the wheels that the lent GPU machine's image lacks
# (its python3 is 3.12 with JAX, Flax, Optax, Orbax and PyTorch for CUDA, and
# it reaches no package index). Run once here, then carry .whl with
# bench/gpu_suite.sh. Versions: those this project resolves to here.
set -euo pipefail
cd "$(dirname "$0")/.."
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  grain==0.2.18 array-record==0.8.6 portpicker==1.6.0 mido==1.3.3 ml-collections==1.1.0 tensorboardX==2.6.5 \
  pytest-xdist==3.8.0 execnet==2.1.2
ls -l .whl
