"""The review page's layout: rows are script lines, columns are the distinct settings a line was rendered under
(sweep grid points, or the parameters that vary between takes of one line, per run). Pure functions."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tasks.review.data import ReviewTake

ColumnKey = tuple


@dataclass(frozen=True)
class Column:
    key: ColumnKey
    label: str


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
        if len(group) < 2:
            continue  # one take of a line varies from nothing
        for name in {k for t in group for k in t.params}:
            if len({_canon(t.params.get(name)) for t in group}) > 1:
                keys.add(name)
    return sorted(keys)


def column_key(take: ReviewTake, varying: list[str]) -> ColumnKey:
    if take.point is not None:
        return (take.run_id, "point", take.point)
    return (take.run_id, "params", tuple((k, _canon(take.params.get(k))) for k in varying))


def _effective(take: ReviewTake) -> dict[str, Any]:
    """The take's parameters, with its sweep grid point's settings where a sweep recorded them."""
    return {**take.params, **(take.point_params or {})}


def _sort_value(value: Any) -> tuple:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, _canon(value))


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def differing_keys(members: dict[ColumnKey, list[ReviewTake]]) -> list[str]:
    """Parameters on which the columns disagree for some line: what a column label has to say (seed last)."""
    by_line: dict[tuple, list[tuple[ColumnKey, dict[str, Any]]]] = {}
    for key, takes in members.items():
        for t in takes:
            by_line.setdefault((t.chapter, t.line, t.chunk), []).append((key, _effective(t)))
    keys: set[str] = set()
    for entries in by_line.values():
        for name in {k for _, params in entries for k in params}:
            if len({key for key, _ in entries}) > 1 and len({_canon(p.get(name)) for _, p in entries}) > 1:
                keys.add(name)
    return sorted(keys, key=lambda k: (k == "seed", k))  # seeds vary fastest: a setting's takes sit together


def build_columns(takes: list[ReviewTake], run_order: list[str]) -> dict[ColumnKey, Column]:
    """One column per distinct setting, labelled by the parameters on which columns differ for the same line
    (and the run, when several runs are shown)."""
    varying = varying_keys(takes)
    members: dict[ColumnKey, list[ReviewTake]] = {}
    for t in takes:
        members.setdefault(column_key(t, varying), []).append(t)
    differing = differing_keys(members)
    values = {key: {k: sorted({_canon(_effective(t).get(k)) for t in ts}) for k in differing}
              for key, ts in members.items()}
    several_runs = len({key[0] for key in members}) > 1

    def label(key: ColumnKey) -> str:
        parts = [f"run {key[0][:8]}"] if several_runs else []
        if key[1] == "point":
            parts.append(f"point {key[2]}")
        parts += [f"{k}=" + "/".join(_format(json.loads(v)) for v in values[key][k]) for k in differing]
        return " · ".join(parts) or "take"

    def order(key: ColumnKey) -> tuple:
        run = run_order.index(key[0]) if key[0] in run_order else len(run_order)
        point = _sort_value(key[2]) if key[1] == "point" else (0, 0.0, "")
        return (run, point, tuple(_sort_value(json.loads(values[key][k][0])) for k in differing))

    return {key: Column(key, label(key)) for key in sorted(members, key=order)}


def build_grids(takes: list[ReviewTake], run_order: list[str]) -> list[ChapterGrid]:
    """Per chapter: its lines as rows and, as columns, the settings any of its lines was rendered under."""
    columns = build_columns(takes, run_order)
    varying = varying_keys(takes)
    lines: dict[int, dict[tuple[int, int], list[ReviewTake]]] = {}  # chapter -> (line, chunk) -> its takes
    for t in takes:
        lines.setdefault(t.chapter, {}).setdefault((t.line, t.chunk), []).append(t)
    grids = []
    for chapter in sorted(lines):
        keys_in_chapter = {column_key(t, varying) for line in lines[chapter].values() for t in line}
        used = [key for key in columns if key in keys_in_chapter]
        rows = []
        for position in sorted(lines[chapter]):
            line_takes = lines[chapter][position]
            cells = tuple(tuple(t for t in line_takes if column_key(t, varying) == key) for key in used)
            rows.append(GridRow(chapter, position[0], position[1], cells))
        grids.append(ChapterGrid(chapter, tuple(columns[k] for k in used), tuple(rows)))
    return grids
