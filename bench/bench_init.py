"""Start-up: seconds to create a model's parameters, two ways, each in a fresh process.

    python bench/bench_init.py [--configs trio,mel_2bar,mel_16bar] [--variant real|tiny]

"pass": `model.init` through a reconstruction pass, jitted (how create_state
did it before 2026-11-27). "init_params": the initialisers alone, each
compiled once per shape (`musicvae_jax.models.vae.init_params`; op by op
until the evening of 2026-11-27). Both give the same values.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from musicvae_jax import train  # noqa: E402
from musicvae_jax.models.vae import MusicVAE, init_params  # noqa: E402


def seconds(config_name: str, variant: str, way: str) -> float:
    config = importlib.import_module(f"configs.{config_name}").get_config(None if variant == "real" else variant)
    spec = train.model_spec(config)
    model = MusicVAE(spec)
    start = time.perf_counter()
    if way == "pass":
        batch = train.example_batch(spec, 2)
        params = jax.jit(lambda rng: model.init(rng, batch, rng, train=False))(jax.random.key(0))
    else:
        params = init_params(model, jax.random.key(0))
    jax.block_until_ready(params)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="trio,mel_2bar,mel_16bar")
    parser.add_argument("--variant", default="real")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # config:way, run in a child process
    args = parser.parse_args()
    if args.one:
        name, way = args.one.split(":")
        print(f"{seconds(name, args.variant, way):.2f}")
        return
    print(machine())
    print("| config | variant | pass s | init_params s |\n|---|---|---|---|")
    for name in args.configs.split(","):
        times = [
            subprocess.run(
                [sys.executable, __file__, f"--one={name}:{way}", f"--variant={args.variant}"],
                capture_output=True, text=True, check=True,
            ).stdout.split()[-1]
            for way in ("pass", "init_params")
        ]  # fmt: skip
        print(f"| {name} | {args.variant} | {times[0]} | {times[1]} |", flush=True)


if __name__ == "__main__":
    main()
