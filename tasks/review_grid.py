"""The review page's layout: rows are script lines, columns are the distinct settings a line was rendered under
(sweep grid points, or the parameters that vary between takes of one line, per run). Pure functions."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tasks.review_data import ReviewTake

ColumnKey = tuple


@dataclass(frozen=True)
class Column:
    key: ColumnKey
    label: str
    settings: dict[str, Any]  # the parameters every take in the column shares


@dataclass(frozen=True)
class GridRow:
    chapter: int
    line: int
    chunk: int
    cells: tuple[tuple[ReviewTake, ...], ...]  # one cell per column of the chapter; a cell may be empty

    @property
    def first(self) -> ReviewTake:
        return next(t for cell in self.cells for t in cell)


@dataclass(frozen=True)
class ChapterGrid:
    chapter: int
    columns: tuple[Column, ...]
    rows: tuple[GridRow, ...]


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def varying_keys(takes: list[ReviewTake]) -> list[str]:
    """Parameters whose value differs between takes of the same line in the same run."""
    groups: dict[tuple, list[ReviewTake]] = {}
    for t in takes:
        groups.setdefault((t.run_id, t.chapter, t.line, t.chunk), []).append(t)
    keys: set[str] = set()
    for group in groups.values():
        for name in {k for t in group for k in t.params}:
            if len({_canon(t.params.get(name)) for t in group}) > 1:
                keys.add(name)
    return sorted(keys)


def column_key(take: ReviewTake, varying: list[str]) -> ColumnKey:
    if take.point is not None:
        return (take.run_id, "point", take.point)
    return (take.run_id, "params", tuple((k, _canon(take.params.get(k))) for k in varying))


def _shared(dicts: list[dict[str, Any]]) -> dict[str, Any]:
    first, rest = dicts[0], dicts[1:]
    return {k: v for k, v in first.items() if all(k in d and _canon(d[k]) == _canon(v) for d in rest)}


def _sort_value(value: Any) -> tuple:
    return (0, float(value), "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0.0, _canon(value))


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def build_columns(takes: list[ReviewTake], run_order: list[str]) -> dict[ColumnKey, Column]:
    """One column per distinct setting, labelled by the parameters that differ between columns (and the run,
    when several runs are shown)."""
    varying = varying_keys(takes)
    members: dict[ColumnKey, list[ReviewTake]] = {}
    for t in takes:
        members.setdefault(column_key(t, varying), []).append(t)
    settings = {key: (ts[0].point_params if ts[0].point_params is not None else _shared([t.params for t in ts]))
                for key, ts in members.items()}
    names = sorted({k for s in settings.values() for k in s})
    differing = [k for k in names if len({_canon(s.get(k)) for s in settings.values()}) > 1]
    several_runs = len({key[0] for key in members}) > 1

    def label(key: ColumnKey) -> str:
        parts = [f"run {key[0][:8]}"] if several_runs else []
        if key[1] == "point":
            parts.append(f"point {key[2]}")
        parts += [f"{k}={_format(settings[key][k])}" for k in differing if k in settings[key]]
        return " · ".join(parts) or "take"

    def order(key: ColumnKey) -> tuple:
        run = run_order.index(key[0]) if key[0] in run_order else len(run_order)
        point = _sort_value(key[2]) if key[1] == "point" else (0, 0.0, "")
        return (run, point, tuple(_sort_value(settings[key].get(k)) for k in differing))

    return {key: Column(key, label(key), settings[key]) for key in sorted(members, key=order)}


def build_grids(takes: list[ReviewTake], run_order: list[str]) -> list[ChapterGrid]:
    """Per chapter: its lines as rows and, as columns, the settings any of its lines was rendered under."""
    columns = build_columns(takes, run_order)
    varying = varying_keys(takes)
    grids = []
    for chapter in sorted({t.chapter for t in takes}):
        in_chapter = [t for t in takes if t.chapter == chapter]
        used = [key for key in columns if any(column_key(t, varying) == key for t in in_chapter)]
        rows = []
        for position in sorted({(t.line, t.chunk) for t in in_chapter}):
            line_takes = [t for t in in_chapter if (t.line, t.chunk) == position]
            cells = tuple(tuple(t for t in line_takes if column_key(t, varying) == key) for key in used)
            rows.append(GridRow(chapter, position[0], position[1], cells))
        grids.append(ChapterGrid(chapter, tuple(columns[k] for k in used), tuple(rows)))
    return grids
