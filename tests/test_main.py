"""The entry point as a user runs it: the built-in default, start-up errors (flags, values, a data folder of the
wrong kind). A given data folder trains in tests/test_distributed.py."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, press_ctrl_c, start_as_from_a_terminal

from musicvae_jax import host_memory


def run_main(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "musicvae_jax.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


SHORT = [
    "--config.data.demo_songs=8",
    "--config.train.log_every=2",
    "--config.train.eval_every=4",
    "--config.train.eval_batches=1",
]


def test_default_run_trains_on_the_demo_corpus_and_resumes(tmp_path):
    cache = tmp_path / "xla_cache"
    result = run_main(
        f"--workdir={tmp_path}", *SHORT, "--config.train.num_steps=4", f"--config.compilation_cache_dir={cache}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert any(cache.iterdir())  # compiled programs kept for the next start
    assert "8 files seen, 8 parsed" in result.stdout
    assert "model: trio_16bar, hierarchical" in result.stdout and "steps 0 -> 4" in result.stdout
    assert "step 4/4 loss" in result.stdout and "acc/melody" in result.stdout and "eval at step 4" in result.stdout
    assert (tmp_path / "demo_midi" / "README.txt").read_text().startswith("DEMO DATA")
    assert (tmp_path / "checkpoints" / "4").is_dir()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    # The same command with more steps continues from the checkpoint (its programs from the cache).
    again = run_main(
        f"--workdir={tmp_path}", *SHORT, "--config.train.num_steps=6", f"--config.compilation_cache_dir={cache}",
        cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "steps 4 -> 6" in again.stdout and (tmp_path / "checkpoints" / "6").is_dir()
    # Our own log lines show; the libraries' INFO chatter (Orbax: dozens of lines per checkpoint) does not.
    assert "Resumed from the checkpoint at step 4" in again.stderr
    assert "checkpoint_manager.py" not in again.stderr and "orbax" not in again.stderr.lower()
    # Once more: the run has reached its steps, and says so.
    done = run_main(f"--workdir={tmp_path}", *SHORT, "--config.train.num_steps=6", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "nothing to train: the checkpoint at step 6 has reached config.train.num_steps=6" in done.stdout
    assert "final train loss" not in done.stdout and not (tmp_path / "checkpoints" / "7").exists()


def spawned_children(pid: int) -> list[Path]:
    """/proc folders of the processes `pid` started with multiprocessing's spawn."""
    children = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid and b"spawn_main" in (entry / "cmdline").read_bytes():
                children.append(entry)
        except (OSError, ValueError, IndexError):
            continue
    return children


def ignores_ctrl_c(process: Path) -> bool:
    """Whether the process has SIGINT's action set to ignore (its SigIgn mask in /proc)."""
    try:
        status = (process / "status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:"))
    return bool(int(mask, 16) & (1 << (signal.SIGINT - 1)))


@pytest.mark.parametrize("when", ["after a checkpoint", "while the loader workers import", "as a worker starts"])
def test_ctrl_c_saves_a_checkpoint_and_stops_the_run_and_its_loader_workers_quietly(tmp_path, when):
    """A terminal's Ctrl-C reaches the whole process group: the run saves the step it reached and exits 0; the
    loader's worker processes leave the signal to it, and their shared memory is freed (no tracebacks, no
    resource-tracker warnings). A worker imports for about a second before Grain runs its set-up; it sets the
    signal aside first thing. In the instant before, the signal stops it, and the run stops too, cleanly."""
    args = [f"--workdir={tmp_path}", "--config=configs/mel_2bar.py:tiny", "--config.data.demo_songs=8"]
    args += ["--config.train.num_steps=100000", "--config.train.checkpoint_every=20", "--config.data.num_workers=2"]
    run = start_as_from_a_terminal("musicvae_jax.main", *args)
    deadline = time.time() + 240
    lines = []
    if when == "after a checkpoint":
        while not (tmp_path / "checkpoints" / "20").is_dir() and time.time() < deadline and run.poll() is None:
            time.sleep(0.05)
    else:
        # The run prints its model line, then reads its first batch, which starts the workers (the demo corpus's
        # conversion, before that line, spawns processes of its own).
        while not (lines and "loader worker(s)" in lines[-1]) and run.poll() is None:
            lines.append(run.stdout.readline())
        while not (workers := spawned_children(run.pid)) and time.time() < deadline and run.poll() is None:
            time.sleep(0.005)
        if when == "while the loader workers import":  # once both have set the signal aside (0.5 s at most)
            started = time.time()
            while not (len(workers) == 2 and all(map(ignores_ctrl_c, workers))) and time.time() < started + 0.5:
                time.sleep(0.005)
                workers = spawned_children(run.pid)
    out, err = press_ctrl_c(run, 120, "the run")
    out = "".join(lines) + out
    assert run.returncode == 0, err
    if when == "as a worker starts" and "before its first batch" in out:
        assert re.search(r"^stopped by SIGINT at step 0, before its first batch$", out, re.MULTILINE), out
        assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
        return  # the stopped worker's trace is Python's own, printed before anything of ours runs in it
    stopped = re.search(r"^stopped by SIGINT at step (\d+); checkpoint saved$", out, re.MULTILINE)
    assert stopped and (tmp_path / "checkpoints" / stopped[1]).is_dir(), out
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "leaked shared_memory" not in err, err


# One case per way a start can fail: ml_collections' parsing of the config flags, absl's flags, the config's
# values (train.validate_config; each value's message is tested in tests/test_train.py) and the process flags.
@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.data.represntation=x"], 'Did you mean "representation"'),
        (["--config=configs/trio.py:huge"], "unknown config variant(s) ['huge']"),
        (["--config.batch_size=abc"], "--config.batch_size=abc"),
        (["--config=configs/nope.py"], "No such file or directory"),
        (["--config=configs/groovae.py", "--config.data.transpose_range=(-2, 2)"], "no melodic part"),
        (["--num_processes=2"], "--num_processes=2 needs --coordinator_address"),
        (["--workdir=README.md"], "--workdir README.md: not a folder"),
        (["--distributed=sometimes"], "--distributed"),
    ],
)
def test_bad_config_fails_at_start_in_one_line(tmp_path, args, message):
    result = run_main(f"--workdir={tmp_path}", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_host_memory_is_set_up_before_main_on_a_cpu_unless_turned_off(tmp_path):
    """Entry points keep freed host memory and dispatch synchronously where JAX runs on the CPU alone
    (musicvae_jax/host_memory.py)."""
    bad = "--config.batch_size=0"  # stops in main, after the set-up
    on = run_main(f"--workdir={tmp_path}", bad)
    no_keep = run_main(f"--workdir={tmp_path}", bad, "--nokeep_freed_host_memory")
    asynchronous = run_main(f"--workdir={tmp_path}", bad, "--nosynchronous_cpu_dispatch")
    assert on.returncode == no_keep.returncode == asynchronous.returncode == 2
    assert ("host memory: glibc malloc: an arena per thread, freed memory kept" in on.stderr) == host_memory.cpu_only()
    assert ("CPU dispatch synchronous" in on.stderr) == host_memory.cpu_only()
    assert "glibc" not in no_keep.stderr
    assert ("host memory: CPU dispatch synchronous" in no_keep.stderr) == host_memory.cpu_only()
    # XLA's threads allocate asynchronous steps' temporaries: only one arena for all finds them again.
    assert ("host memory: glibc malloc: one arena, freed memory kept" in asynchronous.stderr) == host_memory.cpu_only()
    assert "CPU dispatch synchronous" not in asynchronous.stderr
    assert not (tmp_path / "demo_midi").exists()  # nothing ran


def test_data_path_must_hold_the_configured_representation(tmp_path):
    from musicvae_jax.convert import convert
    from musicvae_jax.demo_corpus import write_demo_corpus

    write_demo_corpus(tmp_path / "midi", num_songs=4)
    convert([str(tmp_path / "midi")], tmp_path / "drums", "drums_2bar", workers=1)
    wrong = run_main(f"--workdir={tmp_path}", f"--config.data.path={tmp_path / 'drums'}")
    assert wrong.returncode == 2 and "holds drums_2bar data" in wrong.stderr
    assert "Traceback" not in wrong.stderr and not (tmp_path / "checkpoints").exists()
