"""How tap2drum models answer rhythms typed on the grid (`sample --taps`), which no drummer's taps in the training
data are: on how many taps each plays, where else, and how many hits in all (argmax, from mu).

    python bench/typed_taps.py --workdir runs/gmd_tap_model --workdir runs/gmd_tapfixed_model

Each one-bar pattern is typed twice (two bars). An accuracy table, not a timing (BENCHMARKS.md, "Trained model:
GrooVAE tap2drum").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from musicvae_jax.representations.groove import taps_from_pattern  # noqa: E402
from musicvae_jax.sample import Generator  # noqa: E402

PATTERNS = {
    "rock": "x.x.X.x.x.x.X.x.",
    "funk": "X...x.X.X...x.X.",
    "son clave 3-2": "X..x..x...x.x...",
    "four on the floor": "X...X...X...X...",
    "eighths": "x.x.x.x.x.x.x.x.",
    "sixteenths": "xxxxxxxxxxxxxxxx",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", action="append", required=True, help="a tap2drum model's workdir (repeatable)")
    args = parser.parse_args()
    print("| model | pattern (one bar, typed twice) | taps | played on a tap | played elsewhere | hits in all |")
    print("|---|---|---|---|---|---|")
    for workdir in args.workdir:
        generator = Generator.restore(workdir)
        for name, pattern in PATTERNS.items():
            (window,) = generator.representation.windows(taps_from_pattern(pattern * 2))
            mu, _ = generator.encode([window])
            (played,) = generator.decode(mu, 0, 0.0)
            taps, on = window["hits"].max(-1) > 0, played["hits"].max(-1) > 0.5
            print(
                f"| {Path(workdir).name} ({generator.spec.groove_input}) | {name} `{pattern}` | {taps.sum()} "
                f"| {(taps & on).sum()} | {(on & ~taps).sum()} | {int(played['hits'].sum())} |"
            )


if __name__ == "__main__":
    main()
