"""Bidirectional LSTM encoder: sequence -> (mu, sigma) of q(z | x).

The two directions of a layer run one after the other by default: as one
vmapped scan, or as two scans XLA may run at once, they competed for the
CPU's cores and were 3-8% slower (BENCHMARKS.md). `batch_directions` runs
them as one vmapped scan, each step's two products one batched product,
for accelerators where one product of a step leaves the chip half idle.
Each layer after the first reads both directions' outputs. h is the final
state of the top forward and top backward layers; mu = W h + b,
sigma = softplus(W' h + b').
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from musicvae_jax.models.lstm import (
    LECUN_NORMAL_IN_OUT,
    LSTMStackWeights,
    reverse_by_length,
    run_layer,
    run_projected_layer,
    zero_carries,
)

# (kernel [4H, features], reversed) -> the inputs (time-reversed by length if reversed) @ kernel.T [batch, T, 4H]
InputProjection = Callable[[jax.Array, bool], jax.Array]


class BidirectionalEncoder(nn.Module):
    sizes: Sequence[int]
    z_size: int
    hoist_input_projection: bool = False
    unroll: int = 1
    compute_dtype: str = "float32"
    sequence_vjp: bool = True
    batch_directions: bool = False

    def setup(self):
        dtype = jnp.dtype(self.compute_dtype)
        self.forward = LSTMStackWeights(self.sizes, True, dtype)
        self.backward = LSTMStackWeights(self.sizes, True, dtype)
        self.mu = nn.Dense(self.z_size, dtype=dtype, kernel_init=LECUN_NORMAL_IN_OUT)
        self.sigma = nn.Dense(self.z_size, dtype=dtype, kernel_init=LECUN_NORMAL_IN_OUT)

    def create_weights(self, input_size: int) -> None:
        """Creates every parameter without tracing a pass over a sequence."""
        self.forward(input_size)
        self.backward(input_size)
        h = jnp.zeros((1, 2 * self.sizes[-1]), jnp.float32)
        self.mu(h)
        self.sigma(h)

    def __call__(
        self, inputs: jax.Array, lengths: jax.Array, project: InputProjection | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """inputs [batch, T, features], lengths [batch] -> mu, sigma [batch, z].

        `project`, where given, computes the first layer's input projection
        from `inputs` in a cheaper way than the product (one-hot inputs
        gather their tokens' kernel columns), on the sequence-VJP path.
        """
        forward = self.forward(inputs.shape[-1])
        backward = self.backward(inputs.shape[-1])

        def reads(w, x, reverse, projected):
            """What one direction's pass reads: its input projection plus bias [T, 4H, batch], or its inputs."""
            if projected:
                return jnp.transpose(project(w["w_x"], reverse), (1, 2, 0)) + w["b"][:, None]
            return reverse_by_length(x, lengths) if reverse else x

        def run(w, x, projected):
            carry = zero_carries([w["w_h"].shape[1]], lengths.shape[0], jnp.float32)[0]
            if projected:
                return run_projected_layer(w["w_h"], x, carry, lengths, self.unroll)
            return run_layer(w, x, carry, lengths, self.hoist_input_projection, self.unroll, self.sequence_vjp)

        def both(w_ahead, w_behind, x, projected):
            """One layer's two directions: (outputs, final h) of each."""
            if self.batch_directions:
                w = jax.tree.map(lambda a, b: jnp.stack([a, b]), w_ahead, w_behind)
                xs = jnp.stack([reads(w_ahead, x, False, projected), reads(w_behind, x, True, projected)])
                outputs, (_, h) = jax.vmap(lambda w, x: run(w, x, projected))(w, xs)
                return (outputs[0], h[0]), (outputs[1], h[1])
            ahead, (_, h_ahead) = run(w_ahead, reads(w_ahead, x, False, projected), projected)
            # One direction after the other: run side by side, their scans compete for the cores.
            ahead, behind_reads = jax.lax.optimization_barrier((ahead, reads(w_behind, x, True, projected)))
            behind, (_, h_behind) = run(w_behind, behind_reads, projected)
            return (ahead, h_ahead), (behind, h_behind)

        x = inputs
        for i in range(len(self.sizes)):
            projected = i == 0 and project is not None and self.sequence_vjp
            (ahead, h_ahead), (behind, h_behind) = both(forward[i], backward[i], x, projected)
            x = jnp.concatenate([ahead, reverse_by_length(behind, lengths)], axis=-1)
        h = jnp.concatenate([h_ahead, h_behind], axis=-1)
        mu = self.mu(h).astype(jnp.float32)
        sigma = jax.nn.softplus(self.sigma(h).astype(jnp.float32))
        return mu, sigma
