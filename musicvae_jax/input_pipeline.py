"""Converted shards -> Grain -> numpy batches for the model.

Batches hold compact integer tokens, not one-hot arrays: one-hot (and the
drum roll) is computed on the device inside the jitted step, which moves
~90-512x fewer bytes from host to device. A batch is a dict of
  categorical fields  int32 [batch, steps]        (tokens; melody/bass/drums for trio)
  groove fields       float32 [batch, steps, 9]   (hits, velocities, offsets)
  lengths             int32 [batch]
  weights             float32 [batch]             (0 for padding rows of the last eval batch)
Training walks an endless run of epochs, each reshuffled (a batch may span
two); eval makes one ordered pass with the last batch padded to full size.
Each Grain element is a whole batch, read and decoded in one call; a training
split small enough (`cache_mb`) is kept in memory as its records are first read.

Each process reads only its own rows of every global batch: the split is
shuffled (or kept in order) the same way on every process, global batch b is
elements [b*G, (b+1)*G), and process p takes the p-th block of G/P of them.
So the global batches do not depend on how many processes there are, and
every process yields the same number of batches (eval pads with rows of
weight 0). The iterator's position is the number of batches it has
delivered (`get_state` / `set_state`), saved with checkpoints, one file per
process; it restores with any number of worker processes.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import grain
import numpy as np
from absl import flags, logging

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


def check_representation(metadata: dict, name: str, data_field: str, model_field: str) -> None:
    """Fails, naming the fields, where converted data holds another representation than the model reads, or
    records of another form (from another version of the converter)."""
    if metadata["representation"] != name:
        raise ValueError(f"{data_field} holds {metadata['representation']} data but {model_field} is {name}")
    representation = get_representation(name)
    expected = {k: v.as_dict() for k, v in representation.fields.items()}
    if metadata.get("num_steps") != representation.num_steps or metadata.get("fields") != expected:
        raise ValueError(
            f"{data_field}: records of {metadata.get('num_steps')} steps with fields {metadata.get('fields')} "
            f"do not match {name} ({representation.num_steps} steps, fields {expected}); reconvert"
        )


def shard_paths(data_dir: str | Path, split: str, metadata: dict | None = None) -> list[str]:
    metadata = metadata or load_metadata(data_dir)
    if split not in metadata["splits"]:
        raise ValueError(f"{data_dir}: no split {split!r}; it has {', '.join(metadata['splits'])}")
    if not metadata["splits"][split]["shards"]:
        raise ValueError(f"{data_dir}: split {split!r} has no examples")
    return [str(Path(data_dir) / name) for name in sorted(metadata["splits"][split]["shards"])]


def _stack_fields(examples: list[dict[str, Any]], fields: dict[str, dict]) -> dict[str, np.ndarray]:
    """Examples -> each field's rows [len(examples), ...] as stored; a shape that disagrees with the metadata
    is an error."""
    rows = {}
    for name, spec in fields.items():
        values = [np.asarray(example[name]) for example in examples]
        for value in values:
            if list(value.shape) != list(spec["shape"]):
                raise ValueError(f"record field {name} has shape {value.shape}, metadata says {spec['shape']}")
        rows[name] = np.stack(values) if values else np.zeros((0, *spec["shape"]), spec["dtype"])
    return rows


def _model_batch(rows: dict[str, np.ndarray], fields: dict[str, dict], batch_size: int) -> dict[str, np.ndarray]:
    """Field rows [k, ...] (k <= batch_size) -> the model's batch: tokens int32, groove values float32, then
    zero rows of weight 0."""
    batch = {}
    for name, spec in fields.items():
        batch[name] = np.zeros((batch_size, *spec["shape"]), np.int32 if len(spec["shape"]) == 1 else np.float32)
        batch[name][: len(rows[name])] = rows[name]
    weights = np.zeros(batch_size, np.float32)
    weights[: len(next(iter(rows.values())))] = 1.0
    steps = next(iter(fields.values()))["shape"][0]
    return {**batch, "lengths": np.full(batch_size, steps, np.int32), "weights": weights}


def batch_arrays(examples: list[dict[str, Any]], fields: dict[str, dict], batch_size: int) -> dict[str, np.ndarray]:
    """Examples -> one batch for the model, padded with zero rows of weight 0 up to `batch_size`.

    Tokens [steps] become int32 rows, groove values [steps, 9] float32 rows;
    a field whose shape disagrees with the metadata is an error.
    """
    return _model_batch(_stack_fields(examples, fields), fields, batch_size)


def record_bytes(fields: dict[str, dict]) -> int:
    """The bytes one record's arrays take in memory as stored (the dtypes in the metadata)."""
    return sum(int(np.prod(spec["shape"])) * np.dtype(spec["dtype"]).itemsize for spec in fields.values())


class _BatchIndices(grain.MapDataset):
    """Element b: the record indices of this process's rows of global batch b.

    Training walks an endless run of epochs, each a fresh permutation of the
    split drawn from (seed, epoch); eval walks the split once, in order or
    (`shuffled`) in the permutation of epoch 0, and -1 marks the padding
    rows of its last batch. Global batch b is positions
    [b*G, (b+1)*G) of that run, and process p takes the p-th block of G/P.
    A whole batch of indices at a time keeps Grain's per-element cost out of
    the loader's per-example cost.
    """

    def __init__(
        self,
        num_records: int,
        global_batch_size: int,
        process_index: int,
        process_count: int,
        *,
        train: bool,
        seed: int,
        shuffled: bool = False,
    ):
        super().__init__()
        self._num_records, self._global, self._train, self._seed = num_records, global_batch_size, train, seed
        self._shuffled = shuffled
        self._local = global_batch_size // process_count
        self._offset = process_index * self._local
        self._length = sys.maxsize if train else -(-num_records // global_batch_size)
        self._permutations: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self._length

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if len(self._permutations) > 2:
                self._permutations.pop(min(self._permutations))
            self._permutations[epoch] = np.random.default_rng([self._seed, epoch]).permutation(self._num_records)
        return self._permutations[epoch]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        positions = index * self._global + self._offset + np.arange(self._local)
        if not self._train:
            inside = positions < self._num_records
            if self._shuffled:
                positions = self._permutation(0)[np.where(inside, positions, 0)]
            return np.where(inside, positions, -1)
        epochs, within = np.divmod(positions, self._num_records)
        indices = np.empty_like(positions)
        for epoch in np.unique(epochs):
            rows = epochs == epoch
            indices[rows] = self._permutation(int(epoch))[within[rows]]
        return indices


class _ReadBatch(grain.transforms.Map):
    """Record indices (-1: padding) -> the batch of those records' arrays, cast for the model.

    With `cache`, each record's arrays are kept in memory (as stored: tokens
    uint8/uint16, groove values uint8/float16) after its first read, so from
    the second epoch on a batch is gathered from memory instead of read and
    decoded record by record. Grain pickles this object into its workers
    without the arrays; each process allocates its own (pages are only
    committed as records arrive).
    """

    def __init__(self, source: grain.sources.ArrayRecordDataSource, fields: dict[str, dict], *, cache: bool):
        self._source, self._fields, self._cache = source, fields, cache
        self._allocate()

    def _allocate(self) -> None:
        n = len(self._source) if self._cache else 0
        self._arrays = {name: np.zeros((n, *spec["shape"]), spec["dtype"]) for name, spec in self._fields.items()}
        self._filled = np.zeros(n, bool)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_arrays", "_filled")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._allocate()

    def _read(self, keys: np.ndarray) -> list[dict[str, Any]]:
        # One batched read (each shard's records fetched together, the shards
        # in parallel): drums_2bar read 1.3-1.5x faster in a process that has
        # trained than one record at a time (BENCHMARKS.md).
        return [records.deserialize(r) for r in self._source.__getitems__(keys.tolist())]

    def _gather(self, keys: np.ndarray) -> dict[str, np.ndarray]:
        missing = np.unique(keys[~self._filled[keys]])
        if missing.size:
            fresh = _stack_fields(self._read(missing), self._fields)
            for name, array in self._arrays.items():
                if fresh[name].dtype != array.dtype:  # a cast could lose what the record holds
                    raise ValueError(
                        f"record field {name} is stored as {fresh[name].dtype}, metadata says {array.dtype}; "
                        "convert the data again or set config.data.cache_mb=0"
                    )
                array[missing] = fresh[name]
            self._filled[missing] = True
        return {name: array[keys] for name, array in self._arrays.items()}

    def map(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        indices = np.asarray(indices)
        keys = indices[indices >= 0]  # padding rows are the last ones
        if self._cache:
            return _model_batch(self._gather(keys), self._fields, len(indices))
        return batch_arrays(self._read(keys) if keys.size else [], self._fields, len(indices))


class _Transpose(grain.transforms.RandomMap):
    """Shifts each window's melodic tokens by a random number of semitones that keeps its notes in range.

    A row's shift is drawn uniformly from the shifts in [low, high] under
    which every note of all its melodic parts stays a valid note-on (all of
    [low, high] for a row without notes, 0 when none fits), so no window is
    dropped and batches keep their size.
    """

    def __init__(self, fields: tuple[str, ...], low: int, high: int):
        self._fields, self._low, self._high = fields, low, high

    def random_map(self, batch: dict, rng: np.random.Generator) -> dict:
        tokens = np.concatenate([batch[name] for name in self._fields], axis=1)
        notes = tokens >= FIRST_NOTE_ON
        lowest = np.where(notes, tokens, MELODY_CLASSES).min(axis=1)
        highest = np.where(notes, tokens, FIRST_NOTE_ON - 1).max(axis=1)
        has_notes = notes.any(axis=1)
        low = np.where(has_notes, np.maximum(self._low, FIRST_NOTE_ON - lowest), self._low)
        high = np.where(has_notes, np.minimum(self._high, MELODY_CLASSES - 1 - highest), self._high)
        shift = np.where(low <= high, rng.integers(np.minimum(low, high), high + 1), 0)[:, None]
        out = dict(batch)
        for name in self._fields:
            out[name] = np.where(batch[name] >= FIRST_NOTE_ON, batch[name] + shift, batch[name]).astype(np.int32)
        return out


def make_dataset(
    data_dir: str | Path,
    split: str,
    *,
    global_batch_size: int,
    train: bool,
    seed: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    transpose_range: tuple[int, int] = (0, 0),
    cache_mb: float = 0,
    shuffled: bool = False,
) -> grain.MapDataset:
    """The Grain pipeline for one process's share of a split: element b is its rows of global batch b.

    An eval pass (`train` False) reads the split once, in stored order, or
    with `shuffled` in a fixed order drawn from `seed`: then its first
    batches, where a caller stops early, are a sample of the whole split
    rather than of its first files (shards hold files' windows together).

    A training split whose records take at most `cache_mb` MB as stored is
    kept in memory after each record's first read (in every process and
    worker that reads it); the batches are the same either way.
    """
    if global_batch_size % process_count:
        raise ValueError(f"batch size {global_batch_size} does not divide over {process_count} processes")
    metadata = load_metadata(data_dir)
    representation = get_representation(metadata["representation"])
    low, high = transpose_range
    if (low, high) != (0, 0) and not representation.melodic_fields:
        raise ValueError(f"transpose_range {transpose_range}: {representation.name} has no melodic part to transpose")
    if low > high:
        raise ValueError(f"transpose_range {transpose_range}: low end is above high end")

    source = grain.sources.ArrayRecordDataSource(shard_paths(data_dir, split, metadata))
    if len(source) == 0:
        raise ValueError(f"{data_dir}: split {split!r} has no examples")
    ds = _BatchIndices(
        len(source), global_batch_size, process_index, process_count, train=train, seed=seed, shuffled=shuffled
    )
    split_bytes = record_bytes(metadata["fields"]) * len(source)
    cache = train and split_bytes <= cache_mb * 2**20
    if cache:
        logging.info(
            "%s: the %s split's %d records (%.1f MB) are kept in memory after their first read",
            data_dir,
            split,
            len(source),
            split_bytes / 2**20,
        )
    ds = ds.map(_ReadBatch(source, metadata["fields"], cache=cache))
    if (low, high) != (0, 0):
        ds = ds.random_map(_Transpose(representation.melodic_fields, low, high), seed=seed + 1)
    return ds


class BatchIterator:
    """Batches of a `make_dataset` pipeline, positioned by how many it has delivered.

    Grain's own iterator state depends on the number of worker processes
    (with workers it holds one position per worker), so a run resumed with
    another count would restore to the wrong batch. Element b of the dataset
    is global batch b whoever reads it, so one count is the whole position,
    and a restore starts a fresh Grain iterator at that batch with this
    run's workers. The state is bytes, which Grain's checkpoint handler
    saves as it is (its form for iterators that are not its own).
    """

    def __init__(self, dataset: grain.MapDataset, num_workers: int = 0):
        self._dataset, self._num_workers = dataset, num_workers
        self._delivered = 0
        self._iterator: Any = None  # started at the first batch, so a restore starts no workers twice

    def _start(self) -> None:
        self._iterator = grain_iterator(self._dataset[self._delivered :], self._num_workers)

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._iterator is None:
            self._start()
        batch = next(self._iterator)
        self._delivered += 1
        if self._num_workers:
            # Out of the workers' shared memory at once: a block still held when the interpreter exits is never
            # freed (Grain's SharedMemoryArray, google/grain#398), and the resource tracker warns of each.
            batch = {k: np.array(v) for k, v in batch.items()}
        return batch

    def get_state(self) -> bytes:
        return json.dumps({"batches_delivered": self._delivered}).encode()

    def set_state(self, state: bytes | str | dict) -> None:
        self._delivered = batches_delivered(json.loads(state) if isinstance(state, bytes | str) else state)
        self.close()

    def start_prefetch(self) -> None:
        """Called by Grain's checkpoint handler after a restore; the first batch starts the reading."""

    def close(self) -> None:
        """Stops Grain's worker processes, if any, and frees their shared memory; the next batch starts afresh."""
        if self._iterator is not None and hasattr(self._iterator, "close"):
            self._iterator.close()
        self._iterator = None


def grain_iterator(dataset: grain.MapDataset, num_workers: int) -> grain.DatasetIterator:
    """Grain's iterator over a dataset, read by `num_workers` processes (0: in this one)."""
    ids = dataset.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    if num_workers > 0:
        if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; outside an absl app, use defaults
            flags.FLAGS.mark_as_parsed()
        ids = ids.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers), worker_init_fn=_ignore_ctrl_c)
    return iter(ids)


def _ignore_ctrl_c(worker_index: int, worker_count: int) -> None:
    """A terminal's Ctrl-C reaches every process of its group: Grain's workers leave it to the training process,
    which saves a checkpoint and closes them, rather than each dying with a KeyboardInterrupt trace."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def batches_delivered(state: dict) -> int:
    """The position in a saved iterator state: ours, or Grain's from checkpoints written before it.

    Grain's in-process iterator saved `next_index`; with workers, the
    positions of the workers, which read every n-th batch in turn, so they
    add up to the batches delivered.
    """
    if "batches_delivered" in state:
        return int(state["batches_delivered"])
    if "next_index" in state:
        return int(state["next_index"])
    if "iterators_in_use_states" in state:
        return sum(batches_delivered(worker) for worker in state["iterators_in_use_states"])
    raise ValueError(f"not a data position this version reads: {state!r}")


def make_iterator(data_dir: str | Path, split: str, *, num_workers: int = 0, **kwargs: Any) -> BatchIterator:
    """A checkpointable iterator over batches, read by `num_workers` processes (0: in this one); kwargs as for
    `make_dataset`."""
    return BatchIterator(make_dataset(data_dir, split, **kwargs), num_workers)
