"""Fields every model family shares: data, model, training and the run.

Family files call `get_base_config()`, set the reference sizes of SPEC
section 5, and apply variants with `parse_variants()`. `--config.x.y=value`
overrides any field from the command line (use tuples, not lists).
"""

from ml_collections import ConfigDict, config_dict


def get_base_config() -> ConfigDict:
    config = ConfigDict()
    config.seed = 0
    config.batch_size = 512  # global, over all processes and devices
    # A folder for JAX's persistent compilation cache: a restarted run skips recompiling. Unset: no cache.
    config.compilation_cache_dir = config_dict.placeholder(str)

    config.data = ConfigDict()
    # Converted shards (output of musicvae_jax.convert); unset = the built-in demo corpus.
    config.data.path = config_dict.placeholder(str)
    config.data.representation = ""
    config.data.train_split = "train"
    config.data.eval_split = "eval"
    # Grain worker processes per process; 0 reads in-process. -1 (auto): none on a CPU, where the step uses
    # every core; on GPUs and TPUs 4 per local device (one H200's 9-ms step waited on in-process reading).
    config.data.num_workers = -1
    # A train split whose records take at most this many MB (as stored) is kept in memory after their first
    # read, in each process and worker; from the second epoch on, batches come from there. 0: always read shards.
    config.data.cache_mb = 1024
    config.data.transpose_range = (0, 0)  # semitones, melodic parts only
    config.data.demo_songs = 64

    config.model = ConfigDict()
    config.model.encoder_sizes = (512,)  # per direction
    config.model.decoder_sizes = (256, 256)
    config.model.conductor_sizes = ()  # non-empty: hierarchical decoder
    config.model.z_size = 256
    # LSTM weight gradients as one matmul per sequence instead of one update per step (models/lstm.py);
    # it projects every step's input before the time loop.
    config.model.sequence_vjp = True
    # With sequence_vjp=False only: hoist the input projection out of the loop (BENCHMARKS.md: faster where).
    config.model.hoist_input_projection = False
    config.model.unroll = 1  # lax.scan unrolling
    # The encoder's two directions as one batched scan (one batched product per step) instead of one
    # after the other: slower on a CPU, where they compete for the cores (BENCHMARKS.md); made for GPUs.
    config.model.batch_directions = False
    # "bfloat16": matmuls, forward and backward, in bfloat16 with float32 results;
    # params, loss and optimizer stay float32.
    config.model.compute_dtype = "float32"
    config.model.dropout_keep = 1.0  # keep probability of decoder-input dropout
    # groove: what the encoder reads of a performance, which sets the task (models/groove_input.py):
    # "performance", "hits" (humanize), "taps" (tap2drum), "taps_fixed_velocity", "without:NAME,..." (infill).
    config.model.groove_input = "performance"
    # groove: velocity and offset errors only where the data has a hit (the reference counts every
    # class at every step, so the values a decoder expects shrink towards 0 where a hit is uncertain).
    config.model.groove_values_on_hits = False

    config.train = ConfigDict()
    config.train.num_steps = 200_000
    config.train.learning_rate = 1e-3
    config.train.decay_rate = 0.9999
    config.train.min_learning_rate = 1e-5
    config.train.clip_norm = 1.0
    config.train.skip_grad_norm = 10_000.0  # a step whose gradient norm exceeds this is skipped
    config.train.free_bits = 0.0
    config.train.max_beta = 0.2
    config.train.beta_rate = 0.0
    config.train.sampling_schedule = "constant"  # or "inverse_sigmoid"
    config.train.sampling_rate = 0.0  # constant probability, or k of the inverse sigmoid
    config.train.log_every = 100
    config.train.eval_every = 1000
    config.train.eval_batches = 20  # a fixed sample of the eval split, the same each time; 0: the whole split
    config.train.checkpoint_every = 1000
    config.train.max_to_keep = 3
    return config


def apply_tiny(config: ConfigDict, hierarchical: bool = False) -> None:
    """Sizes that train on a 2-core CPU in minutes (for the demo, tests and CI)."""
    config.batch_size = 32
    config.model.encoder_sizes = (64,)
    config.model.decoder_sizes = (64,)
    config.model.conductor_sizes = (64,) if hierarchical else ()
    config.model.z_size = 32
    config.train.num_steps = 300
    config.train.log_every = 25
    config.train.eval_every = 100
    config.train.eval_batches = 4
    config.train.checkpoint_every = 100


def parse_variants(arg: str | None, known: tuple[str, ...]) -> set[str]:
    """'tiny,flat' -> {'tiny', 'flat'}; an unknown name is an error naming the known ones."""
    variants = {v.strip() for v in (arg or "").split(",") if v.strip()}
    unknown = variants - set(known)
    if unknown:
        raise ValueError(f"unknown config variant(s) {sorted(unknown)}; known: {', '.join(known)}")
    return variants
