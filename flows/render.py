"""The `render-manifest` flow: ingest, plan, reuse cached takes, render the rest on warm engines, assemble
the chapters whose takes changed, export, record provenance and publish the run's report."""
from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import soundfile as sf
from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run

from engine.errors import EngineError, UserInputError, VoicebatchError
from engine.registry import engine_class
from engine.settings import get_settings
from tasks import cache, provenance, report, run_record, steps, voice_prep, voice_records
from tasks.errors import VoiceError
from tasks.ingest import Script
from tasks.export import OutputFile, book_dir, chapter_path
from tasks.plan import group_jobs, plan_jobs
from tasks.render import Take, speaker_engines

ASSEMBLY_VERSION = "1"  # bump when assembly changes the sound of a chapter: it is in the chapter fingerprint


@dataclass
class RunSummary:
    run_id: str
    status: str
    chapters: list[str]
    book: str
    takes_rendered: int
    takes_reused: int
    chapters_written: int
    audio_seconds: float
    load_seconds: float
    render_seconds: float
    wall_seconds: float
    database: str


def _chapter_fingerprints(script, jobs, takes: dict[str, Take]) -> dict[int, str]:
    d = script.manifest.defaults
    return {ch.index: cache.fingerprint({
        "takes": [(j.key, takes[j.key].sha256, j.speaker, j.pause_after) for j in jobs if j.chapter == ch.index],
        "pauses": [d.speaker_pause_duration, d.chunk_pause_duration], "assembly": ASSEMBLY_VERSION})
        for ch in script.chapters}


def _reused_output(kind: str, chapter: int | None, title: str, record: cache.CachedFile) -> OutputFile:
    return OutputFile(kind, chapter, title, record.path, record.sha256, sf.info(record.path).duration)


def _preload_voices(script: Script, speaker_engine: dict[str, str], out: Path, db: Path, run_id: str) -> Script:
    """Stage every voice's reference and settle its transcript, one task per voice in parallel, before
    planning: a bad clip is refused before anything renders. Whisper runs for voices whose engine speaks
    with the reference (every voice with VOICEBATCH_TRANSCRIBE=always)."""
    settings = get_settings()
    hearing = {v.id for s, v in script.voices.items()
               if settings.transcribe == "always" or engine_class(speaker_engine[s]).uses_reference}
    conversion = voice_prep.conversion_settings(settings)
    futures = {voice.id: steps.prepare_voice.submit(
        voice, voice_prep.staging_dir(out), db, conversion, settings.whisper_model if voice.id in hearing else None,
        settings.device) for voice in {v.id: v for v in script.voices.values()}.values()}
    prepared, problems = {}, []
    for voice_id, future in futures.items():
        try:
            prepared[voice_id] = future.result()
        except VoicebatchError as e:
            problems.append(e)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        kind = VoiceError if all(isinstance(p, UserInputError) for p in problems) else EngineError
        raise kind(f"{len(problems)} voices cannot be used:\n" + "\n".join(f"  - {p}" for p in problems))
    voice_records.record_run_voices(db, voice_prep.run_voice_rows(run_id, script, prepared, datetime.now()))
    return voice_prep.with_prepared_voices(script, prepared)


@flow(name="render-manifest", log_prints=True)
def render_manifest(manifest: str, engine: str | None = None, output_dir: str | None = None,
                    force: bool = False) -> RunSummary:
    """Render a manifest into chapter and book WAVs, re-rendering only what changed (all with `force`)."""
    settings = get_settings()
    logger = get_run_logger()
    out = Path(output_dir) if output_dir else settings.output_dir
    db, takes_dir = settings.db_path or out / "provenance.duckdb", out / "takes"
    started = time.perf_counter()
    run_id = str(flow_run.get_id() or uuid.uuid4())

    script = steps.ingest_manifest(Path(manifest), settings.voices_dir)
    title = script.manifest.title
    provenance.start_run(db, dict(
        run_id=run_id, flow_run_id=flow_run.get_id(), manifest_path=str(Path(manifest).resolve()),
        manifest_sha256=script.sha256, title=title, output_dir=str(out.resolve()), started_at=datetime.now(),
        status="running", host=socket.gethostname(), pid=os.getpid(), forced=force,
        versions=provenance.as_json({p: version(p) for p in ("voicebatch", "prefect", "duckdb", "numpy")})))
    try:
        speaker_engine = speaker_engines(script, engine, settings.engine)
        script = _preload_voices(script, speaker_engine, out, db, run_id)
        setup = steps.prepare_engines(script, engine, settings.engine, settings.device, settings.dtype,
                                      speaker_engine)
        jobs = plan_jobs(script, setup.facts, setup.speaker_engine, settings.chunk_words)
        hits, adopted = ({}, []) if force else steps.find_cached_takes(db, takes_dir, [j.key for j in jobs])
        cache.record_takes(db, adopted)
        takes: dict[str, Take] = {k: run_record.take_from_row(r) for k, r in hits.items()}
        batches = group_jobs([j for j in jobs if j.key not in hits], setup.facts, settings.batch_size)
        logger.info("%d chunks: %d cached, %d to render in %d batches on %s", len(jobs), len(jobs) - sum(
            len(b.jobs) for b in batches), sum(len(b.jobs) for b in batches), len(batches), ", ".join(setup.facts))

        load_seconds = steps.load_engines([b.engine for b in batches], settings.device, settings.dtype) if batches else 0.0
        progress = report.Progress(report.artifact_key(title, "progress"), sum(len(b.jobs) for b in batches))
        futures = [steps.render_batch.submit(b, setup.prompts[b.engine], takes_dir, settings.device, settings.dtype)
                   for b in batches]
        engine_of = {j.key: j.engine for j in jobs}
        for future in as_completed(futures):
            fresh = future.result()
            now = datetime.now()
            # Recorded as each batch lands, so a run killed later still reuses these takes.
            cache.record_takes(db, [run_record.take_row(t, engine_of[t.key], run_id, cache.file_record(
                Path(t.path), t.sha256), now) for t in fresh])
            takes.update({t.key: t for t in fresh})
            progress.advance(len(fresh))

        fingerprints = _chapter_fingerprints(script, jobs, takes)
        paths = {ch.index: chapter_path(out, title, ch.index, ch.title) for ch in script.chapters}
        book_path = book_dir(out, title) / f"{book_dir(out, title).name}.wav"
        book_fp = cache.fingerprint([fingerprints[ch.index] for ch in script.chapters])
        wanted = {str(paths[i]): fp for i, fp in fingerprints.items()} | {str(book_path): book_fp}
        reusable = {} if force else cache.reusable_outputs(db, wanted)

        defaults = script.manifest.defaults
        chapter_futures = {ch.index: steps.export_chapter.submit(
            [j for j in jobs if j.chapter == ch.index], {k: t.path for k, t in takes.items()}, paths[ch.index],
            ch.index, ch.title, defaults.speaker_pause_duration, defaults.chunk_pause_duration)
            for ch in script.chapters if str(paths[ch.index]) not in reusable}
        chapters = [chapter_futures[ch.index].result() if ch.index in chapter_futures else
                    _reused_output("chapter", ch.index, ch.title, reusable[str(paths[ch.index])])
                    for ch in script.chapters]
        reused_paths = {str(paths[ch.index]) for ch in script.chapters if ch.index not in chapter_futures}
        if str(book_path) in reusable and not chapter_futures:
            book = _reused_output("book", None, title, reusable[str(book_path)])
            reused_paths.add(book.path)
        else:
            book = steps.export_book(chapters, book_path, title)
    except BaseException as e:
        provenance.finish_run(db, run_id, dict(status="failed", error=f"{type(e).__name__}: {e}",
                                               ended_at=datetime.now(),
                                               wall_seconds=time.perf_counter() - started), [], [])
        raise

    now = datetime.now()
    rows = run_record.render_rows(run_id, jobs, takes, hits, setup, now)
    outputs = [run_record.output_row(run_id, o, cache.file_record(Path(o.path), o.sha256),
                                     wanted[o.path], o.path in reused_paths, now) for o in [*chapters, book]]
    rendered = len(takes) - len(hits)
    wall = time.perf_counter() - started
    first = next(iter(setup.infos.values()))
    provenance.finish_run(db, run_id, dict(
        status="completed", ended_at=now, takes_rendered=rendered, takes_reused=len(hits),
        audio_seconds=book.duration, wall_seconds=wall, load_seconds=load_seconds, device=first.device,
        dtype=first.dtype, engines=provenance.as_json({n: vars(i) for n, i in setup.infos.items()})), rows, outputs)
    report.publish(title, report.summary_markdown(title, run_id, rows, outputs, wall, load_seconds),
                   report.take_table(rows))
    return RunSummary(run_id=run_id, status="completed", chapters=[c.path for c in chapters], book=book.path,
                      takes_rendered=rendered, takes_reused=len(hits), chapters_written=len(chapter_futures),
                      audio_seconds=book.duration, load_seconds=load_seconds,
                      render_seconds=sum(t.render_seconds for t in takes.values()), wall_seconds=wall,
                      database=str(db))
