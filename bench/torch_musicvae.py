"""The PyTorch baseline: the same MusicVAE in `torch.nn.LSTM`, written the way existing ports write it.

Same architecture and sizes as ours (bench/suite.py builds both from one
ModelSpec): a bidirectional LSTM encoder over one-hot inputs, mu and
softplus sigma from the final states of both directions, tanh(dense(cond))
initial states for every decoder layer, decoder inputs [previous one-hot,
cond], a linear head per part, cross-entropy plus the free-bits KL, Adam with
gradient clipping. Flat decoders run one `nn.LSTM` over the whole sequence
(teacher forcing, the fused cuDNN-style kernel). Hierarchical decoders run
the conductor over the bars, then decode the bars one after another, as the
reference and the existing ports do.

Needs `pip install torch==2.13.0` (CPU build; on a GPU machine its CUDA
build, where `nn.LSTM` runs cuDNN's fused RNN); a benchmark dependency only.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from musicvae_jax.models.vae import ModelSpec


def _state_layer(cond_size: int, sizes: tuple[int, ...]) -> nn.Linear:
    return nn.Linear(cond_size, 2 * sum(sizes))


def _initial_state(layer: nn.Linear, cond: torch.Tensor, sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """tanh(dense(cond)) -> (h0, c0) [layers, B, H] (all layers the same width, as in every reference config)."""
    state = torch.tanh(layer(cond))
    chunks = torch.split(state, [s for size in sizes for s in (size, size)], dim=-1)
    c = torch.stack(chunks[0::2])
    h = torch.stack(chunks[1::2])
    return h, c


class TorchMusicVAE(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        if len(set(spec.decoder_sizes)) != 1 or len(set(spec.encoder_sizes)) != 1:
            raise ValueError("the baseline stacks nn.LSTM layers of one width")
        self.spec = spec
        self.depths = [p.depth for p in spec.parts]
        encoder_in = sum(p.encoder_depth for p in spec.parts)
        self.encoder = nn.LSTM(
            encoder_in, spec.encoder_sizes[0], num_layers=len(spec.encoder_sizes), bidirectional=True, batch_first=True
        )
        self.mu = nn.Linear(2 * spec.encoder_sizes[0], spec.z_size)
        self.sigma = nn.Linear(2 * spec.encoder_sizes[0], spec.z_size)
        hidden, layers = spec.decoder_sizes[0], len(spec.decoder_sizes)
        if spec.hierarchical:
            emb = spec.conductor_sizes[-1]
            self.conductor_state = _state_layer(spec.z_size, spec.conductor_sizes)
            self.conductor = nn.LSTM(1, spec.conductor_sizes[0], num_layers=len(spec.conductor_sizes), batch_first=True)
            self.decoders = nn.ModuleList(
                nn.LSTM(d + emb, hidden, num_layers=layers, batch_first=True) for d in self.depths
            )
            self.decoder_states = nn.ModuleList(_state_layer(emb, spec.decoder_sizes) for _ in self.depths)
            self.heads = nn.ModuleList(nn.Linear(hidden, d) for d in self.depths)
        else:
            depth = sum(self.depths)
            self.decoders = nn.ModuleList([nn.LSTM(depth + spec.z_size, hidden, num_layers=layers, batch_first=True)])
            self.decoder_states = nn.ModuleList([_state_layer(spec.z_size, spec.decoder_sizes)])
            self.heads = nn.ModuleList([nn.Linear(hidden, depth)])

    def forward(
        self, encoder_inputs: torch.Tensor, one_hots: list[torch.Tensor], free_bits: float, beta: float
    ) -> torch.Tensor:
        """encoder_inputs [B, T, features] (one-hots, or the drum roll), one_hots per part [B, T, depth] -> loss."""
        spec = self.spec
        _, (h, _) = self.encoder(encoder_inputs)
        final = torch.cat([h[-2], h[-1]], dim=-1)
        mu, sigma = self.mu(final), F.softplus(self.sigma(final))
        z = mu + sigma * torch.randn_like(mu)
        prev = [F.pad(o, (0, 0, 1, 0))[:, :-1] for o in one_hots]  # shifted right: step t sees token t-1
        if spec.hierarchical:
            logits = self._hierarchical(z, prev)
        else:
            inputs = torch.cat([*prev, z[:, None].expand(-1, spec.num_steps, -1)], dim=-1)
            out, _ = self.decoders[0](inputs, _initial_state(self.decoder_states[0], z, spec.decoder_sizes))
            logits = torch.split(self.heads[0](out), self.depths, dim=-1)
        r_loss = (
            sum(
                F.cross_entropy(lg.reshape(-1, lg.shape[-1]), o.argmax(-1).reshape(-1), reduction="sum")
                for lg, o in zip(logits, one_hots, strict=True)
            )
            / encoder_inputs.shape[0]
        )
        kl = 0.5 * (mu**2 + sigma**2 - 1.0 - 2.0 * torch.log(sigma)).sum(-1).mean()
        return r_loss + beta * torch.clamp(kl - free_bits, min=0.0)

    def _hierarchical(self, z: torch.Tensor, prev: list[torch.Tensor]) -> list[torch.Tensor]:
        spec = self.spec
        bars, bar_steps = spec.num_bars, spec.num_steps // spec.num_bars
        zeros = z.new_zeros(z.shape[0], bars, 1)
        embeddings, _ = self.conductor(zeros, _initial_state(self.conductor_state, z, spec.conductor_sizes))
        logits = [[] for _ in self.depths]
        for u in range(bars):  # one bar after another
            emb = embeddings[:, u]
            for i, (lstm, state, head) in enumerate(zip(self.decoders, self.decoder_states, self.heads, strict=True)):
                bar_prev = prev[i][:, u * bar_steps : (u + 1) * bar_steps]
                inputs = torch.cat([bar_prev, emb[:, None].expand(-1, bar_steps, -1)], dim=-1)
                out, _ = lstm(inputs, _initial_state(state, emb, spec.decoder_sizes))
                logits[i].append(head(out))
        return [torch.cat(parts, dim=1) for parts in logits]


def make_step(
    model: TorchMusicVAE,
    learning_rate: float,
    clip_norm: float,
    free_bits: float,
    beta: float,
    autocast: torch.dtype | None = None,
):
    """One training step on a batch of one-hot parts: forward (under autocast to that dtype, if given), backward,
    clip, Adam; parameters and optimizer state stay float32. Runs where the model's parameters are.

    Adam is PyTorch's fused implementation (one kernel over every parameter),
    3-6% faster per step than its default on the CPU measured (BENCHMARKS.md).
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)
    device_type = next(model.parameters()).device.type

    def step(encoder_inputs: torch.Tensor, one_hots: list[torch.Tensor]) -> float:
        optimizer.zero_grad(set_to_none=True)
        context = torch.autocast(device_type, dtype=autocast) if autocast else contextlib.nullcontext()
        with context:
            loss = model(encoder_inputs, one_hots, free_bits, beta)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        return loss.detach()

    return step
