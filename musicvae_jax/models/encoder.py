"""Bidirectional LSTM encoder: sequence -> (mu, sigma) of q(z | x).

The two directions of a layer run one after the other: as one vmapped scan,
or as two scans XLA may run at once, they competed for the CPU's cores and
were 3-8% slower (BENCHMARKS.md). Each layer after the first reads both
directions' outputs. h is the final state of the top forward and
top backward layers; mu = W h + b, sigma = softplus(W' h + b').
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from musicvae_jax.models.lstm import LSTMStackWeights, reverse_by_length, run_layer, zero_carries


class BidirectionalEncoder(nn.Module):
    sizes: Sequence[int]
    z_size: int
    hoist_input_projection: bool = False
    unroll: int = 1
    compute_dtype: str = "float32"
    sequence_vjp: bool = True

    @nn.compact
    def __call__(self, inputs: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
        """inputs [batch, T, features], lengths [batch] -> mu, sigma [batch, z]."""
        dtype = jnp.dtype(self.compute_dtype)
        forward = LSTMStackWeights(self.sizes, True, dtype, name="forward")(inputs.shape[-1])
        backward = LSTMStackWeights(self.sizes, True, dtype, name="backward")(inputs.shape[-1])

        def run(w, x):
            carry = zero_carries([w["w_h"].shape[1]], x.shape[0], x.dtype)[0]
            return run_layer(w, x, carry, lengths, self.hoist_input_projection, self.unroll, self.sequence_vjp)

        x = inputs
        for i in range(len(self.sizes)):
            ahead, (_, h_ahead) = run(forward[i], x)
            # One direction after the other: run side by side, their scans compete for the cores.
            ahead, reversed_x = jax.lax.optimization_barrier((ahead, reverse_by_length(x, lengths)))
            behind, (_, h_behind) = run(backward[i], reversed_x)
            x = jnp.concatenate([ahead, reverse_by_length(behind, lengths)], axis=-1)
        h = jnp.concatenate([h_ahead, h_behind], axis=-1)
        mu = nn.Dense(self.z_size, dtype=dtype, name="mu")(h).astype(jnp.float32)
        sigma = jax.nn.softplus(nn.Dense(self.z_size, dtype=dtype, name="sigma")(h).astype(jnp.float32))
        return mu, sigma
