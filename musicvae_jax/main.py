"""Entry point: flags and config in, the job out.

    python -m musicvae_jax.main --workdir runs/demo                       # built-in default
    python -m musicvae_jax.main --config configs/trio.py:tiny --workdir DIR --config.data.path=SHARDS

With no `data.path`, the built-in demo corpus is written and converted under
the workdir. The trainer is not built yet (it is the next piece of work), so
today the job prepares the data and streams batches through the input
pipeline, reporting their shapes and the loader's speed.
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import app, flags, logging
from ml_collections import ConfigDict, config_flags

from musicvae_jax import cli, convert, demo_corpus, input_pipeline
from musicvae_jax.representations import get_representation

DEFAULT_CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "trio.py") + ":tiny"

FLAGS = flags.FLAGS


def define_flags() -> None:
    config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Config file, optionally with ':variant,...'.")
    flags.DEFINE_string("workdir", "runs/demo", "Folder for data made here, logs and checkpoints.")
    flags.DEFINE_integer("check_batches", 50, "Batches to stream through the input pipeline.")


def validate_config(config: ConfigDict) -> None:
    """Fails at start-up, naming the field, on values that would fail later."""
    try:
        representation = get_representation(config.data.representation)
    except ValueError as e:
        raise ValueError(f"config.data.representation: {e}") from None
    if config.batch_size < 1:
        raise ValueError(f"config.batch_size must be >= 1, got {config.batch_size}")
    if config.data.num_workers < 0:
        raise ValueError(f"config.data.num_workers must be >= 0, got {config.data.num_workers}")
    low_high = tuple(config.data.transpose_range)
    if len(low_high) != 2 or low_high[0] > low_high[1]:
        raise ValueError(f"config.data.transpose_range must be (low, high) with low <= high, got {low_high}")
    if low_high != (0, 0) and not representation.melodic_fields:
        raise ValueError(f"config.data.transpose_range: {representation.name} has no melodic part to transpose")


def prepare_data(config: ConfigDict, workdir: Path) -> Path:
    """The converted data folder: config.data.path, or the demo corpus converted under workdir."""
    if config.data.path:
        data_dir = Path(config.data.path)
        metadata = input_pipeline.load_metadata(data_dir)
        if metadata["representation"] != config.data.representation:
            raise ValueError(
                f"config.data.path {data_dir} holds {metadata['representation']} data but "
                f"config.data.representation is {config.data.representation}"
            )
        return data_dir
    midi_dir = workdir / "demo_midi"
    logging.info("No config.data.path: writing the built-in DEMO corpus to %s", midi_dir)
    demo_corpus.write_demo_corpus(midi_dir, num_songs=config.data.demo_songs, seed=config.seed)
    data_dir = workdir / "data" / config.data.representation
    metadata = convert.convert([str(midi_dir)], data_dir, config.data.representation)
    print(convert.format_summary(metadata, data_dir))
    return data_dir


def check_input_pipeline(config: ConfigDict, data_dir: Path, num_batches: int) -> None:
    iterator = input_pipeline.make_iterator(
        data_dir,
        config.data.train_split,
        global_batch_size=config.batch_size,
        train=True,
        seed=config.seed,
        num_workers=config.data.num_workers,
        transpose_range=tuple(config.data.transpose_range),
    )
    batch = next(iterator)
    print("batch:", ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in batch.items()))
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)
    seconds = time.perf_counter() - start
    print(
        f"input pipeline: {num_batches / seconds:.1f} batches/s, "
        f"{num_batches * config.batch_size / seconds:.0f} examples/s"
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = FLAGS.config
    workdir = Path(FLAGS.workdir)
    try:
        validate_config(config)
        data_dir = prepare_data(config, workdir)
        check_input_pipeline(config, data_dir, FLAGS.check_batches)
    except (ValueError, FileNotFoundError) as e:
        cli.fail(str(e))
    print("The trainer is not built yet; data and input pipeline are ready in", data_dir)


if __name__ == "__main__":
    cli.run(main, define_flags)
