"""MIDI files <-> `NoteSequence`, with mido. Nothing model-specific lives here.

Reading handles the parts of real files that break naive readers: ticks per
beat, the tempo map, time signatures (the file is cut where 4/4 ends),
programs per channel, running status (mido), note-on with velocity 0 as
note-off, a note re-struck while it sounds (the old one ends there) and notes
left hanging at the end of a track (they end with the track).
"""

from __future__ import annotations

import bisect
import dataclasses
import os
from pathlib import Path

import mido

from musicvae_jax.notes import (
    STEPS_PER_QUARTER,
    Note,
    NoteSequence,
    quantize,
)

DRUM_CHANNEL = 9  # MIDI channel 10


class MidiReadError(ValueError):
    """A file that cannot be turned into notes; the message says why, `kind` sums it up."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class ReadLimits:
    """Bounds on the work one file may cause (hostile or absurd files)."""

    max_bytes: int = 16 * 1024 * 1024
    max_messages: int = 2_000_000
    max_steps: int = 1 << 16  # 4096 bars; notes starting later are dropped


DEFAULT_LIMITS = ReadLimits()


class _TempoMap:
    """Tick -> seconds through every set_tempo event."""

    def __init__(self, tempo_events: list[tuple[int, int]], ticks_per_beat: int):
        self._tpb = ticks_per_beat
        self._ticks = [0]
        self._seconds = [0.0]
        self._tempos = [500_000]  # microseconds per beat, the MIDI default
        for tick, tempo in sorted(tempo_events):
            if tempo <= 0:
                continue
            if tick == self._ticks[-1]:
                self._tempos[-1] = tempo
                continue
            seconds = self._seconds[-1] + (tick - self._ticks[-1]) * self._tempos[-1] / (1e6 * ticks_per_beat)
            self._ticks.append(tick)
            self._seconds.append(seconds)
            self._tempos.append(tempo)

    def seconds(self, tick: int) -> float:
        i = bisect.bisect_right(self._ticks, tick) - 1
        return self._seconds[i] + (tick - self._ticks[i]) * self._tempos[i] / (1e6 * self._tpb)

    @property
    def first_qpm(self) -> float:
        return 60e6 / self._tempos[0]


def _merged_events(midi: mido.MidiFile, limits: ReadLimits) -> tuple[list[tuple], list[int]]:
    """All messages as (tick, priority, track, index, msg), plus each track's end tick.

    Program changes and meta events sort before notes on the same tick, so a
    program set at tick t applies to a note struck at tick t in another track.
    """
    events = []
    track_ends = []
    count = 0
    for track_index, track in enumerate(midi.tracks):
        tick = 0
        for index, msg in enumerate(track):
            tick += msg.time
            count += 1
            if count > limits.max_messages:
                raise MidiReadError("too many messages", f"more than {limits.max_messages}")
            priority = 1 if msg.type in ("note_on", "note_off") else 0
            events.append((tick, priority, track_index, index, msg))
        track_ends.append(tick)
    events.sort(key=lambda e: e[:4])
    return events, track_ends


def _four_four_end(events: list[tuple]) -> int | None:
    """The first tick at which the time signature is something other than 4/4."""
    for tick, _, _, _, msg in events:
        if msg.type == "time_signature" and (msg.numerator, msg.denominator) != (4, 4):
            return tick
    return None


def read_midi(path: str | os.PathLike, limits: ReadLimits = DEFAULT_LIMITS) -> NoteSequence:
    """Reads a MIDI file into a quantised `NoteSequence` (16th-note grid).

    Raises MidiReadError (or mido's own error for a malformed file) with the
    reason; the caller reports and skips the file.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise MidiReadError("empty file", "0 bytes")
    if size > limits.max_bytes:
        raise MidiReadError("file too large", f"{size} bytes, over the limit of {limits.max_bytes}")
    try:
        midi = mido.MidiFile(path)
    except EOFError:
        raise MidiReadError("malformed MIDI", "the file ends inside a chunk (truncated?)") from None
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise MidiReadError("malformed MIDI", f"{type(e).__name__}: {e}") from None
    if midi.type not in (0, 1, 2):
        raise MidiReadError("unsupported MIDI", f"file type {midi.type}")
    tpb = midi.ticks_per_beat
    if not isinstance(tpb, int) or tpb <= 0 or tpb >= 0x8000:
        raise MidiReadError("unsupported MIDI", f"ticks_per_beat {tpb!r} (SMPTE timing is not supported)")
    events, track_ends = _merged_events(midi, limits)
    tempo_map = _TempoMap([(e[0], e[4].tempo) for e in events if e[4].type == "set_tempo"], tpb)
    cut_tick = _four_four_end(events)
    warnings = []
    if cut_tick is not None:
        warnings.append(f"time signature leaves 4/4 at tick {cut_tick}; cut there")
    max_tick = limits.max_steps * tpb // STEPS_PER_QUARTER
    if cut_tick is None or cut_tick > max_tick:
        if max(track_ends, default=0) > max_tick:
            warnings.append(f"longer than {limits.max_steps} steps; truncated")
            cut_tick = max_tick

    programs = [0] * 16
    instrument_ids: dict[tuple[int, int, int], int] = {}
    sounding: dict[tuple[int, int, int], tuple[int, int, int]] = {}  # (track, ch, pitch) -> (tick, vel, instrument)
    raw_notes: list[tuple[int, int, int, int, int]] = []  # start, end, pitch, velocity, instrument
    instrument_info: dict[int, tuple[int, bool]] = {}

    def close(key, end_tick):
        start_tick, velocity, instrument = sounding.pop(key)
        raw_notes.append((start_tick, end_tick, key[2], velocity, instrument))

    for tick, _, track, _, msg in events:
        if msg.type == "program_change":
            programs[msg.channel] = msg.program
        elif msg.type == "note_on" and msg.velocity > 0:
            key = (track, msg.channel, msg.note)
            if key in sounding:  # re-struck while sounding: the old note ends here
                close(key, tick)
            is_drum = msg.channel == DRUM_CHANNEL
            ident = (track, msg.channel, programs[msg.channel])
            instrument = instrument_ids.setdefault(ident, len(instrument_ids))
            instrument_info[instrument] = (programs[msg.channel], is_drum)
            sounding[key] = (tick, msg.velocity, instrument)
        elif msg.type in ("note_off", "note_on"):
            key = (track, msg.channel, msg.note)
            if key in sounding:
                close(key, tick)
    for key in list(sounding):  # hanging notes end with their track
        close(key, max(track_ends[key[0]], sounding[key][0]))

    steps_per_tick = STEPS_PER_QUARTER / tpb
    notes = []
    for start_tick, end_tick, pitch, velocity, instrument in raw_notes:
        if cut_tick is not None:
            if start_tick >= cut_tick:
                continue
            end_tick = min(end_tick, cut_tick)
        start_step, offset = quantize(start_tick * steps_per_tick)
        end_step, _ = quantize(end_tick * steps_per_tick)
        program, is_drum = instrument_info[instrument]
        notes.append(
            Note(
                pitch=pitch,
                velocity=velocity,
                start_step=start_step,
                end_step=max(end_step, start_step + 1),
                program=program,
                is_drum=is_drum,
                instrument=instrument,
                start_offset=offset,
                start_time=tempo_map.seconds(start_tick),
                end_time=tempo_map.seconds(end_tick),
            )
        )
    notes.sort(key=lambda n: (n.start_step, n.start_offset, n.instrument, n.pitch))
    if cut_tick is not None:
        total_steps = quantize(cut_tick * steps_per_tick)[0]
    else:
        total_steps = max((n.end_step for n in notes), default=0)
    return NoteSequence(
        notes=notes,
        total_steps=total_steps,
        qpm=tempo_map.first_qpm,
        source=str(path),
        warnings=warnings,
    )


def write_midi(
    sequence: NoteSequence,
    path: str | os.PathLike,
    qpm: float | None = None,
    ticks_per_beat: int = 480,
) -> None:
    """Writes notes (by their steps and offsets) as a type-1 MIDI file, at `qpm` (default: the sequence's own
    tempo, so a file read and written back keeps it).

    One track per instrument; drums on channel 10, pitched instruments on the
    other channels in order. An onset before time 0 (a negative offset on
    step 0) is written at time 0. Written to a temporary name and renamed, so a
    reader never sees half a file.
    """
    ticks_per_step = ticks_per_beat / STEPS_PER_QUARTER
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(sequence.qpm if qpm is None else qpm), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    midi.tracks.append(meta)
    by_instrument: dict[int, list[Note]] = {}
    for note in sequence.notes:
        by_instrument.setdefault(note.instrument, []).append(note)
    free_channels = [c for c in range(16) if c != DRUM_CHANNEL]
    for instrument in sorted(by_instrument):
        notes = by_instrument[instrument]
        is_drum = notes[0].is_drum
        if is_drum:
            channel = DRUM_CHANNEL
        elif free_channels:
            channel = free_channels.pop(0)
        else:
            raise ValueError(f"{path}: more than 15 pitched instruments do not fit in MIDI channels")
        timed = []  # (tick, order, message); note-offs before note-ons on a tick
        for note in notes:
            start = max(0, round((note.start_step + note.start_offset) * ticks_per_step))
            end = max(start + 1, round(note.end_step * ticks_per_step))
            velocity = min(127, max(1, note.velocity))
            timed.append((start, 1, mido.Message("note_on", channel=channel, note=note.pitch, velocity=velocity)))
            timed.append((end, 0, mido.Message("note_off", channel=channel, note=note.pitch, velocity=0)))
        timed.sort(key=lambda e: (e[0], e[1]))
        track = mido.MidiTrack()
        if not is_drum:
            track.append(mido.Message("program_change", channel=channel, program=notes[0].program, time=0))
        last = 0
        for tick, _, message in timed:
            track.append(message.copy(time=tick - last))
            last = tick
        midi.tracks.append(track)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    midi.save(tmp)
    os.replace(tmp, path)
