"""What the model reads and writes for each representation, one `Part` per output.

A part turns batch arrays into encoder features, decoder targets and the
vector fed back as the next decoder input, and turns raw decoder outputs into
a loss, an accuracy and samples. Batches carry token ids; one-hot vectors and
the drum roll are made here, on the device.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from musicvae_jax.models import groove_input
from musicvae_jax.models.lstm import dot, gather_columns
from musicvae_jax.representations.drums import NUM_CLASSES as DRUM_CLASSES
from musicvae_jax.representations.drums import drum_roll
from musicvae_jax.representations.groove import VALUES_PER_STEP
from musicvae_jax.representations.melody import NUM_CLASSES as MELODY_CLASSES

GROOVE_HITS = VALUES_PER_STEP // 3
GROOVE_KEYS = ("hits", "velocities", "offsets")


@dataclasses.dataclass(frozen=True)
class Part:
    name: str  # batch key (categorical) and metric name
    kind: str  # "categorical" or "groove"
    depth: int  # classes, or 27 values per groove step
    encoder_input: str  # "onehot", "roll" or "groove"
    values_on_hits: bool = False  # groove: velocity and offset errors count where the data has a hit only
    groove_input: str = "performance"  # groove: what the encoder reads of the performance (models/groove_input.py)

    def targets(self, batch: dict) -> jax.Array:
        """Categorical: token ids [B, T]; groove: [B, T, 27] (hits, velocities, offsets)."""
        if self.kind == "groove":
            return jnp.concatenate([batch[k] for k in GROOVE_KEYS], axis=-1)
        return batch[self.name].astype(jnp.int32)

    def input_vectors(self, values: jax.Array) -> jax.Array:
        """Target or sampled values -> the vectors fed to the decoder [..., depth]."""
        if self.kind == "groove":
            return values.astype(jnp.float32)
        return jax.nn.one_hot(values, self.depth, dtype=jnp.float32)

    def start_values(self, batch: int) -> jax.Array:
        """The previous value before a sequence's first step: no token (-1, a zero one-hot), or a silent groove step."""
        if self.kind == "groove":
            return jnp.zeros((batch, self.depth), jnp.float32)
        return jnp.full((batch,), -1, jnp.int32)

    def shift_right(self, values: jax.Array) -> jax.Array:
        """Values [N, T, ...] -> the previous step's value at each step, the start value at t = 0."""
        start = self.start_values(values.shape[0])
        return jnp.concatenate([start[:, None], values[:, :-1].astype(start.dtype)], axis=1)

    def project(self, values: jax.Array, kernel: jax.Array) -> jax.Array:
        """input_vectors(values) @ kernel.T for a kernel [out, depth], as float32 [..., out].

        A token's one-hot times the kernel is the token's column, so
        categorical parts gather columns instead of multiplying (no token:
        zeros); groove values are multiplied.
        """
        if self.kind == "groove":
            return dot(values, kernel)
        return gather_columns(kernel, values)

    def encoder_values(self, batch: dict) -> jax.Array:
        """What the encoder reads of this part: token ids [B, T] for one-hot inputs, else vectors [B, T, depth]."""
        if self.encoder_input == "onehot":
            return self.targets(batch)
        if self.encoder_input == "roll":
            return drum_roll(batch[self.name], jnp).astype(jnp.float32)
        if self.encoder_input == "groove":
            return groove_input.encoder_values(batch, self.groove_input)
        return self.input_vectors(self.targets(batch))

    def encoder_features(self, batch: dict) -> jax.Array:
        """The encoder's input vectors [B, T, encoder_depth]."""
        values = self.encoder_values(batch)
        return self.input_vectors(values) if self.encoder_input == "onehot" else values

    def project_encoder_values(self, values: jax.Array, kernel: jax.Array) -> jax.Array:
        """encoder_values (or their time reversal) times a kernel [out, encoder_depth] -> float32 [B, T, out].

        One-hot inputs gather their tokens' columns (`project`); vectors are multiplied.
        """
        return self.project(values, kernel) if self.encoder_input == "onehot" else dot(values, kernel)

    @property
    def encoder_depth(self) -> int:
        if self.encoder_input == "groove":
            return groove_input.encoder_depth(self.groove_input)
        return 10 if self.encoder_input == "roll" else self.depth

    def split_outputs(self, raw: jax.Array) -> dict[str, jax.Array]:
        """Raw head outputs [..., depth] -> named outputs (logits, or hits/velocities/offsets)."""
        if self.kind == "groove":
            hits, velocities, offsets = jnp.split(raw, 3, axis=-1)
            return {"hit_logits": hits, "velocities": jax.nn.sigmoid(velocities), "offsets": 0.5 * jnp.tanh(offsets)}
        return {"logits": raw}

    def step_losses(self, raw: jax.Array, targets: jax.Array) -> jax.Array:
        """Loss per step [B, T]: cross-entropy, or groove's hit cross-entropy plus squared errors."""
        if self.kind == "groove":
            out = self.split_outputs(raw)
            hits, velocities, offsets = jnp.split(targets, 3, axis=-1)
            ce = _sigmoid_cross_entropy(out["hit_logits"], hits)
            se = (out["velocities"] - velocities) ** 2 + (out["offsets"] - offsets) ** 2
            if self.values_on_hits:
                se = se * hits
            return jnp.sum(ce + se, axis=-1)
        log_probs = jax.nn.log_softmax(raw.astype(jnp.float32))
        return -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]

    def step_correct(self, raw: jax.Array, targets: jax.Array) -> jax.Array:
        """[B, T] bool: argmax token right, or (groove) all 9 hit decisions right."""
        if self.kind == "groove":
            hits = jnp.split(targets, 3, axis=-1)[0]
            return jnp.all((raw[..., :GROOVE_HITS] > 0) == (hits > 0.5), axis=-1)
        return jnp.argmax(raw, axis=-1) == targets

    def values_alike(self, values: jax.Array, other: jax.Array) -> jax.Array:
        """[B, T] bool: two sequences of values (sampled or target) play the same token, or (groove) the same 9
        hits, at each step."""
        if self.kind == "groove":
            return jnp.all((values[..., :GROOVE_HITS] > 0.5) == (other[..., :GROOVE_HITS] > 0.5), axis=-1)
        return values == other

    def sample(
        self, raw: jax.Array, rng: jax.Array, temperature: float | jax.Array, same_draws: bool = False
    ) -> jax.Array:
        """Values drawn from the output distribution of raw [B, ...]; temperature near 0 is argmax (or hit > 0.5).

        `same_draws`: every row uses the draws a batch of one would (one
        noise row, broadcast), so rows given the same key differ only by
        their outputs.
        """
        greedy = temperature < 1e-4
        if self.kind == "groove":
            out = self.split_outputs(raw)
            shape = out["hit_logits"].shape
            noise = jax.random.uniform(rng, (1, *shape[1:]) if same_draws else shape)
            threshold = jnp.where(greedy, 0.5, noise)
            probs = jax.nn.sigmoid(out["hit_logits"] / jnp.maximum(temperature, 1e-4))
            hits = (probs > threshold).astype(jnp.float32)
            return jnp.concatenate([hits, out["velocities"] * hits, out["offsets"] * hits], axis=-1)
        # A categorical draw as the Gumbel-max of the logits: jax.random.categorical's own way, with the noise's
        # shape in our hands.
        noise = jax.random.gumbel(rng, (1, *raw.shape[1:]) if same_draws else raw.shape, jnp.float32)
        sampled = jnp.argmax(raw.astype(jnp.float32) / jnp.maximum(temperature, 1e-4) + noise, axis=-1)
        return jnp.where(greedy, jnp.argmax(raw, axis=-1), sampled)


def _sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def parts_for(representation: str, groove_input: str = "performance", values_on_hits: bool = False) -> tuple[Part, ...]:
    """The parts of a representation, in decoding order."""
    if representation.startswith("melody"):
        return (Part("tokens", "categorical", MELODY_CLASSES, "onehot"),)
    if representation.startswith("drums"):
        return (Part("tokens", "categorical", DRUM_CLASSES, "roll"),)
    if representation.startswith("trio"):
        return (
            Part("melody", "categorical", MELODY_CLASSES, "onehot"),
            Part("bass", "categorical", MELODY_CLASSES, "onehot"),
            Part("drums", "categorical", DRUM_CLASSES, "onehot"),
        )
    if representation.startswith("groove"):
        return (Part("groove", "groove", VALUES_PER_STEP, "groove", values_on_hits, groove_input),)
    raise ValueError(f"no model parts for representation {representation!r}")
