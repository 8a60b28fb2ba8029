"""What the review page shows, read from provenance: every take of the runs with its settings, QA score and
levels, each run's chapter files and loudness, and the sweep grid points when a sweep recorded them."""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tasks.render.cache import still_valid
from tasks.store.db import connect, fetch_dicts
from tasks.store.history import QueryError


@dataclass(frozen=True)
class ReviewTake:
    """One `renders` row of a run, joined with what QA and loudness recorded about its take."""
    run_id: str
    chapter: int
    line: int
    chunk: int
    speaker: str
    voice_id: str
    engine: str
    text: str
    params: dict[str, Any]  # the resolved decoding parameters, seed included
    seed: int | None
    cache_key: str
    path: Path | None  # the take file where it is now; None when it is gone
    recorded_path: str | None
    duration: float | None
    render_seconds: float | None
    cache_hit: bool
    status: str
    error: str | None
    peak_dbfs: float | None
    rms_dbfs: float | None
    wer: float | None = None
    flagged: bool | None = None
    reasons: tuple[str, ...] = ()
    level_mode: str | None = None  # take_levels: the unit of the levels below (lufs, rms, peak)
    level_before: float | None = None
    gain_db: float | None = None
    point: str | None = None  # the sweep grid point, when sweep_takes has this take
    point_params: dict[str, Any] | None = None


@dataclass(frozen=True)
class ReviewChapter:
    """A run's chapter file (when one was written) and its loudness report."""
    run_id: str
    chapter: int
    title: str
    path: Path | None  # None when the file is gone or now holds other audio (a later run rewrote it)
    loudness: dict[str, Any] = field(default_factory=dict)  # the chapter_loudness row, when there is one
    sha256: str | None = None


@dataclass(frozen=True)
class ReviewData:
    runs: list[dict[str, Any]]
    takes: list[ReviewTake]
    chapters: list[ReviewChapter]


@lru_cache(maxsize=64)
def _resolved_folder(folder: str) -> Path:
    return Path(folder).resolve()


def locate(recorded: str | None, output_dir: str | None) -> Path | None:
    """Where a recorded file is now. Paths are recorded as the run was given them, so a relative one is read
    from the current folder, else found under the run's (resolved) output folder by its trailing parts."""
    if not recorded:
        return None
    if os.path.isabs(recorded) or os.path.isfile(recorded):
        # A book has thousands of takes in a few folders: each folder is resolved once, a file only if a link.
        try:
            mode = os.lstat(recorded).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return Path(recorded).resolve() if os.path.isfile(recorded) else None
        folder, name = os.path.split(recorded)
        return _resolved_folder(folder or ".") / name if stat.S_ISREG(mode) else None
    path = Path(recorded)
    if output_dir:
        parts = path.parts
        for start in range(len(parts)):
            candidate = Path(output_dir, *parts[start:])
            if candidate.is_file():
                return candidate
    return None


def _unchanged(output: dict[str, Any], output_dir: str | None) -> Path | None:
    """The chapter file, if it still holds the audio this run wrote (runs of one title share chapter paths)."""
    path = locate(output["path"], output_dir)
    if path is None or not still_valid(path, output["sha256"], output["bytes"], output["mtime_ns"]):
        return None
    return path


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0])


def resolve_runs(con, db: Path, run_ids: list[str]) -> list[dict[str, Any]]:
    """Each id (or unique prefix) to its `runs` row, in the order given; an unknown id is refused."""
    if not run_ids:
        raise QueryError("name at least one run id; `voicebatch history` lists them")
    runs = []
    for run_id in run_ids:
        found = fetch_dicts(con, "SELECT * FROM runs WHERE run_id LIKE ? || '%'", [run_id])
        if len(found) != 1:
            what = "no run" if not found else f"{len(found)} runs"
            raise QueryError(f"{what} with an id starting {run_id!r} in {db}; `voicebatch history` lists run ids")
        if found[0]["run_id"] not in [r["run_id"] for r in runs]:
            runs.append(found[0])
    return runs


def _take(row: dict[str, Any], output_dir: str | None, qa: dict | None, level: dict | None,
          sweep: dict | None) -> ReviewTake:
    recorded = row["take_path"]
    path = locate(recorded, output_dir)
    return ReviewTake(
        run_id=row["run_id"], chapter=row["chapter"], line=row["line"], chunk=row["chunk"], speaker=row["speaker"],
        voice_id=row["voice_id"], engine=row["engine"], text=row["text"], params=json.loads(row["params"] or "{}"),
        seed=row["seed"], cache_key=row["cache_key"], path=path, recorded_path=recorded, duration=row["duration"],
        render_seconds=row["render_seconds"], cache_hit=bool(row["cache_hit"]), status=row["status"],
        error=row["error"], peak_dbfs=row["peak_dbfs"], rms_dbfs=row["rms_dbfs"],
        wer=qa["wer"] if qa else None, flagged=qa["flagged"] if qa else None,
        reasons=tuple(json.loads(qa["reasons"] or "[]")) if qa else (),
        level_mode=level["mode"] if level else None, level_before=level["level_before"] if level else None,
        gain_db=level["gain_db"] if level else None,
        point=None if sweep is None else str(sweep["point"]),
        point_params=None if sweep is None else json.loads(sweep["point_params"] or "{}"))


def load_review(db: Path, run_ids: list[str]) -> ReviewData:
    """Every take and chapter of the runs, in the order the runs were named."""
    _resolved_folder.cache_clear()  # folders may have moved since the last page (`--watch` lives long)
    with connect(db, read_only=True) as con:
        runs = resolve_runs(con, db, run_ids)
        ids = [r["run_id"] for r in runs]
        renders = fetch_dicts(con, """
            SELECT * FROM renders WHERE run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY chapter, line, chunk""",
                         [ids])
        keys = sorted({r["cache_key"] for r in renders})
        # A run's own QA attempt first, else the cached score of the take (any ASR model, the newest).
        qa_runs = {(q["run_id"], q["cache_key"]): q for q in fetch_dicts(con, """
            SELECT run_id, cache_key, wer, flagged, reasons FROM qa_takes
            WHERE run_id IN (SELECT unnest(?::VARCHAR[])) AND kept""", [ids])}
        qa_cached = {q["cache_key"]: q for q in fetch_dicts(con, """
            SELECT cache_key, wer, flagged, reasons FROM qa_scores WHERE cache_key IN (SELECT unnest(?::VARCHAR[]))
            QUALIFY row_number() OVER (PARTITION BY cache_key ORDER BY created_at DESC) = 1""", [keys])}
        levels = {(t["run_id"], t["key"]): t for t in fetch_dicts(con, """
            SELECT run_id, key, mode, level_before, gain_db FROM take_levels WHERE key IN (SELECT unnest(?::VARCHAR[]))
            """, [keys])}
        any_level = {key: t for (_, key), t in levels.items()}
        sweep = {}
        if _has_table(con, "sweep_takes"):
            sweep = {(s["run_id"], s["cache_key"]): s for s in fetch_dicts(con, """
                SELECT run_id, cache_key, point, point_params FROM sweep_takes
                WHERE run_id IN (SELECT unnest(?::VARCHAR[]))""", [ids])}
        outputs = fetch_dicts(con, """
            SELECT run_id, chapter, title, path, sha256, bytes, mtime_ns FROM outputs
            WHERE kind = 'chapter' AND run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY chapter""", [ids])
        loudness = {(c["run_id"], c["chapter"]): c for c in fetch_dicts(con, """
            SELECT * FROM chapter_loudness WHERE run_id IN (SELECT unnest(?::VARCHAR[]))""", [ids])}
    out_dir = {r["run_id"]: r["output_dir"] for r in runs}
    takes = [_take(r, out_dir[r["run_id"]], qa_runs.get((r["run_id"], r["cache_key"])) or qa_cached.get(r["cache_key"]),
                   levels.get((r["run_id"], r["cache_key"])) or any_level.get(r["cache_key"]),
                   sweep.get((r["run_id"], r["cache_key"]))) for r in renders]
    chapters = [ReviewChapter(o["run_id"], o["chapter"], o["title"] or "", _unchanged(o, out_dir[o["run_id"]]),
                              loudness.get((o["run_id"], o["chapter"]), {}), o["sha256"]) for o in outputs]
    order = {run_id: i for i, run_id in enumerate(ids)}
    takes.sort(key=lambda t: (t.chapter, t.line, t.chunk, order[t.run_id]))
    return ReviewData(runs=runs, takes=takes, chapters=chapters)
