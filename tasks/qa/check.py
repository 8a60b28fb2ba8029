"""The ASR check of a render batch, off the render lane: transcribe each take with Whisper, score it against
its text, re-take a flagged one with the next seeds (through the render lane, one job at a time) and keep the
best attempt. Scores are cached in `qa_scores` by take and ASR model and never computed twice."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.base import VoicePrompt
from engine.device import choose_device
from engine.whisper import TranscriptionError, transcribe, whisper_model
from tasks.audio.wav import read_mono
from tasks.qa.pace import PaceRange
from tasks.qa.score import QaLimits, TakeScore, score_take
from tasks.render import cache
from tasks.render.batch import BatchResult, Take, TakeLimits, render_batch
from tasks.render.records import take_from_row, take_row
from tasks.script.ingest import Script
from tasks.script.plan import EngineFacts, RenderBatch, RenderJob, cache_key
from tasks.store import db as provenance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QaPlan:
    """What a run's QA needs besides the takes: the ASR model and device, when to flag, how many re-takes."""
    asr_model: str
    asr_model_id: str  # what identifies the model in the score cache
    device: str
    limits: QaLimits
    max_retakes: int
    paces: dict[tuple[str, str], PaceRange] = field(default_factory=dict)  # (voice id, engine) -> usual pace

    def limits_for(self, voice_id: str, engine: str) -> QaLimits:
        """The limits of one voice's takes: its own pace range when one was learnt, else the fixed one."""
        pace = self.paces.get((voice_id, engine))
        return pace.limits(self.limits) if pace else self.limits


@dataclass
class QaBatch:
    """One batch after QA: the take each job key keeps, the job that made it, every attempt as a row."""
    kept: dict[str, Take] = field(default_factory=dict)  # planned job key -> kept take
    kept_jobs: dict[str, RenderJob] = field(default_factory=dict)  # planned job key -> job of the kept take
    reused: dict[str, dict[str, Any]] = field(default_factory=dict)  # re-takes found in the render cache
    attempts: list[dict[str, Any]] = field(default_factory=list)
    asr_seconds: float = 0.0  # transcription time spent in this run
    retake_seconds: float = 0.0  # render time of re-takes
    started: float = 0.0  # wall clock (time.time()) when QA of the batch began and ended
    ended: float = 0.0


def retake_jobs(jobs: list[RenderJob], script: Script, facts: dict[str, EngineFacts],
                count: int) -> dict[str, list[RenderJob]]:
    """Planned job key -> its re-take jobs with seeds +1 .. +count (new cache keys). Engines that ignore the
    seed get none: their re-take would be the same take."""
    out: dict[str, list[RenderJob]] = {}
    for job in jobs:
        engine = facts[job.engine]
        if "seed" not in engine.honours or job.key in out:
            continue
        variants = []
        for step in range(1, count + 1):
            params = job.params.model_copy(update={"seed": (job.params.seed + step) % 2**32})
            key = cache_key(job.text, script.voices[job.speaker], params, engine, script.manifest.scene,
                            job.pronunciations, job.predecessor, job.speaker_tag)
            variants.append(replace(job, params=params, key=key))
        out[job.key] = variants
    return out


def cached_scores(db: Path, keys: list[str], model_id: str) -> dict[str, dict[str, Any]]:
    if not keys or not Path(db).exists():
        return {}
    with provenance.connect(db) as con:
        cur = con.execute("SELECT * FROM qa_scores WHERE asr_model = ? AND cache_key IN (SELECT unnest(?::VARCHAR[]))",
                          [model_id, keys])
        names = [d[0] for d in cur.description]
        return {r[0]: dict(zip(names, r)) for r in cur.fetchall()}


def store_scores(db: Path, rows: list[dict[str, Any]]) -> None:
    """Add scores to the cache in one transaction."""
    provenance.replace_rows(db, "qa_scores", rows, ("cache_key", "asr_model"))


def transcribe_take(path: str, plan: QaPlan) -> tuple[str, float]:
    """What Whisper hears in a take file, and the seconds it took; silence is an empty transcript."""
    whisper_model(plan.asr_model, choose_device(plan.device))  # a model that cannot load is an error, not a score
    audio, rate = read_mono(Path(path))
    start = time.perf_counter()
    try:
        heard = transcribe(audio, rate, plan.asr_model, plan.device, where=path)
    except TranscriptionError:  # the model loaded above, so this is a take with no words in it
        return "", time.perf_counter() - start
    return heard.text, heard.seconds  # Whisper's own time, not the wait for the process's one Whisper


class Scorer:
    """Scores takes, from the cache when it has them; new scores are stored when the batch is done."""
    def __init__(self, db: Path, plan: QaPlan, keys: list[str]) -> None:
        self.db, self.plan = db, plan
        self.cache = cached_scores(db, keys, plan.asr_model_id)
        self.new: list[dict[str, Any]] = []
        self.asr_seconds = 0.0

    def score(self, take: Take, text: str, limits: QaLimits | None = None) -> tuple[TakeScore, str, bool]:
        """(score, transcript, transcribed now). A cached transcript is judged again: scoring is cheap, and
        the threshold, the voice's pace range or the normaliser may have changed since it was stored."""
        limits = limits or self.plan.limits
        row = self.cache.get(take.key)
        if row is not None:
            return score_take(text, row["transcript"], take.duration, limits), row["transcript"], False
        transcript, seconds = transcribe_take(take.path, self.plan)
        self.asr_seconds += seconds
        s = score_take(text, transcript, take.duration, limits)
        row = dict(cache_key=take.key, asr_model=self.plan.asr_model_id, transcript=transcript, wer=s.wer,
                   seconds_per_word=s.seconds_per_word, flagged=s.flagged, reasons=json.dumps(list(s.reasons)),
                   asr_seconds=seconds, created_at=datetime.now())
        self.cache[take.key] = row
        self.new.append(row)
        return s, transcript, True


def _attempt_row(run_id: str, job: RenderJob, planned: RenderJob, attempt: int, plan: QaPlan, take: Take | None,
                 score: TakeScore | None, transcript: str | None, scored: bool, error: str | None = None) -> dict:
    return dict(run_id=run_id, chapter=planned.chapter, line=planned.line, chunk=planned.chunk, text=planned.text,
                job_key=planned.key, cache_key=job.key, attempt=attempt, seed=job.params.seed,
                asr_model=plan.asr_model_id, transcript=transcript, wer=score.wer if score else None,
                seconds_per_word=score.seconds_per_word if score else None, duration=take.duration if take else None,
                flagged=score.flagged if score else None, reasons=json.dumps(list(score.reasons)) if score else None,
                kept=False, scored=scored, error=error, created_at=datetime.now())


def check_batch(result: BatchResult, jobs: dict[str, RenderJob], retakes: dict[str, list[RenderJob]], plan: QaPlan,
                run_id: str, db: Path, takes_dir: Path, prompts: dict[str, dict[str, VoicePrompt]], device: str,
                dtype: str, take_limits: TakeLimits = TakeLimits(), scene: str | None = None) -> QaBatch:
    """Score every take of `result`; re-take flagged ones with the next seeds until one passes or the
    attempts run out; keep an unflagged attempt over a flagged one, then the lowest WER, then the earliest."""

    out = QaBatch(started=time.time())
    scorer = Scorer(db, plan, [t.key for t in result.takes] + [r.key for t in result.takes
                                                                 for r in retakes.get(t.key, [])])
    for take in result.takes:
        planned = jobs[take.key]
        limits = plan.limits_for(planned.voice_id, planned.engine)
        score, transcript, scored = scorer.score(take, planned.text, limits)
        rows = [_attempt_row(run_id, planned, planned, 1, plan, take, score, transcript, scored)]
        best = ((score.flagged, score.wer), 0, take, planned)
        for attempt, job in enumerate(retakes.get(take.key, [])[:plan.max_retakes], start=2):
            if not score.flagged:
                break
            hits, adopted = cache.find_takes(db, takes_dir, [job.key])
            cache.record_takes(db, adopted)
            if job.key in hits:
                retake = take_from_row(hits[job.key])
                out.reused[job.key] = hits[job.key]
            else:
                batch = RenderBatch(take.batch if take.batch is not None else -1, job.engine, job.voice_id,
                                    job.params, (job,))
                rendered = render_batch(batch, prompts[job.engine], takes_dir, device, dtype, take_limits, scene)
                if rendered.failures:
                    rows.append(_attempt_row(run_id, job, planned, attempt, plan, None, None, None, False,
                                             rendered.failures[0].error))
                    break
                retake = rendered.takes[0]
                out.retake_seconds += retake.render_seconds
                cache.record_takes(db, [take_row(retake, job.engine, run_id, cache.file_record(Path(retake.path),
                                                                                               retake.sha256),
                                                 datetime.now())])
            score, transcript, scored = scorer.score(retake, planned.text, limits)
            rows.append(_attempt_row(run_id, job, planned, attempt, plan, retake, score, transcript, scored))
            if (score.flagged, score.wer) < best[0]:
                best = ((score.flagged, score.wer), len(rows) - 1, retake, job)
        _, index, kept, kept_job = best
        rows[index]["kept"] = True
        out.kept[planned.key], out.kept_jobs[planned.key] = kept, kept_job
        out.attempts += rows
        if len(rows) > 1:
            log.info("QA re-took %s (%s): kept attempt %d, WER %.2f", planned.source, planned.text[:40], index + 1,
                     rows[index]["wer"])
    store_scores(db, scorer.new)
    out.asr_seconds, out.ended = scorer.asr_seconds, time.time()
    return out
