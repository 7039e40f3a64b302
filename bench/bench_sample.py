"""Time to sample 32 sequences per model family, after compilation.

    python bench/bench_sample.py [--num 32] [--repeats 3] [--size real|tiny|both]

Parameters are freshly initialised (sampling cost does not depend on their
values); each figure is the best of --repeats timed calls of the jitted
decode, blocked on the result.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import CONFIGS  # noqa: E402
from common import machine  # noqa: E402

from musicvae_jax import train  # noqa: E402
from musicvae_jax.models.vae import MusicVAE  # noqa: E402


def sample_seconds(config, num: int = 32, repeats: int = 3) -> tuple[float, float]:
    """(first call with compilation, best of `repeats` later calls) of sampling `num` sequences, in seconds."""
    spec, tspec = train.model_spec(config), train.TrainSpec.from_config(config)
    params = train.create_state(spec, tspec, jax.random.key(0)).params
    model = MusicVAE(spec)
    decode = jax.jit(lambda p, z, r: model.apply({"params": p}, z, r, 1.0, method=MusicVAE.decode))
    z = jax.random.normal(jax.random.key(1), (num, spec.z_size))
    start = time.perf_counter()
    jax.block_until_ready(decode(params, z, jax.random.key(2)))
    compile_seconds = time.perf_counter() - start
    best = float("inf")
    for i in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(decode(params, z, jax.random.key(3 + i)))
        best = min(best, time.perf_counter() - start)
    return compile_seconds, best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", choices=("real", "tiny", "both"), default="both")
    args = parser.parse_args()
    print(f"machine: {machine()}, backend {jax.default_backend()}")
    print(f"| config | size | compile s | sample {args.num} s | sequences/s |")
    print("|---|---|---|---|---|")
    sizes = ("real", "tiny") if args.size == "both" else (args.size,)
    for name, (module, variant) in CONFIGS.items():
        for size in sizes:
            if size == "tiny" and variant == "big":
                continue
            config = module.get_config(",".join(v for v in (variant, "tiny" if size == "tiny" else "") if v))
            compile_seconds, best = sample_seconds(config, args.num, args.repeats)
            print(f"| {name} | {size} | {compile_seconds:.1f} | {best:.3f} | {args.num / best:.1f} |", flush=True)


if __name__ == "__main__":
    main()
