"""The converter end to end: demo corpus, bad files, interruption and resume, Groove MIDI."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from array_record.python.array_record_module import ArrayRecordReader
from etils import epath
from helpers import GROOVE_DIR, REPO, note, press_ctrl_c, requires_groove, start_as_from_a_terminal, write_track_midi

from musicvae_jax import records, remote
from musicvae_jax.convert import OutputConflictError, convert, file_splits
from musicvae_jax.demo_corpus import write_demo_corpus
from musicvae_jax.midi_io import ReadLimits


@pytest.fixture(scope="module")
def demo_midi(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo_midi")
    write_demo_corpus(folder, num_songs=12)
    return folder


def read_shard(path):
    reader = ArrayRecordReader(str(path))
    data = reader.read_all()
    reader.close()
    return [records.deserialize(d) for d in data]


def output_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a conversion (shards, metadata, errors), by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("name", ["melody_2bar", "melody_16bar", "drums_2bar", "trio_16bar", "groove_4bar"])
def test_demo_corpus_converts_to_every_representation(demo_midi, tmp_path, name):
    metadata = convert([str(demo_midi)], tmp_path, name, workers=1)
    assert metadata["files_parsed"] == 12 and metadata["files_skipped"] == 0
    assert metadata["splits"]["train"]["examples"] > 0
    shard = tmp_path / metadata["splits"]["train"]["shards"][0]
    example = read_shard(shard)[0]
    assert example["source"].startswith("demo_song_") and example["window_start"] % 16 == 0
    for field, spec in metadata["fields"].items():
        assert list(example[field].shape) == spec["shape"] and example[field].dtype.name == spec["dtype"]


def test_bad_files_are_reported_and_skipped(demo_midi, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good = sorted(demo_midi.glob("*.mid"))[:3]
    for f in good:
        (corpus / f.name).write_bytes(f.read_bytes())
    whole = good[0].read_bytes()
    bad = {
        "empty.mid": b"",
        "truncated.mid": whole[: len(whole) // 2],
        "random.mid": os.urandom(3000),
        "header_only.mid": whole[:14],
        "data_byte_over_127.mid": whole[:22] + bytes([0x90, 200, 200]) + whole[25:],
        "nested/not_midi.MIDI": b"MThd this is text, not a MIDI file",
    }
    for name, data in bad.items():
        (corpus / name).parent.mkdir(exist_ok=True)
        (corpus / name).write_bytes(data)
    huge = write_track_midi(corpus / "absurd_ticks.mid", [note(0, 480, 60) + note(480 * 10**6, 480 * 10**6 + 1, 62)])
    assert huge.exists()
    metadata = convert([str(corpus)], tmp_path / "out", "drums_2bar", workers=2, files_per_shard=2)
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    skipped = {e["path"] for e in errors}
    # A bad file either fails to parse (reported with its reason) or parses to no usable notes.
    assert skipped == set(bad)
    assert all(e["reason"] for e in errors)
    assert metadata["files_seen"] == 3 + len(bad) + 1
    assert metadata["files_parsed"] == metadata["files_seen"] - len(skipped)
    good_examples = sum(len(convert_one(f, tmp_path)) for f in good)
    assert sum(s["examples"] for s in metadata["splits"].values()) >= good_examples


def convert_one(path: Path, tmp_path: Path) -> list:
    from musicvae_jax.midi_io import read_midi
    from musicvae_jax.representations import get_representation

    return get_representation("drums_2bar").windows(read_midi(path))


def test_interrupted_conversion_resumes_to_the_same_output(demo_midi, tmp_path):
    clean = tmp_path / "clean"
    convert([str(demo_midi)], clean, "trio_16bar", workers=1, files_per_shard=1)
    interrupted = tmp_path / "interrupted"
    command = [
        sys.executable,
        "-m",
        "musicvae_jax.convert",
        f"--input={demo_midi}",
        f"--output={interrupted}",
        "--representation=trio_16bar",
        "--workers=1",
        "--files_per_shard=1",
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list((interrupted / ".parts").glob("part-*.json")):
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list((interrupted / ".parts").glob("part-*.json")))
    if (interrupted / "metadata.json").exists():
        pytest.skip("the conversion finished before it could be interrupted")
    assert 1 <= done < 12
    (interrupted / ".tmp-train-00011-of-00012.array_record").write_bytes(b"half a shard")  # as a kill would leave
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    assert "12 parsed" in result.stdout
    assert output_bytes(interrupted) == output_bytes(clean)


def test_ctrl_c_stops_a_conversion_quietly_and_the_same_command_resumes(demo_midi, tmp_path):
    """A terminal's Ctrl-C reaches the pool's workers too: they leave it to the parent, which says how to resume."""
    clean = tmp_path / "clean"
    convert([str(demo_midi)], clean, "trio_16bar", workers=1, files_per_shard=1)
    interrupted = tmp_path / "interrupted"
    args = [f"--input={demo_midi}", f"--output={interrupted}", "--representation=trio_16bar", "--workers=2"]
    args += ["--files_per_shard=1"]
    process = start_as_from_a_terminal("musicvae_jax.convert", *args)
    deadline = time.time() + 60
    while time.time() < deadline and not list((interrupted / ".parts").glob("part-*.json")):
        time.sleep(0.005)
    _, err = press_ctrl_c(process, 60, "the conversion")
    if (interrupted / "metadata.json").exists():
        pytest.skip("the conversion finished before it could be interrupted")
    assert process.returncode == 130 and "the same command resumes" in err, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    subprocess.run([sys.executable, "-m", "musicvae_jax.convert", *args], cwd=REPO, capture_output=True, check=True)
    assert output_bytes(interrupted) == output_bytes(clean)


def test_output_with_other_settings_is_refused(demo_midi, tmp_path):
    convert([str(demo_midi)], tmp_path, "drums_2bar", workers=1)
    with pytest.raises(OutputConflictError, match="other inputs or settings"):
        convert([str(demo_midi)], tmp_path, "melody_2bar", workers=1)


def test_a_corpus_without_a_split_file_has_an_eval_file_from_two_files_on(demo_midi, tmp_path):
    """A hash split can leave a small corpus's eval empty; then the file with the lowest hash goes there."""
    names = [f"song_{i}.mid" for i in range(10)]
    half = file_splits(names, 0.5)  # the hash split itself, as it is when it has eval files
    assert 0 < half.count("eval") < 10 and half == file_splits(names, 0.5)
    lowest = file_splits(names, 1e-9)  # no path hashes below this
    assert lowest.count("eval") == 1 and half[lowest.index("eval")] == "eval"
    assert file_splits(names, 0.0) == ["train"] * 10  # no eval asked for
    assert file_splits(names[:1], 1e-9) == ["train"]
    assert file_splits(names, 1e-9, known=dict.fromkeys(names, "train")) == ["train"] * 10  # the corpus's own
    metadata = convert([str(demo_midi)], tmp_path, "melody_2bar", workers=1, eval_fraction=1e-9)
    assert metadata["splits"]["eval"]["files"] == 1 and metadata["splits"]["train"]["files"] == 11
    assert metadata["splits"]["eval"]["examples"] > 0


def test_cli_reports_bad_arguments_in_one_line(demo_midi, tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "musicvae_jax.convert", *args], cwd=REPO, capture_output=True, text=True
        )

    missing = run(f"--input={tmp_path / 'nope'}", f"--output={tmp_path / 'o'}", "--representation=drums_2bar")
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr and "Traceback" not in missing.stderr
    unknown = run(f"--input={demo_midi}", f"--output={tmp_path / 'o'}", "--representation=bongos")
    assert unknown.returncode == 2 and "unknown representation 'bongos'" in unknown.stderr
    negative = run(
        f"--input={demo_midi}", f"--output={tmp_path / 'o'}", "--representation=drums_2bar", "--max_steps=-5"
    )
    assert negative.returncode == 2 and "--max_steps must be >= 1, got -5" in negative.stderr
    assert not (tmp_path / "o").exists()
    for field, value, message in [
        ("files_per_shard", 0, "--files_per_shard must be >= 1, got 0"),
        ("workers", -2, "--workers must be >= 0 (0: one per core), got -2"),
        ("eval_fraction", 1.5, "--eval_fraction must be in [0, 1), got 1.5"),
        ("limits", ReadLimits(max_bytes=0), "--max_file_bytes must be >= 1, got 0"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            convert([str(demo_midi)], tmp_path / "o", "drums_2bar", **{field: value})
    from_config = run(f"--input={demo_midi}", f"--output={tmp_path / 'c'}", "--config=configs/groovae.py:4bar")
    assert from_config.returncode == 0, from_config.stderr
    assert json.loads((tmp_path / "c" / "metadata.json").read_text())["representation"] == "groove_4bar"


@requires_groove
@pytest.mark.parametrize("name, low, high", [("drums_2bar", 15_000, 30_000), ("groove_2bar", 5_000, 20 * 1150)])
def test_whole_groove_midi_dataset_converts(tmp_path, name, low, high):
    metadata = convert([str(GROOVE_DIR)], tmp_path, name)
    assert metadata["files_seen"] == 1150 and metadata["files_parsed"] == 1150 and metadata["files_skipped"] == 0
    splits = metadata["splits"]
    assert (splits["train"]["files"], splits["eval"]["files"], splits["test"]["files"]) == (897, 124, 129)
    total = sum(s["examples"] for s in splits.values())
    # 13.6 hours of drumming is about 25,000 bars; groove draws at most 20 windows a file.
    assert low < total < high
    assert (tmp_path / "errors.jsonl").read_text() == ""


def test_bucket_paths_without_the_gcs_extra_are_named_before_any_work(tmp_path, monkeypatch):
    """Without gcsfs (the gcs extra), etils fails with an ImportError on first touching a gs:// path."""
    real_import = remote.importlib.import_module

    def without_gcsfs(name):
        if name == "gcsfs":
            raise ImportError("No module named 'gcsfs'")
        return real_import(name)

    monkeypatch.setattr(remote.importlib, "import_module", without_gcsfs)
    message = r"--output gs://b/shards: Cloud Storage paths need pip install -e '.\[gcs\]' \(gcsfs\)"
    with pytest.raises(ValueError, match=message):
        convert([str(tmp_path)], "gs://b/shards", "drums_2bar", staging=tmp_path / "staging")
    with pytest.raises(ValueError, match="--input gs://b/midi: Cloud Storage"):
        convert(["gs://b/midi"], tmp_path / "out", "drums_2bar", staging=tmp_path / "staging")
    assert not (tmp_path / "staging").exists() and not (tmp_path / "out").exists()
    remote.check_reachable(tmp_path, "--input")  # local paths need nothing


def test_bucket_paths_go_through_local_staging(tmp_path, monkeypatch):
    """gs:// inputs and outputs: mirrored down, converted locally, uploaded with metadata.json last.

    No bucket is reachable here, so a local folder stands in for one: only the
    check "is this path remote?" is redirected; the copies run through etils'
    epath, the same calls that reach Cloud Storage.
    """
    bucket = tmp_path / "bucket"
    midi = bucket / "corpus"
    write_demo_corpus(midi, num_songs=4)
    (midi / "notes.txt").write_text("not MIDI, not fetched")
    monkeypatch.setattr(remote, "is_remote", lambda path: str(path).startswith(str(bucket)))
    staging = tmp_path / "staging"
    uploads = []
    real_upload = remote.upload_folder
    monkeypatch.setattr(remote, "upload_folder", lambda *a, **k: uploads.append(a) or real_upload(*a, **k))

    metadata = convert([str(midi)], bucket / "shards", "melody_2bar", workers=1, staging=staging)

    direct = convert([str(midi)], tmp_path / "direct", "melody_2bar", workers=1)
    assert metadata["splits"] == direct["splits"] and metadata["source"] == [str(midi)]
    uploaded = sorted(str(p.relative_to(bucket / "shards")) for p in (bucket / "shards").rglob("*") if p.is_file())
    local = sorted(str(p.relative_to(tmp_path / "direct")) for p in (tmp_path / "direct").rglob("*") if p.is_file())
    assert uploaded == [p for p in local if not p.startswith(".parts")]
    assert json.loads((bucket / "shards" / "metadata.json").read_text())["splits"] == direct["splits"]
    fetched = next(staging.glob("input-*"))
    assert sorted(p.name for p in fetched.rglob("*.mid")) == sorted(p.name for p in midi.rglob("*.mid"))
    assert not list(fetched.rglob("*.txt"))
    assert len(uploads) == 1

    before = {p: p.stat().st_mtime_ns for p in fetched.rglob("*.mid")}
    convert([str(midi)], bucket / "shards", "melody_2bar", workers=1, staging=staging)  # resumes, fetches nothing
    assert before == {p: p.stat().st_mtime_ns for p in fetched.rglob("*.mid")}


def test_upload_sends_metadata_last(tmp_path):
    local = tmp_path / "local"
    for name in ("metadata.json", "a.array_record", "z.array_record", ".parts/0.done"):
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_text(name)
    order = []
    path_class = type(epath.Path(local))
    original = path_class.copy

    def recording_copy(self, dst, overwrite=False):
        order.append(Path(str(dst)).name)
        return original(self, dst, overwrite=overwrite)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(path_class, "copy", recording_copy)
        remote.upload_folder(local, tmp_path / "remote", last="metadata.json")
    assert order == ["a.array_record", "z.array_record", "metadata.json"]
    assert (tmp_path / "remote" / "metadata.json").read_text() == "metadata.json"
