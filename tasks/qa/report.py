"""The QA report from attempt rows (`qa_takes`): per chapter and per take, as markdown for Prefect and as
text for the CLI. Pure functions."""
from __future__ import annotations

from typing import Any


def kept_rows(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per planned take: its kept attempt, with the number of attempts made."""
    counts: dict[tuple, int] = {}
    for r in attempts:
        place = (r["chapter"], r["line"], r["chunk"])
        counts[place] = counts.get(place, 0) + 1
    return [{**r, "attempts": counts[(r["chapter"], r["line"], r["chunk"])]} for r in attempts if r["kept"]]


def chapter_summary(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per chapter: takes, re-taken takes, takes still flagged, mean and worst WER of the kept takes."""
    chapters: dict[int, list[dict[str, Any]]] = {}
    for r in kept_rows(attempts):
        chapters.setdefault(r["chapter"], []).append(r)
    return [{"chapter": c, "takes": len(rs), "retaken": sum(r["attempts"] > 1 for r in rs),
             "flagged": sum(bool(r["flagged"]) for r in rs), "mean_wer": sum(r["wer"] for r in rs) / len(rs),
             "max_wer": max(r["wer"] for r in rs)} for c, rs in sorted(chapters.items())]


def noteworthy(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Takes that were re-taken or are still flagged, with every attempt."""
    places = {(r["chapter"], r["line"], r["chunk"]) for r in kept_rows(attempts) if r["attempts"] > 1 or r["flagged"]}
    return [r for r in attempts if (r["chapter"], r["line"], r["chunk"]) in places]


def _attempt_text(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f"attempt {r['attempt']} (seed {r['seed']}): failed to render: {r['error']}"
    verdict = "flagged: " + "; ".join(_reasons(r)) if r["flagged"] else "ok"
    return (f"attempt {r['attempt']} (seed {r['seed']}): WER {r['wer']:.2f}, {verdict}"
            f"{', kept' if r['kept'] else ''}; heard {r['transcript'][:80]!r}")


def _reasons(r: dict[str, Any]) -> list[str]:
    import json

    return json.loads(r["reasons"] or "[]")


def text_lines(attempts: list[dict[str, Any]]) -> list[str]:
    """The report as indented lines for the CLI."""
    if not attempts:
        return []
    lines = [f"  QA ({attempts[0]['asr_model']}):"]
    for c in chapter_summary(attempts):
        lines.append(f"    chapter {c['chapter'] + 1}: {c['takes']} takes, mean WER {c['mean_wer']:.2f}, worst "
                     f"{c['max_wer']:.2f}, {c['retaken']} re-taken, {c['flagged']} flagged")
    current = None
    for r in noteworthy(attempts):
        place = (r["chapter"], r["line"], r["chunk"])
        if place != current:
            current = place
            lines.append(f"    chapter {r['chapter'] + 1} line {r['line'] + 1} chunk {r['chunk'] + 1}: {r['text'][:60]!r}")
        lines.append(f"      {_attempt_text(r)}")
    return lines


def markdown(title: str, run_id: str, attempts: list[dict[str, Any]]) -> str:
    summary = chapter_summary(attempts)
    lines = [f"# QA: {title}", "", f"Run `{run_id}`, ASR `{attempts[0]['asr_model'] if attempts else '-'}`.", "",
             "| chapter | takes | mean WER | worst WER | re-taken | flagged |", "|---|---|---|---|---|---|"]
    lines += [f"| {c['chapter'] + 1} | {c['takes']} | {c['mean_wer']:.3f} | {c['max_wer']:.3f} | {c['retaken']} "
              f"| {c['flagged']} |" for c in summary]
    listed = noteworthy(attempts)
    if listed:
        lines += ["", "| chapter | line | attempt | seed | WER | flagged | kept | heard |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['chapter'] + 1} | {r['line'] + 1} | {r['attempt']} | {r['seed']} | "
                  f"{'' if r['wer'] is None else format(r['wer'], '.2f')} | {'yes' if r['flagged'] else 'no'} | "
                  f"{'yes' if r['kept'] else ''} | {(r['transcript'] or r.get('error') or '')[:80]} |" for r in listed]
    return "\n".join(lines)


def take_table(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per planned take (its kept attempt), for a Prefect table artifact."""
    return [{"chapter": r["chapter"] + 1, "line": r["line"] + 1, "chunk": r["chunk"] + 1, "wer": round(r["wer"], 3),
             "flagged": bool(r["flagged"]), "attempts": r["attempts"], "seed": r["seed"],
             "heard": (r["transcript"] or "")[:120]} for r in kept_rows(attempts)]
