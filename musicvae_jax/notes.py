"""The note list every representation is built from, and the 16th-note grid.

A `NoteSequence` is what `midi_io` reads from a file and writes back: notes
with times in seconds and in quantised steps. Steps follow beats (ticks), not
seconds, so tempo changes do not move notes off the grid.
"""

from __future__ import annotations

import dataclasses
import math

STEPS_PER_QUARTER = 4
STEPS_PER_BAR = 4 * STEPS_PER_QUARTER  # 4/4 only
DEFAULT_QPM = 120.0
DEFAULT_VELOCITY = 80


@dataclasses.dataclass(frozen=True, slots=True)
class Note:
    """One note. `start_offset` is the onset's distance from its grid step.

    `start_offset` is a fraction of a step in [-0.5, 0.5); it carries the
    micro-timing that GrooVAE models. `instrument` identifies the
    (track, channel, program) the note came from.
    """

    pitch: int
    velocity: int
    start_step: int
    end_step: int
    program: int = 0
    is_drum: bool = False
    instrument: int = 0
    start_offset: float = 0.0
    start_time: float = 0.0
    end_time: float = 0.0


@dataclasses.dataclass
class NoteSequence:
    """A quantised piece: notes plus its length in steps (the 4/4 region)."""

    notes: list[Note]
    total_steps: int
    qpm: float = DEFAULT_QPM  # first tempo of the file; used when writing back
    source: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)

    def instruments(self, is_drum: bool | None = None) -> list[int]:
        """Sorted instrument ids, optionally only drum or only pitched ones."""
        return sorted({n.instrument for n in self.notes if is_drum is None or n.is_drum == is_drum})


def quantize(position_in_steps: float) -> tuple[int, float]:
    """Nearest grid step (halves round up) and the offset from it in [-0.5, 0.5)."""
    step = math.floor(position_in_steps + 0.5)
    return step, position_in_steps - step


def steps_to_seconds(step: float, qpm: float = DEFAULT_QPM) -> float:
    return step * 60.0 / (qpm * STEPS_PER_QUARTER)
