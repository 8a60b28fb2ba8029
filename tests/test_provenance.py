"""The provenance database: migrations recorded, a newer schema refused, history readable."""
from __future__ import annotations

from datetime import datetime

import duckdb
import pytest

from tasks.store import db as provenance
from tasks.store.history import runs as recent_runs
from tasks.store.db import ProvenanceError, connect, schema_version
from tasks.store.schema import MIGRATIONS


def test_migrations_apply_once_and_are_recorded(tmp_path):
    db = tmp_path / "p.duckdb"
    with connect(db) as con:
        assert schema_version(con) == len(MIGRATIONS)
    with connect(db) as con:  # a second open applies nothing again
        names = [r[0] for r in con.execute("SELECT name FROM schema_version ORDER BY version").fetchall()]
    assert names == [name for name, _ in MIGRATIONS]
    assert len(set(names)) == len(names)


def test_a_database_from_a_newer_build_is_refused(tmp_path):
    db = tmp_path / "p.duckdb"
    with connect(db):
        pass
    con = duckdb.connect(str(db))
    con.execute("INSERT INTO schema_version VALUES (99, '099_from_the_future', now())")
    con.close()
    with pytest.raises(ProvenanceError, match="newer voicebatch.*099_from_the_future"):
        with connect(db):
            pass


def test_a_failed_transaction_leaves_no_half_written_rows(tmp_path):
    db = tmp_path / "p.duckdb"
    provenance.start_run(db, dict(run_id="r1", manifest_path="m", manifest_sha256="s", status="running",
                                  started_at=datetime.now()))
    good = dict(run_id="r1", kind="book", chapter=None, title="t", path="p", sha256="s", duration=1.0,
                created_at=datetime.now())
    with pytest.raises(Exception):
        provenance.finish_run(db, "r1", {"status": "completed"}, renders=[], outputs=[good, {**good, "kind": None}])
    with connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM outputs").fetchone()[0] == 0
        assert con.execute("SELECT status FROM runs").fetchone()[0] == "running"


def test_recent_runs_are_newest_first_and_reading_needs_a_database(tmp_path):
    db = tmp_path / "p.duckdb"
    for i in range(3):
        provenance.start_run(db, dict(run_id=f"r{i}", manifest_path="m", manifest_sha256="s", status="running",
                                      started_at=datetime(2026, 1, 1 + i)))
    assert [r["run_id"] for r in recent_runs(db, limit=2)] == ["r2", "r1"]
    with pytest.raises(ProvenanceError, match="no provenance database"):
        recent_runs(tmp_path / "absent.duckdb")
