"""The real `voicebatch` command in a child process: the demo renders, bad input exits 2 and writes nothing."""
from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import yaml

from conftest import run_cli


def test_render_demo_prints_existing_outputs_and_history_lists_the_run(tmp_path, root):
    env = {"PREFECT_LOGGING_LEVEL": "WARNING"}
    # The README's demo command: both demo manifests in one process.
    result = run_cli("render", "manifests/demo-dialogue.yaml", "manifests/demo-audiobook.yaml", "--out", str(tmp_path),
                     env=env)
    assert result.returncode == 0, result.stderr
    printed = [line.split()[-1] for line in result.stdout.splitlines() if line.strip().startswith(("chapter", "book"))]
    assert len(printed) == 6 and all(Path(p).is_file() for p in printed)
    assert "time:" in result.stdout and "model load" in result.stdout
    # The loudness report: one line per chapter with its measurements and verdict, after the preset.
    assert result.stdout.count("loudness (audiobook: -19 LUFS, true peak <= -3 dBTP):") == 2
    report = [line.split() for line in result.stdout.splitlines() if line.strip().endswith(("pass",)) or "FAIL" in line]
    assert len(report) == 4 and all(r[-1] == "pass" for r in report)
    encoded = [line.split()[-1] for line in result.stdout.splitlines() if line.strip().startswith("encoded")]
    assert sorted(Path(p).suffix for p in encoded) == [".m4b"] * 2 + [".mp3"] * 6 and all(Path(p).is_file() for p in encoded)
    assert "Traceback" not in result.stderr and "analytics" not in result.stderr.lower()

    history = run_cli("history", "--json", env={"VOICEBATCH_OUTPUT_DIR": str(tmp_path)})
    assert history.returncode == 0, history.stderr
    runs = json.loads(history.stdout)
    assert [(r["status"], r["title"]) for r in runs] == [
        ("completed", "The Keeper of Gull Rock"), ("completed", "The Lighthouse Dialogue")]
    assert runs[1]["takes_rendered"] == 8


def _bad_manifests(root: Path) -> dict[str, tuple[str, str]]:
    """name -> (file text, a piece the message must contain)."""
    good = yaml.safe_load((root / "manifests/demo-dialogue.yaml").read_text())
    good["chapters"] = good["chapters"][:1]

    def variant(**edit):
        data = json.loads(json.dumps(good))
        line = data["chapters"][0]["lines"][1]
        line.update(edit)
        return yaml.safe_dump(data)

    return {
        "speaker.yaml": (variant(speaker="Zed"), "chapters[0].lines[1].speaker: unknown speaker 'Zed'"),
        "voice.yaml": (yaml.safe_dump({**good, "voices": {"Ava": "nobody", "Joe": "joe"}}), "voices.Ava.voice: unknown voice"),
        "empty.yaml": (variant(text=" "), "chapters[0].lines[1].text: text is empty"),
        "temperature.yaml": (variant(temperature=0), "chapters[0].lines[1].temperature"),
        "top_p.yaml": (variant(top_p=1.01), "chapters[0].lines[1].top_p"),
        "top_k.yaml": (variant(top_k=0), "chapters[0].lines[1].top_k"),
        "unknown_key.yaml": (variant(min_p=0.1), "unknown key 'min_p'"),
        "malformed.yaml": ("title: [unclosed\n", "malformed YAML"),
        "malformed.json": ('{"title": ', "malformed JSON"),
    }


def test_bad_manifests_exit_2_with_the_field_and_write_nothing(tmp_path, root):
    out = tmp_path / "out"
    out.mkdir()
    # An existing database with one run in it: a refused manifest must add no row to it.
    db = out / "provenance.duckdb"
    from tasks.store.db import connect, insert_rows

    with connect(db) as con:
        insert_rows(con, "runs", [dict(run_id="earlier", manifest_path="m", manifest_sha256="s", status="completed",
                                       started_at=__import__("datetime").datetime.now())])
    before = sorted(p.name for p in out.rglob("*"))
    for name, (text, expected) in _bad_manifests(root).items():
        path = tmp_path / name
        path.write_text(text)
        # A good manifest before the bad one is not rendered either: all are checked before any renders.
        result = run_cli("render", "manifests/demo-dialogue.yaml", str(path), "--out", str(out))
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert str(path) in result.stderr and expected in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in out.rglob("*")) == before
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM renders").fetchone()[0] == 0


def test_unknown_engine_is_refused_before_rendering(tmp_path):
    result = run_cli("render", "manifests/demo-dialogue.yaml", "--engine", "nope", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "unknown engine 'nope'; available engines: hibari, higgs, piper" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_debug_setting_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: [\n")
    result = run_cli("render", str(bad), env={"VOICEBATCH_DEBUG": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr and "ManifestError" in result.stderr
    assert os.environ.get("VOICEBATCH_DEBUG") is None
