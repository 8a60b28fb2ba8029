"""Ingest: a manifest file in, a checked Script out (speakers resolved to voices, script files read)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.errors import ManifestError, VoiceError
from tasks.script.manifest import Chapter, Manifest, parse_manifest, spoken_text_problem
from tasks.script.voices import VOICE_ID, Voice, available_voice_ids, load_voice

SCRIPT_LINE = re.compile(r"^\[(?P<speaker>[^\[\]]+)\]\s*(?P<text>.*)$")


@dataclass(frozen=True)
class ScriptLine:
    speaker: str
    text: str
    overrides: dict[str, Any]
    pause_after: float | None
    source: str  # where it came from, for messages: "chapters[1].lines[3]" or "dialogue.txt:4"


@dataclass(frozen=True)
class ScriptChapter:
    index: int
    title: str
    prose: bool  # True: one longform text, chunked at sentence boundaries when planned
    lines: tuple[ScriptLine, ...]
    context: str = "none"  # "chain": engines that honour it prompt each chunk with the chapter's takes before it


@dataclass(frozen=True)
class Script:
    path: Path
    sha256: str
    manifest: Manifest
    chapters: tuple[ScriptChapter, ...]
    voices: dict[str, Voice]  # speaker name -> voice asset


def _read_script_file(manifest_path: Path, where: str, name: str) -> list[ScriptLine]:
    root = manifest_path.parent.resolve()
    target = (manifest_path.parent / name).resolve()
    if not target.is_relative_to(root):
        raise ManifestError(manifest_path, [f"{where}.script: {name!r} points outside the manifest's folder {root}; "
                                            "keep script files beside the manifest"])
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(manifest_path, [f"{where}.script: file {name!r} not found next to the manifest"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(manifest_path, [f"{where}.script: cannot read {name!r} as UTF-8 text ({e})"]) from None
    lines, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = SCRIPT_LINE.match(stripped)
        if not m:
            problems.append(f"{name}:{number}: expected '[Speaker] text', got {stripped[:60]!r}")
        elif spoken_text_problem(m["text"]):
            problems.append(f"{name}:{number}: {spoken_text_problem(m['text'])}")
        else:
            lines.append(ScriptLine(m["speaker"].strip(), m["text"].strip(), {}, None, f"{name}:{number}"))
    if problems:
        raise ManifestError(manifest_path, problems)
    if not lines:
        raise ManifestError(manifest_path, [f"{where}.script: {name!r} has no '[Speaker] text' lines"])
    return lines


def _chapter_lines(path: Path, index: int, chapter: Chapter, narrator: str) -> tuple[bool, list[ScriptLine]]:
    where = f"chapters[{index}]"
    if chapter.text is not None:
        return True, [ScriptLine(chapter.speaker or narrator, chapter.text, {}, None, f"{where}.text")]
    if chapter.lines is not None:
        return False, [ScriptLine(line.speaker, line.text, line.overrides(), line.pause_after, f"{where}.lines[{i}]")
                       for i, line in enumerate(chapter.lines)]
    return False, _read_script_file(path, where, chapter.script)


def ingest(path: Path, voices_dir: Path) -> Script:
    """Validate a manifest and everything it refers to; ManifestError lists every problem found."""
    path = Path(path)
    manifest = parse_manifest(path)
    narrator = next(iter(manifest.voices))
    problems: list[str] = []
    voices: dict[str, Voice] = {}
    for speaker, spec in manifest.voices.items():
        try:
            voices[speaker] = load_voice(voices_dir, spec.voice)
        except VoiceError as e:
            known = ", ".join(available_voice_ids(voices_dir)) or "none"
            if not VOICE_ID.match(spec.voice) or (voices_dir / spec.voice / "voice.yaml").is_file():
                problems.append(f"voices.{speaker}.voice: {e}")
            else:
                problems.append(f"voices.{speaker}.voice: unknown voice {spec.voice!r}; voices in {voices_dir}: {known}")
    chapters = []
    for index, chapter in enumerate(manifest.chapters):
        if chapter.speaker is not None and chapter.speaker not in manifest.voices:
            problems.append(f"chapters[{index}].speaker: unknown speaker {chapter.speaker!r}; "
                            f"speakers in voices: {', '.join(manifest.voices)}")
            continue
        prose, lines = _chapter_lines(path, index, chapter, narrator)
        for line in lines:
            if line.speaker not in manifest.voices:
                field = line.source if ":" in line.source else f"{line.source}.speaker"
                problems.append(f"{field}: unknown speaker {line.speaker!r}; "
                                f"speakers in voices: {', '.join(manifest.voices)} (add it under voices)")
        chapters.append(ScriptChapter(index, chapter.title, prose, tuple(lines),
                                      chapter.context or manifest.defaults.context))
    if problems:
        raise ManifestError(path, problems)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Script(path=path, sha256=digest, manifest=manifest, chapters=tuple(chapters), voices=voices)
