"""Grain loader throughput per representation: with 0 and 2 worker processes reading the shards, and in-process
from the memory cache (config.data.cache_mb) once the first epoch has filled it.

    python bench/bench_input.py [--batch 512] [--batches 200]

Data: the Groove MIDI Dataset for drums_2bar, groove_2bar and groove_4bar,
the built-in demo corpus for the melody and trio representations (converted
into a temporary folder first, not timed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import GROOVE_DIR, machine  # noqa: E402

from musicvae_jax.convert import convert  # noqa: E402
from musicvae_jax.demo_corpus import write_demo_corpus  # noqa: E402
from musicvae_jax.input_pipeline import load_metadata, make_iterator  # noqa: E402

GROOVE_REPRESENTATIONS = ("drums_2bar", "groove_2bar", "groove_4bar")
DEMO_REPRESENTATIONS = ("melody_2bar", "melody_16bar", "trio_16bar")


# How the loader is timed: (worker processes, read from the memory cache after the first epoch).
READINGS = ((0, False), (0, True), (2, False))


def batches_per_second(data_dir: Path, batch: int, batches: int, workers: int, cached: bool = False) -> float:
    cache_mb = 2**20 if cached else 0
    iterator = make_iterator(
        data_dir, "train", global_batch_size=batch, train=True, seed=0, num_workers=workers, cache_mb=cache_mb
    )
    warm_up = 5 if workers == 0 else 20  # (and worker start-up)
    if cached:  # past the first epoch, which fills the cache
        warm_up += -(-load_metadata(data_dir)["splits"]["train"]["examples"] // batch)
    for _ in range(warm_up):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--demo_songs", type=int, default=256)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"batch {args.batch}, {args.batches} batches timed after warm-up")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        jobs = []
        if GROOVE_DIR.is_dir():
            jobs += [(name, GROOVE_DIR, "groove") for name in GROOVE_REPRESENTATIONS]
        write_demo_corpus(tmp / "demo_midi", num_songs=args.demo_songs)
        jobs += [(name, tmp / "demo_midi", "demo") for name in DEMO_REPRESENTATIONS]
        print("| representation | corpus | workers | read from | batches/s | examples/s |")
        print("|---|---|---|---|---|---|")
        for name, source, corpus in jobs:
            data_dir = tmp / name
            convert([str(source)], data_dir, name)
            for workers, cached in READINGS:
                rate = batches_per_second(data_dir, args.batch, args.batches, workers, cached)
                where = "memory" if cached else "shards"
                print(f"| {name} | {corpus} | {workers} | {where} | {rate:.1f} | {rate * args.batch:.0f} |", flush=True)


if __name__ == "__main__":
    main()
