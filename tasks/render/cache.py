"""The render cache: takes stored content-addressed by cache key, found again across runs and processes.

A take is trusted when its file has the size and modification time recorded with its sha256; otherwise the
file is hashed, and a mismatch means the take is re-rendered (the corrupt file is removed). A take that is
about to be read to assemble a chapter is always hashed: size and time decide only what need not be read. A take file with
no database row was written (atomically) by a run killed before it could record it, and is adopted after
hashing. The same check guards chapter and book files before they are reused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Collection, Iterable

from tasks.audio.assemble import measure
from tasks.audio.wav import read_mono
from tasks.core.files import sha256_file
from tasks.store import db as provenance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedFile:
    path: str
    sha256: str
    bytes: int
    mtime_ns: int
    duration: float | None = None


def take_path(takes_dir: Path, key: str) -> Path:
    return takes_dir / key[:2] / f"{key}.wav"


def file_record(path: Path, sha256: str | None = None) -> CachedFile:
    st = os.stat(path)
    return CachedFile(str(path), sha256 or sha256_file(path), st.st_size, st.st_mtime_ns)


def still_valid(path: Path, sha256: str, size: int | None, mtime_ns: int | None) -> bool:
    """True when `path` still holds the content recorded as `sha256` (cheap stat check, hash when in doubt)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if st.st_size == size and st.st_mtime_ns == mtime_ns:
        return True
    return sha256_file(path) == sha256


def _adopt(key: str, path: Path) -> dict[str, Any] | None:
    """The row of a take file no run recorded; None (and the file removed) when it is not readable audio."""
    record = file_record(path)
    try:
        m = measure(read_mono(path)[0])
    except Exception as e:  # noqa: BLE001 - libsndfile's errors vary by format; any of them means unusable
        log.warning("take file %s is not readable audio (%s); it will be rendered again", path, e)
        path.unlink()
        return None
    return {"cache_key": key, "path": str(path), "sha256": record.sha256, "bytes": record.bytes,
            "mtime_ns": record.mtime_ns, "duration": m["duration"], "peak_dbfs": m["peak_dbfs"],
            "rms_dbfs": m["rms_dbfs"], "render_seconds": None, "engine": None, "run_id": None,
            "created_at": datetime.now()}


def find_takes(db: Path, takes_dir: Path, keys: Iterable[str],
               verify: Collection[str] = ()) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The usable cached takes among `keys` (cache key -> `takes` row with its path in `takes_dir`), and the
    rows of take files adopted from an interrupted run (to be recorded). The takes of `verify` (those about to
    be read) are hashed whatever their size and modification time say."""
    keys, verify = list(dict.fromkeys(keys)), set(verify)
    rows: dict[str, dict[str, Any]] = {}
    if Path(db).exists() and keys:
        with provenance.connect(db) as con:
            cur = con.execute("SELECT * FROM takes WHERE cache_key IN (SELECT unnest(?::VARCHAR[]))", [keys])
            names = [d[0] for d in cur.description]
            rows = {r[0]: dict(zip(names, r)) for r in cur.fetchall()}
    hits, adopted = {}, []
    for key in keys:
        path = take_path(takes_dir, key)
        row = rows.get(key)
        if row is None:
            if path.exists() and (found := _adopt(key, path)) is not None:
                hits[key] = found
                adopted.append(found)
            continue
        same_file = row["path"] == str(path)
        if key in verify:
            ok = path.exists() and sha256_file(path) == row["sha256"]
        else:
            ok = still_valid(path, row["sha256"], row["bytes"] if same_file else None,
                             row["mtime_ns"] if same_file else None)
        if ok:
            hits[key] = {**row, "path": str(path)}
        elif path.exists():
            log.warning("cached take %s does not match its recorded sha256 (damaged or changed since it was "
                        "rendered); it will be rendered again", path)
            path.unlink()
    if adopted:
        log.info("adopting %d take files written by an interrupted run", len(adopted))
    return hits, adopted


def record_takes(db: Path, rows: list[dict[str, Any]]) -> None:
    """Register rendered takes (one short transaction; a take rendered twice keeps its newest row)."""
    provenance.replace_rows(db, "takes", rows, ("cache_key",))


def fingerprint(material: Any) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def reusable_outputs(db: Path, fingerprints: dict[str, str]) -> dict[str, CachedFile]:
    """Output files (path -> record) whose newest row has the wanted fingerprint and whose file is intact."""
    if not Path(db).exists() or not fingerprints:
        return {}
    with provenance.connect(db) as con:
        found = con.execute("""
            SELECT path, fingerprint, sha256, bytes, mtime_ns, duration FROM outputs
            WHERE path IN (SELECT unnest(?::VARCHAR[]))
            QUALIFY row_number() OVER (PARTITION BY path ORDER BY created_at DESC) = 1""",
                            [list(fingerprints)]).fetchall()
    out = {}
    for path, fp, sha, size, mtime, duration in found:
        if fp == fingerprints[path] and still_valid(Path(path), sha, size, mtime):
            out[path] = CachedFile(path, sha, size, mtime, duration)
    return out
