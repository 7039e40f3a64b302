"""Training-step speed per config, as a fraction of an in-process matmul's FLOP/s.

    python bench/bench_train.py                         # every config, real size (reduced batch) and tiny
    python bench/bench_train.py --only trio:tiny --steps 20 --hoist both

For each config: compile time, median step time over --steps steps after
one warm-up step (each step blocked on), examples/s, model FLOPs per step
(bench/flops.py) and achieved FLOP/s as a fraction of a large jitted float32
matmul measured at the start of the same run. Batches are random tokens of
the representation's layout (a step's cost does not depend on the notes).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_seconds  # noqa: E402
from flops import train_step_flops  # noqa: E402

from configs import drums_2bar, groovae, mel_2bar, mel_16bar, trio  # noqa: E402
from musicvae_jax import host_memory, train  # noqa: E402
from musicvae_jax.models.vae import MusicVAE  # noqa: E402
from musicvae_jax.representations import get_representation  # noqa: E402

CONFIGS = {
    "mel_2bar_small": (mel_2bar, ""),
    "mel_2bar_big": (mel_2bar, "big"),
    "drums_2bar_small": (drums_2bar, ""),
    "drums_2bar_big": (drums_2bar, "big"),
    "mel_16bar_hier": (mel_16bar, ""),
    "mel_16bar_flat": (mel_16bar, "flat"),
    "trio_16bar_hier": (trio, ""),
    "trio_16bar_flat": (trio, "flat"),
    "groovae_2bar_humanize": (groovae, ""),
    "groovae_4bar": (groovae, "4bar"),
}


def matmul_flops_per_second(size: int = 2048, repeats: int = 10, dtype=jnp.float32) -> float:
    """A square product's FLOP/s, accumulated and returned in float32 as the model's products are.

    (A bfloat16 result instead took XLA's CPU to a kernel at about a fifth of the rate, on a CPU with AMX.)
    """
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    f = jax.jit(lambda x: jnp.matmul(x, x, preferred_element_type=jnp.float32))
    return 2 * size**3 / median_seconds(lambda: f(a).block_until_ready(), repeats)


def random_batch(representation: str, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rep = get_representation(representation)
    batch = {}
    for name, field in rep.fields.items():
        shape = (batch_size, *field.shape)
        if len(field.shape) == 2:
            batch[name] = (rng.random(shape) < 0.2).astype(np.float32)
        else:
            batch[name] = rng.integers(0, 512 if field.dtype == "uint16" else 90, shape).astype(np.int32)
    batch["lengths"] = np.full(batch_size, rep.num_steps, np.int32)
    batch["weights"] = np.ones(batch_size, np.float32)
    return batch


def step_setup(config):
    """The jitted train step (state donated) and what it is called with: (step, state, random batch, rng)."""
    spec, tspec = train.model_spec(config), train.TrainSpec.from_config(config)
    state = train.create_state(spec, tspec, jax.random.key(0))
    step = jax.jit(functools.partial(train.train_step, model=MusicVAE(spec), spec=tspec), donate_argnums=(0,))
    batch = {k: jnp.asarray(v) for k, v in random_batch(spec.representation, config.batch_size).items()}
    return step, state, batch, jax.random.key(1)


def time_config(config, steps: int) -> dict:
    spec = train.model_spec(config)
    step, state, batch, rng = step_setup(config)
    start = time.perf_counter()
    compiled = step.lower(state, batch, rng).compile()
    compile_seconds = time.perf_counter() - start
    state, metrics = compiled(state, batch, rng)  # warm-up
    jax.block_until_ready((state, metrics))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batch, rng)
        jax.block_until_ready((state, metrics))  # the update too: on a GPU it may finish after the loss
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    flops = train_step_flops(spec, config.batch_size)
    return {
        "compile_s": compile_seconds,
        "step_s": seconds,
        "examples_per_s": config.batch_size / seconds,
        "flops": flops,
        "flops_per_s": flops / seconds,
    }


def main() -> None:
    host_memory.set_up()  # before JAX starts its threads
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="comma-separated NAME or NAME:tiny")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--real_batch", type=int, default=8, help="batch for the reference sizes (CPU time)")
    parser.add_argument("--hoist", choices=("off", "on", "both"), default="off")
    parser.add_argument("--sequence_vjp", choices=("off", "on", "both"), default="on", help="see models/lstm.py")
    parser.add_argument("--unroll", default="1", help="comma-separated lax.scan unroll factors to time")
    args = parser.parse_args()
    peak = matmul_flops_per_second()
    print(f"machine: {machine()}, backend {jax.default_backend()}")
    print(f"in-process float32 2048x2048 matmul: {peak / 1e9:.1f} GFLOP/s")
    print(
        "| config | size | batch | sequence_vjp | hoisted | unroll | compile s | step s | examples/s | GFLOP/step "
        "| GFLOP/s | of matmul |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    wanted = [w for w in args.only.split(",") if w]
    for name, (module, variant) in CONFIGS.items():
        for size in ("real", "tiny"):
            if wanted and name not in wanted and f"{name}:{size}" not in wanted:
                continue
            if size == "tiny" and variant == "big":
                continue  # the same tiny model as the family's default
            choices = {"off": (False,), "on": (True,), "both": (False, True)}
            unrolls = [int(u) for u in args.unroll.split(",")]
            for sequence_vjp, hoist, unroll in itertools.product(
                choices[args.sequence_vjp], choices[args.hoist], unrolls
            ):
                if hoist and sequence_vjp:
                    continue  # the sequence backward pass projects before the loop either way
                config = module.get_config(",".join(v for v in (variant, "tiny" if size == "tiny" else "") if v))
                if size == "real":
                    config.batch_size = args.real_batch
                config.model.hoist_input_projection = hoist
                config.model.sequence_vjp = sequence_vjp
                config.model.unroll = unroll
                r = time_config(config, args.steps)
                yes_no = lambda b: "yes" if b else "no"  # noqa: E731
                print(
                    f"| {name} | {size} | {config.batch_size} | {yes_no(sequence_vjp)} | {yes_no(hoist)} | {unroll} | "
                    f"{r['compile_s']:.1f} | "
                    f"{r['step_s']:.3f} | {r['examples_per_s']:.1f} | {r['flops'] / 1e9:.1f} | "
                    f"{r['flops_per_s'] / 1e9:.1f} | {r['flops_per_s'] / peak:.0%} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
