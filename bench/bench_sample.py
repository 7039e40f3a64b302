"""Time to sample 32 sequences per model family, and to encode 32, after compilation.

    python bench/bench_sample.py [--num 32] [--repeats 3] [--size real|tiny|both]

Sampling decodes from the prior; encoding (mu and sigma of random
sequences) is the first half of a reconstruction or an interpolation.
Parameters are freshly initialised (the cost does not depend on their
values); each figure is the best of --repeats timed calls of the jitted
function, blocked on the result.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import CONFIGS, random_batch  # noqa: E402
from common import machine  # noqa: E402

from musicvae_jax import host_memory, train  # noqa: E402
from musicvae_jax.models.vae import MusicVAE  # noqa: E402


def first_and_best(call, repeats: int) -> tuple[float, float]:
    """Seconds of `call(i)`'s first run (compilation included) and the best of `repeats` later runs."""
    seconds = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        jax.block_until_ready(call(i))
        seconds.append(time.perf_counter() - start)
    return seconds[0], min(seconds[1:])


def model_and_params(config) -> tuple[MusicVAE, dict]:
    spec, tspec = train.model_spec(config), train.TrainSpec.from_config(config)
    return MusicVAE(spec), train.create_state(spec, tspec, jax.random.key(0)).params


def sample_seconds(config, num: int = 32, repeats: int = 3) -> tuple[float, float]:
    """(first call with compilation, best of `repeats` later calls) of sampling `num` sequences, in seconds."""
    model, params = model_and_params(config)
    decode = jax.jit(lambda p, z, r: model.apply({"params": p}, z, r, 1.0, method=MusicVAE.decode))
    z = jax.random.normal(jax.random.key(1), (num, model.spec.z_size))
    return first_and_best(lambda i: decode(params, z, jax.random.key(2 + i)), repeats)


def encode_seconds(config, num: int = 32, repeats: int = 3) -> tuple[float, float]:
    """The same for encoding `num` random sequences of the config's representation (mu and sigma)."""
    model, params = model_and_params(config)
    encode = jax.jit(lambda p, batch: model.apply({"params": p}, batch, method=MusicVAE.encode))
    batch = {k: jax.numpy.asarray(v) for k, v in random_batch(model.spec.representation, num).items()}
    return first_and_best(lambda i: encode(params, batch), repeats)


def main() -> None:
    host_memory.set_up()  # before JAX starts its threads
    parser = argparse.ArgumentParser()
    parser.add_argument("--num", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", choices=("real", "tiny", "both"), default="both")
    args = parser.parse_args()
    print(f"machine: {machine()}, backend {jax.default_backend()}")
    print(f"| config | size | compile s | sample {args.num} s | sequences/s | encode {args.num} s | sequences/s |")
    print("|---|---|---|---|---|---|---|")
    sizes = ("real", "tiny") if args.size == "both" else (args.size,)
    for name, (module, variant) in CONFIGS.items():
        for size in sizes:
            if size == "tiny" and variant == "big":
                continue
            config = module.get_config(",".join(v for v in (variant, "tiny" if size == "tiny" else "") if v))
            compile_seconds, best = sample_seconds(config, args.num, args.repeats)
            encoding = encode_seconds(config, args.num, args.repeats)[1]
            print(
                f"| {name} | {size} | {compile_seconds:.1f} | {best:.3f} | {args.num / best:.1f} "
                f"| {encoding:.4f} | {args.num / encoding:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
