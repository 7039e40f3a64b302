"""glibc's malloc told to keep freed host memory, so a CPU step's temporaries are not mapped afresh every step.

glibc hands large freed blocks back to the system, so every training step
mapped its temporaries anew: 18,000 page faults a step for mel_2bar_small
at batch 32, about a tenth of the step (BENCHMARKS.md). An mmap threshold
of 2 GiB and no trimming keep the memory for the next step; the process's
resident memory stays at its peak instead. Only arenas made afterwards
follow the settings, so this runs before JAX starts its threads (before
the first computation). It is for CPU runs: on accelerators the steps'
temporaries live on the device.

Dispatch is made synchronous on the CPU too (`synchronous_cpu_dispatch`):
queued one after another, a step asks for its temporaries block before the
step before it has handed its block back, and glibc grows the heap for it:
the trio's 1.1-GiB block cost some steps 300,000 page faults and a second
(BENCHMARKS.md). Synchronous, the thread that calls a step allocates its
temporaries, so its arena finds them again and each thread keeps its own
arena. With dispatch left asynchronous XLA's threads allocate them, and
only one arena for the whole process finds them again; but one arena
made Grain's in-process reading half as fast once JAX had trained, and
PyTorch in the same process up to 2x slower (BENCHMARKS.md).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # mallopt options, from glibc's malloc.h
LARGEST = 2**31 - 1  # mallopt takes an int


def keep_freed_memory(one_arena: bool = False) -> str:
    """Sets glibc's malloc up as above; returns a line saying what it did (nothing where libc is not glibc).

    `one_arena` also has every thread allocate from one arena: for JAX's
    asynchronous dispatch, where XLA's threads allocate a step's temporaries.
    """
    if not sys.platform.startswith("linux"):
        return "default allocator (not Linux)"
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return "default allocator (not glibc)"
    settings = ((M_ARENA_MAX, 1),) * one_arena + ((M_MMAP_THRESHOLD, LARGEST), (M_TRIM_THRESHOLD, LARGEST))
    if all(mallopt(option, value) == 1 for option, value in settings):
        arenas = "one arena" if one_arena else "an arena per thread"
        return f"glibc malloc: {arenas}, freed memory kept (mmap threshold 2 GiB, no trimming)"
    return "glibc malloc: its defaults (mallopt refused the settings)"


def synchronous_cpu_dispatch() -> str:
    """Has JAX's CPU client run each single-device computation to its end before the call returns.

    JAX reads the setting when it makes its CPU client, so this runs before
    the first computation; computations over several devices stay
    asynchronous (JAX applies it to single-device ones only).
    """
    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return "CPU dispatch synchronous"


def set_up(keep: bool | None = None, synchronous: bool | None = None) -> str | None:
    """`keep_freed_memory` and `synchronous_cpu_dispatch` where their arguments say so, or by default where JAX
    runs on the CPU alone; what was done in one line, else None."""
    on_cpu = cpu_only() if None in (keep, synchronous) else False  # looks the plugins up once
    keep = on_cpu if keep is None else keep
    synchronous = on_cpu if synchronous is None else synchronous
    done = []
    if keep:
        done.append(keep_freed_memory(one_arena=not synchronous))
    if synchronous:
        done.append(synchronous_cpu_dispatch())
    return "; ".join(done) or None


def cpu_only() -> bool:
    """Whether JAX will run on its CPU alone, judged without starting it.

    JAX_PLATFORMS decides where set; otherwise no accelerator plugin
    (`jax_plugins`, as the CUDA and ROCm plugins install themselves) and no
    libtpu installed.
    """
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return [p.strip() for p in platforms.split(",")] == ["cpu"]
    return not accelerator_plugins()


def accelerator_plugins() -> list[str]:
    """The JAX accelerator plugins installed here (entry points, `jax_plugins` modules, libtpu)."""
    found = [entry.name for entry in importlib.metadata.entry_points(group="jax_plugins")]
    try:
        import jax_plugins

        found += [module.name for module in pkgutil.iter_modules(jax_plugins.__path__)]
    except ImportError:
        pass
    if importlib.util.find_spec("libtpu") is not None:
        found.append("libtpu")
    return found
