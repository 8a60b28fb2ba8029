"""Run overrides: decoding settings and loudness given with a run (a deployment parameter, or `voicebatch
render --set`) and applied on top of the manifest, validated with the manifest's own models.

    {"decoding": {"seed": 7},                      # every line of every speaker
     "voices": {"Ava": {"temperature": 0.5}},      # one speaker (or every speaker of a voice id)
     "loudness": {"preset": "podcast"}}            # merged into the manifest's loudness block

They beat everything in the manifest (a voice's entry beats `decoding`), so they enter each line's
parameters and with them the cache keys: a setting the engine honours re-renders, an ignored one does not.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.core.errors import UserInputError
from tasks.script.ingest import Script
from tasks.script.manifest import Loudness, ParamOverrides, describe_validation_error


class OverridesError(UserInputError):
    """Run overrides that cannot be applied: the message names the field and what is allowed."""
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("overrides refused:\n" + "\n".join(f"  - {p}" for p in problems))


class RunOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decoding: ParamOverrides = Field(default_factory=ParamOverrides, description="For every speaker.")
    voices: dict[str, ParamOverrides] = Field(default_factory=dict,
                                              description="A speaker name, or a voice id for all its speakers.")
    loudness: dict[str, Any] = Field(default_factory=dict, description="Fields of the manifest's loudness block.")

    def as_record(self) -> dict[str, Any]:
        """What was given, for provenance: unset fields left out."""
        return self.model_dump(exclude_defaults=True)


def _problems(err: ValidationError, prefix: str, root: type[BaseModel]) -> list[str]:
    return [f"{prefix}{'' if p.startswith('(top level)') else '.'}{p.removeprefix('(top level)')}"
            for p in describe_validation_error(err, root)]


def parse_overrides(data: Mapping[str, Any] | None) -> RunOverrides:
    """Validate run overrides (None or {} is none); OverridesError names every bad field."""
    if data is None:
        return RunOverrides()
    if not isinstance(data, Mapping):
        raise OverridesError([f"overrides: expected a mapping with decoding, voices and/or loudness "
                              f"(got {type(data).__name__})"])
    try:
        overrides = RunOverrides.model_validate(data)
    except ValidationError as e:
        raise OverridesError(_problems(e, "overrides", RunOverrides)) from None
    bad = [k for k in overrides.loudness if k not in Loudness.model_fields]
    if bad:
        raise OverridesError([f"overrides.loudness.{k}: unknown key; allowed here: {', '.join(Loudness.model_fields)}"
                              for k in bad])
    return overrides


def _merged_loudness(script: Script, changes: dict[str, Any]) -> Loudness:
    given = script.manifest.loudness.model_dump(exclude_unset=True)
    try:
        return Loudness.model_validate({**given, **changes})
    except ValidationError as e:
        raise OverridesError(_problems(e, "overrides.loudness", Loudness)) from None


def apply_overrides(script: Script, overrides: RunOverrides) -> Script:
    """The script with the overrides in every line's parameters and in its loudness block."""
    if overrides == RunOverrides():
        return script
    voice_ids = {speaker: spec.voice for speaker, spec in script.manifest.voices.items()}
    unknown = [k for k in overrides.voices if k not in voice_ids and k not in voice_ids.values()]
    if unknown:
        raise OverridesError([f"overrides.voices.{k}: no speaker or voice {k!r} in {script.path}; speakers: "
                              f"{', '.join(voice_ids)}; voices: {', '.join(dict.fromkeys(voice_ids.values()))}"
                              for k in unknown])
    per_speaker = {}
    for speaker, voice_id in voice_ids.items():
        merged = overrides.decoding.overrides()
        merged.update(overrides.voices[voice_id].overrides() if voice_id in overrides.voices else {})
        merged.update(overrides.voices[speaker].overrides() if speaker in overrides.voices else {})
        per_speaker[speaker] = merged
    chapters = tuple(dataclasses.replace(chapter, lines=tuple(
        dataclasses.replace(line, overrides={**line.overrides, **per_speaker[line.speaker]}) for line in chapter.lines))
        for chapter in script.chapters)
    manifest = script.manifest
    if overrides.loudness:
        manifest = manifest.model_copy(update={"loudness": _merged_loudness(script, overrides.loudness)})
    return dataclasses.replace(script, chapters=chapters, manifest=manifest)


def overrides_from_assignments(assignments: list[str]) -> dict[str, Any]:
    """`--set decoding.seed=7 --set voices.Ava.temperature=0.5` as a nested mapping (values read as YAML
    scalars, so numbers are numbers)."""
    data: dict[str, Any] = {}
    for assignment in assignments:
        path, sep, raw = assignment.partition("=")
        keys = path.strip().split(".")
        if not sep or not all(keys):
            raise OverridesError([f"--set {assignment!r}: write KEY=VALUE, e.g. decoding.seed=7, "
                                  "voices.Ava.temperature=0.5 or loudness.preset=podcast"])
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise OverridesError([f"--set {assignment!r}: {key} is already set to a value"])
        node[keys[-1]] = value
    return data
