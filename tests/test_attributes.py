"""Attribute vectors: each attribute measured on hand-made sequences, vectors from latents that carry an attribute,
and the whole path on a real (tiny, briefly trained) checkpoint: vectors, their check, and sampling with one."""

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO
from model_helpers import trained_workdir

from configs import drums_2bar
from musicvae_jax.attributes import attribute_vectors, compute, encode_split, measure
from musicvae_jax.midi_io import read_midi
from musicvae_jax.sample import Generator, amounts_from, run, windows_of, write_all


def melody_row(notes: dict[int, int], steps: int = 16) -> np.ndarray:
    """Tokens with a note-on of each {step: MIDI pitch}, held (no event) in between."""
    tokens = np.zeros(steps, np.int64)
    for step, pitch in notes.items():
        tokens[step] = pitch - 19
    return tokens


def test_melody_attributes_of_a_hand_made_melody():
    # C4 on the beat, E4 on a 16th off the eighths, G4 on the off-beat eighth, F#4 on the beat.
    tokens = np.stack([melody_row({0: 60, 3: 64, 6: 67, 8: 66}), melody_row({4: 62}), melody_row({})])
    values = measure("melody_2bar", {"tokens": tokens})
    np.testing.assert_allclose(values["note_density"], [4 / 16, 1 / 16, 0])
    np.testing.assert_allclose(values["average_interval"], [(4 + 3 + 1) / 3, np.nan, np.nan])
    np.testing.assert_allclose(values["c_diatonic"], [3 / 4, 1, np.nan])
    np.testing.assert_allclose(values["syncopation_16th"], [1 / 4, 0, np.nan])
    np.testing.assert_allclose(values["syncopation_8th"], [1 / 4, 0, np.nan])


def test_drum_attributes_count_hits_by_kind_and_position():
    tokens = np.zeros((1, 16), np.int64)
    tokens[0, 0] = 1 + 4  # kick + closed hi-hat
    tokens[0, 2] = 4  # closed hi-hat on the off-beat eighth
    tokens[0, 4] = 2 + 8  # snare + open hi-hat
    tokens[0, 7] = 256 + 16  # ride + low tom, on a 16th
    values = measure("drums_2bar", {"tokens": tokens})
    expected = dict(hit_density=7 / 16, kick_density=1 / 16, snare_density=1 / 16, hi_hat_density=3 / 16)
    expected.update(tom_density=1 / 16, cymbal_density=1 / 16, syncopation_16th=1 / 4, syncopation_8th=1 / 4)
    assert values.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(values[name], [value], err_msg=name)


def test_groove_attributes_read_the_hits_velocities_and_offsets():
    hits, velocities, offsets = (np.zeros((1, 32, 9), np.float32) for _ in range(3))
    hits[0, 0, 0] = hits[0, 4, 1] = 1
    velocities[0, 0, 0], velocities[0, 4, 1] = 100 / 127, 50 / 127
    offsets[0, 0, 0], offsets[0, 4, 1] = 0.2, -0.1
    velocities[0, 9, 2], offsets[0, 9, 2] = 1.0, 0.4  # values where no hit is played do not count
    values = measure("groove_2bar", {"hits": hits, "velocities": velocities, "offsets": offsets})
    np.testing.assert_allclose(values["hit_density"], [2 / 32])
    np.testing.assert_allclose(values["velocity"], [75], rtol=1e-5)
    np.testing.assert_allclose(values["laid_back"], [0.05], rtol=1e-5)
    np.testing.assert_allclose(values["looseness"], [0.15], rtol=1e-5)


def test_a_trio_measures_each_part_under_its_name():
    arrays = {"melody": melody_row({0: 72, 8: 76}, 256)[None], "bass": melody_row({0: 36}, 256)[None]}
    arrays["drums"] = np.ones((1, 256), np.int64)  # a kick on every step
    values = measure("trio_16bar", arrays)
    np.testing.assert_allclose(values["melody_note_density"], [2 / 256])
    np.testing.assert_allclose(values["melody_average_interval"], [4])
    np.testing.assert_allclose(values["bass_note_density"], [1 / 256])
    np.testing.assert_allclose(values["drums_kick_density"], [1])


def test_a_vector_points_where_the_attribute_grows_in_z():
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(16)
    direction /= np.linalg.norm(direction)
    value = rng.random(400)
    mu = value[:, None] * 3 * direction + 0.1 * rng.standard_normal((400, 16))
    constant = np.full(400, 0.5)
    sparse = np.where(np.arange(400) < 5, value, np.nan)
    vectors, figures = attribute_vectors({"grows": value, "constant": constant, "sparse": sparse}, mu)
    assert list(vectors) == ["grows"]
    cosine = vectors["grows"] @ direction / np.linalg.norm(vectors["grows"])
    assert cosine > 0.99
    # The quartiles' means are about 3 * (0.875 - 0.125) apart along the direction.
    np.testing.assert_allclose(vectors["grows"] @ direction, 2.25, rtol=0.05)
    assert figures["grows"]["top_examples"] == figures["grows"]["bottom_examples"] == 100
    assert "quartiles are equal" in figures["constant"]["skipped"]
    assert "defined on 5 examples" in figures["sparse"]["skipped"]


@pytest.fixture(scope="module")
def drums_run(tmp_path_factory):
    return trained_workdir(tmp_path_factory.mktemp("drums"), drums_2bar, "tiny", "drums_2bar")


def test_vectors_and_their_check_from_a_checkpoint(drums_run, tmp_path):
    generator = Generator.restore(drums_run)
    with pytest.raises(ValueError, match="no split 'nope'; it has train, eval"):  # named before any encoding
        compute(generator, drums_run.parent / "data", tmp_path / "none", check_split="nope")
    assert not (tmp_path / "none").exists()
    summary = compute(generator, drums_run.parent / "data", tmp_path, max_examples=40, check_examples=6)
    made = sorted(p.stem for p in tmp_path.glob("*.npy"))
    assert made and made == sorted(n for n, f in summary["attributes"].items() if "skipped" not in f)
    assert summary["examples"] == 40 and summary["check"]["examples"] == 6
    mu, arrays = encode_split(generator, drums_run.parent / "data", "train", 40)  # the same random 40
    np.testing.assert_allclose(summary["mu_spread"], mu.std(axis=0).mean(), rtol=1e-5)
    vectors, _ = attribute_vectors(measure("drums_2bar", arrays), mu)
    for name in made:
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), vectors[name])
    for name in made:
        assert np.load(tmp_path / f"{name}.npy").shape == (generator.spec.z_size,)
        assert summary["check"]["change_in_std"][name].keys() == set(made)
    assert json.loads((tmp_path / "attributes.json").read_text()) == json.loads(json.dumps(summary))
    assert (tmp_path / "attributes.png").stat().st_size > 0


def test_sampling_with_an_attribute_vector(drums_run, tmp_path):
    """One file per amount of the vector added to the first window's mu; amount 0 is the reconstruction."""
    generator = Generator.restore(drums_run)
    midi = sorted((drums_run.parent / "midi").glob("*.mid"))[0]
    vector = tmp_path / "louder.npy"
    np.save(vector, np.ones(generator.spec.z_size, np.float32))
    paths = run(generator, "attribute", tmp_path / "out", inputs=[str(midi)], attribute=vector, amounts=[-1, 0, 3])
    assert [p.name for p in paths] == ["louder_000.mid", "louder_001.mid", "louder_002.mid", "louder_all.mid"]
    first = windows_of(generator, midi)[:1]
    zero = generator.decode(generator.encode(first)[0], 0, 0.5)
    qpm = read_midi(midi).qpm  # the input's tempo
    (direct,) = write_all(generator, {"r": zero}, tmp_path / "direct", together=False, page=False, qpm=qpm)
    assert paths[1].read_bytes() == direct.read_bytes()
    with pytest.raises(ValueError, match="--attribute .*: holds 2 vectors, not one"):
        np.save(tmp_path / "two.npy", np.ones((2, generator.spec.z_size), np.float32))
        run(generator, "attribute", tmp_path / "out", inputs=[str(midi)], attribute=tmp_path / "two.npy")
    with pytest.raises(ValueError, match="--mode attribute takes exactly one --input"):
        run(generator, "attribute", tmp_path / "out", attribute=vector)
    with pytest.raises(ValueError, match="other modes take none"):
        run(generator, "sample", tmp_path / "out", attribute=vector)
    for amounts in (["1", "x"], ["nan"], ["inf"]):
        with pytest.raises(ValueError, match="--amounts must be finite numbers separated by commas"):
            amounts_from(amounts)
    assert amounts_from(["-1.5", "2"]) == [-1.5, 2.0]


def test_the_commands_a_user_runs(drums_run, tmp_path):
    def command(module, *args):
        return subprocess.run(
            [sys.executable, "-m", module, f"--workdir={drums_run}", *args],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    missing = command("musicvae_jax.sample", "--mode=attribute", "--attribute=hit_density", "--input=x.mid")
    assert missing.returncode != 0 and "no attribute vectors in" in missing.stderr, missing.stderr
    data = f"--data_path={drums_run.parent / 'data'}"
    made = command("musicvae_jax.attributes", data, "--max_examples=40", "--check_examples=6")
    assert made.returncode == 0, made.stderr
    assert "| vector added |" in made.stdout and "attribute vectors from 40 train examples" in made.stdout
    assert "the vectors' lengths: " in made.stdout and "per dimension (standard deviation" in made.stdout
    names = sorted(p.stem for p in (drums_run / "attributes").glob("*.npy"))
    midi = sorted((drums_run.parent / "midi").glob("*.mid"))[0]
    used = command("musicvae_jax.sample", "--mode=attribute", f"--attribute={names[0]}", f"--input={midi}",
                   "--amounts=-1,1", f"--output={tmp_path}")  # fmt: skip
    assert used.returncode == 0, used.stderr
    assert sorted(p.name for p in tmp_path.glob("*.mid")) == [f"{names[0]}_{i}.mid" for i in ("000", "001", "all")]
    wrong = command("musicvae_jax.sample", "--mode=attribute", "--attribute=nope", f"--input={midi}")
    assert wrong.returncode != 0 and f"no such vector in {drums_run / 'attributes'} (there: " in wrong.stderr
    assert "Traceback" not in missing.stderr + made.stderr + used.stderr + wrong.stderr
