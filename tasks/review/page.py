"""The review page: one self-contained HTML file per run (or runs compared) with a player for every take,
laid out as a grid when a line was rendered under several settings, and a loudness plot per chapter.
Audio is linked by relative path (the page works from file:// with no server); everything else is inline."""
from __future__ import annotations

import base64
import contextlib
import html
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tasks.audio.wav import OutputWriteError, mono_blocks
from tasks.core.files import write_text_atomic
from tasks.core.out_folders import review_dir
from tasks.render.cache import fingerprint
from tasks.review.data import ReviewChapter, ReviewData, ReviewTake, load_review
from tasks.review.grid import ChapterGrid, GridRow, build_grids
from tasks.review.plot import LoudnessCurve, loudness_svg, short_term_loudness_of

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f4f4f4}.meta{color:#555;font-size:12px}.text{max-width:28em}
.missing,.fail{color:#b00}.flag{color:#b00;font-weight:bold}audio{width:220px;height:32px;display:block}
img.plot{max-width:100%;height:auto}details{font-size:12px;color:#555}
"""
PLOT_CACHE = ".plots"  # beside the page: SVGs by chapter content, so a re-run does not draw unchanged chapters
PLOT_VERSION = 1  # part of the plot cache key: raise it when the plot's look changes


def default_page_path(output_dir: Path, run_ids: list[str]) -> Path:
    name = run_ids[0] if len(run_ids) == 1 else "-vs-".join(r[:8] for r in run_ids)
    return review_dir(Path(output_dir)) / f"{name}.html"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: float | None, fmt: str, unit: str = "") -> str | None:
    return None if value is None else f"{value:{fmt}}{unit}"


def _href(path: Path, page_dir: Path) -> str:
    """A relative URL from the page to a file, each path segment percent-encoded."""
    return _relative_folder_url(str(path.parent), str(page_dir)) + quote(path.name)


@lru_cache(maxsize=64)
def _relative_folder_url(folder: str, page_dir: str) -> str:
    """The URL of a folder relative to the page, with a trailing slash (empty for the page's own folder): a
    book's thousands of takes lie in a few folders."""
    return "".join(quote(part) + "/" for part in Path(os.path.relpath(folder, page_dir)).parts if part != ".")


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def take_cell(take: ReviewTake, page_dir: Path, row_first: ReviewTake) -> str:
    """A player (or why there is none) and the take's numbers."""
    if take.status != "rendered":
        player = f'<div class="fail">render failed: {_e(take.error)}</div>'
    elif take.path is None:
        player = f'<div class="missing">take file missing: {_e(take.recorded_path)}</div>'
    else:
        player = f'<audio controls preload="metadata" src="{_e(_href(take.path, page_dir))}"></audio>'
    facts = [f"seed {take.seed}" if take.seed is not None else None,
             _num(take.duration, ".2f", " s"), _num(take.render_seconds, ".2f", " s render"),
             "cache hit" if take.cache_hit else None]
    if take.wer is not None:
        facts.append(f"WER {take.wer:.2f}")
    if take.level_before is not None:
        unit = {"lufs": "LUFS", "rms": "dBFS RMS", "peak": "dBTP"}.get(take.level_mode or "", "")
        facts.append(f"{take.level_before:.1f} {unit}, gain {take.gain_db:+.1f} dB")
    facts.append(_num(take.peak_dbfs, ".1f", " dBFS peak"))
    meta = " · ".join(_e(f) for f in facts if f)
    flag = ""
    if take.flagged:
        flag = f'<div class="flag">flagged: {_e("; ".join(take.reasons) or "by QA")}</div>'
    differs = []
    if (take.speaker, take.voice_id, take.engine) != (row_first.speaker, row_first.voice_id, row_first.engine):
        differs.append(f"{_e(take.speaker)} ({_e(take.voice_id)}, {_e(take.engine)})")
    if take.text != row_first.text:
        differs.append(f"“{_e(take.text)}”")
    extra = "".join(f'<div class="meta">{d}</div>' for d in differs)
    return (f'<div class="take">{player}<div class="meta">{meta}</div>{flag}{extra}'
            f"<details><summary>settings</summary>{_e(_params_text(take.params))}</details></div>")


def _row_html(row: GridRow, page_dir: Path) -> str:
    first = row.first
    where = f"{row.line + 1}" + (f".{row.chunk + 1}" if row.chunk else "")
    head = (f'<th>{_e(where)}</th><td class="text">{_e(first.text)}<div class="meta">{_e(first.speaker)} '
            f"({_e(first.voice_id)}, {_e(first.engine)})</div></td>")
    cells = "".join("<td>" + ("".join(take_cell(t, page_dir, first) for t in cell) or "—") + "</td>"
                    for cell in row.cells)
    return f"<tr>{head}{cells}</tr>"


def _loudness_line(chapter: ReviewChapter, several_runs: bool) -> str:
    c = chapter.loudness
    if not c:
        return ""
    verdict = "pass" if c.get("passed") else "FAIL: " + "; ".join(_problems(c.get("problems")))
    numbers = [_num(c.get("integrated_lufs"), ".1f", " LUFS"), _num(c.get("loudness_range_lu"), ".1f", " LU range"),
               _num(c.get("rms_dbfs"), ".1f", " dBFS RMS"), _num(c.get("true_peak_dbtp"), ".1f", " dBTP true peak"),
               _num(c.get("noise_floor_dbfs"), ".1f", " dBFS floor")]
    who = f"run {chapter.run_id[:8]}: " if several_runs else ""
    return (f'<p class="meta">{_e(who)}{_e(" · ".join(n for n in numbers if n))} '
            f'({_e(c.get("preset"))}) <span class="{"" if c.get("passed") else "fail"}">{_e(verdict)}</span></p>')


def _problems(raw: str | None) -> list[str]:
    import json

    return json.loads(raw) if raw else []


def _plot_svg(plotted: list[ReviewChapter], labels: list[str], target: float | None, cache_dir: Path) -> str:
    """The plot's SVG, cached by the chapter files' content: an unchanged chapter is not read or drawn again."""
    key = fingerprint([PLOT_VERSION, [[label, c.sha256] for label, c in zip(labels, plotted)], target])
    cached = cache_dir / f"{key}.svg"
    if cached.is_file():
        return cached.read_text(encoding="utf-8")
    curves = []
    for label, c in zip(labels, plotted):
        samples, rate, blocks = mono_blocks(Path(c.path))
        curves.append(LoudnessCurve(label, *short_term_loudness_of(blocks, samples, rate)))
    svg = re.sub(r"^.*?(?=<svg)", "", loudness_svg(curves, target), flags=re.S)  # the XML declaration, DOCTYPE
    with contextlib.suppress(OSError):  # a cache that cannot be written only costs drawing again next time
        write_text_atomic(cached, svg)
    return svg


def plot_image(chapters: list[ReviewChapter], several_runs: bool, cache_dir: Path) -> str:
    """The chapter's loudness over time (one curve per run) as an inline SVG image, or a note why not."""
    plotted = [c for c in chapters if c.path is not None]
    lacking = [c.run_id[:8] for c in chapters if c.path is None]
    note = (f'<p class="meta">no chapter file to plot for run {_e(", ".join(lacking))}: gone, or rewritten by a '
            "later run</p>") if lacking else ""
    if not plotted:
        return note or '<p class="meta">no chapter file to plot: not assembled in these runs</p>'
    target = next((c.loudness.get("target") for c in plotted if c.loudness.get("mode") == "lufs"), None)
    labels = [f"run {c.run_id[:8]}" if several_runs else "short-term" for c in plotted]
    data = base64.b64encode(_plot_svg(plotted, labels, target, cache_dir).encode()).decode()
    return f'{note}<img class="plot" alt="short-term loudness over the chapter" src="data:image/svg+xml;base64,{data}">'


def _runs_table(runs: list[dict[str, Any]]) -> str:
    head = "<tr><th>run</th><th>title</th><th>manifest</th><th>status</th><th>started</th><th>rendered</th>" \
           "<th>reused</th><th>wall s</th></tr>"
    rows = "".join(
        f"<tr><td>{_e(r['run_id'])}</td><td>{_e(r['title'])}</td><td>{_e(r['manifest_path'])}</td>"
        f"<td>{_e(r['status'])}</td><td>{_e(r['started_at'])}</td><td>{_e(r['takes_rendered'])}</td>"
        f"<td>{_e(r['takes_reused'])}</td><td>{_e(_num(r['wall_seconds'], '.1f'))}</td></tr>" for r in runs)
    return f"<table>{head}{rows}</table>"


def _chapter_html(grid: ChapterGrid, chapters: list[ReviewChapter], page_dir: Path, several_runs: bool) -> str:
    title = next((c.title for c in chapters if c.title), "")
    heading = f"Chapter {grid.chapter + 1}" + (f": {title}" if title else "")
    loudness = "".join(_loudness_line(c, several_runs) for c in chapters)
    columns = "".join(f"<th>{_e(c.label)}</th>" for c in grid.columns)
    rows = "".join(_row_html(r, page_dir) for r in grid.rows)
    return (f"<section><h2>{_e(heading)}</h2>{loudness}{plot_image(chapters, several_runs, page_dir / PLOT_CACHE)}"
            f"<table><tr><th>line</th><th>text</th>{columns}</tr>{rows}</table></section>")


def render_html(data: ReviewData, page_dir: Path) -> str:
    """The whole page as one HTML string; every value from the database or the manifest is escaped."""
    run_ids = [r["run_id"] for r in data.runs]
    several_runs = len(run_ids) > 1
    titles = ", ".join(dict.fromkeys(str(r["title"]) for r in data.runs))
    grids = build_grids(data.takes, run_ids)
    sections = "".join(_chapter_html(g, [c for c in data.chapters if c.chapter == g.chapter], page_dir, several_runs)
                       for g in grids)
    missing = sum(1 for t in data.takes if t.status == "rendered" and t.path is None)
    note = f'<p class="missing">{missing} take files are missing on disk.</p>' if missing else ""
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Review: {_e(titles)}</title><style>{CSS}</style></head><body>"
            f"<h1>Review: {_e(titles)}</h1>{_runs_table(data.runs)}"
            f'<p class="meta">{len(data.takes)} takes. Levels are the raw take\'s, before normalisation.</p>{note}'
            f"{sections}</body></html>\n")


def write_review_page(db_path: Path, run_ids: list[str], out_path: Path | None = None) -> Path:
    """Write the review page of one run, or of several runs side by side, atomically; returns its path
    (default: `<first run's output folder>/review/<run id>.html`)."""
    data = load_review(Path(db_path), list(run_ids))
    if out_path is None:
        out_path = default_page_path(Path(data.runs[0]["output_dir"] or "."), [r["run_id"] for r in data.runs])
    out_path = Path(out_path).absolute()
    page = render_html(data, out_path.parent)
    try:
        write_text_atomic(out_path, page)
    except OSError as e:
        raise OutputWriteError(f"cannot write the review page {out_path}: {e.strerror or e}; choose another place "
                               "with --out or make the folder writable") from None
    return out_path
