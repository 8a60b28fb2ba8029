"""Rows for the provenance database, built from what a run planned, rendered and reused. Pure functions, but
for the start row, which reads the clock, the host and the process."""
from __future__ import annotations

import os
import socket
from dataclasses import asdict
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

from engine.base import DecodingParams
from tasks.output.export import OutputFile
from tasks.output.mastering import NormalisedTake
from tasks.render import cache
from tasks.render.batch import BatchResult, RenderFailure, Take
from tasks.render.cache import CachedFile
from tasks.render.engines import EngineSetup
from tasks.script.plan import RenderJob
from tasks.store.db import as_json


def start_row(run_id: str, flow_run_id: str | None, manifest: str, sha256: str, title: str, output_dir: Path,
              forced: bool, **extra: Any) -> dict[str, Any]:
    """The `runs` row of a run as it starts: what it renders, where, and which process runs it."""
    return dict(run_id=run_id, flow_run_id=flow_run_id, manifest_path=str(Path(manifest).resolve()),
                manifest_sha256=sha256, title=title, output_dir=str(Path(output_dir).resolve()),
                started_at=datetime.now(), status="running", host=socket.gethostname(), pid=os.getpid(), forced=forced,
                versions=as_json({p: version(p) for p in ("voicebatch", "prefect", "duckdb", "numpy")}), **extra)


def take_row(take: Take, engine: str, run_id: str, record: CachedFile, now: datetime) -> dict[str, Any]:
    return dict(cache_key=take.key, path=take.path, sha256=take.sha256, bytes=record.bytes, mtime_ns=record.mtime_ns,
                duration=take.duration, peak_dbfs=take.peak_dbfs, rms_dbfs=take.rms_dbfs,
                render_seconds=take.render_seconds, engine=engine, run_id=run_id, created_at=now,
                decode_steps=take.decode_steps, decode_path=take.decode_path)


def record_batch(result: BatchResult, engine_of: dict[str, str], run_id: str, db: Path,
                 on_recorded: Callable[[int], None] | None = None) -> int:
    """Register one batch's takes as soon as it lands, so a run killed later still reuses them."""
    now = datetime.now()
    cache.record_takes(db, [take_row(t, engine_of[t.key], run_id, cache.file_record(Path(t.path), t.sha256), now)
                            for t in result.takes])
    if on_recorded is not None:  # the run's progress: takes landed, failed ones included
        on_recorded(len(result.takes) + len(result.failures))
    return len(result.takes)


def take_from_row(row: dict[str, Any]) -> Take:
    """A cached take as the flow uses it: no render time spent in this run, no batch."""
    return Take(row["cache_key"], row["path"], row["sha256"], row["duration"], 0.0, row["peak_dbfs"],
                row["rms_dbfs"], None, decode_steps=row.get("decode_steps"), decode_path=row.get("decode_path"))


def render_rows(run_id: str, jobs: list[RenderJob], takes: dict[str, Take], hits: dict[str, dict[str, Any]],
                setup: EngineSetup, now: datetime, failures: dict[str, RenderFailure] | None = None) -> list[dict[str, Any]]:
    """One row per planned chunk: cache hits marked (with the run that rendered the take), failed jobs with
    their error."""
    rows = []
    failures = failures or {}
    # A book's thousands of lines share a few voices and parameter sets: each is written out as JSON once.
    options_json: dict[tuple[str, str], str] = {}
    params_json: dict[DecodingParams, str] = {}
    for job in jobs:
        info = setup.infos[job.engine]
        if (job.engine, job.voice_id) not in options_json:
            options_json[job.engine, job.voice_id] = as_json(setup.facts[job.engine].options[job.voice_id])
        if job.params not in params_json:  # frozen and hashable
            params_json[job.params] = as_json(job.params.model_dump())
        row = dict(
            run_id=run_id, chapter=job.chapter, line=job.line, chunk=job.chunk, source=job.source,
            speaker=job.speaker, voice_id=job.voice_id,
            voice_sha256=setup.prompts[job.engine][job.voice_id].content_hash, engine=job.engine, model=info.model,
            revision=info.revision, device=info.device, dtype=info.dtype,
            engine_options=options_json[job.engine, job.voice_id], text=job.text,
            params=params_json[job.params], seed=job.params.seed, cache_key=job.key, created_at=now,
            cache_hit=job.key in hits, predecessor=job.predecessor,
            pronunciations=as_json(dict(job.pronunciations)) if job.pronunciations else None)
        if job.key in failures:
            rows.append({**row, "status": "failed", "error": failures[job.key].error})
            continue
        take = takes[job.key]
        rows.append({**row, "device": take.device or info.device, "batch": take.batch, "take_path": take.path,
                     "take_sha256": take.sha256, "duration": take.duration, "render_seconds": take.render_seconds,
                     "peak_dbfs": take.peak_dbfs, "rms_dbfs": take.rms_dbfs, "status": "rendered", "error": None,
                     "take_run_id": hits[job.key].get("run_id") if job.key in hits else run_id,
                     "render_started_at": take.render_started_at, "render_ended_at": take.render_ended_at,
                     "decode_steps": take.decode_steps, "decode_path": take.decode_path, "worker": take.worker})
    return rows


def output_row(run_id: str, output: OutputFile, record: CachedFile, fingerprint: str, reused: bool,
               now: datetime) -> dict[str, Any]:
    return dict(run_id=run_id, created_at=now, **asdict(output), fingerprint=fingerprint, reused=reused,
                bytes=record.bytes, mtime_ns=record.mtime_ns)


def worker_rows(run_id: str, results: list[BatchResult], normalised: list[NormalisedTake]) -> list[dict[str, Any]]:
    """One row per process (a worker is `host:pid`) that rendered or normalised for the run: batches, takes, seconds, model loads."""
    rows: dict[str, dict[str, Any]] = {}

    def row(worker: str) -> dict[str, Any]:
        return rows.setdefault(worker, dict(run_id=run_id, worker=worker, batches=0, takes_rendered=0,
                                            render_seconds=0.0, load_seconds=0.0, takes_normalised=0,
                                            normalise_seconds=0.0))

    for result in results:
        r = row(result.worker)
        r["batches"] += 1
        r["takes_rendered"] += len(result.takes)
        r["render_seconds"] += sum(end - start for start, end in result.spans)
        r["load_seconds"] += result.load_seconds
    for take in normalised:
        if take.worker is None:
            continue
        r = row(take.worker)
        r["takes_normalised"] += 1
        if take.normalise_started_at and take.normalise_ended_at:
            r["normalise_seconds"] += (take.normalise_ended_at - take.normalise_started_at).total_seconds()
    return sorted(rows.values(), key=lambda r: r["worker"])
