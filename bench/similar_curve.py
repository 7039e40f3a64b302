"""What `--mode similar`'s --similarity means for a trained model: how much of the input its variations keep, and
how alike they are to each other, on a split of converted data.

    python bench/similar_curve.py --workdir runs/gmd_drums_model --data runs/gmd_drums --split test

For each window (the split's first --max_windows), --num variations per
similarity are decoded by argmax (temperature 0) as `--mode similar` makes
them; "to the input" is the share of steps whose token (a groove's: its
9 hits) equals the window's, "to each other" the same share between two
variations of one window. At similarity 1 every variation is the window's
reconstruction from mu, so "to the input" is evaluate's free-running
accuracy over the same windows. Not a timing: an accuracy reference, so it
lives with the trained model's figures (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicvae_jax.input_pipeline import make_iterator  # noqa: E402
from musicvae_jax.objectives import step_mask  # noqa: E402
from musicvae_jax.sample import Generator, similar_latents  # noqa: E402


def read_windows(data: str, split: str, max_windows: int) -> dict[str, np.ndarray]:
    """The split's first `max_windows` windows as one batch (padding rows dropped)."""
    batches = []
    for batch in make_iterator(data, split, global_batch_size=64, train=False):
        batches.append({k: v[batch["weights"] > 0] for k, v in batch.items()})
        if sum(len(b["weights"]) for b in batches) >= max_windows:
            break
    return {k: np.concatenate([b[k] for b in batches])[:max_windows] for k in batches[0]}


def share_alike(generator: Generator, a: dict, b: dict, lengths: np.ndarray) -> float:
    """The share of steps (within each window's length, over every part) at which a and b play alike."""
    mask = np.asarray(step_mask(lengths, generator.spec.num_steps))
    alike = [np.asarray(part.values_alike(part.targets(a), part.targets(b))) * mask for part in generator.spec.parts]
    return float(sum(x.sum() for x in alike) / (mask.sum() * len(alike)))


def stacked(examples: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def curve(generator: Generator, windows: dict, similarities, num: int, seed: int) -> list[dict]:
    """Per similarity: the variations' agreement with their input and with each other."""
    mu, _ = generator.encode_batch(windows)
    n = len(mu)
    prior = np.random.default_rng(seed).standard_normal((n, num, generator.spec.z_size)).astype(np.float32)
    rows = []
    for similarity in similarities:
        z = np.concatenate([similar_latents(mu[i], similarity, prior[i]) for i in range(n)])
        decoded = stacked(generator.decode(z, seed, 0.0, progress=False))
        variation = [{k: v[j::num] for k, v in decoded.items()} for j in range(num)]  # [num] of [n windows]
        to_input = np.mean([share_alike(generator, v, windows, windows["lengths"]) for v in variation])
        pairs = itertools.combinations(variation, 2)
        to_each_other = np.mean([share_alike(generator, a, b, windows["lengths"]) for a, b in pairs])
        rows.append({"similarity": similarity, "to_input": float(to_input), "to_each_other": float(to_each_other)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a trained model's workdir (its latest checkpoint)")
    parser.add_argument("--data", required=True, help="converted data of the model's representation")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max_windows", type=int, default=256)
    parser.add_argument("--num", type=int, default=8, help="variations per window and similarity (>= 2)")
    parser.add_argument("--similarities", default="0,0.25,0.5,0.75,0.9,1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.num < 2 or args.max_windows < 1:
        parser.error(f"--num must be >= 2 and --max_windows >= 1, got {args.num} and {args.max_windows}")
    generator = Generator.restore(args.workdir)
    windows = read_windows(args.data, args.split, args.max_windows)
    rows = curve(generator, windows, [float(s) for s in args.similarities.split(",")], args.num, args.seed)
    print(f"{len(windows['lengths'])} {args.split} windows of {args.data}, {args.num} variations each, argmax")
    print("| similarity | steps alike: to the input | to each other |\n|---|---|---|")
    for row in rows:
        print(f"| {row['similarity']:g} | {row['to_input']:.3f} | {row['to_each_other']:.3f} |")


if __name__ == "__main__":
    main()
