"""`voicebatch sweep`: grid planning and line selection, refusal of settings an engine ignores, a real sweep on
the tiny random Higgs model scored by a real (tiny random) Whisper through the QA scorer (24 takes in one batch
per point, a re-run with one more point renders only that point, the ranked table recomputed from the
database), and --adopt --write. The random Whisper keeps ASR to ~0.1 s a take; tiny.en spends ~1.8 s on each of
the tiny model's gibberish takes and would say nothing more about them."""
from __future__ import annotations

import contextlib
import difflib
import io
import json
import statistics
from pathlib import Path

import pytest

from conftest import require_tool, rows, setting
from engine.base import DecodingParams
from tasks.script.ingest import ingest
from tasks.script.plan import EngineFacts, cache_key, plan_jobs
from tasks.sweep.plan import (SweepError, SweepSpec, grid_points, group_sweep, parse_point_name, parse_values,
    plan_sweep, select_jobs, spec_from_block)

MANIFEST = """\
# A sweep test: Ava's lines get swept, Joe's stay as they are.
title: Sweep Test
engine: higgs
defaults:
  seed: 1
  max_new_tokens: 40     # the tiny model's takes stay short
voices:
  Ava: ava   # the narrator
  Joe:
    voice: joe
    temperature: 0.6     # Joe runs warm

    # nothing below Joe
chapters:
  - title: Harbour
    lines:
      - {speaker: Ava, text: "The tide is coming in fast tonight."}
      - {speaker: Ava, text: "Fog lies over the bay again."}
      - {speaker: Joe, text: "I saw the light from the boat."}
      - {speaker: Ava, text: "Then up the stairs we go, one more time."}
"""
HIGGS = EngineFacts("higgs", "m", None, "1", frozenset({"temperature", "top_k", "top_p", "seed", "max_new_tokens",
                                                        "ras_win_len", "scene"}))


@pytest.fixture
def manifest(tmp_path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(MANIFEST)
    return path


def _spec(**block) -> SweepSpec:
    return spec_from_block(block, "test")


def test_grid_points_are_the_product_plus_extra_points_named_by_their_settings():
    spec = _spec(temperature=[0.3, 0.7], top_k=[30, 50], points=[{"temperature": 0.5, "top_p": 0.9}], seeds=2)
    assert [p.name for p in grid_points(spec)] == ["t0.3_k30", "t0.3_k50", "t0.7_k30", "t0.7_k50", "t0.5_p0.9"]
    assert grid_points(spec)[4].params == {"temperature": 0.5, "top_p": 0.9}
    assert [p.name for p in grid_points(_spec(seeds=3))] == ["base"]
    for point in grid_points(spec):
        assert parse_point_name(point.name) == point.params
    assert parse_point_name("ras5_n300") == {"ras_win_len": 5, "max_new_tokens": 300}
    for bad in ("x9", "t0.3_t0.5", "k2.5", "p0"):
        with pytest.raises(SweepError, match="--adopt"):
            parse_point_name(bad)
    with pytest.raises(SweepError, match="seeds: 0; sweep at least one seed"):
        _spec(seeds=0)
    assert parse_values("--top-k", "top_k", "30, 50,30") == (30, 50)
    with pytest.raises(SweepError, match="--top-p: .*less than or equal to 1"):
        parse_values("--top-p", "top_p", "0.9,1.5")
    with pytest.raises(SweepError, match="--top-k: '3.5' is not a whole number"):
        parse_values("--top-k", "top_k", "3.5")
    with pytest.raises(SweepError, match=r"sweep\.repetition_penalty: unknown key"):
        _spec(repetition_penalty=[1.1])


def test_plan_24_takes_over_3_lines_in_one_batch_per_point(manifest, voices_dir):
    script = ingest(manifest, voices_dir)
    engines = {"higgs": HIGGS}
    jobs = plan_jobs(script, engines, {"Ava": "higgs", "Joe": "higgs"}, 60)
    spec = _spec(temperature=[0.3, 0.7], top_k=[30, 50], seeds=2, chapter=1, speaker="Ava")
    selected = select_jobs(script, jobs, spec)
    assert [j.line for j in selected] == [0, 1, 3]
    planned = plan_sweep(script, selected, grid_points(spec), spec.seeds, engines)
    assert len(planned) == 24 and len({p.job.key for p in planned}) == 24
    assert {p.job.params.seed for p in planned} == {1, 2}
    first = planned[0].job.params
    assert (first.temperature, first.top_k, first.max_new_tokens) == (0.3, 30, 40)
    batches = group_sweep(planned, engines)
    assert len(batches) == 4 and all(len(b.jobs) == 6 for b in batches)
    assert batches[0].name.startswith("t0.3_k30 ch1 l1-l4 ava (6 takes)")
    # A sweep take is an ordinary take: the same line, settings and seed give the render's own cache key.
    job = planned[0].job
    assert job.key == cache_key(job.text, script.voices["Ava"], job.params, HIGGS, script.manifest.scene)


def test_line_selection_is_checked(manifest, voices_dir):
    script = ingest(manifest, voices_dir)
    jobs = plan_jobs(script, {"higgs": HIGGS}, {"Ava": "higgs", "Joe": "higgs"}, 60)
    assert [j.line for j in select_jobs(script, jobs, _spec(chapter=1, lines="2-3"))] == [1, 2]
    for spec, message in [(_spec(), "choose the lines to sweep"), (_spec(chapter=2), "chapters 1-1"),
                          (_spec(chapter=1, lines="3-9"), "has lines 1-4"), (_spec(chapter=1, lines="two"),
                                                                             "not a line range"),
                          (_spec(speaker="Zed"), "unknown speaker 'Zed'"), (_spec(lines="1"), "needs --chapter")]:
        with pytest.raises(SweepError, match=message):
            select_jobs(script, jobs, spec)


def test_settings_an_engine_ignores_are_not_in_its_cache_key(voices_dir):
    from engine.hibari import HibariEngine
    from engine.piper import PiperEngine
    from tasks.script.voices import load_voice

    voice = load_voice(voices_dir, "ava")
    for cls in (HibariEngine, PiperEngine):
        facts = EngineFacts(cls.id, "m", None, "1", cls.honours)
        keys = {cache_key("Hi there.", voice, DecodingParams(temperature=t, top_k=k, top_p=p), facts)
                for t in (0.3, 0.9) for k in (20, 80) for p in (0.8, 1.0)}
        assert len(keys) == 1, cls.id
    hibari = EngineFacts("hibari", "m", None, "1", HibariEngine.honours)
    assert cache_key("Hi.", voice, DecodingParams(seed=1), hibari) != cache_key("Hi.", voice, DecodingParams(seed=2), hibari)


def test_a_sweep_over_a_setting_hibari_ignores_is_refused_before_prefect_starts(tmp_path, root, capsys):
    from flows.cli import main

    out = tmp_path / "out"
    with setting("VOICEBATCH_OUTPUT_DIR", str(out)):
        code = main(["sweep", str(root / "manifests" / "demo-dialogue.yaml"), "--chapter", "1", "--lines", "1-3",
                     "--temperature", "0.3,0.7", "--top-k", "30,50", "--no-wer"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "engine 'hibari' ignores temperature, top_k" in err
    assert "hibari honours: seed" in err and "--engine higgs" in err
    assert not out.exists()  # no database, so no run row


# ---- a real sweep: tiny random Higgs, real Whisper tiny.en, real Prefect flow runs --------------------------

GRID = ["--temperature", "0.5,0.9", "--top-k", "20,40", "--seeds", "2"]


@pytest.fixture(scope="module")
def swept(tiny_higgs, tiny_whisper, tmp_path_factory):
    """The CLI's sweep in this process (2x2 grid x 2 seeds over Ava's 3 lines), then the same sweep with one
    more point from a grid file; both --json outputs."""
    from flows.cli import main

    folder = tmp_path_factory.mktemp("sweep")
    manifest = folder / "sweep.yaml"
    manifest.write_text(MANIFEST)
    grid_file = folder / "grid.yaml"
    grid_file.write_text("sweep:\n  temperature: [0.5, 0.9]\n  top_k: [20, 40]\n  seeds: 2\n"
                         "  points:\n    - {temperature: 0.7, top_k: 30}\n")
    outputs = []
    with setting("VOICEBATCH_WHISPER_MODEL", str(tiny_whisper)), setting("VOICEBATCH_OUTPUT_DIR", str(folder / "out")):
        for args in ([*GRID], ["--grid", str(grid_file)]):
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                code = main(["sweep", str(manifest), "--chapter", "1", "--speaker", "Ava", *args, "--json"])
            assert code == 0, text.getvalue()
            outputs.append(json.loads(text.getvalue()))
    return folder, manifest, outputs


def test_a_2x2_grid_with_2_seeds_over_3_lines_renders_24_takes_in_one_batch_per_point(swept):
    _, _, (first, _) = swept
    db = first["database"]
    (run,) = rows(db, "SELECT * FROM runs WHERE run_id = ?", [first["run_id"]])
    assert (run["kind"], run["status"], run["takes_rendered"], run["takes_reused"]) == ("sweep", "completed", 24, 0)
    renders = rows(db, "SELECT * FROM renders WHERE run_id = ?", [first["run_id"]])
    assert len(renders) == 24 and not any(r["cache_hit"] for r in renders)
    assert len({r["batch"] for r in renders}) == 4 <= 8
    tagged = rows(db, "SELECT s.point, r.batch, r.params, s.point_params FROM sweep_takes s JOIN renders r "
                      "ON r.run_id = s.run_id AND r.cache_key = s.cache_key WHERE s.run_id = ?", [first["run_id"]])
    assert len(tagged) == 24
    for point in {t["point"] for t in tagged}:
        mine = [t for t in tagged if t["point"] == point]
        assert len(mine) == 6 and len({t["batch"] for t in mine}) == 1  # one render group per grid point
        settings = json.loads(mine[0]["point_params"])
        assert all(json.loads(t["params"])[k] == v for t in mine for k, v in settings.items())
    # Higgs reports each take's own decode steps (not its batch's longest): the start frame, one per 40 ms of
    # audio, and the tiny model's 4 codebooks' delay (3 frames).
    assert all(r["decode_steps"] == round(r["duration"] * 25) + 4 for r in renders)
    assert len({r["decode_steps"] for r in renders}) > 1
    assert len({(r["line"], r["params"]) for r in renders}) == 24 and {r["line"] for r in renders} == {0, 1, 3}


def test_a_re_run_with_one_more_point_renders_only_that_points_takes(swept):
    _, _, (first, second) = swept
    assert (second["takes_planned"], second["takes_rendered"], second["takes_reused"]) == (30, 6, 24)
    renders = rows(second["database"], "SELECT r.cache_hit, s.point FROM renders r JOIN sweep_takes s ON "
                                       "r.run_id = s.run_id AND r.cache_key = s.cache_key WHERE r.run_id = ?",
                   [second["run_id"]])
    assert {r["point"] for r in renders if not r["cache_hit"]} == {"t0.7_k30"}
    assert sum(not r["cache_hit"] for r in renders) == 6
    # The reused points score the same as when they were rendered (cached takes and cached ASR scores).
    before = {p["point"]: p for p in first["points"]}
    for p in second["points"]:
        if p["point"] in before:
            assert {k: v for k, v in p.items() if k != "rank"} == {k: v for k, v in before[p["point"]].items()
                                                                   if k != "rank"}


def test_the_ranked_table_matches_the_provenance_rows(swept):
    from tasks.qa.score import normalise_words

    _, _, outputs = swept
    for result in outputs:
        takes = rows(result["database"], """
            SELECT s.point, s.point_params, s.asr_model, r.text, r.duration, r.peak_dbfs, r.decode_steps,
                   t.render_seconds, q.wer, s.lufs
            FROM sweep_takes s
            JOIN renders r ON r.run_id = s.run_id AND r.cache_key = s.cache_key
            JOIN takes t ON t.cache_key = s.cache_key
            JOIN qa_scores q ON q.cache_key = s.cache_key AND q.asr_model = s.asr_model
            WHERE s.run_id = ?""", [result["run_id"]])
        assert len(takes) == result["takes_planned"]
        assert all(t["lufs"] is None or -70 < t["lufs"] < 0 for t in takes)
        by_point: dict[str, list[dict]] = {}
        for t in takes:
            by_point.setdefault(t["point"], []).append(t)
        assert {p["point"] for p in result["points"]} == set(by_point)
        for p in result["points"]:
            mine = by_point[p["point"]]
            words = [len(normalise_words(t["text"])) for t in mine]
            pace = [t["duration"] / w for t, w in zip(mine, words)]
            lufs = [t["lufs"] for t in mine if t["lufs"] is not None]
            expected = dict(
                takes=len(mine), wer_mean=statistics.fmean(t["wer"] for t in mine), wer_max=max(t["wer"] for t in mine),
                seconds_per_word=statistics.fmean(pace), seconds_per_word_sd=statistics.pstdev(pace),
                frames_per_second=sum(t["decode_steps"] for t in mine) / sum(t["duration"] for t in mine),
                frames_per_word=sum(t["decode_steps"] for t in mine) / sum(words),
                lufs=statistics.fmean(lufs) if lufs else None, peak_dbfs=max(t["peak_dbfs"] for t in mine),
                render_seconds=sum(t["render_seconds"] for t in mine))
            for key, value in expected.items():
                assert p[key] == (pytest.approx(value) if value is not None else None), (p["point"], key)
            assert json.loads(p["settings"]) == json.loads(mine[0]["point_params"])
        ranks = [(p["wer_mean"], p["seconds_per_word_sd"]) for p in result["points"]]
        assert ranks == sorted(ranks) and [p["rank"] for p in result["points"]] == list(range(1, len(ranks) + 1))


def _changed_lines(before: str, after: str) -> list[str]:
    return [d for d in difflib.ndiff(before.splitlines(), after.splitlines()) if d[:1] in "+-"]


def _planned_keys(manifest: Path, voices_dir: Path) -> dict[tuple[int, str], str]:
    """What an ordinary render of the manifest would look up in the render cache: (line, speaker) -> key."""
    from tasks.core.settings import get_settings
    from tasks.render.engines import prepare_engines

    script = ingest(manifest, voices_dir)
    setup = prepare_engines(script, None, "hibari", "cpu", "auto")
    return {(j.line, j.speaker): j.key for j in plan_jobs(script, setup.facts, setup.speaker_engine,
                                                           get_settings().chunk_words)}


def test_adopt_write_changes_only_that_voices_overrides_and_only_its_lines_re_render(swept, voices_dir, tmp_path):
    from flows.cli import main

    _, swept_manifest, _ = swept
    manifest = tmp_path / "sweep.yaml"
    manifest.write_text(swept_manifest.read_text())
    before = manifest.read_text()
    keys_before = _planned_keys(manifest, voices_dir)
    adopt = ["sweep", str(manifest), "--chapter", "1", "--speaker", "Ava", *GRID, "--adopt", "t0.9_k20"]
    assert main(adopt) == 0
    assert manifest.read_text() == before  # printing only
    assert main([*adopt, "--write"]) == 0
    after = manifest.read_text()
    assert _changed_lines(before, after) == ["-   Ava: ava   # the narrator",
                                             "+   Ava: {voice: ava, temperature: 0.9, top_k: 20} # the narrator"]
    assert "# nothing below Joe" in after and after.startswith("# A sweep test")
    keys_after = _planned_keys(manifest, voices_dir)
    assert {where for where in keys_before if keys_before[where] != keys_after[where]} == \
        {(0, "Ava"), (1, "Ava"), (3, "Ava")}
    # The adopted point's seed-1 takes are the sweep's own: the render finds them in the cache.
    sweep_keys = {r["cache_key"] for r in rows(swept[2][0]["database"], "SELECT cache_key FROM sweep_takes "
                                                                         "WHERE point = 't0.9_k20' AND seed = 1")}
    assert {keys_after[(line, "Ava")] for line in (0, 1, 3)} == sweep_keys

    # Joe's block mapping takes the new key after `voice:` and keeps his other lines and comments; with no grid
    # given, the point's name says its settings.
    assert main(["sweep", str(manifest), "--speaker", "Joe", "--adopt", "k15", "--write"]) == 0
    joe = manifest.read_text()
    assert _changed_lines(after, joe) == ["+     top_k: 15"]
    assert joe.index("voice: joe") < joe.index("top_k: 15") < joe.index("temperature: 0.6")
    assert {w for w in keys_after if keys_after[w] != _planned_keys(manifest, voices_dir)[w]} == {(2, "Joe")}


def test_adopt_refuses_an_unknown_point_and_write_without_adopt(manifest):
    from flows.cli import main

    base = ["sweep", str(manifest), "--chapter", "1", "--speaker", "Ava", *GRID]
    assert main([*base, "--adopt", "t0.1_k20"]) == 2
    assert main([*base, "--write"]) == 2
    assert main(["sweep", str(manifest), "--chapter", "1", *GRID, "--adopt", "t0.5_k20"]) == 2  # two speakers
    assert main(["sweep", str(manifest), "--speaker", "Ava", "--adopt", "base"]) == 2  # nothing to adopt
    assert main(["sweep", str(manifest), "--speaker", "Ava", "--engine", "hibari", "--adopt", "t0.5"]) == 2
    assert manifest.read_text() == MANIFEST


def test_the_ranked_table_is_a_prefect_artifact(swept):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    _, _, (first, _) = swept
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[first["run_id"]])))
    by_key = {a.key: a for a in found}
    assert {"sweep-test-sweep", "sweep-test-sweep-points"} <= set(by_key)
    table = by_key["sweep-test-sweep-points"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert [r["point"] for r in table] == [p["point"] for p in first["points"]]
    assert [r["takes"] for r in table] == [6, 6, 6, 6]
    assert "ranked lowest mean WER first" in by_key["sweep-test-sweep"].data


def test_a_seed_sweep_on_hibari_runs_and_its_frame_figures_are_empty(tmp_path, root):
    """hibari honours the seed, so a sweep over seeds alone is allowed; it reports no decode steps."""
    from flows.sweep import sweep_manifest

    result = sweep_manifest(manifest=str(root / "manifests" / "demo-dialogue.yaml"), seeds=2, chapter=1,
                            lines="1", output_dir=str(tmp_path / "out"), wer=False)
    assert result.status == "completed" and result.takes_rendered == 2 and result.asr_model is None
    (point,) = result.points
    assert (point["point"], point["takes"], point["wer_mean"], point["frames_per_second"]) == ("base", 2, None, None)
    renders = rows(result.database, "SELECT seed, decode_steps, engine FROM renders WHERE run_id = ?", [result.run_id])
    assert sorted((r["seed"], r["decode_steps"], r["engine"]) for r in renders) == [(1, None, "hibari"),
                                                                                    (2, None, "hibari")]


def test_runs_are_renders_unless_a_sweep_says_so(tmp_path):
    from datetime import datetime

    from tasks.store.db import start_run

    db = tmp_path / "provenance.duckdb"
    start_run(db, dict(run_id="r1", manifest_path="m.yaml", manifest_sha256="0", started_at=datetime.now(),
                       status="running", host="h", pid=1))
    assert rows(str(db), "SELECT run_id, kind FROM runs") == [{"run_id": "r1", "kind": "render"}]


def test_the_sweeps_review_page_lays_each_line_out_under_every_point_and_loads_in_chromium(swept):
    from chromium_page import Chromium

    _, _, (first, _) = swept
    page = Path(first["review_page"])
    assert page.is_file() and page.parent.name == "review"
    html = page.read_text()
    # One column per grid point, labelled by its name and the settings that differ between points; each cell
    # holds that line's takes under the point's seeds.
    headers = [h for h in html.split("<th>") if h.startswith("point ")]
    assert len(headers) == 4
    for temperature in (0.5, 0.9):
        for top_k in (20, 40):
            assert f"point t{temperature}_k{top_k} · temperature={temperature} · top_k={top_k}" in html
    files = {Path(r["take_path"]).resolve() for r in rows(first["database"], "SELECT take_path FROM renders "
                                                                             "WHERE run_id = ?", [first["run_id"]])}
    assert len(files) == 24
    require_tool("chromium")
    browser = Chromium()
    try:
        found = browser.check_page(page)
    finally:
        browser.close()
    assert found["console_errors"] == []
    assert set(found["audio_files"]) == files
    assert found["durations"] is not None and all(d > 0 for d in found["durations"])
