"""The `render-manifest` flow: ingest, plan, reuse cached takes, render the rest on warm engines, assemble
the chapters whose takes changed, export, record provenance and publish the run's report."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from flows import artifacts, quality, steps
from flows.deliver import deliver, takes_to_read
from flows.run_skeleton import (collect, failed_rows, failure_recorded, look_up_cache, preload_voices, record_as_landed,
                                 refuse_too_many, run_place, submit_renders, take_limits)
from flows.runners import remote_task_runner
from tasks.core.settings import get_settings
from tasks.core.stopping import reclaim_signals
from tasks.output.mastering import take_level_rows
from tasks.qa import report as qa_report
from tasks.render import cache
from tasks.render import records as run_record
from tasks.render.batch import BatchResult
from tasks.render.records import worker_rows
from tasks.script.engine_choice import speaker_engines
from tasks.script.overrides import apply_overrides, parse_overrides
from tasks.script.plan import group_jobs, ignored_context, plan_jobs
from tasks.script.pronunciations import check_pronunciations
from tasks.store import db as provenance


@dataclass
class RunSummary:
    run_id: str
    status: str
    chapters: list[str]
    book: str | None
    takes_rendered: int
    takes_reused: int
    failures: list[dict]
    chapters_written: int
    audio_seconds: float
    load_seconds: float
    render_seconds: float
    wall_seconds: float
    lane_busy_seconds: float  # engine calls, summed over the render lanes
    render_phase_seconds: float  # first engine call's start to the last one's end
    database: str
    loudness: list[dict] = field(default_factory=list)  # per chapter: measurements, pass/fail, problems
    encoded: list[str] = field(default_factory=list)  # MP3/M4B files (none without ffmpeg)
    warnings: list[str] = field(default_factory=list)
    qa: list[dict] = field(default_factory=list)  # QA attempts (qa_takes rows); empty when QA is off
    qa_seconds: float = 0.0  # transcription time in this run
    review_page: str | None = None  # the run's HTML review page (None with review off, or when it failed)
    chapters_encoded: int = 0  # chapter encodes (MP3 and AAC) this run made
    milestones: dict[str, float] = field(default_factory=dict)  # seconds from the flow's start: render_end, ...
    not_written: list[str] = field(default_factory=list)  # deliverables the run promised but could not write, and why
    chapters_rewritten: list[str] = field(default_factory=list)  # the chapter files this run wrote


def _milestones(started: float, spans: list[tuple[float, float]], delivered: dict[str, float]) -> dict[str, float]:
    """Seconds from the run's start to the first engine call, the last one's end, each delivery step, the end."""
    at = {"render_start": min(b for b, _ in spans), "render_end": max(e for _, e in spans)} if spans else {}
    return {name: t - started for name, t in {**at, **delivered, "finished": time.perf_counter()}.items()}


# Imported only by runs with takes to render (see _import_meanwhile); the warm process imports them at start.
RENDER_IMPORTS = ("scipy.signal",)
REVIEW_IMPORTS = ("matplotlib.figure", "matplotlib.backends.backend_svg")


def _import_meanwhile(*modules: str) -> None:
    """Import what the takes about to be rendered will need, in a thread while the engines load and render
    (their compute releases the GIL): scipy.signal, for the loudness meter, takes ~1 s to import, which
    otherwise lay between the first take and its normalisation; matplotlib, for the review page's plots, half
    a second at the end. A run that renders nothing needs neither: it is not slowed by importing them."""
    import importlib
    import threading

    threading.Thread(target=lambda: [importlib.import_module(m) for m in modules], name="import-meanwhile",
                     daemon=True).start()


@flow(name="render-manifest", log_prints=True)
def render_manifest(manifest: str, engine: str | None = None, output_dir: str | None = None,
                    force: bool = False, qa: bool | None = None, overrides: dict[str, Any] | None = None,
                    review: bool = True) -> RunSummary:
    """Render a manifest into chapter and book WAVs, re-rendering only what changed (all with `force`); with
    `qa` (default: the manifest's `qa.enabled`) every take is checked by ASR and re-taken when flagged.
    `overrides` (tasks/script/overrides.py) set decoding settings and loudness on top of the manifest's; with `review`
    the run's review page is written and linked."""
    reclaim_signals()  # Prefect's flow engine took SIGTERM over: the command's handler stops the run
    settings = get_settings()
    logger = get_run_logger()
    place = run_place(output_dir, settings)
    out, db, takes_dir, run_id, started = place.out, place.db, place.takes_dir, place.run_id, place.started

    run_overrides = parse_overrides(overrides)
    script = apply_overrides(steps.ingest_manifest(Path(manifest), settings.voices_dir), run_overrides)
    title = script.manifest.title
    check_pronunciations(script, engine, settings.engine)
    provenance.start_run(db, run_record.start_row(run_id, flow_run.get_id(), manifest, script.sha256, title, out, force,
                                                  overrides=provenance.as_json(run_overrides.as_record())))
    with failure_recorded(place, logger) as in_flight:
        speaker_engine = speaker_engines(script, engine, settings.engine)
        script = preload_voices(script, speaker_engine, out, db, run_id)
        qa_plan = quality.qa_plan(script.manifest.qa, qa, settings)
        # quote(): Prefect would otherwise walk every line of a large script and every key looking for futures.
        setup = steps.prepare_engines(quote(script), engine, settings.engine, settings.device, settings.dtype,
                                      speaker_engine)
        jobs = plan_jobs(script, setup.facts, setup.speaker_engine, settings.chunk_words)
        for message in ignored_context(script, setup.facts, setup.speaker_engine):
            logger.warning(message)
        refuse_too_many(len(jobs), manifest, settings, "plans", "split the manifest or raise the limit")
        # The takes this run will read are hashed here, in a read of their own: whether one must be rendered again
        # is needed before the render lane is planned, and the read that decodes them (normalisation) comes later,
        # beside the render lane (the file is then in the page cache).
        hits, takes = look_up_cache(db, takes_dir, [j.key for j in jobs], force,
                                    verify=None if force else takes_to_read(script, jobs, out, db))
        # Each engine's own batch size (Engine.batch_size) unless VOICEBATCH_BATCH_SIZE overrides it.
        batches = group_jobs([j for j in jobs if j.key not in hits], setup.facts, settings.batch_size)
        if batches and not qa_plan:  # with QA, batches are normalised as they land: imports would hold them up
            _import_meanwhile(*RENDER_IMPORTS, *(REVIEW_IMPORTS if review else ()))
        logger.info("%d chunks: %d cached, %d to render in %d batches on %s", len(jobs), len(jobs) - sum(
            len(b.jobs) for b in batches), sum(len(b.jobs) for b in batches), len(batches), ", ".join(setup.facts))

        # Under a remote task runner (Dask) the workers load their own engines: none is loaded here, and the
        # run records no load time (NULL) rather than a warm 0.
        local = not remote_task_runner()
        load_seconds = (steps.load_engines([b.engine for b in batches], settings.device, settings.dtype)
                        if batches and local else 0.0)
        progress = artifacts.Progress(artifacts.artifact_key(title, "progress"), sum(len(b.jobs) for b in batches))
        futures = submit_renders(batches, setup, takes_dir, settings, script.manifest.scene)
        in_flight.batches, in_flight.futures = batches, futures
        with ThreadPoolTaskRunner(max_workers=1) as bookkeeping:
            records = record_as_landed(bookkeeping, batches, futures, run_id, db, on_recorded=progress.advance)
            if qa_plan:
                # QA beside the render lane and normalisation as each batch lands; mastering waits for the takes
                # QA keeps, and the chapters are assembled from them.
                checks = quality.submit_checks(qa_plan, script, jobs, setup, futures, list(takes.values()), run_id,
                                               db, takes_dir, settings, take_limits(settings))
                delivery = deliver(script, jobs, batches, futures, BatchResult(), out, db, force,
                                   settings.max_output_mb, logger, settle=partial(quality.gather, checks))
            else:
                # Normalisation, mastering and export run in their own pool while the render lane goes on.
                delivery = deliver(script, jobs, batches, futures, BatchResult(takes=list(takes.values())), out, db,
                                   force, settings.max_output_mb, logger)
            landed = collect(futures)
            takes.update(landed.takes)
            checked = delivery.qa or quality.QaOutcome()
            render_seconds = sum(t.render_seconds for t in takes.values()) + checked.retake_seconds
            if qa_plan:
                jobs = checked.final_jobs(jobs)
                hits.update(checked.reused)
                takes = {t.key: t for t in checked.kept.values()}
            for record in records:
                record.result()
        failures, spans = landed.failures, landed.spans
        if failures:
            failed_chapters = sorted({j.chapter + 1 for j in jobs if j.key in failures})
            logger.warning("%d takes failed: chapters %s and the book are not assembled", len(failures),
                           ", ".join(map(str, failed_chapters)))

    now = datetime.now()
    rows = run_record.render_rows(run_id, jobs, takes, hits, setup, now, failures)
    outputs = [run_record.output_row(run_id, o, cache.file_record(Path(o.path), o.sha256),
                                     delivery.fingerprints.get(o.path), o.path in delivery.reused, now)
               for o in delivery.files]
    loudness = [{**r, "run_id": run_id} for r in delivery.loudness_rows]
    failed = failed_rows(rows)
    status = "partial" if failed else "completed"
    rendered = sum(k not in hits for k in takes)  # with QA, `takes` holds only the kept ones
    reused = len(takes) - rendered
    wall = time.perf_counter() - started
    audio = sum(c.duration for c in delivery.chapters)
    first = next(iter(setup.infos.values()))
    provenance.finish_run(db, run_id, dict(
        status=status, ended_at=now, takes_rendered=rendered, takes_reused=reused, audio_seconds=audio,
        wall_seconds=None if delivery.joining else wall,  # set once the book's joins are done (below)
        load_seconds=load_seconds if local else None, device=first.device, dtype=first.dtype,
        error=f"{len(failed)} takes failed" if failed else None,
        engines=provenance.as_json({n: vars(i) for n, i in setup.infos.items()})), rows, outputs,
        extra={"take_levels": take_level_rows(run_id, delivery.normalised), "chapter_loudness": loudness,
               "qa_takes": checked.attempts,
               "run_workers": worker_rows(run_id, landed.results, delivery.normalised)})
    # The review page (which shows no book file) is written while the book's M4B and MP3 are still joined.
    review_page, review_missing = artifacts.write_and_link(db, run_id, title, logger) if review else (None, None)
    if delivery.joining:
        with failure_recorded(place, logger):
            books = [future.result() for future in delivery.joining]
        delivery.encoded += books
        delivery.milestones["encoded"] = time.perf_counter()
        book_rows = [run_record.output_row(run_id, o, cache.file_record(Path(o.path), o.sha256),
                                           delivery.fingerprints.get(o.path), False, now) for o in books]
        outputs += book_rows
        wall = time.perf_counter() - started
        provenance.finish_run(db, run_id, dict(wall_seconds=wall, ended_at=datetime.now()), [], book_rows)
    artifacts.publish(title, artifacts.summary_markdown(title, run_id, rows, outputs, wall, load_seconds),
                   artifacts.take_table(rows))
    if qa_plan:
        artifacts.publish(title, qa_report.markdown(title, run_id, checked.attempts),
                       qa_report.take_table(checked.attempts), kind="qa")
    return RunSummary(run_id=run_id, status=status, chapters=[c.path for c in delivery.chapters],
                      book=delivery.book.path if delivery.book else None, takes_rendered=rendered,
                      takes_reused=reused, failures=failed, chapters_written=len(delivery.mastered),
                      audio_seconds=audio, load_seconds=load_seconds,
                      render_seconds=render_seconds, wall_seconds=wall,
                      lane_busy_seconds=sum(e - b for b, e in spans),
                      render_phase_seconds=max((e for _, e in spans), default=0) - min((b for b, _ in spans), default=0),
                      database=str(db), loudness=[{k: v for k, v in r.items() if k != "run_id"} for r in loudness],
                      encoded=[o.path for o in delivery.encoded], warnings=delivery.warnings,
                      qa=checked.attempts, qa_seconds=checked.asr_seconds, review_page=review_page,
                      milestones=_milestones(started, spans, delivery.milestones),
                      not_written=[review_missing] if review_missing else [],
                      chapters_rewritten=[m.output.path for m in delivery.mastered],
                      chapters_encoded=delivery.chapters_encoded)
