"""Trio windows: the coverage rule, instrument combinations and the round trip."""

import numpy as np
from helpers import note, program, steps, write_track_midi

from musicvae_jax.midi_io import read_midi, write_midi
from musicvae_jax.representations import get_representation
from musicvae_jax.representations.drums import GM_PITCH_TO_CLASS, drum_hits, drum_tokens
from musicvae_jax.representations.melody import melody_tokens, monophonic

TRIO = get_representation("trio_16bar")
BAR = 16


def part(pitch, channel, bars, every=8):
    """A note every `every` steps in each listed bar."""
    starts = [b * BAR + s for b in bars for s in range(0, BAR, every)]
    return [e for s in starts for e in note(steps(s), steps(s + 4), pitch, channel)]


def song(tmp_path, melody_bars, bass_bars, drum_bars, name="trio.mid", extra=()):
    tracks = [
        program(0, 0, 0) + part(72, 0, melody_bars),
        program(0, 33, 1) + part(40, 1, bass_bars),
        part(36, 9, drum_bars, every=4),
        *extra,
    ]
    return read_midi(write_track_midi(tmp_path / name, tracks))


def test_full_song_makes_a_window_per_bar_line(tmp_path):
    seq = song(tmp_path, range(18), range(18), range(18))
    windows = TRIO.windows(seq)
    assert [w["window_start"] for w in windows] == [0, 16, 32]
    w = windows[0]
    assert w["melody"].shape == w["bass"].shape == w["drums"].shape == (256,)
    assert w["melody"][0] == 72 - 19 and w["bass"][0] == 40 - 19 and w["drums"][0] == 1


def test_gap_of_two_bars_is_allowed_three_is_not(tmp_path):
    all_bars = set(range(16))
    ok = song(tmp_path, all_bars - {5, 6}, all_bars, all_bars, "two.mid")
    assert len(TRIO.windows(ok)) == 1
    gap3 = song(tmp_path, all_bars, all_bars - {5, 6, 7}, all_bars, "three.mid")
    assert TRIO.windows(gap3) == []
    late_drums = song(tmp_path, all_bars, all_bars, all_bars - {0, 1, 2}, "late.mid")
    assert TRIO.windows(late_drums) == []
    assert TRIO.windows(song(tmp_path, all_bars, all_bars, [], "nodrums.mid")) == []


def test_each_melody_bass_combination_makes_examples(tmp_path):
    second_melody = program(0, 24, 2) + part(76, 2, range(16))
    seq = song(tmp_path, range(16), range(16), range(16), extra=[second_melody])
    windows = TRIO.windows(seq)
    assert len(windows) == 2
    assert {w["melody_program"] for w in windows} == {0, 24}
    assert {int(w["melody"][0]) for w in windows} == {72 - 19, 76 - 19}


def test_tokens_midi_tokens_round_trip(tmp_path):
    seq = song(tmp_path, range(16), range(16), range(16))
    (window,) = TRIO.windows(seq)
    write_midi(TRIO.to_notes(window), tmp_path / "back.mid")
    back = read_midi(tmp_path / "back.mid")
    mel = [n for n in back.notes if not n.is_drum and n.program < 32]
    bass = [n for n in back.notes if not n.is_drum and 32 <= n.program < 40]
    np.testing.assert_array_equal(melody_tokens(monophonic(mel), 0, 256), window["melody"])
    np.testing.assert_array_equal(melody_tokens(monophonic(bass), 0, 256), window["bass"])
    np.testing.assert_array_equal(drum_tokens(drum_hits(back, GM_PITCH_TO_CLASS), 0, 256), window["drums"])
    np.testing.assert_array_equal(TRIO.windows(back)[0]["melody"], window["melody"])
