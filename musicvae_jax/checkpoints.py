"""Orbax checkpoints of the train state, the data position and the config.

One `CheckpointManager` under `workdir/checkpoints`; each step's checkpoint
holds `state` (params, optimizer state, step), `data` (the Grain iterator's
state) and `config`. Orbax writes to a temporary folder and renames it when
complete, so an interrupted save leaves no checkpoint that looks finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from ml_collections import ConfigDict


def make_manager(workdir: str | Path, max_to_keep: int, async_save: bool = True) -> ocp.CheckpointManager:
    directory = Path(workdir).absolute() / "checkpoints" if "://" not in str(workdir) else f"{workdir}/checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save)
    return ocp.CheckpointManager(directory, options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, data_state: dict, config: ConfigDict) -> None:
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state),
            config=ocp.args.JsonSave(config.to_dict()),
        ),
        force=True,
    )


def abstract_like(tree: Any) -> Any:
    """Shapes, dtypes and shardings of a tree of arrays, to restore into."""

    def abstract(x):
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        x = np.asarray(x)
        return jax.ShapeDtypeStruct(x.shape, x.dtype)

    return jax.tree.map(abstract, tree)


def restore(manager: ocp.CheckpointManager, step: int, state_like: Any) -> tuple[Any, dict, dict]:
    """(state, data iterator state, config dict) of the checkpoint at `step`."""
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_like(state_like)),
            data=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
        ),
    )
    return restored["state"], restored["data"], restored["config"]


def restore_config(manager: ocp.CheckpointManager, step: int | None = None) -> dict:
    """Only the config of a checkpoint (the latest by default)."""
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {manager.directory}")
    return manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
