"""Decoder cores: an LSTM stack conditioned on a vector, emitting one or more parts.

A core's initial (c, h) per layer is tanh(dense(cond)) split across layers;
its input at each step is the previous value of every part it emits
(one-hot, or 27 groove values) concatenated with `cond`. The flat decoder is
one core conditioned on z; the hierarchical decoder conditions one core per
part on each conductor embedding; the flat trio baseline is one core with
three heads (one dense layer over 90 + 90 + 512 outputs, split).

`teacher_forced` runs layer by layer over known inputs (fast; the U bars of
a hierarchical batch go through as one batch of B*U sequences); `stepwise`
runs every layer per step so that a sampled value can be fed back
(generation); `scheduled_sampling` trains on a mix of true and fed-back
inputs, with the teacher-forced pass's speed where it can.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from musicvae_jax.models.lstm import (
    LSTMStackWeights,
    dot,
    inverted_dropout_masks,
    out_major,
    run_stack,
    stack_step,
)
from musicvae_jax.models.parts import Part


@dataclasses.dataclass(frozen=True)
class CoreSpec:
    sizes: tuple[int, ...]
    parts: tuple[Part, ...]
    hoist_input_projection: bool = False
    unroll: int = 1
    dropout_keep: float = 1.0
    compute_dtype: str = "float32"  # of the matmuls; parameters are float32 either way
    sequence_vjp: bool = True  # see models/lstm.py

    @property
    def input_depth(self) -> int:
        return sum(p.depth for p in self.parts)


class CoreWeights(nn.Module):
    """The weights of one decoder core: LSTM stack, initial-state dense, output head."""

    spec: CoreSpec

    @nn.compact
    def __call__(self, cond_size: int) -> dict:
        spec = self.spec
        dense_init = out_major(nn.initializers.lecun_normal())
        dtype = jnp.dtype(spec.compute_dtype)
        init_kernel = self.param("init_kernel", dense_init, (2 * sum(spec.sizes), cond_size))
        head_kernel = self.param("head_kernel", dense_init, (spec.input_depth, spec.sizes[-1]))
        return {
            "lstm": LSTMStackWeights(spec.sizes, dtype=dtype, name="lstm")(spec.input_depth + cond_size),
            "init_kernel": init_kernel.astype(dtype),
            "init_bias": self.param("init_bias", nn.initializers.zeros, (2 * sum(spec.sizes),)),
            "head_kernel": head_kernel.astype(dtype),
            "head_bias": self.param("head_bias", nn.initializers.zeros, (spec.input_depth,)),
        }


def initial_carries(spec: CoreSpec, weights: dict, cond: jax.Array) -> list:
    """tanh(dense(cond)) split into (c, h) for every layer."""
    state = jnp.tanh(dot(cond, weights["init_kernel"]) + weights["init_bias"])
    carries, offset = [], 0
    for size in spec.sizes:
        c, h = state[:, offset : offset + size], state[:, offset + size : offset + 2 * size]
        carries.append((c, h))
        offset += 2 * size
    return carries


def split_parts(spec: CoreSpec, raw: jax.Array) -> list[jax.Array]:
    """Head output [..., sum of depths] -> one array per part."""
    bounds = [sum(p.depth for p in spec.parts[:i]) for i in range(1, len(spec.parts))]
    return jnp.split(raw, bounds, axis=-1)


def dropout_masks(spec: CoreSpec, rng: jax.Array | None, batch: int, steps: int, cond_size: int) -> list | None:
    """Keep masks [batch, steps, layer input] for every layer of the core; None without dropout."""
    if rng is None or spec.dropout_keep >= 1.0:
        return None
    layer_inputs = [spec.input_depth + cond_size, *spec.sizes[:-1]]
    return inverted_dropout_masks(rng, spec.dropout_keep, [(batch, steps, size) for size in layer_inputs])


def teacher_forced(
    spec: CoreSpec,
    weights: dict,
    cond: jax.Array,
    prev_inputs: jax.Array,
    *,
    lengths: jax.Array | None = None,
    keep_masks: list | None = None,
) -> jax.Array:
    """cond [N, C], prev_inputs [N, S, input_depth] -> raw outputs [N, S, input_depth]."""
    steps = prev_inputs.shape[1]
    inputs = jnp.concatenate(
        [prev_inputs, jnp.broadcast_to(cond[:, None], (*cond.shape[:1], steps, cond.shape[-1]))], -1
    )
    outputs, _ = run_stack(
        weights["lstm"],
        inputs,
        initial_carries(spec, weights, cond),
        lengths=lengths,
        hoist_input_projection=spec.hoist_input_projection,
        unroll=spec.unroll,
        keep_masks=keep_masks,
        sequence_vjp=spec.sequence_vjp,
    )
    return dot(outputs, weights["head_kernel"]) + weights["head_bias"]


class Decoded(NamedTuple):
    raw: jax.Array  # head outputs [N, S, input_depth]
    values: list[jax.Array]  # sampled values per part, [N, S] tokens or [N, S, 27]
    inputs: jax.Array  # the input fed at each step [N, S, input_depth] (without cond)
    last: jax.Array  # the input the next step would get [N, input_depth]
    carries: list  # final (c, h) per layer, so bars can continue one another


def stepwise(
    spec: CoreSpec,
    weights: dict,
    cond: jax.Array,
    first_input: jax.Array,
    num_steps: int,
    rng: jax.Array,
    *,
    temperature: float | jax.Array = 1.0,
    target_inputs: jax.Array | None = None,
    sampling_prob: float | jax.Array = 1.0,
    carries: list | None = None,
    keep_masks: list | None = None,
) -> Decoded:
    """Decodes step by step, feeding back samples.

    With `target_inputs` [N, S, input_depth] (scheduled sampling), each
    example's next input is its own sample with probability `sampling_prob`,
    else the true previous value.
    """
    carries = initial_carries(spec, weights, cond) if carries is None else carries
    masks = None if keep_masks is None else [jnp.swapaxes(m, 0, 1) for m in keep_masks]

    def body(state, scanned):
        carries, prev = state
        t, target, step_masks = scanned
        step_rng = jax.random.fold_in(rng, t)
        carries, h = stack_step(weights["lstm"], carries, jnp.concatenate([prev, cond], -1), step_masks)
        raw = dot(h, weights["head_kernel"]) + weights["head_bias"]
        values, vectors = [], []
        for i, (part, part_raw) in enumerate(zip(spec.parts, split_parts(spec, raw), strict=True)):
            value = part.sample(part_raw, jax.random.fold_in(step_rng, i), temperature)
            values.append(value)
            vectors.append(part.input_vectors(value))
        fed = jnp.concatenate(vectors, -1)
        if target is not None:
            use_sample = jax.random.bernoulli(jax.random.fold_in(step_rng, 99), sampling_prob, (fed.shape[0], 1))
            fed = jnp.where(use_sample, fed, target)
        return (carries, fed), (raw, values, prev)

    targets = None if target_inputs is None else jnp.swapaxes(target_inputs, 0, 1)
    (carries, last), (raw, values, inputs) = jax.lax.scan(
        body, (carries, first_input), (jnp.arange(num_steps), targets, masks), length=num_steps, unroll=spec.unroll
    )
    batch_major = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
    return Decoded(batch_major(raw), [batch_major(v) for v in values], batch_major(inputs), last, carries)


def scheduled_sampling(
    spec: CoreSpec,
    weights: dict,
    cond: jax.Array,
    target_inputs: jax.Array,
    rng: jax.Array,
    sampling_prob: float | jax.Array,
    *,
    keep_masks: list | None = None,
) -> jax.Array:
    """Raw outputs [N, S, input_depth] of a training pass that feeds back the model's own samples.

    A sampled token carries no gradient, so when every part is categorical
    the inputs are first found by a stepwise pass without gradients, and the
    differentiated pass is a teacher-forced run over exactly those inputs,
    which gets the sequence-level backward pass (models/lstm.py) instead of
    autodiff through the step loop. Groove samples (velocities and offsets
    are outputs) do carry gradient, so they stay stepwise.
    """
    first = jnp.zeros_like(target_inputs[:, 0])
    feeding = dict(target_inputs=target_inputs, sampling_prob=sampling_prob, keep_masks=keep_masks)
    steps = target_inputs.shape[1]
    if spec.sequence_vjp and all(p.kind == "categorical" for p in spec.parts):
        frozen, frozen_cond = jax.lax.stop_gradient(weights), jax.lax.stop_gradient(cond)
        fed = stepwise(spec, frozen, frozen_cond, first, steps, rng, **feeding).inputs
        return teacher_forced(spec, weights, cond, fed, keep_masks=keep_masks)
    return stepwise(spec, weights, cond, first, steps, rng, **feeding).raw


def shift_right(vectors: jax.Array) -> jax.Array:
    """[N, T, D] -> previous step's vectors, zeros at t = 0."""
    return jnp.pad(vectors, ((0, 0), (1, 0), (0, 0)))[:, :-1]


def concat_part_inputs(parts: Sequence[Part], values: Sequence[jax.Array]) -> jax.Array:
    return jnp.concatenate([p.input_vectors(v) for p, v in zip(parts, values, strict=True)], axis=-1)
