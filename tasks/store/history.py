"""Reading run history back: recent runs, one run in detail, read-only SQL, and the provenance of a file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.core.errors import UserInputError
from tasks.core.files import sha256_file
from tasks.store.db import SANDBOX, connect, fetch_dicts


class QueryError(UserInputError):
    """A history query that cannot run (bad SQL, an attempt to write, an unknown run)."""


def runs(db: Path, limit: int = 20, manifest: Path | None = None) -> list[dict[str, Any]]:
    where, params = "", []
    if manifest is not None:
        where, params = "WHERE manifest_path = ?", [str(Path(manifest).resolve())]
    with connect(db, read_only=True) as con:
        return fetch_dicts(con, f"""
            SELECT run_id, started_at, ended_at, status, title, manifest_path, takes_rendered, takes_reused,
                   audio_seconds, wall_seconds, load_seconds, device, error
            FROM runs {where} ORDER BY started_at DESC LIMIT ?""", [*params, limit])


def run_detail(db: Path, run_id: str) -> dict[str, Any]:
    """A run with its takes and outputs; a unique prefix of the run id is enough."""
    with connect(db, read_only=True) as con:
        found = fetch_dicts(con, "SELECT * FROM runs WHERE run_id LIKE ? || '%'", [run_id])
        if len(found) != 1:
            what = "no run" if not found else f"{len(found)} runs"
            raise QueryError(f"{what} with an id starting {run_id!r} in {db}; `voicebatch history` lists run ids")
        run = found[0]
        takes = fetch_dicts(con, """
            SELECT chapter, line, chunk, speaker, voice_id, engine, seed, cache_hit, duration, render_seconds,
                   take_run_id, take_path, text FROM renders WHERE run_id = ? ORDER BY chapter, line, chunk""",
                                   [run["run_id"]])
        outputs = fetch_dicts(con, "SELECT kind, chapter, title, path, sha256, duration, reused FROM outputs "
                                     "WHERE run_id = ? ORDER BY kind DESC, chapter", [run["run_id"]])
    return {"run": run, "takes": takes, "outputs": outputs}


def query(db: Path, sql: str) -> tuple[list[str], list[tuple]]:
    """Run SQL on a read-only connection with no file access and a locked configuration: neither the database
    nor any other file can be read or written through here."""
    import duckdb

    with connect(db, read_only=True, config=SANDBOX) as con:
        try:
            cur = con.execute(sql)
        except duckdb.IOException:
            raise  # a damaged file: connect() says so
        except (duckdb.PermissionException, duckdb.InvalidInputException) as e:
            raise QueryError(f"query refused: `voicebatch query` reads the provenance database only (no other files, "
                             f"no writes, no settings): {str(e).splitlines()[0]}") from None
        except duckdb.Error as e:
            raise QueryError(f"query refused: {str(e).splitlines()[0]}") from None
        if cur.description is None:
            return [], []
        return [d[0] for d in cur.description], cur.fetchall()


def provenance_of(db: Path, path: Path) -> dict[str, Any]:
    """Which run, model, voice, parameters and seed made this audio file, found by its content hash."""
    if not path.is_file():
        raise QueryError(f"{path}: no such file")
    digest = sha256_file(path)
    with connect(db, read_only=True) as con:
        output = fetch_dicts(con, """
            SELECT * FROM outputs WHERE sha256 = ? ORDER BY reused, created_at LIMIT 1""", [digest])
        if output:
            o = output[0]
            chapter_filter = "" if o["chapter"] is None else "AND r.chapter = ?"
            params = [o["run_id"]] + ([] if o["chapter"] is None else [o["chapter"]])
            takes = fetch_dicts(con, f"""
                SELECT r.chapter, r.line, r.chunk, r.speaker, r.voice_id, r.voice_sha256, r.engine, r.model,
                       r.revision, r.device, r.dtype, r.seed, r.params, r.engine_options, r.cache_hit,
                       r.take_run_id, r.text
                FROM renders r WHERE r.run_id = ? {chapter_filter} ORDER BY r.chapter, r.line, r.chunk""", params)
            run = fetch_dicts(con, "SELECT * FROM runs WHERE run_id = ?", [o["run_id"]])[0]
            return {"sha256": digest, "kind": o["kind"], "output": o, "run": run, "takes": takes}
        takes = fetch_dicts(con, """
            SELECT r.*, t.run_id AS rendered_in FROM takes t JOIN renders r
              ON r.cache_key = t.cache_key AND r.run_id = t.run_id
            WHERE t.sha256 = ? LIMIT 1""", [digest])
        if takes:
            run = fetch_dicts(con, "SELECT * FROM runs WHERE run_id = ?", [takes[0]["run_id"]])[0]
            return {"sha256": digest, "kind": "take", "output": None, "run": run, "takes": takes}
    raise QueryError(f"{path}: no run in {db} made a file with this content (sha256 {digest[:12]}...); "
                     "it was changed after export, or made with another database")
