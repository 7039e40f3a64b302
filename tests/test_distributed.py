"""Multi-process training: two real processes on a loopback coordinator against one process.

The end-to-end test runs `python -m musicvae_jax.main` three times: once as
one process with 4 virtual CPU devices, and twice as two processes with 2
devices each (the second run resumes from the first run's checkpoint, so
both processes restore). Same global batch, so the same losses and params.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import REPO

from configs import mel_2bar
from musicvae_jax import checkpoints, train
from musicvae_jax.convert import convert
from musicvae_jax.demo_corpus import write_demo_corpus
from musicvae_jax.distributed import initialize_arguments

STEP_LINE = re.compile(r"^step (\d+)/\d+ loss ([0-9.]+) r_loss ([0-9.]+)")
EVAL_LINE = re.compile(r"^eval at step (\d+): loss ([0-9.]+)")


@pytest.mark.parametrize(
    "mode, flags, environ, expected",
    [
        ("auto", (None, None, None), {}, None),
        ("off", ("10.0.0.1:1234", 2, 0), {}, None),
        ("auto", ("10.0.0.1:1234", 2, 1), {}, dict(coordinator_address="10.0.0.1:1234", num_processes=2, process_id=1)),
        (
            "auto",
            (None, None, None),
            {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"},
            dict(coordinator_address="h:1", num_processes=4, process_id=3),
        ),
        ("auto", (None, None, None), {"SLURM_NTASKS": "8"}, {}),  # JAX reads SLURM's variables itself
        ("auto", (None, None, None), {"SLURM_NTASKS": "1"}, None),
        ("on", (None, None, None), {}, {}),  # a TPU VM: JAX detects the slice
    ],
)
def test_when_and_how_jax_distributed_is_initialized(mode, flags, environ, expected):
    assert initialize_arguments(mode, *flags, environ=environ) == expected


@pytest.mark.parametrize(
    "flags, environ, message",
    [
        (("h:1", None, 0), {}, "needs --num_processes"),
        (("h:1", 2, None), {}, "needs --process_id"),
        ((None, 2, 0), {}, "needs --coordinator_address"),
        (("h:1", 2, 2), {}, r"--process_id=2: must be in 0\.\.1"),
        ((None, None, None), {"JAX_NUM_PROCESSES": "two"}, r"\$JAX_NUM_PROCESSES='two' is not an integer"),
    ],
)
def test_inconsistent_process_settings_are_named(flags, environ, message):
    with pytest.raises(ValueError, match=message):
        initialize_arguments("auto", *flags, environ=environ)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    write_demo_corpus(root / "midi", num_songs=6)
    convert([str(root / "midi")], root / "shards", "melody_2bar", workers=1)
    return root / "shards"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = f"{REPO / 'configs' / 'mel_2bar.py'}:tiny"


def run_flags(num_steps: int, cache=None) -> list[str]:
    """The runs' flags; runs given one compilation cache compile each program once between them."""
    return [f"--config.compilation_cache_dir={cache}"] * (cache is not None) + [
        "--config.batch_size=16",
        f"--config.train.num_steps={num_steps}",
        "--config.train.log_every=1",
        "--config.train.eval_every=4",
        "--config.train.eval_batches=0",
        "--config.train.checkpoint_every=4",
    ]


def main_command(workdir, shards, num_steps: int, cache=None) -> list[str]:
    main = [sys.executable, "-m", "musicvae_jax.main", f"--config={CONFIG}", f"--workdir={workdir}"]
    return main + [f"--config.data.path={shards}"] + run_flags(num_steps, cache)


def two_machines_command(workdir, shards, num_steps: int, port: int, process_id: int, cache=None) -> list[str]:
    """The launch recipe for machines without a scheduler, here both on loopback."""
    script = ["bash", str(REPO / "launch" / "two_machines.sh"), "--coordinator", f"127.0.0.1:{port}"]
    script += ["--num-processes", "2", "--process-id", str(process_id), "--config", CONFIG]
    return script + ["--data", str(shards), "--workdir", str(workdir), "--"] + run_flags(num_steps, cache)


def environment(devices: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"  # `python` in the script
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    return env


def run_processes(commands: list[list[str]], env: dict, timeout: float = 300) -> list[str]:
    """Runs the commands at once; their outputs. A hung process is killed (JAX catches SIGTERM)."""
    processes = [
        subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in commands
    ]
    outputs = []
    try:
        for process in processes:
            out, _ = process.communicate(timeout=timeout)
            outputs.append(out)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
    for process, out in zip(processes, outputs, strict=True):
        assert process.returncode == 0, out[-4000:]
    return outputs


def losses(output: str) -> dict[tuple[str, int], float]:
    found = {}
    for line in output.splitlines():
        if m := STEP_LINE.match(line):
            found[("train", int(m[1]))] = float(m[2])
        elif m := EVAL_LINE.match(line):
            found[("eval", int(m[1]))] = float(m[2])
    return found


def final_params(workdir, step):
    config = mel_2bar.get_config("tiny")
    like = train.abstract_state(train.model_spec(config), train.TrainSpec.from_config(config))
    manager = checkpoints.make_manager(workdir, 3, async_save=False)
    state, _ = checkpoints.restore(manager, step, like)
    manager.close()
    return state.params


@pytest.fixture(scope="module")
def one_process_run(shards, tmp_path_factory):
    """8 steps as one process with 4 devices: its workdir, its output and its compilation cache."""
    root = tmp_path_factory.mktemp("one_process")
    output = run_processes([main_command(root / "one", shards, 8, root / "xla_cache")], environment(4))[0]
    assert "4 device(s)" in output
    return root / "one", output, root / "xla_cache"


def test_two_processes_train_like_one_process_with_as_many_devices(shards, one_process_run, tmp_path):
    one_dir, one, cache = one_process_run  # the runs below share its cache: the resumed run reads their programs

    def two_processes(num_steps: int) -> list[str]:
        port = free_port()
        commands = [two_machines_command(tmp_path / "two", shards, num_steps, port, i, cache) for i in range(2)]
        return run_processes(commands, environment(2))

    first = two_processes(4)
    second = two_processes(8)  # resumes: each process restores its state and data position
    assert "4 device(s)" in first[0] and "steps 4 -> 8" in second[0]
    assert not losses(first[1]) and not losses(second[1])  # only process 0 logs
    assert sorted(f.name for f in (tmp_path / "two" / "checkpoints" / "8" / "data").glob("*.json")) == [
        "process_0-of-2.json",
        "process_1-of-2.json",
    ]
    assert (tmp_path / "two" / "tensorboard").is_dir()

    single, multi = losses(one), {**losses(first[0]), **losses(second[0])}
    assert set(single) == set(multi) and ("eval", 8) in single
    for key, value in single.items():
        assert multi[key] == pytest.approx(value, rel=1e-3, abs=2e-3), key
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        final_params(one_dir, 8),
        final_params(tmp_path / "two", 8),
    )


def test_resuming_with_another_process_count_is_refused(shards, one_process_run, tmp_path):
    shutil.copytree(one_process_run[0], tmp_path, dirs_exist_ok=True)  # a one-process run's checkpoints
    port = free_port()
    commands = [
        main_command(tmp_path, shards, 12)
        + [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"]
        for i in range(2)
    ]
    processes = [
        subprocess.Popen(c, cwd=REPO, env=environment(1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in commands
    ]
    try:
        outputs = [p.communicate(timeout=300)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
    assert processes[0].returncode != 0
    assert "none for this run's process_0-of-2.json" in outputs[0]


def test_sigterm_on_one_process_saves_the_same_step_on_all(shards, one_process_run, tmp_path):
    """Preemption notice on one worker: JAX agrees on a step, every process saves it and exits cleanly."""
    port = free_port()
    commands = [
        main_command(tmp_path, shards, 100_000, one_process_run[2])  # the two-process programs compiled above
        + [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"]
        for i in range(2)
    ]
    env = environment(2)
    processes = [
        subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in commands
    ]
    try:
        lines = []
        for line in processes[0].stdout:
            lines.append(line)
            if line.startswith("step 3/"):
                break
        processes[1].send_signal(signal.SIGTERM)
        outputs = ["".join(lines) + processes[0].communicate(timeout=240)[0], processes[1].communicate(timeout=240)[0]]
    finally:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
    assert [p.returncode for p in processes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    stopped = re.search(r"^stopped by SIGTERM at step (\d+); checkpoint saved", outputs[0], re.MULTILINE)
    assert stopped, outputs[0][-3000:]
    data = tmp_path / "checkpoints" / stopped[1] / "data"
    assert sorted(f.name for f in data.glob("*.json")) == ["process_0-of-2.json", "process_1-of-2.json"]
