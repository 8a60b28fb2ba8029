"""Planning a sweep: grid points x seeds x selected lines become RenderJobs with ordinary cache keys, one render
batch per grid point (and voice). Pure functions: the script, the planned jobs and the engine facts come in."""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.base import DecodingParams
from tasks.core.errors import UserInputError
from tasks.script.ingest import Script
from tasks.script.manifest import ParamOverrides, describe_validation_error
from tasks.script.plan import EngineFacts, RenderBatch, RenderJob, cache_key

# Settings a grid may vary, in the order point names list them, with the short name used in point names.
SWEEPABLE = {"temperature": "t", "top_k": "k", "top_p": "p", "max_new_tokens": "n", "ras_win_len": "ras"}
BASE_POINT = "base"  # the name of the one point of a sweep over seeds only
_LINES = re.compile(r"^\s*\d+\s*(-\s*\d+\s*)?(,\s*\d+\s*(-\s*\d+\s*)?)*$")


class SweepError(UserInputError):
    """A sweep's grid or line selection cannot be used; the message names the option and the fix."""


@dataclass(frozen=True)
class GridPoint:
    """One combination of settings; its name is made of the settings, so it is stable across re-runs."""
    name: str
    settings: tuple[tuple[str, Any], ...]

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.settings)

    def params_json(self) -> str:
        return json.dumps(self.params, sort_keys=True)


@dataclass(frozen=True)
class SweepJob:
    point: GridPoint
    job: RenderJob


@dataclass(frozen=True)
class SweepBatch(RenderBatch):
    """A render batch of one grid point; its name in the Prefect UI starts with the point."""
    point: str = ""

    @property
    def name(self) -> str:
        return f"{self.point} {super().name}"


class GridBlock(BaseModel):
    """The `sweep:` block of a grid file: values per setting, extra points, seeds and (optional) selection."""
    model_config = ConfigDict(extra="forbid")

    temperature: list[float] | None = None
    top_k: list[int] | None = None
    top_p: list[float] | None = None
    max_new_tokens: list[int] | None = None
    ras_win_len: list[int] | None = None
    points: list[ParamOverrides] | None = Field(None, description="Single points added to the grid's product.")
    seeds: int | list[int] | None = Field(None, description="How many seeds per point, or which seeds.")
    chapter: int | None = Field(None, ge=1)
    lines: str | None = None
    speaker: str | None = None


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep: values per setting (their product), extra single points, seeds, and which lines."""
    grid: dict[str, tuple[Any, ...]]
    points: tuple[dict[str, Any], ...] = ()
    seeds: int | tuple[int, ...] = 1
    chapter: int | None = None  # 1-based
    lines: str | None = None  # "1-5", "2,4": 1-based lines of the chapter (chunks, in a prose chapter)
    speaker: str | None = None


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def point_name(settings: dict[str, Any]) -> str:
    if not settings:
        return BASE_POINT
    return "_".join(f"{SWEEPABLE[k]}{_format(settings[k])}" for k in SWEEPABLE if k in settings)


def parse_point_name(name: str) -> dict[str, Any]:
    """The settings a point name stands for: 't0.3_k50' -> {temperature: 0.3, top_k: 50}."""
    by_prefix = sorted(((short, setting) for setting, short in SWEEPABLE.items()), key=lambda p: -len(p[0]))
    settings: dict[str, Any] = {}
    for part in name.split("_") if name != BASE_POINT else []:
        match = next(((short, setting) for short, setting in by_prefix if part.startswith(short)), None)
        if match is None or match[1] in settings:
            raise SweepError(f"--adopt: {name!r} is not a grid point name such as t0.3_k50_p0.95 (t temperature, "
                             "k top_k, p top_p, n max_new_tokens, ras ras_win_len)")
        short, setting = match
        settings[setting] = parse_values("--adopt", setting, part[len(short):])[0]
    return settings


def _check(setting: str, value: Any, where: str) -> Any:
    try:
        return getattr(ParamOverrides(**{setting: value}), setting)
    except ValidationError as e:
        problem = describe_validation_error(e)[0].split(": ", 1)[-1]
        raise SweepError(f"{where}: {problem}") from None


def parse_values(option: str, setting: str, text: str) -> tuple[Any, ...]:
    """'0.3,0.7' for --temperature: each value checked against the manifest's bounds for the setting."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise SweepError(f"{option}: no values given; write them comma-separated, e.g. {option} 0.3,0.7")
    kind = int if setting in ("top_k", "max_new_tokens", "ras_win_len") else float
    values = []
    for part in parts:
        try:
            number = kind(part)
        except ValueError:
            raise SweepError(f"{option}: {part!r} is not {'a whole number' if kind is int else 'a number'}") from None
        values.append(_check(setting, number, option))
    return tuple(dict.fromkeys(values))


def spec_from_block(block: dict[str, Any], where: str) -> SweepSpec:
    """A SweepSpec from a grid file's `sweep:` block (already parsed); SweepError names the field."""
    try:
        grid = GridBlock.model_validate(block)
    except ValidationError as e:
        raise SweepError(f"{where}: sweep block refused:\n" + "\n".join(
            f"  - sweep.{p}" for p in describe_validation_error(e))) from None
    values = {}
    for setting in SWEEPABLE:
        given = getattr(grid, setting)
        if given is not None:
            if not given:
                raise SweepError(f"{where}: sweep.{setting}: empty list; give at least one value or remove it")
            values[setting] = tuple(dict.fromkeys(_check(setting, v, f"{where}: sweep.{setting}") for v in given))
    seeds = grid.seeds if grid.seeds is not None else 1
    if seeds == [] or (isinstance(seeds, int) and seeds < 1):
        raise SweepError(f"{where}: seeds: {seeds!r}; sweep at least one seed per point")
    return SweepSpec(values, tuple(p.overrides() for p in grid.points or ()),
                     tuple(seeds) if isinstance(seeds, list) else seeds, grid.chapter, grid.lines, grid.speaker)


def grid_points(spec: SweepSpec) -> list[GridPoint]:
    """The product of the grid's values, then the extra points, each named by its settings, without repeats."""
    names = list(spec.grid)
    combos = [dict(zip(names, values)) for values in itertools.product(*spec.grid.values())] if names else []
    combos += [dict(p) for p in spec.points]
    if not combos:
        combos = [{}]
    points: dict[str, GridPoint] = {}
    for combo in combos:
        ordered = {k: combo[k] for k in SWEEPABLE if k in combo}
        points.setdefault(point_name(ordered), GridPoint(point_name(ordered), tuple(ordered.items())))
    return list(points.values())


def swept_settings(spec: SweepSpec) -> list[str]:
    """The settings the sweep varies or sets (seed included when it tries more than one)."""
    names = {k for k in spec.grid} | {k for p in spec.points for k in p}
    swept = [k for k in SWEEPABLE if k in names]
    if (spec.seeds if isinstance(spec.seeds, int) else len(spec.seeds)) > 1:
        swept.append("seed")
    return swept


def refuse_ignored(spec: SweepSpec, engine_honours: dict[str, frozenset[str]]) -> None:
    """A sweep over a setting an engine ignores would render the same take under every value: refuse it."""
    for engine, honours in engine_honours.items():
        ignored = [s for s in swept_settings(spec) if s not in honours]
        if ignored:
            what = ", ".join(sorted(h for h in honours if h in DecodingParams.model_fields)) or "no decoding settings"
            them = "it" if len(ignored) == 1 else "them"
            raise SweepError(f"engine {engine!r} ignores {', '.join(ignored)}: sweeping {them} would render the same "
                             f"take for every value. {engine} honours: {what}. Sweep only those, or choose an engine "
                             "that honours the setting (--engine higgs)")


def _line_numbers(text: str, count: int, where: str) -> list[int]:
    if not _LINES.match(text):
        raise SweepError(f"--lines: {text!r} is not a line range; write e.g. 1-5 or 1,3,7-9 (counted from 1)")
    chosen: list[int] = []
    for part in text.replace(" ", "").split(","):
        first, _, last = part.partition("-")
        start, end = int(first), int(last or first)
        if start < 1 or end < start or end > count:
            raise SweepError(f"--lines: {part!r} is outside {where}, which has lines 1-{count}")
        chosen += range(start, end + 1)
    return list(dict.fromkeys(chosen))


def select_jobs(script: Script, jobs: list[RenderJob], spec: SweepSpec) -> list[RenderJob]:
    """The planned jobs of the chosen chapter, lines and speaker, in script order. In a prose chapter the lines
    are its chunks."""
    if spec.lines is not None and spec.chapter is None:
        raise SweepError("--lines needs --chapter N: line numbers count within one chapter")
    if spec.chapter is None and spec.speaker is None:
        raise SweepError("choose the lines to sweep: --chapter N [--lines 1-5], --speaker NAME, or both")
    if spec.speaker is not None and spec.speaker not in script.voices:
        raise SweepError(f"--speaker: unknown speaker {spec.speaker!r}; speakers in voices: {', '.join(script.voices)}")
    chosen = jobs
    if spec.chapter is not None:
        if not 1 <= spec.chapter <= len(script.chapters):
            raise SweepError(f"--chapter: {spec.chapter} is not a chapter of {script.path}; it has chapters "
                             f"1-{len(script.chapters)}")
        chapter = script.chapters[spec.chapter - 1]
        chosen = [j for j in jobs if j.chapter == chapter.index]
        if spec.lines is not None:
            position = (lambda j: j.chunk) if chapter.prose else (lambda j: j.line)
            count = len({position(j) for j in chosen})
            wanted = {n - 1 for n in _line_numbers(spec.lines, count, f"chapter {spec.chapter} ({chapter.title!r})")}
            chosen = [j for j in chosen if position(j) in wanted]
    if spec.speaker is not None:
        chosen = [j for j in chosen if j.speaker == spec.speaker]
    if not chosen:
        raise SweepError(f"no lines of speaker {spec.speaker!r} in the chosen chapter and lines; choose others")
    return chosen


def seeds_for(job: RenderJob, seeds: int | tuple[int, ...]) -> list[int]:
    """N seeds from the line's own seed on (its seed, +1, ...), or the seeds listed."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise SweepError(f"--seeds: {seeds} seeds; sweep at least 1")
        return [(job.params.seed + i) % 2**32 for i in range(seeds)]
    return [_check("seed", s, "sweep.seeds") for s in seeds]


def plan_sweep(script: Script, selected: list[RenderJob], points: list[GridPoint], seeds: int | tuple[int, ...],
               engines: dict[str, EngineFacts]) -> list[SweepJob]:
    """Every selected line under every point and seed: the point's settings over the line's resolved ones, and
    the ordinary cache key, so sweeps and renders share takes."""
    planned = []
    for point in points:
        for seed_index in range(len(seeds) if not isinstance(seeds, int) else seeds):
            for job in selected:
                seed = seeds_for(job, seeds)[seed_index]
                params = DecodingParams(**{**job.params.model_dump(), **point.params, "seed": seed})
                key = cache_key(job.text, script.voices[job.speaker], params, engines[job.engine],
                                script.manifest.scene, job.pronunciations, job.predecessor, job.speaker_tag)
                planned.append(SweepJob(point, replace(job, params=params, key=key)))
    return planned


def group_sweep(planned: list[SweepJob], engines: dict[str, EngineFacts],
                batch_size: int | None = None) -> list[RenderBatch]:
    """One batch per grid point and voice (split at the engine's batch size); a take planned twice is rendered
    once. `planned` holds only the jobs to render."""
    groups: dict[tuple[str, str, str], list[RenderJob]] = {}
    seen: set[str] = set()
    for item in planned:
        if item.job.key in seen:
            continue
        seen.add(item.job.key)
        groups.setdefault((item.point.name, item.job.engine, item.job.voice_id), []).append(item.job)
    batches = []
    for (point, engine, _), jobs in groups.items():
        size = batch_size or engines[engine].batch_size
        for start in range(0, len(jobs), size):
            part = tuple(jobs[start:start + size])
            batches.append(SweepBatch(len(batches), engine, part[0].voice_id, part[0].params, part, point))
    return batches
