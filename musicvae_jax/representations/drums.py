"""Drums: 9 General MIDI drum classes -> one of 512 tokens per step (SPEC 2).

A step's token is the bit set of the classes struck on it (class c adds 2^c).
Hits on pitches outside the table are dropped. Decoded hits use each class's
first listed pitch, one step long, velocity 80.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from musicvae_jax.notes import DEFAULT_VELOCITY, STEPS_PER_BAR, Note, NoteSequence
from musicvae_jax.representations.common import (
    FieldSpec,
    segment_span,
    split_at_gaps,
    window_starts,
)

NUM_DRUM_CLASSES = 9
NUM_CLASSES = 2**NUM_DRUM_CLASSES
ROLL_SIZE = NUM_DRUM_CLASSES + 1

GM_DRUM_CLASS_PITCHES = (
    (36, 35),  # kick
    (38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85),  # snare
    (42, 44, 54, 68, 69, 70, 71, 73, 78, 80, 22),  # closed hi-hat
    (46, 67, 72, 74, 79, 81, 26),  # open hi-hat
    (45, 29, 41, 43, 61, 64, 84),  # low tom
    (48, 47, 60, 63, 77, 86, 87),  # mid tom
    (50, 30, 62, 76, 83),  # high tom
    (49, 52, 55, 57, 58),  # crash
    (51, 53, 59, 82),  # ride
)


def pitch_to_class_map(class_pitches: tuple[tuple[int, ...], ...]) -> dict[int, int]:
    return {pitch: c for c, pitches in enumerate(class_pitches) for pitch in pitches}


GM_PITCH_TO_CLASS = pitch_to_class_map(GM_DRUM_CLASS_PITCHES)


def drum_hits(sequence: NoteSequence, pitch_to_class: dict[int, int]) -> list[Note]:
    """Drum notes of every drum instrument whose pitch has a class, in time order."""
    return [n for n in sequence.notes if n.is_drum and n.pitch in pitch_to_class]


def drum_tokens(hits: list[Note], start: int, num_steps: int) -> np.ndarray:
    """Tokens [num_steps] (uint16): the bit set of classes struck at each step."""
    tokens = np.zeros(num_steps, np.uint16)
    for hit in hits:
        step = hit.start_step - start
        if 0 <= step < num_steps:
            tokens[step] |= 1 << GM_PITCH_TO_CLASS[hit.pitch]
    return tokens


def drum_roll(tokens, xp=np):
    """[..., T] tokens -> [..., T, 10] roll: 9 class bits, then a 'silent' bit.

    `xp` is the array module (numpy, or jax.numpy inside a model).
    """
    bits = (tokens[..., None] >> xp.arange(NUM_DRUM_CLASSES)) & 1
    silent = (tokens == 0)[..., None]
    return xp.concatenate([bits.astype(xp.int32), silent.astype(xp.int32)], axis=-1)


def tokens_to_notes(tokens: np.ndarray, instrument: int = 9) -> list[Note]:
    notes = []
    for step, token in enumerate(np.asarray(tokens).tolist()):
        for c in range(NUM_DRUM_CLASSES):
            if token >> c & 1:
                notes.append(
                    Note(
                        pitch=GM_DRUM_CLASS_PITCHES[c][0],
                        velocity=DEFAULT_VELOCITY,
                        start_step=step,
                        end_step=step + 1,
                        is_drum=True,
                        instrument=instrument,
                    )
                )
    return notes


@dataclasses.dataclass(frozen=True)
class DrumsRepresentation:
    """Windows of `num_bars` bars of all drum parts, split after 1 empty bar."""

    name: str
    num_bars: int
    gap_bars: int = 1
    melodic_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def num_steps(self) -> int:
        return self.num_bars * STEPS_PER_BAR

    @property
    def fields(self) -> dict[str, FieldSpec]:
        return {"tokens": FieldSpec((self.num_steps,), "uint16")}

    def windows(self, sequence: NoteSequence) -> list[dict]:
        hits = drum_hits(sequence, GM_PITCH_TO_CLASS)
        examples = []
        # A hit occupies its step, so a split needs gap_bars whole empty bars after it.
        for segment in split_at_gaps(
            hits, lambda n: n.start_step, lambda n: n.start_step + 1, self.gap_bars * STEPS_PER_BAR
        ):
            span = segment_span(
                [dataclasses.replace(n, end_step=n.start_step + 1) for n in segment], sequence.total_steps
            )
            for start in window_starts(*span, self.num_steps):
                tokens = drum_tokens(segment, start, self.num_steps)
                if tokens.any():
                    examples.append({"tokens": tokens, "window_start": start})
        return examples

    def to_notes(self, example: dict) -> NoteSequence:
        return NoteSequence(notes=tokens_to_notes(example["tokens"]), total_steps=self.num_steps)
