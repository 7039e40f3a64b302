"""Magenta's released MusicVAE checkpoints as checkpoints of ours, to sample, evaluate and fine-tune.

    python -m musicvae_jax.import_magenta --magenta_checkpoint cat-mel_2bar_big.ckpt \\
        --config configs/mel_2bar.py:big --workdir runs/cat-mel_2bar_big
    python -m musicvae_jax.sample --workdir runs/cat-mel_2bar_big --mode sample --num 8

The models compute what Magenta's do (SPEC.md sections 2-3 follow them), so
the weights carry over as they are, rearranged: Magenta's LSTM cells
(LSTMBlockCell) keep one [input + hidden, 4 * hidden] kernel per layer, gates
in our order (input, cell, forget, output), and add 1.0 to the forget gate at
run time, where ours has that 1.0 in its bias; its dense kernels are
[in, out] where our decoder's are [out, in]. Variable names are those of
Magenta's graph: `encoder/cell_L/bidirectional_rnn/{fw,bw}/...`,
`decoder/...` (flat), `decoder/hierarchical_level_0/...` (the conductor) and
`core_decoder/[core_decoder_I/]decoder/...` (the bar decoders). The sizes
are read from the checkpoint and must match the config's; a mismatch names
the config fields. Optimizer slots and global_step are not weights; the
imported checkpoint starts a fresh Adam at Magenta's global_step.

GrooVAE: Magenta's tensors hold a hit's offset as 2 * (grid time - onset)
in steps, -2 times ours (onset - grid time), so the weights reading offsets
are scaled by -2 and the offset outputs negated (ours are 0.5 * tanh, its
tanh); its tap2drum encoder reads 27 values with the taps on the open
hi-hat's, ours the 3 tap values, so those three rows are kept.

Not imported: NADE decoders, chord-conditioned and hierarchical-encoder
models; each is named when met.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from musicvae_jax import checkpoints, train
from musicvae_jax.models.vae import ModelSpec, MusicVAE, init_params
from musicvae_jax.tf_checkpoint import CheckpointError, read_checkpoint

FORGET_BIAS = 1.0  # LSTMBlockCell's default, added to the forget gate's pre-activation at every step
ENCODER_CELL = "encoder/cell_{layer}/bidirectional_rnn/{direction}/multi_rnn_cell/cell_0/lstm_cell/"
DECODER_CELL = "multi_rnn_cell/cell_{layer}/lstm_cell/"
CONDUCTOR = "decoder/hierarchical_level_0/"
GROOVE_OFFSETS = slice(18, 27)  # [hits(9), velocities(9), offsets(9)]: the same layout in both
MAGENTA_OFFSET_PER_OURS = -2.0
TAP_COLUMNS = [3, 12, 21]  # Magenta's tapify: the taps' hit, velocity and offset on the open hi-hat (class 3)


class MagentaCheckpoint:
    """A Magenta checkpoint's variables, read by name, with errors that name the file and the variable."""

    def __init__(self, prefix: str | Path):
        self.prefix = str(prefix)
        self.variables = read_checkpoint(prefix)

    def has(self, name: str) -> bool:
        return name in self.variables

    def get(self, name: str, *alternatives: str) -> np.ndarray:
        for candidate in (name, *alternatives):
            if candidate in self.variables:
                return self.variables[candidate].astype(np.float32)
        raise CheckpointError(f"{self.prefix}: no variable {name} (is this a MusicVAE checkpoint?)")

    def dense(self, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        """(kernel [in, out], bias [out]) of a dense layer."""
        return self.get(prefix + "kernel"), self.get(prefix + "bias")

    def lstm(self, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        """(kernel [in + H, 4H], bias [4H]) of one LSTMBlockCell (older TensorFlow named them weights, biases)."""
        return self.get(prefix + "kernel", prefix + "weights"), self.get(prefix + "bias", prefix + "biases")

    def layers(self, cell: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every layer of a stack, `cell` formatted with layer=0, 1, ... until one is missing."""
        found = []
        while self.has(cell.format(layer=len(found)) + "kernel") or self.has(cell.format(layer=len(found)) + "weights"):
            found.append(self.lstm(cell.format(layer=len(found))))
        return found

    def step(self) -> int:
        return int(self.variables["global_step"]) if "global_step" in self.variables else 0


def lstm_weights(kernel: np.ndarray, bias: np.ndarray, layer: int) -> dict[str, np.ndarray]:
    """One Magenta LSTM layer as ours: w_x [4H, in], w_h [4H, H], b [4H] with the forget bias folded in."""
    hidden = bias.shape[0] // 4
    b = bias.copy()
    b[2 * hidden : 3 * hidden] += FORGET_BIAS
    return {f"w_x_{layer}": kernel[:-hidden].T, f"w_h_{layer}": kernel[-hidden:].T, f"b_{layer}": b}


def stack_weights(layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    for i, (kernel, bias) in enumerate(layers):
        weights.update(lstm_weights(kernel, bias, i))
    return weights


def sizes(layers: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[int, ...]:
    return tuple(bias.shape[0] // 4 for _, bias in layers)


def core_prefixes(ckpt: MagentaCheckpoint) -> list[str]:
    """Where each decoder core's variables are: one flat decoder, or the bar decoders of a hierarchical one."""
    if not ckpt.has(CONDUCTOR + "initial_state/kernel"):
        return ["decoder/"]
    if ckpt.has("core_decoder/decoder/z_to_initial_state/kernel"):
        return ["core_decoder/decoder/"]
    prefixes = []
    while ckpt.has(f"core_decoder/core_decoder_{len(prefixes)}/decoder/z_to_initial_state/kernel"):
        prefixes.append(f"core_decoder/core_decoder_{len(prefixes)}/decoder/")
    if not prefixes:
        raise CheckpointError(f"{ckpt.prefix}: a conductor but no bar decoder (core_decoder/...) variables")
    return prefixes


def magenta_encoder_depth(spec: ModelSpec) -> int:
    """What Magenta's encoder reads per step: always a performance's 27 values for GrooVAE, as ours otherwise."""
    return sum(27 if p.kind == "groove" else p.encoder_depth for p in spec.parts)


def to_our_groove_layout(params: dict, spec: ModelSpec) -> None:
    """Rescales, in place, the weights that read or write groove offsets (see the module docstring)."""
    (part,) = spec.parts
    for direction in ("forward", "backward"):
        w_x = params["encoder"][direction]["w_x_0"]
        w_x[:, GROOVE_OFFSETS] *= MAGENTA_OFFSET_PER_OURS
        if part.encoder_depth == 3:
            params["encoder"][direction]["w_x_0"] = w_x[:, TAP_COLUMNS]
    core = params["core_0"]
    core["lstm"]["w_x_0"][:, GROOVE_OFFSETS] *= MAGENTA_OFFSET_PER_OURS
    core["head_kernel"][GROOVE_OFFSETS] *= -1.0
    core["head_bias"][GROOVE_OFFSETS] *= -1.0


def check_supported(ckpt: MagentaCheckpoint) -> None:
    names = list(ckpt.variables)
    unsupported = {
        "/nade/": "a NADE decoder (multi-label outputs)",
        "encoder/hierarchical_level_": "a hierarchical encoder",
        "decoder/hierarchical_level_1/": "a conductor of more than one level",
    }
    for marker, what in unsupported.items():
        if any(marker in n for n in names):
            raise CheckpointError(f"{ckpt.prefix}: {what}, which musicvae-jax does not model")


def checkpoint_spec(ckpt: MagentaCheckpoint) -> dict:
    """The model sizes the checkpoint's variables have, by config field."""
    check_supported(ckpt)
    encoder = ckpt.layers(ENCODER_CELL.replace("{direction}", "fw"))
    if not encoder:
        raise CheckpointError(
            f"{ckpt.prefix}: no bidirectional encoder ({ENCODER_CELL.format(layer=0, direction='fw')}"
            "kernel); is this a MusicVAE checkpoint?"
        )
    cores = [ckpt.layers(prefix + DECODER_CELL) for prefix in core_prefixes(ckpt)]
    return {
        "model.encoder_sizes": sizes(encoder),
        "model.decoder_sizes": sizes(cores[0]),
        "model.conductor_sizes": sizes(ckpt.layers(CONDUCTOR + "cell_{layer}/lstm_cell/")),
        "model.z_size": int(ckpt.get("encoder/mu/bias").shape[0]),
    }


def check_config_fits(ckpt: MagentaCheckpoint, spec: ModelSpec, config_name: str) -> None:
    """Fails naming each config field whose value differs from the checkpoint's, and what the config decodes."""
    found = checkpoint_spec(ckpt)
    ours = {
        "model.encoder_sizes": spec.encoder_sizes,
        "model.decoder_sizes": spec.decoder_sizes,
        "model.conductor_sizes": spec.conductor_sizes,
        "model.z_size": spec.z_size,
    }
    differ = [f"{k} is {ours[k]} in {config_name}, {v} in the checkpoint" for k, v in found.items() if ours[k] != v]
    if differ:
        raise CheckpointError(
            f"{ckpt.prefix} holds another model: {'; '.join(differ)} (pick the config or variant "
            "of its sizes, or set the fields with --config.model.FIELD=...)"
        )
    depths = [int(ckpt.get(p + "output_projection/bias").shape[0]) for p in core_prefixes(ckpt)]
    cores = spec.core_specs()
    expected = [c.input_depth for c in cores]
    if depths != expected:
        raise CheckpointError(
            f"{ckpt.prefix} decodes {depths} values per step, the config's representation "
            f"{spec.representation} {expected} (melody 90, drums 512, trio 90 + 90 + 512)"
        )
    encoder_input = ckpt.lstm(ENCODER_CELL.format(layer=0, direction="fw"))[0].shape[0] - spec.encoder_sizes[0]
    ours_input = magenta_encoder_depth(spec)
    if encoder_input != ours_input:
        raise CheckpointError(
            f"{ckpt.prefix}: its encoder reads {encoder_input} values per step, {spec.representation}'s "
            f"{ours_input} (a drum model with one-hot rather than roll inputs, or a conditioned one?)"
        )
    for prefix, core in zip(core_prefixes(ckpt), cores, strict=True):
        kernel, _ = ckpt.lstm(prefix + DECODER_CELL.format(layer=0))
        cond = spec.conductor_sizes[-1] if spec.hierarchical else spec.z_size
        reads = kernel.shape[0] - spec.decoder_sizes[0]
        if reads != core.input_depth + cond:
            raise CheckpointError(
                f"{ckpt.prefix}: its decoder {prefix} reads {reads} values per step, ours "
                f"{core.input_depth + cond} (previous output + {'embedding' if spec.hierarchical else 'z'}); "
                "a chord-conditioned model?"
            )


def magenta_params(ckpt: MagentaCheckpoint, spec: ModelSpec) -> dict:
    """Our parameter tree (float32 numpy arrays) from a Magenta checkpoint of the same model."""
    params: dict = {"encoder": {}}
    for ours, direction in (("forward", "fw"), ("backward", "bw")):
        params["encoder"][ours] = stack_weights(ckpt.layers(ENCODER_CELL.replace("{direction}", direction)))
    for head in ("mu", "sigma"):
        kernel, bias = ckpt.dense(f"encoder/{head}/")
        params["encoder"][head] = {"kernel": kernel, "bias": bias}
    for i, prefix in enumerate(core_prefixes(ckpt)):
        init_kernel, init_bias = ckpt.dense(prefix + "z_to_initial_state/")
        head_kernel, head_bias = ckpt.dense(prefix + "output_projection/")
        params[f"core_{i}"] = {
            "lstm": stack_weights(ckpt.layers(prefix + DECODER_CELL)),
            "init_kernel": init_kernel.T,
            "init_bias": init_bias,
            "head_kernel": head_kernel.T,
            "head_bias": head_bias,
        }
    if spec.hierarchical:
        init_kernel, init_bias = ckpt.dense(CONDUCTOR + "initial_state/")
        params["conductor"] = {
            "lstm": stack_weights(ckpt.layers(CONDUCTOR + "cell_{layer}/lstm_cell/")),
            "init_kernel": init_kernel.T,
            "init_bias": init_bias,
        }
    if spec.parts[0].kind == "groove":
        to_our_groove_layout(params, spec)
    expected = jax.eval_shape(lambda: init_params(MusicVAE(spec), jax.random.key(0)))["params"]
    expected_shapes = jax.tree.map(lambda x: x.shape, expected)
    got_shapes = jax.tree.map(lambda x: x.shape, params)
    if got_shapes != expected_shapes:
        raise CheckpointError(
            f"{ckpt.prefix}: its weights arrange into {got_shapes}, the model's are {expected_shapes}"
        )
    return params


def import_checkpoint(magenta_prefix: str | Path, config: ConfigDict, workdir: str | Path, config_name: str) -> Path:
    """Writes WORKDIR/checkpoints/STEP (params, a fresh optimizer, the config) from a Magenta checkpoint."""
    train.validate_config(config)
    spec, tspec = train.model_spec(config), train.TrainSpec.from_config(config)
    ckpt = MagentaCheckpoint(magenta_prefix)
    check_config_fits(ckpt, spec, config_name)
    params = jax.tree.map(jnp.asarray, magenta_params(ckpt, spec))
    state = train.state_from_params(params, tspec, ckpt.step())
    manager = checkpoints.make_manager(workdir, max_to_keep=1, async_save=False)
    try:
        if manager.latest_step() is not None:
            raise FileExistsError(f"--workdir {workdir} already holds checkpoints; import into a new folder")
        checkpoints.save(manager, ckpt.step(), state, None, config)
        manager.wait_until_finished()
        return Path(manager.directory) / str(ckpt.step())
    finally:
        manager.close()


def define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Config of the checkpoint's model, e.g. configs/mel_2bar.py:big.")
    flags.DEFINE_string("magenta_checkpoint", None, "A Magenta checkpoint: its prefix (…/model.ckpt) or .index file.")
    flags.DEFINE_string("workdir", None, "A new folder for the imported checkpoint (sample and evaluate read it).")


def main(argv: Sequence[str]) -> None:
    from absl import flags
    from ml_collections import config_flags

    from musicvae_jax.cli import fail

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("magenta_checkpoint", "config", "workdir"):
        if getattr(FLAGS, name) is None:
            fail(f"give --{name}")
    try:
        config_name = config_flags.get_config_filename(FLAGS["config"])
        written = import_checkpoint(FLAGS.magenta_checkpoint, FLAGS.config, FLAGS.workdir, config_name)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        fail(str(e))
    print(f"imported {FLAGS.magenta_checkpoint} into {written}")


if __name__ == "__main__":
    from musicvae_jax import cli

    cli.run(main, define_flags)
