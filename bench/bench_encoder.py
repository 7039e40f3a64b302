"""The encoder alone against torch.nn.LSTM, beside the whole training step: where the step's time goes.

    python bench/bench_encoder.py --only drums_2bar_small,mel_16bar_hier --batch 32 --batch_16bar 4 --steps 10

For each config at its reference size (or its `tiny` variant with
--size tiny, batch 32): forward and backward of the bidirectional encoder
(loss: sum of mu and sigma) in ours and in `torch.nn.LSTM`, and the whole
teacher-forced training step of both (bench/suite.py's timing), in one
process, medians after a warm-up. Speed ratios are torch's time over ours.
"rest" is the step less the encoder: decoders, heads, loss and optimizer.
The encoder is the same computation in both frameworks (a bidirectional
stack over every step); only the decoders differ in how they are scheduled.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import CONFIGS, random_batch, time_config  # noqa: E402
from common import machine, median_seconds, torch_caller, torch_setup  # noqa: E402
from flops import lstm_flops, train_step_flops  # noqa: E402
from suite import SIXTEEN_BAR, config_for, time_torch  # noqa: E402

from musicvae_jax import host_memory, train  # noqa: E402
from musicvae_jax.models.encoder import BidirectionalEncoder  # noqa: E402
from musicvae_jax.models.vae import ModelSpec, encoder_projection  # noqa: E402


def encoder_batch(spec: ModelSpec, batch: int) -> tuple[dict, np.ndarray]:
    """A random batch of the representation and the encoder's input features for it (what both frameworks read)."""
    data = {k: jnp.asarray(v) for k, v in random_batch(spec.representation, batch).items()}
    features = np.concatenate([np.asarray(p.encoder_features(data)) for p in spec.parts], axis=-1)
    return data, features


def ours_seconds(spec: ModelSpec, data: dict, inputs: np.ndarray, steps: int) -> float:
    """Our encoder as the model runs it: one-hot parts' input projection gathered (vae.encoder_projection)."""
    encoder = BidirectionalEncoder(spec.encoder_sizes, spec.z_size, sequence_vjp=spec.sequence_vjp)
    x = jnp.asarray(inputs)
    lengths = data["lengths"]
    params = encoder.init(jax.random.key(0), x, lengths)

    def loss(params):
        mu, sigma = encoder.apply(params, x, lengths, encoder_projection(spec.parts, data))
        return mu.sum() + sigma.sum()

    grad = jax.jit(jax.grad(loss))
    return median_seconds(lambda: jax.block_until_ready(grad(params)), steps, warmup=3)


def torch_seconds(spec: ModelSpec, inputs: np.ndarray, steps: int) -> float:
    import torch

    hidden = spec.encoder_sizes[0]
    layers = len(spec.encoder_sizes)
    lstm = torch.nn.LSTM(inputs.shape[-1], hidden, num_layers=layers, bidirectional=True, batch_first=True)
    mu, sigma = torch.nn.Linear(2 * hidden, spec.z_size), torch.nn.Linear(2 * hidden, spec.z_size)
    x = torch.from_numpy(inputs)

    def step():
        lstm.zero_grad(set_to_none=True)
        _, (h, _) = lstm(x)
        top = torch.cat([h[-2], h[-1]], dim=-1)
        (mu(top).sum() + torch.nn.functional.softplus(sigma(top)).sum()).backward()

    return median_seconds(step, steps, warmup=3)


def main() -> None:
    host_memory.set_up()  # before JAX starts its threads
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="drums_2bar_small,mel_2bar_small,mel_2bar_big,mel_16bar_hier,trio_16bar_hier")
    parser.add_argument("--size", choices=("real", "tiny"), default="real")
    parser.add_argument("--batch", type=int, default=32, help="batch of the 2-bar configs at reference size")
    parser.add_argument("--batch_16bar", type=int, default=4, help="batch of the 16-bar configs at reference size")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--steps_16bar", type=int, default=3)
    args = parser.parse_args()
    import torch

    call_torch, close_torch = torch_caller("cpu")
    setup = call_torch(torch_setup, "cpu")
    print(f"machine: {machine()}, jax {jax.__version__}, torch {torch.__version__}; torch: {setup}")
    print(
        "| config | batch | encoder share of FLOPs | encoder s, ours | encoder s, torch | encoder speed, ours / torch "
        "| step s, ours | step s, torch | rest s, ours | rest s, torch | rest speed, ours / torch |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.only.split(","):
        if name not in CONFIGS:
            sys.exit(f"--only: unknown config {name!r}; known: {', '.join(CONFIGS)}")
        config = config_for(name, args.size, args.batch, args.batch_16bar)
        spec = train.model_spec(config)
        steps = args.steps_16bar if name in SIXTEEN_BAR and args.size == "real" else args.steps
        data, inputs = encoder_batch(spec, config.batch_size)
        encoder_flops = 3 * lstm_flops(spec.num_steps, inputs.shape[-1], spec.encoder_sizes, True) * config.batch_size
        share = encoder_flops / train_step_flops(spec, config.batch_size)
        ours, theirs = ours_seconds(spec, data, inputs, steps), call_torch(torch_seconds, spec, inputs, steps)
        step_ours = time_config(config, steps)["step_s"]
        step_theirs = call_torch(time_torch, config, steps)["step_s"]
        rest_ours, rest_theirs = step_ours - ours, step_theirs - theirs
        print(
            f"| {name} | {config.batch_size} | {share:.0%} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f}x "
            f"| {step_ours:.3f} | {step_theirs:.3f} | {rest_ours:.3f} | {rest_theirs:.3f} "
            f"| {rest_theirs / rest_ours:.2f}x |",
            flush=True,
        )
    close_torch()


if __name__ == "__main__":
    main()
