"""Which engine speaks each voice: --engine, then the manifest's engine, then the voice's preference, then the
default (the one place this precedence is written)."""
from __future__ import annotations

import logging

from engine.registry import engine_class
from tasks.core.errors import EngineError
from tasks.script.ingest import Script
from tasks.script.voices import Voice

log = logging.getLogger(__name__)
_fallbacks_told: set[tuple[str, str, str]] = set()  # (script sha256, speaker, engine): the CLI and the flow both ask


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
            told = (script.sha256, speaker, voice.engine)
            if told not in _fallbacks_told:
                _fallbacks_told.add(told)
                log.warning("voice %r (speaker %s) prefers engine %r, which cannot be used here (%s); rendering "
                            "it with %r instead", voice.id, speaker, voice.engine, e, default)
    return default


def speaker_engines(script: Script, requested: str | None, default: str) -> dict[str, str]:
    """Each speaker's engine name."""
    return {s: _engine_for(s, v, script, requested, default) for s, v in script.voices.items()}
