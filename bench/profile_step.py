"""Where a training step's device time goes: a profiler trace of a few steps, summed by kernel.

    python bench/profile_step.py --config trio_16bar_hier --batch 256 --precision bfloat16 --out runs/profile
    python bench/profile_step.py --config mel_2bar_big --batch 512 --set model.unroll=2 --set model.sequence_vjp=False
    XLA_FLAGS=--xla_gpu_enable_command_buffer=+WHILE python bench/profile_step.py --config mel_2bar_big --tag cmdbuf
    python bench/profile_step.py --config mel_2bar_small --batch 32   # on a CPU: XLA's ops on its worker threads

Compiles and times the step as bench/suite.py does (jit, donated state,
random batch, median of --steps), then traces --trace_steps more under
jax.profiler with a Perfetto trace and sums the device's events by kind
(products, per-step buffer writes, transposes, ...: `KINDS`) and by name:
total, count, mean and share of the device's busy time. On a GPU the device
events are its kernels. On a CPU they are XLA's ops on its worker threads,
which it traces only with --xla_cpu_enable_xprof_traceme (added to XLA_FLAGS
here); an op that splits over both cores is traced once, on the thread that
started it, and ops overlap, so "busy" is the union of the events over the
window and the rest is waiting (launches, loop conditions, copies to and
from the device). Writes the summary as Markdown beside the trace (open the
.json.gz in ui.perfetto.dev).
"""

from __future__ import annotations

import argparse
import ast
import collections
import gzip
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import CONFIGS, step_setup  # noqa: E402
from common import machine, median_seconds  # noqa: E402
from suite import config_for  # noqa: E402

from musicvae_jax import host_memory, train  # noqa: E402


def thread_names(events: list[dict]) -> dict[tuple, str]:
    """Every traced thread's (pid, tid) with its 'process thread' name."""
    processes = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"}
    return {
        (e["pid"], e["tid"]): f"{processes.get(e['pid'], e['pid'])} {e['args']['name']}"
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name"
    }


def device_threads(names: dict[tuple, str]) -> dict[tuple, str]:
    """The threads that run device work: a GPU's streams (else all its lines), or XLA's CPU worker threads.

    Without XLA's CPU worker threads in the trace, the CPU client's thread.
    """
    on_device = {k: v for k, v in names.items() if v.startswith("/device:")}
    streams = {k: v for k, v in on_device.items() if "stream" in v.lower()}
    workers = {k: v for k, v in names.items() if "XLAEigen" in v}
    return streams or on_device or workers or {k: v for k, v in names.items() if "XLAPjRtCpuClient" in v}


# Events of XLA's CPU runtime that wrap or wait on the ops rather than being one.
RUNTIME_EVENTS = ("ThunkExecutor", "SlinkyThreadPool", "ThreadpoolListener", "end: ")

# An event's kind: the first kind one of whose words its name contains (XLA names a
# fusion after its ops: `multiply_concatenate_fusion`, `select_dynamic-update-slice_fusion`).
KINDS = (
    ("products", ("nvjet", "gemm", "cublas", "cutlass", "xmma", "ynn_fusion", "xnn_fusion", "onednn", "dot")),
    ("per-step buffer writes", ("dynamic-update-slice", "dynamic_update_slice")),
    ("transposes", ("transpose",)),
    ("gathers and scatters", ("gather", "scatter")),
    ("concatenates", ("concatenate",)),
    ("copies", ("copy",)),
    ("reductions", ("reduce", "reduction")),
)


def kind_of(name: str) -> str:
    lowered = name.lower()
    return next((kind for kind, words in KINDS if any(w in lowered for w in words)), "other elementwise loops")


def _union(spans: list[dict]) -> float:
    """Microseconds covered by at least one of the events."""
    covered, reach = 0.0, float("-inf")
    for e in sorted(spans, key=lambda e: e["ts"]):
        end = e["ts"] + e["dur"]
        if end > reach:
            covered += end - max(e["ts"], reach)
            reach = end
    return covered


def summarize(events: list[dict], top: int = 25, steps: int = 1) -> str:
    """Markdown: the traced threads, the device's busy share of the window, its events by kind and by name.

    Counts and times in the tables are per step, of the `steps` traced.
    """
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e]
    if not spans:
        return "no timed events in the trace\n"
    per_thread = collections.Counter()
    for e in spans:
        per_thread[(e["pid"], e["tid"])] += e["dur"]
    names = thread_names(events)
    chosen = device_threads(names)
    on_threads = [e for e in spans if (e["pid"], e["tid"]) in chosen]
    device = [e for e in on_threads if not e["name"].startswith(RUNTIME_EVENTS)] or on_threads
    start = min(e["ts"] for e in spans)
    window = max(e["ts"] + e["dur"] for e in spans) - start
    busy = _union(device)
    by_name: dict[str, list[float]] = collections.defaultdict(list)
    by_kind: dict[str, list[dict]] = collections.defaultdict(list)
    for e in device:
        by_name[e["name"]].append(e["dur"])
        by_kind[kind_of(e["name"])].append(e)
    total = sum(sum(d) for d in by_name.values())
    lines = [
        f"Traced window {window / 1e3:.1f} ms; device threads: {', '.join(sorted(chosen.values())) or 'none found'}.",
        f"Device busy {busy / 1e3:.1f} ms ({busy / window:.0%} of the window, {busy / 1e3 / steps:.1f} ms a step); "
        f"events sum to {total / 1e3:.1f} ms.",
        "",
        "| kind | count a step | ms a step | busy ms a step (union) | share of busy |",
        "|---|---|---|---|---|",
    ]
    for kind, events_of_kind in sorted(by_kind.items(), key=lambda kv: -_union(kv[1])):
        covered = _union(events_of_kind)
        lines.append(
            f"| {kind} | {len(events_of_kind) / steps:g} | {sum(e['dur'] for e in events_of_kind) / 1e3 / steps:.2f} "
            f"| {covered / 1e3 / steps:.2f} | {covered / max(busy, 1e-9):.0%} |"
        )
    lines += ["", "| device event | count a step | ms a step | mean us | share of busy |", "|---|---|---|---|---|"]
    for name, durations in sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]:
        lines.append(
            f"| `{name[:90]}` | {len(durations) / steps:g} | {sum(durations) / 1e3 / steps:.2f} | "
            f"{sum(durations) / len(durations):.1f} | {sum(durations) / max(busy, 1e-9):.0%} |"
        )
    lines += ["", "| thread | total ms of its events |", "|---|---|"]
    for key, dur in per_thread.most_common(12):
        lines.append(f"| {names.get(key, key)} | {dur / 1e3:.1f} |")
    return "\n".join(lines) + "\n"


def apply_overrides(config, overrides: list[str]) -> None:
    """`key.path=value` pairs (values as Python literals, else strings) onto the config."""
    for item in overrides:
        path, _, text = item.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        *parents, leaf = path.split(".")
        node = config
        for name in parents:
            node = getattr(node, name)
        if leaf not in node:
            sys.exit(f"--set {item}: the config has no field {path!r}")
        setattr(node, leaf, value)


def add_step_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that pick a training step: config, size, batch, precision and overrides."""
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS))
    parser.add_argument("--size", choices=("real", "tiny"), default="real")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. model.unroll=2")


def step_config(args: argparse.Namespace):
    """The checked config those flags describe."""
    config = config_for(args.config, args.size, args.batch, args.batch, args.precision)
    apply_overrides(config, args.set)
    train.validate_config(config)
    return config


def trace_cpu_ops() -> None:
    """Has XLA's CPU runtime trace each op it runs, where JAX runs on the CPU alone.

    Read when JAX makes its CPU client, so call it first. Left out where an
    accelerator runs the step: its kernels are traced anyway.
    """
    flag = "--xla_cpu_enable_xprof_traceme=true"
    if host_memory.cpu_only() and flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


def main() -> None:
    # JAX's default dispatch: XLA's ops then run on its worker threads, the ones this script sums (synchronous,
    # the calling thread runs some of them).
    host_memory.set_up(synchronous=False)  # before JAX starts its threads
    trace_cpu_ops()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser)
    parser.add_argument("--steps", type=int, default=5, help="steps timed before the trace")
    parser.add_argument("--trace_steps", type=int, default=2)
    parser.add_argument("--tag", default="", help="appended to the output files' names (an XLA_FLAGS variant, say)")
    parser.add_argument("--out", default="runs/profile")
    args = parser.parse_args()

    config = step_config(args)
    step, state, batch, rng = step_setup(config)
    holder = [state]

    def run():
        holder[0], metrics = step(holder[0], batch, rng)
        jax.block_until_ready((holder[0], metrics))

    seconds = median_seconds(run, args.steps)
    parts = [args.config, args.size, f"b{config.batch_size}", args.precision, *args.set, args.tag]
    tag = "-".join(p for p in parts if p).replace("=", "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(args.trace_steps):
                run()
        trace = next(Path(trace_dir).rglob("perfetto_trace.json.gz"))
        shutil.copy(trace, out / f"trace-{tag}.json.gz")
    with gzip.open(out / f"trace-{tag}.json.gz") as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    header = (
        f"{machine()}, backend {jax.default_backend()} ({jax.devices()[0].device_kind}), jax {jax.__version__}. "
        f"{args.config} {args.size}, batch {config.batch_size}, {args.precision}, overrides {args.set or 'none'}, "
        f"XLA_FLAGS {os.environ.get('XLA_FLAGS') or 'none'}: "
        f"step {seconds:.4f} s (median of {args.steps}); {args.trace_steps} steps traced.\n\n"
    )
    text = header + summarize(events, steps=args.trace_steps)
    (out / f"profile-{tag}.md").write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
