"""Runs one of our checkpoints in magenta.js (Magenta's own JavaScript MusicVAE) and compares it with ours.

    mkdir -p /tmp/mm && (cd /tmp/mm && npm install @magenta/music@1.23.1)
    python bench/magenta_js_check.py --workdir runs/gmd_drums_model --node_modules /tmp/mm/node_modules \\
        --midi ../shared/data/groove-v1.0.0-midionly/groove/drummer1/eval_session/*.mid

The checkpoint is exported (musicvae_jax.export_magenta), served over HTTP
on localhost and loaded by `new mm.MusicVAE(url)` in node
(bench/magenta_js_check.mjs). The windows of the given MIDI files are
encoded by both, from the tensors Magenta's converters make (and, for
drums and melodies, from NoteSequences through magenta.js's own
converter), and decoded from our mu by argmax. Printed: the largest mu
difference and the fraction of decoded steps on which both chose the same
output. A GrooVAE is compared on its first decoded step only: magenta.js
feeds back every class's velocity and offset, ours only the sampled hits'.
For drums, magenta.js's own DrumsConverter puts each step's "silent" bit
on the step before (for Magenta's drum checkpoints as for ours); the check
encodes that roll with our encoder too, to show where that path differs.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from musicvae_jax import input_pipeline
from musicvae_jax.export_magenta import magenta_js_converter, magenta_variables, write_tfjs
from musicvae_jax.import_magenta import GROOVE_OFFSETS, MAGENTA_OFFSET_PER_OURS, TAP_COLUMNS
from musicvae_jax.models import groove_input
from musicvae_jax.models.vae import MusicVAE
from musicvae_jax.representations.drums import drum_roll
from musicvae_jax.sample import Generator, windows_of

HERE = Path(__file__).resolve().parent


def magenta_tensors(generator: Generator, windows: list[dict]) -> np.ndarray:
    """What Magenta's converter gives its encoder for these windows [N, T, depth]."""
    (part,) = generator.spec.parts
    if part.kind == "categorical":
        tokens = np.stack([w[part.name] for w in windows]).astype(np.int64)
        return drum_roll(tokens).astype(np.float32) if part.encoder_input == "roll" else np.eye(part.depth)[tokens]
    fields = {k: v.as_dict() for k, v in generator.representation.fields.items()}
    batch = input_pipeline.batch_arrays(windows, fields, len(windows))
    ours = np.asarray(groove_input.encoder_values(batch, part.groove_input))
    if ours.shape[-1] == 3:
        full = np.zeros((*ours.shape[:2], 27), np.float32)
        full[..., TAP_COLUMNS] = ours
        ours = full
    ours = ours.copy()
    ours[..., GROOVE_OFFSETS] *= MAGENTA_OFFSET_PER_OURS
    return ours.astype(np.float32)


def note_sequences(generator: Generator, windows: list[dict]) -> list[dict] | None:
    """Our converter's notes of each window as magenta.js NoteSequences (quantized), for magenta.js's own
    converter; None for GrooVAE (its converter's tensors are compared instead)."""
    if generator.spec.parts[0].kind != "categorical":
        return None
    sequences = []
    for w in windows:
        notes = generator.to_notes(w)
        sequences.append({
            "notes": [{"pitch": n.pitch, "velocity": n.velocity, "quantizedStartStep": n.start_step,
                       "quantizedEndStep": n.end_step, "isDrum": n.is_drum, "program": n.program} for n in notes.notes],
            "quantizationInfo": {"stepsPerQuarter": 4}, "totalQuantizedSteps": notes.total_steps,
            "tempos": [{"qpm": 120}],
        })  # fmt: skip
    return sequences


def magenta_js_roll(roll: np.ndarray) -> np.ndarray:
    """The drum roll magenta.js's DrumsConverter makes: its "silent" bit for step t+1 lands on step t's row
    (it sets index -1 of a tfjs buffer's row, which is the previous row's last element), none on the last."""
    shifted = roll.copy()
    shifted[:, :-1, -1] = roll[:, 1:, -1]
    shifted[:, -1, -1] = 0.0
    return shifted


def ours_encoded(generator: Generator, features: np.ndarray) -> np.ndarray:
    """Our encoder's mu for given input vectors [N, T, depth] (not the ones our own converter makes)."""
    lengths = np.full((len(features),), features.shape[1], np.int32)
    mu, _ = MusicVAE(generator.spec).apply(
        {"params": generator.params}, features, lengths, method=lambda m, f, n: m.encoder(f, n)
    )
    return np.asarray(mu)


def ours_decoded(generator: Generator, mu: np.ndarray) -> np.ndarray:
    """Our argmax decode from mu, as Magenta's output tensor would hold it [N, T, depth]."""
    (part,) = generator.spec.parts
    examples = generator.decode(mu, seed=0, temperature=0.0, progress=False)
    if part.kind == "categorical":
        return np.eye(part.depth, dtype=np.float32)[np.stack([e[part.name] for e in examples])]
    values = np.stack([np.concatenate([e[k] for k in ("hits", "velocities", "offsets")], -1) for e in examples])
    values[..., GROOVE_OFFSETS] *= MAGENTA_OFFSET_PER_OURS
    return values


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--midi", nargs="+", required=True)
    parser.add_argument("--node_modules", required=True, help="a node_modules folder holding @magenta/music")
    parser.add_argument("--max_windows", type=int, default=64)
    args = parser.parse_args()

    generator = Generator.restore(args.workdir)
    windows = [w for path in args.midi for w in windows_of(generator, path)][: args.max_windows]
    mu, _ = generator.encode(windows)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "model"
        write_tfjs(magenta_variables(generator.params, generator.spec), model, magenta_js_converter(generator.spec))
        server, url = serve(model)
        tensors = magenta_tensors(generator, windows)
        job = {
            "url": url,
            "tensors": tensors.tolist(),
            "z": mu.tolist(),
            "sequences": note_sequences(generator, windows),
        }
        (tmp / "job.json").write_text(json.dumps(job))
        env = {**os.environ, "NODE_PATH": args.node_modules}
        subprocess.run(["node", str(HERE / "magenta_js_check.mjs"), str(tmp / "job.json"), str(tmp / "out.json")],
                       check=True, env=env)  # fmt: skip
        server.shutdown()
        out = json.loads((tmp / "out.json").read_text())
    theirs_decoded = np.asarray(out["decoded"], np.float32)
    ours = ours_decoded(generator, mu)
    print(f"{args.workdir}: {generator.spec.representation}, {len(windows)} windows from {len(args.midi)} files")
    print(f"  mu, from Magenta-layout tensors: largest difference {np.abs(np.asarray(out['z_tensors']) - mu).max():.2e}"
          f" (largest |mu| {np.abs(mu).max():.2f})")  # fmt: skip
    if out.get("z_sequences") is not None:
        from_sequences = np.asarray(out["z_sequences"])
        print(f"  mu, from our notes through magenta.js's converter: largest difference "
              f"{np.abs(from_sequences - mu).max():.2e}")  # fmt: skip
        if generator.spec.parts[0].encoder_input == "roll":
            as_js_rolls = ours_encoded(generator, magenta_js_roll(tensors))
            print(f"  ... and from our encoder given magenta.js's drum roll (silent bits one step early): "
                  f"{np.abs(from_sequences - as_js_rolls).max():.2e}")  # fmt: skip
    if generator.spec.parts[0].kind == "categorical":
        same = (theirs_decoded.argmax(-1) == ours.argmax(-1)).mean()
        print(f"  argmax decode from our mu: the same token on {same:.4f} of {ours.shape[0] * ours.shape[1]} steps")
    else:
        hits = ours[:, 0, :9] > 0.5
        print(f"  first decoded step: hits the same on {(hits == (theirs_decoded[:, 0, :9] > 0.5)).mean():.4f} of "
              f"{hits.size} (window, class) pairs; where we hit, velocity / offset differences at most "
              f"{np.abs(theirs_decoded[:, 0, 9:18] - ours[:, 0, 9:18])[hits].max(initial=0):.2e} / "
              f"{np.abs(theirs_decoded[:, 0, 18:] - ours[:, 0, 18:])[hits].max(initial=0):.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
