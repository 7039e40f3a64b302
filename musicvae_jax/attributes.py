"""Attribute vectors: directions in z that turn a musical attribute up or down (MusicVAE paper, section 5.3).

    python -m musicvae_jax.attributes --workdir runs/gmd_drums_model --split train
    python -m musicvae_jax.sample --workdir runs/gmd_drums_model --mode attribute --attribute hit_density --input a.mid

An attribute is a number measured on a sequence: notes per step, the mean
interval between successive notes, the share of onsets off the beat, ...
(`measure`). Its vector is the mean posterior mean (mu) of the split's
examples in the attribute's top quartile less that of its bottom quartile.
Written to WORKDIR/attributes/NAME.npy, one per attribute, with
attributes.json (the quartiles, how many examples, and the check below).

The check (`--check_examples`, on `--check_split`) shows what each vector
does: it is added to the mus of examples of that split, they are decoded
by argmax, and every attribute of the decodes is compared with the decodes
of the unshifted mus, in standard deviations of the attribute over the split
(a table, and a heatmap in attributes.png). A vector that works moves its
own attribute most.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from musicvae_jax import input_pipeline, render
from musicvae_jax.representations import drums, melody
from musicvae_jax.sample import CHUNK, Generator

C_MAJOR = np.array([pc in (0, 2, 4, 5, 7, 9, 11) for pc in range(12)])
MIN_EXAMPLES = 8  # per attribute, to split it into quartiles
DRUM_GROUPS = {"kick": (0,), "snare": (1,), "hi_hat": (2, 3), "tom": (4, 5, 6), "cymbal": (7, 8)}


def _share(selected: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """Per row: the selected onsets' share of all onsets ([B, T] booleans); NaN for a row without onsets."""
    count = onsets.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (selected & onsets).sum(axis=1) / count, np.nan)


def _offbeat(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps on a 16th between eighths, and on the eighth between beats (4 steps to a beat)."""
    position = np.arange(steps) % 4
    return position % 2 == 1, position == 2


def melody_attributes(tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Melody tokens [B, T] -> the paper's five melody attributes, each [B]."""
    onsets = tokens >= melody.FIRST_NOTE_ON
    pitches = np.where(onsets, tokens - melody.FIRST_NOTE_ON + melody.MIN_PITCH, 0)
    intervals = np.full(len(tokens), np.nan)
    for row, (on, pitch) in enumerate(zip(onsets, pitches, strict=True)):
        played = pitch[on]
        if len(played) > 1:
            intervals[row] = np.abs(np.diff(played)).mean()
    sixteenths, eighths = _offbeat(tokens.shape[1])
    return {
        "note_density": onsets.mean(axis=1),
        "average_interval": intervals,
        "c_diatonic": _share(C_MAJOR[pitches % 12], onsets),
        "syncopation_16th": _share(np.broadcast_to(sixteenths, onsets.shape), onsets),
        "syncopation_8th": _share(np.broadcast_to(eighths, onsets.shape), onsets),
    }


def drum_attributes(hits: np.ndarray) -> dict[str, np.ndarray]:
    """Hits [B, T, 9] (booleans, drum classes as in SPEC section 2) -> hits per step, overall and by kind of drum,
    and the share of steps with a hit that are off the beat."""
    struck = hits.any(axis=-1)
    sixteenths, eighths = _offbeat(hits.shape[1])
    values = {"hit_density": hits.sum(axis=-1).mean(axis=1)}
    values.update(
        {f"{name}_density": hits[..., list(group)].sum(axis=-1).mean(axis=1) for name, group in DRUM_GROUPS.items()}
    )
    values["syncopation_16th"] = _share(np.broadcast_to(sixteenths, struck.shape), struck)
    values["syncopation_8th"] = _share(np.broadcast_to(eighths, struck.shape), struck)
    return values


def groove_attributes(hits: np.ndarray, velocities: np.ndarray, offsets: np.ndarray) -> dict[str, np.ndarray]:
    """Groove arrays [B, T, 9] -> the drum attributes of the hits, plus how loud (mean MIDI velocity of the hits),
    how late (mean offset, in steps: above 0 behind the grid) and how loose (mean absolute offset) they play."""
    played = hits > 0.5
    count = played.sum(axis=(1, 2))

    def mean_over_hits(values: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, np.where(played, values, 0).sum(axis=(1, 2)) / count, np.nan)

    return {
        **drum_attributes(played),
        "velocity": 127 * mean_over_hits(velocities),
        "laid_back": mean_over_hits(offsets),
        "looseness": mean_over_hits(np.abs(offsets)),
    }


def drum_token_hits(tokens: np.ndarray) -> np.ndarray:
    """Drum tokens [B, T] (bit sets of classes) -> hits [B, T, 9] booleans: the roll's class bits."""
    return drums.drum_roll(np.asarray(tokens, np.int64))[..., : drums.NUM_DRUM_CLASSES] > 0


def measure(representation: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every attribute of a batch of examples of a representation (its fields stacked [B, ...]), each [B]; NaN
    where undefined (an interval in a melody of one note). A trio's parts are prefixed with their names."""
    if representation.startswith("groove"):
        return groove_attributes(arrays["hits"], arrays["velocities"], arrays["offsets"])
    if representation.startswith("drums"):
        return drum_attributes(drum_token_hits(arrays["tokens"]))
    if representation.startswith("melody"):
        return melody_attributes(np.asarray(arrays["tokens"], np.int64))
    values = {}
    for name in ("melody", "bass"):
        values.update({f"{name}_{k}": v for k, v in melody_attributes(np.asarray(arrays[name], np.int64)).items()})
    values.update({f"drums_{k}": v for k, v in drum_attributes(drum_token_hits(arrays["drums"])).items()})
    return values


def stacked(examples: list[dict]) -> dict[str, np.ndarray]:
    """Examples (dicts of arrays) -> their fields stacked [N, ...]."""
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def encode_split(
    generator: Generator, data_dir: str | Path, split: str, max_examples: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The posterior means [N, z] of `max_examples` of a split's examples drawn at random (0, or more than the
    split holds: all of them) and their fields [N, ...]."""
    metadata = input_pipeline.load_metadata(data_dir)
    input_pipeline.check_representation(
        metadata, generator.representation.name, str(data_dir), "the checkpoint's config.data.representation"
    )
    available = metadata["splits"].get(split, {}).get("examples", 0)
    wanted = min(available, max_examples) if max_examples else available
    fields = list(generator.representation.fields)
    # A shuffled pass's first examples are a sample without repeats (its first epoch); all of them: one pass in order.
    sample = wanted < available
    iterator = input_pipeline.make_iterator(data_dir, split, global_batch_size=CHUNK, train=sample, seed=0)
    mus, arrays = [], {k: [] for k in fields}
    with tqdm(total=wanted, desc=f"encoding {split}", unit="example") as progress:
        for batch in iterator:
            rows = np.flatnonzero(batch["weights"] > 0)[: wanted - progress.n]
            mus.append(generator.encode_batch(batch)[0][rows])
            for k in fields:
                arrays[k].append(np.asarray(batch[k])[rows])
            progress.update(len(rows))
            if progress.n >= wanted:
                break
    iterator.close()
    if not mus:
        raise ValueError(f"{data_dir}: the {split} split has no examples")
    return np.concatenate(mus), {k: np.concatenate(v) for k, v in arrays.items()}


def attribute_vectors(values: dict[str, np.ndarray], mu: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Each attribute's vector, the mean mu of its top quartile less that of its bottom quartile, and its figures.

    An attribute too constant to split (equal quartiles, say toms in a corpus
    of few toms) or defined on too few examples gets no vector; its figures
    say why.
    """
    vectors, figures = {}, {}
    for name, value in values.items():
        defined = np.isfinite(value)
        if defined.sum() < MIN_EXAMPLES:
            figures[name] = {"skipped": f"defined on {int(defined.sum())} examples, fewer than {MIN_EXAMPLES}"}
            continue
        low, high = np.percentile(value[defined], [25, 75])
        if high <= low:
            figures[name] = {"skipped": f"its quartiles are equal ({low:g}): too few examples differ"}
            continue
        bottom, top = defined & (value <= low), defined & (value >= high)
        vectors[name] = (mu[top].mean(axis=0) - mu[bottom].mean(axis=0)).astype(np.float32)
        figures[name] = {
            "examples": int(defined.sum()),
            "mean": float(value[defined].mean()),
            "std": float(value[defined].std()),
            "low_quartile": float(low),
            "high_quartile": float(high),
            "bottom_examples": int(bottom.sum()),
            "top_examples": int(top.sum()),
            "vector_norm": float(np.linalg.norm(vectors[name])),
        }
    return vectors, figures


def check(
    generator: Generator, vectors: dict[str, np.ndarray], mu: np.ndarray, figures: dict[str, dict]
) -> dict[str, dict[str, float]]:
    """What adding each vector to `mu` does to every attribute of the argmax decodes: the change of its mean
    against the decodes of `mu` itself, in standard deviations of the attribute over the split (None where the
    decodes leave it undefined, a melody with no notes, say)."""
    name = generator.representation.name

    def means(z: np.ndarray) -> dict[str, float]:
        values = measure(name, stacked(generator.decode(z, 0, 0.0, progress=False)))
        with warnings.catch_warnings(action="ignore", category=RuntimeWarning):  # no value defined: NaN, quietly
            return {k: float(np.nanmean(v)) for k, v in values.items()}

    base = means(mu)
    changes = {}
    for vector_name in tqdm(list(vectors), desc="checking the vectors", unit="vector"):
        shifted = means(mu + vectors[vector_name])
        change = {k: (shifted[k] - base[k]) / figures[k]["std"] for k in vectors if figures[k]["std"] > 0}
        changes[vector_name] = {k: v if np.isfinite(v) else None for k, v in change.items()}
    return changes


def format_table(changes: dict[str, dict[str, float | None]]) -> str:
    """The check as Markdown: a row per vector added, a column per attribute measured ('-': undefined)."""
    columns = list(next(iter(changes.values())))
    lines = ["| vector added | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in changes.items():
        cells = ("-" if row[c] is None else f"{row[c]:+.2f}" for c in columns)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(changes: dict[str, dict[str, float | None]], path: Path, title: str) -> Path:
    """The check as a heatmap: a row per vector added, a column per attribute measured (blank: undefined)."""
    plt = render.pyplot()
    rows, columns = list(changes), list(next(iter(changes.values())))
    grid = np.array([[np.nan if changes[r][c] is None else changes[r][c] for c in columns] for r in rows])
    limit = max(float(np.nanmax(np.abs(grid), initial=0.0)), 1e-6)
    figure, axes = plt.subplots(figsize=(1.0 + 0.75 * len(columns), 1.2 + 0.45 * len(rows)))
    image = axes.imshow(grid, cmap="RdBu_r", vmin=-limit, vmax=limit)
    for (r, c), value in np.ndenumerate(grid):
        if np.isfinite(value):
            colour = "white" if abs(value) > 0.6 * limit else "black"
            axes.text(c, r, f"{value:+.1f}", ha="center", va="center", fontsize=7, color=colour)
    axes.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(rows)), rows, fontsize=8)
    axes.set_xlabel("attribute measured on the decodes")
    axes.set_ylabel("vector added to z")
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, label="change (standard deviations)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def compute(
    generator: Generator,
    data_dir: str | Path,
    output: Path,
    *,
    split: str = "train",
    max_examples: int = 4096,
    check_split: str = "eval",
    check_examples: int = 256,
) -> dict:
    """Writes every attribute's vector (NAME.npy) to `output` with attributes.json, and the check's table and
    heatmap when `check_examples` > 0; returns what attributes.json holds."""
    if max_examples < 0 or check_examples < 0:
        raise ValueError(f"--max_examples and --check_examples must be >= 0, got {max_examples} and {check_examples}")
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output}: not a folder")
    metadata = input_pipeline.load_metadata(data_dir)
    for name in [split] + ([check_split] if check_examples else []):
        input_pipeline.shard_paths(data_dir, name, metadata)  # a missing split is named now, not after the encoding
    mu, arrays = encode_split(generator, data_dir, split, max_examples)
    vectors, figures = attribute_vectors(measure(generator.representation.name, arrays), mu)
    if not vectors:
        raise ValueError(f"{data_dir} ({split}): no attribute varies enough over {len(mu)} examples to make a vector")
    summary = {"data": str(data_dir), "split": split, "examples": len(mu), "attributes": figures}
    summary["mu_spread"] = float(mu.std(axis=0).mean())  # per dimension; the prior's is 1
    changes = None
    if check_examples:
        check_mu, _ = encode_split(generator, data_dir, check_split, check_examples)
        changes = check(generator, vectors, check_mu, figures)
        summary["check"] = {"split": check_split, "examples": len(check_mu), "change_in_std": changes}
    output.mkdir(parents=True, exist_ok=True)
    for name, vector in vectors.items():
        np.save(output / f"{name}.npy", vector)
    if changes is not None:
        title = f"{generator.representation.name}: each vector added to {summary['check']['examples']} {check_split} "
        plot(changes, output / "attributes.png", title + "examples' mu, argmax")
    (output / "attributes.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from musicvae_jax.cli import fail
    from musicvae_jax.sample import data_dir_of, restore_from_flags

    FLAGS = flags.FLAGS
    generator, workdir = restore_from_flags(argv)
    output = Path(FLAGS.output) if FLAGS.output else workdir / "attributes"
    try:
        summary = compute(
            generator,
            data_dir_of(generator, workdir, FLAGS.data_path),
            output,
            split=FLAGS.split,
            max_examples=FLAGS.max_examples,
            check_split=FLAGS.check_split,
            check_examples=FLAGS.check_examples,
        )
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    for name, figures in summary["attributes"].items():
        if "skipped" in figures:
            print(f"{name}: no vector, {figures['skipped']}")
    if "check" in summary:
        check_figures = summary["check"]
        print(
            f"Each vector added to the mu of {check_figures['examples']} {check_figures['split']} examples, "
            "decoded by argmax: the change of each attribute's mean, in standard deviations over the data"
        )
        print(format_table(check_figures["change_in_std"]))
    norms = [f["vector_norm"] for f in summary["attributes"].values() if "skipped" not in f]
    print(
        f"the vectors' lengths: {min(norms):.3g} to {max(norms):.3g}; the examples' mus spread by "
        f"{summary['mu_spread']:.3g} per dimension (standard deviation; the prior's is 1)"
    )
    print(f"wrote {len(norms)} attribute vectors from {summary['examples']} {summary['split']} examples to {output}")


def _define_flags() -> None:
    from absl import flags

    from musicvae_jax.sample import define_data_flags

    define_data_flags("train", "Split whose examples make the vectors.")
    flags.DEFINE_integer("max_examples", 4096, "Examples of the split to encode, drawn at random (0: all).")
    flags.DEFINE_string("check_split", "eval", "Split whose examples the vectors are checked on.")
    flags.DEFINE_integer("check_examples", 256, "Examples to check the vectors on, drawn at random (0: no check).")
    flags.DEFINE_string("output", None, "Output folder (default WORKDIR/attributes).")


if __name__ == "__main__":
    from musicvae_jax import cli

    cli.run(main, _define_flags, config_flag_names=())
