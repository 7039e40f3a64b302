"""Generation from a real (tiny, briefly trained) checkpoint: modes, determinism, round trips, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO, press_ctrl_c, sample_cli, start_as_from_a_terminal
from model_helpers import trained_workdir

from configs import drums_2bar, groovae, trio
from musicvae_jax.midi_io import read_midi
from musicvae_jax.representations.drums import GM_PITCH_TO_CLASS, drum_hits, drum_tokens
from musicvae_jax.representations.melody import melody_tokens, monophonic, tokens_to_notes
from musicvae_jax.sample import Generator, grid_latents, run, similar_latents, slerp, windows_of, write_all


@pytest.fixture(scope="module")
def drums_run(tmp_path_factory):
    return trained_workdir(tmp_path_factory.mktemp("drums"), drums_2bar, "tiny", "drums_2bar")


@pytest.fixture(scope="module")
def groove_run(tmp_path_factory):
    return trained_workdir(tmp_path_factory.mktemp("groove"), groovae, "tiny", "groove_2bar")


@pytest.fixture(scope="module")
def trio_run(tmp_path_factory):
    return trained_workdir(tmp_path_factory.mktemp("trio"), trio, "tiny", "trio_16bar", steps=3)


def test_sampling_is_deterministic_and_round_trips_through_midi(drums_run, tmp_path):
    generator = Generator.restore(drums_run)
    first = run(generator, "sample", tmp_path / "a", num=3, temperature=1.0, seed=5)
    second = run(generator, "sample", tmp_path / "b", num=3, temperature=1.0, seed=5)
    other = run(generator, "sample", tmp_path / "c", num=3, temperature=1.0, seed=6)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert [p.read_bytes() for p in first] != [p.read_bytes() for p in other]
    examples = generator.decode(np.zeros((2, generator.spec.z_size), np.float32), 5, 1.0)
    for i, example in enumerate(examples):
        path = tmp_path / f"rt{i}.mid"
        from musicvae_jax.midi_io import write_midi

        write_midi(generator.to_notes(example), path)
        back = drum_tokens(drum_hits(read_midi(path), GM_PITCH_TO_CLASS), 0, 32)
        np.testing.assert_array_equal(back, example["tokens"])


def test_trio_hierarchical_samples_round_trip(trio_run, tmp_path):
    generator = Generator.restore(trio_run)
    (example,) = generator.decode(np.ones((1, generator.spec.z_size), np.float32), 0, 1.0)
    from musicvae_jax.midi_io import write_midi

    write_midi(generator.to_notes(example), tmp_path / "t.mid")
    back = read_midi(tmp_path / "t.mid")
    melody = [n for n in back.notes if not n.is_drum and n.program < 32]
    canonical = melody_tokens(tokens_to_notes(example["melody"]), 0, 256)  # stray note-offs play nothing
    np.testing.assert_array_equal(melody_tokens(monophonic(melody), 0, 256), canonical)
    np.testing.assert_array_equal(drum_tokens(drum_hits(back, GM_PITCH_TO_CLASS), 0, 256), example["drums"])


@pytest.mark.parametrize("run_fixture", ["drums_run", "trio_run", "groove_run"])
def test_rows_decoded_with_the_same_draws_sample_as_lone_decodes(run_fixture, request):
    """Interpolation decodes its steps in one batch, each with the draws of a lone decode with the seed."""
    generator = Generator.restore(request.getfixturevalue(run_fixture))
    z = np.random.default_rng(1).standard_normal((3, generator.spec.z_size)).astype(np.float32)
    together = generator.decode(z, 5, 1.0, same_draws=True)
    for i in range(3):
        (alone,) = generator.decode(z[i : i + 1], 5, 1.0)
        assert together[i].keys() == alone.keys()
        for key, values in alone.items():
            np.testing.assert_allclose(together[i][key], values, rtol=1e-5, atol=1e-6)


def first_window_reconstruction(generator, midi, output, qpm):
    """The file's first window decoded from mu by argmax, as reconstruct writes it at `qpm` (without a page)."""
    z = generator.encode(windows_of(generator, midi)[:1])[0]
    return write_all(generator, {"r": generator.decode(z, 0, 0.0)}, output, together=False, page=False, qpm=qpm)[0]


def test_interpolation_ends_reproduce_the_reconstructions(drums_run, tmp_path):
    midi = sorted((drums_run.parent / "midi").glob("*.mid"))
    generator = Generator.restore(drums_run)
    # Each file's first window reconstructed from mu as reconstruct does it, at the first file's tempo.
    qpm = read_midi(midi[0]).qpm
    recon_a, recon_b = (first_window_reconstruction(generator, m, tmp_path / m.stem, qpm) for m in midi[:2])
    path = run(generator, "interpolate", tmp_path / "i", inputs=[str(midi[0]), str(midi[1])], steps=4, temperature=0.0)
    assert len(path) == 5 and path[-1].name == "interpolation_all.mid"
    assert path[0].read_bytes() == recon_a.read_bytes()
    assert path[3].read_bytes() == recon_b.read_bytes()


def test_similar_variations_run_from_the_input_to_plain_samples(drums_run, tmp_path):
    midi = sorted((drums_run.parent / "midi").glob("*.mid"))
    generator = Generator.restore(drums_run)
    reconstruction = first_window_reconstruction(
        generator, midi[0], tmp_path / "r", read_midi(midi[0]).qpm
    ).read_bytes()
    own = run(generator, "similar", tmp_path / "one", inputs=[str(midi[0])], num=3, similarity=1.0, temperature=0.0)
    assert [p.name for p in own] == ["input_000.mid", *(f"similar_{i:03d}.mid" for i in range(3)), "similar_all.mid"]
    assert [p.read_bytes() for p in own[1:4]] == [reconstruction] * 3
    # At similarity 0 the input is ignored: the variations are what sample draws with the same seed.
    kw = dict(num=3, temperature=0.0, seed=4, page=False, qpm=120.0)
    unlike = run(generator, "similar", tmp_path / "zero", inputs=[str(midi[0])], similarity=0.0, **kw)
    samples = run(generator, "sample", tmp_path / "sample", **kw)
    assert [p.read_bytes() for p in unlike[1:4]] == [p.read_bytes() for p in samples]
    rng = np.random.default_rng(0)
    mu, prior = rng.standard_normal(8), rng.standard_normal((5, 8))
    mu, prior = mu / np.linalg.norm(mu), prior / np.linalg.norm(prior, axis=1, keepdims=True)  # on one sphere
    angles = [np.arccos(np.clip(z @ mu / np.linalg.norm(z), -1, 1)) for z in similar_latents(mu, 0.75, prior)]
    expected = [0.25 * np.arccos(p @ mu) for p in prior]
    np.testing.assert_allclose(angles, expected, rtol=1e-4)  # a quarter of the way from mu to each draw


def test_four_inputs_interpolate_a_grid_between_their_reconstructions(drums_run, tmp_path):
    midi = [str(m) for m in sorted((drums_run.parent / "midi").glob("*.mid"))[:4]]
    generator = Generator.restore(drums_run)
    qpm = read_midi(midi[0]).qpm  # every file plays at the first input's tempo
    corners = [first_window_reconstruction(generator, m, tmp_path / f"r{i}", qpm) for i, m in enumerate(midi)]
    corners = [c.read_bytes() for c in corners]
    paths = run(generator, "interpolate", tmp_path / "grid", inputs=midi, steps=3, temperature=0.0)
    names = [p.name for p in paths]
    assert names[:4] == ["grid_row0_000.mid", "grid_row0_001.mid", "grid_row0_002.mid", "grid_row0_all.mid"]
    assert len(names) == 3 * 4 + 1 and names[-1] == "grid.png"
    assert paths[-1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "grid" / "index.html").read_text()
    assert page.index('src="grid.png"') < page.index('src="grid_row0_000.png"')  # the overview first
    cell = {(r, c): tmp_path / "grid" / f"grid_row{r}_{c:03d}.mid" for r in range(3) for c in range(3)}
    assert [cell[rc].read_bytes() for rc in ((0, 0), (0, 2), (2, 0), (2, 2))] == corners
    # The top edge is the two-file path between the top corners, decoded with the same draws.
    path = run(generator, "interpolate", tmp_path / "top", inputs=midi[:2], steps=3, temperature=1.0, page=False)
    grid = run(generator, "interpolate", tmp_path / "grid1", inputs=midi, steps=3, temperature=1.0, page=False)
    assert [p.read_bytes() for p in path[:3]] == [p.read_bytes() for p in grid[:3]]
    a, b, c, d = np.eye(4, dtype=np.float32)
    z = grid_latents([a, b, c, d], 3)
    np.testing.assert_allclose(z[1, 1], slerp(slerp(a, b, 0.5), slerp(c, d, 0.5), 0.5), rtol=1e-6)
    np.testing.assert_allclose(z[:, 0], [a, slerp(a, c, 0.5), c], rtol=1e-6)


def test_the_readmes_python_example_runs(trio_run, tmp_path, monkeypatch):
    """README.md's "From Python" code, as printed, on a trio checkpoint (the demo's model) and a demo song."""
    readme = (REPO / "README.md").read_text()
    code = readme.split("### From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    song = sorted((trio_run.parent / "midi").glob("*.mid"))[0]
    assert '"runs/demo"' in code and '"song.mid"' in code
    monkeypatch.chdir(tmp_path)
    exec(code.replace('"runs/demo"', repr(str(trio_run))).replace('"song.mid"', repr(str(song))), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"step_{i}.mid" for i in range(5)]
    for path in tmp_path.iterdir():
        read_midi(path)  # a MIDI file mido reads back


def test_outputs_play_at_the_inputs_tempo_or_the_one_asked_for(drums_run, tmp_path):
    song = sorted((drums_run.parent / "midi").glob("*.mid"))[0]
    song_qpm = read_midi(song).qpm
    assert song_qpm != 120.0  # the demo songs have tempos of their own
    generator = Generator.restore(drums_run)
    kw = dict(inputs=[str(song)], temperature=0.0, page=False)
    own = run(generator, "reconstruct", tmp_path / "own", **kw)
    asked = run(generator, "similar", tmp_path / "asked", num=2, qpm=97.0, **kw)
    sampled = run(generator, "sample", tmp_path / "sampled", num=1, page=False)
    assert {round(read_midi(p).qpm, 3) for p in own} == {round(song_qpm, 3)}
    assert {round(read_midi(p).qpm, 3) for p in asked} == {97.0}
    assert read_midi(sampled[0]).qpm == pytest.approx(120.0)
    with pytest.raises(ValueError, match="--qpm must be a positive tempo .*got 0"):
        run(generator, "sample", tmp_path / "bad", qpm=0.0)


def test_reconstruction_writes_the_windows_it_read_beside_it(drums_run, tmp_path):
    midi = sorted((drums_run.parent / "midi").glob("*.mid"))[0]
    generator = Generator.restore(drums_run)
    windows = windows_of(generator, midi)
    paths = run(generator, "reconstruct", tmp_path, inputs=[str(midi)], temperature=0.0)
    n = len(windows)
    assert [p.name for p in paths[n + 1 :]] == [f"input_{i:03d}.mid" for i in range(n)] + ["input_all.mid"]
    decoded = generator.decode(generator.encode(windows)[0], 0, 0.0)  # from mu, at temperature 0
    direct = write_all(
        generator, {"r": decoded}, tmp_path / "direct", together=False, page=False, qpm=read_midi(midi).qpm
    )
    assert [p.read_bytes() for p in paths[:n]] == [p.read_bytes() for p in direct]
    for window, path in zip(windows, paths[n + 1 : 2 * n + 1], strict=True):
        np.testing.assert_array_equal(
            drum_tokens(drum_hits(read_midi(path), GM_PITCH_TO_CLASS), 0, 32), window["tokens"]
        )
    page = (tmp_path / "index.html").read_text()
    assert all(p.with_suffix(".png").name in page for p in paths)


def test_encode_writes_latents_per_window(drums_run, tmp_path):
    midi = sorted((drums_run.parent / "midi").glob("*.mid"))[0]
    generator = Generator.restore(drums_run)
    run(generator, "encode", tmp_path, inputs=[str(midi)])
    mu, sigma = np.load(tmp_path / "mu.npy"), np.load(tmp_path / "sigma.npy")
    starts = np.load(tmp_path / "window_start.npy")
    assert mu.shape == sigma.shape == (len(starts), generator.spec.z_size) and (sigma > 0).all()


def test_decode_reads_encoded_latents_back_into_the_reconstruction(drums_run, tmp_path):
    """encode's mu.npy, decoded with reconstruct's seed, temperature and tempo, is its output file for file; one vector
    [z_size] decodes as a batch of one. Without a page (--nopage) only the MIDI files are written."""
    midi = sorted((drums_run.parent / "midi").glob("*.mid"))[0]
    generator = Generator.restore(drums_run)
    mu = tmp_path / "encode" / "mu.npy"
    run(generator, "encode", tmp_path / "encode", inputs=[str(midi)])
    rebuilt = run(
        generator, "reconstruct", tmp_path / "rebuilt", inputs=[str(midi)], temperature=1.0, seed=3, page=False
    )
    qpm = read_midi(midi).qpm  # decode has no input to take a tempo from
    decoded = run(generator, "decode", tmp_path / "decode", z_path=mu, temperature=1.0, seed=3, page=False, qpm=qpm)
    n = len(np.load(mu))
    assert n > 1 and [p.name for p in decoded] == [f"decode_{i:03d}.mid" for i in range(n)] + ["decode_all.mid"]
    assert sorted(tmp_path.joinpath("decode").iterdir()) == sorted(decoded)
    assert [p.read_bytes() for p in decoded] == [p.read_bytes() for p in rebuilt[: n + 1]]
    np.save(tmp_path / "one.npy", np.load(mu)[0].astype(np.float64))
    (one,) = run(generator, "decode", tmp_path / "one", z_path=tmp_path / "one.npy", temperature=0.0)
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["decode_000.mid", "decode_000.png", "index.html"]
    argmax = run(generator, "decode", tmp_path / "argmax", z_path=mu, temperature=0.0, page=False)
    assert one.read_bytes() == argmax[0].read_bytes()


def test_decode_names_a_bad_latent_file(drums_run, tmp_path):
    generator = Generator.restore(drums_run)
    z_size = generator.spec.z_size
    np.save(tmp_path / "wide.npy", np.zeros((2, z_size + 1), np.float32))
    np.save(tmp_path / "nan.npy", np.full((1, z_size), np.nan, np.float32))
    (tmp_path / "text.npy").write_text("not an array")
    cases = [
        (
            dict(z_path=tmp_path / "wide.npy"),
            rf"--z .*wide.npy: expected numbers of shape \[N, {z_size}\].*\[2, {z_size + 1}\]",
        ),
        (dict(z_path=tmp_path / "nan.npy"), "--z .*nan.npy: holds NaN"),
        (dict(z_path=tmp_path / "text.npy"), "--z .*text.npy: not a NumPy .npy file"),
        (dict(z_path=tmp_path / "missing.npy"), "--z .*missing.npy: no such file"),
        (dict(), "--mode decode reads its latent vectors from --z"),
        (dict(z_path=tmp_path / "nan.npy", inputs=["song.mid"]), "--mode decode reads --z, not --input"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            run(generator, "decode", tmp_path / "out", **kwargs)
    with pytest.raises(ValueError, match="other modes take no --z"):
        run(generator, "sample", tmp_path / "out", z_path=tmp_path / "wide.npy")
    assert not (tmp_path / "out").exists()


def test_long_jobs_run_in_chunks_with_the_same_results(drums_run, capsys):
    """More windows than one compiled call takes: chunked encode equals encoding one window at a time."""
    from musicvae_jax import sample

    midi = sorted((drums_run.parent / "midi").glob("*.mid"))[0]
    generator = Generator.restore(drums_run)
    windows = windows_of(generator, midi)
    many = (windows * (sample.CHUNK // len(windows) + 2))[: sample.CHUNK + 5]
    mu, sigma = generator.encode(many)
    assert mu.shape == (sample.CHUNK + 5, generator.spec.z_size)
    for i in (0, sample.CHUNK - 1, sample.CHUNK, sample.CHUNK + 4):
        one_mu, one_sigma = generator.encode([many[i]])
        np.testing.assert_allclose(mu[i], one_mu[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sigma[i], one_sigma[0], rtol=1e-5, atol=1e-6)
    decoded = generator.decode(mu, seed=0, temperature=0.0)
    assert len(decoded) == len(many)
    for i in (0, sample.CHUNK + 4):  # argmax decoding does not depend on the chunk a row lands in
        np.testing.assert_array_equal(decoded[i]["tokens"], generator.decode(mu[i : i + 1], 0, 0.0)[0]["tokens"])
    assert "encoding" in capsys.readouterr().err  # a progress bar for the long job


def test_a_checkpoint_samples_in_the_precision_asked_for(drums_run):
    import jax

    trained = Generator.restore(drums_run)
    mixed = Generator.restore(drums_run, compute_dtype="bfloat16")
    assert (trained.spec.compute_dtype, mixed.spec.compute_dtype) == ("float32", "bfloat16")
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool((a == b).all()), trained.params, mixed.params)))
    z = np.random.default_rng(0).normal(size=(2, trained.spec.z_size)).astype(np.float32)
    exact, rounded = (np.stack([e["tokens"] for e in g.decode(z, 0, 0.0)]) for g in (trained, mixed))
    assert exact.shape == rounded.shape == (2, trained.spec.num_steps)
    # Argmax decoding from the same z: products rounded to bfloat16 move some of a barely trained model's close
    # choices (6 of 64 here), not most.
    assert np.mean(exact == rounded) >= 0.5, np.mean(exact == rounded)
    with pytest.raises(ValueError, match="config.model.compute_dtype"):
        Generator.restore(drums_run, compute_dtype="float16")


def test_slerp_keeps_the_ends_and_the_norm_of_equal_vectors():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    np.testing.assert_allclose(slerp(a, b, 0.0), a)
    np.testing.assert_allclose(slerp(a, b, 1.0), b)
    np.testing.assert_allclose(np.linalg.norm(slerp(a, b, 0.3)), 1.0)


def test_bad_requests_are_named(drums_run, tmp_path):
    """What the CLI reports in one line (below): the flag, the file, the folder at fault."""
    with pytest.raises(FileNotFoundError, match="expected a folder WORKDIR/checkpoints/STEP"):
        Generator.restore(checkpoint=drums_run)
    with pytest.raises(FileNotFoundError, match="no checkpoint 99 in"):
        Generator.restore(checkpoint=drums_run / "checkpoints" / "99")
    with pytest.raises(ValueError, match="config.model.compute_dtype must be"):
        Generator.restore(drums_run, compute_dtype="float16")
    generator = Generator.restore(drums_run)
    from helpers import note, steps, write_track_midi

    melody_only = write_track_midi(tmp_path / "melody.mid", [note(0, steps(64), 60)])
    with pytest.raises(ValueError, match="melody.mid: no usable drums_2bar window"):
        run(generator, "reconstruct", tmp_path / "out", inputs=[str(melody_only)])
    with pytest.raises(FileNotFoundError, match="--input .*missing.mid: no such file"):
        run(generator, "reconstruct", tmp_path / "out", inputs=[str(tmp_path / "missing.mid")])
    with pytest.raises(ValueError, match="--mode interpolate takes two --input files .* or four .*, got 3"):
        run(generator, "interpolate", tmp_path / "out", inputs=[str(melody_only)] * 3)
    with pytest.raises(ValueError, match="--mode similar takes exactly one --input"):
        run(generator, "similar", tmp_path / "out", inputs=[str(melody_only)] * 2)
    with pytest.raises(ValueError, match=r"--similarity must be in \[0, 1\] .*got 1.5"):
        run(generator, "similar", tmp_path / "out", inputs=[str(melody_only)], similarity=1.5)
    with pytest.raises(ValueError, match="--steps must be >= 2"):
        run(generator, "interpolate", tmp_path / "out", inputs=[str(melody_only)] * 2, steps=1)
    with pytest.raises(ValueError, match="--num must be >= 1, got 0"):
        run(generator, "sample", tmp_path / "out", num=0)
    with pytest.raises(ValueError, match="--temperature must be >= 0"):
        run(generator, "sample", tmp_path / "out", temperature=-1.0)
    with pytest.raises(ValueError, match="--output .*melody.mid: not a folder"):
        run(generator, "sample", melody_only)
    assert not (tmp_path / "out").exists()


def test_cli_errors_are_one_line(drums_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [  # one per way a run can fail: restoring, absl's flags, the mode's own checks
        ([f"--workdir={empty}"], "no checkpoint"),
        ([f"--workdir={drums_run}", "--mode=wiggle"], "--mode"),
        ([f"--workdir={drums_run}", "--mode=reconstruct"], "exactly one --input"),
        ([f"--workdir={drums_run}", "--mode=similar", "--similarity=2", "--input=a.mid"], "--similarity must be in"),
        ([f"--workdir={drums_run}", "--mode=decode", f"--z={tmp_path / 'none.npy'}"], "none.npy: no such file"),
    ]
    for args, message in cases:
        result = sample_cli(*args)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    ok = sample_cli(f"--workdir={drums_run}", "--num=2", "--compute_dtype=bfloat16", f"--output={tmp_path / 'out'}")
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "index.html",
        "sample_000.mid",
        "sample_000.png",
        "sample_001.mid",
        "sample_001.png",
    ]


def test_evaluate_cli_prints_the_table_and_writes_the_json(drums_run, tmp_path):
    def evaluate_cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "musicvae_jax.evaluate", f"--workdir={drums_run}", *args],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    folder = evaluate_cli(f"--output={tmp_path}")
    assert folder.returncode == 2 and "a folder; name the JSON file" in folder.stderr
    assert "Traceback" not in folder.stderr
    plot = evaluate_cli(f"--output={tmp_path / 'eval.png'}")
    assert plot.returncode == 2 and "the plot's name; name the JSON file" in plot.stderr
    output = tmp_path / "new" / "eval.json"
    ok = evaluate_cli(f"--output={output}", "--batch_size=3", f"--data_path={drums_run.parent / 'data'}")
    assert ok.returncode == 0, ok.stderr
    result = json.loads(output.read_text())
    assert f"| tokens | {result['accuracy']['tokens']['teacher_forced']:.3f} |" in ok.stdout
    assert f"eval: {result['examples']} examples, r_loss {result['r_loss']:.3f}" in ok.stdout
    by_bar = result["accuracy_by_bar"]["tokens"]["free_running"]
    assert f"| tokens, free-running | {by_bar[0]:.3f} | {by_bar[1]:.3f} |" in ok.stdout
    assert result["workdir"] == str(drums_run) and result["step"] == Generator.restore(drums_run).step > 0
    assert output.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    data = f"--data_path={drums_run.parent / 'data'}"
    compared = evaluate_cli(f"--output={tmp_path / 'again.json'}", f"--compare={output}", "--max_batches=1", data)
    assert compared.returncode == 0, compared.stderr
    assert (tmp_path / "again.png").stat().st_size > output.with_suffix(".png").stat().st_size  # two models drawn
    for bad, message in (
        (tmp_path / "none.json", "not a readable evaluation JSON"),
        (drums_run.parent / "data" / "metadata.json", "no accuracy_by_bar"),
    ):
        failed = evaluate_cli(f"--output={tmp_path / 'x.json'}", f"--compare={bad}", data)
        assert failed.returncode == 2 and f"--compare {bad}: {message}" in failed.stderr
        assert not (tmp_path / "x.json").exists()


def evaluated_and_direct(run_dir):
    """evaluate() over the eval split in several batches (the last one padded), and the same split's real rows
    as one batch with the model's teacher-forced pass and free-running decoding from mu."""
    import jax

    from musicvae_jax import input_pipeline
    from musicvae_jax.evaluate import evaluate
    from musicvae_jax.models.vae import MusicVAE

    generator = Generator.restore(run_dir)
    data_dir = run_dir.parent / "data"
    result = evaluate(generator, data_dir, "eval", batch_size=3)
    (whole,) = list(input_pipeline.make_iterator(data_dir, "eval", global_batch_size=1000, train=False))
    batch = {k: v[whole["weights"] > 0] for k, v in whole.items()}
    model = MusicVAE(generator.spec)
    params = {"params": generator.params}
    forced = model.apply(params, batch, jax.random.key(0), train=False, use_mean=True)
    free = model.apply(params, forced["mu"], jax.random.key(0), 0.0, method=MusicVAE.decode)
    return result, batch, forced, free


@pytest.mark.parametrize("run_fixture", ["drums_run", "trio_run"])
def test_evaluate_equals_a_direct_computation(run_fixture, request):
    """Overall and bar by bar, per part: the flat 2-bar drums model and the hierarchical 16-bar trio."""
    result, batch, forced, free = evaluated_and_direct(request.getfixturevalue(run_fixture))
    parts = result["accuracy"]
    assert set(result["accuracy_by_bar"]) == set(parts) and len(parts) == (3 if run_fixture == "trio_run" else 1)
    for name in parts:
        tokens = batch[name]
        num_bars = tokens.shape[1] // 16
        teacher = np.argmax(np.asarray(forced["raw"][name]), -1) == tokens
        running = np.asarray(free[name]) == tokens
        assert result["examples"] == len(tokens)
        assert parts[name]["teacher_forced"] == pytest.approx(np.mean(teacher), abs=1e-6)
        assert parts[name]["free_running"] == pytest.approx(np.mean(running), abs=1e-6)
        for kind, correct in (("teacher_forced", teacher), ("free_running", running)):
            by_bar = correct.reshape(len(tokens), num_bars, 16).mean(axis=(0, 2))
            np.testing.assert_allclose(result["accuracy_by_bar"][name][kind], by_bar, atol=1e-6)
    assert result["kl_bits"] == pytest.approx(result["kl"] / np.log(2))


@pytest.mark.parametrize("run_fixture", ["drums_run", "groove_run"])
def test_similar_curve_at_similarity_one_is_evaluates_free_running_accuracy(run_fixture, request):
    """bench/similar_curve.py: at similarity 1 its variations are the reconstructions evaluate scores."""
    sys.path.insert(0, str(REPO / "bench"))
    from similar_curve import curve, read_windows

    from musicvae_jax.evaluate import evaluate

    run_dir = request.getfixturevalue(run_fixture)
    generator = Generator.restore(run_dir)
    (part,) = generator.spec.parts
    result = evaluate(generator, run_dir.parent / "data", "eval", batch_size=3)
    windows = read_windows(str(run_dir.parent / "data"), "eval", max_windows=1000)
    assert len(windows["lengths"]) == result["examples"]
    far, near, own = curve(generator, windows, [0.0, 0.9, 1.0], num=3, seed=0)
    assert own["to_input"] == pytest.approx(result["accuracy"][part.name]["free_running"], abs=1e-6)
    assert own["to_each_other"] == 1.0
    assert 0.0 <= far["to_input"] <= 1.0 and 0.0 <= near["to_input"] <= 1.0


def test_evaluate_names_bad_requests(drums_run, groove_run):
    from musicvae_jax.evaluate import evaluate

    generator, data_dir = Generator.restore(drums_run), drums_run.parent / "data"
    with pytest.raises(ValueError, match="--batch_size must be >= 1"):
        evaluate(generator, data_dir, "eval", batch_size=0)
    with pytest.raises(ValueError, match="--max_batches >= 0, got 3 and -1"):
        evaluate(generator, data_dir, "eval", batch_size=3, max_batches=-1)
    message = "holds groove_2bar data but the checkpoint's config.data.representation is drums_2bar"
    with pytest.raises(ValueError, match=message):
        evaluate(generator, groove_run.parent / "data", "eval", batch_size=3)
    with pytest.raises(ValueError, match="no split 'test'; it has train, eval"):
        evaluate(generator, data_dir, "test", batch_size=3)


def test_page_shows_a_piano_roll_for_every_file(drums_run, tmp_path):
    import shutil

    generator = Generator.restore(drums_run)
    midi = sorted((drums_run.parent / "midi").glob("*.mid"))
    paths = run(generator, "interpolate", tmp_path, inputs=[str(midi[0]), str(midi[1])], steps=3)
    page = (tmp_path / "index.html").read_text()
    for path in paths:
        png = path.with_suffix(".png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{png.name}"' in page and f'href="{path.name}"' in page
    assert "<audio" in page or "install fluidsynth" in page
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no headless Chromium on this machine (Debian package 'chromium') to render the page")
    shot = tmp_path / "page.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            (tmp_path / "index.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 10_000
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            f"--user-data-dir={tmp_path / 'profile2'}",
            (tmp_path / "index.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert dom.count("<img") == len(paths)


def test_humanize_hears_only_the_hits(groove_run):
    """GrooVAE humanize: another performance of the same hits encodes to the same z; other hits do not."""
    generator = Generator.restore(groove_run)
    windows = windows_of(generator, sorted((groove_run.parent / "midi").glob("*.mid"))[0])[:2]
    rng = np.random.default_rng(0)
    played = []
    for w in windows:
        hit = w["hits"] > 0
        velocities = np.where(hit, rng.uniform(0.1, 1.0, hit.shape), 0).astype(np.float16)
        offsets = np.where(hit, rng.uniform(-0.5, 0.49, hit.shape), 0).astype(np.float16)
        played.append({**w, "velocities": velocities, "offsets": offsets})
    other_hits = [{**w, "hits": np.roll(w["hits"], 1, axis=0)} for w in windows]
    mu, sigma = generator.encode(windows)
    assert np.any(played[0]["velocities"] != windows[0]["velocities"])
    np.testing.assert_array_equal(generator.encode(played)[0], mu)
    assert not np.allclose(generator.encode(other_hits)[0], mu)


def test_groove_evaluation_equals_a_direct_computation(groove_run):
    from musicvae_jax.evaluate import format_table

    result, batch, _, free = evaluated_and_direct(groove_run)
    free = np.asarray(free["groove"], np.float64)
    hits, velocities, offsets = np.split(free, 3, axis=-1)
    true_hits, true_velocities, true_offsets = (batch[k].astype(np.float64) for k in ("hits", "velocities", "offsets"))
    played, real = hits > 0.5, true_hits > 0.5
    both = played & real
    g = result["groove"]["groove"]
    assert g["hits_compared"] == both.sum() > 0
    assert g["hit_precision"] == pytest.approx(both.sum() / played.sum())
    assert g["hit_recall"] == pytest.approx(both.sum() / real.sum())
    assert g["velocity_rmse"] == pytest.approx(
        127 * np.sqrt(np.mean((velocities - true_velocities)[both] ** 2)), rel=1e-4
    )
    class_spread = [true_velocities[..., c][both[..., c]] for c in range(9)]
    class_spread = np.concatenate([v - v.mean() for v in class_spread if v.size])
    assert g["velocity_rmse_class_means"] == pytest.approx(127 * np.sqrt(np.mean(class_spread**2)), rel=1e-3)
    assert g["velocity_rmse_class_means"] < 127 * np.std(true_velocities[both])
    assert g["offset_rmse"] == pytest.approx(np.sqrt(np.mean((offsets - true_offsets)[both] ** 2)), rel=1e-4)
    assert g["offset_rmse_quantized"] == pytest.approx(np.sqrt(np.mean(true_offsets[both] ** 2)), rel=1e-4)
    assert result["accuracy"]["groove"]["free_running"] == pytest.approx(np.mean(np.all(played == real, axis=-1)))
    for c, row in enumerate(g["per_class"].values()):
        assert row["hits_true"] == real[..., c].sum()
        assert row["hit_recall"] == pytest.approx(both[..., c].sum() / max(real[..., c].sum(), 1))
        assert row["hit_precision"] == pytest.approx(both[..., c].sum() / max(played[..., c].sum(), 1))
    assert list(g["per_class"])[2] == "closed_hihat"
    assert "hit precision" in format_table(result) and "| drum class | kick | snare |" in format_table(result)


def test_ctrl_c_stops_a_long_job_in_one_line(drums_run, tmp_path):
    """Sampling, like every command without handling of its own, stops on Ctrl-C with one line and status 130.
    Should Python drop the first (raised while a garbage-collection callback runs), a second stops it at once."""
    run_ = start_as_from_a_terminal(
        "musicvae_jax.sample", f"--workdir={drums_run}", "--num=200000", f"--output={tmp_path}"
    )
    seen = ""
    while "decoding:" not in seen and run_.poll() is None:  # the progress bar: decoding has begun
        seen += run_.stderr.read(1)
    _, err = press_ctrl_c(run_, 60, "sampling", again_after=10)
    assert run_.returncode == 130 and "stopped by Ctrl-C; what was written before is kept" in err, seen + err
    assert "Traceback" not in seen + err
