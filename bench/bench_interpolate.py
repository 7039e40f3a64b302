"""An interpolation's decoding: its steps one lone decode after another, against one batch with the same draws.

    python bench/bench_interpolate.py [--steps 7] [--repeats 3] [--only mel_2bar_big,trio_16bar_hier]

`python -m musicvae_jax.sample --mode interpolate` decodes its steps with
`Generator.decode(z, seed, temperature, same_draws=True)`: one batch in
which every row samples with the draws a lone decode with the seed makes.
This times that against decoding the steps one at a time (as the sampler
did before), side by side in one process, at temperature 0.5, after
checking that both give the same sequences. Freshly initialised
parameters at the reference sizes; best of --repeats after a first call.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sample import model_and_params  # noqa: E402
from bench_train import CONFIGS  # noqa: E402
from common import machine  # noqa: E402

from musicvae_jax import host_memory  # noqa: E402
from musicvae_jax.sample import Generator  # noqa: E402


def best_seconds(call, repeats: int) -> float:
    call()  # compiles
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def lone_and_batched_seconds(name: str, steps: int, repeats: int) -> tuple[float, float]:
    """Seconds of `steps` lone decodes and of one batch with the same draws, once both agree."""
    module, variant = CONFIGS[name]
    config = module.get_config(variant or None)
    generator = Generator(config, model_and_params(config)[1])
    z = np.random.default_rng(0).standard_normal((steps, generator.spec.z_size)).astype(np.float32)

    def lone():
        return [generator.decode(z[i : i + 1], 0, 0.5)[0] for i in range(steps)]

    def batched():
        return generator.decode(z, 0, 0.5, same_draws=True)

    for a, b in zip(lone(), batched(), strict=True):
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {key}")
    return best_seconds(lone, repeats), best_seconds(batched, repeats)


def main() -> None:
    host_memory.set_up()  # before JAX starts its threads
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="mel_2bar_big,mel_16bar_hier,mel_16bar_flat,trio_16bar_hier")
    args = parser.parse_args()
    print(f"machine: {machine()}, backend {jax.default_backend()}")
    print(f"| config | {args.steps} lone decodes s | one batch, same draws s | speed-up |")
    print("|---|---|---|---|")
    for name in args.only.split(","):
        one_by_one, together = lone_and_batched_seconds(name, args.steps, args.repeats)
        print(f"| {name} | {one_by_one:.3f} | {together:.3f} | {one_by_one / together:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
