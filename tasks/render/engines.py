"""Engines for a script: their effective options per voice, and loading them warm."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError

from engine.base import EngineInfo, VoicePrompt
from engine.pool import get_engine, load_lanes
from tasks.core.errors import VoiceError
from tasks.script.engine_choice import speaker_engines
from tasks.script.ingest import Script
from tasks.script.manifest import describe_validation_error
from tasks.script.plan import EngineFacts
from tasks.script.voices import Voice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSetup:
    speaker_engine: dict[str, str]  # speaker -> engine name
    facts: dict[str, EngineFacts]  # engine name -> facts
    infos: dict[str, EngineInfo]
    prompts: dict[str, dict[str, VoicePrompt]]  # engine name -> voice id -> prompt


def voice_prompt(voice: Voice, engine_name: str) -> VoicePrompt:
    options = voice.engines.get(engine_name, {})
    return VoicePrompt(voice.id, voice.content_hash, voice.reference, voice.transcript,
                       tuple(sorted(options.items())))


def prepare_engines(script: Script, requested: str | None, default: str, device: str, dtype: str,
                    speaker_engine: dict[str, str] | None = None) -> EngineSetup:
    """Pick each speaker's engine (unless given) and resolve every voice's effective options (no model is
    loaded here)."""
    speaker_engine = speaker_engine or speaker_engines(script, requested, default)
    facts, infos, prompts = {}, {}, {}
    for name in dict.fromkeys(speaker_engine.values()):
        engine = get_engine(name, device, dtype)
        info = engine.info()
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
                                  engine.uses_reference, engine.batch_size,
                                  reads_phonemes=type(engine).phoneme_alphabet() is not None,
                                  seed_per_row=engine.seed_per_row)
        infos[name] = info
    return EngineSetup(speaker_engine, facts, infos, prompts)


def load_engines(names: list[str], device: str, dtype: str) -> float:
    """Load the engines that have work to do; seconds spent (0 when they were already warm)."""
    return sum(load_lanes(name, device, dtype) for name in dict.fromkeys(names))
