"""Folder of MIDI files -> ArrayRecord shards of one representation.

    python -m musicvae_jax.convert --input DIR --output OUT --representation drums_2bar
    python -m musicvae_jax.convert --input DIR --output OUT --config configs/groovae.py

The sorted file list is cut into parts of `--files_per_shard` files; each
part is converted by one worker into one shard per split, written under a
temporary name and renamed, then marked done. A re-run skips finished parts,
so an interrupted conversion resumes and ends with the same output. Bad files
are logged in `errors.jsonl` and skipped. `metadata.json` describes the result.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from musicvae_jax import records, remote
from musicvae_jax.midi_io import DEFAULT_LIMITS, MidiReadError, ReadLimits, read_midi
from musicvae_jax.representations import get_representation

CONVERTER_VERSION = "1"
MIDI_SUFFIXES = (".mid", ".midi")
SPLITS = ("train", "eval", "test")
# Split names used by corpora's own split files, mapped to ours.
_CORPUS_SPLIT_NAMES = {"train": "train", "validation": "eval", "eval": "eval", "test": "test"}
METADATA_FILE = "metadata.json"
ERRORS_FILE = "errors.jsonl"  # files skipped, with the reason
WARNINGS_FILE = "warnings.jsonl"  # files used in part (cut where 4/4 ends, truncated)
PARTS_DIR = ".parts"


class OutputConflictError(RuntimeError):
    """The output folder holds a conversion made with other inputs or settings."""


@dataclasses.dataclass(frozen=True)
class SourceFile:
    path: str  # where to read it
    relpath: str  # its name in records, logs and the split hash
    split: str


@dataclasses.dataclass(frozen=True)
class PartJob:
    index: int
    num_parts: int
    files: tuple[SourceFile, ...]
    output: str
    representation: str
    limits: ReadLimits


def find_midi_files(inputs: Sequence[str]) -> tuple[Path, list[tuple[Path, str]]]:
    """All MIDI files under the inputs (recursive), with paths relative to their common root."""
    paths = []
    for given in inputs:
        p = Path(given)
        if p.is_dir():
            paths.extend(f for f in p.rglob("*") if f.suffix.lower() in MIDI_SUFFIXES and f.is_file())
        elif p.is_file():
            paths.append(p)
        else:
            raise FileNotFoundError(f"--input {given}: no such file or folder")
    if not paths:
        raise FileNotFoundError(f"--input {', '.join(inputs)}: no .mid or .midi files found")
    dirs = [Path(g).resolve() if Path(g).is_dir() else Path(g).resolve().parent for g in inputs]
    root = Path(os.path.commonpath(dirs))
    files = sorted(((f, f.resolve().relative_to(root).as_posix()) for f in paths), key=lambda x: x[1])
    return root, files


def corpus_splits(root: Path) -> dict[str, str] | None:
    """The corpus's own split per relative path, from an `info.csv` at its root (Groove MIDI)."""
    info = root / "info.csv"
    if not info.is_file():
        return None
    import csv

    with open(info, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "midi_filename" not in rows[0] or "split" not in rows[0]:
        return None
    return {row["midi_filename"]: _CORPUS_SPLIT_NAMES.get(row["split"], row["split"]) for row in rows}


def file_splits(relpaths: Sequence[str], eval_fraction: float, known: dict[str, str] | None = None) -> list[str]:
    """Each file's split: the corpus's own (`known`), else train/eval by a hash of its relative path.

    A hash split of a small corpus can leave eval empty (10 files at 0.1:
    a third of the time), and training stops without an eval split: with
    no split file, two files or more and none hashed into eval, the file
    with the lowest hash goes there. Deterministic either way.
    """
    hashes = [int.from_bytes(hashlib.sha1(r.encode()).digest()[:8], "little") / 2**64 for r in relpaths]
    splits = [
        (known or {}).get(r) or ("eval" if h < eval_fraction else "train")
        for r, h in zip(relpaths, hashes, strict=True)
    ]
    if known is None and eval_fraction > 0 and len(splits) >= 2 and "eval" not in splits:
        splits[hashes.index(min(hashes))] = "eval"
    return splits


def shard_name(split: str, part: int, num_parts: int) -> str:
    return f"{split}-{part:05d}-of-{num_parts:05d}.array_record"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def convert_part(job: PartJob) -> dict:
    """Converts one part's files and writes its shards. Runs in a worker process."""
    from array_record.python.array_record_module import ArrayRecordWriter

    representation = get_representation(job.representation)
    by_split: dict[str, list[bytes]] = collections.defaultdict(list)
    reports = []
    for source in job.files:
        report = {"path": source.relpath, "split": source.split}
        try:
            sequence = read_midi(source.path, job.limits)
            sequence.source = source.relpath
            windows = representation.windows(sequence)
        except MidiReadError as e:
            report.update(status="skipped", kind=e.kind, reason=str(e)[:500])
            reports.append(report)
            continue
        except Exception as e:  # anything else a hostile file provokes is reported, never fatal
            report.update(status="skipped", kind="unreadable", reason=f"{type(e).__name__}: {e}"[:500])
            reports.append(report)
            continue
        for window in windows:
            by_split[source.split].append(records.serialize({**window, "source": source.relpath}))
        report.update(status="parsed", examples=len(windows), warnings=sequence.warnings)
        reports.append(report)
    output = Path(job.output)
    shards = {}
    for split, data in by_split.items():
        name = shard_name(split, job.index, job.num_parts)
        tmp = output / f".tmp-{name}"
        writer = ArrayRecordWriter(str(tmp), "group_size:1")
        for record in data:
            writer.write(record)
        writer.close()
        os.replace(tmp, output / name)
        shards[split] = {"shard": name, "examples": len(data)}
    result = {"index": job.index, "files": reports, "shards": shards}
    _atomic_write_text(output / PARTS_DIR / f"part-{job.index:05d}.json", json.dumps(result))
    return result


def _job_fingerprint(representation: str, files: list[SourceFile], files_per_shard: int, limits: ReadLimits) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([CONVERTER_VERSION, representation, files_per_shard, dataclasses.asdict(limits)]).encode())
    for f in files:
        h.update(f"{f.relpath}\0{f.split}\n".encode())
    return h.hexdigest()


def _prepare_output(output: Path, fingerprint: str, num_parts: int) -> set[int]:
    """Creates or reopens the output folder; returns the indices of finished parts."""
    parts_dir = output / PARTS_DIR
    parts_dir.mkdir(parents=True, exist_ok=True)
    job_file = parts_dir / "job.json"
    if job_file.exists():
        previous = json.loads(job_file.read_text())
        if previous["fingerprint"] != fingerprint:
            raise OutputConflictError(
                f"--output {output}: holds a conversion with other inputs or settings; "
                "choose a new folder or delete this one"
            )
    else:
        _atomic_write_text(job_file, json.dumps({"fingerprint": fingerprint, "num_parts": num_parts}))
    for stale in [*output.glob(".tmp-*"), *parts_dir.glob(".tmp-*")]:  # left by an interrupted run
        stale.unlink()
    return {int(p.stem.split("-")[1]) for p in parts_dir.glob("part-*.json")}


def _run_parts(jobs: list[PartJob], workers: int, total_files: int, done_files: int) -> Iterable[dict]:
    from tqdm import tqdm

    bar = tqdm(total=total_files, initial=done_files, unit="file", desc="converting", file=sys.stderr, disable=None)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield convert_part(job)
                bar.update(len(job.files))
        else:
            ctx = multiprocessing.get_context("spawn")  # safe beside jax's threads
            # The workers ignore Ctrl-C from their first instruction on (an ignored signal stays ignored through
            # exec, and Python keeps it so): a terminal's Ctrl-C reaches every process of its group, and this one
            # stops them and says how to resume, rather than each printing a KeyboardInterrupt trace.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                pool = ctx.Pool(min(workers, len(jobs)))
            finally:
                signal.signal(signal.SIGINT, previous)
            with pool:
                for result in pool.imap_unordered(convert_part, jobs):
                    bar.update(len(result["files"]))
                    yield result
    finally:
        bar.close()


def summarize(output: Path, representation_name: str, inputs: Sequence[str], num_parts: int) -> dict:
    """Gathers the parts' reports into metadata.json and errors.jsonl."""
    representation = get_representation(representation_name)
    parts = [json.loads((output / PARTS_DIR / f"part-{i:05d}.json").read_text()) for i in range(num_parts)]
    splits = {s: {"files": 0, "examples": 0, "shards": []} for s in SPLITS}
    reasons: collections.Counter = collections.Counter()
    errors, warnings = [], []
    parsed = skipped = without_examples = 0
    for part in parts:
        for report in part["files"]:
            if report["status"] == "skipped":
                skipped += 1
                reasons[report["kind"]] += 1
                errors.append(report)
                continue
            parsed += 1
            if report["warnings"]:
                warnings.append({"path": report["path"], "warnings": report["warnings"]})
            splits[report["split"]]["files"] += 1
            without_examples += report["examples"] == 0
        for split, shard in part["shards"].items():
            splits[split]["examples"] += shard["examples"]
            splits[split]["shards"].append(shard["shard"])
    metadata = {
        "representation": representation_name,
        "num_steps": representation.num_steps,
        "num_bars": representation.num_bars,
        "fields": {k: v.as_dict() for k, v in representation.fields.items()},
        "splits": {s: v for s, v in splits.items() if v["files"] or v["examples"]},
        "files_seen": parsed + skipped,
        "files_parsed": parsed,
        "files_skipped": skipped,
        "files_without_examples": without_examples,
        "files_with_warnings": len(warnings),
        "skip_reasons": dict(reasons),
        "source": [str(i) for i in inputs],
        "converter_version": CONVERTER_VERSION,
    }
    _atomic_write_text(output / METADATA_FILE, json.dumps(metadata, indent=2) + "\n")
    _atomic_write_text(output / ERRORS_FILE, "".join(json.dumps(e) + "\n" for e in errors))
    _atomic_write_text(output / WARNINGS_FILE, "".join(json.dumps(w) + "\n" for w in warnings))
    return metadata


def convert(
    inputs: Sequence[str],
    output: str | os.PathLike,
    representation: str,
    *,
    workers: int | None = None,
    files_per_shard: int = 64,
    eval_fraction: float = 0.1,
    limits: ReadLimits = DEFAULT_LIMITS,
    staging: str | os.PathLike = remote.DEFAULT_STAGING,
) -> dict:
    """Converts MIDI files to shards in `output`; returns the metadata written.

    Inputs and output may be bucket paths (gs://...): they go through local
    folders under `staging` (see musicvae_jax/remote.py).
    """
    get_representation(representation)  # fail early on a bad name
    for flag, value, ok, rule in [
        ("files_per_shard", files_per_shard, files_per_shard >= 1, ">= 1"),
        ("max_file_bytes", limits.max_bytes, limits.max_bytes >= 1, ">= 1"),
        ("max_steps", limits.max_steps, limits.max_steps >= 1, ">= 1"),
        ("workers", workers, workers is None or workers >= 0, ">= 0 (0: one per core)"),
        ("eval_fraction", eval_fraction, 0.0 <= eval_fraction < 1.0, "in [0, 1)"),
    ]:
        if not ok:
            raise ValueError(f"--{flag} must be {rule}, got {value}")
    for path in inputs:
        remote.check_reachable(path, "--input")
    remote.check_reachable(output, "--output")
    staging, sources = Path(staging), list(inputs)
    inputs = [
        str(remote.fetch_folder(i, remote.staging_folder(i, staging, "input"))) if remote.is_remote(i) else i
        for i in inputs
    ]
    destination = str(output)
    if remote.is_remote(destination):
        output = remote.staging_folder(destination, staging, "output")
    root, found = find_midi_files(inputs)
    splits = file_splits([rel for _, rel in found], eval_fraction, corpus_splits(root))
    files = [SourceFile(str(path), rel, split) for (path, rel), split in zip(found, splits, strict=True)]
    chunks = [tuple(files[i : i + files_per_shard]) for i in range(0, len(files), files_per_shard)]
    output = Path(output)
    done = _prepare_output(output, _job_fingerprint(representation, files, files_per_shard, limits), len(chunks))
    jobs = [
        PartJob(i, len(chunks), chunk, str(output), representation, limits)
        for i, chunk in enumerate(chunks)
        if i not in done
    ]
    done_files = sum(len(c) for i, c in enumerate(chunks) if i in done)
    for _ in _run_parts(jobs, workers or os.cpu_count() or 1, len(files), done_files):
        pass
    metadata = summarize(output, representation, sources, len(chunks))
    if remote.is_remote(destination):
        remote.upload_folder(output, destination, last=METADATA_FILE)
    return metadata


def format_summary(metadata: dict, output: str | Path) -> str:
    output = str(output).rstrip("/")
    lines = [
        f"representation {metadata['representation']}: {metadata['files_seen']} files seen, "
        f"{metadata['files_parsed']} parsed, {metadata['files_skipped']} skipped, "
        f"{metadata['files_without_examples']} parsed with no usable window",
    ]
    for reason, count in sorted(metadata["skip_reasons"].items()):
        lines.append(f"  skipped ({reason}): {count}")
    for split, info in metadata["splits"].items():
        lines.append(f"  {split}: {info['files']} files, {info['examples']} examples, {len(info['shards'])} shards")
    if metadata["files_skipped"]:
        lines.append(f"  per-file errors: {output}/{ERRORS_FILE}")
    if metadata["files_with_warnings"]:
        lines.append(f"  {metadata['files_with_warnings']} files used in part (see {output}/{WARNINGS_FILE})")
    lines.append(f"  metadata: {output}/{METADATA_FILE}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from musicvae_jax.cli import fail

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.input or not FLAGS.output:
        fail("--input and --output are required")
    representation = FLAGS.representation
    if FLAGS.config is not None:
        from_config = FLAGS.config.data.representation
        if representation and representation != from_config:
            fail(f"--representation {representation} disagrees with the config's {from_config}")
        representation = from_config
    if not representation:
        fail("give --representation or --config")
    try:
        get_representation(representation)
    except ValueError as e:
        fail(f"--representation: {e}")
    limits = ReadLimits(max_bytes=FLAGS.max_file_bytes, max_steps=FLAGS.max_steps)
    try:
        metadata = convert(
            FLAGS.input,
            FLAGS.output,
            representation,
            workers=FLAGS.workers,
            files_per_shard=FLAGS.files_per_shard,
            eval_fraction=FLAGS.eval_fraction,
            limits=limits,
            staging=FLAGS.staging_dir,
        )
    except (FileNotFoundError, ValueError, OutputConflictError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        print(f"interrupted: the finished parts are kept in {FLAGS.output}; the same command resumes", file=sys.stderr)
        sys.exit(130)
    print(format_summary(metadata, FLAGS.output))


def _define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags

    flags.DEFINE_multi_string("input", None, "MIDI file or folder (recursive); repeat for several.")
    flags.DEFINE_string("output", None, "Folder (or gs:// path) for the shards, metadata.json and errors.jsonl.")
    flags.DEFINE_string("staging_dir", str(remote.DEFAULT_STAGING), "Local copies of gs:// inputs and outputs.")
    flags.DEFINE_string("representation", None, "One of the names in musicvae_jax.representations.")
    config_flags.DEFINE_config_file("config", None, "A config file; its data.representation is used.")
    flags.DEFINE_integer("workers", 0, "Worker processes (0: one per core).")
    flags.DEFINE_integer("files_per_shard", 64, "MIDI files per shard (and per unit of resumable work).")
    flags.DEFINE_float("eval_fraction", 0.1, "Share of files in 'eval' when the corpus has no split file.")
    flags.DEFINE_integer("max_file_bytes", ReadLimits.max_bytes, "Larger files are skipped.")
    flags.DEFINE_integer("max_steps", ReadLimits.max_steps, "Files are truncated after this many 16th steps.")


if __name__ == "__main__":
    from musicvae_jax import cli

    cli.run(main, _define_flags)
