"""The voice library on disk: add a voice from a clip, and describe voices for `voicebatch voices`."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tasks.core.errors import VoiceError
from tasks.script.voices import VOICE_FILE, VOICE_ID, Voice, available_voice_ids, load_voice
from tasks.store import voice_records
from tasks.voices.reference_audio import (FFMPEG_FORMATS, SOUNDFILE_FORMATS, ConversionSettings, StagedReference,
                                          find_staged, stage_reference)


def add_voice(voices_dir: Path, voice_id: str, source: Path, staging: Path, conversion: ConversionSettings,
              transcript: str | None = None, name: str | None = None) -> tuple[Voice, StagedReference]:
    """Check the clip (it is staged on the way), then copy it into `voices_dir/voice_id/` with a voice.yaml.
    The folder appears complete or not at all."""
    if not VOICE_ID.match(voice_id):
        raise VoiceError(f"voice id {voice_id!r} is not valid: use letters, digits, '-' and '_' (at most 64), "
                         "starting with a letter or digit")
    folder = Path(voices_dir) / voice_id
    if folder.exists():
        raise VoiceError(f"{folder}: voice {voice_id!r} already exists; choose another id, or remove the folder")
    source = Path(source)
    if not source.is_file():
        raise VoiceError(f"{source}: no such file; give the path of a WAV, FLAC, OGG, MP3 or M4A clip")
    suffix = source.suffix.lower()
    if suffix not in SOUNDFILE_FORMATS and suffix not in FFMPEG_FORMATS:
        raise VoiceError(f"{source}: {suffix or 'no extension'} is not a supported reference format; use WAV, "
                         "FLAC, OGG, MP3 or M4A")
    transcript = (transcript or "").strip() or None
    staged = stage_reference(source, staging, conversion, allow_trim=transcript is None)
    spec: dict[str, Any] = {"name": name or voice_id, "reference": f"reference{suffix}"}
    if transcript:
        spec["transcript"] = transcript
    Path(voices_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{voice_id}.", dir=voices_dir))
    try:
        shutil.copyfile(source, tmp / spec["reference"])
        (tmp / VOICE_FILE).write_text("# Added by `voicebatch voices add`.\n"
                                      + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_voice(voices_dir, voice_id), staged


def transcript_state(voice: Voice, staged: StagedReference | None, db: Path) -> dict[str, Any]:
    """Where the voice's transcript comes from: manual, a cached Whisper transcript, or none yet."""
    if (voice.transcript or "").strip():
        return {"source": "manual", "text": voice.transcript, "model": None}
    cached = voice_records.transcripts_of(db, staged.key) if staged else []
    if cached:
        return {"source": "whisper", "text": cached[0]["transcript"], "model": cached[0]["model"]}
    return {"source": "none", "text": None, "model": None}


def describe_voice(voice: Voice, staging: Path, conversion: ConversionSettings, db: Path) -> dict[str, Any]:
    """A voice as `voicebatch voices show` prints it; reads what is staged, converts nothing."""
    staged = find_staged(voice.content_hash, staging, conversion) if voice.reference else None
    return {
        "id": voice.id, "name": voice.name, "folder": str(voice.folder),
        "reference": str(voice.reference) if voice.reference else None,
        "reference_sha256": voice.content_hash if voice.reference else None,
        "reference_bytes": voice.reference.stat().st_size if voice.reference else None,
        "staged": None if staged is None else {
            "path": staged.path, "format": staged.source_format, "source_rate": staged.source_rate,
            "source_channels": staged.source_channels, "duration": round(staged.duration, 3),
            "trimmed_from": staged.trimmed_from},
        "transcript": transcript_state(voice, staged, db),
        "engine": voice.engine, "defaults": voice.defaults, "engines": voice.engines,
    }


def describe_library(voices_dir: Path, staging: Path, conversion: ConversionSettings, db: Path) -> list[dict[str, Any]]:
    """Every voice in the folder; a voice that does not load is listed with its error."""
    found = []
    for voice_id in available_voice_ids(voices_dir):
        try:
            found.append(describe_voice(load_voice(voices_dir, voice_id), staging, conversion, db))
        except VoiceError as e:
            found.append({"id": voice_id, "error": str(e)})
    return found
