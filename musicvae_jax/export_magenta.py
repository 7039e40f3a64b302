"""Our checkpoints in Magenta's layout: for magenta.js web apps, and back into Magenta's variable names.

    python -m musicvae_jax.export_magenta --workdir runs/drums --output web/drums_2bar

writes a folder magenta.js loads as it loads Magenta's own hosted models
(`new mm.MusicVAE(URL)`): `config.json` (the data converter), and
`weights_manifest.json` with `group1-shard*.bin`, the weights under Magenta's
variable names (`magenta_variables`, the inverse of import_magenta's
mapping). magenta.js runs a one-layer bidirectional encoder and a flat
decoder, or a conductor only beside its hierarchical encoder, so 2-bar
melody, drums and GrooVAE models export; others are refused, naming why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from musicvae_jax import sample
from musicvae_jax.import_magenta import (
    CONDUCTOR,
    DECODER_CELL,
    ENCODER_CELL,
    FORGET_BIAS,
    GROOVE_OFFSETS,
    MAGENTA_OFFSET_PER_OURS,
    TAP_COLUMNS,
)
from musicvae_jax.models.vae import ModelSpec
from musicvae_jax.representations import melody

SHARD_BYTES = 4 * 1024 * 1024  # tfjs's own shard size


def lstm_variables(weights: dict, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """One of our LSTM layers as Magenta's (kernel [in + H, 4H], bias [4H] without the forget bias)."""
    w_x, w_h, b = (np.asarray(weights[f"{k}_{layer}"], np.float32) for k in ("w_x", "w_h", "b"))
    hidden = w_h.shape[1]
    bias = b.copy()
    bias[2 * hidden : 3 * hidden] -= FORGET_BIAS
    return np.concatenate([w_x.T, w_h.T], axis=0), bias


def core_prefixes_for(spec: ModelSpec) -> list[str]:
    if not spec.hierarchical:
        return ["decoder/"]
    if len(spec.parts) == 1:
        return ["core_decoder/decoder/"]
    return [f"core_decoder/core_decoder_{i}/decoder/" for i in range(len(spec.parts))]


def _stack(variables: dict, cell: str, weights: dict) -> None:
    layers = sum(1 for k in weights if k.startswith("w_x_"))
    for layer in range(layers):
        kernel, bias = lstm_variables(weights, layer)
        variables[cell.format(layer=layer) + "kernel"] = kernel
        variables[cell.format(layer=layer) + "bias"] = bias


def magenta_variables(params: dict, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Our parameters under Magenta's variable names and layouts (float32)."""
    variables: dict[str, np.ndarray] = {}
    encoder = params["encoder"]
    for ours, direction in (("forward", "fw"), ("backward", "bw")):
        weights = dict(encoder[ours])
        if spec.parts[0].kind == "groove":
            weights["w_x_0"] = magenta_groove_encoder_kernel(np.asarray(weights["w_x_0"], np.float32))
        _stack(variables, ENCODER_CELL.replace("{direction}", direction), weights)
    for head in ("mu", "sigma"):
        variables[f"encoder/{head}/kernel"] = np.asarray(encoder[head]["kernel"], np.float32)
        variables[f"encoder/{head}/bias"] = np.asarray(encoder[head]["bias"], np.float32)
    for i, prefix in enumerate(core_prefixes_for(spec)):
        core = params[f"core_{i}"]
        lstm = dict(core["lstm"])
        head_kernel = np.asarray(core["head_kernel"], np.float32).copy()
        head_bias = np.asarray(core["head_bias"], np.float32).copy()
        if spec.parts[0].kind == "groove":
            lstm["w_x_0"] = np.asarray(lstm["w_x_0"], np.float32).copy()
            lstm["w_x_0"][:, GROOVE_OFFSETS] /= MAGENTA_OFFSET_PER_OURS
            head_kernel[GROOVE_OFFSETS] *= -1.0
            head_bias[GROOVE_OFFSETS] *= -1.0
        _stack(variables, prefix + DECODER_CELL, lstm)
        variables[prefix + "z_to_initial_state/kernel"] = np.asarray(core["init_kernel"], np.float32).T
        variables[prefix + "z_to_initial_state/bias"] = np.asarray(core["init_bias"], np.float32)
        variables[prefix + "output_projection/kernel"] = head_kernel.T
        variables[prefix + "output_projection/bias"] = head_bias
    if spec.hierarchical:
        conductor = params["conductor"]
        _stack(variables, CONDUCTOR + "cell_{layer}/lstm_cell/", conductor["lstm"])
        variables[CONDUCTOR + "initial_state/kernel"] = np.asarray(conductor["init_kernel"], np.float32).T
        variables[CONDUCTOR + "initial_state/bias"] = np.asarray(conductor["init_bias"], np.float32)
    return variables


def magenta_groove_encoder_kernel(w_x: np.ndarray) -> np.ndarray:
    """Our GrooVAE encoder's input kernel [4H, 27 or 3] as one reading Magenta's 27 values (offsets -2x ours;
    3 tap values: Magenta's taps on the open hi-hat's columns, the rest unread)."""
    if w_x.shape[1] == 3:
        full = np.zeros((w_x.shape[0], 27), np.float32)
        full[:, TAP_COLUMNS] = w_x
        w_x = full
    else:
        w_x = w_x.copy()
    w_x[:, GROOVE_OFFSETS] /= MAGENTA_OFFSET_PER_OURS
    return w_x


def magenta_js_converter(spec: ModelSpec) -> dict:
    """The `dataConverter` of a magenta.js config.json; a model magenta.js cannot run is refused, naming why."""
    if len(spec.encoder_sizes) != 1:
        raise ValueError(
            f"magenta.js runs a one-layer bidirectional encoder; this model has {len(spec.encoder_sizes)} layers "
            "(config.model.encoder_sizes)"
        )
    if spec.hierarchical:
        raise ValueError("magenta.js runs a conductor only beside a hierarchical encoder, which this model has not")
    steps = {"numSteps": spec.num_steps}
    if spec.representation.startswith("melody"):
        return {
            "type": "MelodyConverter",
            "args": {**steps, "minPitch": melody.MIN_PITCH, "maxPitch": melody.MAX_PITCH},
        }
    if spec.representation.startswith("drums"):
        return {"type": "DrumsConverter", "args": steps}
    if spec.representation.startswith("groove"):
        task = spec.groove_input
        if task not in ("performance", "hits", "taps_fixed_velocity"):
            raise ValueError(
                f"magenta.js's GrooveConverter has no input like config.model.groove_input={task!r} "
                "(it reads the performance, its hits (humanize) or taps without velocity)"
            )
        return {
            "type": "GrooveConverter",
            "args": {**steps, "humanize": task == "hits", "tapify": task == "taps_fixed_velocity"},
        }
    raise ValueError(f"magenta.js has no converter for {spec.representation} with a flat decoder")


def write_tfjs(variables: dict[str, np.ndarray], folder: Path, converter: dict) -> list[Path]:
    """weights_manifest.json, its shards and config.json in `folder`, as tfjs and magenta.js read them."""
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(variables)
    data = b"".join(np.ascontiguousarray(variables[n], "<f4").tobytes() for n in names)
    count = max(1, -(-len(data) // SHARD_BYTES))
    paths = [f"group1-shard{i + 1}of{count}.bin" for i in range(count)]
    written = []
    for i, path in enumerate(paths):
        (folder / path).write_bytes(data[i * SHARD_BYTES : (i + 1) * SHARD_BYTES])
        written.append(folder / path)
    weights = [{"name": n, "shape": list(variables[n].shape), "dtype": "float32"} for n in names]
    (folder / "weights_manifest.json").write_text(json.dumps([{"paths": paths, "weights": weights}]))
    (folder / "config.json").write_text(json.dumps({"type": "MusicVAE", "dataConverter": converter}, indent=1))
    return [*written, folder / "weights_manifest.json", folder / "config.json"]


def define_flags() -> None:
    from absl import flags

    sample.define_checkpoint_flags()
    flags.DEFINE_string("output", None, "A folder for the magenta.js model (config.json, weights_manifest.json, ...).")


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from musicvae_jax.cli import fail

    if flags.FLAGS.output is None:
        fail("give --output")
    generator, _ = sample.restore_from_flags(argv)
    try:
        converter = magenta_js_converter(generator.spec)
    except ValueError as e:
        fail(f"cannot export for magenta.js: {e}")
    written = write_tfjs(magenta_variables(generator.params, generator.spec), Path(flags.FLAGS.output), converter)
    print(f"wrote {len(written)} files to {flags.FLAGS.output}: load it with new mm.MusicVAE(URL of that folder)")


if __name__ == "__main__":
    from musicvae_jax import cli

    cli.run(main, define_flags, config_flag_names=())
