"""Incremental renders: counted in provenance, never by timing."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from conftest import cli_env, render_killed_after, run_cli


def manifest(path: Path, lines: int = 6, hib_seed: int = 9, edit: str | None = None,
             ava_temperature: float | None = None, joe_seed: int | None = None) -> Path:
    ava = {"voice": "ava", **({"temperature": ava_temperature} if ava_temperature else {})}
    joe = {"voice": "joe", **({"seed": joe_seed} if joe_seed is not None else {})}
    spoken = [f"This is line number {i + 1} of the little test." for i in range(lines)]
    if edit:
        spoken[2] = edit
    data = {"title": "Cache Test", "defaults": {"seed": 5},
            "voices": {"Ava": ava, "Hib": {"voice": "ava", "seed": hib_seed}, "Joe": joe},
            "chapters": [{"title": "One", "lines": [{"speaker": ("Ava", "Hib", "Joe")[i % 3], "text": t}
                                                   for i, t in enumerate(spoken[: lines // 2])]},
                         {"title": "Two", "lines": [{"speaker": ("Ava", "Hib", "Joe")[i % 3], "text": t}
                                                   for i, t in enumerate(spoken[lines // 2:])]}]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def counts(db: Path, run_id: str) -> tuple[int, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FILTER (NOT cache_hit), count(*) FILTER (cache_hit) FROM renders "
                           "WHERE run_id = ?", [run_id]).fetchone()
    finally:
        con.close()


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    from flows.render import render_manifest

    work = tmp_path_factory.mktemp("incremental")
    out = work / "out"
    first = render_manifest(str(manifest(work / "m.yaml")), output_dir=str(out))
    return work, out, first


def render(work: Path, out: Path, **changes):
    from flows.render import render_manifest

    return render_manifest(str(manifest(work / "m.yaml", **changes)), output_dir=str(out))


def test_unchanged_manifest_renders_nothing_and_rewrites_no_file(cached):
    work, out, first = cached
    assert counts(Path(first.database), first.run_id) == (6, 0)
    stamps = {p: os.stat(p).st_mtime_ns for p in [*first.chapters, first.book]}
    again = render(work, out)
    assert counts(Path(again.database), again.run_id) == (0, 6)
    assert again.chapters_written == 0 and again.takes_rendered == 0
    assert {p: os.stat(p).st_mtime_ns for p in [*again.chapters, again.book]} == stamps


def test_editing_one_line_renders_exactly_that_line_and_its_chapter(cached):
    work, out, _ = cached
    edited = render(work, out, edit="A completely different third line.")
    assert counts(Path(edited.database), edited.run_id) == (1, 5)
    assert edited.chapters_written == 1
    render(work, out)  # back to the original for the other tests: all cached again


def test_a_setting_the_engine_honours_renders_that_voices_takes_only(cached):
    work, out, _ = cached
    reseeded = render(work, out, hib_seed=77)
    con = duckdb.connect(reseeded.database, read_only=True)
    fresh = con.execute("SELECT DISTINCT speaker FROM renders WHERE run_id = ? AND NOT cache_hit",
                        [reseeded.run_id]).fetchall()
    con.close()
    assert fresh == [("Hib",)] and counts(Path(reseeded.database), reseeded.run_id) == (2, 4)
    # Settings an engine ignores are not in its key: hibari ignores temperature, piper ignores the seed.
    ignored = render(work, out, hib_seed=77, ava_temperature=1.4, joe_seed=123)
    assert counts(Path(ignored.database), ignored.run_id) == (0, 6)
    render(work, out)


def test_force_renders_everything_again(cached):
    from flows.render import render_manifest

    work, out, _ = cached
    forced = render_manifest(str(manifest(work / "m.yaml")), output_dir=str(out), force=True)
    assert counts(Path(forced.database), forced.run_id) == (6, 0)


def test_a_corrupted_or_missing_take_is_rendered_again(cached):
    work, out, first = cached
    con = duckdb.connect(first.database, read_only=True)
    paths = [r[0] for r in con.execute("SELECT DISTINCT take_path FROM renders WHERE run_id = ? ORDER BY 1",
                                       [first.run_id]).fetchall()]
    con.close()
    original = Path(paths[0]).read_bytes()
    with open(paths[0], "r+b") as f:  # same size, different bytes
        f.seek(200)
        f.write(b"\x7f" * 64)
    Path(paths[1]).unlink()
    healed = render(work, out)
    assert counts(Path(healed.database), healed.run_id) == (2, 4)
    assert Path(paths[0]).read_bytes() == original and Path(paths[1]).exists()


def test_migrations_upgrade_a_database_made_by_the_previous_schema(tmp_path):
    from tasks.store.db import MIGRATIONS, connect, schema_version

    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name VARCHAR UNIQUE, applied_at TIMESTAMP)")
    MIGRATIONS[0][1](con)
    con.execute("INSERT INTO schema_version VALUES (1, ?, now())", [MIGRATIONS[0][0]])
    con.execute("INSERT INTO runs (run_id, manifest_path, manifest_sha256, started_at, status) "
                "VALUES ('old', 'm', 's', now(), 'completed')")
    con.close()
    with connect(db) as con:
        assert schema_version(con) == len(MIGRATIONS)
        assert con.execute("SELECT run_id, takes_reused FROM runs").fetchall() == [("old", None)]
        assert con.execute("SELECT count(*) FROM takes").fetchone() == (0,)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_killed_part_way_resumes_to_the_same_outputs(tmp_path):
    m = manifest(tmp_path / "m.yaml", lines=40)
    env = {"PREFECT_LOGGING_LEVEL": "WARNING", "VOICEBATCH_BATCH_SIZE": "2"}
    killed_out, clean_out = tmp_path / "killed", tmp_path / "clean"
    survived = render_killed_after(m, killed_out, 6, env=env)
    assert 6 <= survived < 40, "the kill should land part-way through rendering"
    assert not (killed_out / "cache-test").exists() or not list((killed_out / "cache-test").glob("*.wav"))

    resumed = run_cli("render", str(m), "--out", str(killed_out), "--json", env=env)
    assert resumed.returncode == 0, resumed.stderr
    clean = run_cli("render", str(m), "--out", str(clean_out), "--json", env=env)
    assert clean.returncode == 0, clean.stderr

    book = "cache-test/cache-test.wav"
    chapters = ["cache-test/01-one.wav", "cache-test/02-two.wav"]
    for name in [book, *chapters]:
        assert _sha(killed_out / name) == _sha(clean_out / name), name
    assert [p for p in killed_out.rglob("*") if p.name.endswith(".tmp")] == []
    con = duckdb.connect(str(killed_out / "provenance.duckdb"), read_only=True)
    statuses = con.execute("SELECT status, takes_rendered, takes_reused FROM runs ORDER BY started_at").fetchall()
    con.close()
    assert statuses[0][0] == "interrupted"  # marked so by the next run: its process is gone
    assert statuses[1][0] == "completed" and statuses[1][2] >= survived - 2 and statuses[1][1] + statuses[1][2] == 40


def test_two_concurrent_renders_on_one_database_both_complete(tmp_path):
    out = tmp_path / "out"
    env = cli_env({"PREFECT_LOGGING_LEVEL": "WARNING", "VOICEBATCH_BATCH_SIZE": "1"})
    exe = str(Path(sys.executable).parent / "voicebatch")
    a = manifest(tmp_path / "a.yaml", lines=12)
    b = tmp_path / "b.yaml"
    b.write_text(a.read_text().replace("Cache Test", "Other Book").replace("little test", "other book"))
    procs = [subprocess.Popen([exe, "render", str(m), "--out", str(out)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for m in (a, b)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    con = duckdb.connect(str(out / "provenance.duckdb"), read_only=True)
    assert con.execute("SELECT title, status FROM runs ORDER BY title").fetchall() == [
        ("Cache Test", "completed"), ("Other Book", "completed")]
    assert con.execute("SELECT count(*) FROM renders").fetchone() == (24,)
    assert con.execute("SELECT count(*) FROM takes").fetchone() == (24,)
    con.close()


def test_provenance_finds_the_run_of_an_exported_chapter(cached):
    _, out, first = cached
    import json

    found = run_cli("provenance", first.chapters[1], "--json", env={"VOICEBATCH_OUTPUT_DIR": str(out)})
    assert found.returncode == 0, found.stderr
    data = json.loads(found.stdout)
    assert data["kind"] == "chapter" and data["output"]["path"] == first.chapters[1]
    assert data["run"]["manifest_sha256"] and [t["chapter"] for t in data["takes"]] == [1, 1, 1]
    assert {t["engine"] for t in data["takes"]} == {"hibari", "piper"} and all(t["seed"] is not None for t in data["takes"])
    stranger = Path(first.chapters[1]).with_name("stranger.wav")
    stranger.write_bytes(b"RIFF not really")
    missing = run_cli("provenance", str(stranger), env={"VOICEBATCH_OUTPUT_DIR": str(out)})
    assert missing.returncode == 2 and "no run" in missing.stderr
