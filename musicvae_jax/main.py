"""Entry point: flags and config in, a trained model (and its checkpoints) out.

    python -m musicvae_jax.main --workdir runs/demo                       # built-in default
    python -m musicvae_jax.main --config configs/trio.py --workdir DIR --config.data.path=SHARDS

With no `data.path`, the built-in demo corpus is written and converted under
the workdir, and the config's model trains on it. Running again with the same
workdir resumes from the latest checkpoint.

Multi-process runs (TPU pod slices, several GPU nodes, see `launch/`) start
the same command on every process; `musicvae_jax.distributed` joins them.
"""

from __future__ import annotations

import signal

if __name__ == "__mp_main__":
    # A loader worker (Grain's, started with multiprocessing's spawn) imports this module first. A terminal's
    # Ctrl-C reaches it too, and would stop it with a trace while it imports what follows, before Grain runs the
    # worker's own set-up: it leaves the signal to the training process, which saves a checkpoint and closes it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

from pathlib import Path

import jax
from absl import flags, logging
from jax.experimental import multihost_utils
from ml_collections import ConfigDict, config_flags

from musicvae_jax import cli, convert, demo_corpus, distributed, input_pipeline, remote
from musicvae_jax.train import check_data_matches, train_and_evaluate, validate_config

DEFAULT_CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "trio.py") + ":tiny"
FLAGS = flags.FLAGS


def define_flags() -> None:
    config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Config file, optionally with ':variant,...'.")
    flags.DEFINE_string("workdir", "runs/demo", "Folder or gs:// path for checkpoints and TensorBoard logs.")
    distributed.define_flags()


def prepare_data(config: ConfigDict, workdir: str) -> Path:
    """The converted data folder: config.data.path, or the demo corpus converted under workdir.

    With several processes, process 0 writes the demo data first; the others use
    it when the workdir is shared and write their own copy when it is not.
    """
    if config.data.path:
        data_dir = Path(config.data.path)
        check_data_matches(config, input_pipeline.load_metadata(data_dir))
        return data_dir
    if "://" in workdir:
        raise ValueError(f"--workdir {workdir}: the demo corpus needs a local workdir; set --config.data.path")
    data_dir = Path(workdir) / "data" / config.data.representation
    if distributed.is_leader():
        _write_demo_data(config, Path(workdir), data_dir)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("demo data written")
        if not distributed.is_leader() and not (data_dir / convert.METADATA_FILE).is_file():
            _write_demo_data(config, Path(workdir), data_dir)
    return data_dir


def _write_demo_data(config: ConfigDict, workdir: Path, data_dir: Path) -> None:
    midi_dir = workdir / "demo_midi"
    logging.info("No config.data.path: writing the built-in DEMO corpus to %s", midi_dir)
    demo_corpus.write_demo_corpus(midi_dir, num_songs=config.data.demo_songs, seed=config.seed)
    metadata = convert.convert([str(midi_dir)], data_dir, config.data.representation)
    print(convert.format_summary(metadata, data_dir))


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    config = FLAGS.config
    workdir = FLAGS.workdir
    if "://" not in workdir and Path(workdir).exists() and not Path(workdir).is_dir():
        cli.fail(f"--workdir {workdir}: not a folder")
    try:
        remote.check_reachable(workdir, "--workdir")
        validate_config(config)
        distributed.initialize_from_flags()
        data_dir = prepare_data(config, workdir)
        metrics = train_and_evaluate(config, workdir, data_dir)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        cli.fail(str(e))
    if distributed.is_leader():
        loss = f" (final train loss {metrics['loss']:.3f})" if "loss" in metrics else ""
        print(f"done: checkpoints in {workdir}/checkpoints, TensorBoard logs in {workdir}/tensorboard{loss}")


if __name__ == "__main__":
    cli.run(main, define_flags)
