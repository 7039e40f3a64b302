"""Converter speed on the Groove MIDI Dataset, against pretty_midi, side by side.

    python bench/bench_convert.py [--repeats 3]

Prints files/s for reading every file (ours: mido + tempo map + quantisation;
baseline: pretty_midi.PrettyMIDI, what a user would otherwise load MIDI with),
then files/s and examples/s for the whole conversion to shards with one
process and with every core.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import GROOVE_DIR, best_of, machine  # noqa: E402

from musicvae_jax.convert import convert  # noqa: E402
from musicvae_jax.midi_io import read_midi  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--representations", default="drums_2bar,groove_2bar")
    args = parser.parse_args()
    if not GROOVE_DIR.is_dir():
        sys.exit(f"Groove MIDI Dataset not found at {GROOVE_DIR}; set MUSICVAE_DATA")
    import pretty_midi

    files = sorted(GROOVE_DIR.rglob("*.mid"))
    print(f"machine: {machine()}")
    print(f"corpus: Groove MIDI Dataset, {len(files)} files")
    ours, _ = best_of(args.repeats, lambda: [read_midi(f) for f in files])
    theirs, _ = best_of(args.repeats, lambda: [pretty_midi.PrettyMIDI(str(f)) for f in files])
    print(
        f"read, 1 process: ours {len(files) / ours:.0f} files/s, pretty_midi {len(files) / theirs:.0f} files/s, "
        f"ratio {theirs / ours:.2f}x"
    )
    for name in args.representations.split(","):
        for workers in (1, os.cpu_count()):

            def run(name=name, workers=workers):
                with tempfile.TemporaryDirectory() as out:
                    return convert([str(GROOVE_DIR)], out, name, workers=workers)

            seconds, metadata = best_of(args.repeats, run)
            examples = sum(s["examples"] for s in metadata["splits"].values())
            print(
                f"convert {name}, {workers} process(es): {len(files) / seconds:.0f} files/s, "
                f"{examples / seconds:.0f} examples/s ({examples} examples, {seconds:.2f} s)"
            )


if __name__ == "__main__":
    main()
