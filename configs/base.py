"""Fields every model family shares: the data and the run.

Model and training fields arrive with the trainer. Family files call
`get_base_config()` and `parse_variants()`; `--config.x.y=value` overrides
any field from the command line (use tuples, not lists, for sequences).
"""

from ml_collections import ConfigDict, config_dict


def get_base_config() -> ConfigDict:
    config = ConfigDict()
    config.seed = 0
    config.batch_size = 512  # global, over all processes and devices

    config.data = ConfigDict()
    # Converted shards (output of musicvae_jax.convert); unset = the built-in demo corpus.
    config.data.path = config_dict.placeholder(str)
    config.data.representation = ""
    config.data.train_split = "train"
    config.data.eval_split = "eval"
    config.data.num_workers = 0  # Grain worker processes; 0 reads in-process
    config.data.transpose_range = (0, 0)  # semitones, melodic parts only
    config.data.demo_songs = 64
    return config


def parse_variants(arg: str | None, known: tuple[str, ...]) -> set[str]:
    """'tiny,flat' -> {'tiny', 'flat'}; an unknown name is an error naming the known ones."""
    variants = {v.strip() for v in (arg or "").split(",") if v.strip()}
    unknown = variants - set(known)
    if unknown:
        raise ValueError(f"unknown config variant(s) {sorted(unknown)}; known: {', '.join(known)}")
    return variants
