"""Pictures and sound of generated music: piano-roll PNGs, WAV audio, one HTML page.

Audio needs the `fluidsynth` program and a General MIDI soundfont (found
through $SOUNDFONT or the usual Debian paths); without them the page says how
to get audio instead of offering a player.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
from pathlib import Path

from tqdm import tqdm

from musicvae_jax.notes import STEPS_PER_BAR, NoteSequence
from musicvae_jax.representations.drums import GM_DRUM_CLASS_PITCHES, GM_PITCH_TO_CLASS
from musicvae_jax.representations.groove import TD11_PITCH_TO_CLASS

SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
DRUM_NAMES = ("kick", "snare", "closed hh", "open hh", "low tom", "mid tom", "high tom", "crash", "ride")
AUDIO_HELP = (
    "No audio: install fluidsynth and a General MIDI soundfont "
    "(Debian: apt-get install fluidsynth fluid-soundfont-gm), or set $SOUNDFONT to an .sf2 file."
)


def _panels(sequence: NoteSequence) -> list[str]:
    """Which panels a sequence's roll needs: pitched notes, drum hits, or both (pitched alone when empty)."""
    pitched = any(not n.is_drum for n in sequence.notes)
    drums = any(n.is_drum for n in sequence.notes)
    return (["pitched"] if pitched or not drums else []) + (["drums"] if drums else [])


def _draw(ax, sequence: NoteSequence, panel: str, colours, labels: bool = True) -> None:
    """One panel: pitched notes as bars coloured by instrument, or drum hits by class (darker the louder)."""
    if panel == "pitched":
        pitched = [n for n in sequence.notes if not n.is_drum]
        for n in pitched:
            ax.broken_barh(
                [(n.start_step, n.end_step - n.start_step)], (n.pitch - 0.4, 0.8), color=colours(n.instrument % 10)
            )
        if labels:
            ax.set_ylabel("pitch")
        if pitched:
            ax.set_ylim(min(n.pitch for n in pitched) - 2, max(n.pitch for n in pitched) + 2)
    else:
        size = 4 if labels else 2
        for n in sequence.notes:
            if n.is_drum:
                c = GM_PITCH_TO_CLASS.get(n.pitch, TD11_PITCH_TO_CLASS.get(n.pitch, 0))
                alpha = 0.3 + 0.7 * min(n.velocity, 127) / 127
                ax.plot(n.start_step + n.start_offset, c, "s", color="black", alpha=alpha, markersize=size)
        if labels:
            ax.set_yticks(range(len(GM_DRUM_CLASS_PITCHES)), DRUM_NAMES, fontsize=6)
        ax.set_ylim(-0.5, len(GM_DRUM_CLASS_PITCHES) - 0.5)
    ax.set_xlim(0, max(sequence.total_steps, 1))
    for bar in range(0, sequence.total_steps + 1, STEPS_PER_BAR):
        ax.axvline(bar, color="grey", linestyle=":", linewidth=0.6)
    if not labels:
        ax.set_xticks([])
        ax.set_yticks([])


def pyplot():
    """matplotlib's pyplot drawing to files (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def piano_roll(sequence: NoteSequence, path: Path, title: str = "") -> Path:
    """Pitched notes above (one colour per instrument), drum hits by class below; bar lines dotted."""
    plt = pyplot()
    panels = _panels(sequence)
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(12, 1 + 1.6 * len(panels)),
        squeeze=False,
        gridspec_kw={"height_ratios": [2 if p == "pitched" else 1 for p in panels]},
    )
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        _draw(ax, sequence, panel, plt.get_cmap("tab10"))
    axes[-1, 0].set_xlabel("16th-note step")
    if title:
        axes[0, 0].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def piano_roll_grid(grid: list[list[NoteSequence]], path: Path, title: str = "") -> Path:
    """Small piano rolls in rows and columns (an interpolation between four corners), the drum classes named on
    the left."""
    plt = pyplot()
    rows, cols = len(grid), len(grid[0])
    panels = sorted({p for row in grid for seq in row for p in _panels(seq)}, reverse=True)  # pitched above drums
    fig = plt.figure(figsize=(2.4 * cols, (0.4 + 0.8 * len(panels)) * rows))
    cells = fig.add_gridspec(rows, cols, wspace=0.08, hspace=0.12)
    for r, row in enumerate(grid):
        for c, sequence in enumerate(row):
            cell = cells[r, c].subgridspec(len(panels), 1, hspace=0)
            for i, panel in enumerate(panels):
                ax = fig.add_subplot(cell[i, 0])
                _draw(ax, sequence, panel, plt.get_cmap("tab10"), labels=False)
                if c == 0 and panel == "drums":  # the classes' names once per row
                    ax.set_yticks(range(len(DRUM_NAMES)), DRUM_NAMES, fontsize=5)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def find_soundfont() -> str | None:
    candidates = [os.environ.get("SOUNDFONT", ""), *SOUNDFONT_PATHS]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def render_audio(midi: Path, wav: Path, soundfont: str) -> Path | None:
    """MIDI -> WAV with fluidsynth; None if it fails."""
    result = subprocess.run(
        ["fluidsynth", "-ni", "-F", str(wav), "-r", "44100", soundfont, str(midi)], capture_output=True, timeout=120
    )
    return wav if result.returncode == 0 and wav.exists() else None


def write_page(
    output: Path, midi_files: list[Path], sequences: list[NoteSequence], heading: str, overview: Path | None = None
) -> Path:
    """A piano roll per MIDI file, audio where possible, all on output/index.html; `overview` (a picture of them
    all, in output) comes first."""
    soundfont = find_soundfont() if shutil.which("fluidsynth") else None
    blocks = []
    if overview is not None:
        blocks.append(f'<section><img src="{html.escape(overview.name)}" alt="all of them in place"></section>')
    renders = tqdm(
        zip(midi_files, sequences, strict=True),
        total=len(midi_files),
        desc="rendering",
        unit="file",
        disable=len(midi_files) < 10,  # a bar where it takes more than a second or so
    )
    for midi, sequence in renders:
        png = piano_roll(sequence, midi.with_suffix(".png"), midi.name)
        audio = render_audio(midi, midi.with_suffix(".wav"), soundfont) if soundfont else None
        player = (
            f'<audio controls src="{html.escape(audio.name)}"></audio>'
            if audio
            else f'<p class="no-audio">{html.escape(AUDIO_HELP)}</p>'
        )
        blocks.append(
            f'<section><h2><a href="{html.escape(midi.name)}">{html.escape(midi.name)}</a></h2>'
            f'<img src="{html.escape(png.name)}" alt="piano roll of {html.escape(midi.name)}">{player}'
            "</section>"
        )
    page = output / "index.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        f"{html.escape(heading)}</title><style>body{{font-family:sans-serif;margin:2em}}img{{max-width:100%}}"
        f"</style></head><body><h1>{html.escape(heading)}</h1>{''.join(blocks)}</body></html>\n"
    )
    return page
