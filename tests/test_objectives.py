"""The loss against a slow float64 NumPy reference of the same equations, and the schedules."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from model_helpers import random_batch, tiny_spec

from musicvae_jax import objectives
from musicvae_jax.models.vae import MusicVAE, init_params

KEY = jax.random.key(0)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_lstm(w, xs, c, h):
    """xs [T, in] -> outputs [T, H]; gate order (i, g, f, o)."""
    outs = []
    for x in xs:
        i, g, f, o = np.split(x @ w["w_x"].T + h @ w["w_h"].T + w["b"], 4)  # kernels are [out, in]
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs), c, h


def reference_loss(params, batch, free_bits, max_beta, beta_rate, step):
    """Flat melody model, z = mu, one example at a time, all in float64."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    enc = p["encoder"]
    total_r, total_kl, total_kl_cost = [], [], []
    for b in range(batch["tokens"].shape[0]):
        x = np.eye(90)[batch["tokens"][b]]
        hidden = enc["forward"]["w_h_0"].shape[1]
        zero = np.zeros(hidden)
        layer = lambda d: {k: enc[d][f"{k}_0"] for k in ("w_x", "w_h", "b")}  # noqa: E731
        fwd_out, _, h_f = np_lstm(layer("forward"), x, zero, zero)
        bwd_out, _, h_b = np_lstm(layer("backward"), x[::-1], zero, zero)
        h = np.concatenate([h_f, h_b])
        mu = h @ enc["mu"]["kernel"] + enc["mu"]["bias"]
        sigma = np.log1p(np.exp(h @ enc["sigma"]["kernel"] + enc["sigma"]["bias"]))
        z = mu
        core = p["core_0"]
        state = np.tanh(z @ core["init_kernel"].T + core["init_bias"])
        sizes = [
            core["lstm"][f"w_h_{i}"].shape[1] for i in range(len([k for k in core["lstm"] if k.startswith("w_h")]))
        ]
        prev = np.zeros((len(x), 90))
        prev[1:] = x[:-1]
        inputs = np.concatenate([prev, np.broadcast_to(z, (len(x), len(z)))], axis=1)
        offset = 0
        for i, size in enumerate(sizes):
            c0, h0 = state[offset : offset + size], state[offset + size : offset + 2 * size]
            offset += 2 * size
            w = {k: core["lstm"][f"{k}_{i}"] for k in ("w_x", "w_h", "b")}
            inputs, _, _ = np_lstm(w, inputs, c0, h0)
        logits = inputs @ core["head_kernel"].T + core["head_bias"]
        log_probs = (
            logits
            - np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1, keepdims=True))
            - logits.max(1, keepdims=True)
        )
        r = -np.sum(log_probs[np.arange(len(x)), batch["tokens"][b]])
        kl = 0.5 * np.sum(mu**2 + sigma**2 - 1 - 2 * np.log(sigma))
        total_r.append(r)
        total_kl.append(kl)
        total_kl_cost.append(max(kl - free_bits * math.log(2), 0.0))
    beta = (1 - beta_rate**step) * max_beta
    return np.mean(total_r) + beta * np.mean(total_kl_cost), np.mean(total_r), np.mean(total_kl)


@pytest.mark.parametrize("free_bits", [0.0, 3.0])
def test_loss_matches_float64_numpy_reference(free_bits):
    spec = tiny_spec("mel_2bar", encoder_sizes=(16,))  # the reference reads one encoder layer
    batch = random_batch(spec, batch_size=4, seed=2)
    model = MusicVAE(spec)
    params = init_params(model, KEY)
    outputs = jax.jit(lambda p: model.apply(p, batch, KEY, train=False, use_mean=True))(params)
    step = jnp.asarray(37)
    loss, metrics = objectives.elbo(
        spec.parts, outputs, batch, step=step, free_bits=free_bits, max_beta=0.5, beta_rate=0.99
    )
    want_loss, want_r, want_kl = reference_loss(params, batch, free_bits, 0.5, 0.99, 37)
    np.testing.assert_allclose(float(metrics["r_loss"]), want_r, rtol=2e-5)
    np.testing.assert_allclose(float(metrics["kl"]), want_kl, rtol=2e-4)
    np.testing.assert_allclose(float(loss), want_loss, rtol=2e-5)
    np.testing.assert_allclose(float(metrics["kl_bits"]), want_kl / math.log(2), rtol=2e-4)


def test_padding_rows_do_not_count():
    spec = tiny_spec("drums_2bar")
    batch = random_batch(spec, batch_size=4)
    model = MusicVAE(spec)
    params = init_params(model, KEY)
    kwargs = dict(step=jnp.asarray(0), free_bits=0.0, max_beta=0.2, beta_rate=0.0)
    apply = jax.jit(lambda batch: model.apply(params, batch, KEY, train=False, use_mean=True))
    first_two = {k: v[:2] for k, v in batch.items()}
    padded = dict(batch, weights=np.array([1, 1, 0, 0], np.float32))
    _, want = objectives.elbo(spec.parts, apply(first_two), first_two, **kwargs)
    _, got = objectives.elbo(spec.parts, apply(padded), padded, **kwargs)
    for key in ("loss", "r_loss", "kl", "accuracy/tokens"):
        np.testing.assert_allclose(float(got[key]), float(want[key]), rtol=1e-5)


def test_schedules_follow_the_spec():
    step = jnp.asarray(2000)
    assert float(objectives.beta(step, 0.2, 0.0)) == pytest.approx(0.2)
    assert float(objectives.beta(step, 0.5, 0.99999)) == pytest.approx((1 - 0.99999**2000) * 0.5, rel=1e-5)
    assert float(objectives.sampling_probability(step, "inverse_sigmoid", 1000.0)) == pytest.approx(
        1 - 1000 / (1000 + math.exp(2.0)), rel=1e-4
    )
    assert float(objectives.sampling_probability(jnp.asarray(0), "inverse_sigmoid", 1000.0)) == pytest.approx(
        1 - 1000 / 1001, rel=1e-5
    )
    assert float(objectives.sampling_probability(step, "constant", 0.25)) == 0.25
    assert float(objectives.learning_rate(step, 1e-3, 0.9999, 1e-5)) == pytest.approx(
        (1e-3 - 1e-5) * 0.9999**2000 + 1e-5, rel=1e-5
    )


def test_groove_loss_is_hit_cross_entropy_plus_squared_errors():
    spec = tiny_spec("groove_humanize")
    (part,) = spec.parts
    raw = jax.random.normal(KEY, (1, 2, 27))
    targets = jnp.asarray(np.random.default_rng(0).random((1, 2, 27)), jnp.float32)
    targets = targets.at[..., :9].set(targets[..., :9] > 0.5)
    got = part.step_losses(raw, targets)
    logits, vel, off = np.split(np.asarray(raw, np.float64), 3, axis=-1)
    hits, tv, to = np.split(np.asarray(targets, np.float64), 3, axis=-1)
    p = sigmoid(logits)
    ce = -(hits * np.log(p) + (1 - hits) * np.log(1 - p))
    se = (sigmoid(vel) - tv) ** 2 + (0.5 * np.tanh(off) - to) ** 2
    np.testing.assert_allclose(got, np.sum(ce + se, axis=-1), rtol=1e-5)
    # With groove_values_on_hits, the squared errors count where the data has a hit only.
    (on_hits,) = dataclasses.replace(spec, groove_values_on_hits=True).parts
    got = on_hits.step_losses(raw, targets)
    np.testing.assert_allclose(got, np.sum(ce + se * hits, axis=-1), rtol=1e-5)
    assert 0 < hits.sum() < hits.size
