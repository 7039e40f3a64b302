"""Tiny model specs and random batches for the model tests; tiny trained checkpoints for generation's."""

from __future__ import annotations

import numpy as np

from musicvae_jax.models.vae import ModelSpec
from musicvae_jax.representations import get_representation

FAMILIES = {
    "mel_2bar": dict(representation="melody_2bar"),
    "drums_2bar": dict(representation="drums_2bar"),
    "mel_16bar_hier": dict(representation="melody_16bar", conductor_sizes=(12,)),
    "trio_hier": dict(representation="trio_16bar", conductor_sizes=(12, 10)),
    "trio_flat": dict(representation="trio_16bar"),
    "groove_humanize": dict(representation="groove_2bar", groove_input="hits", dropout_keep=0.5),
}


def tiny_spec(family: str, **overrides) -> ModelSpec:
    kwargs = dict(FAMILIES[family])
    representation = get_representation(kwargs["representation"])
    kwargs = {
        "num_steps": representation.num_steps,
        "num_bars": representation.num_bars,
        "encoder_sizes": (16, 8),
        "decoder_sizes": (16, 12),
        "z_size": 6,
        **kwargs,
        **overrides,
    }
    return ModelSpec(**kwargs)


def random_batch(spec: ModelSpec, batch_size: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    batch = {}
    for name, field in get_representation(spec.representation).fields.items():
        shape = (batch_size, *field.shape)
        if name in ("hits",):
            batch[name] = (rng.random(shape) < 0.3).astype(np.float32)
        elif name == "velocities":
            batch[name] = rng.random(shape).astype(np.float32)
        elif name == "offsets":
            batch[name] = (rng.random(shape) - 0.5).astype(np.float32)
        else:
            high = 512 if field.dtype == "uint16" else 90
            batch[name] = rng.integers(0, high, shape).astype(field.dtype)  # the loader's dtypes (uint8, uint16)
    if "hits" in batch:
        batch["velocities"] *= batch["hits"]
        batch["offsets"] *= batch["hits"]
    batch["lengths"] = np.full(batch_size, spec.num_steps, np.int32)
    batch["weights"] = np.ones(batch_size, np.float32)
    return batch


def trained_workdir(root, module, variant, representation, steps=6):
    """A tiny model of a config module trained a few steps on the demo corpus; returns its workdir (root/run,
    beside root/midi and root/data)."""
    from musicvae_jax import train
    from musicvae_jax.convert import convert
    from musicvae_jax.demo_corpus import write_demo_corpus

    write_demo_corpus(root / "midi", num_songs=4)
    data = root / "data"
    convert([str(root / "midi")], data, representation, workers=1)
    config = module.get_config(variant)
    config.batch_size = 4
    config.train.update(
        dict(num_steps=steps, log_every=steps, eval_every=steps, eval_batches=1, checkpoint_every=steps)
    )
    train.train_and_evaluate(config, root / "run", data)
    return root / "run"
