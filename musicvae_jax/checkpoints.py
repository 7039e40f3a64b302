"""Orbax checkpoints of the train state, the data position and the config.

One `CheckpointManager` under `workdir/checkpoints`; each step's checkpoint
holds `state` (params, optimizer state, step), `data` (each process's Grain
iterator position, `data/process_I-of-N.json`) and `config`. Every process
calls save and restore together. Orbax writes to a temporary folder and
renames it when complete, so an interrupted save leaves no checkpoint that
looks finished. The workdir may be a local folder or a bucket (`gs://...`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grain
import grain.checkpoint
import jax
import numpy as np
import orbax.checkpoint as ocp
from ml_collections import ConfigDict


def make_manager(workdir: str | Path, max_to_keep: int, async_save: bool = True) -> ocp.CheckpointManager:
    directory = Path(workdir).absolute() / "checkpoints" if "://" not in str(workdir) else f"{workdir}/checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save)
    return ocp.CheckpointManager(directory, options=options)


def save(
    manager: ocp.CheckpointManager, step: int, state: Any, data: grain.DatasetIterator | None, config: ConfigDict
) -> None:
    """`data` None: a checkpoint without data positions (import_magenta's), from which training starts the data
    at its beginning (`holds_data`)."""
    items = dict(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config.to_dict()))
    if data is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data)
    manager.save(step, args=ocp.args.Composite(**items), force=True)


def abstract_like(tree: Any) -> Any:
    """Shapes, dtypes and shardings of a tree of arrays, to restore into.

    Leaves that are not yet on a device go to this process's first device, so
    a checkpoint written on other devices or hosts restores here too.
    """
    default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def abstract(x):
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        if isinstance(x, jax.ShapeDtypeStruct):  # from jax.eval_shape: nothing computed to restore over
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding or default)
        x = np.asarray(x)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=default)

    return jax.tree.map(abstract, tree)


def restore(
    manager: ocp.CheckpointManager, step: int, state_like: Any, data: grain.DatasetIterator | None = None
) -> tuple[Any, dict]:
    """(state, config dict) of the checkpoint at `step`; moves `data`, if given, to its saved position (if it has
    one)."""
    items = dict(state=ocp.args.StandardRestore(abstract_like(state_like)), config=ocp.args.JsonRestore())
    if data is not None and holds_data(manager, step):
        _check_data_written_for_this_run(manager, step)
        items["data"] = grain.checkpoint.CheckpointRestore(data)
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"], restored["config"]


def holds_data(manager: ocp.CheckpointManager, step: int) -> bool:
    """Whether a checkpoint holds data positions: one imported from elsewhere (import_magenta) holds none,
    and training from it starts the data at the beginning."""
    return (manager.directory / str(step) / "data").exists()


def _check_data_written_for_this_run(manager: ocp.CheckpointManager, step: int) -> None:
    """Each process resumes its own data position, so the process count cannot change on resume."""
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    folder = manager.directory / str(step) / "data"
    if not (folder / name).exists():
        found = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        raise ValueError(
            f"checkpoint {step} in {manager.directory} holds data positions {found}, none for this run's {name}: "
            f"resume with the number of processes that wrote it, or start a new workdir"
        )


def restore_config(manager: ocp.CheckpointManager, step: int | None = None) -> dict:
    """Only the config of a checkpoint (the latest by default)."""
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {manager.directory}")
    return manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
