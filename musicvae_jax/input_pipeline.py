"""Converted shards -> Grain -> numpy batches for the model.

Batches hold compact integer tokens, not one-hot arrays: one-hot (and the
drum roll) is computed on the device inside the jitted step, which moves
~90-512x fewer bytes from host to device. A batch is a dict of
  categorical fields  int32 [batch, steps]        (tokens; melody/bass/drums for trio)
  groove fields       float32 [batch, steps, 9]   (hits, velocities, offsets)
  lengths             int32 [batch]
  weights             float32 [batch]             (0 for padding rows of the last eval batch)
Training repeats and reshuffles every epoch and drops the remainder; eval
makes one ordered pass with the last batch padded to full size.

Each process reads only its own rows of every global batch: the split is
shuffled (or kept in order) the same way on every process, global batch b is
elements [b*G, (b+1)*G), and process p takes the p-th block of G/P of them.
So the global batches do not depend on how many processes there are, and
every process yields the same number of batches (eval pads with rows of
weight 0). The iterator's position is Grain state (`get_state` /
`set_state`), saved with checkpoints, one file per process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import grain
import numpy as np
from absl import flags

from musicvae_jax import records
from musicvae_jax.convert import METADATA_FILE
from musicvae_jax.representations import get_representation
from musicvae_jax.representations.melody import FIRST_NOTE_ON
from musicvae_jax.representations.melody import NUM_CLASSES as MELODY_CLASSES


def load_metadata(data_dir: str | Path) -> dict:
    path = Path(data_dir) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {data_dir} the output folder of musicvae_jax.convert?")
    return json.loads(path.read_text())


def shard_paths(data_dir: str | Path, split: str, metadata: dict | None = None) -> list[str]:
    metadata = metadata or load_metadata(data_dir)
    if split not in metadata["splits"]:
        raise ValueError(f"{data_dir}: no split {split!r}; it has {', '.join(metadata['splits'])}")
    return [str(Path(data_dir) / name) for name in sorted(metadata["splits"][split]["shards"])]


def model_arrays(example: dict[str, Any], fields: dict[str, dict]) -> dict[str, np.ndarray]:
    """A record's fields cast for the model: [steps] tokens as int32, [steps, 9] groove values as float32."""
    out = {}
    for name, spec in fields.items():
        array = np.asarray(example[name])
        if list(array.shape) != list(spec["shape"]):
            raise ValueError(f"record field {name} has shape {array.shape}, metadata says {spec['shape']}")
        out[name] = array.astype(np.int32 if array.ndim == 1 else np.float32)
    return out


_PADDING = b""  # what _ProcessRows yields past the end of a split


class _ProcessRows(grain.MapDataset):
    """One process's rows of each global batch: element k is global element (k // L) * G + p * L + k % L."""

    def __init__(self, parent: grain.MapDataset, global_batch_size: int, process_index: int, process_count: int):
        super().__init__(parent)
        self._local = global_batch_size // process_count
        self._global = global_batch_size
        self._offset = process_index * self._local
        self._parent_length = len(parent)
        num_batches = -(-self._parent_length // global_batch_size)  # the last one padded
        if self._parent_length >= sys.maxsize:  # repeated for ever
            num_batches = self._parent_length // global_batch_size
        self._length = num_batches * self._local

    def __len__(self) -> int:
        return self._length

    def _parent_index(self, index: int) -> int:
        batch, row = divmod(index, self._local)
        return batch * self._global + self._offset + row

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        parent_index = self._parent_index(index)
        return self._parent[parent_index] if parent_index < self._parent_length else _PADDING


class _Decode(grain.transforms.Map):
    """Record bytes -> dict of the representation's arrays (cast for the model) and its weight."""

    def __init__(self, fields: dict[str, dict]):
        self._fields = fields

    def map(self, data: bytes) -> dict[str, np.ndarray]:
        if data == _PADDING:
            arrays = {
                name: np.zeros(spec["shape"], np.int32 if len(spec["shape"]) == 1 else np.float32)
                for name, spec in self._fields.items()
            }
            return {**arrays, "weight": np.float32(0)}
        return {**model_arrays(records.deserialize(data), self._fields), "weight": np.float32(1)}


class _Transpose(grain.transforms.RandomMap):
    """Shifts melodic tokens by a random number of semitones, or marks the window dropped."""

    def __init__(self, fields: tuple[str, ...], low: int, high: int):
        self._fields, self._low, self._high = fields, low, high

    def random_map(self, example: dict, rng: np.random.Generator) -> dict:
        shift = int(rng.integers(self._low, self._high + 1))
        out = dict(example)
        for name in self._fields:
            tokens = example[name]
            notes = tokens >= FIRST_NOTE_ON
            shifted = np.where(notes, tokens + shift, tokens)
            if (shifted[notes] < FIRST_NOTE_ON).any() or (shifted[notes] >= MELODY_CLASSES).any():
                return {"_drop": True}
            out[name] = shifted
        return out


def stack_examples(examples: list[dict], batch_size: int) -> dict[str, np.ndarray]:
    """Stacks examples (weight 1 unless one says otherwise), padding with zero rows of weight 0 to `batch_size`."""
    weights = np.zeros(batch_size, np.float32)
    weights[: len(examples)] = [e.get("weight", 1.0) for e in examples]
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0] if k != "weight"}
    real = len(examples)
    if real < batch_size:
        batch = {k: np.concatenate([v, np.zeros((batch_size - real, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
    steps = next(iter(batch.values())).shape[1]
    batch["lengths"] = np.full(batch_size, steps, np.int32)
    batch["weights"] = weights
    return batch


def make_dataset(
    data_dir: str | Path,
    split: str,
    *,
    global_batch_size: int,
    train: bool,
    seed: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    num_workers: int = 0,
    transpose_range: tuple[int, int] = (0, 0),
) -> grain.IterDataset:
    """The Grain pipeline for one process's share of a split (see module docstring)."""
    if global_batch_size % process_count:
        raise ValueError(f"batch size {global_batch_size} does not divide over {process_count} processes")
    batch_size = global_batch_size // process_count
    metadata = load_metadata(data_dir)
    representation = get_representation(metadata["representation"])
    low, high = transpose_range
    if (low, high) != (0, 0) and not representation.melodic_fields:
        raise ValueError(f"transpose_range {transpose_range}: {representation.name} has no melodic part to transpose")
    if low > high:
        raise ValueError(f"transpose_range {transpose_range}: low end is above high end")

    source = grain.sources.ArrayRecordDataSource(shard_paths(data_dir, split, metadata))
    ds = grain.MapDataset.source(source)
    if len(ds) == 0:
        raise ValueError(f"{data_dir}: split {split!r} has no examples")
    if train:
        ds = ds.shuffle(seed=seed).repeat()
    ds = _ProcessRows(ds, global_batch_size, process_index, process_count)
    ds = ds.map(_Decode(metadata["fields"]))
    if (low, high) != (0, 0):
        ds = ds.random_map(_Transpose(representation.melodic_fields, low, high), seed=seed + 1)
        ds = ds.filter(lambda example: "_drop" not in example)
    ids = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    ids = ids.batch(batch_size, drop_remainder=train, batch_fn=lambda examples: stack_examples(examples, batch_size))
    if num_workers > 0:
        if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; outside an absl app, use defaults
            flags.FLAGS.mark_as_parsed()
        ids = ids.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return ids


def make_iterator(data_dir: str | Path, split: str, **kwargs: Any) -> grain.DatasetIterator:
    """A checkpointable iterator over batches; kwargs as for `make_dataset`."""
    return iter(make_dataset(data_dir, split, **kwargs))
