"""Groove arrays: TD-11 classes, velocities, micro-timing offsets, window cap, round trip."""

import numpy as np
import pytest
from helpers import note, steps, write_track_midi

from musicvae_jax.midi_io import read_midi, write_midi
from musicvae_jax.representations import get_representation
from musicvae_jax.representations.drums import drum_hits
from musicvae_jax.representations.groove import TD11_DRUM_CLASS_PITCHES, TD11_PITCH_TO_CLASS, groove_arrays

GROOVE2 = get_representation("groove_2bar")


def drums(tmp_path, hits, name="g.mid"):
    """hits: (position in steps, pitch, velocity)."""
    events = [e for pos, pitch, vel in hits for e in note(steps(pos), steps(pos) + 30, pitch, 9, vel)]
    return read_midi(write_track_midi(tmp_path / name, [events]))


def test_td11_table_matches_the_spec():
    assert TD11_DRUM_CLASS_PITCHES == (
        (36,),
        (38, 37, 40),
        (42, 22, 44),
        (46, 26),
        (43, 58),
        (47, 45),
        (50, 48),
        (49, 52, 55, 57),
        (51, 53, 59),
    )


def test_hits_velocities_and_offsets(tmp_path):
    seq = drums(tmp_path, [(0.0, 36, 127), (3.75, 38, 64), (8.4, 42, 100), (17.5, 45, 30), (20.0, 99, 100)])
    (w,) = GROOVE2.windows(seq)
    assert w["hits"].shape == (32, 9) and w["velocities"].dtype == np.float16
    assert w["hits"].sum() == 4  # pitch 99 has no class
    assert w["hits"][0, 0] and w["velocities"][0, 0] == 1.0 and w["offsets"][0, 0] == 0
    assert w["hits"][4, 1] and w["offsets"][4, 1] == pytest.approx(-0.25, abs=1e-3)
    assert w["velocities"][4, 1] == pytest.approx(64 / 127, abs=1e-3)
    assert w["hits"][8, 2] and w["offsets"][8, 2] == pytest.approx(0.4, abs=1e-3)
    assert w["hits"][18, 5] and w["offsets"][18, 5] == pytest.approx(-0.5, abs=1e-3)  # halves round up
    assert (w["offsets"] >= -0.5).all() and (w["offsets"] < 0.5).all()
    assert (w["velocities"][w["hits"] == 0] == 0).all() and (w["offsets"][w["hits"] == 0] == 0).all()


def test_louder_of_two_hits_on_one_step_is_kept(tmp_path):
    seq = drums(tmp_path, [(1.1, 38, 50), (0.8, 37, 90), (20, 36, 80)])  # both snare class, both on step 1
    (w,) = GROOVE2.windows(seq)
    assert w["velocities"][1, 1] == pytest.approx(90 / 127, abs=1e-3)
    assert w["offsets"][1, 1] == pytest.approx(-0.2, abs=1e-3)


def test_windows_slide_by_a_bar_and_are_capped_at_twenty(tmp_path):
    seq = drums(tmp_path, [(s, 36, 100) for s in range(0, 16 * 30, 4)], "long.mid")
    windows = GROOVE2.windows(seq)
    assert len(windows) == 20
    starts = [w["window_start"] for w in windows]
    assert starts == sorted(starts) and all(s % 16 == 0 for s in starts)
    assert [w["window_start"] for w in GROOVE2.windows(seq)] == starts  # the draw is repeatable
    short = drums(tmp_path, [(s, 36, 100) for s in range(0, 16 * 4, 4)], "short.mid")
    assert [w["window_start"] for w in GROOVE2.windows(short)] == [0, 16, 32]
    assert [w["window_start"] for w in get_representation("groove_4bar").windows(short)] == [0]


def test_arrays_midi_arrays_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    hits = (rng.random((32, 9)) < 0.2).astype(np.uint8)
    velocities = np.where(hits, rng.integers(1, 128, (32, 9)) / 127, 0).astype(np.float16)
    offsets = np.where(hits, rng.integers(-60, 60, (32, 9)) / 120, 0).astype(np.float16)
    offsets[0] = np.abs(offsets[0])  # a file cannot start before time 0: early hits on step 0 are clamped
    write_midi(GROOVE2.to_notes({"hits": hits, "velocities": velocities, "offsets": offsets}), tmp_path / "r.mid")
    back = groove_arrays(drum_hits(read_midi(tmp_path / "r.mid"), TD11_PITCH_TO_CLASS), 0, 32)
    np.testing.assert_array_equal(back["hits"], hits)
    np.testing.assert_array_equal(back["velocities"], velocities)
    np.testing.assert_array_equal(back["offsets"], offsets)
