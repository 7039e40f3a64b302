"""What a training step holds in memory at its peak, by XLA's own count.

    python bench/step_memory.py --config trio_16bar_hier --batch 32
    python bench/step_memory.py --config mel_2bar_big --batch 512 --precision bfloat16 --top 20

Compiles the step as bench/suite.py does and prints its memory_analysis()
(temporaries, arguments, outputs; what the start-up memory check in train.py
compares with a device's limit) and the buffers live at the peak of XLA's
schedule, grouped by shape and by the kind of instruction that made them.
XLA writes that peak into its dump of the compiled step (`--xla_dump_to`,
the `*-live-range.txt` file); the buffers are named after the instructions
in the `*after_optimizations.txt` beside it. The figures are the compiling
backend's: run it on the machine whose memory is in question.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import step_setup  # noqa: E402
from profile_step import add_step_arguments, step_config  # noqa: E402

from musicvae_jax import parallel  # noqa: E402

_LIVE = re.compile(r"^\s*(\S+?)(\{[\d,]*\})?: (\d+) bytes")


def peak_buffers(live_ranges: str) -> tuple[int, list[tuple[str, str, int]]]:
    """The peak's total bytes and its buffers (name, shape index, bytes), from XLA's live-range dump."""
    match = re.search(r"Live ranges at \d+ \(peak\):\n((?:\s+\S+: \d+ bytes.*\n)+)", live_ranges)
    if not match:
        raise ValueError("no 'Live ranges at N (peak)' section in the live-range dump")
    buffers = []
    for line in match.group(1).splitlines():
        found = _LIVE.match(line)
        if found:
            buffers.append((found.group(1), found.group(2) or "{}", int(found.group(3))))
    return sum(b for _, _, b in buffers), buffers


def instruction_shapes(hlo_text: str) -> dict[str, tuple[str, str]]:
    """Every instruction's (shape, opcode) by name, from an HLO module's text."""
    shapes = {}
    for found in re.finditer(r"^\s*(?:ROOT )?%(\S+) = (\S+(?: \S+)*?) ([a-z][\w-]*)\(", hlo_text, re.M):
        shapes[found.group(1)] = (found.group(2), found.group(3))
    return shapes


def tuple_element(shape: str, index: str) -> str:
    """The shape at `index` ('{3}' or '{1,0}') of a tuple shape '(s32[], f32[8,4]{1,0}, ...)'."""
    for position in (int(i) for i in index.strip("{}").split(",")):
        elements, depth, start = [], 0, 1
        for at, char in enumerate(shape):
            if char in "([{":
                depth += 1
            elif char in ")]}":
                depth -= 1
            if (char == "," and depth == 1) or (char == ")" and depth == 0):
                elements.append(shape[start:at].strip())
                start = at + 1
        shape = re.sub(r"^/\*index=\d+\*/", "", elements[position])
    return shape


def group_buffers(buffers: list[tuple[str, str, int]], shapes: dict[str, tuple[str, str]]) -> list[tuple]:
    """(bytes, count, what made them, shape) per group, largest first."""
    totals: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
    for name, index, size in buffers:
        shape, opcode = shapes.get(name, ("?", "?"))
        maker = "fusion " + re.sub(r"\.\d+$", "", name) if opcode == "fusion" else opcode
        if index != "{}" and shape != "?":
            shape = tuple_element(shape, index)
        totals[(maker, shape)][0] += size
        totals[(maker, shape)][1] += 1
    rows = [(size, count, maker, shape) for (maker, shape), (size, count) in totals.items()]
    return sorted(rows, key=lambda row: -row[0])


def peak_of_dump(dump: Path) -> tuple[int, list[tuple]]:
    """The peak's total bytes and its grouped buffers, from the newest train step in an XLA dump folder."""
    live = max(dump.glob("*train_step*live-range.txt"), key=lambda p: p.stat().st_mtime)
    hlo = live.with_name(live.name.replace("-live-range.txt", ".txt"))
    total, buffers = peak_buffers(live.read_text())
    return total, group_buffers(buffers, instruction_shapes(hlo.read_text()))


def memory_line(memory, batch: int) -> str:
    gib = 2**30
    return (
        f"memory_analysis: temporaries {memory.temp_size_in_bytes / gib:.2f} GiB "
        f"({memory.temp_size_in_bytes / batch / 1e6:.1f} MB per example), arguments "
        f"{memory.argument_size_in_bytes / gib:.2f} GiB, outputs {memory.output_size_in_bytes / gib:.2f} GiB, "
        f"aliased {memory.alias_size_in_bytes / gib:.2f} GiB; the step needs "
        f"{parallel.step_bytes(memory) / gib:.2f} GiB."
    )


def peak_table(total: int, rows: list[tuple], top: int) -> str:
    lines = [
        f"Live at the peak of XLA's schedule: {total / 2**30:.2f} GiB in {sum(r[1] for r in rows)} buffers.",
        "",
        "| MiB | buffers | made by | shape |",
        "|---|---|---|---|",
    ]
    for size, count, maker, shape in rows[:top]:
        lines.append(f"| {size / 2**20:.1f} | {count} | {maker[:60]} | `{shape[:70]}` |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_step_arguments(parser)
    parser.add_argument("--top", type=int, default=16, help="groups of buffers to list")
    parser.add_argument("--dump", default="", help="folder for XLA's dump of the step (default: a new temporary one)")
    args = parser.parse_args()

    dump = Path(args.dump or tempfile.mkdtemp(prefix="step_memory-"))
    # XLA reads its flags when the backend starts, at the first computation below.
    os.environ["XLA_FLAGS"] = " ".join(
        [os.environ.get("XLA_FLAGS", ""), f"--xla_dump_to={dump}", "--xla_dump_hlo_module_re=.*train_step.*"]
    )
    config = step_config(args)
    step, state, batch, rng = step_setup(config)
    memory = step.lower(state, batch, rng).compile().memory_analysis()
    print(
        f"{args.config} {args.size}, batch {config.batch_size}, {args.precision}, overrides {args.set or 'none'}, "
        f"backend {jax.default_backend()}, jax {jax.__version__}.\n"
    )
    print(memory_line(memory, config.batch_size), flush=True)
    if not any(dump.glob("*train_step*live-range.txt")):
        sys.exit(f"XLA wrote no live-range file of the step into {dump}: no peak to list")
    print(peak_table(*peak_of_dump(dump), args.top), flush=True)


if __name__ == "__main__":
    main()
