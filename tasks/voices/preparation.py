"""Voice preload: every voice a run uses gets its staged 24 kHz reference and its transcript (manual, or
Whisper's, cached by the staged clip) before anything renders."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from engine import whisper as transcribe
from tasks.core.settings import Settings
from tasks.script.ingest import Script
from tasks.script.voices import Voice
from tasks.store import voice_records
from tasks.voices.reference_audio import ConversionSettings, StagedReference, check_reference, stage_reference


@dataclass(frozen=True)
class PreparedVoice:
    voice_id: str
    staged: StagedReference | None  # None for a voice without a reference clip
    transcript: str | None
    transcript_source: str  # manual, whisper or none
    whisper_model: str | None  # the model identity, when the transcript is Whisper's
    transcribed: bool  # Whisper ran for it in this call


def conversion_settings(settings: Settings) -> ConversionSettings:
    return ConversionSettings(max_seconds=settings.reference_max_seconds, over_max=settings.reference_over_max)


def check_voice(voice: Voice, staging: Path, conversion: ConversionSettings) -> None:
    """Refuse a voice whose reference clip staging would refuse, before a run starts and writing nothing."""
    if voice.reference is not None:
        check_reference(voice.reference, staging, conversion, allow_trim=_manual_transcript(voice) is None,
                        source_sha256=voice.content_hash)


def _manual_transcript(voice: Voice) -> str | None:
    return (voice.transcript or "").strip() or None


def prepare_voice(voice: Voice, staging: Path, db: Path, conversion: ConversionSettings,
                  whisper_model: str | None, device: str = "auto") -> PreparedVoice:
    """Stage the voice's reference and settle its transcript; `whisper_model` None leaves a missing one missing.
    A manual transcript always wins; Whisper runs at most once per staged clip and model."""
    manual = _manual_transcript(voice)
    if voice.reference is None:
        return PreparedVoice(voice.id, None, manual, "manual" if manual else "none", None, False)
    staged = stage_reference(voice.reference, staging, conversion, allow_trim=manual is None,
                             source_sha256=voice.content_hash)
    if manual or whisper_model is None:
        return PreparedVoice(voice.id, staged, manual, "manual" if manual else "none", None, False)

    identity = transcribe.model_id(whisper_model)
    cached = voice_records.cached_transcript(db, staged.key, identity)
    if cached is not None:
        return PreparedVoice(voice.id, staged, cached, "whisper", identity, False)
    import soundfile as sf

    audio, rate = sf.read(staged.path, dtype="float32")
    heard = transcribe.transcribe(audio, rate, whisper_model, device, where=str(voice.reference))
    voice_records.store_transcript(db, staged.key, heard.model, heard.text, heard.language, heard.seconds)
    return PreparedVoice(voice.id, staged, heard.text, "whisper", heard.model, True)


def with_prepared_voices(script: Script, prepared: dict[str, PreparedVoice]) -> Script:
    """The script whose voices carry their staged clip (as `reference`) and settled transcript."""
    voices = {}
    for speaker, voice in script.voices.items():
        ready = prepared[voice.id]
        voices[speaker] = replace(voice, reference=Path(ready.staged.path) if ready.staged else None,
                                  transcript=ready.transcript, staged_key=ready.staged.key if ready.staged else "")
    return replace(script, voices=voices)


def run_voice_rows(run_id: str, script: Script, prepared: dict[str, PreparedVoice],
                   now: datetime) -> list[dict[str, Any]]:
    """One provenance row per voice used by a run."""
    rows = []
    for voice in {v.id: v for v in script.voices.values()}.values():
        ready = prepared[voice.id]
        staged = ready.staged
        rows.append(dict(
            run_id=run_id, voice_id=voice.id, name=voice.name,
            source_path=str(voice.reference) if voice.reference else None, source_sha256=voice.content_hash,
            staged_path=staged.path if staged else None, staged_key=staged.key if staged else None,
            duration=staged.duration if staged else None, trimmed_from=staged.trimmed_from if staged else None,
            converted=bool(staged and staged.converted), transcript=ready.transcript,
            transcript_source=ready.transcript_source, whisper_model=ready.whisper_model,
            transcribed=ready.transcribed, created_at=now))
    return rows
