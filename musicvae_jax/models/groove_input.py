"""What a GrooVAE's encoder reads of a performance: the task it learns (GrooVAE paper, section 4).

The decoder always plays the whole performance; what the encoder is shown
of it decides what the model does with an input at sampling time:

- "performance": all of it (a plain VAE of grooves),
- "hits": hits only, velocities and offsets zeroed (humanize: a quantized
  beat in, a played one out),
- "taps": one line of taps: a hit wherever any drum is struck, with the
  velocity and offset of the step's loudest hit (tap2drum: a rhythm tapped
  on anything in, a drum part out),
- "taps_fixed_velocity": the taps without their velocities (for taps from
  a keyboard or a mouse, which carry none),
- "without:NAME,...": the performance less the named drum classes (infill:
  a beat without, say, its hi-hats in, one with hi-hats made up for it out).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from musicvae_jax.representations.groove import DRUM_CLASS_NAMES, VALUES_PER_STEP

GROOVE_INPUTS = ("performance", "hits", "taps", "taps_fixed_velocity", "without:NAME,...")
WITHOUT = "without:"


def dropped_classes(groove_input: str) -> tuple[int, ...]:
    """The drum classes a "without:..." input leaves out, or an error naming the field and the known names."""
    names = [n.strip() for n in groove_input.removeprefix(WITHOUT).split(",") if n.strip()]
    unknown = [n for n in names if n not in DRUM_CLASS_NAMES]
    if not names or unknown:
        raise ValueError(
            f"config.model.groove_input {groove_input!r}: name the drum classes to leave out, from "
            f"{', '.join(DRUM_CLASS_NAMES)}" + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    if len(set(names)) == len(DRUM_CLASS_NAMES):
        raise ValueError(f"config.model.groove_input {groove_input!r}: leaves the encoder nothing to read")
    return tuple(sorted({DRUM_CLASS_NAMES.index(n) for n in names}))


def check_groove_input(groove_input: str) -> None:
    """Fails naming the field on a value that is none of GROOVE_INPUTS."""
    if groove_input.startswith(WITHOUT):
        dropped_classes(groove_input)
    elif groove_input not in GROOVE_INPUTS:
        raise ValueError(f"config.model.groove_input must be one of {', '.join(GROOVE_INPUTS)}; got {groove_input!r}")


def reads_taps(groove_input: str) -> bool:
    return groove_input.startswith("taps")


def encoder_depth(groove_input: str) -> int:
    """Values per step the encoder reads: [hit, velocity, offset] for taps, else 27."""
    return 3 if reads_taps(groove_input) else VALUES_PER_STEP


def encoder_values(batch: dict, groove_input: str) -> jax.Array:
    """The encoder's view [B, T, encoder_depth] of a batch's hits, velocities and offsets [B, T, 9]."""
    hits, velocities, offsets = (batch[k].astype(jnp.float32) for k in ("hits", "velocities", "offsets"))
    if reads_taps(groove_input):
        tapped = jnp.max(hits, axis=-1, keepdims=True)
        loudest = jnp.argmax(jnp.where(hits > 0.5, velocities, -1.0), axis=-1)[..., None]
        velocity = jnp.take_along_axis(velocities, loudest, axis=-1) * tapped
        if groove_input == "taps_fixed_velocity":
            velocity = jnp.zeros_like(velocity)
        return jnp.concatenate([tapped, velocity, jnp.take_along_axis(offsets, loudest, axis=-1) * tapped], axis=-1)
    if groove_input == "hits":
        velocities, offsets = jnp.zeros_like(hits), jnp.zeros_like(hits)
    elif groove_input.startswith(WITHOUT):
        kept = jnp.ones(hits.shape[-1]).at[jnp.asarray(dropped_classes(groove_input))].set(0.0)
        hits, velocities, offsets = hits * kept, velocities * kept, offsets * kept
    return jnp.concatenate([hits, velocities, offsets], axis=-1)
