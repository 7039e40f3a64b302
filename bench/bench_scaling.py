"""Training throughput of the real entry point on 1, 2 and 4 devices, and on 2 processes.

    python bench/bench_scaling.py [--config configs/drums_2bar.py:tiny] [--batch 64] [--steps 120]

Runs `python -m musicvae_jax.main` as a user would, once per layout, with the
same config and global batch: one process with 1, 2 and 4 virtual CPU devices
(`--xla_force_host_platform_device_count`), and two processes with 2 devices
each joined on a loopback coordinator (launch/two_machines.sh). Reports the
examples/s of the last progress window (after compilation). On one CPU the
devices share the same cores, so the figures should stay flat: the point is
that every layout runs the same training; on a GPU or TPU host pass
`--real_devices` to use the accelerators instead.

Data: drums_2bar shards of the Groove MIDI Dataset (converted first, not timed).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import GROOVE_DIR, REPO, machine  # noqa: E402

from musicvae_jax.convert import convert  # noqa: E402

WINDOW = re.compile(r"^step (\d+)/\d+ .* ([0-9.]+) steps/s")


def main_flags(args, workdir: Path, data: Path) -> list[str]:
    return [
        f"--config={args.config}",
        f"--workdir={workdir}",
        f"--config.data.path={data}",
        f"--config.batch_size={args.batch}",
        f"--config.train.num_steps={args.steps}",
        f"--config.train.log_every={args.steps // 3}",
        f"--config.train.eval_every={args.steps * 10}",
        f"--config.train.checkpoint_every={args.steps * 10}",
    ]


def environment(devices: int, real_devices: bool) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    if not real_devices:
        env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return env


def last_window(output: str) -> float:
    rates = [float(m[2]) for line in output.splitlines() if (m := WINDOW.match(line))]
    if not rates:
        raise RuntimeError(f"no progress lines in the output:\n{output[-3000:]}")
    return rates[-1]


def run_layout(args, data: Path, devices: int, processes: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "run"
        if processes == 1:
            commands = [[sys.executable, "-m", "musicvae_jax.main", *main_flags(args, workdir, data)]]
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            flags = main_flags(args, workdir, data)
            config = flags[0].split("=", 1)[1]
            commands = [
                ["bash", str(REPO / "launch" / "two_machines.sh"), "--coordinator", f"127.0.0.1:{port}"]
                + ["--num-processes", str(processes), "--process-id", str(i), "--config", config]
                + ["--data", str(data), "--workdir", str(workdir), "--"]
                + flags[3:]
                for i in range(processes)
            ]
        env = environment(devices, args.real_devices)
        procs = [
            subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for c in commands
        ]
        outputs = [p.communicate()[0] for p in procs]
        for p, out in zip(procs, outputs, strict=True):
            if p.returncode:
                raise RuntimeError(f"exit {p.returncode}:\n{out[-3000:]}")
        return last_window(outputs[0]) * args.batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "drums_2bar.py") + ":tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--real_devices", action="store_true", help="use the machine's accelerators")
    args = parser.parse_args()
    if not GROOVE_DIR.is_dir():
        sys.exit(f"the Groove MIDI Dataset is not at {GROOVE_DIR} (set MUSICVAE_DATA)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "drums_2bar"
        convert([str(GROOVE_DIR)], data, "drums_2bar")
        print(f"machine: {machine()}; {args.config}, global batch {args.batch}, {args.steps} steps")
        print("| processes | devices per process | devices | examples/s | vs 1 device |")
        print("|---|---|---|---|---|")
        base = None
        for processes, devices in ((1, 1), (1, 2), (1, 4), (2, 2)):
            rate = run_layout(args, data, devices, processes)
            base = base or rate
            print(f"| {processes} | {devices} | {processes * devices} | {rate:,.0f} | {rate / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
