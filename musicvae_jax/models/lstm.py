"""LSTM stacks as plain weights plus pure scan functions.

Flax modules here only create and hand out weights; the time loops are plain
`jax.lax.scan`s over those arrays, so decoders can nest them (bars inside a
sampling loop, a sampled token fed back) without lifting modules through
transforms.

Two ways to compute a layer over a known input sequence, picked by
`hoist_input_projection` (measure per backend, see BENCHMARKS.md):
- fused (False): per step one matmul of [x, h] with the stacked [W_x; W_h];
- hoisted (True): x @ W_x for every step at once before the loop, then only
  h @ W_h inside it.
Gate order is (input, cell, forget, output); the forget gate's bias starts at
1.0 as in the reference.

Mixed precision: weight modules hand out their kernels cast to `dtype`
(parameters stay float32), and `dot` multiplies in the kernel's dtype with
float32 results, so biases, gates, cell states and everything after them
stay float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

LayerWeights = dict[str, jax.Array]  # w_x [in, 4H], w_h [H, 4H], b [4H]
Carry = tuple[jax.Array, jax.Array]  # (c, h), each [batch, H]


def dot(a: jax.Array, kernel: jax.Array) -> jax.Array:
    """a @ kernel computed in the kernel's dtype (bfloat16 under mixed precision), returned as float32."""
    return jnp.matmul(a.astype(kernel.dtype), kernel, preferred_element_type=jnp.float32)


def _lstm_bias_init(key, shape, dtype=jnp.float32):
    hidden = shape[0] // 4
    return jnp.zeros(shape, dtype).at[2 * hidden : 3 * hidden].set(1.0)


class LSTMStackWeights(nn.Module):
    """Creates the weights of a stack of LSTM layers; returns them as a list of dicts.

    With `bidirectional`, layers above the first take both directions' outputs.
    """

    sizes: Sequence[int]
    bidirectional: bool = False
    dtype: Any = jnp.float32  # of the kernels handed out (matmul precision)

    @nn.compact
    def __call__(self, input_size: int) -> list[LayerWeights]:
        weights = []
        for i, hidden in enumerate(self.sizes):
            w_x = self.param(f"w_x_{i}", nn.initializers.glorot_uniform(), (input_size, 4 * hidden))
            w_h = self.param(f"w_h_{i}", nn.initializers.orthogonal(), (hidden, 4 * hidden))
            weights.append(
                {
                    "w_x": w_x.astype(self.dtype),
                    "w_h": w_h.astype(self.dtype),
                    "b": self.param(f"b_{i}", _lstm_bias_init, (4 * hidden,)),
                }
            )
            input_size = 2 * hidden if self.bidirectional else hidden
        return weights


def _gates_to_carry(gates: jax.Array, c: jax.Array) -> Carry:
    i, g, f, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return c, jax.nn.sigmoid(o) * jnp.tanh(c)


def cell_step(w: LayerWeights, carry: Carry, x: jax.Array) -> Carry:
    """One LSTM step with a single fused gate matmul."""
    c, h = carry
    fused = jnp.concatenate([w["w_x"], w["w_h"]], axis=0)
    gates = dot(jnp.concatenate([x, h], axis=-1), fused) + w["b"]
    return _gates_to_carry(gates, c)


def stack_step(weights: list[LayerWeights], carries: list[Carry], x: jax.Array, keep_masks=None):
    """One step through every layer. Returns (new carries, top output h)."""
    new = []
    for i, (w, carry) in enumerate(zip(weights, carries, strict=True)):
        if keep_masks is not None:
            x = x * keep_masks[i]
        carry = cell_step(w, carry, x)
        new.append(carry)
        x = carry[1]
    return new, x


def zero_carries(sizes: Sequence[int], batch: int, dtype=jnp.float32) -> list[Carry]:
    return [(jnp.zeros((batch, s), dtype), jnp.zeros((batch, s), dtype)) for s in sizes]


def run_layer(
    w: LayerWeights,
    inputs: jax.Array,
    carry: Carry,
    lengths: jax.Array | None = None,
    hoist_input_projection: bool = False,
    unroll: int = 1,
) -> tuple[jax.Array, Carry]:
    """One layer over a whole sequence.

    inputs [batch, T, in] -> outputs [batch, T, H] and the final carry. With
    `lengths` [batch], steps at or past an example's length leave its carry
    unchanged (so the final carry is the one at length - 1) and output zeros.
    """
    steps = inputs.shape[1]
    time_major = jnp.swapaxes(inputs, 0, 1)
    if hoist_input_projection:
        projected = dot(time_major, w["w_x"])

        def advance(carry, x_proj):
            c, h = carry
            return _gates_to_carry(x_proj + dot(h, w["w_h"]) + w["b"], c)

        xs = projected
    else:

        def advance(carry, x):
            return cell_step(w, carry, x)

        xs = time_major

    def body(carry, scanned):
        t, x = scanned
        new = advance(carry, x)
        if lengths is not None:
            valid = (t < lengths)[:, None]
            new = (jnp.where(valid, new[0], carry[0]), jnp.where(valid, new[1], carry[1]))
            return new, jnp.where(valid, new[1], 0.0)
        return new, new[1]

    carry, outputs = jax.lax.scan(body, carry, (jnp.arange(steps), xs), unroll=unroll)
    return jnp.swapaxes(outputs, 0, 1), carry


def run_stack(
    weights: list[LayerWeights],
    inputs: jax.Array,
    carries: list[Carry],
    *,
    lengths: jax.Array | None = None,
    hoist_input_projection: bool = False,
    unroll: int = 1,
    dropout_keep: float = 1.0,
    dropout_rng: jax.Array | None = None,
) -> tuple[jax.Array, list[Carry]]:
    """The stack layer by layer over a known sequence: [batch, T, in] -> [batch, T, H_top]."""
    finals = []
    x = inputs
    for i, (w, carry) in enumerate(zip(weights, carries, strict=True)):
        if dropout_keep < 1.0:
            keep = jax.random.bernoulli(jax.random.fold_in(dropout_rng, i), dropout_keep, x.shape)
            x = jnp.where(keep, x / dropout_keep, 0.0)
        x, final = run_layer(w, x, carry, lengths, hoist_input_projection, unroll)
        finals.append(final)
    return x, finals


def reverse_by_length(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """Reverses each example's first `length` steps in time; later steps become zeros."""
    steps = x.shape[1]
    t = jnp.arange(steps)[None, :]
    index = lengths[:, None] - 1 - t
    valid = index >= 0
    gathered = jnp.take_along_axis(x, jnp.clip(index, 0, steps - 1)[..., None], axis=1)
    return jnp.where(valid[..., None], gathered, 0.0)
