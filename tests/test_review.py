"""The review page: written at the end of a render and by `voicebatch review`, one player per take, a grid
when lines were rendered under several settings, a loudness plot per chapter; checked in real headless
Chromium from file://."""
from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tool, rows, setting

from chromium_page import Chromium

HOSTILE = 'Tom said <b>"stop" & </b><script>alert(1)</script> then left.'


def _manifest(folder: Path, seed: int) -> Path:
    path = folder / f"review-seed{seed}.yaml"
    path.write_text(json.dumps({
        "title": f"Review test seed {seed}", "defaults": {"seed": seed}, "voices": {"Ava": "ava"},
        "qa": {"enabled": seed == 1, "max_attempts": 0},
        "chapters": [{"title": "Harbour", "lines": [{"speaker": "Ava", "text": "The boat came in early."},
                                                    {"speaker": "Ava", "text": HOSTILE}]},
                     {"title": "Stairs", "lines": [{"speaker": "Ava", "text": "A hundred and twelve steps."}]}]}))
    return path


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_whisper):
    """The same three lines rendered with seed 1 (QA on, a random Whisper: every take flagged, no re-takes)
    and seed 2, into one output folder and database."""
    from flows.render import render_manifest

    folder = tmp_path_factory.mktemp("review")
    out = folder / "out"
    with setting("VOICEBATCH_WHISPER_MODEL", str(tiny_whisper)):
        a = render_manifest(manifest=str(_manifest(folder, 1)), output_dir=str(out))
    b = render_manifest(manifest=str(_manifest(folder, 2)), output_dir=str(out), review=False)
    return out, a, b


@pytest.fixture(scope="module")
def chromium():
    require_tool("chromium")
    browser = Chromium()
    yield browser
    browser.close()


def _takes(db: str, run_ids: list[str]) -> list[dict]:
    return rows(db, "SELECT * FROM renders WHERE run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY chapter, line",
                [run_ids])


def _check_in_chromium(chromium: Chromium, page: Path, expected_files: set[Path], plots: int) -> dict:
    found = chromium.check_page(page)
    assert found["console_errors"] == []
    assert len(found["audio_files"]) == len(expected_files)
    assert set(found["audio_files"]) == expected_files
    assert all(f.is_file() for f in found["audio_files"])
    assert found["durations"] is not None and all(d > 0 for d in found["durations"]), found["durations"]
    plots_found = [i for i in found["images"] if i["src"].startswith("data:image/svg+xml")]
    assert len(plots_found) == plots and all(i["width"] > 0 for i in plots_found)
    return found


def test_a_render_writes_its_review_page_and_links_it_from_the_prefect_run(two_runs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    out, a, b = two_runs
    page = Path(a.review_page)
    assert page == (out / ".voicebatch" / "review" / f"{a.run_id}.html").resolve() and page.is_file()
    assert b.review_page is None and not (out / ".voicebatch" / "review" / f"{b.run_id}.html").exists()  # review=False
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[a.run_id])))
    links = [x for x in found if x.key == "review-test-seed-1-review"]
    assert len(links) == 1 and links[0].type == "markdown" and page.as_uri() in links[0].data


def test_the_page_shows_every_take_with_its_settings_scores_and_levels(two_runs):
    out, a, _ = two_runs
    html = Path(a.review_page).read_text()
    db = str(out / "provenance.duckdb")
    takes = _takes(db, [a.run_id])
    qa = {r["cache_key"]: r for r in rows(db, "SELECT * FROM qa_takes WHERE run_id = ?", [a.run_id])}
    loudness = rows(db, "SELECT * FROM chapter_loudness WHERE run_id = ? ORDER BY chapter", [a.run_id])
    assert len(takes) == 3 and len(qa) == 3 and len(loudness) == 2
    for t in takes:
        assert f"seed {t['seed']} · {t['duration']:.2f} s · {t['render_seconds']:.2f} s render" in html
        assert f"WER {qa[t['cache_key']]['wer']:.2f}" in html
    assert html.count('class="flag"') == sum(bool(q["flagged"]) for q in qa.values()) > 0
    assert html.count("<audio ") == 3 and "Ava (ava, hibari)" in html
    assert "temperature=0.7" in html and "seed=1" in html  # the resolved settings
    for c in loudness:
        assert f"{c['integrated_lufs']:.1f} LUFS · {c['loudness_range_lu']:.1f} LU range" in html
    assert "Chapter 1: Harbour" in html and "Chapter 2: Stairs" in html
    plots = sorted((out / ".voicebatch" / "review" / ".plots").glob("*.svg"))  # drawn once per chapter content, then reused
    assert len(plots) == 2 and all(base64.b64encode(p.read_bytes()).decode() in html for p in plots)
    # Manifest text is user input: escaped, never markup.
    assert "<script>" not in html and "<b>" not in html
    assert "Tom said &lt;b&gt;&quot;stop&quot; &amp; &lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html  # offline: nothing to fetch


def test_a_run_page_loads_in_chromium(two_runs, chromium):
    out, a, _ = two_runs
    files = {Path(t["take_path"]).resolve() for t in _takes(str(out / "provenance.duckdb"), [a.run_id])}
    _check_in_chromium(chromium, Path(a.review_page), files, plots=2)


def test_two_runs_side_by_side_make_a_grid_that_loads_in_chromium(two_runs, chromium):
    from tasks.review.page import write_review_page

    out, a, b = two_runs
    db = out / "provenance.duckdb"
    page = write_review_page(db, [a.run_id[:8], b.run_id])
    assert page == out.resolve() / ".voicebatch" / "review" / f"{a.run_id[:8]}-vs-{b.run_id[:8]}.html"
    html = page.read_text()
    assert f"run {a.run_id[:8]} · seed=1" in html and f"run {b.run_id[:8]} · seed=2" in html
    # One row per line, one column per run: each line's row holds both of its takes.
    assert html.count("<tr><th>1</th>") == 2 and html.count("<tr><th>2</th>") == 1
    files = {Path(t["take_path"]).resolve() for t in _takes(str(db), [a.run_id, b.run_id])}
    assert len(files) == 6
    found = _check_in_chromium(chromium, page, files, plots=2)
    assert len(set(found["durations"])) > 1


def test_a_take_deleted_since_the_run_is_marked_missing_and_the_page_still_loads(two_runs, chromium, tmp_path):
    from tasks.review.page import write_review_page

    out, a, _ = two_runs
    takes = _takes(str(out / "provenance.duckdb"), [a.run_id])
    gone = Path(takes[1]["take_path"])
    aside = tmp_path / "aside.wav"
    shutil.move(gone, aside)
    try:
        page = write_review_page(out / "provenance.duckdb", [a.run_id], tmp_path / "pages" / "missing.html")
        html = page.read_text()
        assert f"take file missing: {gone}" in html and "1 take files are missing on disk" in html
        files = {Path(t["take_path"]).resolve() for t in takes} - {gone.resolve()}
        found = _check_in_chromium(chromium, page, files, plots=2)
        assert found["missing"] == 2  # the cell and the note at the top
    finally:
        shutil.move(aside, gone)


def test_a_chapter_file_rewritten_since_the_run_is_not_plotted_as_that_runs(two_runs, tmp_path):
    from tasks.review.page import write_review_page

    out, a, _ = two_runs
    chapter = Path(a.chapters[1])
    kept = chapter.read_bytes()
    try:
        chapter.write_bytes(kept[:-4800])  # other audio at the same path, as a later run of the title would write
        html = write_review_page(out / "provenance.duckdb", [a.run_id], tmp_path / "rewritten.html").read_text()
        assert html.count("data:image/svg+xml") == 1
        assert f"no chapter file to plot for run {a.run_id[:8]}: gone, or rewritten by a later run" in html
    finally:
        chapter.write_bytes(kept)


def test_the_chromium_check_sees_console_errors_and_broken_players(chromium, tmp_path):
    """The browser check itself can fail: a broken player and a console error are both caught."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><audio controls src="nowhere.wav"></audio>'
                    '<script>console.error("on purpose")</script></body></html>')
    found = chromium.check_page(page)
    assert any("on purpose" in e for e in found["console_errors"])
    assert found["durations"] == [-1]


def test_sweep_points_label_the_columns_when_a_sweep_recorded_them(two_runs, tmp_path):
    """A database with `sweep_takes` (the sweep's table): columns are its grid points, labelled by what differs."""
    import duckdb

    from tasks.review.page import write_review_page

    out, a, b = two_runs
    db = tmp_path / "sweep.duckdb"
    shutil.copy(out / "provenance.duckdb", db)
    con = duckdb.connect(str(db))
    try:
        # The table is the sweeps' migration's; these two renders are tagged as if a sweep had made them.
        for point, run in (("1", a.run_id), ("2", b.run_id)):
            con.execute("INSERT INTO sweep_takes (run_id, point, point_params, chapter, line, chunk, seed, cache_key) "
                        "SELECT run_id, ?, ?, chapter, line, chunk, seed, cache_key FROM renders WHERE run_id = ?",
                        [point, json.dumps({"seed": int(point), "top_k": 50}), run])
    finally:
        con.close()
    html = write_review_page(db, [a.run_id, b.run_id], tmp_path / "sweep.html").read_text()
    assert f"run {a.run_id[:8]} · point 1 · seed=1<" in html and f"run {b.run_id[:8]} · point 2 · seed=2<" in html
    assert "top_k=50<" not in html  # the same in every column: not a label


def test_unknown_run_id_is_refused_with_exit_2_and_the_cli_writes_the_page(two_runs, tmp_path, capsys):
    from flows.cli import main

    out, a, b = two_runs
    with setting("VOICEBATCH_DB_PATH", str(out / "provenance.duckdb")):
        assert main(["review", "no-such-run"]) == 2
        refused = capsys.readouterr().err
        assert "no run with an id starting 'no-such-run'" in refused and "voicebatch history" in refused
        target = tmp_path / "cli" / "page.html"
        assert main(["review", a.run_id, b.run_id[:8], "--out", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target) and target.read_text().count("<audio ") == 6


def test_short_term_loudness_matches_bs1770_on_a_steady_tone_and_follows_a_step():
    from tasks.audio.loudness import integrated_lufs
    from tasks.review.plot import LoudnessCurve, loudness_svg, short_term_loudness

    rate = 24000
    t = np.arange(rate * 10) / rate
    tone = 0.1 * np.sin(2 * np.pi * 997 * t)
    seconds, lufs = short_term_loudness(tone, rate)
    assert np.allclose(lufs, integrated_lufs(tone, rate), atol=0.05)
    assert seconds[0] == pytest.approx(1.5) and seconds[-1] <= 8.5
    step = np.concatenate([tone[: rate * 5] * 0.1, tone[: rate * 5]])  # 20 dB louder after 5 s
    seconds, lufs = short_term_loudness(step, rate)
    assert lufs[seconds < 3.4].max() < lufs[seconds > 6.6].min() - 19.5
    svg = loudness_svg([LoudnessCurve("step", seconds, lufs)], -19)
    assert "<svg" in svg and "short-term LUFS" in svg and "target -19 LUFS" in svg


def _take(line: int, run: str = "run-a", **params) -> "ReviewTake":
    from tasks.review.data import ReviewTake

    return ReviewTake(run_id=run, chapter=0, line=line, chunk=0, speaker="Ava", voice_id="ava", engine="higgs",
                      text=f"line {line}", params={"top_p": 0.95, **params}, seed=params.get("seed"),
                      cache_key=f"{run}-{line}-{sorted(params.items())}", path=None, recorded_path=None, duration=1.0,
                      render_seconds=0.1, cache_hit=False, status="rendered", error=None, peak_dbfs=None, rms_dbfs=None)


def test_one_run_with_each_line_under_a_grid_of_settings_lays_out_a_column_per_setting():
    """A sweep-shaped run without sweep_takes: 3 lines x top_k {30, 100} x seeds {1, 2} in one run."""
    from tasks.review.grid import build_grids

    takes = [_take(line, top_k=k, seed=s) for line in range(3) for k in (100, 30) for s in (2, 1)]
    [grid] = build_grids(takes, ["run-a"])
    assert [c.label for c in grid.columns] == ["top_k=30 · seed=1", "top_k=30 · seed=2", "top_k=100 · seed=1",
                                               "top_k=100 · seed=2"]
    assert len(grid.rows) == 3 and all(len(cell) == 1 for row in grid.rows for cell in row.cells)
    for row in grid.rows:
        for column, (take,) in zip(grid.columns, row.cells):
            assert column.label == f"top_k={take.params['top_k']} · seed={take.params['seed']}"
    # An ordinary run (every line once, whatever its own settings): one column, no labels to make.
    [plain] = build_grids([_take(0, seed=1), _take(1, seed=4, top_k=50)], ["run-a"])
    assert [c.label for c in plain.columns] == ["take"] and len(plain.rows) == 2
