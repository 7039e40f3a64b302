"""Bidirectional LSTM encoder: sequence -> (mu, sigma) of q(z | x).

Both directions of a layer run as one batched scan (the weights stacked on a
leading axis of 2 and the scan vmapped over it). Each layer after the first
reads both directions' outputs. h is the final state of the top forward and
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
        run_both = jax.vmap(
            lambda w, x, carry: run_layer(
                w, x, carry, lengths, self.hoist_input_projection, self.unroll, self.sequence_vjp
            )
        )
        x = inputs
        for i, size in enumerate(self.sizes):
            weights = jax.tree.map(lambda f, b: jnp.stack([f, b]), forward[i], backward[i])
            both = jnp.stack([x, reverse_by_length(x, lengths)])
            carries = jax.tree.map(lambda a: jnp.stack([a, a]), zero_carries([size], x.shape[0], x.dtype)[0])
            outputs, (_, final_h) = run_both(weights, both, carries)
            x = jnp.concatenate([outputs[0], reverse_by_length(outputs[1], lengths)], axis=-1)
        h = jnp.concatenate([final_h[0], final_h[1]], axis=-1)
        mu = nn.Dense(self.z_size, dtype=dtype, name="mu")(h).astype(jnp.float32)
        sigma = jax.nn.softplus(nn.Dense(self.z_size, dtype=dtype, name="sigma")(h).astype(jnp.float32))
        return mu, sigma
