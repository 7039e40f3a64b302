"""Which way round XLA's CPU matmul is fastest for an LSTM's per-step product, by shape.

    python bench/bench_layout.py
    python bench/bench_layout.py --dtype bfloat16   # bfloat16 weights, float32 state and results

Then one product of the 2048-unit encoder's [8192, 2048] recurrent weights
with 1 and 4 state columns, as GB/s of weights read: how close the
per-step product of a small batch is to the machine's memory bandwidth.

A scan of 16 dependent steps h <- tanh((gates of h)[:H]) per shape, with
the [4H, H] recurrent weights used three ways: rows h [B, H] against W
stored [out, in] (contracting both last axes) or stored [in, out], and
feature-major W [4H, H] @ h^T [H, B] (the weights on the left, the state
kept transposed). models/lstm.py's sequence pass runs feature-major.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import jitted_seconds, machine  # noqa: E402

from musicvae_jax import host_memory  # noqa: E402

SHAPES = ((4, 2048), (32, 256), (32, 512), (32, 1024), (32, 2048), (128, 1024), (128, 2048), (512, 512))
STEPS = 16


def _product(a, b, contracting):
    """a . b over the given axes, in the weights' dtype (whichever operand is not float32), float32 out."""
    dtype = b.dtype if a.dtype == jnp.float32 else a.dtype
    return jax.lax.dot_general(
        a.astype(dtype), b.astype(dtype), (contracting, ((), ())), preferred_element_type=jnp.float32
    )


def variants(hidden: int):
    def rows_out_in(w, h):  # h [B, H] . W [4H, H] over both last axes
        step = lambda h, _: (jnp.tanh(_product(h, w, ((1,), (1,)))[:, :hidden]), None)  # noqa: E731
        return jax.lax.scan(step, h, None, length=STEPS)[0]

    def rows_in_out(w_t, h):  # h [B, H] @ W [H, 4H]
        step = lambda h, _: (jnp.tanh(_product(h, w_t, ((1,), (0,)))[:, :hidden]), None)  # noqa: E731
        return jax.lax.scan(step, h, None, length=STEPS)[0]

    def feature_major(w, h_t):  # W [4H, H] @ h^T [H, B]
        step = lambda h, _: (jnp.tanh(_product(w, h, ((1,), (0,)))[:hidden]), None)  # noqa: E731
        return jax.lax.scan(step, h_t, None, length=STEPS)[0]

    return rows_out_in, rows_in_out, feature_major


def main() -> None:
    host_memory.set_up()  # before JAX starts its threads
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="of the weights")
    dtype = jnp.dtype(parser.parse_args().dtype)
    print(f"machine: {machine()}, jax {jax.__version__}, backend {jax.default_backend()}, weights {dtype.name}")
    print("| batch | hidden | h @ W[out, in]^T | h @ W[in, out] | W[out, in] @ h^T (feature-major) |")
    print("|---|---|---|---|---|")
    for batch, hidden in SHAPES:
        w = (jax.random.normal(jax.random.key(0), (4 * hidden, hidden)) * 0.03).astype(dtype)
        h = jax.random.normal(jax.random.key(1), (batch, hidden))
        rows_out_in, rows_in_out, feature_major = variants(hidden)
        flops = STEPS * 2 * batch * hidden * 4 * hidden
        rates = [
            flops / jitted_seconds(rows_out_in, w, h),
            flops / jitted_seconds(rows_in_out, w.T.copy(), h),
            flops / jitted_seconds(feature_major, w, h.T.copy()),
        ]
        print(f"| {batch} | {hidden} | " + " | ".join(f"{r / 1e9:.0f} GFLOP/s" for r in rates) + " |", flush=True)
    w = (jax.random.normal(jax.random.key(0), (4 * 2048, 2048)) * 0.03).astype(dtype)
    for columns in (1, 4):
        h = jax.random.normal(jax.random.key(1), (2048, columns))
        seconds = jitted_seconds(lambda w, h: _product(w, h, ((1,), (0,))), w, h, repeats=20)
        rate = w.nbytes / seconds / 1e9
        print(f"one [8192, 2048] x [2048, {columns}] product: {seconds * 1e3:.2f} ms, {rate:.0f} GB/s of weights")


if __name__ == "__main__":
    main()
