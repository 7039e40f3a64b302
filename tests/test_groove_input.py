"""GrooVAE's tasks: what the encoder reads of a performance (humanize, tap2drum, infill), and taps read from MIDI."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import sample_cli
from ml_collections import ConfigDict
from model_helpers import random_batch, tiny_spec, trained_workdir

from configs import groovae
from musicvae_jax import train
from musicvae_jax.midi_io import read_midi, write_midi
from musicvae_jax.models import groove_input
from musicvae_jax.models.vae import MusicVAE, init_params
from musicvae_jax.notes import Note, NoteSequence
from musicvae_jax.representations.groove import taps_from_pattern
from musicvae_jax.sample import Generator, run, windows_of, write_tap_files

KEY = jax.random.key(0)
KICK, SNARE, CLOSED_HH, OPEN_HH, RIDE = 0, 1, 2, 3, 8


def one_bar(hits: dict) -> dict:
    """A batch of one sequence of 3 steps from {(step, class): (velocity, offset)}."""
    batch = {k: np.zeros((1, 3, 9), np.float32) for k in ("hits", "velocities", "offsets")}
    for (step, c), (velocity, offset) in hits.items():
        batch["hits"][0, step, c], batch["velocities"][0, step, c], batch["offsets"][0, step, c] = 1, velocity, offset
    return batch


def test_taps_are_each_steps_loudest_hit():
    batch = one_bar({(0, KICK): (0.5, 0.1), (0, SNARE): (0.8, -0.2), (2, RIDE): (0.3, 0.4)})
    taps = groove_input.encoder_values(batch, "taps")
    np.testing.assert_allclose(taps[0], [[1, 0.8, -0.2], [0, 0, 0], [1, 0.3, 0.4]], rtol=1e-6)
    fixed = groove_input.encoder_values(batch, "taps_fixed_velocity")
    np.testing.assert_allclose(fixed[0], [[1, 0, -0.2], [0, 0, 0], [1, 0, 0.4]], rtol=1e-6)
    assert groove_input.encoder_depth("taps") == 3


def test_without_leaves_the_named_classes_out_and_hits_keeps_hits_only():
    batch = one_bar({(0, KICK): (0.5, 0.1), (0, CLOSED_HH): (0.8, -0.2), (1, OPEN_HH): (0.6, 0.3)})
    full = np.asarray(groove_input.encoder_values(batch, "performance"))
    infill = np.asarray(groove_input.encoder_values(batch, "without:closed_hihat, open_hihat"))
    hats = [c + 9 * k for k in range(3) for c in (CLOSED_HH, OPEN_HH)]
    assert full[..., hats].any() and not infill[..., hats].any()
    np.testing.assert_array_equal(np.delete(infill, hats, axis=-1), np.delete(full, hats, axis=-1))
    hits = np.asarray(groove_input.encoder_values(batch, "hits"))
    np.testing.assert_array_equal(hits[..., :9], full[..., :9])
    assert not hits[..., 9:].any()


@pytest.mark.parametrize(
    "value, message",
    [
        ("tap", "config.model.groove_input must be one of performance, hits, taps, taps_fixed_velocity"),
        ("without:", "name the drum classes to leave out, from kick, snare, closed_hihat"),
        ("without:kick,hihat", r"\(unknown: hihat\)"),
        ("without:" + ",".join(groove_input.DRUM_CLASS_NAMES), "leaves the encoder nothing to read"),
    ],
)
def test_bad_groove_inputs_name_the_field(value, message):
    config = groovae.get_config("tiny")
    config.model.groove_input = value
    with pytest.raises(ValueError, match=message):
        train.validate_config(config)


def test_checkpoints_from_before_the_field_humanize():
    """Their saved config has model.humanize and no groove_input."""
    legacy = ConfigDict(groovae.get_config("tiny").to_dict())
    del legacy.model["groove_input"]
    legacy.model.humanize = True
    train.validate_config(legacy)
    assert train.model_spec(legacy).groove_input == "hits"
    legacy.model.humanize = False
    assert train.model_spec(legacy).groove_input == "performance"


def test_a_run_keeps_its_task_on_resume():
    """Hits and an infill's performance have the same shapes; resuming with another task is named, not trained."""
    saved = groovae.get_config("tiny").to_dict()
    infill = groovae.get_config("infill,tiny")
    message = "holds another model (config.model.groove_input is without:closed_hihat,open_hihat here, hits there)"
    with pytest.raises(ValueError, match=re.escape(message)):
        train.check_checkpoint_fits(train.model_spec(infill), saved, "checkpoint 12")
    same = groovae.get_config("tiny")
    same.model.unroll = 2
    train.check_checkpoint_fits(train.model_spec(same), saved, "checkpoint 12")


def permute_classes(batch: dict, order: list[int]) -> dict:
    return {**batch, **{k: batch[k][..., order] for k in ("hits", "velocities", "offsets")}}


def scaled(batch: dict, key: str, factor: float, classes=slice(None)) -> dict:
    values = batch[key].copy()
    values[..., classes] *= factor
    return {**batch, key: values}


def without_hits(batch: dict, classes) -> dict:
    return {
        **batch,
        **{k: np.where(np.isin(np.arange(9), classes), 0, batch[k]) for k in ("hits", "velocities", "offsets")},
    }


SWAPPED = [8, 7, 6, 5, 4, 3, 2, 1, 0]  # every hit to another class, same step, same velocity and offset
# Per task: changes to the performance its encoder must not see, and changes it must.
CASES = {
    "performance": ([], [lambda b: scaled(b, "velocities", 0.5), lambda b: permute_classes(b, SWAPPED)]),
    "hits": (
        [lambda b: scaled(b, "velocities", 0.5), lambda b: scaled(b, "offsets", 0.0)],
        [lambda b: permute_classes(b, SWAPPED)],
    ),
    "taps": ([lambda b: permute_classes(b, SWAPPED)], [lambda b: scaled(b, "velocities", 0.5)]),
    "taps_fixed_velocity": (
        [lambda b: permute_classes(b, SWAPPED), lambda b: scaled(b, "velocities", 0.5)],
        [lambda b: scaled(b, "offsets", 0.0), lambda b: without_hits(b, list(range(9)))],
    ),
    "without:closed_hihat,open_hihat": (
        [lambda b: without_hits(b, [CLOSED_HH, OPEN_HH]), lambda b: scaled(b, "velocities", 0.5, [CLOSED_HH, OPEN_HH])],
        [lambda b: without_hits(b, [KICK]), lambda b: scaled(b, "velocities", 0.5, [SNARE])],
    ),
}


@pytest.mark.parametrize("task", list(CASES))
def test_the_encoder_reads_what_its_task_shows_it(task):
    spec = dataclasses.replace(tiny_spec("groove_humanize"), groove_input=task)
    model = MusicVAE(spec)
    params = init_params(model, KEY)
    batch = random_batch(spec)
    encode = jax.jit(lambda b: model.apply(params, b, method=MusicVAE.encode)[0])
    mu = encode(batch)
    unseen, seen = CASES[task]
    for change in unseen:
        np.testing.assert_allclose(encode(change(batch)), mu, rtol=1e-5, atol=1e-6)
    for change in seen:
        assert not jnp.allclose(encode(change(batch)), mu, rtol=1e-3, atol=1e-4)


def rhythm_file(path, notes: list[tuple[int, int, int]], is_drum: bool) -> str:
    """A 2-bar MIDI file of (step, pitch, velocity) notes, on drums or a piano."""
    sequence = NoteSequence(
        notes=[
            Note(pitch=p, velocity=v, start_step=s, end_step=s + 1, is_drum=is_drum, instrument=9 if is_drum else 0)
            for s, p, v in notes
        ],
        total_steps=32,
    )
    write_midi(sequence, path)
    return str(path)


@pytest.fixture(scope="module")
def tap_run(tmp_path_factory):
    return trained_workdir(tmp_path_factory.mktemp("tap"), groovae, "tap,tiny", "groove_2bar")


def test_a_tap_model_hears_a_rhythm_played_on_anything(tap_run, tmp_path_factory):
    """Taps on a piano, one pitch or many, encode as the same rhythm on drums does (loudest hit per step)."""
    generator = Generator.restore(tap_run)
    assert generator.spec.groove_input == "taps" and generator.reads_taps
    tmp = tmp_path_factory.mktemp("files")
    steps = [0, 4, 6, 8, 12, 16, 20, 22, 24, 28]
    velocities = [100, 60, 70, 110, 60, 100, 60, 70, 110, 90]
    piano = rhythm_file(tmp / "piano.mid", [(s, 60, v) for s, v in zip(steps, velocities, strict=True)], is_drum=False)
    chords = rhythm_file(
        tmp / "chords.mid",
        [(s, p, v - 20 * (p != 64)) for s, v in zip(steps, velocities, strict=True) for p in (60, 64)],
        False,
    )
    drums = rhythm_file(
        tmp / "drums.mid",
        [(s, 36, v) for s, v in zip(steps, velocities, strict=True)] + [(s, 42, 30) for s in steps],  # quieter hi-hats
        is_drum=True,
    )
    mus = [generator.encode(windows_of(generator, f))[0] for f in (piano, chords, drums)]
    np.testing.assert_allclose(mus[1], mus[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mus[2], mus[0], rtol=1e-5, atol=1e-6)
    other = rhythm_file(tmp / "other.mid", [(s, 60, 100) for s in range(0, 32, 3)], is_drum=False)
    assert not np.allclose(generator.encode(windows_of(generator, other))[0], mus[0], atol=1e-4)
    # Reconstruct writes the model's drums for the taps, and the taps as it read them (one window: no "_all" files).
    paths = run(generator, "reconstruct", tmp / "out", inputs=[piano], temperature=0.0, page=False)
    assert [p.name for p in paths] == ["reconstruction_000.mid", "input_000.mid"]


@pytest.fixture(scope="module")
def humanize_run(tmp_path_factory):
    return trained_workdir(tmp_path_factory.mktemp("humanize"), groovae, "tiny", "groove_2bar", steps=1)


def test_a_model_of_drums_does_not_read_a_piano(humanize_run, tmp_path_factory):
    generator = Generator.restore(humanize_run)
    piano = rhythm_file(tmp_path_factory.mktemp("files") / "piano.mid", [(0, 60, 100), (8, 60, 90)], is_drum=False)
    with pytest.raises(ValueError, match="no usable groove_2bar window"):
        windows_of(generator, piano)


def test_typed_taps_are_16th_note_steps():
    sequence = taps_from_pattern("X..x ..-. | x...x...")
    assert sequence.total_steps == 16
    assert [(n.start_step, n.velocity, n.pitch, n.is_drum) for n in sequence.notes] == [
        (0, 120, 36, True),
        (3, 80, 36, True),
        (8, 80, 36, True),
        (12, 80, 36, True),
    ]
    for pattern, message in [
        ("x..o....x.......", r"'o' is not x \(tap\), X \(accent\) or \. \(rest\)"),
        ("x...x...x...", "12 steps; give whole bars of 16"),
        ("................", "with at least one tap"),
    ]:
        with pytest.raises(ValueError, match=message):
            taps_from_pattern(pattern)


def test_taps_typed_on_the_command_line(tap_run, tmp_path):
    """--taps writes the rhythm as a MIDI file (at --qpm) and reconstructs from it as from --input; other models
    refuse it."""
    out = sample_cli(
        f"--workdir={tap_run}",
        "--mode=reconstruct",
        "--temperature=0",
        "--nopage",
        f"--output={tmp_path}",
        "--taps=X...x.X.X...x.X. X...x.X.X...x.X.",
        "--qpm=90",
    )
    assert out.returncode == 0, out.stderr
    taps = read_midi(tmp_path / "taps_0.mid")
    assert taps.qpm == pytest.approx(90.0) and read_midi(tmp_path / "reconstruction_000.mid").qpm == pytest.approx(90.0)
    assert [n.start_step for n in taps.notes] == [s + b for b in (0, 16) for s in (0, 4, 6, 8, 12, 14)]
    generator = Generator.restore(tap_run)
    (expected,) = generator.decode(generator.encode(windows_of(generator, tmp_path / "taps_0.mid"))[0], 0, 0.0)
    (made,) = generator.representation.windows(read_midi(tmp_path / "reconstruction_000.mid"))
    np.testing.assert_array_equal(made["hits"], expected["hits"])
    both = sample_cli(f"--workdir={tap_run}", "--mode=reconstruct", "--taps=x" + "." * 31, "--input=a.mid")
    assert both.returncode == 2 and "give --input files or --taps rhythms, not both" in both.stderr
    slow = sample_cli(f"--workdir={tap_run}", "--mode=reconstruct", "--taps=x" + "." * 31, "--qpm=0")
    assert slow.returncode == 2 and "--qpm must be a positive tempo" in slow.stderr, slow.stderr


def test_taps_need_a_tap_model(humanize_run, tmp_path):
    generator = Generator.restore(humanize_run)
    with pytest.raises(ValueError, match="--taps is for tap2drum models .* this one is groove_2bar reading hits"):
        write_tap_files(generator, ["x" + "." * 15], tmp_path / "out")
    assert not (tmp_path / "out").exists()
