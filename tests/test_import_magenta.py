"""Magenta checkpoints: TensorFlow's file format read without TensorFlow, and the weights computing what
TensorFlow computed with them.

The fixtures (tests/fixtures/magenta, written by make_fixtures.py with
TensorFlow) are checkpoints in Magenta's variable layout, saved by
TensorFlow's SaveV2 op, with the encoder's mu and sigma and the decoder's
teacher-forced logits that TensorFlow's LSTMBlockCell op computed from them.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import jax
import numpy as np
import pytest
from helpers import REPO, module_cli, sample_cli

from configs import drums_2bar, groovae, mel_2bar, mel_16bar, trio
from musicvae_jax import train
from musicvae_jax.export_magenta import magenta_js_converter, magenta_variables
from musicvae_jax.import_magenta import (
    ENCODER_CELL,
    TAP_COLUMNS,
    MagentaCheckpoint,
    check_config_fits,
    magenta_params,
)
from musicvae_jax.models.vae import MusicVAE
from musicvae_jax.tf_checkpoint import CheckpointError, _crc_bytes, crc32c, read_checkpoint

FIXTURES = REPO / "tests" / "fixtures" / "magenta"
# Each fixture's config and the sizes its weights have (make_fixtures.py), as command-line overrides.
CASES = {
    "mel_2bar": (mel_2bar, "configs/mel_2bar.py:tiny", ["(8,7)", "(6,5)", "()", "4"]),
    "drums_2bar": (drums_2bar, "configs/drums_2bar.py:tiny", ["(8,)", "(6,)", "()", "4"]),
    "mel_16bar": (mel_16bar, "configs/mel_16bar.py:tiny", ["(6,)", "(4,)", "(5,)", "4"]),
    "groovae_2bar_humanize": (groovae, "configs/groovae.py:tiny", ["(8,)", "(6,)", "()", "4"]),
    "groovae_2bar_tap": (groovae, "configs/groovae.py:tap,tiny", ["(8,)", "(6,)", "()", "4"]),
    "trio_16bar": (trio, "configs/trio.py:tiny", ["(6,)", "(5,)", "(6,4)", "4"]),
}
FIELDS = ("encoder_sizes", "decoder_sizes", "conductor_sizes", "z_size")


def fixture(name: str) -> str:
    return str(FIXTURES / name / "model.ckpt-1234")


def size_flags(name: str) -> list[str]:
    return [f"--config.model.{field}={value}" for field, value in zip(FIELDS, CASES[name][2], strict=True)]


def config_of(name: str):
    module, path, values = CASES[name]
    config = module.get_config(path.split(":")[1])
    for field, value in zip(FIELDS, values, strict=True):
        config.model[field] = eval(value)  # the same literals the command line gives
    return config


def test_reads_a_checkpoint_tensorflow_wrote():
    variables = read_checkpoint(fixture("mel_2bar"))
    assert variables["global_step"].dtype == np.int64 and int(variables["global_step"]) == 1234
    kernel = variables["encoder/cell_1/bidirectional_rnn/bw/multi_rnn_cell/cell_0/lstm_cell/kernel"]
    assert kernel.dtype == np.float32 and kernel.shape == (16 + 7, 4 * 7)
    assert variables["encoder/mu/kernel/Adam"].shape == variables["encoder/mu/kernel"].shape
    assert read_checkpoint(fixture("mel_2bar") + ".index").keys() == variables.keys()


def test_crc32c():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    data = np.random.default_rng(0).integers(0, 256, 100_003, dtype=np.uint8).tobytes()
    assert crc32c(data) == _crc_bytes(0xFFFFFFFF, data) ^ 0xFFFFFFFF  # lanes joined == byte by byte


@pytest.fixture
def copied(tmp_path):
    folder = tmp_path / "mel"
    shutil.copytree(FIXTURES / "mel_2bar", folder)
    return folder / "model.ckpt-1234"


def test_a_corrupted_byte_is_named(copied):
    data = copied.with_name(copied.name + ".data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"variable \S+'s bytes fail their CRC32C check"):
        read_checkpoint(copied)


def test_a_truncated_or_missing_data_file_is_named(copied):
    data = copied.with_name(copied.name + ".data-00000-of-00001")
    data.write_bytes(data.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated download"):
        read_checkpoint(copied)
    os.remove(data)
    with pytest.raises(CheckpointError, match=r"is in \S+data-00000-of-00001, which does not exist"):
        read_checkpoint(copied)


def test_other_files_are_not_read_as_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "model.ckpt")
    (tmp_path / "model.ckpt.index").write_bytes(b"MThd" + bytes(60))
    with pytest.raises(CheckpointError, match="not a TensorFlow checkpoint index"):
        read_checkpoint(tmp_path / "model.ckpt")


@pytest.mark.parametrize("name", CASES)
def test_the_imported_model_computes_what_tensorflow_computed(name):
    spec = train.model_spec(config_of(name))
    ckpt = MagentaCheckpoint(fixture(name))
    check_config_fits(ckpt, spec, name)
    expected = np.load(FIXTURES / name / "expected.npz")
    if spec.parts[0].kind == "groove":
        batch = {k: expected[k] for k in ("hits", "velocities", "offsets")}
    else:
        batch = {p.name: expected[f"tokens_{i}"] for i, p in enumerate(spec.parts)}
    batch["lengths"] = np.full((len(expected["mu"]),), spec.num_steps, np.int32)
    out = MusicVAE(spec).apply(
        {"params": magenta_params(ckpt, spec)}, batch, jax.random.key(0), train=False, use_mean=True
    )
    np.testing.assert_allclose(out["mu"], expected["mu"], atol=2e-5)
    np.testing.assert_allclose(out["sigma"], expected["sigma"], atol=2e-5)
    for i, part in enumerate(spec.parts):
        logits = np.asarray(out["raw"][part.name])[:, expected["kept_steps"]]
        np.testing.assert_allclose(logits, expected[f"logits_{i}"], atol=2e-5, err_msg=part.name)


def test_import_then_sample_from_the_command_line(tmp_path):
    workdir = tmp_path / "trio"
    config = CASES["trio_16bar"][1]
    args = ["--magenta_checkpoint", fixture("trio_16bar"), "--config", config, "--workdir", str(workdir)]
    wrong = module_cli("musicvae_jax.import_magenta", *args)
    assert wrong.returncode == 2
    assert "model.encoder_sizes is (64,) in configs/trio.py:tiny, (6,) in the checkpoint" in wrong.stderr
    assert "model.conductor_sizes is (64,) in configs/trio.py:tiny, (6, 4) in the checkpoint" in wrong.stderr
    assert not (workdir / "checkpoints").exists()

    done = module_cli("musicvae_jax.import_magenta", *args, *size_flags("trio_16bar"))
    assert done.returncode == 0, done.stderr
    assert f"into {workdir / 'checkpoints' / '1234'}" in done.stdout
    again = module_cli("musicvae_jax.import_magenta", *args, *size_flags("trio_16bar"))
    assert again.returncode == 2 and "already holds checkpoints" in again.stderr

    sampled = sample_cli("--workdir", str(workdir), "--mode", "sample", "--num", "2", "--output", str(tmp_path / "out"))
    assert sampled.returncode == 0, sampled.stderr
    assert len(list((tmp_path / "out").glob("*.mid"))) == 2


def test_a_model_of_other_outputs_is_refused(tmp_path):
    melody_as_drums = module_cli(
        "musicvae_jax.import_magenta", "--magenta_checkpoint", fixture("mel_2bar"),
        "--config", "configs/drums_2bar.py:tiny", *size_flags("mel_2bar"), "--workdir", str(tmp_path / "a"),
    )  # fmt: skip
    assert melody_as_drums.returncode == 2
    assert "decodes [90] values per step, the config's representation drums_2bar [512]" in melody_as_drums.stderr


def test_training_goes_on_from_imported_weights(tmp_path):
    """Fine-tuning: the imported checkpoint holds no data position; training starts the data from the beginning,
    at the checkpoint's step, from its weights."""
    workdir, config = tmp_path / "mel", CASES["mel_2bar"][1]
    flags = ["--config", config, *size_flags("mel_2bar"), "--workdir", str(workdir)]
    assert (
        module_cli("musicvae_jax.import_magenta", "--magenta_checkpoint", fixture("mel_2bar"), *flags).returncode == 0
    )
    run = module_cli(
        "musicvae_jax.main", *flags, "--config.train.num_steps=1236", "--config.train.eval_every=2",
        "--config.train.checkpoint_every=2", "--config.data.demo_songs=4",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Starting from the imported weights at step 1234" in run.stderr
    assert "steps 1234 -> 1236" in run.stdout
    assert (workdir / "checkpoints" / "1236" / "data").is_dir()


@pytest.mark.parametrize("name", CASES)
def test_export_gives_back_the_magenta_variables_imported(name):
    """export_magenta's mapping is the inverse of the import's: the fixture's weights come back (the forget bias,
    added and taken away again, within float32 rounding)."""
    spec = train.model_spec(config_of(name))
    ckpt = MagentaCheckpoint(fixture(name))
    exported = magenta_variables(magenta_params(ckpt, spec), spec)
    weights = {k: v.copy() for k, v in ckpt.variables.items() if k != "global_step" and not k.endswith("/Adam")}
    if spec.parts[0].encoder_depth == 3:  # a tap model reads 3 of Magenta's 27 inputs: the others come back unread
        for direction in ("fw", "bw"):
            kernel = weights[ENCODER_CELL.format(layer=0, direction=direction) + "kernel"]
            kernel[[c for c in range(27) if c not in TAP_COLUMNS]] = 0.0
    assert exported.keys() == weights.keys()
    for key, value in weights.items():
        np.testing.assert_allclose(exported[key], value, atol=1e-6, err_msg=key)


def test_export_for_magenta_js(tmp_path):
    workdir, config = tmp_path / "drums", CASES["drums_2bar"][1]
    flags = ["--config", config, *size_flags("drums_2bar"), "--workdir", str(workdir)]
    assert (
        module_cli("musicvae_jax.import_magenta", "--magenta_checkpoint", fixture("drums_2bar"), *flags).returncode == 0
    )
    done = module_cli("musicvae_jax.export_magenta", "--workdir", str(workdir), "--output", str(tmp_path / "web"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "web" / "config.json").read_text()) == {
        "type": "MusicVAE",
        "dataConverter": {"type": "DrumsConverter", "args": {"numSteps": 32}},
    }
    (group,) = json.loads((tmp_path / "web" / "weights_manifest.json").read_text())
    data = b"".join((tmp_path / "web" / path).read_bytes() for path in group["paths"])
    variables, offset = read_checkpoint(fixture("drums_2bar")), 0
    for weight in group["weights"]:
        size = int(np.prod(weight["shape"])) * 4
        value = np.frombuffer(data[offset : offset + size], "<f4").reshape(weight["shape"])
        np.testing.assert_allclose(value, variables[weight["name"]], atol=1e-6, err_msg=weight["name"])
        offset += size
    assert offset == len(data) and len(group["weights"]) == len(variables) - 2  # less global_step and the Adam slot

    two_layers = tmp_path / "mel"
    mel_flags = ["--config", CASES["mel_2bar"][1], *size_flags("mel_2bar"), "--workdir", str(two_layers)]
    assert (
        module_cli("musicvae_jax.import_magenta", "--magenta_checkpoint", fixture("mel_2bar"), *mel_flags).returncode
        == 0
    )
    refused = module_cli("musicvae_jax.export_magenta", "--workdir", str(two_layers), "--output", str(tmp_path / "m"))
    assert refused.returncode == 2
    assert "magenta.js runs a one-layer bidirectional encoder; this model has 2 layers" in refused.stderr
    assert not (tmp_path / "m").exists()


def test_what_magenta_js_can_run():
    def converter(module, variant, **model):
        config = module.get_config(variant)
        for field, value in model.items():
            config.model[field] = value
        return magenta_js_converter(train.model_spec(config))

    assert converter(mel_2bar, "tiny") == {
        "type": "MelodyConverter",
        "args": {"numSteps": 32, "minPitch": 21, "maxPitch": 108},
    }
    assert converter(groovae, "tiny")["args"] == {"numSteps": 32, "humanize": True, "tapify": False}
    assert converter(groovae, "4bar,tiny")["args"] == {"numSteps": 64, "humanize": False, "tapify": False}
    assert converter(groovae, "tap_fixed_velocity,tiny")["args"] == {"numSteps": 32, "humanize": False, "tapify": True}
    for variant, message in (
        ("tap,tiny", "no input like config.model.groove_input='taps'"),
        ("infill,tiny", "no input like config.model.groove_input='without:closed_hihat,open_hihat'"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            converter(groovae, variant)
    with pytest.raises(ValueError, match="conductor only beside a hierarchical encoder"):
        converter(trio, "tiny")
    with pytest.raises(ValueError, match="one-layer bidirectional encoder; this model has 2 layers"):
        converter(mel_16bar, "flat,tiny", encoder_sizes=(64, 64))


@pytest.mark.parametrize(
    "variable, what",
    [
        ("decoder/nade/w_enc", "a NADE decoder"),
        ("encoder/hierarchical_level_0/cell_0/bidirectional_rnn/fw/multi_rnn_cell/cell_0/lstm_cell/kernel",
         "a hierarchical encoder"),
    ],
)  # fmt: skip
def test_magentas_other_models_are_named(variable, what):
    ckpt = MagentaCheckpoint(fixture("drums_2bar"))
    ckpt.variables[variable] = np.zeros((2, 2), np.float32)
    with pytest.raises(CheckpointError, match=f"{re.escape(what)}.*, which musicvae-jax does not model"):
        check_config_fits(ckpt, train.model_spec(config_of("drums_2bar")), "drums")
