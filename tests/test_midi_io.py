"""MIDI reading edge cases and the write -> read round trip."""

import mido
import pytest
from helpers import note, program, steps, write_track_midi

from musicvae_jax.midi_io import MidiReadError, ReadLimits, read_midi, write_midi
from musicvae_jax.notes import Note, NoteSequence, quantize


def test_quantize_rounds_half_up_with_offset_in_range():
    assert quantize(2.49) == (2, pytest.approx(0.49))
    assert quantize(2.5) == (3, -0.5)
    assert quantize(-0.2) == (0, pytest.approx(-0.2))


@pytest.mark.parametrize("tpb", [96, 220, 480, 1024])
def test_steps_follow_ticks_per_beat(tmp_path, tpb):
    path = write_track_midi(tmp_path / "a.mid", [note(steps(1, tpb), steps(3.4, tpb), 60)], ticks_per_beat=tpb)
    (n,) = read_midi(path).notes
    assert (n.start_step, n.end_step, n.pitch) == (1, 3, 60)


def test_tempo_change_moves_seconds_not_steps(tmp_path):
    tempo_events = [
        (0, mido.MetaMessage("set_tempo", tempo=500_000)),  # 120 qpm
        (480 * 4, mido.MetaMessage("set_tempo", tempo=1_000_000)),
    ]  # 60 qpm after one bar
    notes = note(480 * 4, 480 * 5, 60) + note(480 * 8, 480 * 9, 62)
    seq = read_midi(write_track_midi(tmp_path / "t.mid", [tempo_events, notes]))
    first, second = seq.notes
    assert (first.start_step, second.start_step) == (16, 32)
    assert first.start_time == pytest.approx(2.0)  # one bar at 120 qpm
    assert second.start_time == pytest.approx(2.0 + 4.0)  # plus four beats at 60 qpm
    assert seq.qpm == pytest.approx(120.0)


def test_note_on_velocity_zero_ends_note(tmp_path):
    events = [(0, mido.Message("note_on", note=60, velocity=90)), (480, mido.Message("note_on", note=60, velocity=0))]
    (n,) = read_midi(write_track_midi(tmp_path / "v.mid", [events])).notes
    assert (n.start_step, n.end_step, n.velocity) == (0, 4, 90)


def test_restruck_note_ends_the_sounding_one(tmp_path):
    events = [
        (0, mido.Message("note_on", note=60, velocity=90)),
        (240, mido.Message("note_on", note=60, velocity=70)),
        (480, mido.Message("note_off", note=60)),
        (960, mido.Message("note_off", note=60)),
    ]
    notes = read_midi(write_track_midi(tmp_path / "o.mid", [events])).notes
    assert [(n.start_step, n.end_step, n.velocity) for n in notes] == [(0, 2, 90), (2, 4, 70)]


def test_hanging_note_ends_with_its_track(tmp_path):
    events = [(0, mido.Message("note_on", note=60, velocity=90)), (480 * 2, mido.MetaMessage("end_of_track"))]
    (n,) = read_midi(write_track_midi(tmp_path / "h.mid", [events])).notes
    assert (n.start_step, n.end_step) == (0, 8)


def test_programs_per_channel_and_drum_channel(tmp_path):
    track = program(0, 33, channel=1) + note(0, 480, 40, channel=1) + note(0, 480, 60, channel=0)
    track += note(0, 120, 36, channel=9) + program(960, 5, channel=0) + note(960, 1440, 64, channel=0)
    seq = read_midi(write_track_midi(tmp_path / "p.mid", [track]))
    by_pitch = {n.pitch: n for n in seq.notes}
    assert by_pitch[40].program == 33 and not by_pitch[40].is_drum
    assert by_pitch[60].program == 0 and by_pitch[64].program == 5
    assert by_pitch[60].instrument != by_pitch[64].instrument  # program change makes a new instrument
    assert by_pitch[36].is_drum


def test_running_status_is_read(tmp_path):
    # Hand-written bytes: one note-on status byte followed by two notes in running status.
    track = bytes([0x00, 0x90, 60, 100, 0x00, 64, 100, 0x83, 0x60, 60, 0, 0x00, 64, 0, 0x00, 0xFF, 0x2F, 0x00])
    header = b"MThd" + bytes([0, 0, 0, 6, 0, 0, 0, 1]) + (480).to_bytes(2, "big")  # type 0, 1 track
    path = tmp_path / "rs.mid"
    path.write_bytes(header + b"MTrk" + len(track).to_bytes(4, "big") + track)
    notes = read_midi(path).notes
    assert sorted((n.pitch, n.start_step, n.end_step) for n in notes) == [(60, 0, 4), (64, 0, 4)]


def test_file_is_cut_where_four_four_ends(tmp_path):
    meta = [
        (0, mido.MetaMessage("time_signature", numerator=4, denominator=4)),
        (480 * 8, mido.MetaMessage("time_signature", numerator=3, denominator=4)),
    ]
    notes = note(0, 480, 60) + note(480 * 7, 480 * 9, 62) + note(480 * 9, 480 * 10, 64)
    seq = read_midi(write_track_midi(tmp_path / "ts.mid", [meta, notes]))
    assert seq.total_steps == 32
    assert [(n.pitch, n.end_step) for n in seq.notes] == [(60, 4), (62, 32)]
    assert "4/4" in seq.warnings[0]


def test_no_time_signature_means_four_four(tmp_path):
    seq = read_midi(write_track_midi(tmp_path / "n.mid", [note(0, 480 * 16, 60)]))
    assert seq.total_steps == 64 and not seq.warnings


def test_limits_bound_the_work(tmp_path):
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    with pytest.raises(MidiReadError, match="empty"):
        read_midi(empty)
    path = write_track_midi(tmp_path / "long.mid", [note(0, 480, 60) + note(480 * 10_000, 480 * 10_001, 62)])
    with pytest.raises(MidiReadError, match="file too large"):
        read_midi(path, ReadLimits(max_bytes=10))
    seq = read_midi(path, ReadLimits(max_steps=64))
    assert [n.pitch for n in seq.notes] == [60] and "truncated" in seq.warnings[0]


def test_write_then_read_keeps_steps_offsets_velocities_programs(tmp_path):
    notes = [
        Note(pitch=72, velocity=90, start_step=0, end_step=4, program=24, instrument=0),
        Note(pitch=40, velocity=70, start_step=2, end_step=10, program=33, instrument=1),
        Note(pitch=36, velocity=101, start_step=5, end_step=6, is_drum=True, instrument=9, start_offset=-0.25),
    ]
    write_midi(NoteSequence(notes=notes, total_steps=16), tmp_path / "w.mid", qpm=100)
    back = read_midi(tmp_path / "w.mid")
    got = sorted(
        (n.pitch, n.velocity, n.start_step, n.end_step, n.program, n.is_drum, n.start_offset) for n in back.notes
    )
    want = sorted((n.pitch, n.velocity, n.start_step, n.end_step, n.program, n.is_drum, n.start_offset) for n in notes)
    assert got == want
    assert back.qpm == pytest.approx(100.0)
    write_midi(back, tmp_path / "again.mid")  # without qpm: the sequence's own tempo
    assert read_midi(tmp_path / "again.mid").qpm == pytest.approx(100.0)
