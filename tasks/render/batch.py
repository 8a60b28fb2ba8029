"""Rendering a batch into content-addressed takes, in the device's render lane, surviving engine faults.

A batch that raises is split in half and each half retried, down to single jobs; a take that comes back
unusable (not finite, empty, or absurdly long for its words) is retried alone. A job that still fails is
reported as a RenderFailure while every other job of the batch completes. An operator the MPS backend
lacks sends that job to the CPU copy of the engine, and the take records the device that made it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from engine.base import EarlierTake, RenderRequest, VoicePrompt
from engine.device import is_out_of_memory
from engine.pool import checkout, warm_engine
from tasks.audio.assemble import measure
from tasks.audio.wav import write_wav_atomic
from tasks.core.audio_format import SAMPLE_RATE
from tasks.core.errors import EngineError
from tasks.core.processes import worker_name
from tasks.core.stopping import stop_requested
from tasks.render.cache import take_path
from tasks.script.plan import RenderBatch, RenderJob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Take:
    """A rendered chunk on disk, with its measurements."""
    key: str
    path: str
    sha256: str
    duration: float
    render_seconds: float
    peak_dbfs: float
    rms_dbfs: float
    batch: int | None  # None for a take reused from the cache
    device: str | None = None  # set when it was made on another device than the engine's (a fallback)
    render_started_at: datetime | None = None  # the engine call that made it, in the render lane
    render_ended_at: datetime | None = None
    decode_steps: int | None = None  # frames the engine generated for it, where the engine reports them
    decode_path: str | None = None  # how the engine decoded it (Higgs: eager, static, static+compiled), where it says
    worker: str | None = None  # the process that rendered it (tasks/core/processes.py); None for a cached take


@dataclass(frozen=True)
class RenderFailure:
    key: str
    error: str


@dataclass(frozen=True)
class TakeLimits:
    """How long a take may be for its words before it counts as a run-on."""
    seconds_per_word: float = 3.0
    floor_seconds: float = 15.0

    def ceiling(self, text: str) -> float:
        return max(self.floor_seconds, self.seconds_per_word * len(text.split()))


@dataclass
class BatchResult:
    takes: list[Take] = field(default_factory=list)
    failures: list[RenderFailure] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)  # perf_counter start/end of each engine call
    worker: str = ""  # the process that rendered the batch (tasks/core/processes.py)
    load_seconds: float = 0.0  # loading the engine for this batch: 0 where the process had it warm


def is_mps_op_failure(err: BaseException) -> bool:
    return isinstance(err, (NotImplementedError, RuntimeError)) and "mps" in str(err).lower()


def take_problem(audio: np.ndarray, text: str, limits: TakeLimits, rate: int) -> str | None:
    if audio.size == 0:
        return "the engine returned no audio"
    if not np.all(np.isfinite(audio)):
        return "the engine returned audio with NaN or infinite samples"
    seconds = audio.size / rate
    if seconds > limits.ceiling(text):
        return (f"the take is {seconds:.0f} s long for {len(text.split())} words (limit {limits.ceiling(text):.0f} s, "
                "VOICEBATCH_TAKE_SECONDS_PER_WORD): a run-on")
    return None


class _BatchRenderer:
    def __init__(self, batch: RenderBatch, prompts: dict[str, VoicePrompt], takes_dir: Path, device: str,
                 dtype: str, limits: TakeLimits, scene: str | None) -> None:
        self.batch, self.prompts, self.takes_dir, self.scene = batch, prompts, takes_dir, scene
        self.device, self.dtype, self.limits = device, dtype, limits
        warm = warm_engine(batch.engine, device, dtype)
        self.batch_device = warm.engine.device
        self.result = BatchResult(worker=worker_name(), load_seconds=warm.load_seconds)

    def _call(self, device: str, jobs: list[RenderJob]) -> tuple[list[np.ndarray], float, str, tuple[datetime, datetime],
                                                                  list[dict]]:
        requests = [RenderRequest(j.text, self.prompts[j.voice_id], j.params, j.key, self.scene,
                                  pronunciations=j.pronunciations, context=self._context(j), speaker_tag=j.speaker_tag)
                    for j in jobs]
        with checkout(self.batch.engine, device, self.dtype) as engine:
            started_at, start = datetime.now(), time.perf_counter()
            try:
                audios = engine.render(requests)
            finally:
                engine.clear_caches()
            end = time.perf_counter()
            ended_at = datetime.now()
            seconds = end - start
            self.result.spans.append((start, end))
            made_on = engine.device
        if len(audios) != len(requests):
            raise EngineError(f"engine {self.batch.engine!r} returned {len(audios)} takes for {len(requests)} requests")
        measured = [r.measured for r in requests]
        return [np.asarray(a, dtype=np.float32) for a in audios], seconds, made_on, (started_at, ended_at), measured

    def render(self, jobs: list[RenderJob], device: str, alone_retry: bool = True) -> None:
        if stop_requested():
            return  # the process is stopping: these jobs are neither rendered nor failed
        try:
            audios, seconds, made_on, interval, measured = self._call(device, jobs)
        except Exception as e:  # noqa: BLE001 - any engine fault is contained to the jobs that raised it
            if stop_requested():
                return  # the engine gave up the batch because the process is stopping
            if is_mps_op_failure(e) and device != "cpu" and self._device_of(device) == "mps":
                log.warning("MPS cannot run an operator (%s); rendering these %d jobs on the CPU", e, len(jobs))
                return self.render(jobs, "cpu", alone_retry)
            if len(jobs) > 1:
                half = len(jobs) // 2
                reason = "out of memory" if is_out_of_memory(e) else f"{type(e).__name__}: {e}"
                log.warning("batch of %d failed (%s); retrying as %d + %d", len(jobs), reason, half, len(jobs) - half)
                self.render(jobs[:half], device)
                self.render(jobs[half:], device)
            elif alone_retry:
                self.render(jobs, device, alone_retry=False)
            else:
                self.result.failures.append(RenderFailure(jobs[0].key, f"{type(e).__name__}: {e}"))
            return
        total = sum(a.size for a in audios) or 1
        for job, audio, facts in zip(jobs, audios, measured):
            problem = take_problem(audio, job.text, self.limits, SAMPLE_RATE)
            if problem and len(jobs) > 1:
                self.render([job], device)
            elif problem:
                self.result.failures.append(RenderFailure(job.key, problem))
            else:
                self._keep(job, audio, seconds * audio.size / total, made_on, interval, facts)

    def _context(self, job: RenderJob) -> tuple[EarlierTake, ...]:
        """A chained job's window of earlier takes as prompts (each keyed by its take's cache key), with the voices
        that spoke them; rendered in an earlier batch of this run or an earlier run, so they are on disk."""
        earlier = []
        for turn in job.context:
            path = take_path(self.takes_dir, turn.key)
            if not path.is_file():
                raise EngineError(f"a take before this chunk in its context chain ({turn.key[:12]}) was not rendered; "
                                  "it failed or was removed, so this chunk cannot be prompted with it")
            earlier.append(EarlierTake(VoicePrompt(turn.voice_id, f"take:{turn.key}", path, turn.text),
                                       self.prompts[turn.voice_id], turn.tag))
        return tuple(earlier)

    def _device_of(self, device: str) -> str:
        return warm_engine(self.batch.engine, device, self.dtype).engine.device

    def _keep(self, job: RenderJob, audio: np.ndarray, seconds: float, made_on: str,
              interval: tuple[datetime, datetime], measured: dict) -> None:
        path = take_path(self.takes_dir, job.key)
        digest = write_wav_atomic(path, audio, subtype="PCM_24")  # float WAVs carry a timestamped PEAK chunk
        m = measure(audio)
        fallback = made_on if made_on != self.batch_device else None
        self.result.takes.append(Take(job.key, str(path), digest, m["duration"], seconds, m["peak_dbfs"],
                                      m["rms_dbfs"], self.batch.index, fallback, *interval,
                                      measured.get("decode_steps"), measured.get("decode_path"), self.result.worker))


def render_batch(batch: RenderBatch, prompts: dict[str, VoicePrompt], takes_dir: Path, device: str, dtype: str,
                 limits: TakeLimits = TakeLimits(), scene: str | None = None) -> BatchResult:
    """Render one batch; writes and measures takes outside the render lane; faults become RenderFailures."""
    renderer = _BatchRenderer(batch, prompts, takes_dir, device, dtype, limits, scene)
    renderer.render(list(batch.jobs), device)
    return renderer.result
