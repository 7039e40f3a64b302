"""The device mesh, and moving host batches onto it. The one place sharding is decided.

One mesh axis, "data", over every device of every process: batches are split
on their leading axis, parameters and optimizer state are replicated.
"""

from __future__ import annotations

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
    one device's buffers), `bytes_limit` what the device's allocator may use
    (`memory_stats()["bytes_limit"]`; None on a CPU, where nothing is checked).
    Otherwise the run would stop at its first step with XLA's
    RESOURCE_EXHAUSTED and a stack trace. On a GPU that limit is a fraction
    of the card (JAX's default 0.75: 104.9 of an H200's 139.8 GiB), so the
    message says how to raise it.
    """
    if memory is None or not bytes_limit:
        return
    need = step_bytes(memory)
    if need > bytes_limit:
        per_device = global_batch_size // mesh.devices.size
        raise ValueError(
            f"config.batch_size {global_batch_size} ({per_device} per device): the training step needs "
            f"{need / 2**30:.1f} GiB of memory on each device, which has {bytes_limit / 2**30:.1f} GiB; "
            f"lower config.batch_size (the step's temporaries, {memory.temp_size_in_bytes / 2**30:.1f} GiB, "
            "grow with it) or spread it over more devices"
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
    """What one of this process's devices' allocator may use, or None where the backend does not say (CPUs)."""
    stats = jax.local_devices()[0].memory_stats()
    return stats.get("bytes_limit") if stats else None


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's rows -> one global array per field, sharded on the batch axis."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, replicated(mesh))
