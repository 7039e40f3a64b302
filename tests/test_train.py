"""Training: every family overfits real examples, steps skip, runs resume exactly, stop cleanly."""

import functools
import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter
from etils import epath
from helpers import GROOVE_DIR, REPO, note, steps, write_track_midi

from configs import drums_2bar, groovae, mel_2bar, mel_16bar, trio
from musicvae_jax import checkpoints, input_pipeline, parallel, records, train
from musicvae_jax.convert import convert
from musicvae_jax.demo_corpus import write_demo_corpus
from musicvae_jax.models.vae import MusicVAE


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    write_demo_corpus(root / "demo", num_songs=6)
    groove = GROOVE_DIR / "drummer1" / "session1" if GROOVE_DIR.is_dir() else root / "demo"
    return {"demo": root / "demo", "groove": groove, "root": root}


def converted(corpora, representation, source):
    out = corpora["root"] / f"{representation}-{source}"
    if not (out / "metadata.json").exists():
        convert([str(corpora[source])], out, representation, workers=1)
    return out


# Groove MIDI for the drum families when it is there (the demo corpus otherwise), the demo corpus for the rest.
FAMILIES = [
    ("mel_2bar", mel_2bar, "tiny", "demo"),
    ("drums_2bar", drums_2bar, "tiny", "groove"),
    ("mel_16bar", mel_16bar, "tiny", "demo"),
    ("trio", trio, "tiny", "demo"),
    ("trio_flat", trio, "tiny,flat", "demo"),
    ("groovae", groovae, "tiny", "groove"),
]


@pytest.mark.parametrize("name, module, variant, source", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_tiny_model_overfits_a_handful_of_real_examples(corpora, name, module, variant, source):
    config = module.get_config(variant)
    config.train.learning_rate = 1e-2
    data_dir = converted(corpora, config.data.representation, source)
    batch = next(input_pipeline.make_iterator(data_dir, "train", global_batch_size=4, train=True, seed=0))
    spec, tspec = train.model_spec(config), train.TrainSpec.from_config(config)
    state = train.create_state(spec, tspec, jax.random.key(0))
    step = jax.jit(functools.partial(train.train_step, model=MusicVAE(spec), spec=tspec))
    evaluate = jax.jit(functools.partial(train.eval_step, model=MusicVAE(spec), spec=tspec))
    accuracy = 0.0
    for i in range(1, 801):
        state, _ = step(state, batch, jax.random.key(1))
        if i % 25 == 0:
            metrics = jax.device_get(evaluate(state.params, batch, jax.random.key(2), state.step))
            accuracy = min(float(v) for k, v in metrics.items() if k.startswith("accuracy/"))
            if accuracy >= 0.95:
                break
    assert accuracy >= 0.95, f"{name}: teacher-forced accuracy {accuracy:.3f} after {i} steps"


@pytest.mark.parametrize(
    "module, variant, field, value, message",
    [
        (trio, "tiny", "data.representation", "bongos", "config.data.representation: unknown representation 'bongos'"),
        (trio, "tiny", "batch_size", 0, "config.batch_size must be >= 1"),
        (drums_2bar, "tiny", "data.cache_mb", -1, "config.data.cache_mb must be a number >= 0"),
        (drums_2bar, "tiny", "data.num_workers", -2, "config.data.num_workers must be >= 0, or -1 for auto"),
        (trio, "tiny", "data.transpose_range", (3, -3), "config.data.transpose_range must be (low, high)"),
        (groovae, "tiny", "data.transpose_range", (-2, 2), "groove_2bar has no melodic part to transpose"),
        (trio, "tiny", "model.decoder_sizes", (), "config.model.decoder_sizes must be a non-empty tuple"),
        (trio, "tiny", "model.hoist_input_projection", True, "applies with config.model.sequence_vjp=False only"),
        (trio, "tiny", "train.sampling_schedule", "inverse_sigmoid", "supported by flat decoders only"),
        (mel_2bar, "tiny", "train.sampling_schedule", "linear", "config.train.sampling_schedule must be"),
        (mel_2bar, "tiny", "model.compute_dtype", "float16", "config.model.compute_dtype must be"),
        (mel_2bar, "tiny", "model.dropout_keep", 0.0, "config.model.dropout_keep must be in (0, 1]"),
        (mel_2bar, "tiny", "model.groove_input", "hits", "config.model.groove_input applies to groove representations"),
        (drums_2bar, "tiny", "model.groove_values_on_hits", True, "groove_values_on_hits applies to groove"),
        (mel_2bar, "tiny", "train.checkpoint_every", 0, "config.train.checkpoint_every must be >= 1"),
        (mel_2bar, "tiny", "train.eval_batches", -1, "config.train.eval_batches must be >= 0, got -1"),
        (mel_2bar, "tiny", "train.free_bits", -1.0, "config.train.free_bits must be >= 0, got -1.0"),
        (drums_2bar, "tiny", "train.clip_norm", 0.0, "config.train.clip_norm must be > 0, got 0.0"),
        (drums_2bar, "tiny", "train.skip_grad_norm", -1.0, "config.train.skip_grad_norm must be > 0, got -1.0"),
        (mel_2bar, "tiny", "model.unroll", 0, "config.model.unroll must be >= 1, got 0"),
        (mel_2bar, "tiny", "seed", -1, "config.seed must be >= 0, got -1"),
        (mel_2bar, "tiny", "data.demo_songs", 1, "config.data.demo_songs must be >= 2"),
    ],
)
def test_bad_config_values_are_named_before_anything_runs(module, variant, field, value, message):
    config = module.get_config(variant)
    config.update_from_flattened_dict({field: value})
    with pytest.raises(ValueError, match=re.escape(message)):
        train.validate_config(config)


def test_a_split_missing_or_left_empty_by_the_converter_is_named_at_start_up(corpora, tmp_path):
    drums_only = tmp_path / "drums_only"
    drums_only.mkdir()
    for i in range(3):  # a kick on every step, on the drum channel: no melody anywhere
        write_track_midi(
            drums_only / f"beat_{i}.mid", [[e for s in range(32) for e in note(steps(s), steps(s + 1), 36, 9)]]
        )
    melodies = tmp_path / "melodies"
    metadata = convert([str(drums_only)], melodies, "melody_2bar", workers=1)
    config = mel_2bar.get_config("tiny")
    message = (
        "config.data.train_split: split 'train' of the data has no examples: none of its 2 files gave a melody_2bar"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        train.check_data_matches(config, metadata)
    with pytest.raises(ValueError, match="split 'train' has no examples"):
        input_pipeline.shard_paths(melodies, "train")
    config.data.eval_split = "test"
    message = "config.data.eval_split: the data has no split 'test' (it has train, eval); name one of those"
    with pytest.raises(ValueError, match=re.escape(message)):
        train.check_data_matches(config, input_pipeline.load_metadata(converted(corpora, "melody_2bar", "demo")))


def test_step_over_the_gradient_norm_limit_is_skipped(corpora):
    config = mel_2bar.get_config("tiny")
    config.train.skip_grad_norm = 1e-9
    data_dir = converted(corpora, "melody_2bar", "demo")
    batch = next(input_pipeline.make_iterator(data_dir, "train", global_batch_size=4, train=True))
    spec, tspec = train.model_spec(config), train.TrainSpec.from_config(config)
    state = train.create_state(spec, tspec, jax.random.key(0))
    step = jax.jit(functools.partial(train.train_step, model=MusicVAE(spec), spec=tspec))
    new_state, metrics = step(state, batch, jax.random.key(1))
    assert float(metrics["skipped"]) == 1.0 and int(new_state.step) == 1
    jax.tree.map(np.testing.assert_array_equal, new_state.params, state.params)
    jax.tree.map(np.testing.assert_array_equal, new_state.opt_state, state.opt_state)
    config.train.skip_grad_norm = 1e9
    tspec = train.TrainSpec.from_config(config)
    step = jax.jit(functools.partial(train.train_step, model=MusicVAE(spec), spec=tspec))
    new_state, metrics = step(state, batch, jax.random.key(1))
    assert float(metrics["skipped"]) == 0.0 and int(new_state.step) == 1
    assert not np.array_equal(new_state.params["encoder"]["mu"]["kernel"], state.params["encoder"]["mu"]["kernel"])


def test_the_skippable_step_needs_no_more_memory_than_an_unconditional_one():
    """Choosing between the old and the new state must not keep a copy of the optimiser state."""
    config = mel_2bar.get_config()  # mel_2bar_small: a select kept 9 of its 35 MB of Adam's state
    spec, tspec = train.model_spec(config), train.TrainSpec.from_config(config)
    state = train.abstract_state(spec, tspec)  # compiled, never run: shapes are enough
    batch = train.example_batch(spec, 8)
    model = MusicVAE(spec)

    def unconditional(state, batch, rng):
        _, grads = train.loss_and_grads(state.params, batch, rng, state.step, model=model, spec=tspec)
        return state.apply_gradients(grads=grads)

    def memory(fn):
        return jax.jit(fn, donate_argnums=(0,)).lower(state, batch, jax.random.key(1)).compile().memory_analysis()

    ours = memory(functools.partial(train.train_step, model=model, spec=tspec))
    floor = memory(unconditional)
    adam_state = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state.opt_state))
    assert ours.temp_size_in_bytes < floor.temp_size_in_bytes + adam_state // 20, (ours, floor, adam_state)


def tiny_run_config(**train_overrides):
    config = mel_2bar.get_config("tiny")
    config.batch_size = 8
    config.train.update(dict(num_steps=12, log_every=4, eval_every=100, eval_batches=1, checkpoint_every=4))
    config.train.update(train_overrides)
    return config


def final_params(workdir, step, config):
    spec, tspec = train.model_spec(config), train.TrainSpec.from_config(config)
    manager = checkpoints.make_manager(workdir, 3, async_save=False)
    state, _ = checkpoints.restore(manager, step, train.abstract_state(spec, tspec))
    manager.close()
    data_state = json.loads((Path(workdir) / "checkpoints" / str(step) / "data" / "process_0-of-1.json").read_text())
    return state.params, data_state


@pytest.mark.parametrize("size", [0.01, 100.0])
def test_gradient_clipping_equals_optax_and_keeps_its_state(size):
    rng = np.random.default_rng(0)
    grads = {"a": rng.normal(size=(3, 4)).astype(np.float32) * size, "b": rng.normal(size=5).astype(np.float32) * size}
    ours, theirs = train.clip_by_global_norm(1.5), optax.clip_by_global_norm(1.5)
    assert jax.tree.structure(ours.init(grads)) == jax.tree.structure(theirs.init(grads))
    got, want = ours.update(grads, ours.init(grads))[0], theirs.update(grads, theirs.init(grads))[0]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
    assert float(optax.tree.norm(got)) == pytest.approx(min(1.5, float(optax.tree.norm(grads))), rel=1e-6)


def test_interrupted_and_resumed_run_equals_uninterrupted(corpora, tmp_path, caplog):
    """The interrupted part reads with two worker processes, the resumed one in-process: the same batches."""
    data_dir = converted(corpora, "melody_2bar", "demo")
    straight = train.train_and_evaluate(tiny_run_config(), tmp_path / "straight", data_dir)
    with_workers = tiny_run_config(num_steps=5)
    with_workers.data.num_workers = 2
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        train.train_and_evaluate(with_workers, tmp_path / "resumed", data_dir)
        resumed = train.train_and_evaluate(tiny_run_config(), tmp_path / "resumed", data_dir)
    # A fresh state and a restored one are the same types, so both runs reuse the first run's compiled steps.
    compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling jit(")]
    assert not [m for m in compiled if "train_step" in m or "eval_step" in m], compiled
    assert resumed["loss"] == pytest.approx(straight["loss"], rel=1e-5)
    a, data_a = final_params(tmp_path / "straight", 12, tiny_run_config())
    b, data_b = final_params(tmp_path / "resumed", 12, tiny_run_config())
    assert data_a == data_b == {"batches_delivered": 12}
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), a, b)

    # Another model in the same workdir is named before anything is restored; a field that leaves the shapes
    # alone may change.
    other = tiny_run_config(num_steps=16)
    other.model.z_size = 2 * other.model.z_size
    message = f"holds another model (config.model.z_size is {other.model.z_size} here, {other.model.z_size // 2} there)"
    with pytest.raises(ValueError, match=re.escape(message)):
        train.train_and_evaluate(other, tmp_path / "resumed", data_dir)
    manager = checkpoints.make_manager(tmp_path / "resumed", 3, async_save=False)
    saved = checkpoints.restore_config(manager)
    manager.close()
    other = tiny_run_config()
    other.model.unroll, other.model.compute_dtype = 4, "bfloat16"
    train.check_checkpoint_fits(train.model_spec(other), saved, "checkpoint 12")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_or_ctrl_c_saves_a_checkpoint_and_the_run_resumes(corpora, tmp_path, capsys, signum):
    """A preemption notice (or Ctrl-C) mid-run, delivered to this process: the run's own handler has the loop save
    the step it reached and return; the same run asked for more steps resumes there. (Real processes, their exit
    codes and several of them agreeing on a step: tests/test_distributed.py.)"""
    data_dir = converted(corpora, "melody_2bar", "demo")
    running = tmp_path / "checkpoints" / "4"  # once saved, the run's handler is in place and steps go on

    def notice():
        deadline = time.time() + 240
        while not running.is_dir() and time.time() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signum)

    def outside_the_run(signum, frame):
        raise AssertionError(f"{signal.Signals(signum).name} arrived outside the training run")

    previous = signal.signal(signum, outside_the_run)
    sender = threading.Thread(target=notice, daemon=True)
    sender.start()
    try:
        train.train_and_evaluate(tiny_run_config(num_steps=100_000), tmp_path, data_dir)
    finally:
        sender.join()
        assert signal.getsignal(signum) is outside_the_run  # the run put the handler before its own back
        signal.signal(signum, previous)
    output = capsys.readouterr().out
    name = signal.Signals(signum).name
    stopped = re.search(rf"^stopped by {name} at step (\d+); checkpoint saved$", output, re.MULTILINE)
    assert stopped, output
    step = int(stopped[1])
    assert step >= 4 and (tmp_path / "checkpoints" / str(step)).is_dir()
    train.train_and_evaluate(tiny_run_config(num_steps=step + 2), tmp_path, data_dir)
    assert f"steps {step} -> {step + 2}" in capsys.readouterr().out


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) per tag from the TFRecord event files in `folder`, read with TensorBoard's protos."""
    from tensorboardX.proto.event_pb2 import Event

    found: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):  # a record: length (8 bytes), its CRC (4), the data, its CRC (4)
            length = int.from_bytes(data[at : at + 8], "little")
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 16 + length
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_metrics_are_written_for_tensorboard_without_importing_torch(tmp_path):
    writer = train.MetricWriter(epath.Path(tmp_path), enabled=True)
    writer.scalars(4, "train", {"loss": 2.5, "accuracy/tokens": 0.25})
    writer.scalars(8, "train", {"loss": 1.5, "accuracy/tokens": 0.5})
    writer.close()
    scalars = tensorboard_scalars(tmp_path / "tensorboard")
    assert scalars == {"train/loss": [(4, 2.5), (8, 1.5)], "train/accuracy/tokens": [(4, 0.25), (8, 0.5)]}
    if importlib.util.find_spec("torch") is None:
        return  # nothing to hide here; where PyTorch is installed, tensorboardX would import it (1.8 s)
    workdir = str(tmp_path / "again")
    script = "import sys; from etils import epath; from musicvae_jax import train; "
    script += f"train.MetricWriter(epath.Path({workdir!r}), True).close(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False"], result.stderr


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(corpora, tmp_path):
    good = converted(corpora, "groove_2bar", "demo")
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in good.iterdir():
        if f.suffix == ".array_record":
            reader = ArrayRecordReader(str(f))
            examples = [records.deserialize(r) for r in reader.read_all()]
            reader.close()
            writer = ArrayRecordWriter(str(bad / f.name), "group_size:1")
            for example in examples:
                example["velocities"] = np.full_like(example["velocities"], np.nan)
                writer.write(records.serialize(example))
            writer.close()
        elif f.is_file():
            (bad / f.name).write_bytes(f.read_bytes())
    config = groovae.get_config("tiny")
    config.batch_size = 8
    config.train.update(dict(num_steps=2, checkpoint_every=1, eval_every=100, eval_batches=1, log_every=1))
    train.train_and_evaluate(config, tmp_path / "run", good)
    config.train.num_steps = 4
    with pytest.raises(FloatingPointError, match="loss is nan at step 3.*last good checkpoint \\(step 2\\)"):
        train.train_and_evaluate(config, tmp_path / "run", bad)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]


DATA_PARALLEL_SCRIPT = textwrap.dedent("""
    import functools, sys
    import jax, numpy as np
    from configs import mel_2bar
    from musicvae_jax import input_pipeline, parallel, train
    from musicvae_jax.models.vae import MusicVAE

    assert len(jax.devices()) == 2, jax.devices()
    config = mel_2bar.get_config("tiny")
    spec, tspec = train.model_spec(config), train.TrainSpec.from_config(config)
    batches = [next(input_pipeline.make_iterator(sys.argv[1], "train", global_batch_size=8, train=True, seed=s))
               for s in range(3)]
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = parallel.make_mesh(devices)
        state = parallel.replicate(train.create_state(spec, tspec, jax.random.key(0)), mesh)
        rep, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        step = jax.jit(functools.partial(train.train_step, model=MusicVAE(spec), spec=tspec),
                       in_shardings=(rep, data, rep), out_shardings=(rep, rep))
        losses = []
        for batch in batches:
            batch = parallel.global_batch(batch, mesh)
            assert len(batch["tokens"].sharding.device_set) == len(devices)
            state, metrics = step(state, batch, jax.random.key(1))
            losses.append(float(metrics["loss"]))
        results.append((losses, jax.device_get(state.params)))
    (l1, p1), (l2, p2) = results
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), p1, p2)
    print("losses", l1, l2)
""")


def test_one_and_two_devices_give_the_same_losses_and_parameters(corpora, tmp_path):
    data_dir = converted(corpora, "melody_2bar", "demo")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", DATA_PARALLEL_SCRIPT, str(data_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "losses" in result.stdout


def test_a_step_too_big_for_the_device_memory_stops_at_start_up_naming_the_batch():
    """XLA's count of the compiled step's buffers against a device's limit (set here: this CPU has too much)."""
    config = mel_2bar.get_config("tiny")
    config.batch_size = 8
    spec, tspec = train.model_spec(config), train.TrainSpec.from_config(config)
    state = train.create_state(spec, tspec, jax.random.key(0))
    batch = {k: jax.numpy.asarray(v) for k, v in train.example_batch(spec, config.batch_size).items()}
    step = jax.jit(functools.partial(train.train_step, model=MusicVAE(spec), spec=tspec), donate_argnums=(0,))
    memory = step.lower(state, batch, jax.random.key(1)).compile().memory_analysis()
    need = parallel.step_bytes(memory)
    assert memory.temp_size_in_bytes > 0 and memory.alias_size_in_bytes > 0  # the state is donated
    mesh = parallel.make_mesh(jax.devices()[:1])
    parallel.check_step_fits(memory, None, 8, mesh, "tpu")  # no limit known: no check
    parallel.check_step_fits(memory, need, 8, mesh, "tpu")
    too_big = r"config.batch_size 8 \(8 per device\).* GiB of memory on each device, which has"
    with pytest.raises(ValueError, match=too_big) as error:
        parallel.check_step_fits(memory, need - 1, 8, mesh, "tpu")
    assert "MEM_FRACTION" not in str(error.value)
    # JAX's GPU allocator takes a fraction of the card unless told otherwise: the message says how to raise it.
    with pytest.raises(ValueError, match=r"lower config.batch_size .*GPU \(XLA_PYTHON_CLIENT_MEM_FRACTION"):
        parallel.check_step_fits(memory, need - 1, 8, mesh, "gpu")
    # A CPU's state is in host memory already: what is free must hold the rest.
    beyond_state = need - memory.argument_size_in_bytes
    parallel.check_step_fits(memory, beyond_state, 8, mesh, "cpu")
    with pytest.raises(ValueError, match=r"of host memory beyond the state for each device, and .* GiB is free"):
        parallel.check_step_fits(memory, beyond_state - 1, 8, mesh, "cpu")
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():  # Linux: each CPU device's share of the host's available memory
        available = next(int(x.split()[1]) for x in meminfo.read_text().splitlines() if x.startswith("MemAvailable"))
        assert parallel.device_bytes_limit() == pytest.approx(available * 1024 / jax.local_device_count(), rel=0.2)


def test_auto_loader_workers_read_in_process_on_a_cpu_and_in_workers_beside_accelerators():
    assert train.loader_workers(-1, "cpu", local_devices=8, cpus=64) == 0
    assert train.loader_workers(-1, "gpu", local_devices=1, cpus=16) == 4
    assert train.loader_workers(-1, "gpu", local_devices=8, cpus=16) == 15  # a core left for the loop
    assert train.loader_workers(-1, "tpu", local_devices=4, cpus=240) == 16
    assert train.loader_workers(-1, "gpu", local_devices=1, cpus=1) == 0
    assert train.loader_workers(3, "gpu", local_devices=1, cpus=16) == 3  # a number given is kept
    assert mel_2bar.get_config().data.num_workers == -1
    assert 1 <= train.usable_cpus() <= os.cpu_count()


def test_bfloat16_is_flagged_as_slow_only_on_cpus_without_bfloat16_dots():
    zen3 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
    sapphire_rapids = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16\n"
    graviton3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
    assert train.lacks_bfloat16_dots(zen3)
    assert not train.lacks_bfloat16_dots(sapphire_rapids)
    assert not train.lacks_bfloat16_dots(graviton3)
    assert not train.lacks_bfloat16_dots("processor\t: 0\n")  # nothing listed: no advice
