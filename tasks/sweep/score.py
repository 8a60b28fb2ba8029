"""Scores of a sweep: per take (ASR word error rate from the QA scorer and its cache, loudness, words) and per
grid point (means and spreads over its takes), ranked. The per-point figures are pure functions of the
per-take rows, so they can be recomputed from the provenance database alone."""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from tasks.audio.loudness import integrated_lufs
from tasks.audio.wav import read_mono
from tasks.core.audio_format import SAMPLE_RATE
from tasks.qa.check import QaPlan, Scorer, store_scores
from tasks.qa.score import normalise_words
from tasks.render.batch import BatchResult

RANKING = "lowest mean WER first, then the smallest spread of seconds per word, then the least render time"


def word_count(text: str) -> int:
    """Spoken words as the WER counts them (numbers read out, contractions in full)."""
    return len(normalise_words(text))


def take_lufs(path: str) -> float | None:
    """Integrated loudness of a take file as rendered; None for silence."""
    audio, rate = read_mono(Path(path))
    value = integrated_lufs(audio, rate or SAMPLE_RATE)
    return value if math.isfinite(value) else None


def score_takes(result: BatchResult, texts: dict[str, str], plan: QaPlan | None, db: Path) -> dict[str, dict[str, Any]]:
    """Cache key -> words, loudness and (with an ASR plan) WER of each take; new ASR scores go to `qa_scores`."""
    scorer = Scorer(db, plan, [t.key for t in result.takes]) if plan else None
    out = {}
    for take in result.takes:
        scores: dict[str, Any] = dict(words=word_count(texts[take.key]), lufs=take_lufs(take.path),
                                      wer=None, asr_model=None)
        if scorer is not None:
            score, _, _ = scorer.score(take, texts[take.key])
            scores.update(wer=score.wer, asr_model=plan.asr_model_id)
        out[take.key] = scores
    if scorer is not None:
        store_scores(db, scorer.new)
    return out


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def point_scores(takes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ranked per-point figures from per-take rows (keys: point, point_params, status, duration, words, wer,
    lufs, peak_dbfs, render_seconds, decode_steps). Seconds per word counts takes with words; frames per
    second and per word are NULL when any take of the point lacks decode steps."""
    points: dict[str, list[dict[str, Any]]] = {}
    for t in takes:
        points.setdefault(t["point"], []).append(t)
    out = []
    for name, rows in points.items():
        ok = [r for r in rows if r["status"] == "rendered"]
        worded = [r for r in ok if r["words"]]
        pace = [r["duration"] / r["words"] for r in worded]
        wers = [r["wer"] for r in ok if r["wer"] is not None]
        steps = [r["decode_steps"] for r in ok]
        known_steps = bool(ok) and all(s is not None for s in steps)
        duration = sum(r["duration"] for r in ok)
        words = sum(r["words"] for r in worded)
        out.append(dict(
            point=name, settings=rows[0]["point_params"], takes=len(ok), failed=len(rows) - len(ok),
            wer_mean=_mean(wers), wer_max=max(wers) if wers else None,
            seconds_per_word=_mean(pace), seconds_per_word_sd=statistics.pstdev(pace) if pace else None,
            frames_per_second=sum(steps) / duration if known_steps and duration else None,
            frames_per_word=sum(steps) / words if known_steps and words else None,
            lufs=_mean([r["lufs"] for r in ok if r["lufs"] is not None]),
            peak_dbfs=max((r["peak_dbfs"] for r in ok), default=None),
            render_seconds=sum(r["render_seconds"] or 0.0 for r in ok),
            audio_seconds=duration))
    out.sort(key=_rank_key)
    for rank, row in enumerate(out, start=1):
        row["rank"] = rank
    return out


def _rank_key(row: dict[str, Any]) -> tuple:
    missing = float("inf")
    return (row["takes"] == 0, missing if row["wer_mean"] is None else row["wer_mean"],
            missing if row["seconds_per_word_sd"] is None else row["seconds_per_word_sd"],
            row["render_seconds"], row["point"])


def _cell(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_lines(points: list[dict[str, Any]]) -> list[str]:
    """The ranked table for a terminal."""
    header = (f"{'#':>2} {'point':<22} {'takes':>5} {'WER':>5} {'WERmax':>6} {'s/word':>6} {'±sd':>5} "
              f"{'fr/s':>5} {'fr/word':>7} {'LUFS':>6} {'peak':>6} {'render s':>8}")
    lines = [header]
    for p in points:
        failed = f" ({p['failed']} failed)" if p["failed"] else ""
        lines.append(f"{p['rank']:>2} {p['point']:<22} {p['takes']:>5} {_cell(p['wer_mean'], '.2f'):>5} "
                     f"{_cell(p['wer_max'], '.2f'):>6} {_cell(p['seconds_per_word'], '.3f'):>6} "
                     f"{_cell(p['seconds_per_word_sd'], '.3f'):>5} {_cell(p['frames_per_second'], '.1f'):>5} "
                     f"{_cell(p['frames_per_word'], '.2f'):>7} {_cell(p['lufs'], '.1f'):>6} "
                     f"{_cell(p['peak_dbfs'], '.1f'):>6} {p['render_seconds']:>8.2f}{failed}")
    return lines


def artifact_table(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ranked table as a Prefect table artifact (rounded, one row per point)."""
    def r(value: Any, digits: int) -> Any:
        return None if value is None else round(value, digits)

    return [{"rank": p["rank"], "point": p["point"], "settings": p["settings"], "takes": p["takes"],
             "failed": p["failed"], "wer_mean": r(p["wer_mean"], 3), "wer_max": r(p["wer_max"], 3),
             "s_per_word": r(p["seconds_per_word"], 3), "s_per_word_sd": r(p["seconds_per_word_sd"], 3),
             "frames_per_s": r(p["frames_per_second"], 2), "frames_per_word": r(p["frames_per_word"], 2),
             "lufs": r(p["lufs"], 1), "peak_dbfs": r(p["peak_dbfs"], 1), "render_s": r(p["render_seconds"], 2)}
            for p in points]


def markdown(title: str, run_id: str, points: list[dict[str, Any]]) -> str:
    """The ranked table as the sweep's markdown artifact."""
    lines = [f"# Sweep of {title}", "", f"Run `{run_id}`: {len(points)} grid points, ranked {RANKING}.", "",
             "| # | point | settings | takes | WER | s/word | ±sd | frames/s | frames/word | LUFS | peak dBFS | render s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['rank']} | {p['point']} | `{p['settings']}` | {p['takes']} | {_cell(p['wer_mean'], '.2f')} "
                     f"| {_cell(p['seconds_per_word'], '.3f')} | {_cell(p['seconds_per_word_sd'], '.3f')} "
                     f"| {_cell(p['frames_per_second'], '.1f')} | {_cell(p['frames_per_word'], '.2f')} "
                     f"| {_cell(p['lufs'], '.1f')} | {_cell(p['peak_dbfs'], '.1f')} | {p['render_seconds']:.2f} |")
    return "\n".join(lines)
