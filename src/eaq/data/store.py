"""On-disk datasets: a directory of compressed arrays plus ``meta.json``.

Layout::

    PATH/meta.json            schema version, env spec, counts, sha256 per array file, card
    PATH/<field>.npz          one compressed array per field (key ``data``)

Writes go to a temporary sibling directory that is renamed into place, so a crash never
leaves a half-written dataset; an existing dataset is only replaced with ``force=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from eaq.data.batch import SCHEMA_VERSION, DatasetMeta, EpisodeBatch
from eaq.data.errors import DatasetError
from eaq.data.validate import validate_arrays

META_FILE = "meta.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file via a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_dataset(batch: EpisodeBatch, path: str | Path, force: bool = False) -> Path:
    """Validates and writes ``batch`` to directory ``path`` atomically; returns the path."""
    from eaq.data.card import dataset_card

    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; pass --force (force=True) to overwrite it")
    validate_arrays(batch.arrays(), batch.spec, "<dataset being saved>")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        checksums = {}
        for name, arr in batch.arrays().items():
            np.savez_compressed(tmp / f"{name}.npz", data=arr)
            checksums[f"{name}.npz"] = _sha256(tmp / f"{name}.npz")
        meta = {
            "schema_version": SCHEMA_VERSION,
            "format": "eaq-episodes",
            "n_episodes": batch.n_episodes,
            "n_transitions": batch.n_transitions,
            "meta": batch.meta.to_dict(),
            "sha256": checksums,
            "card": dataset_card(batch),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _json_default(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_meta(path: str | Path) -> dict[str, Any]:
    """Reads and checks ``meta.json`` of a dataset directory."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(path, None, "no such dataset directory")
    if not path.is_dir():
        raise DatasetError(path, None, "expected a dataset directory (with meta.json and <field>.npz files)")
    mfile = path / META_FILE
    if not mfile.exists():
        raise DatasetError(mfile, None, "missing meta.json; is this an eaq dataset directory?")
    try:
        meta = json.loads(mfile.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(mfile, None, f"not valid JSON ({e})") from e
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DatasetError(
            mfile, "schema_version", f"unknown schema version {version!r}; this eaq reads version {SCHEMA_VERSION}"
        )
    for key in ("meta", "sha256"):
        if key not in meta:
            raise DatasetError(mfile, key, "missing key")
    try:
        meta["_parsed"] = DatasetMeta.from_dict(meta["meta"])
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(mfile, "meta", f"malformed metadata ({e})") from e
    return meta


def load_dataset(path: str | Path) -> EpisodeBatch:
    """Loads and fully validates a dataset directory; raises DatasetError naming file and field."""
    path = Path(path)
    meta = read_meta(path)
    parsed: DatasetMeta = meta["_parsed"]
    expected_files = set(meta["sha256"])
    on_disk = {p.name for p in path.glob("*.npz")}
    for fname in sorted(on_disk - expected_files):
        raise DatasetError(path / fname, fname.removesuffix(".npz"), "unexpected array file (not listed in meta.json)")
    arrays: dict[str, np.ndarray] = {}
    files: dict[str, str] = {}
    for fname, digest in sorted(meta["sha256"].items()):
        field = fname.removesuffix(".npz")
        fpath = path / fname
        if not fpath.exists():
            raise DatasetError(fpath, field, "missing array file listed in meta.json")
        if _sha256(fpath) != digest:
            raise DatasetError(fpath, field, "sha256 checksum mismatch: the file is corrupted or was modified")
        try:
            with np.load(fpath, allow_pickle=False) as z:
                arrays[field] = z["data"]
        except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as e:
            raise DatasetError(fpath, field, f"unreadable or truncated array file ({type(e).__name__}: {e})") from e
        files[field] = fname
    validate_arrays(arrays, parsed.spec, path, files)
    n = int(arrays["mask"].shape[0])
    if meta.get("n_episodes") not in (None, n):
        raise DatasetError(path / META_FILE, "n_episodes", f"says {meta['n_episodes']}, arrays hold {n}")
    return EpisodeBatch(**arrays, meta=parsed)
