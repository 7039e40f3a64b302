"""Which way round XLA's CPU matmul is fastest for an LSTM's per-step product, by shape.

    python bench/bench_layout.py

A scan of 16 dependent steps h <- tanh((gates of h)[:H]) per shape, with
the [4H, H] recurrent weights used three ways: rows h [B, H] against W
stored [out, in] (contracting both last axes) or stored [in, out], and
feature-major W [4H, H] @ h^T [H, B] (the weights on the left, the state
kept transposed). models/lstm.py's sequence pass runs feature-major.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

SHAPES = ((4, 2048), (32, 256), (32, 512), (32, 1024), (32, 2048), (128, 1024), (128, 2048), (512, 512))
STEPS = 16


def _seconds(fn, *args, repeats: int = 7) -> float:
    fn = jax.jit(fn)
    for _ in range(2):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def variants(hidden: int):
    def rows_out_in(w, h):  # h [B, H] . W [4H, H] over both last axes
        step = lambda h, _: (jnp.tanh(jax.lax.dot_general(h, w, (((1,), (1,)), ((), ())))[:, :hidden]), None)  # noqa: E731
        return jax.lax.scan(step, h, None, length=STEPS)[0]

    def rows_in_out(w_t, h):  # h [B, H] @ W [H, 4H]
        return jax.lax.scan(lambda h, _: (jnp.tanh((h @ w_t)[:, :hidden]), None), h, None, length=STEPS)[0]

    def feature_major(w, h_t):  # W [4H, H] @ h^T [H, B]
        return jax.lax.scan(lambda h, _: (jnp.tanh((w @ h)[:hidden]), None), h_t, None, length=STEPS)[0]

    return rows_out_in, rows_in_out, feature_major


def main() -> None:
    print(f"machine: {machine()}, jax {jax.__version__}, backend {jax.default_backend()}")
    print("| batch | hidden | h @ W[out, in]^T | h @ W[in, out] | W[out, in] @ h^T (feature-major) |")
    print("|---|---|---|---|---|")
    for batch, hidden in SHAPES:
        w = jax.random.normal(jax.random.key(0), (4 * hidden, hidden)) * 0.03
        h = jax.random.normal(jax.random.key(1), (batch, hidden))
        rows_out_in, rows_in_out, feature_major = variants(hidden)
        flops = STEPS * 2 * batch * hidden * 4 * hidden
        rates = [
            flops / _seconds(rows_out_in, w, h),
            flops / _seconds(rows_in_out, w.T + 0.0, h),
            flops / _seconds(feature_major, w, h.T + 0.0),
        ]
        print(f"| {batch} | {hidden} | " + " | ".join(f"{r / 1e9:.0f} GFLOP/s" for r in rates) + " |", flush=True)


if __name__ == "__main__":
    main()
