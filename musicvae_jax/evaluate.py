"""Table-1 metrics of a checkpoint on a whole split.

    python -m musicvae_jax.evaluate --workdir runs/demo --split eval

Per instrument: reconstruction accuracy with teacher forcing and with
free-running decoding from the posterior mean (argmax), the two columns of
the paper's Table 1; plus r_loss, KL (nats and bits) and the ELBO, with z
sampled from q(z|x). Padding rows of the last batch do not count. Prints a
table and writes JSON (default `workdir/eval_SPLIT.json`).

Both accuracies are also given bar by bar and drawn (`eval_SPLIT.png`,
other models' JSON beside with `--compare`): where a flat decoder loses its
way over 16 bars, its free-running accuracy falls bar after bar, which a
hierarchical decoder is built to prevent (the paper's section 3.2).

GrooVAE parts add what humanizing is judged by, free-running from mu: hit
precision and recall, and on the hits that both the model and the data play,
the velocities' and offsets' root-mean-square errors beside two baselines
anyone gets for free: each drum class at one velocity (the best one, the
class's mean in the data) and every hit on the grid (a quantized beat).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from musicvae_jax import input_pipeline, objectives, render
from musicvae_jax.models.vae import MusicVAE
from musicvae_jax.representations.groove import DRUM_CLASS_NAMES
from musicvae_jax.sample import Generator, data_dir_of, define_data_flags, restore_from_flags


def batch_sums(model: MusicVAE, params, batch: dict, rng: jax.Array) -> dict[str, jax.Array]:
    """Weighted sums over one batch: r_loss, kl, weight, per part correct / counted steps (and groove's)."""
    spec = model.spec
    weights = batch["weights"]
    sampled = model.apply({"params": params}, batch, rng, train=False)
    r_loss, _ = objectives.reconstruction(spec.parts, sampled["raw"], batch)
    kl = objectives.kl_divergence(sampled["mu"], sampled["sigma"])
    forced = model.apply({"params": params}, batch, rng, train=False, use_mean=True)
    free = model.apply({"params": params}, forced["mu"], rng, 0.0, method=MusicVAE.decode)
    mask = objectives.step_mask(batch["lengths"], spec.num_steps) * weights[:, None]
    sums = {"r_loss": jnp.sum(r_loss * weights), "kl": jnp.sum(kl * weights), "weight": jnp.sum(weights)}
    for part in spec.parts:
        target = part.targets(batch)
        if part.kind == "groove":
            sums.update(groove_sums(part.name, free[part.name], target, mask))
        correct = part.step_correct(forced["raw"][part.name], target)
        sums[f"teacher_forced/{part.name}"] = bar_sums(correct * mask, spec.num_bars)
        sums[f"free_running/{part.name}"] = bar_sums(part.values_alike(free[part.name], target) * mask, spec.num_bars)
        sums[f"steps/{part.name}"] = bar_sums(jnp.broadcast_to(mask, correct.shape), spec.num_bars)
    return sums


def bar_sums(values: jax.Array, num_bars: int) -> jax.Array:
    """[B, T] -> [num_bars]: the sum over each bar's steps."""
    return jnp.sum(values.reshape(values.shape[0], num_bars, -1), axis=(0, 2))


def groove_sums(name: str, played: jax.Array, target: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
    """Counts of hits and sums of squared velocity and offset errors on the hits both play ([B, T, 27] values);
    per drum class where the one-velocity-per-class baseline and the per-class hit rates need it."""
    hits, velocities, offsets = jnp.split(played, 3, axis=-1)
    true_hits, true_velocities, true_offsets = jnp.split(target, 3, axis=-1)
    played_hit = (hits > 0.5) * mask[..., None]
    true_hit = (true_hits > 0.5) * mask[..., None]
    both = played_hit * true_hit
    per_class = (0, 1)
    sums = {
        "hits_played": jnp.sum(played_hit, axis=per_class),
        "hits_true": jnp.sum(true_hit, axis=per_class),
        "hits_both": jnp.sum(both, axis=per_class),
        "velocity_se": jnp.sum(both * (velocities - true_velocities) ** 2),
        "velocity_sum": jnp.sum(both * true_velocities, axis=per_class),
        "velocity_sq": jnp.sum(both * true_velocities**2, axis=per_class),
        "offset_se": jnp.sum(both * (offsets - true_offsets) ** 2),
        "offset_sq": jnp.sum(both * true_offsets**2),
    }
    return {f"groove/{k}/{name}": v for k, v in sums.items()}


def groove_metrics(totals: dict[str, float], name: str) -> dict[str, float]:
    """Hit precision and recall, RMS errors (velocities in MIDI units, offsets in steps) from summed `groove_sums`."""
    t = {k.split("/")[1]: v for k, v in totals.items() if k.startswith("groove/") and k.endswith(f"/{name}")}
    hits_both = float(np.sum(t["hits_both"]))
    both = max(hits_both, 1.0)
    spread = t["velocity_sq"] - t["velocity_sum"] ** 2 / np.maximum(t["hits_both"], 1.0)  # around each class's mean
    per_class = {
        name: {
            "hit_precision": float(t["hits_both"][c]) / max(float(t["hits_played"][c]), 1.0),
            "hit_recall": float(t["hits_both"][c]) / max(float(t["hits_true"][c]), 1.0),
            "hits_true": int(t["hits_true"][c]),
        }
        for c, name in enumerate(DRUM_CLASS_NAMES)
    }
    return {
        "hit_precision": hits_both / max(float(np.sum(t["hits_played"])), 1.0),
        "hit_recall": hits_both / max(float(np.sum(t["hits_true"])), 1.0),
        "hits_compared": int(hits_both),
        "velocity_rmse": 127 * math.sqrt(t["velocity_se"] / both),
        "velocity_rmse_class_means": 127 * math.sqrt(max(float(np.sum(spread)), 0.0) / both),
        "offset_rmse": math.sqrt(t["offset_se"] / both),
        "offset_rmse_quantized": math.sqrt(t["offset_sq"] / both),
        "per_class": per_class,  # where an infill model's left-out classes show how well it makes them up
    }


def evaluate(
    generator: Generator, data_dir: str | Path, split: str, batch_size: int, seed: int = 0, max_batches: int = 0
) -> dict:
    """Metrics over the split (or `max_batches` batches of it, a fixed sample drawn from all of it)."""
    if batch_size < 1 or max_batches < 0:
        raise ValueError(f"--batch_size must be >= 1 and --max_batches >= 0, got {batch_size} and {max_batches}")
    metadata = input_pipeline.load_metadata(data_dir)
    input_pipeline.check_representation(
        metadata, generator.representation.name, str(data_dir), "the checkpoint's config.data.representation"
    )
    model = MusicVAE(generator.spec)
    step_fn = jax.jit(lambda p, b, r: batch_sums(model, p, b, r))
    totals: dict[str, float] = {}
    iterator = input_pipeline.make_iterator(
        data_dir, split, global_batch_size=batch_size, train=False, shuffled=bool(max_batches)
    )
    examples = metadata["splits"][split]["examples"]
    total = -(-examples // batch_size)
    total = min(total, max_batches) if max_batches else total
    for i, batch in enumerate(tqdm(iterator, total=total, desc=f"evaluating {split}", unit="batch")):
        if max_batches and i >= max_batches:
            break
        sums = jax.device_get(step_fn(generator.params, batch, jax.random.key(seed + i)))
        for k, v in sums.items():
            totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
    weight = max(float(totals.pop("weight", 0.0)), 1.0)
    result = {
        "split": split,
        "step": generator.step,
        "examples": int(weight),
        "r_loss": totals["r_loss"] / weight,
        "kl": totals["kl"] / weight,
        "kl_bits": totals["kl"] / weight / math.log(2),
    }
    result["elbo"] = -(result["r_loss"] + result["kl"])
    kinds = ("teacher_forced", "free_running")
    result["accuracy"] = {
        part.name: {
            kind: float(np.sum(totals[f"{kind}/{part.name}"])) / max(float(np.sum(totals[f"steps/{part.name}"])), 1.0)
            for kind in kinds
        }
        for part in generator.spec.parts
    }
    result["accuracy_by_bar"] = {  # null for a bar no example reaches
        part.name: {
            kind: [
                float(c) / n if n else None
                for c, n in zip(totals[f"{kind}/{part.name}"], totals[f"steps/{part.name}"], strict=True)
            ]
            for kind in kinds
        }
        for part in generator.spec.parts
    }
    groove = {part.name: groove_metrics(totals, part.name) for part in generator.spec.parts if part.kind == "groove"}
    if groove:
        result["groove"] = groove
    return result


def format_table(result: dict) -> str:
    lines = [
        f"{result['split']}: {result['examples']} examples, r_loss {result['r_loss']:.3f}, "
        f"KL {result['kl']:.3f} nats ({result['kl_bits']:.2f} bits), ELBO {result['elbo']:.3f}",
        "| part | teacher-forced accuracy | free-running accuracy (argmax from mu) |",
        "|---|---|---|",
    ]
    for name, acc in result["accuracy"].items():
        lines.append(f"| {name} | {acc['teacher_forced']:.3f} | {acc['free_running']:.3f} |")
    num_bars = len(next(iter(result["accuracy_by_bar"].values()))["free_running"])
    lines += ["", "| accuracy in bar | " + " | ".join(map(str, range(1, num_bars + 1))) + " |"]
    lines.append("|---" * (num_bars + 1) + "|")
    for name, by_bar in result["accuracy_by_bar"].items():
        for kind, values in by_bar.items():
            cells = ("-" if v is None else f"{v:.3f}" for v in values)
            lines.append(f"| {name}, {kind.replace('_', '-')} | " + " | ".join(cells) + " |")
    for name, g in result.get("groove", {}).items():
        lines += [
            "",
            f"{name}, free-running from mu, on the {g['hits_compared']} hits both the model and the data play:",
            "| hit precision | hit recall | velocity RMSE (MIDI units) | each class at its mean | offset RMSE (steps) "
            "| all on the grid |",
            "|---|---|---|---|---|---|",
            f"| {g['hit_precision']:.3f} | {g['hit_recall']:.3f} | {g['velocity_rmse']:.1f} "
            f"| {g['velocity_rmse_class_means']:.1f} | {g['offset_rmse']:.3f} | {g['offset_rmse_quantized']:.3f} |",
            "",
            "| drum class | " + " | ".join(g["per_class"]) + " |",
            "|---|" + "---|" * len(g["per_class"]),
        ]
        for key, label in (("hit_precision", "hit precision"), ("hit_recall", "hit recall")):
            lines.append(f"| {label} | " + " | ".join(f"{c[key]:.3f}" for c in g["per_class"].values()) + " |")
        lines.append("| hits in the data | " + " | ".join(str(c["hits_true"]) for c in g["per_class"].values()) + " |")
    return "\n".join(lines)


def label_of(result: dict) -> str:
    """A model's name in a plot: its workdir's name and checkpoint step."""
    name = Path(result.get("workdir") or "model").name
    return name if result.get("step") is None else f"{name} (step {result['step']})"


def plot_by_bar(results: Sequence[dict], path: Path) -> Path:
    """Accuracy bar by bar of one or more models' evaluations, a panel per part: free-running solid,
    teacher-forced dashed, one colour per model."""
    plt = render.pyplot()
    parts = list(dict.fromkeys(name for r in results for name in r["accuracy_by_bar"]))
    figure, panels = plt.subplots(1, len(parts), figsize=(5.5 * len(parts), 3.6), squeeze=False)
    for axes, part in zip(panels[0], parts, strict=True):
        for i, result in enumerate(results):
            by_bar = result["accuracy_by_bar"].get(part)
            if by_bar is None:
                continue
            for kind, style in (("free_running", "-"), ("teacher_forced", "--")):
                values = [np.nan if v is None else v for v in by_bar[kind]]
                bars = np.arange(1, len(values) + 1)
                label = f"{label_of(result)}, {kind.replace('_', '-')}"
                axes.plot(bars, values, style, color=f"C{i}", marker="o", markersize=3, label=label)
        axes.set_title(f"{part}: accuracy in each bar ({results[0]['split']} split)", fontsize=9)
        num_bars = max(len(r["accuracy_by_bar"][part]["free_running"]) for r in results if part in r["accuracy_by_bar"])
        axes.set_xticks(range(1, num_bars + 1))
        axes.set_xlabel("bar")
        axes.set_ylabel("steps whose token is right")
        axes.set_ylim(0.0, 1.0)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def load_comparisons(paths: Sequence[str]) -> list[dict]:
    """Other models' evaluations (JSON this command wrote) to draw beside this one; read before evaluating so a
    wrong path fails at once."""
    results = []
    for path in paths:
        try:
            result = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"--compare {path}: not a readable evaluation JSON ({e})") from None
        if not isinstance(result, dict) or "accuracy_by_bar" not in result:
            raise ValueError(f"--compare {path}: no accuracy_by_bar (not written by this command, or by an older one)")
        results.append(result)
    return results


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from musicvae_jax.cli import fail

    FLAGS = flags.FLAGS
    generator, workdir = restore_from_flags(argv)
    output = Path(FLAGS.output) if FLAGS.output else workdir / f"eval_{FLAGS.split}.json"
    if output.is_dir() or output.suffix == ".png":
        what = "a folder" if output.is_dir() else "the plot's name"
        fail(f"--output {output}: {what}; name the JSON file to write (the plot goes beside it, .png)")
    try:
        others = load_comparisons(FLAGS.compare or ())
        data_dir = data_dir_of(generator, workdir, FLAGS.data_path)
        batch_size = FLAGS.batch_size or generator.config.batch_size
        result = evaluate(generator, data_dir, FLAGS.split, batch_size, FLAGS.seed, FLAGS.max_batches)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    result["workdir"] = str(workdir)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    print(f"wrote {output} and {plot_by_bar([result, *others], output.with_suffix('.png'))}")


def _define_flags() -> None:
    from absl import flags

    define_data_flags("eval", "Split of the converted data.")
    flags.DEFINE_integer("batch_size", 0, "Batch size (default: the config's).")
    flags.DEFINE_integer(
        "max_batches", 0, "Evaluate this many batches, a fixed sample of the split (0: the whole split)."
    )
    flags.DEFINE_integer("seed", 0, "Seed for z sampled from q(z|x) in the ELBO.")
    flags.DEFINE_string("output", None, "JSON output (default WORKDIR/eval_SPLIT.json); the plot goes beside, .png.")
    flags.DEFINE_multi_string("compare", None, "Another model's evaluation JSON to draw beside this one (repeatable).")


if __name__ == "__main__":
    from musicvae_jax import cli

    cli.run(main, _define_flags, config_flag_names=())
