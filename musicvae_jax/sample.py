"""Generate from a trained checkpoint: sample, reconstruct, similar, interpolate, encode, decode, attribute.

    python -m musicvae_jax.sample --workdir runs/demo --mode sample --num 8 --temperature 0.5
    python -m musicvae_jax.sample --workdir runs/demo --mode reconstruct --input song.mid
    python -m musicvae_jax.sample --workdir runs/demo --mode similar --input song.mid --num 8 --similarity 0.8
    python -m musicvae_jax.sample --workdir runs/demo --mode interpolate --input a.mid --input b.mid --steps 7
    python -m musicvae_jax.sample --workdir runs/demo --mode interpolate --input a.mid --input b.mid \
        --input c.mid --input d.mid --steps 5
    python -m musicvae_jax.sample --workdir runs/demo --mode encode --input song.mid
    python -m musicvae_jax.sample --workdir runs/demo --mode decode --z runs/demo/samples/encode/mu.npy
    python -m musicvae_jax.sample --workdir runs/demo --mode attribute --attribute drums_hit_density --input song.mid
    python -m musicvae_jax.sample --workdir runs/tap --mode reconstruct --taps 'X..x..x...x.X... X..x..x...x.X...'

The model and its config come from the checkpoint (the latest in
`workdir/checkpoints`, or `--checkpoint DIR/checkpoints/STEP`). Output goes
to `--output` (default `workdir/samples/MODE`): one MIDI file per sequence,
plus one file with all of them in a row for reconstruct, similar,
interpolate, decode and attribute, every file at the first input's tempo
(or --qpm, 120 without either); encode writes mu.npy and sigma.npy, which
decode reads back (edited or not: any float array [N, z_size]). Attribute
adds amounts (`--amounts`) of an attribute vector made by `musicvae_jax.attributes` to
the z of the input's first window. Similar decodes variations of the
input's first window: z drawn from the prior, slerped towards its mu by
`--similarity`. Interpolate with four inputs fills a grid whose corners are
their first windows (top left, top right, bottom left, bottom right).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict
from tqdm import tqdm

from musicvae_jax import checkpoints, input_pipeline, remote, render, train
from musicvae_jax.midi_io import MidiReadError, read_midi, write_midi
from musicvae_jax.models import groove_input
from musicvae_jax.models.parts import GROOVE_KEYS
from musicvae_jax.models.vae import MusicVAE
from musicvae_jax.notes import DEFAULT_QPM, NoteSequence
from musicvae_jax.representations import get_representation
from musicvae_jax.representations.groove import as_taps, taps_from_pattern

MODES = ("sample", "reconstruct", "similar", "interpolate", "encode", "decode", "attribute")
CHUNK = 64  # sequences per compiled call; longer jobs run chunk after chunk with a progress bar


def _chunks(count: int, what: str, progress: bool = True):
    """Slices of at most CHUNK rows; a progress bar when there is more than one (and `progress`)."""
    slices = [slice(i, min(i + CHUNK, count)) for i in range(0, count, CHUNK)]
    return tqdm(slices, desc=what, unit="chunk", disable=len(slices) < 2 or not progress)


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    """Pads the leading axis to `rows`, so every chunk reuses one compiled program."""
    return np.concatenate([x, np.zeros((rows - len(x), *x.shape[1:]), x.dtype)])


class Generator:
    """A restored model with jitted encode and decode."""

    def __init__(self, config: ConfigDict, params, step: int | None = None):
        self.config = config
        self.step = step  # the checkpoint's training step, where it came from one
        self.spec = train.model_spec(config)
        self.representation = get_representation(self.spec.representation)
        self.params = params
        model = MusicVAE(self.spec)
        self._encode = jax.jit(lambda p, b: model.apply({"params": p}, b, method=MusicVAE.encode))
        self._decode = jax.jit(
            lambda p, z, rng, t, same: model.apply({"params": p}, z, rng, t, same, method=MusicVAE.decode),
            static_argnums=4,
        )

    @classmethod
    def restore(
        cls, workdir: str | Path | None = None, checkpoint: str | Path | None = None, compute_dtype: str | None = None
    ) -> Generator:
        """From the latest checkpoint of a workdir, or from one checkpoint folder (…/checkpoints/STEP).

        `compute_dtype` ('float32' or 'bfloat16') overrides the matmul precision
        the model trained with: parameters are float32 either way, so a model
        trained in bfloat16 on a GPU can sample in float32 on a CPU that has no
        bfloat16 dot instructions (where bfloat16 is the slower).
        """
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            if not checkpoint.name.isdigit() or checkpoint.parent.name != "checkpoints":
                raise FileNotFoundError(f"--checkpoint {checkpoint}: expected a folder WORKDIR/checkpoints/STEP")
            workdir, step = checkpoint.parent.parent, int(checkpoint.name)
        remote.check_reachable(workdir, "--workdir")
        if "://" not in str(workdir) and not (Path(workdir) / "checkpoints").is_dir():
            raise FileNotFoundError(f"no checkpoint in {Path(workdir) / 'checkpoints'} (no such folder)")
        manager = checkpoints.make_manager(workdir, max_to_keep=1, async_save=False)
        try:
            step = manager.latest_step() if checkpoint is None else step
            if step is None or step not in manager.all_steps():
                raise FileNotFoundError(f"no checkpoint {'' if step is None else f'{step} '}in {manager.directory}")
            config = ConfigDict(checkpoints.restore_config(manager, step))
            if compute_dtype is not None:
                config.model.compute_dtype = compute_dtype
            train.validate_config(config)
            train.warn_if_precision_is_slow_here(config)
            spec, tspec = train.model_spec(config), train.TrainSpec.from_config(config)
            try:
                state, _ = checkpoints.restore(manager, step, train.abstract_state(spec, tspec))
            except (ValueError, KeyError) as e:
                raise ValueError(
                    f"checkpoint {step} in {manager.directory} does not fit its config's model: {e}"
                ) from None
        finally:
            manager.close()
        return cls(config, state.params, step)

    @property
    def reads_taps(self) -> bool:
        """A tap2drum model: its input is a rhythm tapped on any instrument."""
        return any(p.kind == "groove" and groove_input.reads_taps(p.groove_input) for p in self.spec.parts)

    def encode_batch(self, batch: dict) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) [B, z_size] of one batch as the loader makes it."""
        mu, sigma = self._encode(self.params, batch)
        return np.asarray(mu), np.asarray(sigma)

    def encode(self, examples: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) [N, z_size] of the examples, CHUNK at a time."""
        fields = {k: v.as_dict() for k, v in self.representation.fields.items()}
        rows = min(len(examples), CHUNK)
        mus, sigmas = [], []
        for part in _chunks(len(examples), "encoding"):
            batch = input_pipeline.batch_arrays(examples[part], fields, rows)
            mu, sigma = self.encode_batch(batch)
            n = part.stop - part.start
            mus.append(mu[:n])
            sigmas.append(sigma[:n])
        return np.concatenate(mus), np.concatenate(sigmas)

    def decode(
        self, z: np.ndarray, seed: int, temperature: float, same_draws: bool = False, progress: bool = True
    ) -> list[dict]:
        """z [N, z_size] -> one example (representation fields) per row, CHUNK rows at a time.

        `same_draws`: every row samples with the random draws of a lone
        decode with `seed` (row i as `decode(z[i:i+1], seed, ...)` gives it),
        so rows differ only by z, as an interpolation's steps should; in one
        batch, 1.9-3.2x faster than one call per row for the big models on a
        CPU (BENCHMARKS.md).
        """
        rows = min(len(z), CHUNK)
        pieces = []
        for i, part in enumerate(_chunks(len(z), "decoding", progress)):
            rng = jax.random.key(seed) if i == 0 or same_draws else jax.random.fold_in(jax.random.key(seed), i)
            out = self._decode(self.params, jnp.asarray(_pad_rows(z[part], rows)), rng, temperature, same_draws)
            pieces.append(jax.tree.map(lambda x, n=part.stop - part.start: np.asarray(x)[:n], jax.device_get(out)))
        values = jax.tree.map(lambda *xs: np.concatenate(xs), *pieces)
        examples = []
        for i in range(z.shape[0]):
            example = {}
            for part in self.spec.parts:
                if part.kind == "groove":
                    hits, velocities, offsets = np.split(values[part.name][i], 3, axis=-1)
                    example.update(zip(GROOVE_KEYS, (hits, velocities, offsets), strict=True))
                else:
                    example[part.name] = values[part.name][i]
            examples.append(example)
        return examples

    def to_notes(self, example: dict) -> NoteSequence:
        return self.representation.to_notes(example)


def windows_of(generator: Generator, path: str | Path) -> list[dict]:
    """Every window of a MIDI file for this model, or a clear error saying why there is none."""
    try:
        sequence = read_midi(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"--input {path}: no such file") from None
    except MidiReadError as e:
        raise ValueError(f"--input {path}: {e}") from None
    if generator.reads_taps:
        sequence = as_taps(sequence)
    windows = generator.representation.windows(sequence)
    if not windows:
        reasons = [*sequence.warnings] or ["no part of it matches"]
        if not sequence.notes:
            reasons = ["it has no notes in 4/4" if sequence.warnings else "it has no notes"]
        raise ValueError(
            f"--input {path}: no usable {generator.representation.name} window "
            f"({generator.representation.num_bars} bars of 4/4 with the instruments it needs): {'; '.join(reasons)}"
        )
    return windows


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between two vectors (linear when they are parallel)."""
    omega = np.arccos(np.clip(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)), -1.0, 1.0))
    if np.abs(np.sin(omega)) < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def similar_latents(mu: np.ndarray, similarity: float, prior: np.ndarray) -> np.ndarray:
    """Variations of one latent vector: each prior draw [N, z_size] slerped towards `mu` (similarity 1: mu itself,
    0: the draw)."""
    return np.stack([slerp(mu, draw, 1.0 - similarity) for draw in prior]).astype(np.float32)


def grid_latents(corners: Sequence[np.ndarray], steps: int) -> np.ndarray:
    """[steps, steps, z_size]: the four corners (top left, top right, bottom left, bottom right) slerped along the
    top and bottom edges, then down each column between them."""
    top_left, top_right, bottom_left, bottom_right = corners
    ts = np.linspace(0.0, 1.0, steps)
    top = [slerp(top_left, top_right, t) for t in ts]
    bottom = [slerp(bottom_left, bottom_right, t) for t in ts]
    return np.array([[slerp(top[c], bottom[c], t) for c in range(steps)] for t in ts], np.float32)


def load_latents(path: str | Path, z_size: int, flag: str = "--z") -> np.ndarray:
    """z vectors from a .npy file ([N, z_size], or one [z_size]) as float32, or an error naming the flag and file."""
    if not Path(path).is_file():
        raise ValueError(f"{flag} {path}: no such file")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        raise ValueError(f"{flag} {path}: not a NumPy .npy file of latent vectors") from None
    z = z[None] if z.ndim == 1 else z
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] != z_size or not np.issubdtype(z.dtype, np.number):
        raise ValueError(
            f"{flag} {path}: expected numbers of shape [N, {z_size}] (this model's z_size), "
            f"got {z.dtype}{list(z.shape)}"
        )
    if not np.isfinite(z).all():
        raise ValueError(f"{flag} {path}: holds NaN or infinite values")
    return z.astype(np.float32)


def attribute_path(workdir: Path, attribute: str) -> Path:
    """--attribute: a .npy file, or the name of one that `musicvae_jax.attributes` wrote to WORKDIR/attributes."""
    if attribute.endswith(".npy"):
        return Path(attribute)
    folder = workdir / "attributes"
    names = sorted(p.stem for p in folder.glob("*.npy"))
    if not names:
        raise ValueError(
            f"--attribute {attribute}: no attribute vectors in {folder}; "
            f"make them with python -m musicvae_jax.attributes --workdir {workdir}"
        )
    if attribute not in names:
        raise ValueError(f"--attribute {attribute}: no such vector in {folder} (there: {', '.join(names)})")
    return folder / f"{attribute}.npy"


def data_dir_of(generator: Generator, workdir: Path, data_path: str | None) -> Path:
    """The converted data a command reads: --data_path, else the checkpoint's config.data.path, else the demo data
    that training wrote under the workdir."""
    config = generator.config
    return Path(data_path or config.data.path or workdir / "data" / config.data.representation)


def output_folder(output: Path) -> Path:
    """--output, or an error where it names a file."""
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output}: not a folder")
    return output


def write_tap_files(generator: Generator, patterns: Sequence[str], output: Path, qpm: float | None = None) -> list[str]:
    """--taps: each typed rhythm as a MIDI file in the output folder (output/taps_I.mid, at `qpm` or 120), to read
    as --input."""
    tempo = tempo_of((), qpm)  # a bad --qpm is named before anything is written
    if not generator.reads_taps:
        raise ValueError(
            f"--taps is for tap2drum models (config.model.groove_input taps or taps_fixed_velocity); "
            f"this one is {generator.spec.representation}"
            + (f" reading {generator.spec.groove_input}" if generator.spec.representation.startswith("groove") else "")
        )
    sequences = []
    for pattern in patterns:
        try:
            sequences.append(taps_from_pattern(pattern))
        except ValueError as e:
            raise ValueError(f"--taps {pattern!r}: {e}") from None
    output_folder(output).mkdir(parents=True, exist_ok=True)
    paths = [output / f"taps_{i}.mid" for i in range(len(sequences))]
    for sequence, path in zip(sequences, paths, strict=True):
        write_midi(sequence, path, qpm=tempo)
    return [str(p) for p in paths]


def tempo_of(inputs: Sequence[str], qpm: float | None) -> float:
    """The tempo outputs are written at: --qpm, else the first --input's opening tempo, else 120."""
    if qpm is not None:
        if not (np.isfinite(qpm) and qpm > 0):
            raise ValueError(f"--qpm must be a positive tempo in quarter notes per minute, got {qpm}")
        return qpm
    if not inputs:
        return DEFAULT_QPM
    try:
        return read_midi(inputs[0]).qpm
    except (MidiReadError, OSError):
        return DEFAULT_QPM  # the mode's own reading names what is wrong with the file


def in_a_row(sequences: Sequence[NoteSequence], steps: int) -> NoteSequence:
    """Sequences one after another, each `steps` long."""
    notes = [
        dataclasses.replace(n, start_step=n.start_step + i * steps, end_step=n.end_step + i * steps)
        for i, seq in enumerate(sequences)
        for n in seq.notes
    ]
    return NoteSequence(notes=notes, total_steps=steps * len(sequences))


def write_all(
    generator: Generator,
    groups: dict[str, list[dict]],
    output: Path,
    together: bool,
    page: bool = True,
    qpm: float = DEFAULT_QPM,
    overview: Path | None = None,
) -> list[Path]:
    """MIDI at `qpm` per example of each group (file stem -> examples; and each group of more than one in a row
    if `together`), plus piano rolls and index.html (`overview` first) unless `page` is False."""
    output.mkdir(parents=True, exist_ok=True)
    paths, sequences = [], []
    for stem, examples in groups.items():
        group = [generator.to_notes(e) for e in examples]
        names = [f"{stem}_{i:03d}.mid" for i in range(len(group))]
        if together and len(group) > 1:
            group.append(in_a_row(group, generator.representation.num_steps))
            names.append(f"{stem}_all.mid")
        for name, seq in zip(names, group, strict=True):
            paths.append(output / name)
            write_midi(seq, paths[-1], qpm=qpm)
        sequences += group
    if page:
        heading = f"{generator.representation.name}: {', '.join(groups)}"
        render.write_page(output, paths, sequences, heading, overview)
    return paths


def run(
    generator: Generator,
    mode: str,
    output: Path,
    *,
    inputs: Sequence[str] = (),
    num: int = 4,
    temperature: float = 0.5,
    seed: int = 0,
    steps: int = 5,
    z_scale: float = 1.0,
    use_sigma: bool = False,
    z_path: str | Path | None = None,
    attribute: str | Path | None = None,
    amounts: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    similarity: float = 0.8,
    qpm: float | None = None,
    page: bool = True,
) -> list[Path]:
    """Does one mode's work and returns the files written (the MIDI files, at `tempo_of(inputs, qpm)`; with
    `page`, piano rolls and index.html beside them)."""
    output_folder(output)
    tempo = tempo_of(inputs, qpm)
    if temperature < 0:
        raise ValueError(f"--temperature must be >= 0 (near 0 is argmax), got {temperature}")
    if (z_path is not None) != (mode == "decode"):
        raise ValueError("--mode decode reads its latent vectors from --z FILE.npy; other modes take no --z")
    if mode == "decode":
        if inputs:
            raise ValueError("--mode decode reads --z, not --input")
        z = load_latents(z_path, generator.spec.z_size)
        examples = generator.decode(z, seed, temperature)
        return write_all(generator, {"decode": examples}, output, together=True, page=page, qpm=tempo)
    if (attribute is not None) != (mode == "attribute"):
        raise ValueError("--mode attribute takes an --attribute vector; other modes take none")
    if mode == "attribute":
        if len(inputs) != 1:
            raise ValueError("--mode attribute takes exactly one --input")
        if not amounts:
            raise ValueError("--amounts: give at least one amount of the vector to add")
        vector = load_latents(attribute, generator.spec.z_size, "--attribute")
        if len(vector) != 1:
            raise ValueError(f"--attribute {attribute}: holds {len(vector)} vectors, not one")
        mu = generator.encode(windows_of(generator, inputs[0])[:1])[0]
        z = mu + np.asarray(amounts, np.float32)[:, None] * vector
        # The same draws at every amount, so the steps differ only by the vector.
        examples = generator.decode(z, seed, temperature, same_draws=True)
        return write_all(generator, {Path(attribute).stem: examples}, output, together=True, page=page, qpm=tempo)
    if mode in ("sample", "similar"):
        if num < 1:
            raise ValueError(f"--num must be >= 1, got {num}")
        z = np.random.default_rng(seed).standard_normal((num, generator.spec.z_size)).astype(np.float32) * z_scale
        if mode == "sample":
            return write_all(
                generator,
                {"sample": generator.decode(z, seed, temperature)},
                output,
                together=False,
                page=page,
                qpm=tempo,
            )
        if len(inputs) != 1:
            raise ValueError("--mode similar takes exactly one --input")
        if not 0.0 <= similarity <= 1.0:
            raise ValueError(f"--similarity must be in [0, 1] (1: the input's own z), got {similarity}")
        window = windows_of(generator, inputs[0])[:1]
        z = similar_latents(generator.encode(window)[0][0], similarity, z)
        # The window as the model read it comes first, to compare with.
        groups = {"input": window, "similar": generator.decode(z, seed, temperature)}
        return write_all(generator, groups, output, together=True, page=page, qpm=tempo)
    if mode in ("reconstruct", "encode"):
        if len(inputs) != 1:
            raise ValueError(f"--mode {mode} takes exactly one --input")
        windows = windows_of(generator, inputs[0])
        mu, sigma = generator.encode(windows)
        if mode == "encode":
            output.mkdir(parents=True, exist_ok=True)
            np.save(output / "mu.npy", mu)
            np.save(output / "sigma.npy", sigma)
            np.save(output / "window_start.npy", np.array([w["window_start"] for w in windows]))
            return [output / "mu.npy", output / "sigma.npy", output / "window_start.npy"]
        z = mu + sigma * np.random.default_rng(seed).standard_normal(mu.shape).astype(np.float32) if use_sigma else mu
        # The windows as the model read them follow, to compare with.
        groups = {"reconstruction": generator.decode(z, seed, temperature), "input": windows}
        return write_all(generator, groups, output, together=True, page=page, qpm=tempo)
    if mode == "interpolate":
        if len(inputs) not in (2, 4):
            raise ValueError(
                "--mode interpolate takes two --input files (a path between them) or four (a grid between its "
                f"corners: top left, top right, bottom left, bottom right), got {len(inputs)}"
            )
        if steps < 2:
            raise ValueError(f"--steps must be >= 2, got {steps}")
        mus = [generator.encode(windows_of(generator, path)[:1])[0][0] for path in inputs]
        if len(mus) == 2:
            z = np.stack([slerp(mus[0], mus[1], t) for t in np.linspace(0.0, 1.0, steps)]).astype(np.float32)
            # The same draws at every step, so the path changes only with z.
            examples = generator.decode(z, seed, temperature, same_draws=True)
            return write_all(generator, {"interpolation": examples}, output, together=True, page=page, qpm=tempo)
        examples = generator.decode(grid_latents(mus, steps).reshape(steps * steps, -1), seed, temperature, True)
        rows = {f"grid_row{r}": examples[r * steps : (r + 1) * steps] for r in range(steps)}
        overview = None
        if page:
            output.mkdir(parents=True, exist_ok=True)
            a, b, c, d = (Path(path).stem for path in inputs)
            title = f"{generator.representation.name}: {a} to {b} (top row), {c} to {d} (bottom row)"
            grid = [[generator.to_notes(e) for e in row] for row in rows.values()]
            overview = render.piano_roll_grid(grid, output / "grid.png", title)
        paths = write_all(generator, rows, output, together=True, page=page, qpm=tempo, overview=overview)
        return paths + ([overview] if overview else [])
    raise ValueError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")


def amounts_from(values: Sequence[str]) -> list[float]:
    """--amounts as numbers, or an error naming the flag."""
    try:
        amounts = [float(v) for v in values]
    except ValueError:
        amounts = [np.nan]
    if not np.isfinite(amounts).all():
        raise ValueError(f"--amounts must be finite numbers separated by commas, got {','.join(values)}")
    return amounts


def define_checkpoint_flags() -> None:
    from absl import flags

    flags.DEFINE_string("workdir", None, "Training workdir; its latest checkpoint is used.")
    flags.DEFINE_string("checkpoint", None, "One checkpoint folder, WORKDIR/checkpoints/STEP.")
    flags.DEFINE_enum(
        "compute_dtype", None, ("float32", "bfloat16"), "Matmul precision for this run (default: as trained)."
    )


def define_data_flags(split: str, split_help: str) -> None:
    """The checkpoint's flags, plus --split and --data_path for a command that reads converted data with it."""
    from absl import flags

    define_checkpoint_flags()
    flags.DEFINE_string("split", split, split_help)
    flags.DEFINE_string("data_path", None, "Converted data (default: the config's, or the demo data in workdir).")


def restore_from_flags(argv: Sequence[str]) -> tuple[Generator, Path]:
    """The generator named by --workdir or --checkpoint, and its workdir; a clean exit when there is none."""
    from absl import flags

    from musicvae_jax.cli import fail

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.workdir is None and FLAGS.checkpoint is None:
        fail("give --workdir or --checkpoint")
    try:
        generator = Generator.restore(FLAGS.workdir, FLAGS.checkpoint, FLAGS.compute_dtype)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    return generator, Path(FLAGS.workdir) if FLAGS.workdir else Path(FLAGS.checkpoint).parent.parent


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from musicvae_jax.cli import fail

    FLAGS = flags.FLAGS
    generator, workdir = restore_from_flags(argv)
    try:
        output = Path(FLAGS.output) if FLAGS.output else workdir / "samples" / FLAGS.mode
        if FLAGS.taps and FLAGS.input:
            raise ValueError("give --input files or --taps rhythms, not both")
        inputs = write_tap_files(generator, FLAGS.taps, output, FLAGS.qpm) if FLAGS.taps else FLAGS.input or ()
        paths = run(
            generator,
            FLAGS.mode,
            output,
            inputs=inputs,
            num=FLAGS.num,
            temperature=FLAGS.temperature,
            seed=FLAGS.seed,
            steps=FLAGS.steps,
            z_scale=FLAGS.z_scale,
            use_sigma=FLAGS.use_sigma,
            z_path=FLAGS.z,
            attribute=attribute_path(workdir, FLAGS.attribute) if FLAGS.attribute else None,
            amounts=amounts_from(FLAGS.amounts),
            similarity=FLAGS.similarity,
            qpm=FLAGS.qpm,
            page=FLAGS.page,
        )
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    print(f"wrote {len(paths)} files to {output}")


def _define_flags() -> None:
    from absl import flags

    define_checkpoint_flags()
    flags.DEFINE_enum("mode", "sample", MODES, "What to do.")
    flags.DEFINE_multi_string(
        "input", None, "MIDI file(s): one for reconstruct, similar, encode and attribute; two or four to interpolate."
    )
    flags.DEFINE_multi_string(
        "taps",
        None,
        "For a tap2drum model, instead of --input: a rhythm typed per 16th-note step, x a tap, X an accent, . a "
        "rest, whole bars (e.g. 'X..x..x...x.X...'); written to OUTPUT/taps_I.mid and read as --input.",
    )
    flags.DEFINE_string("output", None, "Output folder (default WORKDIR/samples/MODE).")
    flags.DEFINE_integer("num", 4, "Sequences to sample (sample), or variations of the input (similar).")
    flags.DEFINE_float("temperature", 0.5, "Softmax temperature; near 0 is argmax.")
    flags.DEFINE_integer("seed", 0, "Seed for z and for sampling.")
    flags.DEFINE_integer("steps", 5, "Interpolation steps, both ends included (with four inputs, per side).")
    flags.DEFINE_float(
        "similarity", 0.8, "For --mode similar: 1 decodes the input's own z, 0 draws from the prior ignoring it."
    )
    flags.DEFINE_float("z_scale", 1.0, "Scale of z drawn from the prior.")
    flags.DEFINE_bool("use_sigma", False, "Reconstruct from a sample of q(z|x) instead of its mean.")
    flags.DEFINE_string("z", None, "For --mode decode: a .npy file of latent vectors [N, z_size] (encode's mu.npy).")
    flags.DEFINE_string(
        "attribute",
        None,
        "For --mode attribute: a vector's name in WORKDIR/attributes (musicvae_jax.attributes) or .npy.",
    )
    flags.DEFINE_float(
        "qpm", None, "Tempo of the MIDI written, quarter notes per minute (default: the first --input's, else 120)."
    )
    flags.DEFINE_bool("page", True, "Draw a piano roll of each file and write index.html (--nopage: MIDI only).")
    flags.DEFINE_list("amounts", ["-2", "-1", "0", "1", "2"], "For --mode attribute: multiples of the vector to add.")


if __name__ == "__main__":
    from musicvae_jax import cli

    cli.run(main, _define_flags, config_flag_names=())
