"""The steps every rendering run takes, whatever it renders (a manifest, a sweep): where it writes, its id and
clock, its voices prepared and recorded, the cache looked up, batches rendered on the warm engines and
recorded as they land, the results collected, and a failure recorded with every take that landed."""
from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from prefect import get_run_logger
from prefect.exceptions import TerminationSignal
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from engine.registry import engine_class
from flows import heartbeats, steps
from tasks.core import out_folders
from tasks.core.errors import EngineError, UserInputError, VoicebatchError, VoiceError
from tasks.core import stopping
from tasks.core.files import remove_stale_temp_files
from tasks.core.settings import Settings, get_settings
from tasks.render import cache
from tasks.render import records as run_record
from tasks.render.batch import BatchResult, RenderFailure, Take, TakeLimits
from tasks.render.engines import EngineSetup
from tasks.script.ingest import Script
from tasks.script.plan import RenderBatch
from tasks.store import db as provenance
from tasks.store import voice_records
from tasks.voices import preparation as voice_prep


heartbeats.end_runs_without_waiting()


@dataclass(frozen=True)
class RunPlace:
    out: Path  # the output folder
    db: Path  # the provenance database
    takes_dir: Path
    run_id: str  # the Prefect flow run's id (a fresh one outside a flow run)
    started: float  # time.perf_counter() at the run's start


def run_place(output_dir: str | None, settings: Settings) -> RunPlace:
    """The run's places, once the temporary files of killed runs there are gone (they never become outputs)."""
    out = Path(output_dir) if output_dir else settings.output_dir
    db = settings.db_path or out / "provenance.duckdb"
    stale = remove_stale_temp_files(out)
    if stale:
        get_run_logger().info("removed %d temporary files left by a killed run", len(stale))
    moved = out_folders.move_old_folders(out)
    if moved:
        provenance.move_recorded_paths(db, moved)
        get_run_logger().info("moved %s into %s, apart from the books", ", ".join(f"{old.name}/" for old, _ in moved),
                              out_folders.own_dir(out))
    return RunPlace(out, db, out_folders.takes_dir(out), str(flow_run.get_id() or uuid.uuid4()), time.perf_counter())


def preload_voices(script: Script, speaker_engine: dict[str, str], out: Path, db: Path, run_id: str) -> Script:
    """Stage every voice's reference and settle its transcript, one task per voice in parallel, before
    planning: a bad clip is refused before anything renders. Whisper runs for voices whose engine speaks
    with the reference (every voice with VOICEBATCH_TRANSCRIBE=always)."""
    settings = get_settings()
    hearing = {v.id for s, v in script.voices.items()
               if settings.transcribe == "always" or engine_class(speaker_engine[s]).uses_reference}
    conversion = voice_prep.conversion_settings(settings)
    futures = {voice.id: steps.prepare_voice.submit(
        voice, out_folders.staging_dir(out), db, conversion, settings.whisper_model if voice.id in hearing else None,
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


def refuse_too_many(planned: int, manifest: str, settings: Settings, what: str, fix: str) -> None:
    if planned > settings.max_takes_per_run:
        raise UserInputError(f"{manifest}: {what} {planned} takes, more than VOICEBATCH_MAX_TAKES_PER_RUN="
                             f"{settings.max_takes_per_run}; {fix}")


def look_up_cache(db: Path, takes_dir: Path, keys: list[str], force: bool = False,
                  verify: set[str] | None = None) -> tuple[dict[str, dict], dict[str, Take]]:
    """The cached takes of these keys (none with `force`), as their rows and as takes; take files found on disk
    but not recorded (a run killed before recording them) are recorded now. The takes of `verify` (about to
    be read) are hashed, and a damaged one is rendered again."""
    # quote(): Prefect would otherwise walk every key of a large run looking for futures.
    hits, adopted = ({}, []) if force else steps.find_cached_takes(db, takes_dir, quote(keys), quote(verify or set()))
    cache.record_takes(db, adopted)
    return hits, {k: run_record.take_from_row(r) for k, r in hits.items()}


def submit_renders(batches: list[RenderBatch], setup: EngineSetup, takes_dir: Path, settings: Settings,
                   scene: str | None) -> list[PrefectFuture]:
    """One render task per batch, on the flow's task runner (the engine lanes decide what runs at once); a batch
    with chained jobs waits for the batches that render the takes it is prompted with."""
    limits = take_limits(settings)
    made_in = {job.key: i for i, batch in enumerate(batches) for job in batch.jobs}
    futures: list[PrefectFuture] = []
    for b in batches:
        after = sorted({made_in[t.key] for j in b.jobs for t in j.context if t.key in made_in})
        futures.append(steps.render_batch.submit(b, setup.prompts[b.engine], takes_dir, settings.device,
                                                 settings.dtype, limits, scene, wait_for=[futures[i] for i in after]))
    stopping.on_stop(lambda: cancel_queued(futures))
    return futures


def cancel_queued(futures: list[PrefectFuture]) -> None:
    """Cancel the render tasks that have not started: a stopping run must not wait for each to start and end."""
    for future in futures:
        wrapped = getattr(future, "wrapped_future", None)  # a thread pool's or Dask's own future
        if wrapped is not None:
            wrapped.cancel()


def take_limits(settings: Settings) -> TakeLimits:
    return TakeLimits(settings.take_seconds_per_word, settings.take_floor_seconds)


def record_as_landed(bookkeeping: ThreadPoolTaskRunner, batches: list[RenderBatch], futures: list[PrefectFuture],
                     run_id: str, db: Path, on_recorded: Callable[[int], None] | None = None) -> list[PrefectFuture]:
    """Each batch's takes recorded as soon as it lands, so a run killed later still reuses them; on one thread
    of this process (one database writer) whatever runs the renders (threads or Dask)."""
    return [bookkeeping.submit(steps.record_batch, dict(result=f, engine_of={j.key: b.engine for j in b.jobs},
                                                        run_id=run_id, db=db, on_recorded=on_recorded))
            for b, f in zip(batches, futures)]  # each batch's own keys: Prefect walks every task input


@dataclass
class Rendered:
    """What the render tasks of a run produced, gathered."""

    results: list[BatchResult] = field(default_factory=list)
    takes: dict[str, Take] = field(default_factory=dict)
    failures: dict[str, RenderFailure] = field(default_factory=dict)
    spans: list[tuple[float, float]] = field(default_factory=list)  # engine calls (perf_counter start, end)


def collect(futures: list[PrefectFuture]) -> Rendered:
    """Wait for every render task, in order."""
    rendered = Rendered()
    for future in futures:
        result = future.result()
        rendered.results.append(result)
        rendered.spans += result.spans
        rendered.takes.update({t.key: t for t in result.takes})
        rendered.failures.update({f.key: f for f in result.failures})
    return rendered


def failed_rows(render_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failed takes of a run, as the summary lists them."""
    return [dict(source=r["source"], chapter=r["chapter"], line=r["line"], chunk=r["chunk"], text=r["text"],
                 error=r["error"]) for r in render_rows if r["status"] == "failed"]


@dataclass
class InFlight:
    """The batches submitted so far and their futures: what a failure must still record."""

    batches: list[RenderBatch] = field(default_factory=list)
    futures: list[PrefectFuture] = field(default_factory=list)


@contextmanager
def failure_recorded(place: RunPlace, logger: logging.Logger | logging.LoggerAdapter) -> Iterator[InFlight]:
    """On any failure inside the block: the takes of every batch that finished rendering are recorded
    (leaving the bookkeeping pool cancels record tasks still queued, and the next run must reuse them), then
    the run is marked failed with its error (`interrupted` when a signal stopped it), and the error goes on."""
    in_flight = InFlight()
    try:
        yield in_flight
    except BaseException as e:
        for batch, future in zip(in_flight.batches, in_flight.futures):
            try:
                if future.state.is_completed():
                    run_record.record_batch(future.result(), {j.key: batch.engine for j in batch.jobs},
                                            place.run_id, place.db)
            except Exception as err:  # noqa: BLE001 - the run's own error is the one to report
                logger.warning("could not record the takes of batch %d after the failure: %s", batch.index, err)
        # A signal: the CLI's StopRequested (or what Prefect turned it into), or Prefect's TerminationSignal where
        # Prefect handles SIGTERM (a worker).
        stopped = isinstance(e, (KeyboardInterrupt, TerminationSignal)) or stopping.stop_requested()
        provenance.record_failed_run(place.db, place.run_id, e, time.perf_counter() - place.started, logger,
                                     "interrupted" if stopped else "failed")
        raise
