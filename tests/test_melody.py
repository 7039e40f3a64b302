"""Melody tokens: ids, polyphony, gaps, windows, range folding and the round trip."""

import numpy as np
from helpers import note, program, steps, write_track_midi

from musicvae_jax.midi_io import read_midi, write_midi
from musicvae_jax.representations import get_representation
from musicvae_jax.representations.melody import (
    NOTE_OFF,
    melody_tokens,
    monophonic,
    pitch_to_token,
    tokens_to_notes,
)

MEL2 = get_representation("melody_2bar")


def read(tmp_path, events, name="m.mid"):
    return read_midi(write_track_midi(tmp_path / name, [events]))


def test_token_ids_follow_the_spec():
    assert pitch_to_token(21) == 2 and pitch_to_token(108) == 89 and pitch_to_token(60) == 41


def test_tokens_quantised_with_note_offs(tmp_path):
    # C4 for 2 steps, rest, E4 struck at step 4.4 (rounds to 4) lasting to the bar end.
    seq = read(tmp_path, note(0, steps(2), 60) + note(steps(4.4), steps(32), 64))
    (window,) = MEL2.windows(seq)
    expected = np.zeros(32, np.uint8)
    expected[0], expected[2], expected[4] = pitch_to_token(60), NOTE_OFF, pitch_to_token(64)
    np.testing.assert_array_equal(window["tokens"], expected)


def test_polyphony_keeps_the_highest_sounding_note(tmp_path):
    chord = note(0, steps(8), 60) + note(0, steps(8), 67) + note(0, steps(8), 64)
    under = note(steps(2), steps(4), 62)  # starts under the sounding G: dropped
    above = note(steps(4), steps(6), 72)  # starts above: cuts the G
    seq = read(tmp_path, chord + under + above + note(steps(16), steps(17), 60))
    tokens = MEL2.windows(seq)[0]["tokens"]
    assert tokens[0] == pitch_to_token(67)
    assert tokens[2] == 0  # D under G is not heard
    assert tokens[4] == pitch_to_token(72) and tokens[6] == NOTE_OFF


def test_split_where_a_bar_passes_empty(tmp_path):
    # Notes with 8-step rests, then 16 silent steps (24 -> 40), then notes with 8-step rests again.
    first = note(0, steps(8), 60) + note(steps(16), steps(24), 62)
    second = [e for s in (40, 56, 72, 88) for e in note(steps(s), steps(s + 8), 64)]
    windows = MEL2.windows(read(tmp_path, first + second))
    # No window spans the gap; the second segment covers bars 2-5 (steps 32-96).
    assert [w["window_start"] for w in windows] == [0, 32, 48, 64]
    # A single bar of notes followed by an empty bar makes no 2-bar window.
    assert MEL2.windows(read(tmp_path, note(0, steps(4), 60) + note(steps(36), steps(40), 62), "one.mid")) == []
    # A gap shorter than a bar does not split: windows start at every bar line.
    notes = note(0, steps(4), 60) + note(steps(18), steps(20), 62) + note(steps(34), steps(48), 64)
    seq = read(tmp_path, notes, "b.mid")
    assert [w["window_start"] for w in MEL2.windows(seq)] == [0, 16]


def test_windows_need_a_note_on_and_skip_drums_and_bass_programs(tmp_path):
    events = program(0, 40) + note(0, steps(64), 60)  # one long note from bar 0 to 3
    events += note(0, steps(2), 36, channel=9) + program(0, 33, channel=1) + note(0, steps(4), 40, channel=1)
    seq = read(tmp_path, events)
    assert MEL2.windows(seq) == []  # program 40 is not a melody program; bass and drums never are
    seq = read(tmp_path, note(0, steps(64), 60), "long.mid")
    windows = MEL2.windows(seq)
    assert [w["window_start"] for w in windows] == [0]  # later windows hold no note-on


def test_out_of_range_pitches_fold_by_octaves(tmp_path):
    seq = read(tmp_path, note(0, steps(2), 12) + note(steps(4), steps(6), 115) + note(steps(16), steps(18), 60))
    tokens = MEL2.windows(seq)[0]["tokens"]
    assert tokens[0] == pitch_to_token(24) and tokens[4] == pitch_to_token(103)


def test_tokens_midi_tokens_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    for trial in range(20):
        tokens = np.zeros(32, np.uint8)
        onsets = np.sort(rng.choice(32, size=int(rng.integers(1, 12)), replace=False))
        tokens[onsets] = rng.integers(2, 90, size=len(onsets))
        for step in rng.choice(32, size=4):
            if tokens[step] == 0 and (tokens[:step] >= 2).any():
                tokens[step] = NOTE_OFF
        # Drop note-offs with nothing sounding before them (the encoder never writes those).
        sounding = False
        for i, t in enumerate(tokens):
            if t == NOTE_OFF and not sounding:
                tokens[i] = 0
            sounding = t >= 2 or (sounding and t != NOTE_OFF)
        seq = MEL2.to_notes({"tokens": tokens})
        write_midi(seq, tmp_path / f"r{trial}.mid")
        back = read_midi(tmp_path / f"r{trial}.mid")
        again = melody_tokens(monophonic(back.notes), 0, 32)
        np.testing.assert_array_equal(again, tokens)


def test_tokens_to_notes_ignores_stray_note_off():
    notes = tokens_to_notes(np.array([1, 0, 41, 0, 1, 1, 43], np.uint8))
    assert [(n.pitch, n.start_step, n.end_step) for n in notes] == [(60, 2, 4), (62, 6, 7)]
