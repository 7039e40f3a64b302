"""Shared benchmark plumbing: where the data is, the machine's name, timing."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MUSICVAE_DATA", REPO.parent / "shared" / "data"))
GROOVE_DIR = DATA / "groove-v1.0.0-midionly"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    """The shortest wall time of `repeats` runs of fn, and fn's last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result
