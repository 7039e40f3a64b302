"""The device mesh, and moving host batches onto it. The one place sharding is decided.

One mesh axis, "data", over every device of every process: batches are split
on their leading axis, parameters and optimizer state are replicated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices: list | None = None) -> Mesh:
    """Devices in process order, so process p's rows of a global batch are the p-th block of it."""
    devices = jax.devices() if devices is None else devices
    devices = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    devices = mesh.devices.size
    if global_batch_size % devices:
        raise ValueError(
            f"config.batch_size {global_batch_size} does not divide evenly over {devices} devices "
            f"({jax.process_count()} process(es))"
        )


def check_step_fits(
    memory: Any, bytes_limit: int | None, global_batch_size: int, mesh: Mesh, platform: str = "cpu"
) -> None:
    """Stops at start-up, naming config.batch_size, when a compiled step needs more memory than a device has.

    `memory` is the compiled step's `memory_analysis()` (XLA's own count of
    one device's buffers), `bytes_limit` what one device may use
    (`device_bytes_limit`; None where unknown, and nothing is checked).
    Otherwise the run would stop at its first step with XLA's
    RESOURCE_EXHAUSTED and a stack trace. On a GPU that limit is a fraction
    of the card (JAX's default 0.75: 104.9 of an H200's 139.8 GiB), so the
    message says how to raise it. On a CPU the state is in host memory
    already, so only the step's new buffers count against what is free.
    """
    if memory is None or not bytes_limit:
        return
    need = step_bytes(memory) - (memory.argument_size_in_bytes if platform == "cpu" else 0)
    if need <= bytes_limit:
        return
    per_device = global_batch_size // mesh.devices.size
    lower = (
        f"lower config.batch_size (the step's temporaries, {memory.temp_size_in_bytes / 2**30:.1f} GiB, grow with it)"
    )
    if platform == "cpu":
        raise ValueError(
            f"config.batch_size {global_batch_size} ({per_device} per device): the training step needs "
            f"{need / 2**30:.1f} GiB of host memory beyond the state for each device, and "
            f"{bytes_limit / 2**30:.1f} GiB is free for each; {lower}"
        )
    raise ValueError(
        f"config.batch_size {global_batch_size} ({per_device} per device): the training step needs "
        f"{need / 2**30:.1f} GiB of memory on each device, which has {bytes_limit / 2**30:.1f} GiB; "
        f"{lower} or spread it over more devices"
        + (
            "; or let JAX use more of each GPU (XLA_PYTHON_CLIENT_MEM_FRACTION=.95, "
            "XLA_CLIENT_MEM_FRACTION in newer JAX; 0.75 unless set)"
            if platform == "gpu"
            else ""
        )
    )


def step_bytes(memory: Any) -> int:
    """One device's memory for a compiled step, from its `memory_analysis()`: temporaries, inputs and outputs."""
    return (
        memory.temp_size_in_bytes
        + memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        - memory.alias_size_in_bytes  # donated state: its outputs reuse its inputs
    )


def device_bytes_limit() -> int | None:
    """What one of this process's devices may use: its allocator's limit, or on a CPU, whose devices share the
    host's memory, their share of what the host has free (Linux's MemAvailable); None where neither is known."""
    stats = jax.local_devices()[0].memory_stats()
    if stats and stats.get("bytes_limit"):
        return stats["bytes_limit"]
    if jax.local_devices()[0].platform != "cpu":
        return None
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024 // jax.local_device_count()
    return None


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's rows -> one global array per field, sharded on the batch axis."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, replicated(mesh))
