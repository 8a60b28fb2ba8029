"""The run's report in the Prefect UI: a markdown summary, a table with one row per take, progress, and
the link to the run's review page."""
from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import (create_link_artifact, create_markdown_artifact, create_progress_artifact,
                               create_table_artifact, update_progress_artifact)

from flows import steps

log = logging.getLogger(__name__)


def artifact_key(title: str, suffix: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes; stable per book so the UI keeps history."""
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:50] or "book"
    return f"{base}-{suffix}"


def summary_markdown(title: str, run_id: str, rows: list[dict[str, Any]], outputs: list[dict[str, Any]],
                     wall_seconds: float, load_seconds: float) -> str:
    rendered = sum(1 for r in rows if not r["cache_hit"])
    chapters: dict[int, dict[str, Any]] = {}
    for r in rows:
        c = chapters.setdefault(r["chapter"], {"takes": 0, "rendered": 0, "seconds": 0.0})
        c["takes"] += 1
        c["rendered"] += 0 if r["cache_hit"] else 1
        c["seconds"] += r.get("duration") or 0.0
    lines = [f"# {title}", "", f"Run `{run_id}`: {len(rows)} takes, {rendered} rendered, "
             f"{len(rows) - rendered} reused from the cache; {wall_seconds:.1f} s wall, model load {load_seconds:.1f} s.",
             "", "| chapter | file | takes | rendered | reused | audio (s) | output |", "|---|---|---|---|---|---|---|"]
    files = {o["chapter"]: o for o in outputs if o["kind"] == "chapter"}
    for index, c in sorted(chapters.items()):
        out = files.get(index, {})
        state = "reused" if out.get("reused") else "written"
        lines.append(f"| {index + 1}. {out.get('title', '')} | `{out.get('path', '')}` | {c['takes']} | {c['rendered']} "
                     f"| {c['takes'] - c['rendered']} | {c['seconds']:.1f} | {state} |")
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        lines += ["", f"**{len(failed)} takes failed**; their chapters and the book were not assembled. "
                  "Run again to retry only these:", "", "| chapter | line | text | error |", "|---|---|---|---|"]
        lines += [f"| {r['chapter'] + 1} | {r['line'] + 1} | {r['text'][:60]} | {r['error']} |" for r in failed]
    book = next((o for o in outputs if o["kind"] == "book"), None)
    if book:
        lines += ["", f"Book: `{book['path']}` ({book['duration']:.1f} s, {'reused' if book['reused'] else 'written'})."]
    return "\n".join(lines)


def take_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"chapter": r["chapter"] + 1, "line": r["line"] + 1, "chunk": r["chunk"] + 1, "speaker": r["speaker"],
             "voice": r["voice_id"], "engine": r["engine"], "seed": r["seed"], "cache": "failed" if r.get("status") == "failed" else "hit" if r["cache_hit"] else "rendered",
             "duration_s": round(r.get("duration") or 0.0, 3), "render_s": round(r.get("render_seconds") or 0.0, 3),
             "text": r["text"][:120]} for r in rows]


class Progress:
    """A progress artifact for the render lane (0-100 %); silently absent outside a Prefect run."""
    def __init__(self, key: str, total: int) -> None:
        self.total, self.done, self.id = max(total, 1), 0, None
        self._lock = threading.Lock()
        try:
            self.id: UUID | None = create_progress_artifact(0.0 if total else 100.0, key=key,
                                                            description="takes rendered so far")
        except Exception as e:  # noqa: BLE001 - a UI nicety must never fail a render
            log.debug("no progress artifact: %s", e)

    def advance(self, count: int) -> None:
        with self._lock:
            self.done += count
            if self.id is None:
                return
            update_progress_artifact(self.id, 100.0 * self.done / self.total)


def publish(title: str, summary: str, table: list[dict[str, Any]], kind: str = "run") -> None:
    """A run's report as artifacts: `kind` "run" is the summary and take table, "qa" the QA report and its
    per-take table, "sweep" a sweep's ranking and its per-point table. The run is already recorded, so a
    failure here only warns."""
    keys = {"run": ("summary", "takes"), "qa": ("qa", "qa-takes"), "sweep": ("sweep", "sweep-points")}[kind]
    try:
        create_markdown_artifact(summary, key=artifact_key(title, keys[0]), description=f"voicebatch {kind} of {title}")
        row = "grid point" if kind == "sweep" else "take"
        create_table_artifact(table, key=artifact_key(title, keys[1]), description=f"{kind}: one row per {row}")
    except Exception as e:  # noqa: BLE001
        log.warning("could not publish the %s report to Prefect: %s", kind, e)


def write_and_link(db: Path, run_id: str, title: str,
                   logger: logging.Logger | logging.LoggerAdapter) -> tuple[str | None, str | None]:
    """The page's path, or None and why it could not be written: the run is already recorded, so this warns
    and the run's summary names the missing page."""
    try:
        page = steps.write_review_page(db, [run_id])
    except Exception as e:  # noqa: BLE001 - a listening aid must never fail a finished render
        why = f"review page: {e} (`voicebatch review {run_id}` tries again)"
        logger.warning("could not write the %s", why)
        return None, why
    try:
        create_link_artifact(page.as_uri(), link_text=f"review page: {page.name}", key=artifact_key(title, "review"),
                             description="every take of the run with a player, its settings, scores and levels")
    except Exception as e:  # noqa: BLE001
        logger.warning("could not link the review page from the Prefect run: %s", e)
    return str(page), None
