"""Whether handing sequences from layer to layer in the recurrence's own layout makes a decoder's step faster.

    python bench/bench_sequence_layout.py
    python bench/bench_sequence_layout.py --shapes 2048:3:90 --batch 512 --rounds 3   # a GPU's batch

The sequence pass (models/lstm.py) runs feature-major, [T, 4H, B] in and
[T, H, B] out, while layers hand each other [B, T, H]: each layer's input
projection and output are relaid once a step, and again in the backward
pass (the copies BENCHMARKS.md places in mel_2bar_small's step). This times
the forward and backward pass of a decoder's layers (tokens' columns
gathered into layer 0, the head's cross-entropy) three ways:
- `model`: the model's own functions, as the decoders call them;
- `[T, H, B]`: the sequence pass's outputs handed on as they are, each
  projection and the head reading them there;
- `[H, T, B]`: every sequence laid out features first, so that projections
  and weight gradients are single [rows, T*B] products with no relayout,
  with its own loops reading and writing step t's [H, B] columns.
The three must agree (the losses and gradients are compared first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import jitted_seconds, machine  # noqa: E402

from musicvae_jax import host_memory  # noqa: E402
from musicvae_jax.models import lstm  # noqa: E402


def model_layout(weights, head, tokens):
    """Logits [B, T, D] the way decoders.teacher_forced computes them."""
    hidden = weights[0]["w_h"].shape[1]
    zeros = jnp.zeros((tokens.shape[0], hidden))
    projected = jnp.transpose(lstm.gather_columns(weights[0]["w_x"], tokens) + weights[0]["b"], (1, 2, 0))
    x, _ = lstm.run_projected_layer(weights[0]["w_h"], projected, (zeros, zeros))
    for w in weights[1:]:
        x, _ = lstm.run_projected_layer(w["w_h"], lstm.project_sequence(w, x), (zeros, zeros))
    return lstm.dot(x, head)


@jax.custom_vjp
def _time_major_layer(w_h, projected, c0, h0):
    """The model's sequence pass, its outputs left [T, H, B]."""
    return lstm._sequence_forward(1, w_h, projected, c0, h0)[0][0]


def _time_major_layer_fwd(w_h, projected, c0, h0):
    (hs, cs), gates = lstm._sequence_forward(1, w_h, projected, c0, h0)
    return hs, (w_h, c0, h0, hs, cs, gates)


def _time_major_layer_bwd(residuals, d_hs):
    no_cs = jnp.zeros_like(d_hs)  # the cells' states are not outputs here
    return lstm._sequence_layer_bwd(1, residuals, (lstm._batch_major(d_hs), lstm._batch_major(no_cs)))


_time_major_layer.defvjp(_time_major_layer_fwd, _time_major_layer_bwd)


def time_major_layout(weights, head, tokens):
    hidden = weights[0]["w_h"].shape[1]
    zeros = jnp.zeros((tokens.shape[0], hidden))
    projected = jnp.transpose(lstm.gather_columns(weights[0]["w_x"], tokens) + weights[0]["b"], (1, 2, 0))
    hs = _time_major_layer(weights[0]["w_h"], projected, zeros, zeros)
    for w in weights[1:]:
        hs = _time_major_layer(w["w_h"], jnp.einsum("gi,tib->tgb", w["w_x"], hs) + w["b"][:, None], zeros, zeros)
    return jnp.einsum("di,tib->btd", head, hs)


def _step(x, t):
    return jax.lax.dynamic_index_in_dim(x, t, 1, keepdims=False)


def _features_first_forward(w_h, projected):
    """The recurrence over projected [4H, T, B] from zeros: h, c and the four gate values, each [H, T, B]."""
    hidden, steps, batch = w_h.shape[1], projected.shape[1], projected.shape[2]
    buffer = lstm._made_after(jnp.zeros((hidden, steps, batch)), projected)

    def body(carry, t):
        (c, h), buffers = carry
        i, g, f, o = lstm._gate_values(lstm._squashed(_step(projected, t) + w_h @ h, axis=0), axis=0)
        c = f * c + i * g
        h = o * jnp.tanh(c)
        values = (h, c, i, g, f, o)
        buffers = tuple(jax.lax.dynamic_update_index_in_dim(b, v, t, 1) for b, v in zip(buffers, values, strict=True))
        return ((c, h), buffers), None

    zeros = jnp.zeros((hidden, batch))
    (_, buffers), _ = jax.lax.scan(body, ((zeros, zeros), (buffer,) * 6), jnp.arange(steps))
    return buffers


@jax.custom_vjp
def _features_first_layer(w_h, projected):
    return _features_first_forward(w_h, projected)[0]


def _features_first_layer_fwd(w_h, projected):
    hs, cs, *gates = _features_first_forward(w_h, projected)
    return hs, (w_h, hs, cs, gates)


def _features_first_layer_bwd(residuals, d_hs):
    w_h, hs, cs, kept = residuals
    hidden, steps, batch = hs.shape
    shifted = lambda x: jnp.pad(x[:, :-1], ((0, 0), (1, 0), (0, 0)))  # noqa: E731  (zeros before the first step)
    c_prev, h_prev = shifted(cs), shifted(hs)
    w_h_t = lstm._made_after(w_h, d_hs).T
    d_gates = lstm._made_after(jnp.zeros((4 * hidden, steps, batch)), d_hs)

    def body(carry, t):
        dc_next, dh_next, d_gates = carry
        i, g, f, o = (_step(x, t) for x in kept)
        c, c_before = _step(cs, t), _step(c_prev, t)
        dh = dh_next + _step(d_hs, t)
        tanh_c = jnp.tanh(c)
        dc = dc_next + dh * o * (1 - tanh_c**2)
        gates = jnp.concatenate(
            [dc * g * i * (1 - i), dc * i * (1 - g**2), dc * c_before * f * (1 - f), dh * tanh_c * o * (1 - o)], axis=0
        )
        return (dc * f, w_h_t @ gates, jax.lax.dynamic_update_index_in_dim(d_gates, gates, t, 1)), None

    zeros = jnp.zeros((hidden, batch))
    (_, _, d_gates), _ = jax.lax.scan(body, (zeros, zeros, d_gates), jnp.arange(steps), reverse=True)
    return jnp.einsum("gtb,htb->gh", d_gates, h_prev), d_gates


_features_first_layer.defvjp(_features_first_layer_fwd, _features_first_layer_bwd)


def features_first_layout(weights, head, tokens):
    projected = jnp.take(weights[0]["w_x"], tokens.T, axis=1) + weights[0]["b"][:, None, None]
    hs = _features_first_layer(weights[0]["w_h"], projected)
    for w in weights[1:]:
        hs = _features_first_layer(w["w_h"], jnp.einsum("gi,itb->gtb", w["w_x"], hs) + w["b"][:, None, None])
    return jnp.einsum("di,itb->btd", head, hs)


LAYOUTS = {"model": model_layout, "[T, H, B]": time_major_layout, "[H, T, B]": features_first_layout}


def loss_and_gradients(logits_fn, tokens):
    def loss(weights, head):
        logits = logits_fn(weights, head, tokens)
        picked = jnp.take_along_axis(logits, tokens[..., None], axis=-1)[..., 0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked)

    return jax.value_and_grad(loss, argnums=(0, 1))


def decoder_weights(hidden: int, layers: int, tokens: int):
    keys = iter(jax.random.split(jax.random.key(0), 2 * layers + 1))
    normal = lambda shape: jax.random.normal(next(keys), shape) * 0.05  # noqa: E731
    weights = [
        {
            "w_x": normal((4 * hidden, tokens if i == 0 else hidden)),
            "w_h": normal((4 * hidden, hidden)),
            "b": jnp.zeros(4 * hidden),
        }
        for i in range(layers)
    ]
    return weights, normal((tokens, hidden))


def main() -> None:
    host_memory.set_up()  # before JAX starts its threads
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes", default="256:2:90,256:2:512,2048:3:90", help="hidden:layers:tokens, comma-separated"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=32, help="sequence length")
    parser.add_argument("--rounds", type=int, default=2, help="each layout timed this many times, alternated")
    args = parser.parse_args()
    print(
        f"machine: {machine()}, jax {jax.__version__}, backend {jax.default_backend()}; T {args.steps}, B {args.batch}"
    )
    print("| hidden | layers | tokens | " + " | ".join(f"{name}, ms" for name in LAYOUTS) + " |")
    print("|---|---|---|" + "---|" * len(LAYOUTS))
    for shape in args.shapes.split(","):
        hidden, layers, depth = (int(v) for v in shape.split(":"))
        weights, head = decoder_weights(hidden, layers, depth)
        tokens = jax.random.randint(jax.random.key(1), (args.batch, args.steps), 0, depth)
        fns = {name: loss_and_gradients(fn, tokens) for name, fn in LAYOUTS.items()}
        reference = jax.jit(fns["model"])(weights, head)
        tolerance = 1e-4 if jax.default_backend() == "cpu" else 2e-2  # a GPU's float32 products run in TF32
        for name, fn in fns.items():
            for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(jax.jit(fn)(weights, head)), strict=True):
                if not jnp.allclose(a, b, rtol=tolerance, atol=tolerance / 100):
                    raise SystemExit(f"layout {name} computes something else (hidden {hidden})")
        repeats = 7 if hidden < 1024 else 3
        times = {name: [] for name in fns}
        for _ in range(args.rounds):
            for name, fn in fns.items():
                times[name].append(jitted_seconds(fn, weights, head, repeats=repeats) * 1e3)
        cells = [", ".join(f"{t:.1f}" for t in times[name]) for name in fns]
        print(f"| {hidden} | {layers} | {depth} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
