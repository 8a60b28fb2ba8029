"""The `sweep-manifest` flow: chosen lines of a manifest rendered under every point of a grid of decoding settings
and seeds (one render batch per point, the engine warm throughout, the ordinary render cache), every take scored
(ASR word error rate, pace, decode steps, loudness), recorded in provenance with its grid point, and ranked."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from engine.registry import engine_class
from flows import artifacts, quality, steps
from flows.run_skeleton import (collect, failed_rows, failure_recorded, look_up_cache, preload_voices, record_as_landed,
                                 refuse_too_many, run_place, submit_renders)
from tasks.core.settings import get_settings
from tasks.core.stopping import reclaim_signals
from tasks.render import records as run_record
from tasks.render.batch import BatchResult, Take
from tasks.script.engine_choice import speaker_engines
from tasks.script.ingest import Script
from tasks.script.manifest import Qa
from tasks.script.plan import EngineFacts, RenderJob, plan_jobs
from tasks.script.pronunciations import check_pronunciations
from tasks.store import db as provenance
from tasks.sweep import score as sweep_score
from tasks.sweep.plan import (SweepJob, SweepSpec, grid_points, group_sweep, plan_sweep, refuse_ignored, select_jobs,
                              spec_from_block)


@dataclass
class SweepResult:
    run_id: str
    status: str
    output_dir: str  # the run's output folder: takes are under takes/, the database beside them by default
    database: str
    points: list[dict[str, Any]]  # ranked per-point scores (sweep_score.point_scores)
    takes_planned: int
    takes_rendered: int
    takes_reused: int
    batches: int
    wall_seconds: float
    load_seconds: float
    asr_model: str | None
    failures: list[dict[str, Any]] = field(default_factory=list)
    review_page: str | None = None  # the sweep's HTML review page (None with review off, or when it failed)


def spec_block(grid: dict[str, list] | None, points: list[dict] | None, seeds: int | list[int], chapter: int | None,
               lines: str | None, speaker: str | None) -> dict[str, Any]:
    """The flow's parameters as a grid file's `sweep:` block (one validation path for both)."""
    block: dict[str, Any] = {**(grid or {}), "seeds": seeds, "chapter": chapter, "lines": lines, "speaker": speaker}
    if points:
        block["points"] = points
    return {k: v for k, v in block.items() if v is not None}


def check_sweep(script: Script, spec: SweepSpec, requested_engine: str | None, default_engine: str) -> list[RenderJob]:
    """Refuse a bad selection, a pronunciation the engine cannot say, or a sweep over a setting the engine
    ignores: no model is loaded, nothing is recorded (the CLI calls this before Prefect starts; the flow again
    before its run row). Returns the chosen lines' jobs (their cache keys are not real ones)."""
    check_pronunciations(script, requested_engine, default_engine)
    speaker_engine = speaker_engines(script, requested_engine, default_engine)
    # Only to find the chosen lines: cache keys are not used here, so the engines' identities can stay blank.
    facts = {name: EngineFacts(name, "", None, "", engine_class(name).honours) for name in set(speaker_engine.values())}
    selected = select_jobs(script, plan_jobs(script, facts, speaker_engine, get_settings().chunk_words), spec)
    refuse_ignored(spec, {j.engine: facts[j.engine].honours for j in selected})
    return selected


def _take_rows(run_id: str, planned: list[SweepJob], takes: dict[str, Take], hits: dict[str, dict[str, Any]],
               scores: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for item in planned:
        job, take = item.job, takes.get(item.job.key)
        row = dict(run_id=run_id, point=item.point.name, point_params=item.point.params_json(), chapter=job.chapter,
                   line=job.line, chunk=job.chunk, seed=job.params.seed, cache_key=job.key)
        if take is not None:
            own_seconds = hits[job.key].get("render_seconds") if job.key in hits else take.render_seconds
            row.update(scores.get(job.key, {}), render_seconds=own_seconds, decode_steps=take.decode_steps)
        rows.append(row)
    return rows


@flow(name="sweep-manifest", log_prints=True)
def sweep_manifest(manifest: str, grid: dict[str, list] | None = None, points: list[dict] | None = None,
                   seeds: int | list[int] = 1, chapter: int | None = None, lines: str | None = None,
                   speaker: str | None = None, engine: str | None = None, output_dir: str | None = None,
                   wer: bool = True, review: bool = True) -> SweepResult:
    """Render the chosen lines under every grid point (the product of `grid`'s values, plus `points`) and seed,
    score and rank the points. `wer=False` skips the ASR check (WER columns stay empty); with `review` the
    sweep's review page (each line under every point, side by side) is written and linked."""
    reclaim_signals()  # Prefect's flow engine took SIGTERM over: the command's handler stops the run
    settings = get_settings()
    logger = get_run_logger()
    place = run_place(output_dir, settings)
    out, db, takes_dir, run_id, started = place.out, place.db, place.takes_dir, place.run_id, place.started
    spec = spec_from_block(spec_block(grid, points, seeds, chapter, lines, speaker), "sweep")

    script = steps.ingest_manifest(Path(manifest), settings.voices_dir)
    check_sweep(script, spec, engine, settings.engine)
    provenance.start_run(db, run_record.start_row(run_id, flow_run.get_id(), manifest, script.sha256,
                                                  script.manifest.title, out, False, kind="sweep"))
    with failure_recorded(place, logger) as in_flight:
        speaker_engine = speaker_engines(script, engine, settings.engine)
        script = preload_voices(script, speaker_engine, out, db, run_id)
        asr = quality.qa_plan(Qa(enabled=True), None, settings) if wer else None
        setup = steps.prepare_engines(script, engine, settings.engine, settings.device, settings.dtype, speaker_engine)
        selected = select_jobs(script, plan_jobs(script, setup.facts, setup.speaker_engine, settings.chunk_words), spec)
        planned = plan_sweep(script, selected, grid_points(spec), spec.seeds, setup.facts)
        refuse_too_many(len(planned), manifest, settings, "the sweep plans", "choose fewer lines, values or seeds")
        hits, takes = look_up_cache(db, takes_dir, [p.job.key for p in planned])
        batches = group_sweep([p for p in planned if p.job.key not in hits], setup.facts, settings.batch_size)
        logger.info("sweep of %d takes (%d points): %d cached, %d to render in %d batches", len(planned),
                    len({p.point.name for p in planned}), len(planned) - sum(len(b.jobs) for b in batches),
                    sum(len(b.jobs) for b in batches), len(batches))
        load_seconds = steps.load_engines([b.engine for b in batches], settings.device, settings.dtype) if batches else 0.0
        futures = submit_renders(batches, setup, takes_dir, settings, script.manifest.scene)
        in_flight.batches, in_flight.futures = batches, futures
        texts = {p.job.key: p.job.text for p in planned}
        with ThreadPoolTaskRunner(max_workers=1) as bookkeeping:
            records = record_as_landed(bookkeeping, batches, futures, run_id, db)
            # Scoring runs beside the render lane: one task per batch as it lands, one for the cached takes.
            scoring = [steps.score_sweep_takes.submit(result=f, texts=texts, plan=asr, db=db) for f in futures]
            scoring.append(steps.score_sweep_takes.submit(result=BatchResult(takes=list(takes.values())),
                                                          texts=texts, plan=asr, db=db))
            landed = collect(futures)
            takes.update(landed.takes)
            scores: dict[str, dict[str, Any]] = {}
            for future in scoring:
                scores.update(future.result())
            for record in records:
                record.result()

    now = datetime.now()
    jobs = [p.job for p in planned]
    renders = run_record.render_rows(run_id, jobs, takes, hits, setup, now, landed.failures)
    sweep_rows = _take_rows(run_id, planned, takes, hits, scores)
    failed = failed_rows(renders)
    status = "partial" if failed else "completed"
    unique = {j.key for j in jobs if j.key in takes}
    rendered = sum(k not in hits for k in unique)
    wall = time.perf_counter() - started
    first = next(iter(setup.infos.values()))
    provenance.finish_run(db, run_id, dict(
        status=status, ended_at=now, takes_rendered=rendered, takes_reused=len(unique) - rendered,
        audio_seconds=sum(takes[k].duration for k in unique), wall_seconds=wall, load_seconds=load_seconds,
        device=first.device, dtype=first.dtype, error=f"{len(failed)} takes failed" if failed else None,
        engines=provenance.as_json({n: vars(i) for n, i in setup.infos.items()})), renders, [],
        extra={"sweep_takes": sweep_rows})
    ranked = sweep_score.point_scores([{**s, "status": r["status"], "duration": r.get("duration"),
                                        "peak_dbfs": r.get("peak_dbfs")} for s, r in zip(sweep_rows, renders)])
    title = script.manifest.title
    artifacts.publish(title, sweep_score.markdown(title, run_id, ranked), sweep_score.artifact_table(ranked), kind="sweep")
    review_page = artifacts.write_and_link(db, run_id, title, logger)[0] if review else None
    return SweepResult(review_page=review_page, run_id=run_id, status=status, output_dir=str(out), database=str(db),
                       points=ranked,
                       takes_planned=len(planned), takes_rendered=rendered, takes_reused=len(unique) - rendered,
                       batches=len(batches), wall_seconds=wall, load_seconds=load_seconds,
                       asr_model=asr.asr_model_id if asr else None, failures=failed)
