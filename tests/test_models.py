"""Shapes, masking and the equivalences the decoders rely on."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import FAMILIES, random_batch, tiny_spec

from musicvae_jax.models import decoders, lstm
from musicvae_jax.models.encoder import BidirectionalEncoder
from musicvae_jax.models.lstm import (
    LSTMStackWeights,
    dot,
    gather_columns,
    mixed_einsum,
    one_hot_columns_gradient,
    reverse_by_length,
    run_layer,
    run_stack,
    scattered_columns_gradient,
    zero_carries,
)
from musicvae_jax.models.vae import MusicVAE, encoder_projection, init_params

KEY = jax.random.key(0)


def initialised(family):
    """A tiny model of the family, a random batch for it, and freshly initialised parameters."""
    spec = tiny_spec(family)
    batch = random_batch(spec)
    model = MusicVAE(spec)
    return spec, batch, model, init_params(model, KEY)


def layer_weights(input_size=5, hidden=7):
    params = LSTMStackWeights((hidden,)).init(KEY, input_size)
    return LSTMStackWeights((hidden,)).apply(params, input_size)[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_init_params_creates_what_init_through_a_pass_creates(family):
    """init_params skips the reconstruction pass; the parameters must be the ones that pass reads and creates."""
    spec, batch, model, params = initialised(family)
    through_a_pass = jax.eval_shape(lambda: model.init(KEY, batch, KEY, train=False))
    assert jax.tree.structure(params) == jax.tree.structure(through_a_pass)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), params) == jax.tree.map(
        lambda a: (a.shape, a.dtype), through_a_pass
    )
    if family == "mel_16bar_hier":  # the same values too (each module draws from its own stream)
        jax.tree.map(np.testing.assert_array_equal, params, jax.jit(lambda: model.init(KEY, batch, KEY, train=False))())


def test_hoisted_and_fused_layers_agree():
    w = layer_weights()
    x = jax.random.normal(KEY, (4, 9, 5))
    carry = zero_carries([7], 4)[0]
    fused, fused_final = run_layer(w, x, carry, hoist_input_projection=False)
    hoisted, hoisted_final = run_layer(w, x, carry, hoist_input_projection=True)
    np.testing.assert_allclose(fused, hoisted, atol=1e-5)
    np.testing.assert_allclose(fused_final[1], hoisted_final[1], atol=1e-5)


@pytest.fixture(params=[False, True], ids=["four_gates", "squashed_gates"])
def gates_kept(request, monkeypatch):
    """Both forms of what the sequence pass keeps (`keeps_squashed_gates`: one per backend), whatever runs the test."""
    monkeypatch.setattr(lstm, "keeps_squashed_gates", lambda: request.param)
    return request.param


@pytest.mark.parametrize("with_lengths", [False, True])
def test_sequence_vjp_layer_matches_autodiff(with_lengths, gates_kept):
    """The hand-written backward pass (weight gradients once per sequence) equals autodiff of the scan."""
    w = layer_weights()
    x = jax.random.normal(jax.random.key(1), (4, 6, 5))
    carry = (jax.random.normal(jax.random.key(2), (4, 7)), jax.random.normal(jax.random.key(3), (4, 7)))
    lengths = jnp.array([6, 4, 1, 0]) if with_lengths else None

    def loss(w, x, carry, sequence_vjp):
        out, (c, h) = run_layer(w, x, carry, lengths, sequence_vjp=sequence_vjp)
        return jnp.sum(jnp.sin(out) * 1.3) + jnp.sum(c * 0.7) + jnp.sum(h**2)

    value_and_grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    (value, got), (expected_value, expected) = (value_and_grads(w, x, carry, vjp) for vjp in (True, False))
    assert float(value) == pytest.approx(float(expected_value), rel=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got, expected)
    assert float(jnp.abs(got[0]["w_h"]).sum()) > 0


def test_each_stacked_layer_adds_its_saved_values_but_not_its_gate_gradients_to_the_peak():
    """A layer's backward buffers (W_h^T, the [T, 4H, B] gate gradients) exist only during its backward pass.

    XLA had made them at the start of the step, so every layer's stayed live
    through the whole forward pass: 6.5 MB per layer below, against 4.5 MB.
    """
    hidden, steps, batch = 64, 128, 16

    def peak(layers):
        weights = [layer_weights(hidden, hidden) for _ in range(layers)]
        x = jax.random.normal(KEY, (batch, steps, hidden))

        def loss(weights, x):
            out, _ = run_stack(weights, x, zero_carries([hidden] * layers, batch), sequence_vjp=True)
            return jnp.sum(out**2)

        return jax.jit(jax.grad(loss)).lower(weights, x).compile().memory_analysis().temp_size_in_bytes

    per_layer = (peak(4) - peak(1)) / 3
    floats = steps * hidden * batch * 4  # one [T, H, B] array of float32
    saved, outputs, gate_gradients = 6 * floats, 2 * floats, 4 * floats  # h, c and the four gates; h and c out
    assert per_layer < saved + outputs + gate_gradients / 2, per_layer


def _equations(jaxpr):
    """Every equation of a jaxpr and of the jaxprs nested in its equations' parameters."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for inner in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(inner, "jaxpr", inner)
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_sequence_pass_keeps_h_c_and_the_gates_and_writes_the_gate_gradients(dtype, gates_kept):
    """h and c in float32; the squashed gates as one [4H, B] array a step, and their gradients, in w's dtype.

    In bfloat16 that is a third fewer bytes written a step than in float32
    (on an H200 the step was 7% faster; BENCHMARKS.md). The other form keeps
    the four gate values and writes their gradients in float32.
    """
    hidden, steps, batch = 7, 6, 4
    w = layer_weights(5, hidden)
    w = dict(w, w_x=w["w_x"].astype(dtype), w_h=w["w_h"].astype(dtype))
    x = jax.random.normal(KEY, (batch, steps, 5))

    def loss(w):
        return jnp.sum(run_layer(w, x, zero_carries([hidden], batch)[0], sequence_vjp=True)[0] ** 2)

    scans = [e for e in _equations(jax.make_jaxpr(jax.grad(loss))(w).jaxpr) if e.primitive.name == "scan"]
    outputs = [v.aval for e in scans for v in e.outvars]
    kept = [a.dtype for a in outputs if a.shape == (steps, hidden, batch)]
    gate_sized = [a.dtype for a in outputs if a.shape == (steps, 4 * hidden, batch)]
    if gates_kept:  # h and c; the forward loop's squashed gates and the backward loop's gate gradients
        assert kept == [jnp.float32] * 2 and gate_sized == [dtype, dtype]
    else:  # h, c, i, g, f and o; the gate gradients
        assert kept == [jnp.float32] * 6 and gate_sized == [jnp.float32]


def test_layer_masking_keeps_the_state_at_each_length():
    w = layer_weights()
    x = jax.random.normal(KEY, (3, 8, 5))
    lengths = jnp.array([8, 5, 1])
    outputs, (c, h) = run_layer(w, x, zero_carries([7], 3)[0], lengths)
    for b, length in enumerate([8, 5, 1]):
        _, (_, h_alone) = run_layer(w, x[b : b + 1, :length], zero_carries([7], 1)[0])
        np.testing.assert_allclose(h[b], h_alone[0], atol=1e-6)
        assert not outputs[b, length:].any()


def test_reverse_by_length():
    x = jnp.arange(12.0).reshape(2, 6, 1)
    out = reverse_by_length(x, jnp.array([6, 3]))
    np.testing.assert_array_equal(out[0, :, 0], [5, 4, 3, 2, 1, 0])
    np.testing.assert_array_equal(out[1, :, 0], [8, 7, 6, 0, 0, 0])


def test_reverse_by_length_gradient_is_the_gathers_transpose():
    """Its backward pass re-reverses the cotangent; autodiff of the plain gather (a scatter-add) is the reference."""
    x = jax.random.normal(KEY, (3, 7, 2))
    lengths = jnp.array([7, 4, 0])
    g = jax.random.normal(jax.random.key(1), (3, 7, 2))
    index = jnp.clip(lengths[:, None] - 1 - jnp.arange(7)[None, :], -1, 6)

    def plain(x):
        gathered = jnp.take_along_axis(x, jnp.maximum(index, 0)[..., None], axis=1)
        return jnp.where((index >= 0)[..., None], gathered, 0.0)

    (want,) = jax.vjp(plain, x)[1](g)
    (got,) = jax.vjp(lambda x: reverse_by_length(x, lengths), x)[1](g)
    np.testing.assert_array_equal(got, want)
    assert not got[1, 4:].any() and not got[2].any()


def test_encoder_ignores_steps_past_the_length():
    encoder = BidirectionalEncoder((8, 6), z_size=4)
    x = jax.random.normal(KEY, (2, 10, 3))
    lengths = jnp.array([10, 4])
    params = encoder.init(KEY, x.shape[-1], method=BidirectionalEncoder.create_weights)
    encode = jax.jit(lambda x: encoder.apply(params, x, lengths))
    mu, sigma = encode(x)
    assert mu.shape == sigma.shape == (2, 4) and (sigma > 0).all()
    mu2, _ = encode(x.at[1, 4:].set(100.0))
    np.testing.assert_allclose(mu, mu2, atol=1e-6)
    mu3, _ = encode(x.at[1, 3].set(100.0))
    assert not np.allclose(mu[1], mu3[1])


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_outputs_and_samples_the_right_shapes(family):
    spec, batch, model, params = initialised(family)
    out = jax.jit(lambda p: model.apply(p, batch, KEY, train=True))(params)
    for part in spec.parts:
        assert out["raw"][part.name].shape == (3, spec.num_steps, part.depth)
    assert out["mu"].shape == out["z"].shape == (3, spec.z_size)
    samples = jax.jit(lambda p, z: model.apply(p, z, KEY, 1.0, method=MusicVAE.decode))(params, out["z"])
    for part in spec.parts:
        expected = (3, spec.num_steps) if part.kind == "categorical" else (3, spec.num_steps, 27)
        assert samples[part.name].shape == expected


@pytest.mark.parametrize("family", ["mel_16bar_hier", "trio_hier"])
def test_hierarchical_batched_bars_equal_bar_by_bar_decoding(family):
    """Training decodes all bars as one batch; here each bar is decoded on its own, step by step."""
    spec, batch, model, params = initialised(family)
    batched = jax.jit(lambda p, b: model.apply(p, b, KEY, train=False, use_mean=True))(params, batch)

    def bar_by_bar(module, batch):
        mu, _ = module.encode(batch)
        embeddings = module.conductor_embeddings(mu)
        bar_steps = spec.num_steps // spec.num_bars
        results = {}
        for core, core_spec, part in zip(module.cores, spec.core_specs(), spec.parts, strict=True):
            weights = core(embeddings.shape[-1])
            targets = part.targets(batch)
            bars = []
            for u in range(spec.num_bars):
                first = targets[:, u * bar_steps - 1] if u else part.start_values(targets.shape[0])
                bar_targets = targets[:, u * bar_steps : (u + 1) * bar_steps]
                raw = decoders.stepwise(
                    core_spec,
                    weights,
                    embeddings[:, u],
                    [first],
                    bar_steps,
                    KEY,
                    target_values=[bar_targets],
                    sampling_prob=0.0,
                ).raw
                bars.append(raw)
            results[part.name] = jnp.concatenate(bars, axis=1)
        return results

    separate = jax.jit(lambda p, b: model.apply(p, b, method=bar_by_bar))(params, batch)
    for part in spec.parts:
        np.testing.assert_allclose(batched["raw"][part.name], separate[part.name], atol=2e-5)


@pytest.mark.parametrize("family", ["drums_2bar", "trio_flat", "groove_humanize"])
def test_decoder_input_projection_equals_the_product_of_its_input_vectors(family):
    """Gathered token columns plus cond projected once == [one-hot or groove values, cond] @ W_x + b, values and
    gradients (start values included: token -1 is a zero one-hot)."""
    spec = tiny_spec(family)
    (core_spec,) = spec.core_specs()
    batch = random_batch(spec)
    cond = jax.random.normal(KEY, (3, 5))
    layer = decoders.CoreWeights(core_spec).init(KEY, 5)
    layer = decoders.CoreWeights(core_spec).apply(layer, 5)["lstm"][0]
    prev = [p.shift_right(p.targets(batch)) for p in spec.parts]

    def gathered(layer, cond):
        return (
            decoders.values_projection(core_spec, layer, prev)
            + decoders.cond_projection(core_spec, layer, cond)[:, None]
        )

    def dense(layer, cond):
        return dot(decoders.dense_inputs(core_spec, cond, prev), layer["w_x"]) + layer["b"]

    np.testing.assert_allclose(gathered(layer, cond), dense(layer, cond), rtol=1e-5, atol=1e-5)
    probe = jax.random.normal(jax.random.key(7), gathered(layer, cond).shape)
    grads = [
        jax.grad(lambda w, c, f=f: jnp.sum(jnp.sin(f(w, c)) * probe), argnums=(0, 1))(layer, cond)
        for f in (gathered, dense)
    ]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), *grads)
    assert float(jnp.abs(grads[0][0]["w_x"]).sum()) > 0


@pytest.mark.parametrize("family", ["mel_2bar", "drums_2bar", "trio_flat", "groove_humanize"])
def test_encoder_input_projection_equals_the_product_of_its_features(family):
    """The encoder's first layer from gathered token columns (one-hot parts) == from its feature vectors, mu, sigma
    and every gradient, with sequences shorter than the window (the backward direction reads them reversed)."""
    spec = tiny_spec(family)
    batch = dict(random_batch(spec), lengths=np.array([spec.num_steps, 5, 1], np.int32))
    features = jnp.concatenate([p.encoder_features(batch) for p in spec.parts], axis=-1)
    encoder = BidirectionalEncoder(spec.encoder_sizes, spec.z_size)
    params = encoder.init(KEY, features.shape[-1], method=BidirectionalEncoder.create_weights)
    projection = encoder_projection(spec.parts, batch)

    def encode(params, project):
        mu, sigma = encoder.apply(params, features, batch["lengths"], project)
        return jnp.sum(jnp.sin(mu) * jnp.arange(spec.z_size)) + jnp.sum(sigma**2), (mu, sigma)

    encode_and_grads = jax.jit(jax.value_and_grad(encode, has_aux=True), static_argnums=1)  # project: a function
    (_, ours), grads = encode_and_grads(params, projection)
    (_, dense), dense_grads = encode_and_grads(params, None)
    np.testing.assert_allclose(ours, dense, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, dense_grads)
    assert float(jnp.abs(grads["params"]["backward"]["w_x_0"]).sum()) > 0


@pytest.mark.parametrize("family,sequence_vjp", [("trio_flat", True), ("mel_2bar", False)])
def test_encoder_batched_directions_equal_one_after_the_other(family, sequence_vjp):
    """batch_directions (one vmapped scan over both directions) is the same function: mu, sigma, every gradient,
    with sequences shorter than the window, on the gathered-projection path and on the plain one."""
    spec = tiny_spec(family)
    batch = dict(random_batch(spec), lengths=np.array([spec.num_steps, 5, 1], np.int32))
    features = jnp.concatenate([p.encoder_features(batch) for p in spec.parts], axis=-1)
    projection = encoder_projection(spec.parts, batch)
    sizes = (6, 5)  # two layers: the second reads both directions' outputs

    def encode(params, batched):
        encoder = BidirectionalEncoder(sizes, spec.z_size, sequence_vjp=sequence_vjp, batch_directions=batched)
        mu, sigma = encoder.apply(params, features, batch["lengths"], projection)
        return jnp.sum(jnp.sin(mu) * jnp.arange(spec.z_size)) + jnp.sum(sigma**2), (mu, sigma)

    params = BidirectionalEncoder(sizes, spec.z_size).init(
        KEY, features.shape[-1], method=BidirectionalEncoder.create_weights
    )
    encode_and_grads = jax.jit(jax.value_and_grad(encode, has_aux=True), static_argnums=1)
    (_, batched), grads = encode_and_grads(params, True)
    (_, one_by_one), one_by_one_grads = encode_and_grads(params, False)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, one_by_one_grads)
    assert float(jnp.abs(grads["params"]["backward"]["w_h_1"]).sum()) > 0


@pytest.mark.parametrize("family", ["mel_2bar", "trio_flat"])
def test_scheduled_sampling_at_probability_zero_is_teacher_forcing(family):
    spec, batch, model, params = initialised(family)
    forced = jax.jit(lambda p: model.apply(p, batch, KEY, train=False))(params)
    schedule = jax.jit(
        lambda p, prob: model.apply(p, batch, KEY, train=False, scheduled_sampling=True, sampling_prob=prob)
    )
    scheduled, sampled = schedule(params, 0.0), schedule(params, 1.0)
    for part in spec.parts:
        np.testing.assert_allclose(forced["raw"][part.name], scheduled["raw"][part.name], atol=2e-5)
        assert not np.allclose(forced["raw"][part.name], sampled["raw"][part.name], atol=1e-3)


@pytest.mark.parametrize("family,dropout_keep", [("mel_2bar", 1.0), ("trio_flat", 0.7)])
def test_scheduled_sampling_gradients_equal_autodiff_through_the_step_loop(family, dropout_keep):
    """The fast path (inputs found without gradients, then a teacher-forced pass) is the same function."""
    fast_spec = tiny_spec(family, dropout_keep=dropout_keep)
    slow_spec = tiny_spec(family, dropout_keep=dropout_keep, sequence_vjp=False)
    batch = random_batch(fast_spec)
    params = init_params(MusicVAE(fast_spec), KEY)

    def loss(params, spec):
        out = MusicVAE(spec).apply(params, batch, KEY, train=True, scheduled_sampling=True, sampling_prob=0.5)
        return sum(jnp.sum(jnp.sin(r)) for r in out["raw"].values())

    fast_loss, fast = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, fast_spec)
    slow_loss, slow = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, slow_spec)
    assert float(fast_loss) == pytest.approx(float(slow_loss), rel=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), fast, slow)
    assert float(jnp.abs(fast["params"]["core_0"]["lstm"]["w_h_0"]).sum()) > 0
    # Half the inputs were the model's own samples, so this was not teacher forcing.
    forced = jax.jit(lambda p: MusicVAE(fast_spec).apply(p, batch, KEY, train=True))(params)
    forced_loss = sum(jnp.sum(jnp.sin(r)) for r in forced["raw"].values())
    assert abs(float(forced_loss) - float(fast_loss)) > 1e-3


def test_dropout_only_in_training():
    spec, batch, model, params = initialised("groove_humanize")
    apply = jax.jit(lambda rng, train: model.apply(params, batch, rng, train=train, use_mean=True), static_argnums=1)
    a, b, c = (
        apply(rng, train)["raw"]["groove"] for rng, train in ((KEY, False), (jax.random.key(5), False), (KEY, True))
    )
    np.testing.assert_allclose(a, b)
    assert not np.allclose(a, c)


# Both forms of the saved gates on the flat model; a hierarchical model with the accelerators' form, where
# bfloat16 pays (the 16-bar melody's: 20 s here, where the trio's three decoders took 53 s).
@pytest.mark.parametrize(
    "family, gates_kept",
    [("mel_2bar", False), ("mel_2bar", True), ("mel_16bar_hier", True)],
    ids=["four_gates-mel_2bar", "squashed_gates-mel_2bar", "squashed_gates-mel_16bar_hier"],
    indirect=["gates_kept"],
)
def test_mixed_precision_matmuls_in_bfloat16_with_float32_params_and_outputs(family, gates_kept):
    spec, batch, model, params = initialised(family)
    mixed = MusicVAE(dataclasses.replace(spec, compute_dtype="bfloat16"))
    # Same parameter tree (float32 masters), so one checkpoint serves both.
    assert jax.tree.structure(jax.eval_shape(lambda: mixed.init(KEY, batch, KEY, train=False))) == jax.tree.structure(
        params
    )
    apply = lambda m, p: m.apply(p, batch, KEY, train=False, use_mean=True)["raw"]  # noqa: E731
    jaxpr = str(jax.make_jaxpr(lambda p: apply(mixed, p))(params))
    assert "preferred_element_type=float32" in jaxpr and "bf16" in jaxpr

    def loss(p, m):
        raw = apply(m, p)
        return jnp.sum(raw[spec.parts[0].name] ** 2), raw

    # One compiled program per model gives both the outputs and the gradients.
    (_, half), grads = jax.jit(jax.value_and_grad(lambda p: loss(p, mixed), has_aux=True))(params)
    (_, full), full_grads = jax.jit(jax.value_and_grad(lambda p: loss(p, model), has_aux=True))(params)
    for name, raw in half.items():
        assert raw.dtype == jnp.float32
        np.testing.assert_allclose(raw, full[name], rtol=0.05, atol=0.05)
    assert not np.allclose(half[spec.parts[0].name], full[spec.parts[0].name], rtol=1e-6, atol=1e-6)
    assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    # Every gradient within bfloat16's rounding of the float32 one (a wrongly
    # transposed product in the backward pass would be nowhere near).
    errors = jax.tree.map(lambda g, e: float(jnp.linalg.norm(g - e) / (jnp.linalg.norm(e) + 1e-6)), grads, full_grads)
    path, worst = max(jax.tree_util.tree_leaves_with_path(errors), key=lambda leaf: leaf[1])
    assert worst < 0.05, (jax.tree_util.keystr(path), worst)


@pytest.mark.parametrize("family", ["mel_2bar", "trio_hier", "groove_humanize"])
@pytest.mark.parametrize("platform", ["cuda", "tpu", "cpu"])
def test_bfloat16_training_multiplies_in_bfloat16_forward_and_backward(family, platform):
    """Lowered for each backend (no device needed), every product of the training gradient takes bfloat16 operands.

    JAX's own transpose of a bfloat16 product with a float32 result would
    multiply the float32 cotangent by the upcast operand: about half a
    step's products, every weight gradient among them, in float32 (TF32 on
    a GPU; on a CPU with AMX a fifth of the bfloat16 rate).
    """
    spec, batch, model, params = initialised(family)
    mixed = MusicVAE(dataclasses.replace(spec, compute_dtype="bfloat16"))

    def loss(p):
        outputs = mixed.apply(p, batch, KEY, train=True, scheduled_sampling=True, sampling_prob=0.5)
        return sum(jnp.sum(raw**2) for raw in outputs["raw"].values())

    text = jax.jit(jax.grad(loss)).trace(params).lower(lowering_platforms=(platform,)).as_text()
    operands = re.findall(r"stablehlo.dot_general .*?: \(tensor<[\dx]*x(\w+)>, tensor<[\dx]*x(\w+)>\)", text)
    assert len(operands) > 20
    assert all(pair == ("bf16", "bf16") for pair in operands), sorted(set(operands))
    if platform != "cpu":
        # Gathered token columns' gradients are one-hot products there, not scatter-adds (GPU atomics).
        assert "stablehlo.scatter" not in text


def test_mixed_einsum_takes_products_only():
    """Its backward pass transposes a product; an index summed out of one operand alone would need a broadcast."""
    a, b = jnp.ones((2, 3), jnp.bfloat16), jnp.ones((3, 4), jnp.bfloat16)
    assert mixed_einsum("ij,jk->ik", a, b).dtype == jnp.float32
    with pytest.raises(ValueError, match="ij,jk->k"):
        mixed_einsum("ij,jk->k", a, b)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gathered_columns_and_both_gradients_match_the_one_hot_product(dtype):
    """Columns gathered for token ids (-1: no token) equal one_hot @ kernel.T, and so do both gradient routes."""
    kernel = jax.random.normal(jax.random.key(1), (12, 7)).astype(dtype)
    tokens = jax.random.randint(jax.random.key(2), (3, 5), -1, 7)
    assert bool(jnp.any(tokens == -1)) and bool(jnp.any(tokens == 6))
    g = jax.random.normal(jax.random.key(3), (3, 5, 12))
    wide = kernel.astype(jnp.float32)
    want, reference_vjp = jax.vjp(lambda k: jax.nn.one_hot(tokens, 7) @ k.T, wide)
    (want_grad,) = reference_vjp(g)

    got, vjp = jax.vjp(lambda k: gather_columns(k, tokens), kernel)
    np.testing.assert_array_equal(got, want)
    (grad,) = vjp(g)
    assert grad.dtype == dtype
    # bfloat16: the cotangent's and the result's rounding; float32: summation order only.
    tolerance = 1e-2 if dtype == jnp.bfloat16 else 1e-6
    for route in (grad, scattered_columns_gradient(kernel, tokens, g), one_hot_columns_gradient(kernel, tokens, g)):
        error = jnp.linalg.norm(route.astype(jnp.float32) - want_grad) / jnp.linalg.norm(want_grad)
        assert float(error) < tolerance, float(error)
