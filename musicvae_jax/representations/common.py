"""Bar arithmetic and windowing shared by the representations."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from musicvae_jax.notes import STEPS_PER_BAR

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """Shape and dtype of one array field of a record."""

    shape: tuple[int, ...]
    dtype: str

    def as_dict(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype}


def bar_floor(step: int) -> int:
    return step // STEPS_PER_BAR * STEPS_PER_BAR


def bar_ceil(step: int) -> int:
    return -(-step // STEPS_PER_BAR) * STEPS_PER_BAR


def window_starts(segment_start: int, segment_end: int, num_steps: int) -> range:
    """Bar-line starts of every `num_steps` window inside [start, end)."""
    first = bar_ceil(segment_start)
    return range(first, segment_end - num_steps + 1, STEPS_PER_BAR)


def split_at_gaps(
    items: Sequence[T], start: Callable[[T], int], end: Callable[[T], int], gap_steps: int
) -> list[list[T]]:
    """Splits time-sorted items where `gap_steps` or more steps pass empty."""
    segments: list[list[T]] = []
    latest_end = None
    for item in items:
        if latest_end is None or start(item) - latest_end >= gap_steps:
            segments.append([])
            latest_end = end(item)
        segments[-1].append(item)
        latest_end = max(latest_end, end(item))
    return segments


def segment_span(notes: Sequence, total_steps: int) -> tuple[int, int]:
    """The bar-aligned span [first bar, end of last bar) of a segment of notes."""
    start = bar_floor(min(n.start_step for n in notes))
    end = bar_ceil(max(n.end_step for n in notes))
    return start, min(end, bar_ceil(total_steps))


def longest_empty_run(active_bars: np.ndarray) -> int:
    """Longest run of False in a boolean per-bar array."""
    longest = run = 0
    for active in active_bars:
        run = 0 if active else run + 1
        longest = max(longest, run)
    return longest
