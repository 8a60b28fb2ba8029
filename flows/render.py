"""The `render-manifest` flow: ingest, plan, render on warm engines, assemble, export, record provenance."""
from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from engine.settings import get_settings
from tasks import provenance, steps
from tasks.export import book_dir, chapter_path
from tasks.plan import group_jobs, plan_jobs
from tasks.render import Take


@dataclass
class RunSummary:
    run_id: str
    status: str
    chapters: list[str]
    book: str
    takes_rendered: int
    audio_seconds: float
    load_seconds: float
    render_seconds: float
    wall_seconds: float
    database: str


def _render_rows(run_id, jobs, takes: dict[str, Take], setup, now) -> list[dict]:
    rows = []
    for job in jobs:
        take, info = takes[job.key], setup.infos[job.engine]
        rows.append(dict(
            run_id=run_id, chapter=job.chapter, line=job.line, chunk=job.chunk, source=job.source,
            speaker=job.speaker, voice_id=job.voice_id, voice_sha256=setup.prompts[job.engine][job.voice_id].content_hash,
            engine=job.engine, model=info.model, revision=info.revision, device=info.device, dtype=info.dtype,
            engine_options=provenance.as_json(setup.facts[job.engine].options[job.voice_id]), text=job.text,
            params=provenance.as_json(job.params.model_dump()), seed=job.params.seed, batch=take.batch,
            cache_key=job.key, take_path=take.path, take_sha256=take.sha256, duration=take.duration,
            render_seconds=take.render_seconds, peak_dbfs=take.peak_dbfs, rms_dbfs=take.rms_dbfs,
            status="rendered", error=None, created_at=now))
    return rows


@flow(name="render-manifest", log_prints=True)
def render_manifest(manifest: str, engine: str | None = None, output_dir: str | None = None) -> RunSummary:
    """Render a manifest into chapter and book WAVs, recording every take in the provenance database."""
    settings = get_settings()
    logger = get_run_logger()
    out = Path(output_dir) if output_dir else settings.output_dir
    db = settings.db_path or out / "provenance.duckdb"
    started = time.perf_counter()
    run_id = str(flow_run.get_id() or uuid.uuid4())

    script = steps.ingest_manifest(Path(manifest), settings.voices_dir)
    provenance.start_run(db, dict(
        run_id=run_id, flow_run_id=flow_run.get_id(), manifest_path=str(Path(manifest).resolve()),
        manifest_sha256=script.sha256, title=script.manifest.title, output_dir=str(out.resolve()),
        started_at=datetime.now(), status="running",
        versions=provenance.as_json({p: version(p) for p in ("voicebatch", "prefect", "duckdb", "numpy")})))
    try:
        setup = steps.prepare_engines(script, engine, settings.engine, settings.device, settings.dtype)
        jobs = plan_jobs(script, setup.facts, setup.speaker_engine, settings.chunk_words)
        batches = group_jobs(jobs, setup.facts)  # each engine's own batch size (Engine.batch_size)
        logger.info("%d chunks in %d render batches on %s", len(jobs), len(batches), ", ".join(setup.facts))

        futures = [steps.render_batch.submit(b, setup.prompts[b.engine], out / "takes", settings.device, settings.dtype,
                                             script.manifest.scene)
                   for b in batches]
        takes = {t.key: t for f in futures for t in f.result()}
        take_paths = {k: t.path for k, t in takes.items()}

        defaults = script.manifest.defaults
        chapter_futures = [
            steps.export_chapter.submit([j for j in jobs if j.chapter == ch.index], take_paths,
                                        chapter_path(out, script.manifest.title, ch.index, ch.title), ch.index, ch.title,
                                        defaults.speaker_pause_duration, defaults.chunk_pause_duration)
            for ch in script.chapters]
        chapters = [f.result() for f in chapter_futures]
        book_path = book_dir(out, script.manifest.title) / f"{book_dir(out, script.manifest.title).name}.wav"
        book = steps.export_book(chapters, book_path, script.manifest.title)
    except BaseException as e:
        provenance.finish_run(db, run_id, dict(status="failed", error=f"{type(e).__name__}: {e}",
                                               ended_at=datetime.now(),
                                               wall_seconds=time.perf_counter() - started), [], [])
        raise

    now = datetime.now()
    rows = _render_rows(run_id, jobs, takes, setup, now)
    outputs = [dict(run_id=run_id, created_at=now, **asdict(o)) for o in [*chapters, book]]
    wall = time.perf_counter() - started
    first = next(iter(setup.infos.values()))
    provenance.finish_run(db, run_id, dict(
        status="completed", ended_at=now, takes_rendered=len(takes), audio_seconds=book.duration,
        wall_seconds=wall, load_seconds=setup.load_seconds, device=first.device, dtype=first.dtype,
        engines=provenance.as_json({n: asdict(i) for n, i in setup.infos.items()})), rows, outputs)
    return RunSummary(run_id=run_id, status="completed", chapters=[c.path for c in chapters], book=book.path,
                      takes_rendered=len(takes), audio_seconds=book.duration, load_seconds=setup.load_seconds,
                      render_seconds=sum(t.render_seconds for t in takes.values()), wall_seconds=wall,
                      database=str(db))
