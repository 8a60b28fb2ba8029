"""Rendering: choose and warm the engines a script needs, then render batches into content-addressed takes."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from engine.base import EngineInfo, RenderRequest, VoicePrompt
from engine.errors import EngineError
from engine.pool import get_engine, render_lane
from engine.registry import engine_class
from tasks.assemble import measure
from tasks.audio_io import write_wav_atomic
from tasks.errors import VoiceError
from tasks.ingest import Script
from tasks.manifest import describe_validation_error
from tasks.plan import EngineFacts, RenderBatch
from tasks.voices import Voice

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
    batch: int


@dataclass(frozen=True)
class EngineSetup:
    speaker_engine: dict[str, str]  # speaker -> engine name
    facts: dict[str, EngineFacts]  # engine name -> facts
    infos: dict[str, EngineInfo]
    prompts: dict[str, dict[str, VoicePrompt]]  # engine name -> voice id -> prompt
    load_seconds: float


def voice_prompt(voice: Voice, engine_name: str) -> VoicePrompt:
    options = voice.engines.get(engine_name, {})
    return VoicePrompt(voice.id, voice.content_hash, voice.reference, voice.transcript,
                       tuple(sorted(options.items())))


def _engine_for(speaker: str, voice: Voice, script: Script, requested: str | None, default: str) -> str:
    """--engine, then the manifest's engine, then the voice's preference, then the default. A voice's own
    preference for an engine that is not installed falls back to the default with a warning."""
    name = requested or script.manifest.engine
    if name:
        engine_class(name)  # unknown or missing: an EngineError the user must act on
        return name
    if voice.engine and voice.engine != default:
        try:
            engine_class(voice.engine)
            return voice.engine
        except EngineError as e:
            log.warning("voice %r (speaker %s) prefers engine %r, which cannot be used here (%s); rendering it "
                        "with %r instead", voice.id, speaker, voice.engine, e, default)
    return default


def prepare_engines(script: Script, requested: str | None, default: str, device: str, dtype: str) -> EngineSetup:
    """Pick each speaker's engine, load those engines warm, and resolve every voice's effective options."""
    speaker_engine = {s: _engine_for(s, v, script, requested, default) for s, v in script.voices.items()}
    facts, infos, prompts, load = {}, {}, {}, 0.0
    for name in dict.fromkeys(speaker_engine.values()):
        warm = get_engine(name, device, dtype)
        load += warm.load_seconds
        engine, info = warm.engine, warm.engine.info()
        options, prompts[name] = {}, {}
        for speaker, voice in script.voices.items():
            if speaker_engine[speaker] != name:
                continue
            prompt = voice_prompt(voice, name)
            try:
                options[voice.id] = engine.effective_options(prompt)
            except ValidationError as e:
                raise VoiceError(f"{voice.folder / 'voice.yaml'}: engines.{name}: "
                                 + "; ".join(describe_validation_error(e))) from None
            prompts[name][voice.id] = prompt
        facts[name] = EngineFacts(name, info.model, info.revision, info.code_version, engine.honours, options,
                                  engine.batch_size)
        infos[name] = info
    return EngineSetup(speaker_engine, facts, infos, prompts, load)


def take_path(takes_dir: Path, key: str) -> Path:
    return takes_dir / key[:2] / f"{key}.wav"


def render_batch(batch: RenderBatch, prompts: dict[str, VoicePrompt], takes_dir: Path,
                 device: str, dtype: str, scene: str | None = None) -> list[Take]:
    """Render one batch in the device's render lane, then write and measure its takes outside the lane."""
    engine = get_engine(batch.engine, device, dtype).engine
    requests = [RenderRequest(job.text, prompts[job.voice_id], job.params, job.key, scene) for job in batch.jobs]
    with render_lane(engine.device):
        start = time.perf_counter()
        try:
            audios = engine.render(requests)
        finally:
            engine.clear_caches()
        seconds = time.perf_counter() - start
    if len(audios) != len(requests):
        raise EngineError(f"engine {batch.engine!r} returned {len(audios)} takes for {len(requests)} requests")
    total = sum(len(a) for a in audios) or 1
    takes = []
    for job, audio in zip(batch.jobs, audios):
        if audio.size == 0 or not np.all(np.isfinite(audio)):
            raise EngineError(f"engine {batch.engine!r} produced no usable audio for {job.source} "
                              f"(chapter {job.chapter + 1}, line {job.line + 1}): {job.text[:60]!r}")
        path = take_path(takes_dir, job.key)
        digest = write_wav_atomic(path, audio, subtype="FLOAT")
        m = measure(audio)
        takes.append(Take(job.key, str(path), digest, m["duration"], seconds * len(audio) / total,
                          m["peak_dbfs"], m["rms_dbfs"], batch.index))
    return takes
