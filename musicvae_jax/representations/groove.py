"""GrooVAE: per step and drum class a hit, a velocity and a micro-timing offset.

Each step holds 27 values laid out `[hits(9), velocities(9), offsets(9)]`;
records keep them as three [T, 9] arrays (hits uint8, the rest float16).
Velocity is MIDI velocity / 127; offset is the hit's distance from its grid
step in steps, in [-0.5, 0.5). Two hits of one class on one step: the louder
is kept. Classes follow the Roland TD-11 mapping of the Groove MIDI Dataset.
Windows slide one bar at a time over the whole file; a window needs at least
one hit, and at most `max_windows_per_file` are drawn per file (a fixed
random choice per file path, so conversion is repeatable).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import ClassVar

import numpy as np

from musicvae_jax.notes import STEPS_PER_BAR, Note, NoteSequence
from musicvae_jax.representations.common import FieldSpec, bar_ceil, window_starts
from musicvae_jax.representations.drums import NUM_DRUM_CLASSES, drum_hits, pitch_to_class_map

TD11_DRUM_CLASS_PITCHES = (
    (36,),  # kick
    (38, 37, 40),  # snare
    (42, 22, 44),  # closed hi-hat
    (46, 26),  # open hi-hat
    (43, 58),  # low tom
    (47, 45),  # mid tom
    (50, 48),  # high tom
    (49, 52, 55, 57),  # crash
    (51, 53, 59),  # ride
)
TD11_PITCH_TO_CLASS = pitch_to_class_map(TD11_DRUM_CLASS_PITCHES)
DRUM_CLASS_NAMES = ("kick", "snare", "closed_hihat", "open_hihat", "low_tom", "mid_tom", "high_tom", "crash", "ride")
VALUES_PER_STEP = 3 * NUM_DRUM_CLASSES


def groove_arrays(hits: list[Note], start: int, num_steps: int) -> dict[str, np.ndarray]:
    """hits [T, 9] uint8, velocities and offsets [T, 9] float16 for one window."""
    shape = (num_steps, NUM_DRUM_CLASSES)
    hit = np.zeros(shape, np.uint8)
    velocity = np.zeros(shape, np.float32)
    offset = np.zeros(shape, np.float32)
    for note in hits:
        step = note.start_step - start
        if not 0 <= step < num_steps:
            continue
        c = TD11_PITCH_TO_CLASS[note.pitch]
        v = note.velocity / 127.0
        if hit[step, c] and velocity[step, c] >= v:
            continue
        hit[step, c] = 1
        velocity[step, c] = v
        offset[step, c] = note.start_offset
    return {"hits": hit, "velocities": velocity.astype(np.float16), "offsets": offset.astype(np.float16)}


def arrays_to_notes(hits: np.ndarray, velocities: np.ndarray, offsets: np.ndarray, instrument: int = 9) -> list[Note]:
    """Drum notes of a groove; each hit lasts one step from its shifted onset."""
    notes = []
    for step, c in zip(*np.nonzero(np.asarray(hits) > 0.5), strict=True):
        velocity = int(np.clip(np.round(float(velocities[step, c]) * 127), 1, 127))
        offset = float(np.clip(offsets[step, c], -0.5, 0.5))
        notes.append(
            Note(
                pitch=TD11_DRUM_CLASS_PITCHES[c][0],
                velocity=velocity,
                start_step=int(step),
                end_step=int(step) + 1,
                is_drum=True,
                instrument=instrument,
                start_offset=offset,
            )
        )
    return notes


TAP_PITCH = TD11_DRUM_CLASS_PITCHES[0][0]  # taps are drawn and written as kick drum hits
TAP_VELOCITIES = {"x": 80, "X": 120}  # a typed tap, an accented one


def as_taps(sequence: NoteSequence) -> NoteSequence:
    """Every note of every instrument as a kick drum hit, for a tap2drum model's input: what was tapped on counts,
    not which key or drum."""
    notes = [dataclasses.replace(n, pitch=TAP_PITCH, is_drum=True) for n in sequence.notes]
    return dataclasses.replace(sequence, notes=notes)


def taps_from_pattern(pattern: str) -> NoteSequence:
    """A rhythm typed one character per 16th-note step ("x" a tap, "X" an accent, "." or "-" a rest; spaces and
    "|" are ignored), e.g. "X..x..x...x.X... X..x..x...x.X...", as kick hits: a tap model's input without a
    MIDI file. Whole bars only, so the taps land where they were typed."""
    steps = [c for c in pattern if c not in " |"]
    wrong = sorted({c for c in steps if c not in TAP_VELOCITIES and c not in ".-"})
    if wrong:
        raise ValueError(f"{', '.join(map(repr, wrong))} is not x (tap), X (accent) or . (rest)")
    if not steps or len(steps) % STEPS_PER_BAR or not any(c in TAP_VELOCITIES for c in steps):
        raise ValueError(
            f"{len(steps)} steps; give whole bars of {STEPS_PER_BAR} 16th-note steps with at least one tap"
        )
    notes = [
        Note(pitch=TAP_PITCH, velocity=TAP_VELOCITIES[c], start_step=i, end_step=i + 1, is_drum=True, instrument=9)
        for i, c in enumerate(steps)
        if c in TAP_VELOCITIES
    ]
    return NoteSequence(notes=notes, total_steps=len(steps))


def _file_seed(source: str) -> int:
    return int.from_bytes(hashlib.sha1(source.encode()).digest()[:8], "little")


@dataclasses.dataclass(frozen=True)
class GrooveRepresentation:
    name: str
    num_bars: int
    max_windows_per_file: int = 20
    melodic_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def num_steps(self) -> int:
        return self.num_bars * STEPS_PER_BAR

    @property
    def fields(self) -> dict[str, FieldSpec]:
        shape = (self.num_steps, NUM_DRUM_CLASSES)
        return {
            "hits": FieldSpec(shape, "uint8"),
            "velocities": FieldSpec(shape, "float16"),
            "offsets": FieldSpec(shape, "float16"),
        }

    def windows(self, sequence: NoteSequence) -> list[dict]:
        hits = drum_hits(sequence, TD11_PITCH_TO_CLASS)
        if not hits:
            return []
        end = bar_ceil(max(sequence.total_steps, max(n.start_step + 1 for n in hits)))
        examples = []
        for start in window_starts(0, end, self.num_steps):
            arrays = groove_arrays(hits, start, self.num_steps)
            if arrays["hits"].any():
                examples.append({**arrays, "window_start": start})
        if len(examples) > self.max_windows_per_file:
            rng = np.random.default_rng(_file_seed(sequence.source))
            chosen = np.sort(rng.choice(len(examples), self.max_windows_per_file, replace=False))
            examples = [examples[i] for i in chosen]
        return examples

    def to_notes(self, example: dict) -> NoteSequence:
        notes = arrays_to_notes(example["hits"], example["velocities"], example["offsets"])
        return NoteSequence(notes=notes, total_steps=self.num_steps)
