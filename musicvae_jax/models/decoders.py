"""Decoder cores: an LSTM stack conditioned on a vector, emitting one or more parts.

A core's initial (c, h) per layer is tanh(dense(cond)) split across layers;
its input at each step is the previous value of every part it emits
(one-hot, or 27 groove values) concatenated with `cond`. Without dropout on
that input, layer 0 never builds it: a token's one-hot times the kernel is
the token's column, gathered, and cond, the same at every step, is projected
once per sequence. Most of layer 0's input matmul is one-hot or repeated
(512 drum tokens, a 256-1024 wide cond, beside a 256-2048 wide state), so
this takes up to three quarters of that layer's products away
(BENCHMARKS.md). Values travel as token ids (-1: none) or groove vectors.

The flat decoder is one core conditioned on z; the hierarchical decoder
conditions one core per part on each conductor embedding; the flat trio
baseline is one core with three heads (one dense layer over 90 + 90 + 512
outputs, split).

`teacher_forced` runs layer by layer over known inputs (fast; the U bars of
a hierarchical batch go through as one batch of B*U sequences); `stepwise`
runs every layer per step so that a sampled value can be fed back
(generation); `scheduled_sampling` trains on a mix of true and fed-back
inputs, with the teacher-forced pass's speed where it can.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from musicvae_jax.models.lstm import (
    LECUN_NORMAL,
    LayerWeights,
    LSTMStackWeights,
    dot,
    inverted_dropout_masks,
    projected_cell_step,
    run_projected_layer,
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
        dtype = jnp.dtype(spec.compute_dtype)
        init_kernel = self.param("init_kernel", LECUN_NORMAL, (2 * sum(spec.sizes), cond_size))
        head_kernel = self.param("head_kernel", LECUN_NORMAL, (spec.input_depth, spec.sizes[-1]))
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


def dense_inputs(spec: CoreSpec, cond: jax.Array, prev_values: Sequence[jax.Array]) -> jax.Array:
    """Layer 0's inputs as vectors: [every part's previous value as a vector, cond] [N, (S,) input_depth + C]."""
    vectors = [p.input_vectors(v) for p, v in zip(spec.parts, prev_values, strict=True)]
    if vectors[0].ndim == 3:
        cond = jnp.broadcast_to(cond[:, None], (cond.shape[0], vectors[0].shape[1], cond.shape[-1]))
    return jnp.concatenate([*vectors, cond], axis=-1)


def input_blocks(spec: CoreSpec, layer: LayerWeights) -> list[jax.Array]:
    """Layer 0's input kernel split by what it reads: one [4H, depth] block per part, then the [4H, C] cond block."""
    return jnp.split(layer["w_x"], list(itertools.accumulate(p.depth for p in spec.parts)), axis=1)


def cond_projection(spec: CoreSpec, layer: LayerWeights, cond: jax.Array) -> jax.Array:
    """cond's share of layer 0's input projection, plus the bias [N, 4H]: the same at every step, computed once."""
    return dot(cond, input_blocks(spec, layer)[-1]) + layer["b"]


def values_projection(spec: CoreSpec, layer: LayerWeights, prev_values: Sequence[jax.Array]) -> jax.Array:
    """The previous values' share of layer 0's input projection [N, (S,) 4H] (tokens' columns gathered)."""
    blocks = input_blocks(spec, layer)[:-1]
    return sum(p.project(v, k) for p, v, k in zip(spec.parts, prev_values, blocks, strict=True))


def teacher_forced(
    spec: CoreSpec,
    weights: dict,
    cond: jax.Array,
    prev_values: Sequence[jax.Array],
    *,
    lengths: jax.Array | None = None,
    keep_masks: list | None = None,
) -> jax.Array:
    """cond [N, C], each part's previous values [N, S(, 27)] -> raw outputs [N, S, input_depth]."""
    lstm = weights["lstm"]
    carries = initial_carries(spec, weights, cond)
    run = dict(hoist_input_projection=spec.hoist_input_projection, unroll=spec.unroll, sequence_vjp=spec.sequence_vjp)
    if spec.sequence_vjp and keep_masks is None:
        projected = values_projection(spec, lstm[0], prev_values) + cond_projection(spec, lstm[0], cond)[:, None]
        projected = jnp.transpose(projected, (1, 2, 0))  # [S, 4H, N], as the sequence pass runs
        x, _ = run_projected_layer(lstm[0]["w_h"], projected, carries[0], lengths, spec.unroll)
        outputs, _ = run_stack(lstm[1:], x, carries[1:], lengths=lengths, **run)
    else:
        inputs = dense_inputs(spec, cond, prev_values)
        outputs, _ = run_stack(lstm, inputs, carries, lengths=lengths, keep_masks=keep_masks, **run)
    return dot(outputs, weights["head_kernel"]) + weights["head_bias"]


class Decoded(NamedTuple):
    raw: jax.Array  # head outputs [N, S, input_depth]
    values: list[jax.Array]  # sampled values per part, [N, S] tokens or [N, S, 27]
    inputs: list[jax.Array]  # per part, the previous value fed at each step [N, S(, 27)]
    last: list[jax.Array]  # per part, the value the next step would be fed [N(, 27)]
    carries: list  # final (c, h) per layer, so bars can continue one another


def start_values(spec: CoreSpec, batch: int) -> list[jax.Array]:
    return [p.start_values(batch) for p in spec.parts]


def stepwise(
    spec: CoreSpec,
    weights: dict,
    cond: jax.Array,
    first_values: Sequence[jax.Array],
    num_steps: int,
    rng: jax.Array,
    *,
    temperature: float | jax.Array = 1.0,
    target_values: Sequence[jax.Array] | None = None,
    sampling_prob: float | jax.Array = 1.0,
    carries: list | None = None,
    keep_masks: list | None = None,
    same_draws: bool = False,
) -> Decoded:
    """Decodes step by step, feeding back samples; `first_values` per part are fed at the first step.

    `same_draws`: every example samples with the draws of a batch of one (`Part.sample`).

    With `target_values` per part [N, S(, 27)] (scheduled sampling), each
    example's next input is its own sample with probability `sampling_prob`,
    else the true previous value (one draw per example and step for all parts).
    """
    lstm = weights["lstm"]
    carries = initial_carries(spec, weights, cond) if carries is None else carries
    masks = None if keep_masks is None else [jnp.swapaxes(m, 0, 1) for m in keep_masks]
    cond_share = cond_projection(spec, lstm[0], cond) if masks is None else None  # once, not per step

    def body(state, scanned):
        carries, prev = state
        t, targets, step_masks = scanned
        step_rng = jax.random.fold_in(rng, t)
        if step_masks is None:
            x_proj = cond_share + values_projection(spec, lstm[0], prev)
            first = projected_cell_step(lstm[0]["w_h"], carries[0], x_proj)
            rest, h = stack_step(lstm[1:], carries[1:], first[1])
            carries = [first, *rest]
        else:
            carries, h = stack_step(lstm, carries, dense_inputs(spec, cond, prev), step_masks)
        raw = dot(h, weights["head_kernel"]) + weights["head_bias"]
        values = [
            part.sample(part_raw, jax.random.fold_in(step_rng, i), temperature, same_draws)
            for i, (part, part_raw) in enumerate(zip(spec.parts, split_parts(spec, raw), strict=True))
        ]
        fed = values
        if targets is not None:
            use_sample = jax.random.bernoulli(jax.random.fold_in(step_rng, 99), sampling_prob, (values[0].shape[0],))
            fed = [
                jnp.where(use_sample.reshape(-1, *[1] * (v.ndim - 1)), v, y)
                for v, y in zip(values, targets, strict=True)
            ]
        return (carries, fed), (raw, values, prev)

    targets = None if target_values is None else [jnp.swapaxes(v, 0, 1) for v in target_values]
    scanned = (jnp.arange(num_steps), targets, masks)
    (carries, last), (raw, values, inputs) = jax.lax.scan(
        body, (carries, list(first_values)), scanned, length=num_steps, unroll=spec.unroll
    )
    batch_major = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
    return Decoded(batch_major(raw), [batch_major(v) for v in values], [batch_major(v) for v in inputs], last, carries)


def scheduled_sampling(
    spec: CoreSpec,
    weights: dict,
    cond: jax.Array,
    target_values: Sequence[jax.Array],
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
    first = start_values(spec, cond.shape[0])
    feeding = dict(target_values=target_values, sampling_prob=sampling_prob, keep_masks=keep_masks)
    steps = target_values[0].shape[1]
    if spec.sequence_vjp and all(p.kind == "categorical" for p in spec.parts):
        frozen, frozen_cond = jax.lax.stop_gradient(weights), jax.lax.stop_gradient(cond)
        fed = stepwise(spec, frozen, frozen_cond, first, steps, rng, **feeding).inputs
        return teacher_forced(spec, weights, cond, fed, keep_masks=keep_masks)
    return stepwise(spec, weights, cond, first, steps, rng, **feeding).raw
