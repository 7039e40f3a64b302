"""Bucket paths (gs://...) for the converter: inputs are copied down, output is written locally and copied up.

MIDI parsing and ArrayRecord writing work on local files, so a remote input
folder is mirrored into a local staging folder first (files already there
with the same size are not fetched again), and a remote output is converted
into a local staging folder, which keeps the converter's resumability, then
uploaded file by file with `metadata.json` last, so a reader never finds
metadata whose shards are missing. Paths go through etils' epath, which
reaches Cloud Storage with `pip install -e '.[gcs]'`.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from etils import epath

DEFAULT_STAGING = Path.home() / ".cache" / "musicvae_jax" / "staging"
_FETCHED_SUFFIXES = (".mid", ".midi", ".csv")


def is_remote(path: str | Path) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def check_reachable(path: str | Path, flag: str) -> None:
    """Fails, naming the flag, where a gs:// path needs the optional Cloud Storage packages and they are missing
    (etils would raise its ImportError only when first touching the path)."""
    if not str(path).startswith("gs://"):
        return
    for module in ("gcsfs", "google.cloud.storage"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise ValueError(f"{flag} {path}: Cloud Storage paths need pip install -e '.[gcs]' ({module})") from None


def staging_folder(remote: str, staging_root: Path, kind: str) -> Path:
    """A stable local folder for one remote path, so an interrupted job finds its files again."""
    digest = hashlib.sha1(str(remote).rstrip("/").encode()).hexdigest()[:16]
    return staging_root / f"{kind}-{digest}"


def fetch_folder(remote: str | epath.Path, local: Path) -> Path:
    """Copies the MIDI files (and split .csv files) under `remote` into `local`, keeping relative paths."""
    source = epath.Path(remote)
    if not source.exists():
        raise FileNotFoundError(f"--input {remote}: no such file or folder")
    if not source.is_dir():
        target = local / source.name
        _copy_if_changed(source, target)
        return target
    for path in _files_under(source):
        if path.suffix.lower() in _FETCHED_SUFFIXES:
            _copy_if_changed(path, local / str(path.relative_to(source)))
    return local


def _files_under(folder: epath.Path) -> list[epath.Path]:
    """Every file below `folder`, by listing folder after folder (epath refuses `**` on buckets)."""
    files = []
    for path in sorted(folder.iterdir()):
        files.extend(_files_under(path) if path.is_dir() else [path])
    return files


def upload_folder(local: Path, remote: str | epath.Path, last: str) -> None:
    """Copies the files under `local` (not hidden ones) to `remote`, overwriting; the file named `last` goes last."""
    destination = epath.Path(remote)
    files = sorted(
        p
        for p in local.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(local).parts)
    )
    files.sort(key=lambda p: p.name == last)  # stable: keeps order, moves `last` to the end
    for path in files:
        target = destination / str(path.relative_to(local))
        target.parent.mkdir(parents=True, exist_ok=True)
        epath.Path(path).copy(target, overwrite=True)


def _copy_if_changed(source: epath.Path, target: Path) -> None:
    if target.is_file() and target.stat().st_size == source.stat().length:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    source.copy(epath.Path(partial), overwrite=True)
    partial.replace(target)
