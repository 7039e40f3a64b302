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

`sequence_vjp` (the default) runs a layer over a known sequence with its own
backward pass: the reverse scan only carries (dc, dh) and writes each step's
gate gradients into a buffer made when that pass starts, and the weight
gradients are then two large matmuls over all steps at once. Autodiff of a
scan instead adds x_t^T dgates_t into a full-size weight-gradient
accumulator at every step, which streams the whole [4H, in] matrix through
memory T times (BENCHMARKS.md measures both).

Kernels are stored [out, in] (torch's layout) and `dot` contracts the
activations' last axis with the kernel's last: with a small batch, XLA's CPU
matmul is 1.5-2.5x faster this way than with [in, out] kernels (measured in
BENCHMARKS.md), and accelerators do not mind. The sequence pass goes one
further and runs feature-major, the state transposed to [H, batch] and each
step's product W_h @ h with the weights on the left, which is faster again
for the few-row products of a recurrence (bench/bench_layout.py).

Mixed precision: weight modules hand out their kernels cast to `dtype`
(parameters stay float32), and `dot` multiplies in the kernel's dtype with
float32 results, so biases, gates, cell states and everything after them
stay float32. The backward pass's products take their operands in that dtype
too (`mixed_einsum`), weight gradients included, as PyTorch's autocast does.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

LayerWeights = dict[str, jax.Array]  # w_x [4H, in], w_h [4H, H], b [4H]
Carry = tuple[jax.Array, jax.Array]  # (c, h), each [batch, H]


def dot(a: jax.Array, kernel: jax.Array) -> jax.Array:
    """a [..., in] times kernel [out, in] -> [..., out], in the kernel's dtype, returned as float32."""
    leading = "abcdefgh"[: a.ndim - 1]
    return mixed_einsum(f"{leading}i,oi->{leading}o", a.astype(kernel.dtype), kernel)


def mixed_einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """`jnp.einsum(spec, a, b)` with a float32 result, whose gradients multiply in the operands' dtype too.

    JAX differentiates a bfloat16 product with a float32 result by
    multiplying the float32 cotangent with the operand upcast to float32, so
    in bfloat16 every weight gradient and input gradient would still run in
    float32 (TF32 on a GPU: half the bfloat16 rate). Here the cotangent is
    rounded to the operands' dtype first and the products accumulate in
    float32. Float32 operands take the plain einsum. Every index of an
    operand must appear in the other operand or in the result (a product,
    not a reduction of one operand alone).
    """
    sa, sb, out = _einsum_indices(spec)
    if not (set(sa) <= set(sb + out) and set(sb) <= set(sa + out)):
        raise ValueError(f"mixed_einsum {spec!r}: an index of one operand appears nowhere else (a reduction)")
    if a.dtype == jnp.float32 and b.dtype == jnp.float32:
        return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
    return _low_precision_einsum(spec, a, b)


def _einsum_indices(spec: str) -> tuple[str, str, str]:
    """'ab,bc->ac' -> ('ab', 'bc', 'ac')."""
    inputs, out = spec.split("->")
    sa, sb = inputs.split(",")
    return sa, sb, out


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _low_precision_einsum(spec, a, b):
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _low_precision_einsum_fwd(spec, a, b):
    return _low_precision_einsum(spec, a, b), (a, b)


def _low_precision_einsum_bwd(spec, operands, g):
    a, b = operands
    sa, sb, out = _einsum_indices(spec)
    da = low_precision_product(f"{out},{sb}->{sa}", g.astype(b.dtype), b)
    db = low_precision_product(f"{out},{sa}->{sb}", g.astype(a.dtype), a)
    return da.astype(a.dtype), db.astype(b.dtype)


_low_precision_einsum.defvjp(_low_precision_einsum_fwd, _low_precision_einsum_bwd)


def low_precision_product(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """`jnp.einsum(spec, a, b)` of two same-dtype operands, accumulated in float32.

    The product runs in the operands' dtype on every backend: on a CPU with
    AMX, XLA's bfloat16 products run at about five times its float32 rate
    (BENCHMARKS.md). XLA's CPU dot has no bfloat16 x bfloat16 -> float32
    kernel for a result whose axes it must permute (it fails at run time), so
    there the product is formed in its natural axis order and transposed after.
    """
    if a.dtype == jnp.float32:
        return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
    return jax.lax.platform_dependent(
        cpu=lambda: _einsum_then_transpose(spec, a, b),
        default=lambda: jnp.einsum(spec, a, b, preferred_element_type=jnp.float32),
    )


def _einsum_then_transpose(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """The float32-accumulated product in dot's own result order (shared, then a's, then b's free axes), permuted."""
    sa, sb, out = _einsum_indices(spec)
    natural = "".join(
        [c for c in out if c in sa and c in sb]
        + [c for c in sa if c in out and c not in sb]
        + [c for c in sb if c in out and c not in sa]
    )
    product = jnp.einsum(f"{sa},{sb}->{natural}", a, b, preferred_element_type=jnp.float32)
    return product.transpose([natural.index(c) for c in out])


@jax.custom_vjp
def gather_columns(kernel: jax.Array, tokens: jax.Array) -> jax.Array:
    """one_hot(tokens) @ kernel.T for a kernel [out, depth] and token ids [...] -> float32 [..., out], gathered.

    A token's one-hot times the kernel is the token's column, so the forward
    pass gathers columns (no token, -1: zeros). Autodiff would make the
    gradient a scatter-add of the cotangent rows into the kernel, which a GPU
    runs with atomic adds: on an H200 at mel_2bar_big batch 512 each gathered
    layer's took 4.2 ms in bfloat16 (1.35 in float32), and trio_16bar_hier
    spent a third of its bfloat16 step on them (BENCHMARKS.md). On
    accelerators the gradient is the one-hot product instead, one matmul
    accumulated in float32; the CPU keeps the scatter-add (in float32),
    which it runs faster than that product.
    """
    columns = jnp.take(kernel.T, jnp.maximum(tokens, 0), axis=0).astype(jnp.float32)
    return jnp.where((tokens >= 0)[..., None], columns, 0.0)


def _gather_columns_fwd(kernel, tokens):
    return gather_columns(kernel, tokens), (kernel, tokens)


def _gather_columns_bwd(residuals, g):
    kernel, tokens = residuals
    d_kernel = jax.lax.platform_dependent(
        kernel, tokens, g, cpu=scattered_columns_gradient, default=one_hot_columns_gradient
    )
    return d_kernel.astype(kernel.dtype), None


def scattered_columns_gradient(kernel: jax.Array, tokens: jax.Array, g: jax.Array) -> jax.Array:
    """gather_columns' kernel gradient [out, depth] as a float32 scatter-add of the cotangent rows g [..., out]."""
    out, depth = kernel.shape
    # Index `depth` is out of bounds and dropped: no token adds nothing (a -1 would wrap around).
    index = jnp.where(tokens >= 0, tokens, depth).reshape(-1)
    rows = g.reshape(-1, out).astype(jnp.float32)
    return jnp.zeros((depth, out), jnp.float32).at[index].add(rows, mode="drop").T


def one_hot_columns_gradient(kernel: jax.Array, tokens: jax.Array, g: jax.Array) -> jax.Array:
    """The same gradient as one product g^T one_hot(tokens) in the kernel's dtype, accumulated in float32."""
    out, depth = kernel.shape
    one_hot = jax.nn.one_hot(tokens.reshape(-1), depth, dtype=kernel.dtype)
    return low_precision_product("no,nd->od", g.reshape(-1, out).astype(kernel.dtype), one_hot)


gather_columns.defvjp(_gather_columns_fwd, _gather_columns_bwd)


def compiled_initializer(init):
    """`init` compiled as one program per shape and dtype.

    Run op by op, an initializer compiled four to six small programs (the random draw, scaling, factorisation,
    transpose), and those compiles were most of a small model's start-up (BENCHMARKS.md). Make each one once,
    at import: the compiled programs belong to the function object.
    """
    return jax.jit(init, static_argnums=(1, 2))


def out_major(init):
    """An initializer for an [out, in] kernel with the distribution `init` gives an [in, out] one."""
    return compiled_initializer(lambda key, shape, dtype=jnp.float32: init(key, shape[::-1], dtype).T)


GLOROT_UNIFORM = out_major(nn.initializers.glorot_uniform())
ORTHOGONAL = out_major(nn.initializers.orthogonal())
LECUN_NORMAL = out_major(nn.initializers.lecun_normal())
LECUN_NORMAL_IN_OUT = compiled_initializer(nn.initializers.lecun_normal())  # nn.Dense's default, [in, out]


def _lstm_bias(key, shape, dtype=jnp.float32):
    hidden = shape[0] // 4
    return jnp.zeros(shape, dtype).at[2 * hidden : 3 * hidden].set(1.0)


LSTM_BIAS = compiled_initializer(_lstm_bias)


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
            w_x = self.param(f"w_x_{i}", GLOROT_UNIFORM, (4 * hidden, input_size))
            w_h = self.param(f"w_h_{i}", ORTHOGONAL, (4 * hidden, hidden))
            weights.append(
                {
                    "w_x": w_x.astype(self.dtype),
                    "w_h": w_h.astype(self.dtype),
                    "b": self.param(f"b_{i}", LSTM_BIAS, (4 * hidden,)),
                }
            )
            input_size = 2 * hidden if self.bidirectional else hidden
        return weights


def _squashed(gates: jax.Array, axis: int = -1) -> jax.Array:
    """tanh of the four gate pre-activations (i, g, f, o) along `axis`, those of the sigmoid gates halved first.

    sigmoid(x) = (1 + tanh(x / 2)) / 2, so this one tanh over the whole
    [..., 4H] array gives every gate (`_gate_values`): one elementwise pass
    on XLA's CPU backend instead of four slices with their own functions,
    and on accelerators one array, not four, for the sequence pass to keep
    for its backward pass (`keeps_squashed_gates`; BENCHMARKS.md).
    """
    hidden = gates.shape[axis] // 4
    half, one = jnp.full((hidden,), 0.5, gates.dtype), jnp.ones((hidden,), gates.dtype)
    scale = jnp.concatenate([half, one, half, half]).reshape([-1] + [1] * (gates.ndim - 1 - axis % gates.ndim))
    return jnp.tanh(gates * scale)


def _gate_values(squashed: jax.Array, axis: int = -1) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(i, g, f, o) = (sigmoid, tanh, sigmoid, sigmoid) of the gate pre-activations, from their `_squashed` form."""
    i, g, f, o = jnp.split(squashed, 4, axis=axis)
    return 0.5 * i + 0.5, g, 0.5 * f + 0.5, 0.5 * o + 0.5


def _gates_to_carry(gates: jax.Array, c: jax.Array) -> Carry:
    i, g, f, o = _gate_values(_squashed(gates))
    c = f * c + i * g
    return c, o * jnp.tanh(c)


def cell_step(w: LayerWeights, carry: Carry, x: jax.Array) -> Carry:
    """One LSTM step with a single fused gate matmul."""
    c, h = carry
    fused = jnp.concatenate([w["w_x"], w["w_h"]], axis=1)
    gates = dot(jnp.concatenate([x, h], axis=-1), fused) + w["b"]
    return _gates_to_carry(gates, c)


def projected_cell_step(w_h: jax.Array, carry: Carry, x_projection: jax.Array) -> Carry:
    """One LSTM step from its input projection plus bias [batch, 4H], computed by the caller."""
    c, h = carry
    return _gates_to_carry(x_projection + dot(h, w_h), c)


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
    sequence_vjp: bool = False,
) -> tuple[jax.Array, Carry]:
    """One layer over a whole sequence.

    inputs [batch, T, in] -> outputs [batch, T, H] and the final carry. With
    `lengths` [batch], steps at or past an example's length leave its carry
    unchanged (so the final carry is the one at length - 1) and output zeros.
    """
    if sequence_vjp:
        return run_projected_layer(w["w_h"], project_sequence(w, inputs), carry, lengths, unroll)
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


def project_sequence(w: LayerWeights, inputs: jax.Array) -> jax.Array:
    """Every step's input projection plus bias in one matmul: inputs [batch, T, in] -> [T, 4H, batch]."""
    projected = mixed_einsum("gi,bti->tgb", w["w_x"], inputs.astype(w["w_x"].dtype))
    return projected + w["b"][:, None]


def run_projected_layer(
    w_h: jax.Array,
    projected: jax.Array,
    carry: Carry,
    lengths: jax.Array | None = None,
    unroll: int = 1,
) -> tuple[jax.Array, Carry]:
    """`run_layer` with the sequence backward pass, from each step's input projection plus bias [T, 4H, batch].

    Taking the projection rather than the inputs lets a caller compute it in
    whatever way suits its inputs (decoders gather token columns instead of
    multiplying one-hot vectors); its gradient flows back through ordinary
    autodiff.
    """
    steps = projected.shape[0]
    hs, cs = _sequence_layer(unroll, w_h, projected, carry[0], carry[1])
    if lengths is None:
        return jnp.swapaxes(hs, 0, 1), (cs[-1], hs[-1])
    # Padding is at the end, so steps past a length can run unmasked: their
    # outputs are zeroed here and the final carry is read at length - 1.
    t = jnp.arange(steps)[:, None, None]
    last = t == lengths[None, :, None] - 1
    started = lengths[:, None] > 0
    c = jnp.where(started, jnp.sum(jnp.where(last, cs, 0.0), axis=0), carry[0])
    h = jnp.where(started, jnp.sum(jnp.where(last, hs, 0.0), axis=0), carry[1])
    outputs = jnp.where(t < lengths[None, :, None], hs, 0.0)
    return jnp.swapaxes(outputs, 0, 1), (c, h)


def run_stack(
    weights: list[LayerWeights],
    inputs: jax.Array,
    carries: list[Carry],
    *,
    lengths: jax.Array | None = None,
    hoist_input_projection: bool = False,
    unroll: int = 1,
    keep_masks: Sequence[jax.Array] | None = None,
    sequence_vjp: bool = False,
) -> tuple[jax.Array, list[Carry]]:
    """The stack layer by layer over a known sequence: [batch, T, in] -> [batch, T, H_top].

    `keep_masks` (see `inverted_dropout_masks`) multiply each layer's input.
    """
    finals = []
    x = inputs
    for i, (w, carry) in enumerate(zip(weights, carries, strict=True)):
        if keep_masks is not None:
            x = x * keep_masks[i]
        x, final = run_layer(w, x, carry, lengths, hoist_input_projection, unroll, sequence_vjp)
        finals.append(final)
    return x, finals


def inverted_dropout_masks(rng: jax.Array, keep: float, shapes: Sequence[tuple[int, ...]]) -> list[jax.Array]:
    """Inverted-dropout multipliers (0 or 1 / keep), one array per layer input shape."""
    return [
        jax.random.bernoulli(jax.random.fold_in(rng, i), keep, shape).astype(jnp.float32) / keep
        for i, shape in enumerate(shapes)
    ]


@jax.custom_vjp
def reverse_by_length(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """Reverses each example's first `length` steps in time (x [batch, T, ...]); later steps become zeros.

    Its own transpose (a symmetric permutation of the first `length` steps,
    lengths <= T), so its gradient is the same gather of the cotangent:
    autodiff of the gather would scatter-add it, with atomic adds on a GPU.
    """
    steps = x.shape[1]
    t = jnp.arange(steps)[None, :]
    index = lengths[:, None] - 1 - t
    trailing = (1,) * (x.ndim - 2)
    valid = (index >= 0).reshape(index.shape + trailing)
    gathered = jnp.take_along_axis(x, jnp.clip(index, 0, steps - 1).reshape(index.shape + trailing), axis=1)
    return jnp.where(valid, gathered, jnp.zeros((), x.dtype))


def _reverse_by_length_fwd(x, lengths):
    return reverse_by_length(x, lengths), lengths


def _reverse_by_length_bwd(lengths, g):
    return reverse_by_length(g, lengths), None


reverse_by_length.defvjp(_reverse_by_length_fwd, _reverse_by_length_bwd)


def _made_after(x: jax.Array, anchor: jax.Array) -> jax.Array:
    """`x`, computed only once `anchor` exists: zero times one of its elements, added, which XLA does not fold.

    Should that element be NaN or infinite, so is the result. The output
    buffers made this way are overwritten before they are read; W_h^T made
    from a non-finite cotangent gives a gradient that was not finite anyway,
    and the training step skips it.
    """
    return x + (0 * anchor.reshape(-1)[0]).astype(x.dtype)


def keeps_squashed_gates() -> bool:
    """Whether the sequence pass keeps each step's gates as their one `_squashed` array, in the products' dtype.

    So it does on accelerators: three writes a step instead of six, and in
    bfloat16 a third fewer bytes (on an H200 the bfloat16 step 7% faster).
    On XLA's CPU it keeps the four gate values in float32: trio_16bar_hier's
    step was 7% slower the other way there (BENCHMARKS.md).
    """
    return jax.default_backend() != "cpu"


def _sequence_forward(unroll, w_h, projected, c0, h0):
    """The recurrence over projected [T, 4H, B] -> (h, c) at every step, [T, H, B]; also what the backward pass needs.

    Runs feature-major: the carry is (c, h) transposed, [H, B], and each step
    computes gates [4H, B] = W_h [4H, H] @ h [H, B]; with few rows XLA's CPU
    matmul is up to 2.8x faster with the weights on the left (bench_layout.py).
    The loop writes its outputs into buffers made from `projected`, so that
    they exist from this layer on (as a scan's stacked outputs, XLA made
    every layer's at the start of the step; BENCHMARKS.md). The gates go
    into one buffer or four (`keeps_squashed_gates`).
    """
    steps, hidden, batch = projected.shape[0], w_h.shape[1], projected.shape[2]
    squashed_kept = keeps_squashed_gates()
    state = _made_after(jnp.zeros((steps, hidden, batch), jnp.float32), projected)
    if squashed_kept:
        gate_buffers = (_made_after(jnp.zeros((steps, 4 * hidden, batch), w_h.dtype), projected),)
    else:
        gate_buffers = (state,) * 4

    def body(carry, scanned):
        (c, h), buffers = carry
        t, x_proj = scanned
        gates = x_proj + jnp.matmul(w_h, h.astype(w_h.dtype), preferred_element_type=jnp.float32)
        squashed = _squashed(gates, axis=0)
        i, g, f, o = _gate_values(squashed, axis=0)
        c = f * c + i * g
        h = o * jnp.tanh(c)
        values = (h, c, *((squashed.astype(w_h.dtype),) if squashed_kept else (i, g, f, o)))
        buffers = tuple(jax.lax.dynamic_update_index_in_dim(b, v, t, 0) for b, v in zip(buffers, values, strict=True))
        return ((c, h), buffers), None

    (_, (hs, cs, *gates)), _ = jax.lax.scan(
        body, ((c0.T, h0.T), (state, state, *gate_buffers)), (jnp.arange(steps), projected), unroll=unroll
    )
    return (hs, cs), tuple(gates)


def _batch_major(x: jax.Array) -> jax.Array:
    """[T, H, B] -> [T, B, H]."""
    return jnp.swapaxes(x, 1, 2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _sequence_layer(unroll, w_h, projected, c0, h0):
    """(hs, cs) [T, B, H] of the recurrence over projected [T, 4H, B] from the carry (c0, h0) [B, H]."""
    hs, cs = _sequence_forward(unroll, w_h, projected, c0, h0)[0]
    return _batch_major(hs), _batch_major(cs)


def _sequence_layer_fwd(unroll, w_h, projected, c0, h0):
    (hs, cs), gates = _sequence_forward(unroll, w_h, projected, c0, h0)
    return (_batch_major(hs), _batch_major(cs)), (w_h, c0, h0, hs, cs, gates)


def _sequence_layer_bwd(unroll, residuals, cotangents):
    w_h, c0, h0, hs, cs, gates_kept = residuals  # feature-major: [T, H, B] each, or the squashed gates [T, 4H, B]
    d_hs, d_cs = (_batch_major(d) for d in cotangents)
    c_prev = jnp.concatenate([c0.T[None], cs[:-1]])
    h_prev = jnp.concatenate([h0.T[None], hs[:-1]])
    steps, hidden, batch = hs.shape
    # W_h^T [H, 4H], so that each step's matmul again has the weights on the
    # left, and the buffer the loop writes every step's gate gradients into
    # (with the gates squashed, in w_h's dtype, which the products that read
    # them take). Both are made after the cotangents (left to itself, XLA
    # made them at the start of the step and held them through the forward
    # pass; BENCHMARKS.md).
    w_h_t = _made_after(w_h, d_hs).T
    gradient_dtype = w_h.dtype if len(gates_kept) == 1 else jnp.float32
    d_gates = _made_after(jnp.zeros((steps, 4 * hidden, batch), gradient_dtype), d_hs)

    def body(carry, scanned):
        dc_next, dh_next, d_gates = carry
        t, d_h, d_c, c_prev, c, *kept = scanned
        i, g, f, o = _gate_values(kept[0].astype(jnp.float32), axis=0) if len(kept) == 1 else kept
        dh = dh_next + d_h
        tanh_c = jnp.tanh(c)
        dc = dc_next + d_c + dh * o * (1 - tanh_c**2)
        gates = jnp.concatenate(
            [dc * g * i * (1 - i), dc * i * (1 - g**2), dc * c_prev * f * (1 - f), dh * tanh_c * o * (1 - o)],
            axis=0,
        ).astype(gradient_dtype)
        dh_prev = jnp.matmul(w_h_t, gates.astype(w_h.dtype), preferred_element_type=jnp.float32)
        return (dc * f, dh_prev, jax.lax.dynamic_update_index_in_dim(d_gates, gates, t, 0)), None

    zeros = jnp.zeros_like(c0.T)
    scanned = (jnp.arange(steps), d_hs, d_cs, c_prev, cs, *gates_kept)
    (dc0, dh0, d_gates), _ = jax.lax.scan(body, (zeros, zeros, d_gates), scanned, reverse=True, unroll=unroll)
    # The weight gradient once over all steps: [4H, T*B] @ [T*B, H]. The input
    # projection's gradient is d_gates itself; autodiff takes it from there.
    d_w_h = low_precision_product("tgb,thb->gh", d_gates.astype(w_h.dtype), h_prev.astype(w_h.dtype))
    return d_w_h.astype(w_h.dtype), d_gates.astype(jnp.float32), dc0.T, dh0.T


_sequence_layer.defvjp(_sequence_layer_fwd, _sequence_layer_bwd)
