"""MusicVAE: encoder -> z -> flat or hierarchical decoder, for every representation.

Hierarchical: a conductor LSTM stack (state from z) runs U steps on zero
inputs and emits one embedding per bar; each part's core decodes every bar
from its embedding. In training the previous true token crosses bar lines
(bar u starts from the last true token of bar u-1), so all bars decode as
one batch; in sampling, bar u starts from the last sampled token of bar u-1.
"""

from __future__ import annotations

import dataclasses
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp

from musicvae_jax.models import decoders
from musicvae_jax.models.decoders import CoreSpec, CoreWeights
from musicvae_jax.models.encoder import BidirectionalEncoder, InputProjection
from musicvae_jax.models.lstm import LECUN_NORMAL, LSTMStackWeights, reverse_by_length, run_stack
from musicvae_jax.models.parts import Part, parts_for


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    representation: str
    num_steps: int
    num_bars: int
    encoder_sizes: tuple[int, ...]
    decoder_sizes: tuple[int, ...]
    conductor_sizes: tuple[int, ...] = ()  # empty: flat decoder
    z_size: int = 256
    hoist_input_projection: bool = False
    unroll: int = 1
    dropout_keep: float = 1.0
    groove_input: str = "performance"  # groove: what the encoder reads (models/groove_input.py); "hits": humanize
    groove_values_on_hits: bool = False
    compute_dtype: str = "float32"  # "bfloat16": mixed precision (float32 params, loss and optimizer)
    sequence_vjp: bool = True  # LSTM weight gradients once per sequence (models/lstm.py)
    batch_directions: bool = False  # the encoder's two directions as one batched scan (models/encoder.py)

    @property
    def hierarchical(self) -> bool:
        return bool(self.conductor_sizes)

    @property
    def parts(self) -> tuple[Part, ...]:
        return parts_for(self.representation, self.groove_input, self.groove_values_on_hits)

    def core_specs(self) -> list[CoreSpec]:
        groups = [(p,) for p in self.parts] if self.hierarchical else [self.parts]
        return [
            CoreSpec(
                self.decoder_sizes,
                g,
                self.hoist_input_projection,
                self.unroll,
                self.dropout_keep,
                self.compute_dtype,
                self.sequence_vjp,
            )
            for g in groups
        ]


def encoder_projection(parts: tuple[Part, ...], batch: dict) -> InputProjection:
    """The encoder's first input projection from each part's values: token columns gathered, vectors multiplied.

    For a trio, whose 692 input features are three one-hots, this replaces
    the largest product of a small model's encoder (BENCHMARKS.md).
    """
    values = [p.encoder_values(batch) for p in parts]
    splits = list(itertools.accumulate(p.encoder_depth for p in parts))[:-1]

    def project(kernel: jax.Array, reverse: bool) -> jax.Array:
        blocks = jnp.split(kernel, splits, axis=1)
        return sum(
            p.project_encoder_values(reverse_by_length(v, batch["lengths"]) if reverse else v, k)
            for p, v, k in zip(parts, values, blocks, strict=True)
        )

    return project


class ConductorWeights(nn.Module):
    sizes: tuple[int, ...]
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, z_size: int) -> dict:
        dtype = jnp.dtype(self.compute_dtype)
        init_kernel = self.param("init_kernel", LECUN_NORMAL, (2 * sum(self.sizes), z_size))
        return {
            "lstm": LSTMStackWeights(self.sizes, dtype=dtype, name="lstm")(1),
            "init_kernel": init_kernel.astype(dtype),
            "init_bias": self.param("init_bias", nn.initializers.zeros, (2 * sum(self.sizes),)),
        }


class MusicVAE(nn.Module):
    spec: ModelSpec

    def setup(self):
        s = self.spec
        self.encoder = BidirectionalEncoder(
            s.encoder_sizes,
            s.z_size,
            s.hoist_input_projection,
            s.unroll,
            s.compute_dtype,
            s.sequence_vjp,
            s.batch_directions,
        )
        self.cores = [CoreWeights(c, name=f"core_{i}") for i, c in enumerate(s.core_specs())]
        if s.hierarchical:
            self.conductor = ConductorWeights(s.conductor_sizes, s.compute_dtype)

    def create_weights(self) -> None:
        """Creates every parameter without tracing a pass over a sequence (see `init_params`)."""
        s = self.spec
        self.encoder.create_weights(sum(p.encoder_depth for p in s.parts))
        for core in self.cores:
            core(s.conductor_sizes[-1] if s.hierarchical else s.z_size)
        if s.hierarchical:
            self.conductor(s.z_size)

    def encode(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        """mu, sigma [B, z] of q(z | x)."""
        features = jnp.concatenate([p.encoder_features(batch) for p in self.spec.parts], axis=-1)
        return self.encoder(features, batch["lengths"], encoder_projection(self.spec.parts, batch))

    def conductor_embeddings(self, z: jax.Array) -> jax.Array:
        """z [B, z] -> one embedding per bar [B, U, H_conductor]."""
        s = self.spec
        weights = self.conductor(s.z_size)
        conductor = CoreSpec(s.conductor_sizes, ())
        carries = decoders.initial_carries(conductor, weights, z)
        zeros = jnp.zeros((z.shape[0], s.num_bars, 1), z.dtype)
        embeddings, _ = run_stack(
            weights["lstm"],
            zeros,
            carries,
            hoist_input_projection=s.hoist_input_projection,
            sequence_vjp=s.sequence_vjp,
        )
        return embeddings

    def __call__(
        self,
        batch: dict,
        rng: jax.Array,
        *,
        train: bool = True,
        scheduled_sampling: bool = False,
        sampling_prob: float | jax.Array = 0.0,
        use_mean: bool = False,
    ) -> dict:
        """Reconstruction pass. Returns raw outputs per part [B, T, depth], and mu, sigma, z."""
        s = self.spec
        z_rng, dropout_rng, sampling_rng = jax.random.split(rng, 3)
        mu, sigma = self.encode(batch)
        z = mu if use_mean else mu + sigma * jax.random.normal(z_rng, mu.shape, mu.dtype)
        targets = [p.targets(batch) for p in s.parts]
        raw: list[jax.Array] = []
        if s.hierarchical:
            embeddings = self.conductor_embeddings(z)
            batch_size, bars = embeddings.shape[:2]
            bar_steps = s.num_steps // bars
            cond = embeddings.reshape(batch_size * bars, -1)
            for i, (core, spec, part, target) in enumerate(
                zip(self.cores, s.core_specs(), s.parts, targets, strict=True)
            ):
                prev = part.shift_right(target)
                prev = prev.reshape(batch_size * bars, bar_steps, *prev.shape[2:])
                out = decoders.teacher_forced(
                    spec,
                    core(cond.shape[-1]),
                    cond,
                    [prev],
                    keep_masks=decoders.dropout_masks(
                        spec, jax.random.fold_in(dropout_rng, i) if train else None, *prev.shape[:2], cond.shape[-1]
                    ),
                )
                raw.append(out.reshape(batch_size, s.num_steps, -1))
        else:
            (spec,) = s.core_specs()
            weights = self.cores[0](s.z_size)
            masks = decoders.dropout_masks(spec, dropout_rng if train else None, *targets[0].shape[:2], s.z_size)
            if scheduled_sampling:
                out = decoders.scheduled_sampling(
                    spec, weights, z, targets, sampling_rng, sampling_prob, keep_masks=masks
                )
            else:
                prev = [p.shift_right(t) for p, t in zip(s.parts, targets, strict=True)]
                out = decoders.teacher_forced(spec, weights, z, prev, lengths=batch["lengths"], keep_masks=masks)
            raw = decoders.split_parts(spec, out)
        return {"raw": {p.name: r for p, r in zip(s.parts, raw, strict=True)}, "mu": mu, "sigma": sigma, "z": z}

    def decode(
        self, z: jax.Array, rng: jax.Array, temperature: float | jax.Array = 1.0, same_draws: bool = False
    ) -> dict:
        """Samples from z [B, z]: values per part ([B, T] tokens or [B, T, 27]).

        `same_draws`: row i samples as decoding z[i:i+1] alone with `rng` would.
        """
        s = self.spec
        specs = s.core_specs()
        options = dict(temperature=temperature, same_draws=same_draws)
        if not s.hierarchical:
            weights = self.cores[0](s.z_size)
            first = decoders.start_values(specs[0], z.shape[0])
            values = decoders.stepwise(specs[0], weights, z, first, s.num_steps, rng, **options).values
            return {p.name: v for p, v in zip(s.parts, values, strict=True)}
        embeddings = self.conductor_embeddings(z)
        bar_steps = s.num_steps // s.num_bars
        weights = [core(embeddings.shape[-1]) for core in self.cores]

        def bar(lasts, scanned):
            u, cond = scanned
            outs, new_lasts = [], []
            for i, (spec, w, last) in enumerate(zip(specs, weights, lasts, strict=True)):
                bar_rng = jax.random.fold_in(jax.random.fold_in(rng, u), i)
                decoded = decoders.stepwise(spec, w, cond, last, bar_steps, bar_rng, **options)
                outs.append(decoded.values[0])
                new_lasts.append(decoded.last)
            return new_lasts, outs

        firsts = [decoders.start_values(spec, z.shape[0]) for spec in specs]
        _, per_bar = jax.lax.scan(bar, firsts, (jnp.arange(s.num_bars), jnp.swapaxes(embeddings, 0, 1)))
        values = {}
        for part, v in zip(s.parts, per_bar, strict=True):
            v = jnp.swapaxes(v, 0, 1)  # [B, U, S, ...]
            values[part.name] = v.reshape(v.shape[0], s.num_steps, *v.shape[3:])
        return values


def init_params(model: MusicVAE, rng: jax.Array) -> dict:
    """Fresh variables {"params": ...}: the values `model.init` through a reconstruction pass gives.

    Through the pass, init traces and compiles the whole model only for XLA
    to drop it again; here only the initialisers run, each compiled once per
    shape (`lstm.compiled_initializer`), and their programs serve every later
    model with the same shapes (BENCHMARKS.md).
    """
    return model.init(rng, method=MusicVAE.create_weights)
