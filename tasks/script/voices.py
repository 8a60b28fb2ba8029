"""Voice assets: `voices/<id>/voice.yaml` with a reference clip, its transcript and per-engine options."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.core.errors import VoiceError
from tasks.core.files import sha256_file
from tasks.script.manifest import ParamOverrides, describe_validation_error

VOICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
VOICE_FILE = "voice.yaml"


class VoiceFile(BaseModel):
    """The schema of voice.yaml."""
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    reference: str | None = Field(None, description="Reference clip, relative to the voice folder.")
    transcript: str | None = Field(None, description="What the reference clip says, word for word.")
    engine: str | None = Field(None, description="Engine this voice prefers when the run names none.")
    defaults: ParamOverrides = Field(default_factory=ParamOverrides)
    engines: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per-engine options.")


@dataclass(frozen=True)
class Voice:
    id: str
    name: str
    folder: Path
    reference: Path | None
    transcript: str | None
    engine: str | None
    defaults: dict[str, Any]
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)
    content_hash: str = ""  # sha256 of the reference file as the user gave it
    staged_key: str = ""  # set once prepared: the staged clip's key (source hash + conversion settings)


def available_voice_ids(voices_dir: Path) -> list[str]:
    if not voices_dir.is_dir():
        return []
    return sorted(p.name for p in voices_dir.iterdir() if (p / VOICE_FILE).is_file())


def load_voice(voices_dir: Path, voice_id: str) -> Voice:
    """Read and check one voice asset; VoiceError names the file, the field and the fix."""
    if not VOICE_ID.match(voice_id):
        raise VoiceError(f"voice id {voice_id!r} is not valid: use letters, digits, '-' and '_' (at most 64)")
    folder = voices_dir / voice_id
    path = folder / VOICE_FILE
    if not path.is_file():
        known = ", ".join(available_voice_ids(voices_dir)) or "none"
        raise VoiceError(f"{path}: no such voice asset; voices in {voices_dir}: {known}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise VoiceError(f"{path}: cannot be read as YAML ({e})") from None
    try:
        spec = VoiceFile.model_validate(data if data is not None else {})
    except ValidationError as e:
        raise VoiceError(f"{path}: " + "; ".join(describe_validation_error(e))) from None
    reference = None
    if spec.reference:
        root = folder.resolve()
        reference = (folder / spec.reference).resolve()
        if not reference.is_relative_to(root):
            raise VoiceError(f"{path}: reference: {spec.reference!r} points outside the voice folder; "
                             "copy the clip into the folder and name it relative to it")
        if not reference.is_file():
            raise VoiceError(f"{path}: reference: file {spec.reference!r} does not exist in {folder}")
    content_hash = sha256_file(reference) if reference else hashlib.sha256(b"no reference").hexdigest()
    return Voice(id=voice_id, name=spec.name, folder=folder, reference=reference, transcript=spec.transcript,
                 engine=spec.engine, defaults=spec.defaults.overrides(), engines=spec.engines,
                 content_hash=content_hash)
