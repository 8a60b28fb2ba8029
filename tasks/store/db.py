"""Provenance in DuckDB: which model, seed, voice and parameters made every take and file.

The schema grows by migrations (tasks/store/schema.py), each applied here with its record in one transaction.
DuckDB lets one process open a file read-write; a second one gets a lock error at once, so connections
here are short and retried with backoff instead of failing.
"""
from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tasks.core.errors import VoicebatchError
from tasks.core.processes import is_alive
from tasks.core.settings import get_settings
from tasks.store.schema import MIGRATIONS

# One connection at a time per process (DuckDB also refuses a read-only and a read-write connection to one
# file side by side in one process); other processes are waited for at connect().
_process_lock = threading.Lock()
# DuckDB's header: three 4 KiB blocks before the data blocks.
_HEADER_BYTES = 3 * 4096
# What `voicebatch query` may do: read this one database, nothing else, and never change that.
SANDBOX = {"enable_external_access": False, "lock_configuration": True}

log = logging.getLogger(__name__)


class ProvenanceError(VoicebatchError):
    """The provenance database cannot be opened or written."""


class DamagedDatabaseError(ProvenanceError):
    """The provenance database file is damaged (truncated, overwritten, or from an unknown storage version)."""
    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"the provenance database {path} is damaged ({detail}); no other program holds it, so "
                         f"waiting will not help. Move it aside and start a new one with `voicebatch db recover "
                         f"{path}`: the next render adopts the takes already on disk")


def _is_lock_error(err: Exception) -> bool:
    text = str(err).lower()
    return "lock" in text or "conflicting" in text


def _is_damage(err: Exception) -> bool:
    import duckdb

    return isinstance(err, (duckdb.IOException, duckdb.SerializationException)) and not _is_lock_error(err)


@contextmanager
def connect(path: Path, read_only: bool = False, wait: float | None = None,
            config: dict[str, Any] | None = None, check_size: bool = False) -> Iterator[Any]:
    """A short-lived connection, migrated to the current schema; waits while another process holds the file.
    A damaged file, found at opening or by any read through the connection, raises DamagedDatabaseError;
    `check_size` finds a truncated one at once (valid only as the first connection of a process: an open
    database may list blocks it has not written yet)."""
    import duckdb

    wait = get_settings().db_lock_wait if wait is None else wait
    path = Path(path)
    if read_only and not path.exists():
        raise ProvenanceError(f"no provenance database at {path}; render a manifest first, or set VOICEBATCH_DB_PATH")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    with _process_lock:
        con = _open(duckdb, path, read_only, wait, config or {})
        try:
            if check_size:
                _check_size(con, path)
            if not read_only:
                migrate(con, path)
            else:
                _check_version(con, path)
            yield con
        except duckdb.Error as e:
            if _is_damage(e):
                raise DamagedDatabaseError(path, str(e).splitlines()[0]) from None
            raise
        finally:
            con.close()


def _holder(err: Exception) -> str:
    """Who holds the file, as DuckDB's lock error names it ("... (PID 123)")."""
    found = re.search(r"held in (.*?) \(PID (\d+)\)", str(err))
    return f"process {found.group(2)} ({found.group(1)})" if found else "another process"


def _open(duckdb, path: Path, read_only: bool, wait: float, config: dict[str, Any]):
    deadline = time.monotonic() + wait
    delay = 0.05
    said = False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.Error as e:
            if _is_damage(e):
                raise DamagedDatabaseError(path, str(e).splitlines()[0]) from None
            if not _is_lock_error(e) or time.monotonic() > deadline:
                raise ProvenanceError(f"cannot open the provenance database {path}: {e}. If another program holds "
                                      "it open, close that program and run again") from None
            if not said:
                log.warning("waiting up to %.0f s for the provenance database %s, held by %s "
                            "(VOICEBATCH_DB_LOCK_WAIT sets how long)", wait, path, _holder(e))
                said = True
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)


def _check_size(con, path: Path) -> None:
    """A file too short to hold the blocks in use was truncated: say so now, not at some later read. Only the
    used blocks count: DuckDB cuts free blocks off the end of the file at a checkpoint while its header still
    counts them (after a few edits a healthy database is shorter than header + all its blocks)."""
    if not path.exists():
        return
    block_size, used_blocks = con.execute("SELECT block_size, used_blocks FROM pragma_database_size() "
                                          "WHERE database_name = current_database()").fetchone()
    needed = _HEADER_BYTES + block_size * used_blocks
    size = path.stat().st_size
    if size < needed:
        raise DamagedDatabaseError(path, f"truncated: {size} bytes, too short for the {used_blocks} blocks in use")


def move_aside(path: Path) -> Path:
    """Move a damaged database (and its write-ahead log) to a timestamped name beside it, and start a new one
    in its place; returns where the old one went. Refuses a database that opens and reads as intact."""
    path = Path(path)
    if not path.exists():
        raise ProvenanceError(f"no provenance database at {path}; nothing to recover")
    try:
        with connect(path, read_only=True, wait=0, check_size=True) as con:
            for (table,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
                con.execute(f'SELECT * FROM "{table}"').fetchall()
    except DamagedDatabaseError:
        pass
    else:
        raise ProvenanceError(f"{path} opens and reads as intact: nothing to recover (move it aside yourself to "
                              "start over)")
    aside = path.with_name(f"{path.stem}.damaged-{datetime.now():%Y%m%d-%H%M%S}{path.suffix}")
    path.rename(aside)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        wal.rename(aside.with_name(aside.name + ".wal"))
    with connect(path):
        pass
    return aside


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


def fetch_dicts(con, sql: str, params: list | tuple = ()) -> list[dict[str, Any]]:
    """The rows of a query, one dict per row keyed by column name."""
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


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


# Columns that hold paths of files in the project's own folders (tasks/core/out_folders.py).
_OWN_FILE_PATHS = (("takes", "path"), ("renders", "take_path"), ("take_levels", "path"), ("voices", "staged_path"))


def move_recorded_paths(db: Path, moves: list[tuple[Path, Path]]) -> None:
    """Point the recorded paths of files under each moved folder at its new place, in one transaction."""
    if not moves:
        return
    with connect(db) as con:
        con.execute("BEGIN TRANSACTION")
        for old, new in moves:
            prefix = f"{old}/"
            for table, column in _OWN_FILE_PATHS:
                con.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE starts_with({column}, ?)",
                            [f"{new}/", len(prefix) + 1, prefix])
        con.execute("COMMIT")


def start_run(db: Path, row: dict[str, Any]) -> None:
    """Record a run as running; runs of this host whose process is gone are marked interrupted."""
    with connect(db) as con:
        stale = [run_id for run_id, pid in con.execute(
            "SELECT run_id, pid FROM runs WHERE status = 'running' AND host = ?", [row.get("host")]).fetchall()
            if not is_alive(pid)]
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


def record_failed_run(db: Path, run_id: str, error: BaseException, wall_seconds: float, log,
                      status: str = "failed") -> None:
    """Mark a run failed (or `interrupted`) with its error; a database that cannot take it is logged, never
    raised (the run's own error is the one to report)."""
    try:
        finish_run(db, run_id, dict(status=status, error=f"{type(error).__name__}: {error}", ended_at=datetime.now(),
                                    wall_seconds=wall_seconds), [], [])
    except Exception as record_error:  # noqa: BLE001
        log.error("could not record the failure of run %s in %s: %s", run_id, db, record_error)


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
