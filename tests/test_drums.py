"""Drum tokens: the GM class table, bit sets, the roll, splitting and the round trip."""

import numpy as np
import pytest
from helpers import note, steps, write_track_midi

from musicvae_jax.midi_io import read_midi, write_midi
from musicvae_jax.representations import get_representation
from musicvae_jax.representations.drums import GM_DRUM_CLASS_PITCHES, drum_hits, drum_roll, drum_tokens

DRUMS2 = get_representation("drums_2bar")
SPEC_TABLE = {
    0: (36, 35),
    1: (38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85),
    2: (42, 44, 54, 68, 69, 70, 71, 73, 78, 80, 22),
    3: (46, 67, 72, 74, 79, 81, 26),
    4: (45, 29, 41, 43, 61, 64, 84),
    5: (48, 47, 60, 63, 77, 86, 87),
    6: (50, 30, 62, 76, 83),
    7: (49, 52, 55, 57, 58),
    8: (51, 53, 59, 82),
}


@pytest.mark.parametrize("drum_class", range(9))
def test_every_listed_pitch_maps_to_its_class(tmp_path, drum_class):
    pitches = SPEC_TABLE[drum_class]
    assert GM_DRUM_CLASS_PITCHES[drum_class] == pitches
    events = [e for i, p in enumerate(pitches) for e in note(steps(i), steps(i + 1), p, channel=9)]
    seq = read_midi(write_track_midi(tmp_path / "d.mid", [events]))
    tokens = drum_tokens(drum_hits(seq, dict.fromkeys(pitches, drum_class)), 0, 32)
    np.testing.assert_array_equal(tokens[: len(pitches)], 2**drum_class)


def test_step_token_is_the_bit_set_and_unknown_pitches_drop(tmp_path):
    events = note(0, 60, 36, channel=9) + note(0, 60, 38, channel=9) + note(0, 60, 51, channel=9)
    events += note(steps(2), steps(3), 42, channel=9) + note(steps(3), steps(4), 90, channel=9)  # 90: no class
    events += note(0, 60, 60, channel=0)  # pitched, not a drum
    events += note(steps(16), steps(17), 36, channel=9)  # the second bar, so a 2-bar window exists
    (window,) = DRUMS2.windows(read_midi(write_track_midi(tmp_path / "b.mid", [events])))
    assert window["tokens"][0] == 1 + 2 + 256 and window["tokens"][2] == 4 and window["tokens"][3] == 0
    assert window["tokens"].dtype == np.uint16


def test_roll_has_class_bits_and_silence_bit():
    roll = drum_roll(np.array([0, 1, 2 + 256], np.uint16))
    np.testing.assert_array_equal(roll[0], [0] * 9 + [1])
    np.testing.assert_array_equal(roll[1], [1] + [0] * 8 + [0])
    np.testing.assert_array_equal(roll[2], [0, 1, 0, 0, 0, 0, 0, 0, 1, 0])


def test_split_after_one_empty_bar(tmp_path):
    def windows(*hit_steps):
        hits = [e for s in hit_steps for e in note(steps(s), steps(s + 1), 36, channel=9)]
        return [w["window_start"] for w in DRUMS2.windows(read_midi(write_track_midi(tmp_path / "s.mid", [hits])))]

    assert windows(0, 16, 31, 47) == [0, 16]  # at most 15 empty steps between hits: one segment
    assert windows(0, 17, 31, 47) == [16]  # 16 empty steps after the hit at 0: split; bar 0 alone is too short


def test_tokens_midi_tokens_round_trip(tmp_path):
    tokens = np.random.default_rng(1).integers(0, 512, size=32).astype(np.uint16)
    tokens[::3] = 0
    write_midi(DRUMS2.to_notes({"tokens": tokens}), tmp_path / "r.mid")
    back = read_midi(tmp_path / "r.mid")
    np.testing.assert_array_equal(drum_tokens(drum_hits(back, dict(_gm())), 0, 32), tokens)
    assert all(n.is_drum for n in back.notes)


def _gm():
    return {p: c for c, ps in enumerate(GM_DRUM_CLASS_PITCHES) for p in ps}
