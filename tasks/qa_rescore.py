"""`voicebatch qa RUN_ID`: score a past run's takes again (with the configured ASR model), reading each take
from its file. Scores already in the cache for that take and model are reused, never recomputed."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.batch_render import Take
from tasks.history import QueryError, run_detail
from tasks.provenance import connect
from tasks.qa import QaPlan, Scorer, store_scores
from tasks.qa_score import TakeScore


def run_takes(db: Path, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run (a unique id prefix will do) and its rendered takes in script order."""
    run = run_detail(db, run_id)["run"]
    with connect(db, read_only=True) as con:
        cur = con.execute("""
            SELECT chapter, line, chunk, text, seed, cache_key, take_path, duration FROM renders
            WHERE run_id = ? AND status = 'rendered' ORDER BY chapter, line, chunk""", [run["run_id"]])
        names = [d[0] for d in cur.description]
        takes = [dict(zip(names, r)) for r in cur.fetchall()]
    if not takes:
        raise QueryError(f"run {run['run_id']} has no rendered takes to score; `voicebatch show {run_id}` lists them")
    return run, takes


def rescore_run(db: Path, run_id: str, plan: QaPlan) -> list[dict[str, Any]]:
    """One attempt-shaped row per take of the run (attempt 1, kept), scored with `plan`'s model."""
    from datetime import datetime

    run, takes = run_takes(db, run_id)
    missing = [t["take_path"] for t in takes if not Path(t["take_path"] or "").is_file()]
    if missing:
        raise QueryError(f"{len(missing)} take files of run {run['run_id']} are gone (first: {missing[0]}); "
                         "render the manifest again to recreate them")
    scorer = Scorer(db, plan, [t["cache_key"] for t in takes])
    rows = []
    for t in takes:
        take = Take(t["cache_key"], t["take_path"], "", t["duration"] or 0.0, 0.0, 0.0, 0.0, None)
        score, transcript, scored = scorer.score(take, t["text"])
        rows.append(_row(run["run_id"], t, plan, score, transcript, scored, datetime.now()))
    store_scores(db, scorer.new)
    return rows


def _row(run_id: str, t: dict[str, Any], plan: QaPlan, s: TakeScore, transcript: str, scored: bool, now) -> dict:
    import json

    return dict(run_id=run_id, chapter=t["chapter"], line=t["line"], chunk=t["chunk"], text=t["text"],
                job_key=t["cache_key"], cache_key=t["cache_key"], attempt=1, seed=t["seed"],
                asr_model=plan.asr_model_id, transcript=transcript, wer=s.wer, seconds_per_word=s.seconds_per_word,
                duration=t["duration"], flagged=s.flagged, reasons=json.dumps(list(s.reasons)), kept=True,
                scored=scored, error=None, created_at=now)
