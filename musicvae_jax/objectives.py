"""The ELBO with free bits and beta, and the schedules of SPEC section 4.

Every function is pure. Batch means are weighted by `batch["weights"]`
(0 for rows that only pad an eval batch) and steps are masked by length.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from musicvae_jax.models.parts import Part

LN2 = math.log(2.0)


def kl_divergence(mu: jax.Array, sigma: jax.Array) -> jax.Array:
    """KL(N(mu, sigma^2) || N(0, I)) in nats, per example [B]."""
    return 0.5 * jnp.sum(mu**2 + sigma**2 - 1.0 - 2.0 * jnp.log(sigma), axis=-1)


def beta(step: jax.Array, max_beta: float, beta_rate: float) -> jax.Array:
    """(1 - beta_rate ** step) * max_beta; beta_rate 0 gives max_beta from the first step."""
    if beta_rate == 0.0:
        return jnp.asarray(max_beta, jnp.float32)
    return (1.0 - _power(beta_rate, step)) * max_beta


def _power(base: float, step: jax.Array) -> jax.Array:
    """base ** step with log(base) taken in float64 on the host: float32 has too few digits for 0.99999."""
    return jnp.exp(jnp.asarray(step, jnp.float32) * math.log(base))


def sampling_probability(step: jax.Array, schedule: str, rate: float) -> jax.Array:
    """Probability of feeding the model's own sample instead of the true previous token."""
    if schedule == "inverse_sigmoid":
        # 1 - k / (k + exp(step / k)), written as a sigmoid: exact in float32 and never overflows.
        return jax.nn.sigmoid(jnp.asarray(step, jnp.float32) / rate - math.log(rate))
    if schedule == "constant":
        return jnp.asarray(rate, jnp.float32)
    raise ValueError(f"unknown sampling schedule {schedule!r}")


def learning_rate(step: jax.Array, initial: float, decay_rate: float, minimum: float) -> jax.Array:
    return (initial - minimum) * _power(decay_rate, step) + minimum


def step_mask(lengths: jax.Array, num_steps: int) -> jax.Array:
    """[B, T] float: 1 for steps before each example's length."""
    return (jnp.arange(num_steps)[None, :] < lengths[:, None]).astype(jnp.float32)


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def reconstruction(parts: tuple[Part, ...], raw: dict, batch: dict) -> tuple[jax.Array, dict]:
    """Summed loss per sequence [B] and, per part, (correct steps [B], counted steps [B])."""
    mask = step_mask(batch["lengths"], raw[parts[0].name].shape[1])
    r_loss = 0.0
    counts = {}
    for part in parts:
        target = part.targets(batch)
        r_loss = r_loss + jnp.sum(part.step_losses(raw[part.name], target) * mask, axis=-1)
        counts[part.name] = (jnp.sum(part.step_correct(raw[part.name], target) * mask, axis=-1), jnp.sum(mask, -1))
    return r_loss, counts


def elbo(
    parts: tuple[Part, ...],
    outputs: dict,
    batch: dict,
    *,
    step: jax.Array,
    free_bits: float,
    max_beta: float,
    beta_rate: float,
) -> tuple[jax.Array, dict]:
    """loss = mean(r_loss) + beta * mean(max(KL - free_bits * ln 2, 0)), and its metrics."""
    weights = batch["weights"]
    r_loss, counts = reconstruction(parts, outputs["raw"], batch)
    kl = kl_divergence(outputs["mu"], outputs["sigma"])
    kl_cost = jnp.maximum(kl - free_bits * LN2, 0.0)
    b = beta(step, max_beta, beta_rate)
    loss = weighted_mean(r_loss, weights) + b * weighted_mean(kl_cost, weights)
    metrics = {
        "loss": loss,
        "r_loss": weighted_mean(r_loss, weights),
        "kl": weighted_mean(kl, weights),
        "kl_bits": weighted_mean(kl, weights) / LN2,
        "elbo": -weighted_mean(r_loss + kl, weights),
        "beta": b,
    }
    for name, (correct, counted) in counts.items():
        metrics[f"accuracy/{name}"] = jnp.sum(correct * weights) / jnp.maximum(jnp.sum(counted * weights), 1.0)
    return loss, metrics
