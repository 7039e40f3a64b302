"""The training loop against its bare step: does the input pipeline keep the device busy?

    python bench/bench_loop.py --config groovae_2bar_humanize --data runs/gmd_groove --batch 512 \
        --steps 300 --readings=0:0,-1:0,-1:1024 [--precision bfloat16] [--size tiny] [--out DIR]

For one config (bench_train's names): the bare jitted step, timed on one
random batch held on the device (bench_train.time_config), then the entry
point, `python -m musicvae_jax.main` on real shards, in a fresh process per
reading (worker processes, -1 for the config's auto : config.data.cache_mb), and its steps/s over the
log windows after the first (which holds the compile). Both train with
teacher forcing, as the suite does. loop / step near 1 means the loader and
the loop's host work hide behind the step; well under 1, the device waits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The main-job runs get the environment as it was; this process times the bare step without taking the
# accelerator's memory up front, so that each run's allocator starts as a user's would.
MAIN_JOB_ENV = dict(os.environ)
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import CONFIGS, time_config  # noqa: E402
from common import REPO, machine  # noqa: E402
from suite import config_for  # noqa: E402

from musicvae_jax import host_memory  # noqa: E402

WINDOW = re.compile(r"^step (\d+)/\d+ .* ([\d.]+) steps/s")
WORKERS = re.compile(r"^model: .* (\d+) loader worker")


def main_job_command(args: argparse.Namespace, workdir: Path, workers: int, cache_mb: int) -> list[str]:
    """`python -m musicvae_jax.main` for this run's config, data and sizes, with one reading's loader settings."""
    module, variant = CONFIGS[args.config]
    variants = ",".join(v for v in (variant, "tiny" if args.size == "tiny" else "") if v)
    config = f"{REPO / 'configs' / module.__name__.split('.')[-1]}.py" + (f":{variants}" if variants else "")
    overrides = {
        "data.path": args.data,
        "batch_size": args.batch,
        "model.compute_dtype": args.precision,
        "train.sampling_schedule": "constant",
        "train.sampling_rate": 0.0,
        "train.num_steps": args.steps,
        "train.log_every": args.log_every,
        "train.eval_every": args.steps,
        "train.checkpoint_every": args.steps,
        "data.num_workers": workers,
        "data.cache_mb": cache_mb,
    }
    return [sys.executable, "-m", "musicvae_jax.main", f"--config={config}", f"--workdir={workdir}"] + [
        f"--config.{key}={value}" for key, value in overrides.items()
    ]


def loop_steps_per_second(command: list[str], log_path: Path) -> tuple[list[float], int]:
    """Steps/s of each log window after the first, and the loader's workers, from a fresh run of the entry point."""
    with open(log_path, "w") as log:
        subprocess.run(command, cwd=REPO, env=MAIN_JOB_ENV, stdout=log, stderr=subprocess.STDOUT, check=True)
    lines = log_path.read_text().splitlines()
    windows = [float(m.group(2)) for line in lines if (m := WINDOW.match(line))]
    if len(windows) < 2:
        raise RuntimeError(f"{log_path}: fewer than two log windows; raise --steps")
    workers = next(int(m.group(1)) for line in lines if (m := WORKERS.match(line)))
    return windows[1:], workers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS))
    parser.add_argument("--size", default="real", choices=("real", "tiny"))
    parser.add_argument("--data", required=True, type=Path, help="converted shards of the config's representation")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--steps", type=int, default=300, help="steps of each main-job run")
    parser.add_argument("--log_every", type=int, default=25)
    parser.add_argument("--readings", default="0:0,2:0,0:1024", help="comma-separated workers:cache_mb")
    parser.add_argument("--out", type=Path, default=None, help="folder for the JSON and the runs' logs")
    args = parser.parse_args()
    host_memory.set_up()
    out = args.out or Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    tag = f"loop-{args.config}-{args.size}-{args.batch}-{args.precision}"

    config = config_for(args.config, args.size, args.batch, args.batch, args.precision)
    config.batch_size = args.batch
    bare = time_config(config, steps=20)
    results = {
        "machine": machine(),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "config": args.config,
        "size": args.size,
        "batch": args.batch,
        "precision": args.precision,
        "step_s": bare["step_s"],
        "readings": [],
    }
    print(f"{results['machine']}; {results['device']}")
    print(f"{args.config} {args.size}, batch {args.batch}, {args.precision}: bare step {bare['step_s']:.4f} s")
    print("| workers | cache_mb | loop steps/s (median of windows) | slowest window | loop / step | run s |")
    print("|---|---|---|---|---|---|")
    for reading in args.readings.split(","):
        workers, cache_mb = (int(x) for x in reading.split(":"))
        with tempfile.TemporaryDirectory() as workdir:
            command = main_job_command(args, Path(workdir), workers, cache_mb)
            start = time.perf_counter()
            windows, used = loop_steps_per_second(command, out / f"{tag}-w{workers}-c{cache_mb}.log")
            seconds = time.perf_counter() - start
        rate = statistics.median(windows)
        share = rate * bare["step_s"]
        results["readings"].append(
            {
                "workers": workers,
                "workers_used": used,
                "cache_mb": cache_mb,
                "windows": windows,
                "steps_per_s": rate,
                "loop_over_step": share,
                "run_s": seconds,
            }
        )
        label = workers if workers >= 0 else f"auto ({used})"
        print(f"| {label} | {cache_mb} | {rate:.2f} | {min(windows):.2f} | {share:.2f} | {seconds:.0f} |", flush=True)
    (out / f"{tag}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
