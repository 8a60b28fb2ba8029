"""Adopting a sweep's grid point: its settings become one speaker's overrides under `voices:` in the manifest,
written with ruamel.yaml's round trip so comments, order, quoting and layout stay as they were."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from tasks.core.errors import UserInputError
from tasks.core.files import atomic_write
from tasks.script.ingest import Script
from tasks.script.manifest import parse_manifest
from tasks.script.plan import RenderJob
from tasks.sweep.plan import GridPoint, SweepError

# Indentation layouts tried in turn: the one that writes the unchanged file back byte for byte is used.
_LAYOUTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0), (2, 4, 0), (4, 2, 0))


class AdoptError(UserInputError):
    """The manifest cannot take the adopted settings; the message says why and how to apply them by hand."""


def find_point(points: list[GridPoint], name: str) -> GridPoint:
    for point in points:
        if point.name == name:
            return point
    raise SweepError(f"--adopt: no grid point {name!r} in this sweep; its points are: "
                     f"{', '.join(p.name for p in points)}")


def adopting_speaker(selected: list[RenderJob], requested: str | None) -> str:
    """The one speaker whose lines were swept (or --speaker): the voice the settings are adopted for."""
    speakers = list(dict.fromkeys(j.speaker for j in selected))
    if requested:
        return requested
    if len(speakers) > 1:
        raise SweepError(f"--adopt: the swept lines are spoken by {', '.join(speakers)}; say whose settings these "
                         "become with --speaker NAME")
    return speakers[0]


def overrides_text(script: Script, speaker: str, point: GridPoint) -> str:
    """The speaker's entry under `voices:` with the point's settings, as YAML to paste into the manifest."""
    entry = {**script.manifest.voices[speaker].model_dump(exclude_none=True), **point.params}
    inner = ", ".join(f"{k}: {v}" for k, v in entry.items())
    return f"voices:\n  {speaker}: {{{inner}}}\n"


def _yaml(layout: tuple[int, int, int]):
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # never re-wrap a long line
    mapping, sequence, offset = layout
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _dump(yaml, data) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _layout_of(text: str, path: Path):
    for layout in _LAYOUTS:
        yaml = _yaml(layout)
        if _dump(yaml, yaml.load(text)) == text:
            return yaml
    raise AdoptError(f"{path}: writing it back would change its layout (an indentation ruamel.yaml cannot "
                     "reproduce), so --write leaves it alone; paste the printed overrides under voices: by hand")


def apply_overrides(text: str, path: Path, speaker: str, settings: dict[str, Any]) -> str:
    """The manifest text with `settings` set on `voices.<speaker>`; every other byte as it was."""
    from ruamel.yaml.comments import CommentedMap

    yaml = _layout_of(text, path)
    data = yaml.load(text)
    voices = data.get("voices") if isinstance(data, dict) else None
    if not isinstance(voices, dict) or speaker not in voices:
        raise AdoptError(f"{path}: voices.{speaker}: not found; the speaker must be listed under voices:")
    entry = voices[speaker]
    if isinstance(entry, str):  # `Ava: ava` becomes `Ava: {voice: ava, ...}` on the same line
        mapping = CommentedMap([("voice", entry), *settings.items()])
        mapping.fa.set_flow_style()
        voices[speaker] = mapping
    elif isinstance(entry, dict):
        # New keys go right after `voice:`: a comment below the entry hangs on its last key, and a key
        # appended after it would land under that comment.
        position = list(entry).index("voice") + 1 if "voice" in entry else 0
        for key, value in settings.items():
            if key in entry:
                entry[key] = value
            else:
                entry.insert(position, key, value)
                position += 1
    else:
        raise AdoptError(f"{path}: voices.{speaker}: expected a voice id or a mapping, got {type(entry).__name__}")
    return _dump(yaml, data)


def write_overrides(path: Path, speaker: str, settings: dict[str, Any]) -> str:
    """Apply the settings to the manifest file atomically (checked as a manifest before it replaces the file);
    returns the new text."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        raise AdoptError(f"{path}: --write edits YAML manifests only; add the printed settings to voices.{speaker} "
                         "by hand")
    text = path.read_text(encoding="utf-8")
    updated = apply_overrides(text, path, speaker, settings)
    # A file that no longer validates never replaces the original, which keeps its permissions.
    with atomic_write(path, suffix=path.suffix, mode=path.stat().st_mode & 0o777) as candidate:
        candidate.write_text(updated, encoding="utf-8")
        parse_manifest(candidate)
    return updated
