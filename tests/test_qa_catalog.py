"""QA in the nightly catalog (on by default, off with a warning when no Whisper model is here), and with QA on,
normalisation beside the render lane instead of after QA: checked from the provenance timestamps."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from conftest import rows, setting

LINES = [  # long lines, so the render lane stays busy for a while after the first batch lands
    "She kept a log in a green book and wrote down the wind, the weather and every ship that passed the rock, "
    "from the smallest fishing boat to the grey steamers that went north in the spring.",
    "On calm nights she read by the lamp, and on rough ones she did not sleep at all, but sat at the window "
    "and watched the beam go round and round over the black water until the morning came.",
    "The supply boat came on Tuesdays when the sea allowed it, and the boatman brought flour, oil, letters "
    "and the news from the harbour, which was mostly about the weather and the price of fish.",
    "In the winter the spray froze on the rail of the gallery, and she broke the ice each evening with a small "
    "hammer before she climbed up to light the lamp and wind the clockwork that turned it.",
]


def _catalog(folder: Path) -> Path:
    """One manifest: a short first line alone in its batch (seed 1), then the long lines in another (seed 2)."""
    folder.mkdir(parents=True)
    lines = [{"speaker": "Ava", "text": "The lamp was lit at dusk.", "seed": 1}]
    lines += [{"speaker": "Ava", "text": text, "seed": 2} for text in LINES]
    (folder / "log.yaml").write_text(yaml.safe_dump({
        "title": "The Log", "voices": {"Ava": "ava"}, "chapters": [{"title": "Log", "lines": lines}]}))
    return folder


@pytest.fixture(scope="module")
def catalog_qa(whisper_tiny_en, tmp_path_factory):
    """The catalog flow with its defaults (QA on) over a folder of one manifest, with real tiny.en weights."""
    from flows.catalog import render_catalog

    base = tmp_path_factory.mktemp("qa-catalog")
    with setting("VOICEBATCH_WHISPER_MODEL", str(whisper_tiny_en)):
        results = render_catalog(manifests_dir=str(_catalog(base / "manifests")), output_dir=str(base / "out"))
    return base / "out" / "provenance.duckdb", results


def test_the_nightly_catalog_checks_every_take_by_default(catalog_qa):
    db, results = catalog_qa
    assert [(r["status"], r["takes_rendered"], r["qa_flagged"]) for r in results] == [("completed", 5, 0)]
    checked = rows(str(db), "SELECT run_id, count(*) AS n, bool_and(kept) AS kept FROM qa_takes GROUP BY run_id")
    assert checked == [{"run_id": results[0]["run_id"], "n": 5, "kept": True}]


def test_with_qa_on_normalisation_overlaps_the_render_lane(catalog_qa):
    db, results = catalog_qa
    run = [results[0]["run_id"]]
    renders = rows(str(db), "SELECT count(DISTINCT batch) AS batches, max(render_ended_at) AS last_render_end "
                            "FROM renders WHERE run_id = ?", run)[0]
    normalised = rows(str(db), "SELECT count(*) AS n, min(normalise_started_at) AS first_start FROM take_levels "
                               "WHERE run_id = ?", run)[0]
    assert renders["batches"] == 2 and normalised["n"] == 5
    # The short line's batch lands first and is normalised while the lane still renders the long lines.
    assert normalised["first_start"] < renders["last_render_end"], (normalised, renders)


def test_the_catalogs_voice_pace_is_learnt_from_its_takes(catalog_qa):
    from tasks.qa.pace import MIN_HISTORY, pace_range, voice_history

    db, results = catalog_qa
    history = voice_history(db, "ava", "hibari", min_words=4)
    assert len(history) == 5 and all(0.15 < p < 0.6 for p in history)  # hibari's heart voice: ~0.3 s/word
    assert voice_history(db, "ava", "hibari", 4, before_run=results[0]["run_id"]) == []  # "earlier" excludes a run
    assert voice_history(db, "ava", "piper", 4) == [] and len(history) < MIN_HISTORY
    learnt = pace_range(history * 2, None)
    assert learnt.low < min(history) and max(history) < learnt.high < 1.5


def test_without_a_whisper_model_the_catalog_renders_without_qa_and_says_why(tmp_path, caplog):
    from flows.catalog import qa_available, render_catalog

    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "one.yaml").write_text(yaml.safe_dump({"title": "One", "voices": {"Ava": "ava"}, "chapters": [
        {"title": "One", "lines": [{"speaker": "Ava", "text": "The lamp was lit at dusk."}]}]}))
    missing = str(tmp_path / "no-such-model.pt")
    with setting("VOICEBATCH_WHISPER_MODEL", missing), caplog.at_level(logging.WARNING):
        message = qa_available()
        results = render_catalog(manifests_dir=str(folder), output_dir=str(tmp_path / "out"))
    assert message and "QA is off" in message and missing in message and "VOICEBATCH_WHISPER_MODEL" in message
    assert [(r["status"], r["qa_flagged"]) for r in results] == [("completed", None)]
    assert rows(str(tmp_path / "out" / "provenance.duckdb"), "SELECT count(*) AS n FROM qa_takes") == [{"n": 0}]
    assert "QA is off" in caplog.text
