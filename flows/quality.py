"""QA inside a render run: one check task per render batch, chained on that batch's future so it runs beside
the render lane (re-takes go through the lane like any render), plus checks of the takes reused from the
cache (their scores are cached too). The flow then maps every job to the take QA kept."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prefect.futures import PrefectFuture

from engine.device import choose_device
from engine.whisper import model_id, whisper_model
from flows import steps
from tasks.core.settings import Settings
from tasks.qa.check import QaBatch, QaPlan, retake_jobs
from tasks.qa.pace import learn_paces
from tasks.qa.score import QaLimits
from tasks.render.batch import BatchResult, Take, TakeLimits
from tasks.render.engines import EngineSetup
from tasks.script.ingest import Script
from tasks.script.manifest import Qa
from tasks.script.plan import RenderJob

CACHED_PER_TASK = 16  # cached takes scored per task: most scores come from the cache and cost nothing


@dataclass
class QaOutcome:
    kept: dict[str, Take] = field(default_factory=dict)
    kept_jobs: dict[str, RenderJob] = field(default_factory=dict)
    reused: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    asr_seconds: float = 0.0
    retake_seconds: float = 0.0
    intervals: list[tuple[float, float]] = field(default_factory=list)  # wall-clock span of each check task

    def final_jobs(self, jobs: list[RenderJob]) -> list[RenderJob]:
        """The planned jobs with each re-taken one replaced by the job of its kept take."""
        return [self.kept_jobs.get(j.key, j) for j in jobs]


def qa_plan(config: Qa, requested: bool | None, settings: Settings) -> QaPlan | None:
    """The run's QA plan, or None when QA is off (--qa turns it on; the manifest's `qa.enabled` otherwise).
    The ASR model is loaded here, so a missing model stops the run before anything renders."""
    if not (config.enabled if requested is None else requested):
        return None

    whisper_model(settings.whisper_model, choose_device(settings.device))
    return QaPlan(settings.whisper_model, model_id(settings.whisper_model), settings.device,
                  QaLimits(wer_threshold=config.wer_threshold), config.max_attempts)


def submit_checks(plan: QaPlan, script: Script, jobs: list[RenderJob], setup: EngineSetup,
                  rendered: list[PrefectFuture], cached: list[Take], run_id: str, db: Path, takes_dir: Path,
                  settings: Settings, limits: TakeLimits) -> list[PrefectFuture]:
    job_of: dict[str, RenderJob] = {}
    for job in jobs:
        job_of.setdefault(job.key, job)
    retakes = retake_jobs(list(job_of.values()), script, setup.facts, plan.max_retakes)
    voices = {(j.voice_id, j.engine): (setup.prompts[j.engine][j.voice_id].reference,
                                       setup.prompts[j.engine][j.voice_id].transcript) for j in jobs}
    plan = replace(plan, paces=learn_paces(db, voices, plan.limits, before_run=run_id))
    common = dict(jobs=job_of, retakes=retakes, plan=plan, run_id=run_id, db=db, takes_dir=takes_dir,
                  prompts=setup.prompts, device=settings.device, dtype=settings.dtype, take_limits=limits,
                  scene=script.manifest.scene)
    checks = [steps.check_takes.submit(result=future, **common) for future in rendered]
    checks += [steps.check_takes.submit(result=BatchResult(takes=cached[i:i + CACHED_PER_TASK]), **common)
               for i in range(0, len(cached), CACHED_PER_TASK)]
    return checks


def gather(checks: list[PrefectFuture]) -> QaOutcome:
    """Wait for every check task and collect what they kept and every attempt."""
    out = QaOutcome()
    for future in checks:
        batch: QaBatch = future.result()
        out.kept.update(batch.kept)
        out.kept_jobs.update(batch.kept_jobs)
        out.reused.update(batch.reused)
        out.attempts += batch.attempts
        out.asr_seconds += batch.asr_seconds
        out.retake_seconds += batch.retake_seconds
        out.intervals.append((batch.started, batch.ended))
    out.attempts.sort(key=lambda r: (r["chapter"], r["line"], r["chunk"], r["attempt"]))
    return out
