"""What an infill model's made-up hi-hats are up against: fixed hi-hat patterns scored like `evaluate`'s per-class
hit precision and recall, on a split of converted groove data.

    python bench/infill_baseline.py --data runs/gmd_groove --split test

A pattern plays the closed hi-hat on every eighth note, every sixteenth, or
every quarter, in every window; each is scored against the drummer's
closed hi-hat hits (the infill model's `closed_hihat` row in evaluate's
table). Not a timing: an accuracy reference, so it lives with the figures it
is compared with (BENCHMARKS.md, "Trained model: GrooVAE infill").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicvae_jax.input_pipeline import make_iterator  # noqa: E402
from musicvae_jax.representations.groove import DRUM_CLASS_NAMES  # noqa: E402

PATTERNS = {"every quarter": 4, "every eighth": 2, "every sixteenth": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="converted groove_2bar or groove_4bar data")
    parser.add_argument("--split", default="test")
    parser.add_argument("--drum", default="closed_hihat", choices=DRUM_CLASS_NAMES)
    args = parser.parse_args()
    c = DRUM_CLASS_NAMES.index(args.drum)
    true_total, played = 0.0, {name: np.zeros(2) for name in PATTERNS}  # per pattern: hits played, hits right
    for batch in make_iterator(args.data, args.split, global_batch_size=64, train=False):
        steps = np.arange(batch["hits"].shape[1])
        mask = (steps[None] < batch["lengths"][:, None]) * batch["weights"][:, None]
        true = (batch["hits"][..., c] > 0.5) * mask
        true_total += true.sum()
        for name, every in PATTERNS.items():
            plays = (steps % every == 0)[None] * mask
            played[name] += [plays.sum(), (plays * true).sum()]
    print(f"{args.split} split of {args.data}: {int(true_total)} {args.drum} hits in the data")
    print("| pattern | hit precision | hit recall |\n|---|---|---|")
    for name, (plays, right) in played.items():
        print(f"| {args.drum} {name} | {right / max(plays, 1):.3f} | {right / max(true_total, 1):.3f} |")


if __name__ == "__main__":
    main()
