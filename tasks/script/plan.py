"""Planning: a Script becomes RenderJobs (chunked, voices and parameters resolved, cache-keyed), grouped into
RenderBatches of jobs an engine can render in one call. Pure functions; the engine facts come in as data."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from engine.base import DecodingParams
from engine.lexicon import Entries, is_phonemes, matching_entries
from tasks.script.chunking import chunk_text, normalise_text
from tasks.script.ingest import Script, ScriptLine
from tasks.script.pronunciations import speaker_lexicons
from tasks.script.voices import Voice


@dataclass(frozen=True)
class EngineFacts:
    """What planning needs to know about an engine: identity for the cache key, and what it honours."""
    name: str
    model: str
    revision: str | None
    code_version: str
    honours: frozenset[str]
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # voice id -> effective options
    uses_reference: bool = False  # the engine speaks with the staged reference clip
    batch_size: int = 16  # most jobs per render call, as the engine declares
    reads_phonemes: bool = False  # `/phonemes/` pronunciations apply to it; else they are left out
    seed_per_row: bool = False  # one render call may mix seeds (each job samples from its own stream)


CONTEXT_WINDOW = 2  # earlier takes a chained prompt holds: the rolling buffer of Higgs' long-form example


@dataclass(frozen=True)
class ContextTurn:
    """An earlier take of a context chain that a job is prompted with: its cache key, words and voice, and the
    voice's speaker tag (SPEAKER<n>) where the chain is a dialogue."""
    key: str
    text: str
    voice_id: str
    tag: int | None = None


@dataclass(frozen=True)
class RenderJob:
    chapter: int
    line: int
    chunk: int
    speaker: str
    voice_id: str
    engine: str
    text: str
    params: DecodingParams
    pause_after: float | None  # set on the last chunk of a line only
    source: str
    key: str
    pronunciations: Entries = ()  # the manifest's entries that occur in `text` (engine/lexicon.py)
    # Context chains: the take just before this chunk in its chapter (any speaker of the same engine), the last
    # CONTEXT_WINDOW takes it is prompted with (oldest first), its speaker tag once the chain holds a second voice,
    # and its place in the chain (0 unchained or first): links render in order of `link`.
    predecessor: str | None = None
    context: tuple[ContextTurn, ...] = ()
    speaker_tag: int | None = None
    link: int = 0


@dataclass(frozen=True)
class RenderBatch:
    index: int
    engine: str
    voice_id: str
    params: DecodingParams
    jobs: tuple[RenderJob, ...]

    @property
    def name(self) -> str:
        """Where in the script the batch's lines are, for the Prefect UI: 'ch1 l3-ch2 l5 ava (7 takes)'."""
        first, last = self.jobs[0], self.jobs[-1]
        span = f"ch{first.chapter + 1} l{first.line + 1}"
        if (last.chapter, last.line) != (first.chapter, first.line):
            span += f"-{'ch' + str(last.chapter + 1) + ' ' if last.chapter != first.chapter else ''}l{last.line + 1}"
        return f"{span} {self.voice_id} ({len(self.jobs)} take{'s' if len(self.jobs) != 1 else ''})"


def resolve_params(script: Script, speaker: str, line: ScriptLine) -> DecodingParams:
    """Built-in defaults < manifest defaults < voice asset defaults < manifest speaker overrides < line."""
    manifest = script.manifest
    merged: dict[str, Any] = {}
    merged.update(manifest.defaults.overrides())
    merged.update(script.voices[speaker].defaults)
    merged.update(manifest.voices[speaker].overrides())
    merged.update(line.overrides)
    return DecodingParams(**merged)


def cache_key(text: str, voice: Voice, params: DecodingParams, facts: EngineFacts, scene: str | None = None,
              pronunciations: Entries = (), predecessor: str | None = None, speaker_tag: int | None = None) -> str:
    """sha256 over everything that changes the sound, and nothing else (settings the engine ignores are out;
    the line's position is out, so inserting a line leaves the others' keys alone; only the pronunciations
    that occur in the text are in, so editing one entry re-renders only the lines that contain it; a chained
    take's predecessor key is in, and through it every earlier take of its chain, so an edit re-renders its
    chain from there on; so are the window and its speaker tag, which shape its prompt)."""
    material = {
        "text": text,
        "voice": voice.content_hash,
        "transcript": normalise_text(voice.transcript or ""),
        "params": params.honoured(facts.honours),
        "engine": [facts.name, facts.model, facts.revision, facts.code_version],
        "options": facts.options.get(voice.id, {}),
    }
    if facts.uses_reference:  # how the clip was staged changes the sound only for engines that hear it
        material["staged_reference"] = voice.staged_key
    if "scene" in facts.honours:
        material["scene"] = normalise_text(scene or "")
    if pronunciations:  # absent when none applies: keys made before the lexicon existed stay valid
        material["pronunciations"] = [list(entry) for entry in pronunciations]
    if predecessor:  # absent unless chained: unchained keys are what they were
        material["predecessor"] = predecessor
        material["context"] = {"window": CONTEXT_WINDOW, "speaker_tag": speaker_tag}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def plan_jobs(script: Script, engines: dict[str, EngineFacts], speaker_engine: dict[str, str],
              chunk_words: int) -> list[RenderJob]:
    """Every chunk of every line, in script order, with its resolved parameters and cache key."""
    budget = script.manifest.defaults.chunk_words or chunk_words
    jobs = []
    lexicons = speaker_lexicons(script.manifest)
    for chapter in script.chapters:
        chains: dict[str, _Chain] = {}  # engine -> its context chain in this chapter (the scene)
        for line_index, line in enumerate(chapter.lines):
            voice = script.voices[line.speaker]
            facts = engines[speaker_engine[line.speaker]]
            params = resolve_params(script, line.speaker, line)
            lexicon = lexicons[line.speaker]
            # Lines are chunked too: a 10,000-word line must not reach an engine in one piece.
            texts = chunk_text(line.text, budget)
            chained = chapter.context == "chain" and "context" in facts.honours
            chain = chains.setdefault(facts.name, _Chain()) if chained else None
            for chunk_index, text in enumerate(texts):
                last = chunk_index == len(texts) - 1
                said = tuple(e for e in matching_entries(text, lexicon) if facts.reads_phonemes or not is_phonemes(e[1]))
                link = chain.next_link(voice.id) if chain else {}
                job = RenderJob(
                    chapter=chapter.index, line=line_index, chunk=chunk_index, speaker=line.speaker,
                    voice_id=voice.id, engine=facts.name, text=text, params=params,
                    pause_after=line.pause_after if last else None, source=line.source,
                    key=cache_key(text, voice, params, facts, script.manifest.scene, said, link.get("predecessor"),
                                  link.get("speaker_tag")),
                    pronunciations=said, **link)
                jobs.append(job)
                if chain:
                    chain.jobs.append(job)
    return jobs


@dataclass
class _Chain:
    """The takes of one chapter's context chain so far. Every chained line of the chapter (the scene) is a link,
    whoever speaks it: a dialogue turn is prompted with the turns before it, the other speakers' included. Voices
    get speaker tags in order of first appearance, once a second voice has spoken."""
    jobs: list[RenderJob] = field(default_factory=list)
    tags: dict[str, int] = field(default_factory=dict)

    def next_link(self, voice_id: str) -> dict[str, Any]:
        self.tags.setdefault(voice_id, len(self.tags))
        if not self.jobs:
            return {}
        dialogue = len(self.tags) > 1
        window = tuple(ContextTurn(j.key, j.text, j.voice_id, self.tags[j.voice_id] if dialogue else None)
                       for j in self.jobs[-CONTEXT_WINDOW:])
        return dict(predecessor=self.jobs[-1].key, context=window,
                    speaker_tag=self.tags[voice_id] if dialogue else None, link=self.jobs[-1].link + 1)


def ignored_context(script: Script, engines: dict[str, EngineFacts], speaker_engine: dict[str, str]) -> list[str]:
    """One message per engine that a chained chapter's speakers use but that ignores `context: chain`."""
    ignoring: dict[str, list[int]] = {}
    for chapter in script.chapters:
        if chapter.context == "chain":
            for name in {speaker_engine[line.speaker] for line in chapter.lines}:
                if "context" not in engines[name].honours:
                    ignoring.setdefault(name, []).append(chapter.index + 1)
    return [f"engine {name!r} ignores `context: chain` (chapters {', '.join(map(str, chapters))}): its takes are "
            "rendered from the voice reference alone and keep their cache keys" for name, chapters in ignoring.items()]


def group_jobs(jobs: list[RenderJob], engines: dict[str, EngineFacts], batch_size: int | None = None) -> list[RenderBatch]:
    """Jobs sharing (engine, voice, honoured parameters, chain link) go together (the seed aside where the engine
    samples each job from its own stream), at most `batch_size` per batch
    (default: what each engine declares), each key rendered once; batches run in order of link (a chain's
    chunks after their predecessors; one batch holds the same link of many chains), then of script order.
    Links after the first go together whatever their voice: each row brings its own prompt (its chain's takes),
    so a dialogue's turns from many chapters still fill a batch."""
    groups: dict[tuple, list[RenderJob]] = {}
    seen: set[str] = set()
    for job in jobs:
        if job.key in seen:
            continue  # the same words in the same voice and settings: one take serves every place
        seen.add(job.key)
        facts = engines[job.engine]
        honoured = json.dumps(job.params.honoured(facts.honours - {"seed"} if facts.seed_per_row else facts.honours),
                              sort_keys=True)
        groups.setdefault((job.engine, job.voice_id if job.link == 0 else "", honoured, job.link), []).append(job)
    batches = []
    for (engine, _, _, link), members in groups.items():
        size = batch_size or engines[engine].batch_size
        for start in range(0, len(members), size):
            part = tuple(members[start:start + size])
            batches.append(((link, part[0].chapter, part[0].line, part[0].chunk), part))
    batches.sort(key=lambda b: b[0])
    return [RenderBatch(i, part[0].engine, "+".join(dict.fromkeys(j.voice_id for j in part)), part[0].params, part)
            for i, (_, part) in enumerate(batches)]
