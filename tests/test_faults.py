"""Engine faults, limits and environment faults: contained, explained, nothing half-written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from conftest import run_cli

FAULTS = {"exception": "FAULT:exception here.", "nan": "FAULT:nan here.", "empty": "FAULT:empty here.",
          "long": "FAULT:long here.", "oom": "FAULT:oom but fine alone.", "mps": "FAULT:mps needs the CPU."}


def fault_manifest(path: Path, faults: list[str], clean_lines: int = 5) -> Path:
    lines = [{"speaker": "Ava", "text": f"A good line, number {i + 1}."} for i in range(clean_lines)]
    lines[2:2] = [{"speaker": "Ava", "text": FAULTS[f]} for f in faults]
    data = {"title": "Fault Drill", "voices": {"Ava": "ava"},
            "chapters": [{"title": "Faulty", "lines": lines},
                         {"title": "Clean", "lines": [{"speaker": "Ava", "text": "Nothing wrong here."}]}]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rows(db: str, sql: str, params=()) -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


@pytest.fixture()
def fault_engine(monkeypatch):
    from tasks.core.settings import get_settings
    from engine.testing import FaultInjectingEngine

    monkeypatch.setenv("VOICEBATCH_DEVICE", "mps")  # the drill engine pretends to be on Apple silicon
    get_settings.cache_clear()
    FaultInjectingEngine.calls.clear()
    yield FaultInjectingEngine
    get_settings.cache_clear()


def test_each_engine_fault_fails_only_its_job_and_the_rerun_retries_only_those(tmp_path, fault_engine):
    from flows.render import render_manifest

    m = fault_manifest(tmp_path / "m.yaml", list(FAULTS))
    out = tmp_path / "out"
    first = render_manifest(str(m), engine="test-faults", output_dir=str(out))
    assert first.status == "partial" and first.book is None
    failed = {f["text"]: f["error"] for f in first.failures}
    assert set(failed) == {FAULTS[k] for k in ("exception", "nan", "empty", "long")}
    assert "injected exception" in failed[FAULTS["exception"]]
    assert "NaN" in failed[FAULTS["nan"]] and "no audio" in failed[FAULTS["empty"]]
    assert "run-on" in failed[FAULTS["long"]]
    # Out of memory while batched: split until it rendered alone. The batch sizes went down, not up.
    assert fault_engine.calls[0] == 12 and fault_engine.calls.count(1) >= 4  # all 12 jobs, then halves
    # The clean chapter is written; the faulty one is not (no chapter with a hole).
    assert [Path(p).name for p in first.chapters] == ["02-clean.wav"]
    db = first.database
    statuses = dict(rows(db, "SELECT text, status FROM renders WHERE run_id = ?", [first.run_id]))
    assert statuses[FAULTS["oom"]] == "rendered" and statuses["A good line, number 1."] == "rendered"
    devices = dict(rows(db, "SELECT text, device FROM renders WHERE run_id = ? AND status = 'rendered'", [first.run_id]))
    assert devices[FAULTS["mps"]] == "cpu" and devices["A good line, number 1."] == "mps"
    assert rows(db, "SELECT status, error FROM runs WHERE run_id = ?", [first.run_id]) == [("partial", "4 takes failed")]

    again = render_manifest(str(m), engine="test-faults", output_dir=str(out))
    assert (again.takes_rendered, again.takes_reused) == (0, 8) and len(again.failures) == 4
    assert rows(db, "SELECT count(*) FROM renders WHERE run_id = ? AND status = 'failed' AND NOT cache_hit",
                [again.run_id]) == [(4,)]

    fixed = fault_manifest(tmp_path / "m.yaml", ["oom", "mps"])
    done = render_manifest(str(fixed), engine="test-faults", output_dir=str(out))
    assert done.status == "completed" and done.takes_rendered == 0 and done.book is not None


def test_cli_exits_1_and_names_the_failed_lines(tmp_path):
    m = fault_manifest(tmp_path / "m.yaml", ["exception"])
    result = run_cli("render", str(m), "--engine", "test-faults", "--out", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr
    assert "FAILED   chapter 1, line 3 (chapters[0].lines[2])" in result.stdout
    assert "injected exception" in result.stdout and "retry only those takes" in result.stdout
    assert "Traceback" not in result.stderr


def test_limits_on_takes_per_run_and_output_size(tmp_path):
    m = fault_manifest(tmp_path / "m.yaml", [])
    many = run_cli("render", str(m), "--out", str(tmp_path / "a"), env={"VOICEBATCH_MAX_TAKES_PER_RUN": "3"})
    assert many.returncode == 2 and "plans 6 takes, more than VOICEBATCH_MAX_TAKES_PER_RUN=3" in many.stderr
    big = run_cli("render", str(m), "--out", str(tmp_path / "b"), env={"VOICEBATCH_MAX_OUTPUT_MB": "0.1"})
    assert big.returncode == 1 and "over VOICEBATCH_MAX_OUTPUT_MB" in big.stderr
    assert list((tmp_path / "b").rglob("*-faulty.wav")) == [] and "Traceback" not in big.stderr
    assert big.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.fixture()
def small_disk(tmp_path):
    """A real 5 MB filesystem (tmpfs), so a render runs out of space part-way."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root in a machine that allows mounts)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_fails_the_run_clearly_and_leaves_no_partial_file(tmp_path, small_disk):
    m = fault_manifest(tmp_path / "m.yaml", [], clean_lines=40)
    db = tmp_path / "provenance.duckdb"
    env = {"VOICEBATCH_DB_PATH": str(db)}
    result = run_cli("render", str(m), "--out", str(small_disk), env=env)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot write") and "No space left on device" in last and "free disk space" in last
    assert [p for p in small_disk.rglob("*") if p.name.endswith(".tmp")] == []
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
    recorded = {Path(p) for (p,) in con.execute("SELECT path FROM takes").fetchall()}
    con.close()
    assert all(p.exists() for p in recorded)
    # A take is normalised only once its batch has landed: every such batch's takes are recorded, including
    # those whose record task was still queued when the failure stopped the run.
    normalised = {p.stem for p in small_disk.rglob("normalised/*/*/*.wav")}
    assert normalised <= {p.stem for p in recorded}, normalised - {p.stem for p in recorded}
    # Whether a whole batch landed before the disk filled depends on how the two render lanes interleave;
    # either way every take that was written whole is kept: recorded, or adopted by the next run.
    written = set((small_disk / ".voicebatch" / "takes").glob("*/*.wav"))  # raw takes: .voicebatch/takes/<key[:2]>/<key>.wav
    assert written and recorded <= written

    # Space freed: the next run reuses every take the failed run wrote and renders only the rest.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = run_cli("render", str(m), "--out", str(small_disk), env=env)
    assert again.returncode == 0, again.stderr
    con = duckdb.connect(str(db), read_only=True)
    (rendered, reused), = con.execute("SELECT takes_rendered, takes_reused FROM runs WHERE status = 'completed'").fetchall()
    con.close()
    assert (rendered, reused) == (41 - len(written), len(written))


@pytest.fixture()
def immutable_folder(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("chattr +i is not available on this filesystem")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_output_folder_is_refused_before_anything_runs(tmp_path, immutable_folder):
    m = fault_manifest(tmp_path / "m.yaml", [])
    result = run_cli("render", str(m), "--out", str(immutable_folder))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"cannot write to the output folder {immutable_folder}" in result.stderr
    assert "choose another with --out" in result.stderr and "Traceback" not in result.stderr
    assert list(immutable_folder.iterdir()) == []


def test_a_database_held_by_another_program_is_a_clear_error_with_no_row_written(tmp_path):
    m = fault_manifest(tmp_path / "m.yaml", [])
    out = tmp_path / "out"
    out.mkdir()
    db = out / "provenance.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(60)", str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run_cli("render", str(m), "--out", str(out), env={"VOICEBATCH_DB_LOCK_WAIT": "1"})
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1 and "cannot open the provenance database" in result.stderr
    assert "another program holds it open" in result.stderr and "Traceback" not in result.stderr
    assert list((out).rglob("*.wav")) == []
    con = duckdb.connect(str(db), read_only=True)
    tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    assert "runs" not in tables or con.execute("SELECT count(*) FROM runs").fetchone() == (0,)
    con.close()
