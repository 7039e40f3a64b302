"""The benchmark suite: every figure side by side in one run, written as JSON and a Markdown table.

    python bench/suite.py                                   # everything, CPU-sized batches
    python bench/suite.py --only mel_2bar_small,trio_16bar_hier --steps 20 --out bench/results
    python bench/suite.py --precision bfloat16 --skip_input   # both sides in mixed precision

For each config, at its reference sizes with a batch that fits the machine
(--batch, --batch_16bar) and as its `tiny` variant: compile time, median
train-step time over --steps steps after a warm-up (each blocked on),
examples/s, model FLOPs per step (bench/flops.py), achieved FLOP/s and its
fraction of a large jitted matmul measured at the start of the run (float32;
bfloat16 on GPU and in a bfloat16 run; accumulated in float32, as the
model's are). Beside it, the same model in PyTorch (`torch.nn.LSTM`,
bench/torch_musicvae.py), same batch and sequence length, timed the same
way, set up as PyTorch advises for CPUs (common.prepare_torch_baseline:
denormals flushed as XLA does, freed memory reused; on a CPU in a process
of its own, common.torch_caller, while ours runs with our entry points'
malloc set-up), and the ratio of examples/s
(ours / theirs). Both train with teacher
forcing (scheduled sampling off), so the comparison is the same work.
With --precision bfloat16 both sides train in mixed precision: ours with
config.model.compute_dtype=bfloat16, PyTorch's forward under
torch.autocast("cpu", bfloat16); the header's matmul is then each
framework's bfloat16 one.
Then the Grain loader's batches/s with 0 and 2 worker processes against
what the step consumes, and the time to sample 32 sequences per family.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_input import READINGS, batches_per_second  # noqa: E402
from bench_sample import sample_seconds  # noqa: E402
from bench_train import CONFIGS, matmul_flops_per_second, random_batch, time_config  # noqa: E402
from common import (  # noqa: E402
    GROOVE_DIR,
    machine,
    median_seconds,
    torch_caller,
    torch_device,
    torch_setup,
)

from musicvae_jax import host_memory, train  # noqa: E402
from musicvae_jax.convert import convert  # noqa: E402
from musicvae_jax.demo_corpus import write_demo_corpus  # noqa: E402
from musicvae_jax.representations.drums import drum_roll  # noqa: E402

SIXTEEN_BAR = ("mel_16bar_hier", "mel_16bar_flat", "trio_16bar_hier", "trio_16bar_flat")


def reference_matmul(precision: str = "float32") -> tuple[int, str]:
    """The reference product's (size, dtype): 2048^2 on a CPU, 8192^2 on an accelerator; bfloat16 on a GPU or
    in a bfloat16 run, else float32."""
    backend = jax.default_backend()
    dtype = "bfloat16" if backend == "gpu" or precision == "bfloat16" else "float32"
    return (2048 if backend == "cpu" else 8192), dtype


def jax_matmul_flops(precision: str = "float32") -> tuple[float, str]:
    """The reference FLOP/s and a name for the product."""
    size, dtype = reference_matmul(precision)
    return matmul_flops_per_second(size, dtype=jnp.dtype(dtype)), f"{dtype} {size}x{size}"


def torch_matmul_flops(size: int = 2048, repeats: int = 10, dtype: str = "float32", device: str = "cpu") -> float:
    import torch

    a = torch.randn(size, size, device=device).to(getattr(torch, dtype))
    sync = torch_sync(torch, device)
    return 2 * size**3 / median_seconds(lambda: (a @ a, sync()), repeats)


def torch_sync(torch, device: str):
    """Waits for the device's queued work (CUDA runs asynchronously; the CPU does not)."""
    return torch.cuda.synchronize if device == "cuda" else lambda: None


def config_for(name: str, size: str, batch: int, batch_16bar: int, precision: str = "float32"):
    module, variant = CONFIGS[name]
    config = module.get_config(",".join(v for v in (variant, "tiny" if size == "tiny" else "") if v))
    if size == "real":
        config.batch_size = batch_16bar if name in SIXTEEN_BAR else batch
    config.train.sampling_schedule = "constant"
    config.train.sampling_rate = 0.0
    config.model.compute_dtype = precision
    return config


def time_torch(config, steps: int, device: str = "cpu") -> dict | None:
    """The PyTorch step's timing, or None for models the baseline does not cover (GrooVAE)."""
    import torch
    from torch_musicvae import TorchMusicVAE, make_step

    spec = train.model_spec(config)
    if any(p.kind == "groove" for p in spec.parts):
        return None
    torch.manual_seed(0)
    model = TorchMusicVAE(spec).to(device)
    autocast = torch.bfloat16 if config.model.compute_dtype == "bfloat16" else None
    batch = random_batch(spec.representation, config.batch_size)
    one_hots = [
        torch.nn.functional.one_hot(torch.from_numpy(batch[p.name]).long(), p.depth).float().to(device)
        for p in spec.parts
    ]
    features = [
        torch.from_numpy(drum_roll(batch[p.name])).float().to(device) if p.encoder_input == "roll" else one_hot
        for p, one_hot in zip(spec.parts, one_hots, strict=True)
    ]
    encoder_inputs = torch.cat(features, dim=-1)
    step = make_step(
        model, config.train.learning_rate, config.train.clip_norm, config.train.free_bits, 0.2, autocast=autocast
    )
    sync = torch_sync(torch, device)
    seconds = median_seconds(lambda: (step(encoder_inputs, one_hots), sync()), steps)
    if device == "cuda":  # hand the cached blocks back, so the next row's JAX step finds the memory free
        del model, step, one_hots, features, encoder_inputs
        torch.cuda.empty_cache()
    return {"step_s": seconds, "examples_per_s": config.batch_size / seconds}


def input_rates(representations: dict[str, float], batch: int, batches: int) -> list[dict]:
    """Grain batches/s per representation (bench_input.READINGS) against the fastest step that reads it."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_demo_corpus(tmp / "demo_midi", num_songs=64)
        for name, consumption in sorted(representations.items()):
            groove = GROOVE_DIR.is_dir() and (name.startswith("drums") or name.startswith("groove"))
            convert([str(GROOVE_DIR if groove else tmp / "demo_midi")], tmp / name, name)
            for workers, cached in READINGS:
                rate = batches_per_second(tmp / name, batch, batches, workers, cached) * batch
                where = "memory" if cached else "shards"
                rows.append(
                    {
                        "representation": name,
                        "corpus": "groove" if groove else "demo",
                        "workers": workers,
                        "read_from": where,
                        "examples_per_s": rate,
                        "step_consumes_examples_per_s": consumption,
                        "ratio": rate / consumption,
                    }
                )
                ratio = rate / consumption
                print(f"input {name} workers={workers} from {where}: {rate:,.0f} examples/s, {ratio:.0f}x the step")
    return rows


def markdown(results: dict) -> str:
    lines = [
        f"Machine: {results['machine']}, backend {results['backend']}, jax {results['jax']}, "
        f"torch {results.get('torch', '-')}, {results['date']}; precision {results.get('precision', 'float32')}.",
        f"In-process matmul ({results['matmul']}): JAX {results['jax_matmul_gflops']:.0f} GFLOP/s"
        + (f", PyTorch {results['torch_matmul_gflops']:.0f} GFLOP/s." if "torch_matmul_gflops" in results else "."),
    ]
    if "jax_setup" in results:
        lines.append(f"Ours: {results['jax_setup']}.")
    if "torch_setup" in results:
        lines.append(f"PyTorch: {results['torch_setup']}.")
    lines += [
        "",
        "| config | size | batch | steps | compile s | step s | examples/s | GFLOP/step | GFLOP/s | of matmul "
        "| torch step s | torch examples/s | ours / torch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["train"]:
        t = r.get("torch")
        torch_cells = "- | - | -"
        if t:
            ratio = r["examples_per_s"] / t["examples_per_s"]
            torch_cells = f"{t['step_s']:.3f} | {t['examples_per_s']:.1f} | {ratio:.2f}x"
        lines.append(
            f"| {r['config']} | {r['size']} | {r['batch']} | {r['steps']} | {r['compile_s']:.1f} | {r['step_s']:.3f} | "
            f"{r['examples_per_s']:.1f} | {r['flops'] / 1e9:.1f} | {r['flops_per_s'] / 1e9:.1f} | "
            f"{r['of_matmul']:.0%} | {torch_cells} |"
        )
    for r in results.get("errors", []):
        lines.append(f"| {r['config']} | {r['size']} | {r['batch']} | {r['steps']} | failed: {r['error'][:120]} |")
    if results["input"]:
        lines += ["", "| representation | corpus | workers | read from | examples/s | step consumes | loader / step |"]
        lines.append("|---|---|---|---|---|---|---|")
        for r in results["input"]:
            lines.append(
                f"| {r['representation']} | {r['corpus']} | {r['workers']} | {r['read_from']} | "
                f"{r['examples_per_s']:,.0f} | "
                f"{r['step_consumes_examples_per_s']:,.0f} | {r['ratio']:.0f}x |"
            )
    if results["sample"]:
        lines += ["", "| config | sample 32 s |", "|---|---|"]
        lines += [f"| {r['config']} | {r['seconds']:.3f} |" for r in results["sample"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated config names (default: all)")
    parser.add_argument("--sizes", default="real,tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32, help="batch of the 2-bar configs at reference size")
    parser.add_argument("--batch_16bar", type=int, default=4, help="batch of the 16-bar configs at reference size")
    parser.add_argument("--steps_16bar", type=int, default=None, help="steps timed, 16-bar at reference size")
    parser.add_argument("--skip_torch", action="store_true")
    parser.add_argument("--skip_input", action="store_true")
    parser.add_argument("--skip_sample", action="store_true")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--tag", default="", help="appended to the output files' names")
    parser.add_argument(
        "--precision", choices=("float32", "bfloat16"), default="float32", help="both frameworks' matmul precision"
    )
    parser.add_argument(
        "--asynchronous_cpu_dispatch",
        action="store_true",
        help="JAX's default CPU dispatch, not the entry points' synchronous one (musicvae_jax/host_memory.py)",
    )
    args = parser.parse_args()
    # Before JAX starts its threads and its CPU client, as the entry points do it.
    our_setup = host_memory.set_up(synchronous=False if args.asynchronous_cpu_dispatch else None)
    names = [n for n in args.only.split(",") if n] or list(CONFIGS)
    unknown = set(names) - set(CONFIGS)
    if unknown:
        sys.exit(f"--only: unknown config(s) {sorted(unknown)}; known: {', '.join(CONFIGS)}")

    peak, matmul = jax_matmul_flops(args.precision)
    results = {
        "machine": machine(),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python", *sys.argv]),
        "matmul": matmul,
        "jax_matmul_gflops": peak / 1e9,
        "precision": args.precision,
        "jax_setup": our_setup or "JAX's defaults",
        "train": [],
        "input": [],
        "sample": [],
    }
    device = "cpu"
    close_torch = lambda: None  # noqa: E731
    if not args.skip_torch:
        import torch

        device = torch_device(torch)
        call_torch, close_torch = torch_caller(device)
        results["torch_setup"] = call_torch(torch_setup, device)
        results["torch"] = torch.__version__
        size, dtype = reference_matmul(args.precision)
        results["torch_matmul_gflops"] = call_torch(torch_matmul_flops, size, 10, dtype, device) / 1e9
    print(f"{results['machine']}; matmul {matmul}: {peak / 1e9:.0f} GFLOP/s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    precision = "" if args.precision == "float32" else args.precision
    stem = out / "-".join(x for x in ("suite", results["backend"], precision, results["date"], args.tag) if x)

    consumption: dict[str, float] = {}
    for name in names:
        for size in args.sizes.split(","):
            if size == "tiny" and CONFIGS[name][1] == "big":
                continue
            config = config_for(name, size, args.batch, args.batch_16bar, args.precision)
            steps = args.steps_16bar if size == "real" and name in SIXTEEN_BAR and args.steps_16bar else args.steps
            row = {"config": name, "size": size, "batch": config.batch_size, "steps": steps}
            try:
                row.update(time_config(config, steps))
            except jax.errors.JaxRuntimeError as error:  # out of device memory, say: the other rows still run
                results.setdefault("errors", []).append({**row, "error": str(error).splitlines()[0]})
                print(f"train {name}:{size} batch {config.batch_size}: {results['errors'][-1]['error']}", flush=True)
                write(results, stem)
                continue
            row["of_matmul"] = row["flops_per_s"] / peak
            if not args.skip_torch:
                row["torch"] = call_torch(time_torch, config, steps, device)
            results["train"].append(row)
            write(results, stem)  # after every row, so an interrupted run keeps what it measured
            rep = config.data.representation
            consumption[rep] = max(consumption.get(rep, 0.0), row["examples_per_s"])
            ratio = f", torch {row['torch']['step_s']:.3f} s" if row.get("torch") else ""
            print(f"train {name}:{size} batch {config.batch_size}: {row['step_s']:.3f} s/step{ratio}", flush=True)
    close_torch()
    if not args.skip_input:
        results["input"] = input_rates(consumption, 512, 100)
        write(results, stem)
    if not args.skip_sample:
        for name in names:
            config = config_for(name, "real", args.batch, args.batch_16bar, args.precision)
            results["sample"].append({"config": name, "seconds": sample_seconds(config)[1]})
            print(f"sample 32 {name}: {results['sample'][-1]['seconds']:.3f} s", flush=True)
            write(results, stem)

    write(results, stem)
    print(markdown(results))
    print(f"wrote {stem}.json and .md")


def write(results: dict, stem: Path) -> None:
    """The JSON and the Markdown tables, each written whole to a temporary name and renamed into place."""
    for suffix, text in ((".json", json.dumps(results, indent=2) + "\n"), (".md", markdown(results))):
        partial = stem.with_name(stem.name + suffix + ".partial")
        partial.write_text(text)
        partial.replace(stem.with_name(stem.name + suffix))


if __name__ == "__main__":
    main()
