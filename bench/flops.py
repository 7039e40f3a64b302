"""Matrix-product FLOPs of one training step, counted from the model's sizes.

Counts every LSTM layer's gate matmuls ([x, h] @ [W_x; W_h]), the output
heads, mu/sigma and the initial-state dense layers, forward only; a training
step is taken as 3x forward (the backward pass costs about twice the
forward). Elementwise work is left out.

These are the model's FLOPs, the products of the architecture as written
(and as PyTorch computes them), the same count for both frameworks. We
compute fewer: the decoders' first layer gathers the previous token's
kernel column instead of multiplying a one-hot vector and projects the
conditioning vector once per sequence instead of once per step
(models/decoders.py), and the encoder's first layer gathers the columns of
one-hot inputs (models/vae.py, encoder_projection), so for us "achieved
FLOP/s" is model FLOP/s.
"""

from __future__ import annotations

from musicvae_jax.models.vae import ModelSpec


def lstm_flops(steps: int, input_size: int, sizes: tuple[int, ...], bidirectional: bool = False) -> float:
    """Forward multiply-adds x2 of an LSTM stack over `steps` steps, per example."""
    flops = 0.0
    for hidden in sizes:
        flops += steps * 2 * (input_size + hidden) * 4 * hidden * (2 if bidirectional else 1)
        input_size = 2 * hidden if bidirectional else hidden
    return flops


def forward_flops_per_example(spec: ModelSpec) -> float:
    parts = spec.parts
    t = spec.num_steps
    enc_in = sum(p.encoder_depth for p in parts)
    flops = lstm_flops(t, enc_in, spec.encoder_sizes, bidirectional=True)
    flops += 2 * 2 * (2 * spec.encoder_sizes[-1]) * spec.z_size  # mu, sigma
    if spec.hierarchical:
        u = spec.num_bars
        flops += 2 * spec.z_size * 2 * sum(spec.conductor_sizes) + lstm_flops(u, 1, spec.conductor_sizes)
        emb = spec.conductor_sizes[-1]
        for part in parts:
            flops += u * 2 * emb * 2 * sum(spec.decoder_sizes)
            flops += lstm_flops(t, part.depth + emb, spec.decoder_sizes) + t * 2 * spec.decoder_sizes[-1] * part.depth
    else:
        depth = sum(p.depth for p in parts)
        flops += 2 * spec.z_size * 2 * sum(spec.decoder_sizes)
        flops += lstm_flops(t, depth + spec.z_size, spec.decoder_sizes) + t * 2 * spec.decoder_sizes[-1] * depth
    return flops


def train_step_flops(spec: ModelSpec, batch_size: int) -> float:
    return 3.0 * forward_flops_per_example(spec) * batch_size
