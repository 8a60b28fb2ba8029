"""QA: scoring rules, the manifest block, and real ASR (Whisper tiny.en) over real renders through the flow:
demo manifests score clean, a garbled take is flagged and re-taken, scores are cached, `voicebatch qa`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, rows, setting
from tasks.core.errors import ManifestError
from tasks.qa.score import QaLimits, normalise_words, number_words, score_take, word_error_rate

GARBLED_LINE = ("The keeper wrote the weather in the log every morning, and on the last page he drew the rock "
                "and the tower and the gulls above them. FAULT:garbled@1")


def test_normalising_numbers_case_and_punctuation():
    assert number_words(1984) == "one thousand nine hundred eighty four"
    assert normalise_words("You're 3rd; it's 7, not 12.5!") == "you are third it is seven not twelve point five".split()
    assert normalise_words("The keeper's log won't lie") == "the keepers log will not lie".split()
    assert word_error_rate("He counted 7 boats.", "he counted seven boats") == 0.0
    assert word_error_rate("one two three four", "one three four five") == pytest.approx(0.5)
    assert word_error_rate("", "") == 0.0 and word_error_rate("...", "words") == 1.0


def test_spellings_compounds_and_hyphens_are_one_word_either_way():
    assert word_error_rate("a grey tooth of stone", "a gray tooth of stone") == 0.0  # Whisper's own spelling map
    assert word_error_rate("the colour of the harbour", "the color of the harbor") == 0.0
    assert word_error_rate("the light house keeper", "the lighthouse keeper") == 0.0
    assert word_error_rate("a woman named Ava Marsh", "a woman named Avamarsh") == 0.0
    assert word_error_rate("a well-known rock", "a well known rock") == 0.0
    assert word_error_rate("Everyone does.", "Every one does.") == 0.0
    # A real mishearing stays an error: "rock stood" heard as "rocks did" is two words wrong, not a compound.
    assert word_error_rate("the rock stood there", "the rocks did there") == pytest.approx(0.5)
    assert word_error_rate("a grey tooth", "a great tooth") == pytest.approx(1 / 3)


def test_pace_range_is_learnt_per_voice():
    from tasks.qa.pace import pace_range

    brisk = [0.28, 0.3, 0.29, 0.31, 0.27, 0.3, 0.32, 0.29, 0.3]  # s/word of a fast voice's earlier takes
    slow = [p * 3 for p in brisk]  # a voice that speaks three times as slowly
    text = "one two three four five six seven eight nine ten"
    for history, pace, flagged in ((brisk, 0.9, True), (slow, 0.9, False), (brisk, 0.3, False), (slow, 0.3, True)):
        learnt = pace_range(history, None)
        assert learnt.source == "history (9 takes)"
        score = score_take(text, text, pace * 10, learnt.limits(QaLimits()))
        assert score.flagged is flagged, (history, pace, learnt)
    assert not score_take(text, text, 9.0).flagged  # the fixed range would have let the brisk voice's 0.9 pass
    by_reference = pace_range(brisk[:3], reference_pace=0.4)  # too little history: the reference clip's pace
    assert by_reference.source == "reference clip" and by_reference.low < 0.3 < by_reference.high < 0.9
    fixed = pace_range([], None)
    assert (fixed.source, fixed.low, fixed.high) == ("fixed", 0.12, 1.5)
    wide = pace_range([0.2, 0.25, 0.3, 0.35, 0.45, 0.5, 0.55, 0.6, 0.3], None)  # an uneven voice: a wider range
    assert wide.high > pace_range(brisk, None).high


def test_pace_flags_run_ons_and_truncations():
    text = "one two three four five six seven eight"
    assert not score_take(text, text, 3.0).flagged
    run_on = score_take(text, text, 30.0)
    assert run_on.flagged and "run-on" in run_on.reasons[0]
    assert "truncated" in score_take(text, text, 0.2).reasons[0]
    assert not score_take("Yes.", "yes", 3.0).flagged  # too short a line to judge its pace
    assert score_take(text, "one two", 3.0, QaLimits(wer_threshold=0.5)).flagged


def _manifest(tmp_path: Path, qa: dict) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"title": "Q", "voices": {"Ava": "ava"}, "qa": qa,
                                    "chapters": [{"title": "One", "lines": [{"speaker": "Ava", "text": "Hello."}]}]}))
    return path


def test_manifest_qa_block_is_validated(tmp_path, voices_dir):
    from tasks.script.ingest import ingest

    assert ingest(_manifest(tmp_path, {"enabled": True, "max_attempts": 3}), voices_dir).manifest.qa.max_attempts == 3
    with pytest.raises(ManifestError, match=r"qa.*wer_treshold"):
        ingest(_manifest(tmp_path, {"wer_treshold": 0.3}), voices_dir)
    with pytest.raises(ManifestError, match=r"qa\.wer_threshold"):
        ingest(_manifest(tmp_path, {"wer_threshold": 2}), voices_dir)


@pytest.fixture(scope="module")
def asr(whisper_tiny_en):
    """VOICEBATCH_WHISPER_MODEL points at real tiny.en weights for this module."""
    with setting("VOICEBATCH_WHISPER_MODEL", str(whisper_tiny_en)):
        yield whisper_tiny_en


@pytest.fixture(scope="module")
def demo_qa(asr, tmp_path_factory):
    from flows.render import render_manifest

    out = tmp_path_factory.mktemp("qa-demo")
    runs = {name: render_manifest(manifest=str(ROOT / "manifests" / f"{name}.yaml"), output_dir=str(out), qa=True)
            for name in ("demo-dialogue", "demo-audiobook")}
    return out, runs


# Issue 8's acceptance: every demo take scores WER <= 0.1 with tiny.en. The audiobook's first take ("Gull Rock
# stood a mile off the coast ...") was heard as "Gulrocks did ..." (0.20) until the manifest's pronunciation
# lexicon gave "Gull Rock" a longer vowel and a short break (README "Pronunciations"); the reference stays the
# script's words.
def test_every_demo_take_scores_at_most_a_tenth(demo_qa):
    out, runs = demo_qa
    for summary in runs.values():
        kept = [r for r in summary.qa if r["kept"]]
        assert kept and len(kept) == summary.takes_rendered + summary.takes_reused
        assert not any(r["flagged"] for r in kept), [r for r in kept if r["flagged"]]
        for r in kept:
            assert r["wer"] <= 0.1, r
        assert summary.status == "completed" and summary.book
    db = str(out / "provenance.duckdb")
    recorded = rows(db, "SELECT count(*) AS n, max(wer) AS worst FROM qa_takes WHERE kept")[0]
    assert recorded["n"] == sum(len([r for r in s.qa if r["kept"]]) for s in runs.values())
    assert recorded["worst"] <= 0.1
    first = rows(db, "SELECT text, pronunciations FROM renders WHERE text LIKE 'Gull Rock stood%'")
    assert first and all(json.loads(r["pronunciations"]) == {"Gull Rock": "/ɡˈʌːl ɹˈɑk,/"} for r in first), first


def test_scores_are_cached_per_take_and_model(demo_qa):
    from flows.render import render_manifest

    out, runs = demo_qa
    again = render_manifest(manifest=str(ROOT / "manifests" / "demo-dialogue.yaml"), output_dir=str(out), qa=True)
    assert again.takes_rendered == 0 and again.qa and again.qa_seconds == 0.0
    assert not any(r["scored"] for r in again.qa)
    first = {r["cache_key"]: r["transcript"] for r in runs["demo-dialogue"].qa}
    assert {r["cache_key"]: r["transcript"] for r in again.qa} == first


@pytest.fixture(scope="module")
def garbled(asr, tmp_path_factory):
    from flows.render import render_manifest

    folder = tmp_path_factory.mktemp("qa-garbled")
    manifest = folder / "garbled.yaml"
    manifest.write_text(yaml.safe_dump({
        "title": "Garbled", "engine": "test-faults", "defaults": {"seed": 1}, "voices": {"Ava": "ava"},
        "qa": {"enabled": True, "wer_threshold": 0.3},
        "chapters": [{"title": "Log", "lines": [{"speaker": "Ava", "text": "The fog lifted before noon."},
                                                {"speaker": "Ava", "text": GARBLED_LINE}]}]}))
    summary = render_manifest(manifest=str(manifest), output_dir=str(folder / "out"))
    return folder / "out", summary


def test_a_garbled_take_is_flagged_retaken_and_reported(garbled):
    from tasks.qa.report import text_lines

    out, summary = garbled
    attempts = [r for r in summary.qa if r["line"] == 1]
    assert [(r["attempt"], r["seed"], r["flagged"], r["kept"]) for r in attempts] == [(1, 1, True, False),
                                                                                      (2, 2, False, True)]
    assert attempts[0]["wer"] > 0.5 and attempts[1]["wer"] <= 0.3
    assert "lighthouse" in attempts[0]["transcript"].lower()
    assert summary.status == "completed" and len(summary.chapters) == 1
    db = str(out / "provenance.duckdb")
    render = rows(db, "SELECT seed, cache_key FROM renders WHERE line = 1")[0]
    assert (render["seed"], render["cache_key"]) == (2, attempts[1]["cache_key"])  # the chapter uses the re-take
    assert len(rows(db, "SELECT * FROM qa_takes WHERE job_key = ?", [attempts[0]["cache_key"]])) == 2
    report = "\n".join(text_lines(summary.qa))
    assert "line 2" in report and "attempt 1 (seed 1)" in report and "flagged" in report and "kept" in report


def test_qa_command_rescores_a_past_run_from_the_cache(garbled, capsys, monkeypatch):
    from tasks.core.settings import get_settings
    from flows.cli import main

    out, summary = garbled
    monkeypatch.setenv("VOICEBATCH_DB_PATH", str(out / "provenance.duckdb"))
    get_settings.cache_clear()
    try:
        code = main(["qa", summary.run_id[:8], "--json"])
        shown = json.loads(capsys.readouterr().out)
        assert code == 0 and shown["run_id"] == summary.run_id and len(shown["takes"]) == 2
        assert not any(t["scored"] for t in shown["takes"])  # the same takes and model: never transcribed again
        assert main(["qa", summary.run_id, "--wer-threshold", "0.05"]) == 1  # judged again from the cached words
        capsys.readouterr()
        assert main(["query", "SELECT rescore_id, run_id, line, seed, wer_threshold, flagged, scored FROM qa_rescores "
                              "ORDER BY wer_threshold DESC, line", "--json"]) == 0
        recorded = json.loads(capsys.readouterr().out)
        assert [(r["run_id"], r["line"], r["wer_threshold"], r["scored"]) for r in recorded] == [
            (summary.run_id, 0, 0.2, False), (summary.run_id, 1, 0.2, False),
            (summary.run_id, 0, 0.05, False), (summary.run_id, 1, 0.05, False)]
        assert recorded[0]["rescore_id"] == shown["rescore_id"] != recorded[2]["rescore_id"]
        assert recorded[1]["seed"] == 2 and not recorded[1]["flagged"]  # the kept re-take is what was re-scored
        assert any(r["flagged"] for r in recorded[2:])
        assert main(["qa", "nosuchrun"]) == 2
        assert "no run" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


def test_a_rerun_reuses_the_kept_retake_and_every_score(garbled):
    from flows.render import render_manifest

    out, first = garbled
    manifest = out.parent / "garbled.yaml"
    again = render_manifest(manifest=str(manifest), output_dir=str(out))
    assert (again.takes_rendered, again.takes_reused) == (0, 2) and again.qa_seconds == 0.0
    assert [(r["line"], r["attempt"], r["kept"], r["scored"]) for r in again.qa] == [
        (0, 1, True, False), (1, 1, False, False), (1, 2, True, False)]
    assert again.chapters == first.chapters


def test_render_qa_flag_defaults_to_the_manifest():
    from flows.cli import build_parser

    assert build_parser().parse_args(["render", "m.yaml", "--qa"]).qa is True
    assert build_parser().parse_args(["render", "m.yaml"]).qa is None


def test_a_stored_score_replaces_only_its_own_take_and_model(tmp_path):
    from datetime import datetime

    from tasks.qa.check import cached_scores, store_scores

    def score(key: str, model: str, wer: float) -> dict:
        return dict(cache_key=key, asr_model=model, transcript="heard", wer=wer, seconds_per_word=0.3, flagged=False,
                    reasons="[]", asr_seconds=1.0, created_at=datetime.now())

    db = tmp_path / "p.duckdb"
    store_scores(db, [score("a", "tiny", 0.1), score("b", "tiny", 0.2), score("a", "base", 0.3)])
    store_scores(db, [score("a", "tiny", 0.5)])
    assert {k: r["wer"] for k, r in cached_scores(db, ["a", "b"], "tiny").items()} == {"a": 0.5, "b": 0.2}
    assert cached_scores(db, ["a", "b"], "base")["a"]["wer"] == 0.3 and "b" not in cached_scores(db, ["b"], "base")


def test_the_qa_report_is_a_prefect_artifact(garbled):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    _, summary = garbled
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[summary.run_id])))
    by_key = {a.key: a for a in found}
    assert {"garbled-qa", "garbled-qa-takes"} <= set(by_key)
    report = by_key["garbled-qa"].data
    assert "| 1 | 2 | 1 | 1 |" in report and "| 1 | 2 | 2 | 2 |" in report  # both attempts of line 2 listed
