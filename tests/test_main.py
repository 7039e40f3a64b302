"""The entry point as a user runs it: built-in default, a given data folder, and flag errors."""

import subprocess
import sys

import pytest
from helpers import REPO


def run_main(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "musicvae_jax.main", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_default_run_prepares_demo_data_and_streams_batches(tmp_path):
    result = run_main(f"--workdir={tmp_path}", "--check_batches=5", "--config.data.demo_songs=8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "8 files seen, 8 parsed" in result.stdout
    assert "batch: melody int32[32, 256], bass int32[32, 256], drums int32[32, 256]" in result.stdout
    assert (tmp_path / "demo_midi" / "README.txt").read_text().startswith("DEMO DATA")
    assert (tmp_path / "data" / "trio_16bar" / "metadata.json").is_file()
    # A second run reuses what the first one made.
    again = run_main(f"--workdir={tmp_path}", "--check_batches=5", "--config.data.demo_songs=8", cwd=tmp_path)
    assert again.returncode == 0 and "8 parsed" in again.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.data.represntation=x"], 'Did you mean "representation"'),
        (["--config=configs/trio.py:huge"], "unknown config variant(s) ['huge']"),
        (["--config.batch_size=abc"], "--config.batch_size=abc"),
        (["--config=configs/nope.py"], "No such file or directory"),
        (["--config.data.representation=bongos"], "config.data.representation: unknown representation 'bongos'"),
        (["--config.batch_size=0"], "config.batch_size must be >= 1"),
        (["--config.data.transpose_range=(3, -3)"], "config.data.transpose_range"),
        (["--config=configs/groovae.py", "--config.data.transpose_range=(-2, 2)"], "no melodic part"),
    ],
)
def test_bad_config_fails_at_start_in_one_line(tmp_path, args, message):
    result = run_main(f"--workdir={tmp_path}", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "demo_midi").exists()  # nothing ran


def test_data_path_must_hold_the_configured_representation(tmp_path):
    from musicvae_jax.convert import convert
    from musicvae_jax.demo_corpus import write_demo_corpus

    write_demo_corpus(tmp_path / "midi", num_songs=4)
    convert([str(tmp_path / "midi")], tmp_path / "drums", "drums_2bar", workers=1)
    wrong = run_main(f"--workdir={tmp_path}", f"--config.data.path={tmp_path / 'drums'}")
    assert wrong.returncode == 2 and "holds drums_2bar data" in wrong.stderr
    right = run_main(
        f"--workdir={tmp_path}",
        "--config=configs/drums_2bar.py:tiny",
        f"--config.data.path={tmp_path / 'drums'}",
        "--check_batches=3",
    )
    assert right.returncode == 0, right.stderr
    assert "batch: tokens int32[32, 32]" in right.stdout
