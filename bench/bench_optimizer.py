"""The optimiser's update alone: our clipped Adam against optax's own clipping and against Adam with no clipping.

    python bench/bench_optimizer.py --only mel_2bar_big,mel_16bar_hier,trio_16bar_hier --steps 7

For each config at reference size: the jitted update of a TrainState
(`apply_gradients`, state donated, as in the training step) from fixed
random gradients, the median of --steps after a warm-up, in one process
and alternated --rounds times. The floor is the same arithmetic written as
one elementwise pass per parameter (reads parameter, gradient and both
moments once, writes three), which is what the update's memory traffic
allows.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_seconds  # noqa: E402
from suite import config_for  # noqa: E402

from musicvae_jax import host_memory, objectives, train  # noqa: E402


def transforms(spec: train.TrainSpec) -> dict[str, optax.GradientTransformation]:
    schedule = functools.partial(
        objectives.learning_rate, initial=spec.learning_rate, decay_rate=spec.decay_rate, minimum=spec.min_learning_rate
    )
    optax_clip = optax.chain(optax.clip_by_global_norm(spec.clip_norm), optax.adam(schedule))
    return {
        "ours (train.make_optimizer)": train.make_optimizer(spec),
        "optax.clip_by_global_norm + adam": optax_clip,
        "adam, no clipping": optax.adam(schedule),
    }


def one_pass_adam(state: tuple, grads, lr: float = 1e-3):
    """The floor: Adam's arithmetic in one elementwise pass per parameter, (params, mu, nu) in and out."""

    def leaf(p, g, m, v):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        return p - lr * m / (jnp.sqrt(v) + 1e-8), m, v

    params, mu, nu = state
    out = jax.tree.map(leaf, params, grads, mu, nu)
    return jax.tree.transpose(jax.tree.structure(params), jax.tree.structure((0, 0, 0)), out)


def time_update(init, update, grads, steps: int) -> float:
    step = jax.jit(update, donate_argnums=(0,))
    holder = [init()]

    def run():
        holder[0] = step(holder[0], grads)
        jax.block_until_ready(holder[0])

    return median_seconds(run, steps)


def rows(name: str, steps: int, rounds: int):
    """(parameter count, update, round, seconds) for each update of one config, alternated `rounds` times."""
    config = config_for(name, "real", 1, 1)
    spec, tspec = train.model_spec(config), train.TrainSpec.from_config(config)
    params = train.create_state(spec, tspec, jax.random.key(0)).params
    keys = iter(jax.random.split(jax.random.key(1), len(jax.tree.leaves(params))))
    grads = jax.tree.map(lambda p: 1e-3 * jax.random.normal(next(keys), p.shape, p.dtype), params)
    count = sum(p.size for p in jax.tree.leaves(params))
    apply = lambda state, grads: state.apply_gradients(grads=grads)  # noqa: E731
    for round_ in range(1, rounds + 1):
        for label, tx in transforms(tspec).items():
            fresh = functools.partial(
                train_state.TrainState.create, apply_fn=None, params=jax.tree.map(jnp.copy, params), tx=tx
            )
            yield count, label, round_, time_update(fresh, apply, grads, steps)
        fresh = functools.partial(jax.tree.map, jnp.copy, (params, params, params))
        yield count, "floor: one pass per parameter", round_, time_update(fresh, one_pass_adam, grads, steps)


def main():
    host_memory.set_up()  # before JAX starts its threads
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="mel_2bar_big,mel_16bar_hier,trio_16bar_hier")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"{machine()}, backend {jax.default_backend()}, jax {jax.__version__}, optax {optax.__version__}")
    print("| config | parameters | update | round | ms |\n|---|---|---|---|---|")
    for name in args.only.split(","):
        for count, label, round_, seconds in rows(name, args.steps, args.rounds):
            print(f"| {name} | {count / 1e6:.1f} M | {label} | {round_} | {seconds * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
