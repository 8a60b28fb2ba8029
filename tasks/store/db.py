"""Provenance in DuckDB: which model, seed, voice and parameters made every take and file.

The schema grows by migrations: plain functions in order, each applied with its record in one transaction.
DuckDB lets one process open a file read-write; a second one gets a lock error at once, so connections
here are short and retried with backoff instead of failing.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from engine.errors import VoicebatchError

# One connection at a time per process (DuckDB also refuses a read-only and a read-write connection to one
# file side by side in one process); other processes are waited for at connect().
_process_lock = threading.Lock()


class ProvenanceError(VoicebatchError):
    """The provenance database cannot be opened or written."""


def _m001_runs_and_renders(con) -> None:
    con.execute("""
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,
            flow_run_id VARCHAR,
            manifest_path VARCHAR NOT NULL,
            manifest_sha256 VARCHAR NOT NULL,
            title VARCHAR,
            engines VARCHAR,            -- JSON: engine name -> {model, revision, device, dtype, code_version}
            device VARCHAR,
            dtype VARCHAR,
            versions VARCHAR,           -- JSON: package -> version
            load_seconds DOUBLE,
            output_dir VARCHAR,
            started_at TIMESTAMP NOT NULL,
            ended_at TIMESTAMP,
            status VARCHAR NOT NULL,    -- running, completed, failed
            error VARCHAR,
            takes_rendered INTEGER,
            audio_seconds DOUBLE,
            wall_seconds DOUBLE
        )""")
    con.execute("""
        CREATE TABLE renders (
            run_id VARCHAR NOT NULL,
            chapter INTEGER NOT NULL,
            line INTEGER NOT NULL,
            chunk INTEGER NOT NULL,
            source VARCHAR,
            speaker VARCHAR NOT NULL,
            voice_id VARCHAR NOT NULL,
            voice_sha256 VARCHAR,
            engine VARCHAR NOT NULL,
            model VARCHAR,
            revision VARCHAR,
            device VARCHAR,
            dtype VARCHAR,
            engine_options VARCHAR,     -- JSON, after fallbacks
            text VARCHAR NOT NULL,
            params VARCHAR NOT NULL,    -- JSON: the resolved decoding parameters
            seed BIGINT,
            batch INTEGER,
            cache_key VARCHAR NOT NULL,
            take_path VARCHAR,
            take_sha256 VARCHAR,
            duration DOUBLE,
            render_seconds DOUBLE,
            peak_dbfs DOUBLE,
            rms_dbfs DOUBLE,
            status VARCHAR NOT NULL,    -- rendered, failed
            error VARCHAR,
            created_at TIMESTAMP NOT NULL
        )""")
    con.execute("""
        CREATE TABLE outputs (
            run_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,      -- chapter, book
            chapter INTEGER,
            title VARCHAR,
            path VARCHAR NOT NULL,
            sha256 VARCHAR NOT NULL,
            duration DOUBLE,
            created_at TIMESTAMP NOT NULL
        )""")


def _m002_take_cache(con) -> None:
    """The render cache: one row per take on disk, cache hits on renders, chapter fingerprints on outputs,
    and who runs a run (to tell a killed run from a running one)."""
    con.execute("""
        CREATE TABLE takes (
            cache_key VARCHAR PRIMARY KEY,
            path VARCHAR NOT NULL,
            sha256 VARCHAR NOT NULL,
            bytes BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            duration DOUBLE,
            peak_dbfs DOUBLE,
            rms_dbfs DOUBLE,
            render_seconds DOUBLE,
            engine VARCHAR,
            run_id VARCHAR,
            created_at TIMESTAMP NOT NULL
        )""")
    con.execute("ALTER TABLE renders ADD COLUMN cache_hit BOOLEAN DEFAULT false")
    con.execute("ALTER TABLE outputs ADD COLUMN fingerprint VARCHAR")
    con.execute("ALTER TABLE outputs ADD COLUMN reused BOOLEAN DEFAULT false")
    con.execute("ALTER TABLE outputs ADD COLUMN bytes BIGINT")
    con.execute("ALTER TABLE outputs ADD COLUMN mtime_ns BIGINT")
    con.execute("ALTER TABLE renders ADD COLUMN take_run_id VARCHAR")
    con.execute("ALTER TABLE runs ADD COLUMN takes_reused INTEGER")
    con.execute("ALTER TABLE runs ADD COLUMN host VARCHAR")
    con.execute("ALTER TABLE runs ADD COLUMN pid INTEGER")
    con.execute("ALTER TABLE runs ADD COLUMN forced BOOLEAN DEFAULT false")


def _m003_loudness(con) -> None:
    con.execute("""
        CREATE TABLE take_levels (
            run_id VARCHAR NOT NULL,
            key VARCHAR NOT NULL,       -- the take's cache key (renders.cache_key)
            path VARCHAR NOT NULL,      -- the normalised take
            sha256 VARCHAR NOT NULL,
            mode VARCHAR NOT NULL,      -- lufs, rms, peak: the unit of the levels below
            level_before DOUBLE,
            gain_db DOUBLE,
            level_after DOUBLE,
            true_peak_dbtp DOUBLE
        )""")
    con.execute("""
        CREATE TABLE chapter_loudness (
            run_id VARCHAR NOT NULL,
            chapter INTEGER NOT NULL,
            title VARCHAR,
            path VARCHAR NOT NULL,
            preset VARCHAR NOT NULL,
            mode VARCHAR NOT NULL,
            target DOUBLE,
            ceiling DOUBLE,             -- dBTP
            chapter_gain_db DOUBLE,     -- the correction after assembly
            integrated_lufs DOUBLE,
            loudness_range_lu DOUBLE,
            rms_dbfs DOUBLE,
            true_peak_dbtp DOUBLE,
            sample_peak_dbfs DOUBLE,
            noise_floor_dbfs DOUBLE,
            passed BOOLEAN NOT NULL,
            problems VARCHAR            -- JSON list of sentences
        )""")


def _m004_voice_transcripts(con) -> None:
    """Whisper transcripts cached by staged reference and model, and the voices each run spoke with."""
    con.execute("""
        CREATE TABLE voice_transcripts (
            audio_key VARCHAR NOT NULL,     -- staged reference: sha256 of the source's hash + conversion settings
            model VARCHAR NOT NULL,         -- Whisper model name, or file:<sha256> of a checkpoint
            transcript VARCHAR NOT NULL,
            language VARCHAR,
            seconds DOUBLE,                 -- transcription time
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (audio_key, model)
        )""")
    con.execute("""
        CREATE TABLE voices (
            run_id VARCHAR NOT NULL,
            voice_id VARCHAR NOT NULL,
            name VARCHAR,
            source_path VARCHAR,
            source_sha256 VARCHAR,
            staged_path VARCHAR,
            staged_key VARCHAR,
            duration DOUBLE,
            trimmed_from DOUBLE,            -- the source duration when the clip was trimmed
            converted BOOLEAN,              -- converted in this run (false: found staged)
            transcript VARCHAR,
            transcript_source VARCHAR,      -- manual, whisper, none
            whisper_model VARCHAR,
            transcribed BOOLEAN,            -- Whisper ran in this run (false: manual, cached or none)
            created_at TIMESTAMP NOT NULL
        )""")


def _m005_take_qa(con) -> None:
    """ASR scores cached by take and model, and every QA attempt of every run (re-takes included)."""
    con.execute("""
        CREATE TABLE qa_scores (
            cache_key VARCHAR NOT NULL,     -- the take (takes.cache_key)
            asr_model VARCHAR NOT NULL,     -- Whisper model name, or file:<sha256> of a checkpoint
            transcript VARCHAR NOT NULL,
            wer DOUBLE NOT NULL,
            seconds_per_word DOUBLE,
            flagged BOOLEAN NOT NULL,
            reasons VARCHAR,                -- JSON list of sentences
            asr_seconds DOUBLE,             -- transcription time
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (cache_key, asr_model)
        )""")
    con.execute("""
        CREATE TABLE qa_takes (
            run_id VARCHAR NOT NULL,
            chapter INTEGER NOT NULL,
            line INTEGER NOT NULL,
            chunk INTEGER NOT NULL,
            text VARCHAR,
            job_key VARCHAR NOT NULL,       -- the planned take's cache key (first attempt)
            cache_key VARCHAR,              -- this attempt's take
            attempt INTEGER NOT NULL,       -- 1 = the planned take, 2.. = re-takes
            seed BIGINT,
            asr_model VARCHAR NOT NULL,
            transcript VARCHAR,
            wer DOUBLE,
            seconds_per_word DOUBLE,
            duration DOUBLE,
            flagged BOOLEAN,
            reasons VARCHAR,                -- JSON list
            kept BOOLEAN NOT NULL,          -- the take the chapter uses
            scored BOOLEAN,                 -- transcribed in this run (false: score from qa_scores)
            error VARCHAR,                  -- a re-take that failed to render
            created_at TIMESTAMP NOT NULL
        )""")


def _m006_lane_timestamps(con) -> None:
    """When each take's engine call ran (inside the device's render lane) and when each take was normalised:
    enough to show from the database alone that two runs shared a device without rendering at once."""
    con.execute("ALTER TABLE renders ADD COLUMN render_started_at TIMESTAMP")
    con.execute("ALTER TABLE renders ADD COLUMN render_ended_at TIMESTAMP")
    con.execute("ALTER TABLE take_levels ADD COLUMN normalise_started_at TIMESTAMP")
    con.execute("ALTER TABLE take_levels ADD COLUMN normalise_ended_at TIMESTAMP")


def _m007_sweeps(con) -> None:
    """Grid sweeps: runs say what kind they are, takes their decode steps (where the engine reports them),
    and each take of a sweep names its grid point and the scores measured on it."""
    con.execute("ALTER TABLE runs ADD COLUMN kind VARCHAR DEFAULT 'render'")  # render, sweep
    con.execute("ALTER TABLE renders ADD COLUMN decode_steps INTEGER")
    con.execute("ALTER TABLE takes ADD COLUMN decode_steps INTEGER")
    con.execute("""
        CREATE TABLE sweep_takes (
            run_id VARCHAR NOT NULL,
            point VARCHAR NOT NULL,         -- the grid point's name, e.g. t0.3_k50_p0.95
            point_params VARCHAR NOT NULL,  -- JSON: the settings the point sets
            chapter INTEGER NOT NULL,
            line INTEGER NOT NULL,
            chunk INTEGER NOT NULL,
            seed BIGINT,
            cache_key VARCHAR NOT NULL,     -- renders.cache_key / takes.cache_key
            words INTEGER,                  -- spoken words in the text, as WER counts them
            asr_model VARCHAR,              -- NULL when the sweep ran without ASR
            wer DOUBLE,
            lufs DOUBLE,                    -- the take's integrated loudness as rendered (before normalising)
            render_seconds DOUBLE,          -- the take's own render time, also when this run reused it
            decode_steps INTEGER            -- NULL when the engine does not report them
        )""")


def _m008_qa_rescores(con) -> None:
    """`voicebatch qa RUN_ID`: each re-score of a past run's takes, one row per take, apart from the run's own
    QA attempts (qa_takes)."""
    con.execute("""
        CREATE TABLE qa_rescores (
            rescore_id VARCHAR NOT NULL,    -- one per `voicebatch qa` invocation
            run_id VARCHAR NOT NULL,        -- the run whose takes were scored
            chapter INTEGER NOT NULL,
            line INTEGER NOT NULL,
            chunk INTEGER NOT NULL,
            text VARCHAR,
            cache_key VARCHAR NOT NULL,     -- the take
            seed BIGINT,
            asr_model VARCHAR NOT NULL,
            wer_threshold DOUBLE,
            transcript VARCHAR,
            wer DOUBLE,
            seconds_per_word DOUBLE,
            pace_low DOUBLE,                -- the voice's accepted seconds per word at the time
            pace_high DOUBLE,
            duration DOUBLE,
            flagged BOOLEAN,
            reasons VARCHAR,                -- JSON list
            scored BOOLEAN,                 -- transcribed now (false: transcript from qa_scores)
            created_at TIMESTAMP NOT NULL
        )""")


def _m009_overrides_and_workers(con) -> None:
    """A run's overrides (JSON, as given), and which process rendered and normalised each take, with each
    worker's share of the run (Dask workers load their own engines: their load seconds are here)."""
    con.execute("ALTER TABLE runs ADD COLUMN overrides VARCHAR")
    con.execute("ALTER TABLE renders ADD COLUMN worker VARCHAR")
    con.execute("ALTER TABLE take_levels ADD COLUMN worker VARCHAR")
    con.execute("""
        CREATE TABLE run_workers (
            run_id VARCHAR NOT NULL,
            worker VARCHAR NOT NULL,        -- host:pid
            batches INTEGER,
            takes_rendered INTEGER,
            render_seconds DOUBLE,          -- engine calls
            load_seconds DOUBLE,            -- model loads in that process for this run (0: it was warm)
            takes_normalised INTEGER,
            normalise_seconds DOUBLE
        )""")


def _m010_pronunciations(con) -> None:
    """The manifest pronunciations applied to each render: JSON {term: "/phonemes/" or respelling}, NULL when
    none matched its text."""
    con.execute("ALTER TABLE renders ADD COLUMN pronunciations VARCHAR")


# Append only; never rename or reorder an applied migration.
MIGRATIONS: list[tuple[str, Callable]] = [
    ("001_runs_and_renders", _m001_runs_and_renders),
    ("002_take_cache", _m002_take_cache),
    ("003_loudness", _m003_loudness),
    ("004_voice_transcripts", _m004_voice_transcripts),
    ("005_take_qa", _m005_take_qa),
    ("006_lane_timestamps", _m006_lane_timestamps),
    ("007_sweeps", _m007_sweeps),
    ("008_qa_rescores", _m008_qa_rescores),
    ("009_overrides_and_workers", _m009_overrides_and_workers),
    ("010_pronunciations", _m010_pronunciations),
]


def _is_lock_error(err: Exception) -> bool:
    text = str(err).lower()
    return "lock" in text or "conflicting" in text


@contextmanager
def connect(path: Path, read_only: bool = False, wait: float | None = None) -> Iterator[Any]:
    """A short-lived connection, migrated to the current schema; waits while another process holds the file."""
    import duckdb

    from engine.settings import get_settings

    wait = get_settings().db_lock_wait if wait is None else wait
    path = Path(path)
    if read_only and not path.exists():
        raise ProvenanceError(f"no provenance database at {path}; render a manifest first, or set VOICEBATCH_DB_PATH")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    with _process_lock:
        con = _open(duckdb, path, read_only, wait)
        try:
            if not read_only:
                migrate(con, path)
            else:
                _check_version(con, path)
            yield con
        finally:
            con.close()


def _open(duckdb, path: Path, read_only: bool, wait: float):
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as e:
            if not _is_lock_error(e) or time.monotonic() > deadline:
                raise ProvenanceError(f"cannot open the provenance database {path}: {e}. If another program holds "
                                      "it open, close that program and run again") from None
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)


def _applied(con) -> list[str]:
    exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'").fetchone()[0]
    if not exists:
        return []
    return [r[0] for r in con.execute("SELECT name FROM schema_version ORDER BY version").fetchall()]


def _check_version(con, path: Path) -> None:
    applied = _applied(con)
    known = [name for name, _ in MIGRATIONS]
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise ProvenanceError(f"{path} was written by a newer voicebatch (schema migration {unknown[0]!r} is unknown "
                              "here); upgrade voicebatch, or point VOICEBATCH_DB_PATH at another file")


def migrate(con, path: Path) -> None:
    """Apply every migration not yet applied, each in its own transaction with its record."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name VARCHAR UNIQUE, "
                "applied_at TIMESTAMP)")
    _check_version(con, path)
    applied = set(_applied(con))
    for version, (name, apply) in enumerate(MIGRATIONS, start=1):
        if name in applied:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            apply(con)
            con.execute("INSERT INTO schema_version VALUES (?, ?, now())", [version, name])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise


def schema_version(con) -> int:
    return len(_applied(con))


def _column_arrays(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    columns = list(dict.fromkeys(c for r in rows for c in r))
    return {c: np.array([r.get(c) for r in rows], dtype=object) for c in columns}


def insert_rows(con, table: str, rows: list[dict[str, Any]]) -> None:
    """Bulk insert by column name in one statement (no round trip per row)."""
    if not rows:
        return
    data = _column_arrays(rows)  # read by DuckDB's replacement scan below
    columns = ", ".join(data)
    con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM data")


def replace_rows(db: Path, table: str, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """Insert rows in one transaction, replacing the rows that share their values of the `keys` columns."""
    if not rows:
        return
    match = " AND ".join(f"{table}.{k} = t.{k}" for k in keys)
    columns = ", ".join(f"unnest(?::VARCHAR[]) AS {k}" for k in keys)
    with connect(db) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM (SELECT {columns}) t WHERE {match})",
                        [[str(r[k]) for r in rows] for k in keys])
            insert_rows(con, table, rows)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_run(db: Path, row: dict[str, Any]) -> None:
    """Record a run as running; runs of this host whose process is gone are marked interrupted."""
    with connect(db) as con:
        stale = [run_id for run_id, pid in con.execute(
            "SELECT run_id, pid FROM runs WHERE status = 'running' AND host = ?", [row.get("host")]).fetchall()
            if not _alive(pid)]
        con.execute("BEGIN TRANSACTION")
        if stale:
            con.execute("UPDATE runs SET status = 'interrupted', error = 'the process running it ended before it "
                        "finished' WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [stale])
        insert_rows(con, "runs", [row])
        con.execute("COMMIT")


def finish_run(db: Path, run_id: str, updates: dict[str, Any], renders: list[dict[str, Any]],
               outputs: list[dict[str, Any]], extra: dict[str, list[dict[str, Any]]] | None = None) -> None:
    """Close a run: its render and output rows, rows for any `extra` tables, and its final status, all in one
    transaction."""
    sets = ", ".join(f"{k} = ?" for k in updates)
    with connect(db) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            insert_rows(con, "renders", renders)
            insert_rows(con, "outputs", outputs)
            for table, table_rows in (extra or {}).items():
                insert_rows(con, table, table_rows)
            con.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", [*updates.values(), run_id])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise


def record_failed_run(db: Path, run_id: str, error: BaseException, wall_seconds: float, log) -> None:
    """Mark a run failed with its error; a database that cannot take it is logged, never raised (the run's own
    error is the one to report)."""
    from datetime import datetime

    try:
        finish_run(db, run_id, dict(status="failed", error=f"{type(error).__name__}: {error}", ended_at=datetime.now(),
                                    wall_seconds=wall_seconds), [], [])
    except Exception as record_error:  # noqa: BLE001
        log.error("could not record the failure of run %s in %s: %s", run_id, db, record_error)


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
