"""Shared test helpers: MIDI files built by hand with mido, data locations, commands run as from a terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import mido
import pytest

REPO = Path(__file__).resolve().parent.parent
GROOVE_DIR = Path(os.environ.get("MUSICVAE_DATA", REPO.parent / "shared" / "data")) / "groove-v1.0.0-midionly"


def write_track_midi(
    path: Path, tracks: list[list[tuple[int, mido.Message]]], ticks_per_beat: int = 480, midi_type: int = 1
) -> Path:
    """Writes tracks given as (absolute tick, message) lists; returns the path."""
    midi = mido.MidiFile(type=midi_type, ticks_per_beat=ticks_per_beat)
    for events in tracks:
        track = mido.MidiTrack()
        last = 0
        for tick, message in sorted(events, key=lambda e: e[0]):
            track.append(message.copy(time=tick - last))
            last = tick
        midi.tracks.append(track)
    midi.save(path)
    return path


def note(tick_on: int, tick_off: int, pitch: int, channel: int = 0, velocity: int = 100):
    """The two events of one note."""
    return [
        (tick_on, mido.Message("note_on", note=pitch, velocity=velocity, channel=channel)),
        (tick_off, mido.Message("note_off", note=pitch, velocity=0, channel=channel)),
    ]


def program(tick: int, number: int, channel: int = 0):
    return [(tick, mido.Message("program_change", program=number, channel=channel))]


def steps(n: float, tpb: int = 480) -> int:
    """Ticks of n sixteenth-note steps."""
    return round(n * tpb / 4)


requires_groove = pytest.mark.skipif(
    not GROOVE_DIR.is_dir(), reason=f"Groove MIDI Dataset not found at {GROOVE_DIR} (set MUSICVAE_DATA)"
)


def start_as_from_a_terminal(module: str, *args: str) -> subprocess.Popen:
    """`python -m module args` in a process group of its own, with Ctrl-C at its default as a terminal leaves it
    (pytest-xdist's workers ignore SIGINT, and children would inherit that); send it with os.killpg."""
    with warnings.catch_warnings():  # JAX warns of any fork; between it and exec the child only resets a signal
        warnings.simplefilter("ignore", RuntimeWarning)
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip


def press_ctrl_c(process: subprocess.Popen, timeout: float, what: str, again_after: float = 0) -> tuple[str, str]:
    """Ctrl-C to a process started by `start_as_from_a_terminal` (its whole group, as a terminal sends it); its
    remaining (stdout, stderr) once it ends. With `again_after`, pressed once more if the process still runs after
    that many seconds, as a user would. Fails, killing the group, if it goes on for `timeout` seconds."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        if again_after:
            try:
                return process.communicate(timeout=again_after)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGINT)
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError(f"{what} went on after Ctrl-C") from None


def module_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` from the repository, as a user types it; its output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )  # fmt: skip


def sample_cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m musicvae_jax.sample ARGS` from the repository, as a user types it; its output captured."""
    return module_cli("musicvae_jax.sample", *args)
