"""Trio: melody (programs 0-31), bass (32-39) and drums over the same 16 bars.

A window is kept when each part has a note-on in it and no part is silent
for more than `max_gap_bars` consecutive bars (a bar counts as played when a
note of the part sounds in it). Every (melody instrument, bass instrument)
pair of a song makes its own windows; all drum instruments form one part.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import ClassVar

import numpy as np

from musicvae_jax.notes import STEPS_PER_BAR, Note, NoteSequence
from musicvae_jax.representations import drums, melody
from musicvae_jax.representations.common import FieldSpec, bar_ceil, longest_empty_run, window_starts

BASS_PROGRAMS = range(32, 40)
BASS_DEFAULT_PROGRAM = 33


def active_bars(notes: list[Note], num_bars: int) -> np.ndarray:
    """[num_bars] bool: does a note sound in each bar."""
    active = np.zeros(num_bars, bool)
    for note in notes:
        first = note.start_step // STEPS_PER_BAR
        last = (max(note.end_step, note.start_step + 1) - 1) // STEPS_PER_BAR
        active[first : min(last, num_bars - 1) + 1] = True
    return active


@dataclasses.dataclass(frozen=True)
class TrioRepresentation:
    name: str
    num_bars: int = 16
    max_gap_bars: int = 2
    melodic_fields: ClassVar[tuple[str, ...]] = ("melody", "bass")

    @property
    def num_steps(self) -> int:
        return self.num_bars * STEPS_PER_BAR

    @property
    def fields(self) -> dict[str, FieldSpec]:
        t = (self.num_steps,)
        return {"melody": FieldSpec(t, "uint8"), "bass": FieldSpec(t, "uint8"), "drums": FieldSpec(t, "uint16")}

    def _covered(self, *parts: np.ndarray) -> bool:
        return all(part.any() and longest_empty_run(part) <= self.max_gap_bars for part in parts)

    def windows(self, sequence: NoteSequence) -> list[dict]:
        melodies = melody.pitched_parts(sequence, melody.MELODY_PROGRAMS)
        basses = melody.pitched_parts(sequence, BASS_PROGRAMS)
        hits = drums.drum_hits(sequence, drums.GM_PITCH_TO_CLASS)
        if not (melodies and basses and hits):
            return []
        song_end = bar_ceil(sequence.total_steps)
        song_bars = song_end // STEPS_PER_BAR
        drum_active = active_bars(hits, song_bars)
        examples = []
        for (mel_inst, mel), (bass_inst, bass) in itertools.product(melodies.items(), basses.items()):
            mel_active, bass_active = active_bars(mel, song_bars), active_bars(bass, song_bars)
            for start in window_starts(0, song_end, self.num_steps):
                bars = slice(start // STEPS_PER_BAR, start // STEPS_PER_BAR + self.num_bars)
                if not self._covered(mel_active[bars], bass_active[bars], drum_active[bars]):
                    continue
                example = {
                    "melody": melody.melody_tokens(mel, start, self.num_steps),
                    "bass": melody.melody_tokens(bass, start, self.num_steps),
                    "drums": drums.drum_tokens(hits, start, self.num_steps),
                }
                if all((example[k] >= melody.FIRST_NOTE_ON).any() for k in ("melody", "bass")):
                    example.update(
                        window_start=start,
                        melody_instrument=mel_inst,
                        bass_instrument=bass_inst,
                        melody_program=mel[0].program,
                        bass_program=bass[0].program,
                    )
                    examples.append(example)
        return examples

    def to_notes(self, example: dict) -> NoteSequence:
        notes = (
            melody.tokens_to_notes(example["melody"], program=int(example.get("melody_program", 0)), instrument=0)
            + melody.tokens_to_notes(
                example["bass"], program=int(example.get("bass_program", BASS_DEFAULT_PROGRAM)), instrument=1
            )
            + drums.tokens_to_notes(example["drums"], instrument=9)
        )
        return NoteSequence(notes=notes, total_steps=self.num_steps)
