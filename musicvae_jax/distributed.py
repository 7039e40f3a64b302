"""Joining a multi-process run: `jax.distributed.initialize` when there is more than one process.

JAX's own runtime does the work; this module only decides whether to call it
and with what, so that one `main` runs unchanged on one CPU, one machine
with many accelerators, a TPU pod slice or several GPU nodes:

- `--distributed=auto` (default): initialize when a coordinator is named
  (`--coordinator_address` or `JAX_COORDINATOR_ADDRESS`), or under SLURM or
  Open MPI with more than one task (JAX reads the rest from their
  environment); otherwise stay a single process and do nothing.
- `--distributed=on`: always initialize, letting JAX detect the cluster
  (Cloud TPU VMs, SLURM, Open MPI) unless addresses are given. The TPU
  launch script passes this.
- `--distributed=off`: never.

`--num_processes` and `--process_id` default to `JAX_NUM_PROCESSES` and
`JAX_PROCESS_ID`, for launchers that set environment variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
from absl import flags

MODES = ("auto", "on", "off")


def define_flags() -> None:
    flags.DEFINE_enum("distributed", "auto", MODES, "Join a multi-process run (see musicvae_jax/distributed.py).")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0's coordinator (multi-process runs).")
    flags.DEFINE_integer("num_processes", None, "Number of processes in the run (default: $JAX_NUM_PROCESSES).")
    flags.DEFINE_integer("process_id", None, "This process's index, 0..num_processes-1 (default: $JAX_PROCESS_ID).")


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name}={value!r} is not an integer") from None


def _cluster_tasks(environ: Mapping[str, str]) -> int:
    """Tasks a scheduler says this job has (SLURM, Open MPI); 1 when none does."""
    for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        tasks = _env_int(environ, name)
        if tasks:
            return tasks
    return 1


def initialize_arguments(
    mode: str,
    coordinator_address: str | None,
    num_processes: int | None,
    process_id: int | None,
    environ: Mapping[str, str] = os.environ,
) -> dict | None:
    """The keyword arguments for `jax.distributed.initialize`, or None for a single-process run."""
    if mode not in MODES:
        raise ValueError(f"--distributed={mode}: expected one of {', '.join(MODES)}")
    coordinator_address = coordinator_address or environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = num_processes if num_processes is not None else _env_int(environ, "JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int(environ, "JAX_PROCESS_ID")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"--num_processes={num_processes}: must be at least 1")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"--process_id={process_id}: must be in 0..{num_processes - 1} (--num_processes)")
    if mode == "off":
        return None
    explicit = coordinator_address is not None
    if explicit and (num_processes is None or process_id is None) and _cluster_tasks(environ) == 1:
        missing = "--num_processes" if num_processes is None else "--process_id"
        raise ValueError(f"--coordinator_address={coordinator_address} needs {missing} too (or its JAX_ variable)")
    if not explicit and num_processes is not None and num_processes > 1:
        raise ValueError(f"--num_processes={num_processes} needs --coordinator_address (process 0's host:port)")
    if mode == "auto" and not explicit and _cluster_tasks(environ) == 1:
        return None
    arguments = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
    return {k: v for k, v in arguments.items() if v is not None}


def initialize_from_flags() -> None:
    """Calls `jax.distributed.initialize` when the flags and environment say this is a multi-process run."""
    arguments = initialize_arguments(
        flags.FLAGS.distributed, flags.FLAGS.coordinator_address, flags.FLAGS.num_processes, flags.FLAGS.process_id
    )
    if arguments is not None:
        jax.distributed.initialize(**arguments)


def is_leader() -> bool:
    """Process 0: the one that logs, writes TensorBoard and prepares shared files."""
    return jax.process_index() == 0
