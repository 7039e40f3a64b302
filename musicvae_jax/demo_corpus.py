"""A built-in DEMO corpus: short synthetic trio songs, so everything runs offline.

These are not real music data. Each song is generated deterministically from
(seed, index): a chord progression in a random key, a drum groove with
velocity and timing variation, a bass line on the chord roots and a melody
drawn from the scale with chord tones on strong beats, phrased A A B A.
The songs suit every representation (melody, drums, trio, groove).

    python -m musicvae_jax.demo_corpus --output DIR [--num_songs 64]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from musicvae_jax.midi_io import write_midi
from musicvae_jax.notes import STEPS_PER_BAR, Note, NoteSequence

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 4), (0, 0, 3, 4))  # scale degrees
MELODY_PROGRAMS = (0, 4, 11, 24, 25, 26)  # pianos, mallets, guitars
BASS_PROGRAMS = (32, 33, 34, 38)
KICK, SNARE, CLOSED_HAT, OPEN_HAT, CRASH, RIDE = 36, 38, 42, 46, 49, 51
README_TEXT = (
    "DEMO DATA: synthetic trio songs written by musicvae_jax.demo_corpus.\n"
    "They exist so the project runs offline on a fresh machine; they are not real music data.\n"
)


def _degree_pitch(key: int, scale: tuple[int, ...], degree: int, octave: int) -> int:
    return 12 * octave + key + scale[degree % 7] + 12 * (degree // 7)


def _drum_bar(rng: np.random.Generator, bar: int, pattern: dict, start: int) -> list[Note]:
    notes = []
    for step in range(STEPS_PER_BAR):
        hits = []
        if pattern["kick"][step]:
            hits.append(KICK)
        if step in (4, 12):
            hits.append(SNARE)
        if step % pattern["hat_every"] == 0:
            hits.append(OPEN_HAT if step == 14 and pattern["open_hat"] else pattern["cymbal"])
        if step == 0 and bar % 8 == 0:
            hits.append(CRASH)
        if step == 15 and bar % 4 == 3 and rng.random() < 0.5:
            hits.append(SNARE)  # pickup into the next phrase
        for pitch in hits:
            accent = 100 if step % 4 == 0 else 75
            velocity = int(np.clip(rng.normal(accent, 10), 20, 127))
            offset = float(np.clip(rng.normal(0.0, 0.08), -0.45, 0.45))
            notes.append(
                Note(
                    pitch=pitch,
                    velocity=velocity,
                    start_step=start + step,
                    end_step=start + step + 1,
                    is_drum=True,
                    instrument=9,
                    start_offset=offset,
                )
            )
    return notes


def _melody_phrase(rng: np.random.Generator, key: int, scale, chords, octave: int) -> list[tuple[int, int, int]]:
    """Four bars of (start, end, pitch) relative to the phrase start."""
    events = []
    degree = int(rng.integers(0, 5))
    step = 0
    while step < 4 * STEPS_PER_BAR:
        duration = int(rng.choice((2, 2, 4, 4, 4, 6, 8)))
        bar = step // STEPS_PER_BAR
        if step % 8 == 0:  # strong beats land on a chord tone
            root = chords[bar % len(chords)]
            degree = root + int(rng.choice((0, 2, 4))) + 7 * (degree // 7)
        else:
            degree += int(rng.choice((-2, -1, -1, 1, 1, 2)))
        degree = int(np.clip(degree, 0, 11))
        if rng.random() < 0.12:
            step += duration  # a rest
            continue
        end = min(step + duration, 4 * STEPS_PER_BAR)
        events.append((step, end, _degree_pitch(key, scale, degree, octave)))
        step = end
    return events


def make_song(seed: int, index: int, num_bars: int = 32) -> NoteSequence:
    """One demo song, at a tempo of its own."""
    rng = np.random.default_rng([seed, index])
    key = int(rng.integers(0, 12))
    scale = MAJOR if rng.random() < 0.6 else MINOR
    chords = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    qpm = float(rng.integers(80, 141))
    melody_program = int(rng.choice(MELODY_PROGRAMS))
    bass_program = int(rng.choice(BASS_PROGRAMS))
    kick = np.zeros(STEPS_PER_BAR, bool)
    kick[[0, 8]] = True
    kick[rng.choice([3, 6, 10, 11, 14], size=int(rng.integers(0, 3)), replace=False)] = True
    pattern = {
        "kick": kick,
        "hat_every": int(rng.choice((2, 2, 4))),
        "open_hat": rng.random() < 0.4,
        "cymbal": RIDE if rng.random() < 0.2 else CLOSED_HAT,
    }
    bass_rhythm = [(0, 8), (8, 16)] if rng.random() < 0.5 else [(0, 4), (4, 8), (8, 12), (12, 16)]
    phrases = {name: _melody_phrase(rng, key, scale, chords, octave=5) for name in "AB"}

    notes: list[Note] = []
    for bar in range(num_bars):
        start = bar * STEPS_PER_BAR
        notes += _drum_bar(rng, bar, pattern, start)
        root = chords[bar % len(chords)]
        for i, (a, b) in enumerate(bass_rhythm):
            degree = root + (4 if i % 2 and rng.random() < 0.3 else 0)
            velocity = int(np.clip(rng.normal(85, 8), 30, 127))
            notes.append(
                Note(
                    pitch=_degree_pitch(key, scale, degree, 3),
                    velocity=velocity,
                    start_step=start + a,
                    end_step=start + b,
                    program=bass_program,
                    instrument=1,
                )
            )
    form = "AABA" * (num_bars // 16 + 1)
    for phrase_index in range(num_bars // 4):
        phrase_start = phrase_index * 4 * STEPS_PER_BAR
        for a, b, pitch in phrases[form[phrase_index % 4]]:
            notes.append(
                Note(
                    pitch=pitch,
                    velocity=int(np.clip(rng.normal(90, 10), 30, 127)),
                    start_step=phrase_start + a,
                    end_step=phrase_start + b,
                    program=melody_program,
                    instrument=0,
                )
            )
    return NoteSequence(notes=notes, total_steps=num_bars * STEPS_PER_BAR, qpm=qpm)


def write_demo_corpus(output: str | Path, num_songs: int = 64, seed: int = 0) -> list[Path]:
    """Writes the demo songs (skipping ones already there) and a README saying what they are."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "README.txt").write_text(README_TEXT)
    paths = []
    for index in range(num_songs):
        path = output / f"demo_song_{index:03d}.mid"
        if not path.exists():
            write_midi(make_song(seed, index, num_bars=24 + 8 * (index % 2)), path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--num_songs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = write_demo_corpus(args.output, args.num_songs, args.seed)
    print(f"wrote {len(paths)} demo songs (synthetic DEMO data) to {args.output}")


if __name__ == "__main__":
    main()
