"""Shared benchmark plumbing: where the data is, the machine's name, timing."""

from __future__ import annotations

import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from musicvae_jax import host_memory

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MUSICVAE_DATA", REPO.parent / "shared" / "data"))
GROOVE_DIR = DATA / "groove-v1.0.0-midionly"


def machine() -> str:
    """The machine in a table's header: cores, CPU (family, model and vector width on x86), Python."""
    try:
        cpu = cpu_name(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu = ""
    cpu = cpu or platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def cpu_name(cpuinfo: str) -> str:
    """'AMD EPYC (family 25, model 1; AVX2)' from /proc/cpuinfo's text; '' where it names no model.

    Cloud VMs call different generations by one model name (an AVX-512 EPYC
    and a Zen 3 one without it both say "AMD EPYC"), and their matmul rates
    differ 4x, so the family, model and widest vector extension go with it.
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if not line.strip():
            break  # the first processor's block is enough
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name", "")
    if not name or "cpu family" not in fields:
        return name
    flags = set(fields.get("flags", "").split())
    vector = next((label for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags), "")
    details = f"family {fields['cpu family']}, model {fields.get('model', '?')}"
    return f"{name} ({details}; {vector})" if vector else f"{name} ({details})"


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    """The shortest wall time of `repeats` runs of fn, and fn's last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """The median wall time of `repeats` calls of fn after `warmup` untimed ones; fn must wait for its own work."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def jitted_seconds(fn: Callable, *args, repeats: int = 7) -> float:
    """The median wall time of jit(fn)(*args), blocked on, after two untimed calls (the first compiles)."""
    import jax

    jitted = jax.jit(fn)
    return median_seconds(lambda: jax.block_until_ready(jitted(*args)), repeats, warmup=2)


def torch_device(torch) -> str:
    """Where the baseline runs: the GPU when JAX runs on one and PyTorch sees it, else the CPU."""
    import jax

    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def prepare_torch_baseline(torch, device: str = "cpu") -> str:
    """PyTorch set up the way its performance guide advises for `device`; returns a line saying how.

    On a GPU: float32 matmuls and cuDNN's RNN in TF32, as JAX computes
    float32 products on NVIDIA GPUs by default, so float32 runs compare the
    same arithmetic.

    On a CPU: all cores; denormals flushed to zero as XLA does (without it, decaying
    values made torch's first steps up to 5x slower); and freed memory kept
    for reuse (`torch_allocator`, which `torch_caller` runs before PyTorch
    starts its threads).
    """
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return (
            f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
            "float32 matmuls and RNNs in TF32 (as JAX's default on this GPU)"
        )
    torch.set_num_threads(os.cpu_count() or 1)
    torch.set_flush_denormal(True)
    return f"{torch.get_num_threads()} threads, denormals flushed, {torch_allocator()}"


def torch_allocator() -> str:
    """glibc set up to reuse freed blocks, each thread keeping its arena (`host_memory.keep_freed_memory`).

    Without it glibc maps every large block afresh and returns it at free,
    and the page faults of PyTorch's per-step temporaries cost its LSTM
    steps 25-50% here; PyTorch's guide gets the same from jemalloc or
    tcmalloc (BENCHMARKS.md). One arena (the entry points' set-up until
    2026-11-27, and still theirs with asynchronous dispatch) slowed
    PyTorch's steps by up to 2x, so the baseline runs in a process of its
    own (`torch_caller`).
    """
    return host_memory.keep_freed_memory()


def torch_setup(device: str) -> str:
    """`prepare_torch_baseline` where `torch_caller` runs the baseline."""
    import torch

    return prepare_torch_baseline(torch, device)


def torch_caller(device: str) -> tuple[Callable, Callable[[], None]]:
    """(call, close): call(fn, *args) runs a PyTorch baseline function; close() ends its process.

    On a CPU the baseline runs in a spawned process of its own, with glibc
    set up PyTorch's way before its threads start (`torch_allocator`),
    while this process keeps our entry points' set-up; the two would
    otherwise share one malloc configuration. On a GPU it runs here.
    """
    if device != "cpu":
        return (lambda fn, *args: fn(*args)), (lambda: None)
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=torch_allocator)
    return (lambda fn, *args: pool.submit(fn, *args).result()), pool.shutdown
