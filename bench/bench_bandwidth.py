"""Whether a CPU's second core helps the 16-bar encoder's memory-bound recurrence.

    python bench/bench_bandwidth.py              # batch 4, the suite's 16-bar rows
    python bench/bench_bandwidth.py --batch 16

At a small batch each step of the 2048-unit encoder streams its [8192, 2048]
float32 recurrent weights (64 MB) from memory for a few columns of state, so
the step time has a floor of bytes over bandwidth. This prints the machine's
read bandwidth, the per-step product's in a loop, and two ways the second
core could lift that floor: the two directions' products in one loop (more
bandwidth, if the cores have their own), and the loop beside a compute-bound
matmul in one program or on two threads (overlap). "parts" is the sum of the
pieces timed alone; a combined time near it means the second core adds
nothing there. A second table asks the same of the last-level cache: the
product's rate for weights of 64, 32 and 16 MiB, and the 64-MiB weights read
as row blocks in alternating order each step (the blocks read last in one
step are read first in the next, while they may still be cached).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import jitted_seconds, machine, median_seconds  # noqa: E402

from musicvae_jax import host_memory  # noqa: E402

HIDDEN, STEPS = 2048, 64


def product_loop(w: jax.Array, h: jax.Array) -> jax.Array:
    """STEPS dependent products W [4H, H] @ h [H, B], as the sequence pass runs them (feature-major)."""
    step = lambda h, _: (jnp.tanh(w @ h)[:HIDDEN], None)  # noqa: E731
    return jax.lax.scan(step, h, None, length=STEPS)[0].sum()


def two_direction_loop(w1: jax.Array, w2: jax.Array, h: jax.Array) -> jax.Array:
    """Two independent recurrences, one product of each a step."""

    def step(carry, _):
        a, b = carry
        return (jnp.tanh(w1 @ a)[:HIDDEN], jnp.tanh(w2 @ b)[:HIDDEN]), None

    a, b = jax.lax.scan(step, (h, h), None, length=STEPS)[0]
    return a.sum() + b.sum()


def alternating_blocks_loop(w: jax.Array, h: jax.Array, blocks: int = 4) -> jax.Array:
    """product_loop with W's row blocks read in order on even steps and in reverse on odd ones, one after another."""
    parts = jnp.split(w, blocks)

    def product(h, order):
        out = [None] * blocks
        for i in order:  # the barrier keeps XLA from reordering or running the blocks side by side
            out[i], h = jax.lax.optimization_barrier((parts[i] @ h, h))
        return jnp.tanh(jnp.concatenate(out))[:HIDDEN]

    forward = list(range(blocks))
    step = lambda h, _: (product(product(h, forward), forward[::-1]), None)  # noqa: E731
    return jax.lax.scan(step, h, None, length=STEPS // 2)[0].sum()


def print_cache_table(w: jax.Array, h: jax.Array, per_product: float) -> None:
    """The per-step product's weight rate by weight size, and with the alternating read order."""
    print("| per-step product | ms | GB/s of weights |")
    print("|---|---|---|")
    rate = w.nbytes / per_product / 1e9
    print(f"| [8192, 2048] (64 MiB), as the model runs it | {per_product * 1e3:.2f} | {rate:.1f} |")
    for rows in (4096, 2048):  # the loop keeps the first 2048 rows as the next state
        part = w[:rows]
        seconds = jitted_seconds(product_loop, part, h) / STEPS
        print(f"| [{rows}, 2048] ({part.nbytes >> 20} MiB) | {seconds * 1e3:.2f} | {part.nbytes / seconds / 1e9:.1f} |")
    seconds = jitted_seconds(alternating_blocks_loop, w, h) / STEPS
    print(f"| [8192, 2048] as 4 row blocks, alternating order | {seconds * 1e3:.2f} | {w.nbytes / seconds / 1e9:.1f} |")


def _on_two_threads(f, f_args, g, g_args, repeats: int = 5) -> float:
    """The median wall time of f and g started together on two Python threads (JAX releases the GIL)."""
    f, g = jax.jit(f), jax.jit(g)
    jax.block_until_ready((f(*f_args), g(*g_args)))

    def both():
        threads = [
            threading.Thread(target=lambda fn=fn, a=a: jax.block_until_ready(fn(*a)))
            for fn, a in ((f, f_args), (g, g_args))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return median_seconds(both, repeats, warmup=0)


def main() -> None:
    host_memory.set_up()  # before JAX starts its threads
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="state columns of the per-step product")
    batch = parser.parse_args().batch
    keys = jax.random.split(jax.random.key(0), 5)
    w1, w2 = (jax.random.normal(k, (4 * HIDDEN, HIDDEN)) * 0.01 for k in keys[:2])
    h = jax.random.normal(keys[2], (HIDDEN, batch))
    a, b = jax.random.normal(keys[3], (1024, 4096)), jax.random.normal(keys[4], (4096, 8192)) * 0.01
    big = jnp.ones((64 * 1024 * 1024,), jnp.float32)
    print(f"machine: {machine()}, jax {jax.__version__}, backend {jax.default_backend()}; batch {batch}")

    read = jitted_seconds(jnp.sum, big)
    print(f"read bandwidth (sum of {big.nbytes / 2**20:.0f} MiB): {big.nbytes / read / 1e9:.1f} GB/s")
    one = jitted_seconds(product_loop, w1, h)
    per_product = one / STEPS
    rate = w1.nbytes / per_product / 1e9
    print(f"per-step product in a {STEPS}-step loop: {per_product * 1e3:.2f} ms, {rate:.1f} GB/s of weights")
    matmul = jitted_seconds(lambda a, b: (a @ b).sum(), a, b)
    rows = [
        (
            "two directions, one loop after the other",
            jitted_seconds(lambda w1, w2, h: product_loop(w1, h) + product_loop(w2, h), w1, w2, h),
            2 * one,
        ),
        ("two directions, both products in one loop", jitted_seconds(two_direction_loop, w1, w2, h), 2 * one),
        (
            "the loop and a [1024, 4096] x [4096, 8192] matmul in one program",
            jitted_seconds(lambda w, h, a, b: product_loop(w, h) + (a @ b).sum(), w1, h, a, b),
            one + matmul,
        ),
        (
            "the same two on two threads",
            _on_two_threads(product_loop, (w1, h), lambda a, b: (a @ b).sum(), (a, b)),
            one + matmul,
        ),
    ]
    print(f"the matmul alone: {matmul:.3f} s ({2 * 1024 * 4096 * 8192 / matmul / 1e9:.0f} GFLOP/s)")
    print("| combined | s | parts, each alone, s | combined / parts |")
    print("|---|---|---|---|")
    for name, seconds, parts in rows:
        print(f"| {name} | {seconds:.3f} | {parts:.3f} | {seconds / parts:.2f} |")
    print()
    print_cache_table(w1, h, per_product)


if __name__ == "__main__":
    main()
