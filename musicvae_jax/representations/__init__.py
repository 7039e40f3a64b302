"""The data representations by name: what a config or `--representation` picks.

Each representation turns a `NoteSequence` into windows (dicts of compact
arrays, `windows`) and one window back into notes (`to_notes`); `fields`
gives the arrays' shapes and dtypes as stored in records.
"""

from __future__ import annotations

from musicvae_jax.representations.drums import DrumsRepresentation
from musicvae_jax.representations.groove import GrooveRepresentation
from musicvae_jax.representations.melody import MelodyRepresentation
from musicvae_jax.representations.trio import TrioRepresentation

Representation = MelodyRepresentation | DrumsRepresentation | TrioRepresentation | GrooveRepresentation

REPRESENTATIONS: dict[str, Representation] = {
    r.name: r
    for r in (
        MelodyRepresentation("melody_2bar", num_bars=2),
        MelodyRepresentation("melody_16bar", num_bars=16),
        DrumsRepresentation("drums_2bar", num_bars=2),
        DrumsRepresentation("drums_16bar", num_bars=16),
        TrioRepresentation("trio_16bar", num_bars=16),
        GrooveRepresentation("groove_2bar", num_bars=2),
        GrooveRepresentation("groove_4bar", num_bars=4),
    )
}


def get_representation(name: str) -> Representation:
    """The representation called `name`; a clear error names the known ones."""
    try:
        return REPRESENTATIONS[name]
    except KeyError:
        raise ValueError(f"unknown representation {name!r}; known: {', '.join(REPRESENTATIONS)}") from None
