"""The manifest schema (pydantic) and the reader that turns a YAML or JSON file into a validated Manifest.

Every refusal is a ManifestError naming the file, the field path (`chapters[2].lines[5].speaker`, counted
from 0), the bad value and what is allowed.
"""
from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator,
                      model_validator)

from engine.base import DecodingParams
from tasks.audio.loudness import LoudnessTarget, resolve_target
from tasks.core.errors import ManifestError

MAX_MANIFEST_BYTES = 20 * 1024 * 1024
MAX_NODES = 200_000  # values in the document once YAML aliases are expanded (an alias bomb expands to billions)
MAX_LINE_CHARS = 100_000
MAX_PROSE_CHARS = 5_000_000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_MARKUP = [
    (re.compile(r"<\|[^|]*\|>"), "model control tokens like '<|...|>' are not allowed in spoken text"),
    (re.compile(r"\[SPEAKER\d+\]", re.I), "speaker tags like '[SPEAKER0]' are set by voicebatch from the line's speaker; "
                                             "remove the tag and give the line its speaker"),
    (re.compile(r"</?\s*(speak|prosody|break|emphasis|say-as|phoneme|voice)\b[^>]*>", re.I),
     "SSML markup is not supported; write the words as plain text"),
]

# Settings people bring from other TTS tools that Higgs Audio's generate refuses: say so, not just "unknown".
UNSUPPORTED_SETTINGS = {
    "repetition_penalty": "Higgs Audio's generate refuses repetition_penalty",
    "min_p": "Higgs Audio's generate refuses min_p",
    "typical_p": "Higgs Audio's generate refuses typical_p",
    "no_repeat_ngram_size": "Higgs Audio's generate refuses no_repeat_ngram_size",
    "num_beams": "beam search is not supported",
}


Context = Literal["none", "chain"]
CONTEXT_HELP = ("chain: Higgs prompts each chunk with the two before it in the same chapter (their text and audio), "
                "whoever spoke them: a dialogue turn hears the turns before it, each speaker's reference kept; an "
                "edit re-renders the rest of that chapter's chain; none: the voice's reference only. Other engines "
                "ignore it.")


class _OverrideMethods(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def overrides(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in DecodingParams.model_fields if getattr(self, k) is not None}


# Decoding settings that override the ones above them: DecodingParams' fields, each optional, with its bounds
# (the bounds are written once, in engine/base.py).
ParamOverrides = create_model(
    "ParamOverrides", __base__=_OverrideMethods,
    **{name: (Optional[Annotated[(field.annotation, *field.metadata)]], None)
       for name, field in DecodingParams.model_fields.items()})


class Defaults(ParamOverrides):
    speaker_pause_duration: float = Field(0.6, ge=0, le=30, description="Silence between different speakers, s.")
    chunk_pause_duration: float = Field(0.3, ge=0, le=30, description="Silence between one speaker's chunks, s.")
    chunk_words: int | None = Field(None, ge=5, le=400, description="Word budget per longform chunk.")
    context: Context = Field("none", description=CONTEXT_HELP)


def spoken_text_problem(text: str) -> str | None:
    """Why `text` cannot be spoken as it is, or None. Markup is refused rather than read aloud or obeyed."""
    if not text.strip():
        return "text is empty; write the words to speak, or remove the line"
    bad = _CONTROL.search(text)
    if bad:
        return f"text contains the control character {bad.group()!r} at position {bad.start()}; remove it"
    for pattern, why in _MARKUP:
        found = pattern.search(text)
        if found:
            return f"{why} (found {found.group()!r})"
    return None


def _non_empty(text: str) -> str:
    problem = spoken_text_problem(text)
    if problem:
        raise ValueError(problem)
    return text


_TERM_MARKUP = re.compile(r"[\[\]()/]")


def _pronounced_term(term: str) -> str:
    """A lexicon key: words as they appear in the script (matching rules in engine/lexicon.py)."""
    if not re.search(r"\w", term):
        raise ValueError("a pronunciation's key must be the word or phrase as the script writes it "
                         "; write e.g. \"Gull Rock\"")
    if len(term) > 200 or "\n" in term or _TERM_MARKUP.search(term):
        raise ValueError("a pronunciation's key is one word or phrase of at most 200 characters, without "
                         "brackets, parentheses, slashes or line breaks")
    return " ".join(term.split())


def _pronunciation(said: str) -> str:
    """`/phonemes/` (checked against the engine's alphabet when the run plans) or a plain-text respelling."""
    said = said.strip()
    if said.startswith("/") or said.endswith("/"):
        inner = said.strip("/").strip()
        if not (len(said) > 2 and said.startswith("/") and said.endswith("/")) or not inner or "/" in inner:
            raise ValueError("phonemes go between two slashes, e.g. \"/ɡˈʌːl ɹˈɑk/\"; "
                             "or write a plain-text respelling without slashes")
        if "[" in inner or "]" in inner or "(" in inner or ")" in inner:
            raise ValueError("phonemes may not contain brackets or parentheses")
        return f"/{inner}/"
    problem = spoken_text_problem(said)
    if problem:
        raise ValueError("empty pronunciation; give /phonemes/ or a respelling, or remove the entry"
                         if not said else f"respelling: {problem}")
    if _TERM_MARKUP.search(said) or "\n" in said:
        raise ValueError("a respelling is plain words: no brackets, parentheses, slashes or line breaks")
    return said


Pronunciations = dict[Annotated[str, AfterValidator(_pronounced_term)], Annotated[str, AfterValidator(_pronunciation)]]


class SpeakerVoice(ParamOverrides):
    """A speaker's voice asset and its overrides; a bare string in the manifest means `{voice: ID}`."""
    voice: str = Field(min_length=1)
    engine: str | None = None
    pronunciations: Pronunciations = Field(default_factory=dict, description=(
        "This speaker's own pronunciations, over the manifest's (e.g. a respelling for a text-only engine)."))


class Line(ParamOverrides):
    speaker: str = Field(min_length=1, max_length=200)
    text: str = Field(max_length=MAX_LINE_CHARS)
    pause_after: float | None = Field(None, ge=0, le=30)

    _text = field_validator("text")(_non_empty)


class Chapter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=500)
    text: str | None = Field(None, max_length=MAX_PROSE_CHARS)
    speaker: str | None = Field(None, description="Who reads `text`; default: the first speaker in `voices`.")
    lines: list[Line] | None = Field(None, min_length=1)
    script: str | None = Field(None, min_length=1, max_length=1000, description="Path to a `[Speaker] text` file, relative to the manifest.")
    context: Context | None = Field(None, description="This chapter's context, over defaults.context. " + CONTEXT_HELP)

    _text = field_validator("text")(lambda v: v if v is None else _non_empty(v))

    @model_validator(mode="after")
    def _one_source(self) -> "Chapter":
        given = [k for k in ("text", "lines", "script") if getattr(self, k) is not None]
        if len(given) != 1:
            got = ", ".join(given) if given else "none of them"
            raise ValueError(f"a chapter needs exactly one of text, lines or script (got {got})")
        return self


class Loudness(BaseModel):
    """How chapters are normalised: a preset, optionally with overrides (see tasks/audio/loudness.py)."""
    model_config = ConfigDict(extra="forbid")

    preset: Literal["audiobook", "podcast", "broadcast", "custom"] = "audiobook"
    mode: Literal["lufs", "rms", "peak"] | None = Field(None, description="Default: the preset's (lufs).")
    target: float | None = Field(None, ge=-70, le=0, description="LUFS (lufs), dBFS RMS (rms) or dBTP (peak).")
    ceiling: float | None = Field(None, ge=-20, le=0, description="True-peak ceiling, dBTP.")
    tolerance: float | None = Field(None, gt=0, le=6, description="LU either side of the target that passes.")
    room_tone: bool | None = Field(None, description="Room tone instead of digital silence; default: the preset's.")
    room_tone_dbfs: float | None = Field(None, ge=-96, le=-50, description="Room tone RMS level, dBFS.")

    @model_validator(mode="after")
    def _resolvable(self) -> "Loudness":
        self.resolve()
        return self

    def resolve(self) -> LoudnessTarget:
        return resolve_target(**self.model_dump())


class Qa(BaseModel):
    """The ASR check of every take (see tasks/qa/check.py): on or off, when a take is flagged, how many re-takes."""
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Transcribe and score every take; `voicebatch render --qa` also turns it on.")
    wer_threshold: float = Field(0.2, ge=0, le=1, description="A take whose word error rate is above this is re-taken.")
    max_attempts: int = Field(2, ge=0, le=10, description="Re-takes after the first take (seeds +1, +2, ...).")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=500)
    author: str | None = Field(None, max_length=500)
    scene: str | None = Field(None, max_length=5000, description="Scene description for engines that take one.")
    engine: str | None = Field(None, description="Engine for every voice of this manifest.")
    defaults: Defaults = Field(default_factory=Defaults)
    loudness: Loudness = Field(default_factory=Loudness)
    qa: Qa = Field(default_factory=Qa)
    voices: dict[str, SpeakerVoice] = Field(min_length=1)
    chapters: list[Chapter] = Field(min_length=1)
    pronunciations: Pronunciations = Field(default_factory=dict, description=(
        "Word or phrase -> /phonemes/ (engines that read phonemes) or a plain-text respelling (any engine)."))

    @field_validator("voices", mode="before")
    @classmethod
    def _bare_voice_ids(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"voice": v} if isinstance(v, str) else v for k, v in value.items()}
        return value


_PHRASE_KEYED = frozenset({"pronunciations"})  # mappings keyed by free text: keys quoted, `pronunciations["Gull Rock"]`


def field_path(loc: tuple) -> str:
    out = ""
    for i, part in enumerate(loc):
        if i and loc[i - 1] in _PHRASE_KEYED and isinstance(part, str):
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
        elif part == "[key]":
            out += " (the key)"
        else:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _model_at(loc: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at `loc`, to list the keys allowed there."""
    current: Any = root
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = _strip_optional(current.model_fields[part].annotation)
        if typing.get_origin(current) in (list, dict):
            if not parts:
                return None
            parts.pop(0)  # the list index or the mapping key
            current = _strip_optional(typing.get_args(current)[-1])
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _shorten(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_validation_error(err: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One line per problem, `field.path: what is wrong`; `root` is the model validated (default: Manifest)."""
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = field_path(loc)
        if e["type"] == "extra_forbidden":
            key = loc[-1]
            model = _model_at(loc[:-1], root or Manifest)
            allowed = ", ".join(model.model_fields) if model else "see the README"
            why = f"; {UNSUPPORTED_SETTINGS[key]}" if key in UNSUPPORTED_SETTINGS else ""
            problems.append(f"{where}: unknown key {key!r}{why}; allowed here: {allowed}")
        elif e["type"] == "missing":
            problems.append(f"{where}: required field is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg} (got {_shorten(e.get('input'))})")
    return problems


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml parses ~10x faster
    """Safe YAML that refuses duplicate keys instead of keeping the last one silently."""
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}; each key may appear once", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(value: Any, memo: dict[int, int], limit: int) -> int:
    """How many values the document holds once aliases are expanded (stops counting past `limit`)."""
    if id(value) in memo:
        return memo[id(value)]
    size = 1
    if isinstance(value, dict):
        children = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        children = value
    else:
        children = []
    for child in children:
        size += _expanded_size(child, memo, limit)
        if size > limit:
            break
    memo[id(value)] = size
    return size


def read_document(path: Path) -> Any:
    """Parse a YAML or JSON file safely; ManifestError when it cannot be read or parsed."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ManifestError(path, [f"cannot read the file ({e.strerror}); check the path"]) from None
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(path, [f"file is {size} bytes; manifests are limited to {MAX_MANIFEST_BYTES} bytes"])
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(path, [f"not valid UTF-8 at byte {e.start}; save the file as UTF-8"]) from None
    except OSError as e:
        raise ManifestError(path, [f"cannot read the file ({e.strerror})"]) from None
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ManifestError(path, [f"unknown manifest type {path.suffix!r}; use .yaml, .yml or .json"])
    try:
        if suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except json.JSONDecodeError as e:
        raise ManifestError(path, [f"line {e.lineno}, column {e.colno}: malformed JSON: {e.msg}"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ManifestError(path, [f"{where}malformed YAML: {problem}"]) from None
    except RecursionError:
        raise ManifestError(path, ["nested too deeply to be a manifest; flatten it"]) from None
    try:
        too_big = _expanded_size(data, {}, MAX_NODES) > MAX_NODES
    except RecursionError:
        raise ManifestError(path, ["nested too deeply to be a manifest; flatten it"]) from None
    if too_big:
        raise ManifestError(path, [f"holds more than {MAX_NODES} values once YAML aliases are expanded; "
                                   "write the values out or split the manifest"])
    return data


def parse_manifest(path: Path) -> Manifest:
    """Read and validate the schema of one manifest file (cross-references are checked in ingest)."""
    data = read_document(path)
    if not isinstance(data, dict):
        raise ManifestError(path, [f"(top level): expected a mapping with title, voices and chapters (got {type(data).__name__})"])
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        raise ManifestError(path, describe_validation_error(e)) from None
