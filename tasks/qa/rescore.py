"""`voicebatch qa RUN_ID`: score a past run's takes again (with the configured ASR model), reading each take
from its file. Transcripts already in the cache for that take and model are reused, never recomputed. Each
re-score is recorded in `qa_rescores` (one row per take, under a new rescore id)."""
from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.qa.check import QaPlan, Scorer, store_scores
from tasks.qa.pace import learn_paces
from tasks.qa.score import TakeScore
from tasks.render.batch import Take
from tasks.store.db import connect, insert_rows
from tasks.store.history import QueryError, run_detail


def run_takes(db: Path, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run (a unique id prefix will do) and its rendered takes in script order."""
    run = run_detail(db, run_id)["run"]
    with connect(db, read_only=True) as con:
        cur = con.execute("""
            SELECT r.chapter, r.line, r.chunk, r.text, r.seed, r.cache_key, r.take_path, r.duration, r.voice_id,
                   r.engine, v.staged_path, v.transcript AS voice_transcript
            FROM renders r LEFT JOIN voices v ON v.run_id = r.run_id AND v.voice_id = r.voice_id
            WHERE r.run_id = ? AND r.status = 'rendered' ORDER BY r.chapter, r.line, r.chunk""", [run["run_id"]])
        names = [d[0] for d in cur.description]
        takes = [dict(zip(names, r)) for r in cur.fetchall()]
    if not takes:
        raise QueryError(f"run {run['run_id']} has no rendered takes to score; `voicebatch show {run_id}` lists them")
    return run, takes


def rescore_run(db: Path, run_id: str, plan: QaPlan) -> list[dict[str, Any]]:
    """One attempt-shaped row per take of the run (attempt 1, kept), scored with `plan`'s model and each
    voice's usual pace (learnt from the takes of other runs), and recorded in `qa_rescores`."""
    run, takes = run_takes(db, run_id)
    missing = [t["take_path"] for t in takes if not Path(t["take_path"] or "").is_file()]
    if missing:
        raise QueryError(f"{len(missing)} take files of run {run['run_id']} are gone (first: {missing[0]}); "
                         "render the manifest again to recreate them")
    voices = {(t["voice_id"], t["engine"]): (Path(t["staged_path"]) if t["staged_path"] else None,
                                             t["voice_transcript"]) for t in takes}
    plan = replace(plan, paces=learn_paces(db, voices, plan.limits, before_run=run["run_id"]))
    scorer = Scorer(db, plan, [t["cache_key"] for t in takes])
    rows, now, rescore_id = [], datetime.now(), str(uuid.uuid4())
    for t in takes:
        take = Take(t["cache_key"], t["take_path"], "", t["duration"] or 0.0, 0.0, 0.0, 0.0, None)
        limits = plan.limits_for(t["voice_id"], t["engine"])
        score, transcript, scored = scorer.score(take, t["text"], limits)
        rows.append({**_row(run["run_id"], t, plan, score, transcript, scored, now), "rescore_id": rescore_id,
                     "pace_low": limits.min_seconds_per_word, "pace_high": limits.max_seconds_per_word})
    store_scores(db, scorer.new)
    with connect(db) as con:
        insert_rows(con, "qa_rescores", [_rescore_row(r, plan) for r in rows])
    return rows


def _row(run_id: str, t: dict[str, Any], plan: QaPlan, s: TakeScore, transcript: str, scored: bool, now) -> dict:
    return dict(run_id=run_id, chapter=t["chapter"], line=t["line"], chunk=t["chunk"], text=t["text"],
                job_key=t["cache_key"], cache_key=t["cache_key"], attempt=1, seed=t["seed"],
                asr_model=plan.asr_model_id, transcript=transcript, wer=s.wer, seconds_per_word=s.seconds_per_word,
                duration=t["duration"], flagged=s.flagged, reasons=json.dumps(list(s.reasons)), kept=True,
                scored=scored, error=None, created_at=now)


_RESCORE_COLUMNS = ("rescore_id", "run_id", "chapter", "line", "chunk", "text", "cache_key", "seed", "asr_model",
                    "transcript", "wer", "seconds_per_word", "pace_low", "pace_high", "duration", "flagged", "reasons",
                    "scored", "created_at")


def _rescore_row(r: dict[str, Any], plan: QaPlan) -> dict[str, Any]:
    return {**{c: r[c] for c in _RESCORE_COLUMNS}, "wer_threshold": plan.limits.wer_threshold}
