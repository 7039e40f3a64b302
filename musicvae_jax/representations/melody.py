"""Monophonic melody <-> 90 token ids (SPEC section 2).

0 = no event (hold or keep resting), 1 = note-off, 2..89 = note-on for MIDI
pitch 21..108 (id = pitch - 19).

Choices where the spec leaves room:
- Polyphony: a note is kept when, at its onset, it is the highest note
  starting there and not below a higher note still sounding ("skyline by
  onsets"); a kept note ends where the next kept note starts. A lower note
  that outlasts a higher one is not re-struck.
- Pitches outside 21..108 are moved by whole octaves into the range (the
  window is kept).
- A note already sounding when a window starts is left out of that window
  (the window opens with rests), so every window decodes on its own.
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

NUM_CLASSES = 90
NO_EVENT = 0
NOTE_OFF = 1
MIN_PITCH = 21
MAX_PITCH = 108
FIRST_NOTE_ON = 2
MELODY_PROGRAMS = range(0, 32)


def pitch_to_token(pitch: int) -> int:
    return pitch - MIN_PITCH + FIRST_NOTE_ON


def fold_into_range(pitch: int) -> int:
    """Moves a pitch by octaves into 21..108."""
    while pitch < MIN_PITCH:
        pitch += 12
    while pitch > MAX_PITCH:
        pitch -= 12
    return pitch


def monophonic(notes: list[Note]) -> list[Note]:
    """Reduces one instrument's notes to a melody (see module docstring)."""
    folded = [dataclasses.replace(n, pitch=fold_into_range(n.pitch)) for n in notes]
    ordered = sorted(folded, key=lambda n: (n.start_step, -n.pitch))
    kept: list[Note] = []
    for note in ordered:
        if kept:
            last = kept[-1]
            if note.start_step == last.start_step:
                continue  # lower note struck together with a kept one
            if note.start_step < last.end_step and note.pitch < last.pitch:
                continue  # under a higher note that still sounds
            if note.start_step < last.end_step:
                kept[-1] = dataclasses.replace(last, end_step=note.start_step)
        kept.append(note)
    return kept


def melody_tokens(melody: list[Note], start: int, num_steps: int) -> np.ndarray:
    """Token ids [num_steps] (uint8) for the monophonic notes in the window."""
    tokens = np.zeros(num_steps, np.uint8)
    for i, note in enumerate(melody):
        onset = note.start_step - start
        if onset < 0 or onset >= num_steps:
            continue
        tokens[onset] = pitch_to_token(note.pitch)
        off = note.end_step - start
        next_onset = melody[i + 1].start_step - start if i + 1 < len(melody) else None
        if off < num_steps and next_onset != off:
            tokens[off] = NOTE_OFF
    return tokens


def tokens_to_notes(
    tokens: np.ndarray, program: int = 0, instrument: int = 0, velocity: int = DEFAULT_VELOCITY
) -> list[Note]:
    """Notes played by a token sequence; stray note-offs are ignored."""
    notes = []
    current: tuple[int, int] | None = None  # (pitch, start)

    def finish(end: int) -> None:
        pitch, start = current
        notes.append(
            Note(pitch=pitch, velocity=velocity, start_step=start, end_step=end, program=program, instrument=instrument)
        )

    for step, token in enumerate(np.asarray(tokens).tolist()):
        if token >= FIRST_NOTE_ON or token == NOTE_OFF:
            if current is not None:
                finish(step)
                current = None
            if token >= FIRST_NOTE_ON:
                current = (token - FIRST_NOTE_ON + MIN_PITCH, step)
    if current is not None:
        finish(len(tokens))
    return notes


def pitched_parts(sequence: NoteSequence, programs: range) -> dict[int, list[Note]]:
    """Melodies (monophonic) of each pitched instrument whose program is in `programs`."""
    by_instrument: dict[int, list[Note]] = {}
    for note in sequence.notes:
        if not note.is_drum and note.program in programs:
            by_instrument.setdefault(note.instrument, []).append(note)
    return {inst: monophonic(notes) for inst, notes in sorted(by_instrument.items())}


@dataclasses.dataclass(frozen=True)
class MelodyRepresentation:
    """Windows of `num_bars` bars of one melody instrument, split at 1-bar gaps."""

    name: str
    num_bars: int
    gap_bars: int = 1
    melodic_fields: ClassVar[tuple[str, ...]] = ("tokens",)  # fields that transposition shifts

    @property
    def num_steps(self) -> int:
        return self.num_bars * STEPS_PER_BAR

    @property
    def fields(self) -> dict[str, FieldSpec]:
        return {"tokens": FieldSpec((self.num_steps,), "uint8")}

    def windows(self, sequence: NoteSequence) -> list[dict]:
        examples = []
        for instrument, melody in pitched_parts(sequence, MELODY_PROGRAMS).items():
            gap = self.gap_bars * STEPS_PER_BAR
            for segment in split_at_gaps(melody, lambda n: n.start_step, lambda n: n.end_step, gap):
                for start in window_starts(*segment_span(segment, sequence.total_steps), self.num_steps):
                    tokens = melody_tokens(segment, start, self.num_steps)
                    if (tokens >= FIRST_NOTE_ON).any():
                        examples.append(
                            {
                                "tokens": tokens,
                                "window_start": start,
                                "instrument": instrument,
                                "program": segment[0].program,
                            }
                        )
        return examples

    def to_notes(self, example: dict) -> NoteSequence:
        notes = tokens_to_notes(example["tokens"], program=int(example.get("program", 0)))
        return NoteSequence(notes=notes, total_steps=self.num_steps)
