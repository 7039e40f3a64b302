"""Train state, the pure train and eval steps, and the loop around them.

`train_step(state, batch, rng)` and `eval_step(params, batch, rng)` are pure
and jitted over the device mesh (batch sharded, state replicated and donated).
The loop does the I/O: it loads the next batch onto the devices while a step
runs, reads metrics back only on steps that log, evaluate or checkpoint (and
on every step on a multi-device CPU, where XLA's all-reduce can deadlock
otherwise), logs, evaluates, checkpoints, and saves on SIGTERM. A run
restarted in the same workdir resumes from its latest checkpoint, data
position included.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from etils import epath
from flax.training import train_state
from jax.experimental import multihost_utils
from ml_collections import ConfigDict

from musicvae_jax import checkpoints, distributed, input_pipeline, objectives, parallel
from musicvae_jax.models import groove_input
from musicvae_jax.models.vae import ModelSpec, MusicVAE, init_params
from musicvae_jax.representations import get_representation


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """The training hyper-parameters the compiled steps close over."""

    free_bits: float
    max_beta: float
    beta_rate: float
    sampling_schedule: str
    sampling_rate: float
    learning_rate: float
    decay_rate: float
    min_learning_rate: float
    clip_norm: float
    skip_grad_norm: float

    @classmethod
    def from_config(cls, config: ConfigDict) -> TrainSpec:
        return cls(**{f.name: config.train[f.name] for f in dataclasses.fields(cls)})

    @property
    def scheduled_sampling(self) -> bool:
        return self.sampling_schedule == "inverse_sigmoid" or self.sampling_rate > 0


def model_spec(config: ConfigDict) -> ModelSpec:
    representation = get_representation(config.data.representation)
    m = config.model
    return ModelSpec(
        representation=representation.name,
        num_steps=representation.num_steps,
        num_bars=representation.num_bars,
        encoder_sizes=tuple(m.encoder_sizes),
        decoder_sizes=tuple(m.decoder_sizes),
        conductor_sizes=tuple(m.conductor_sizes),
        z_size=m.z_size,
        hoist_input_projection=m.hoist_input_projection,
        unroll=m.unroll,
        dropout_keep=m.dropout_keep,
        groove_input=groove_input_of(m),
        groove_values_on_hits=m.get("groove_values_on_hits", False),
        compute_dtype=m.get("compute_dtype", "float32"),  # checkpoints from before the option have none
        sequence_vjp=m.get("sequence_vjp", True),
        batch_directions=m.get("batch_directions", False),
    )


def groove_input_of(model: ConfigDict) -> str:
    """config.model.groove_input; checkpoints from before the field have humanize=True for "hits"."""
    return model.get("groove_input", "hits" if model.get("humanize", False) else "performance")


def validate_config(config: ConfigDict) -> None:
    """Fails at start-up, naming the field, on values that would fail later."""
    try:
        representation = get_representation(config.data.representation)
    except ValueError as e:
        raise ValueError(f"config.data.representation: {e}") from None
    if config.batch_size < 1:
        raise ValueError(f"config.batch_size must be >= 1, got {config.batch_size}")
    if config.seed < 0:
        raise ValueError(f"config.seed must be >= 0, got {config.seed}")
    if not config.data.path and config.data.demo_songs < 2:
        raise ValueError(
            f"config.data.demo_songs must be >= 2 (a train and an eval song), got {config.data.demo_songs}"
        )
    if config.data.num_workers < -1:
        raise ValueError(f"config.data.num_workers must be >= 0, or -1 for auto, got {config.data.num_workers}")
    if config.data.cache_mb < 0:
        raise ValueError(f"config.data.cache_mb must be a number >= 0, got {config.data.cache_mb!r}")
    low_high = tuple(config.data.transpose_range)
    if len(low_high) != 2 or low_high[0] > low_high[1]:
        raise ValueError(f"config.data.transpose_range must be (low, high) with low <= high, got {low_high}")
    if low_high != (0, 0) and not representation.melodic_fields:
        raise ValueError(f"config.data.transpose_range: {representation.name} has no melodic part to transpose")
    m, t = config.model, config.train
    for name in ("encoder_sizes", "decoder_sizes"):
        sizes = tuple(m[name])
        if not sizes or any(not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"config.model.{name} must be a non-empty tuple of positive ints, got {sizes}")
    if any(not isinstance(s, int) or s < 1 for s in tuple(m.conductor_sizes)):
        raise ValueError(f"config.model.conductor_sizes must hold positive ints, got {tuple(m.conductor_sizes)}")
    if m.conductor_sizes and representation.num_steps % representation.num_bars:
        raise ValueError(
            f"config.model.conductor_sizes: {representation.num_bars} bars do not divide "
            f"{representation.num_steps} steps"
        )
    if m.conductor_sizes and (t.sampling_schedule == "inverse_sigmoid" or t.sampling_rate > 0):
        raise ValueError(
            "config.train.sampling_schedule: scheduled sampling is supported by flat decoders only; "
            "hierarchical models train with teacher forcing (sampling_schedule='constant', rate 0)"
        )
    if m.hoist_input_projection and m.sequence_vjp:
        raise ValueError(
            "config.model.hoist_input_projection=True applies with config.model.sequence_vjp=False only "
            "(the sequence backward pass always projects the inputs before the time loop)"
        )
    if m.get("compute_dtype", "float32") not in ("float32", "bfloat16"):
        raise ValueError(f"config.model.compute_dtype must be 'float32' or 'bfloat16', got {m.compute_dtype!r}")
    for name in ("z_size", "unroll"):
        if m[name] < 1:
            raise ValueError(f"config.model.{name} must be >= 1, got {m[name]}")
    if not 0.0 < m.dropout_keep <= 1.0:
        raise ValueError(f"config.model.dropout_keep must be in (0, 1], got {m.dropout_keep}")
    for field, in_use in (
        ("groove_values_on_hits", m.get("groove_values_on_hits", False)),
        ("groove_input", groove_input_of(m) != "performance"),
    ):
        if in_use and not representation.name.startswith("groove"):
            raise ValueError(f"config.model.{field} applies to groove representations, not {representation.name}")
    groove_input.check_groove_input(groove_input_of(m))
    if t.sampling_schedule not in ("constant", "inverse_sigmoid"):
        raise ValueError(
            f"config.train.sampling_schedule must be 'constant' or 'inverse_sigmoid', got {t.sampling_schedule!r}"
        )
    if t.sampling_schedule == "inverse_sigmoid" and t.sampling_rate < 1:
        raise ValueError(f"config.train.sampling_rate must be >= 1 for inverse_sigmoid, got {t.sampling_rate}")
    if t.sampling_schedule == "constant" and not 0.0 <= t.sampling_rate <= 1.0:
        raise ValueError(f"config.train.sampling_rate must be a probability for 'constant', got {t.sampling_rate}")
    for name in ("num_steps", "log_every", "eval_every", "checkpoint_every", "max_to_keep"):
        if t[name] < 1:
            raise ValueError(f"config.train.{name} must be >= 1, got {t[name]}")
    for name in ("eval_batches", "free_bits", "max_beta", "min_learning_rate"):
        if t[name] < 0:
            raise ValueError(f"config.train.{name} must be >= 0, got {t[name]}")
    for name in ("clip_norm", "skip_grad_norm"):
        if not t[name] > 0:
            raise ValueError(f"config.train.{name} must be > 0, got {t[name]}")
    if not 0.0 <= t.beta_rate < 1.0:
        raise ValueError(f"config.train.beta_rate must be in [0, 1), got {t.beta_rate}")
    if t.learning_rate <= 0 or not 0 < t.decay_rate <= 1:
        raise ValueError("config.train.learning_rate must be > 0 and config.train.decay_rate in (0, 1]")


def lacks_bfloat16_dots(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's text lists no bfloat16 dot instructions (AVX512-BF16, AMX, Arm BF16); False if unsure.

    Without them XLA widens bfloat16 operands to float32 for every product,
    so mixed precision only adds conversions: on a Zen 3 EPYC the 16-bar
    steps ran 1.6-1.7x slower than in float32 (BENCHMARKS.md).
    """
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return not set(value.split()) & {"avx512_bf16", "amx_bf16", "bf16"}
    return False


def warn_if_precision_is_slow_here(config: ConfigDict) -> None:
    """Logs a warning for bfloat16 on a CPU that would run it slower than float32."""
    if config.model.get("compute_dtype", "float32") != "bfloat16" or jax.default_backend() != "cpu":
        return
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return
    if lacks_bfloat16_dots(cpuinfo):
        logging.warning(
            "config.model.compute_dtype=bfloat16 on a CPU without bfloat16 dot instructions: XLA widens every "
            "product's operands to float32, so steps run slower than in float32 "
            "(the 16-bar models 1.6-1.7x slower on an AVX2-only EPYC)"
        )


def loader_workers(requested: int, backend: str, local_devices: int, cpus: int) -> int:
    """Grain worker processes for config.data.num_workers (-1: auto).

    Auto reads in-process on a CPU, whose cores the step uses, and 4 workers
    per local accelerator elsewhere, leaving a core for the training loop:
    one H200's 9-ms step at batch 512 ran at half speed on in-process reading
    from the shards, and at full speed with 4 workers (BENCHMARKS.md).
    """
    if requested >= 0:
        return requested
    if backend == "cpu":
        return 0
    return max(0, min(4 * local_devices, cpus - 1))


def usable_cpus() -> int:
    """The cores this process may run on (a SLURM task's share, say), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_data_matches(config: ConfigDict, metadata: dict) -> None:
    input_pipeline.check_representation(
        metadata, config.data.representation, "config.data.path", "config.data.representation"
    )
    for flag, split in (("train_split", config.data.train_split), ("eval_split", config.data.eval_split)):
        if split not in metadata["splits"]:
            raise ValueError(
                f"config.data.{flag}: the data has no split {split!r} (it has {', '.join(metadata['splits'])}); "
                "name one of those, or reconvert with more files or a larger --eval_fraction"
            )
        if not metadata["splits"][split]["examples"]:
            raise ValueError(
                f"config.data.{flag}: split {split!r} of the data has no examples: none of its "
                f"{metadata['splits'][split]['files']} files gave a {metadata['representation']} window"
            )


@functools.lru_cache(maxsize=16)
def make_optimizer(spec: TrainSpec) -> optax.GradientTransformation:
    """One object per spec: the train state's tree structure holds it, and jitted steps are reused only for equal
    structures (a resumed run in the same process then compiles nothing)."""
    schedule = functools.partial(
        objectives.learning_rate, initial=spec.learning_rate, decay_rate=spec.decay_rate, minimum=spec.min_learning_rate
    )
    return optax.chain(clip_by_global_norm(spec.clip_norm), optax.adam(schedule))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """`optax.clip_by_global_norm` as one scalar factor times each gradient (the same state, so checkpoints agree).

    optax divides every gradient by the norm; XLA counts a division as
    expensive, so it writes the clipped gradients out in a pass of their own
    instead of recomputing them inside Adam's update: mel_2bar_big's update
    took 2.1x as long that way (BENCHMARKS.md). A multiplication it fuses.
    """

    def update(updates, state, params=None):
        del params
        scale = jnp.minimum(1.0, max_norm / optax.tree.norm(updates))
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


def example_batch(spec: ModelSpec, batch_size: int) -> dict[str, np.ndarray]:
    """A zero batch of the right layout, to trace or compile the model with."""
    fields = get_representation(spec.representation).fields
    batch = {
        name: np.zeros((batch_size, *f.shape), np.int32 if len(f.shape) == 1 else np.float32)
        for name, f in fields.items()
    }
    batch["lengths"] = np.full(batch_size, spec.num_steps, np.int32)
    batch["weights"] = np.ones(batch_size, np.float32)
    return batch


def create_state(spec: ModelSpec, train: TrainSpec, rng: jax.Array) -> train_state.TrainState:
    return state_from_params(init_params(MusicVAE(spec), rng)["params"], train)


def state_from_params(params: Any, train: TrainSpec, step: int = 0) -> train_state.TrainState:
    """A train state at `step` holding `params` and a fresh optimizer."""
    # No apply_fn: the steps take the model as an argument, and a bound method (compared by its instance's
    # identity) would give every state a tree structure of its own, which no jitted step could be reused for.
    tx = make_optimizer(train)
    return train_state.TrainState(
        # A strong int32 step, as a restored one is: a fresh run and a resumed one then run one compiled step.
        step=jnp.asarray(step, jnp.int32),
        apply_fn=None,
        params=params,
        tx=tx,
        opt_state=jax.jit(tx.init)(params),  # one program, not one per shape of Adam's zeros
    )


def abstract_state(
    spec: ModelSpec, train: TrainSpec, sharding: jax.sharding.Sharding | None = None
) -> train_state.TrainState:
    """The state's shapes and dtypes, to restore a checkpoint into.

    Running the initialisers instead takes tens of seconds at the reference
    sizes (orthogonal initialisation factorises every recurrent kernel).
    """
    shapes = jax.eval_shape(lambda: create_state(spec, train, jax.random.key(0)))
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def check_checkpoint_fits(spec: ModelSpec, saved_config: dict, where: str) -> None:
    """Fails, naming the config fields that changed, where a checkpoint holds parameters of other shapes.

    Orbax's own error names an array's shapes, not the field behind them.
    Fields that leave the shapes alone (compute_dtype, unroll, ...) may
    change on resume, except a GrooVAE's task (groove_input): hits and an
    infill's performance have the same shapes, and a run half humanize,
    half infill is neither.
    """
    saved = model_spec(ConfigDict(saved_config))

    def shapes(s: ModelSpec) -> Any:
        return jax.tree.map(lambda x: x.shape, jax.eval_shape(lambda: init_params(MusicVAE(s), jax.random.key(0))))

    if saved.groove_input == spec.groove_input and shapes(saved) == shapes(spec):
        return
    changed = [
        f"config.{'data' if f.name == 'representation' else 'model'}.{f.name} is {getattr(spec, f.name)} here, "
        f"{getattr(saved, f.name)} there"
        for f in dataclasses.fields(ModelSpec)
        if f.name not in ("num_steps", "num_bars") and getattr(spec, f.name) != getattr(saved, f.name)
    ]
    raise ValueError(
        f"{where} holds another model ({'; '.join(changed)}): resume with its config, or start a new --workdir"
    )


def _elbo(outputs: dict, batch: dict, step: jax.Array, *, model: MusicVAE, spec: TrainSpec) -> tuple[jax.Array, dict]:
    """The loss and its metrics under the run's KL settings, for the train and eval steps alike."""
    return objectives.elbo(
        model.spec.parts,
        outputs,
        batch,
        step=step,
        free_bits=spec.free_bits,
        max_beta=spec.max_beta,
        beta_rate=spec.beta_rate,
    )


def loss_and_grads(
    params: Any, batch: dict, rng: jax.Array, step: jax.Array, *, model: MusicVAE, spec: TrainSpec
) -> tuple[dict, Any]:
    """The training loss's metrics and its gradient with respect to `params` at optimiser step `step`."""
    sampling_prob = objectives.sampling_probability(step, spec.sampling_schedule, spec.sampling_rate)

    def loss_fn(params):
        outputs = model.apply(
            {"params": params},
            batch,
            jax.random.fold_in(rng, step),
            train=True,
            scheduled_sampling=spec.scheduled_sampling,
            sampling_prob=sampling_prob,
        )
        return _elbo(outputs, batch, step, model=model, spec=spec)

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    metrics["sampling_prob"] = sampling_prob if spec.scheduled_sampling else jnp.zeros(())
    return metrics, grads


def train_step(
    state: train_state.TrainState, batch: dict, rng: jax.Array, *, model: MusicVAE, spec: TrainSpec
) -> tuple[train_state.TrainState, dict]:
    """One optimiser step; skips the update when the gradient norm is over the limit (or not finite)."""
    metrics, grads = loss_and_grads(state.params, batch, rng, state.step, model=model, spec=spec)
    grad_norm = optax.tree.norm(grads)
    ok = grad_norm <= spec.skip_grad_norm  # False for NaN too
    # A branch, not a select of the new state against the old: with both read
    # by the select, XLA keeps a copy of Adam's state through the whole step
    # (0.4 GiB more for trio_16bar_hier at batch 8) and the step is slower
    # (BENCHMARKS.md).
    new_state = jax.lax.cond(
        ok,
        lambda state, grads: state.apply_gradients(grads=grads),
        lambda state, grads: state.replace(step=state.step + 1),
        state,
        grads,
    )
    metrics.update(
        grad_norm=grad_norm,
        skipped=1.0 - ok.astype(jnp.float32),
        learning_rate=objectives.learning_rate(state.step, spec.learning_rate, spec.decay_rate, spec.min_learning_rate),
    )
    return new_state, metrics


def eval_step(params: Any, batch: dict, rng: jax.Array, step: jax.Array, *, model: MusicVAE, spec: TrainSpec) -> dict:
    """Teacher-forced metrics of one batch, plus its total weight for averaging."""
    outputs = model.apply({"params": params}, batch, rng, train=False)
    _, metrics = _elbo(outputs, batch, step, model=model, spec=spec)
    metrics["weight"] = jnp.sum(batch["weights"])
    return metrics


class _Preemption:
    """Notices a SIGTERM, or Ctrl-C (SIGINT), so the loop can checkpoint before it exits.

    One process: our own handlers; a second Ctrl-C goes to the handler
    before ours (Python's KeyboardInterrupt) and stops the run at once.
    Several: JAX's distributed runtime catches SIGTERM and
    `reached_preemption_sync_point` turns it into the same step on every
    process, so all of them save that step's checkpoint together.
    """

    def __init__(self):
        self.signal_name = ""
        self._previous = {}
        self._multi_process = jax.process_count() > 1
        if not self._multi_process and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                if signal.getsignal(signum) is not signal.SIG_IGN:  # a background job ignores Ctrl-C: so do we
                    self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name
        if signum == signal.SIGINT:
            signal.signal(signum, self._previous.pop(signum))
            logging.warning("Ctrl-C: saving a checkpoint after this step, then stopping (again: stop now)")
        else:
            logging.warning("%s: saving a checkpoint, then stopping", self.signal_name)

    def reached(self, step: int) -> bool:
        if self._multi_process:
            if multihost_utils.reached_preemption_sync_point(step):
                self.signal_name = "SIGTERM"
        return bool(self.signal_name)

    def restore(self):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without PyTorch.

    tensorboardX imports torch wherever it is installed (for torch tensors we never log): 1.8 s of every
    run's start-up (BENCHMARKS.md). Hidden while tensorboardX loads, unless something imported it already.
    """
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # `import torch` raises ImportError; tensorboardX falls back to numpy
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hide:
            del sys.modules["torch"]
    return SummaryWriter


class MetricWriter:
    """TensorBoard event files (tensorboardX) and console lines, on process 0 only."""

    def __init__(self, workdir: epath.Path, enabled: bool):
        self.enabled = enabled
        self._writer = None
        if enabled:
            self._writer = _summary_writer_class()(str(workdir / "tensorboard"))

    def scalars(self, step: int, prefix: str, metrics: dict[str, float]) -> None:
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(f"{prefix}/{name}", value, step)
            self._writer.flush()

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, flush=True)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _accuracy_text(metrics: dict[str, float]) -> str:
    return " ".join(f"acc/{k.split('/', 1)[1]} {v:.3f}" for k, v in metrics.items() if k.startswith("accuracy/"))


def evaluate(p_eval, state, config: ConfigDict, data_dir: Path, mesh, rng: jax.Array) -> dict[str, float]:
    """Weighted means of the eval metrics over `eval_batches` batches (0: the whole split).

    A partial pass reads the same fixed sample of the split at every
    evaluation, drawn from all of it, so its curve follows the whole split's.
    """
    iterator = input_pipeline.make_iterator(
        data_dir,
        config.data.eval_split,
        global_batch_size=config.batch_size,
        train=False,
        shuffled=bool(config.train.eval_batches),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    totals: dict[str, float] = {}
    weight = 0.0
    for i, batch in enumerate(iterator):
        if config.train.eval_batches and i >= config.train.eval_batches:
            break
        metrics = jax.device_get(p_eval(state.params, parallel.global_batch(batch, mesh), rng, state.step))
        w = float(metrics.pop("weight"))
        weight += w
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + float(v) * w
    return {k: v / max(weight, 1.0) for k, v in totals.items()}


@functools.lru_cache(maxsize=4)
def jitted_steps(spec: ModelSpec, tspec: TrainSpec, mesh: jax.sharding.Mesh) -> tuple[Any, Any]:
    """The train and eval steps jitted for `mesh`, one pair per model: a second run in the same process (a resume,
    a notebook's rerun) finds its programs compiled."""
    model = MusicVAE(spec)
    batch_sharding, replicated = parallel.batch_sharding(mesh), parallel.replicated(mesh)
    p_train = jax.jit(
        functools.partial(train_step, model=model, spec=tspec),
        in_shardings=(replicated, batch_sharding, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )
    p_eval = jax.jit(
        functools.partial(eval_step, model=model, spec=tspec),
        in_shardings=(replicated, batch_sharding, replicated, replicated),
        out_shardings=replicated,
    )
    return p_train, p_eval


def train_and_evaluate(config: ConfigDict, workdir: str | Path, data_dir: str | Path) -> dict[str, float]:
    """Trains (or resumes) to config.train.num_steps; returns the last train metrics.

    `workdir` may be a bucket path (gs://...); `data_dir` is a local folder.
    """
    workdir, data_dir = epath.Path(workdir), Path(data_dir)
    validate_config(config)
    warn_if_precision_is_slow_here(config)
    check_data_matches(config, input_pipeline.load_metadata(data_dir))
    if config.compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(config.compilation_cache_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.batch_size, mesh)
    spec = model_spec(config)
    tspec = TrainSpec.from_config(config)
    rng = jax.random.key(config.seed)
    init_rng, train_rng, eval_rng = jax.random.split(rng, 3)

    replicated = parallel.replicated(mesh)
    p_train, p_eval = jitted_steps(spec, tspec, mesh)
    workers = loader_workers(config.data.num_workers, jax.default_backend(), jax.local_device_count(), usable_cpus())
    train_iter = input_pipeline.make_iterator(
        data_dir,
        config.data.train_split,
        global_batch_size=config.batch_size,
        train=True,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_workers=workers,
        transpose_range=tuple(config.data.transpose_range),
        cache_mb=config.data.cache_mb,
    )
    manager = checkpoints.make_manager(workdir, config.train.max_to_keep)
    start = manager.latest_step()
    if start is None:
        state = parallel.replicate(create_state(spec, tspec, init_rng), mesh)
    else:
        check_checkpoint_fits(
            spec, checkpoints.restore_config(manager, start), f"checkpoint {start} in {manager.directory}"
        )
        state, _ = checkpoints.restore(manager, start, abstract_state(spec, tspec, replicated), train_iter)
        if checkpoints.holds_data(manager, start):
            logging.info("Resumed from the checkpoint at step %d", start)
        else:
            logging.info("Starting from the imported weights at step %d, the data from its beginning", start)
    start = int(start or 0)

    writer = MetricWriter(workdir, distributed.is_leader())
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    writer.line(
        f"model: {spec.representation}, {'hierarchical' if spec.hierarchical else 'flat'}, "
        f"{n_params:,} parameters, {mesh.devices.size} device(s), {workers} loader worker(s); "
        f"steps {start} -> {config.train.num_steps}"
    )
    if start >= config.train.num_steps:
        writer.line(
            f"nothing to train: the checkpoint at step {start} has reached config.train.num_steps="
            f"{config.train.num_steps}; raise it to train on"
        )
    preemption = _Preemption()
    last_metrics: dict[str, float] = {}
    window_start, window_steps = time.perf_counter(), 0
    step = start
    # XLA's CPU all-reduce can deadlock when multi-device steps are queued without waiting (SPEC section 8).
    wait_every_step = jax.default_backend() == "cpu" and mesh.devices.size > 1
    try:
        if step < config.train.num_steps:
            try:
                batch = parallel.global_batch(next(train_iter), mesh)
            except RuntimeError:  # Grain's: a loader worker died
                if not preemption.signal_name:
                    raise
                # Ctrl-C in the instant a worker started, before it could set the signal aside (main.py).
                writer.line(f"stopped by {preemption.signal_name} at step {step}, before its first batch")
                return last_metrics
            # Compiled here, so a batch too big for the devices' memory stops the run now.
            p_train = p_train.lower(state, batch, train_rng).compile()
            parallel.check_step_fits(
                p_train.memory_analysis(),
                parallel.device_bytes_limit(),
                config.batch_size,
                mesh,
                jax.devices()[0].platform,
            )
        while step < config.train.num_steps:
            state, metrics = p_train(state, batch, train_rng)
            step += 1
            window_steps += 1
            logging_now = step % config.train.log_every == 0 or step == config.train.num_steps
            evaluating_now = step % config.train.eval_every == 0 or step == config.train.num_steps
            preempted = preemption.reached(step)
            saving_now = step % config.train.checkpoint_every == 0 or step == config.train.num_steps or preempted
            if step < config.train.num_steps and not saving_now:
                batch = parallel.global_batch(next(train_iter), mesh)  # while the step runs, if dispatch is async
            if not (wait_every_step or logging_now or evaluating_now or saving_now):
                continue  # metrics stay on the device; a NaN step is skipped by train_step itself
            last_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not math.isfinite(last_metrics["loss"]):
                raise FloatingPointError(
                    f"loss is {last_metrics['loss']} at step {step}; stopping. The last good checkpoint "
                    f"(step {manager.latest_step()}) is kept in {workdir / 'checkpoints'}"
                )
            if logging_now:
                seconds = time.perf_counter() - window_start
                steps_per_second = window_steps / max(seconds, 1e-9)
                last_metrics["steps_per_second"] = steps_per_second
                last_metrics["examples_per_second"] = steps_per_second * config.batch_size
                writer.scalars(step, "train", last_metrics)
                eta = (config.train.num_steps - step) / max(steps_per_second, 1e-9)
                writer.line(
                    f"step {step}/{config.train.num_steps} loss {last_metrics['loss']:.3f} "
                    f"r_loss {last_metrics['r_loss']:.3f} kl_bits {last_metrics['kl_bits']:.1f} "
                    f"{_accuracy_text(last_metrics)} {steps_per_second:.2f} steps/s ETA {eta / 60:.1f} min"
                )
                window_start, window_steps = time.perf_counter(), 0
            if evaluating_now:
                eval_metrics = evaluate(p_eval, state, config, data_dir, mesh, eval_rng)
                writer.scalars(step, "eval", eval_metrics)
                writer.line(
                    f"eval at step {step}: loss {eval_metrics['loss']:.3f} "
                    f"r_loss {eval_metrics['r_loss']:.3f} {_accuracy_text(eval_metrics)}"
                )
            if saving_now:
                checkpoints.save(manager, step, state, train_iter, config)  # the data position after `step` batches
                if step < config.train.num_steps and not preempted:
                    batch = parallel.global_batch(next(train_iter), mesh)
            if preempted:
                writer.line(f"stopped by {preemption.signal_name} at step {step}; checkpoint saved")
                break
    finally:
        manager.wait_until_finished()
        manager.close()
        writer.close()
        train_iter.close()
        preemption.restore()
    return last_metrics
