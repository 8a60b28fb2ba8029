"""`voicebatch history | show | query | provenance | db path`: run history from the provenance database."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from tasks.core.settings import get_settings
from tasks.store.db import move_aside
from tasks.store.history import provenance_of, query, run_detail, runs


def _db() -> Path:
    return get_settings().database


def print_table(columns: list[str], rows: list[tuple], limit_width: int = 60) -> None:
    cells = [[("" if v is None else str(v))[:limit_width] for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _emit(columns: list[str], rows: list[tuple], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps([dict(zip(columns, r)) for r in rows], indent=2, default=str))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        print_table(columns, rows)


def cmd_history(args: argparse.Namespace) -> int:
    found = runs(_db(), args.limit, args.manifest)
    if args.json:
        print(json.dumps(found, indent=2, default=str))
    elif not found:
        print("no runs yet")
    else:
        print_table(["started", "status", "run", "title", "rendered", "reused", "audio s", "wall s"],
                    [(f"{r['started_at']:%Y-%m-%d %H:%M:%S}", r["status"], r["run_id"][:8], r["title"],
                      r["takes_rendered"], r["takes_reused"],
                      None if r["audio_seconds"] is None else f"{r['audio_seconds']:.1f}",
                      None if r["wall_seconds"] is None else f"{r['wall_seconds']:.1f}") for r in found])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    detail = run_detail(_db(), args.run_id)
    if args.json:
        print(json.dumps(detail, indent=2, default=str))
        return 0
    run = detail["run"]
    print(f"run {run['run_id']}  {run['status']}  {run['title']}\n  manifest {run['manifest_path']}")
    print(f"  started {run['started_at']}, ended {run['ended_at']}; wall {run['wall_seconds'] or 0:.1f} s, "
          f"model load {run['load_seconds'] or 0:.1f} s; {run['takes_rendered'] or 0} rendered, "
          f"{run['takes_reused'] or 0} reused; device {run['device']} {run['dtype']}")
    if run["error"]:
        print(f"  error: {run['error']}")
    print()
    print_table(["ch", "line", "chunk", "speaker", "voice", "engine", "seed", "cache", "dur s", "render s", "text"],
                [(t["chapter"] + 1, t["line"] + 1, t["chunk"] + 1, t["speaker"], t["voice_id"], t["engine"], t["seed"],
                  "hit" if t["cache_hit"] else "new", f"{t['duration']:.2f}", f"{t['render_seconds'] or 0:.3f}",
                  t["text"]) for t in detail["takes"]])
    print()
    print_table(["kind", "title", "duration s", "state", "path"],
                [(o["kind"], o["title"], f"{o['duration']:.1f}", "reused" if o["reused"] else "written", o["path"])
                 for o in detail["outputs"]], limit_width=100)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    columns, rows = query(_db(), args.sql)
    _emit(columns, rows, "json" if args.json else "csv" if args.csv else "table")
    return 0


def cmd_provenance(args: argparse.Namespace) -> int:
    found: dict[str, Any] = provenance_of(_db(), args.file)
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    run = found["run"]
    print(f"{args.file}: {found['kind']} (sha256 {found['sha256'][:16]}...)")
    print(f"  made by run {run['run_id']} ({run['status']}) at {run['started_at']} from {run['manifest_path']}")
    print_table(["ch", "line", "speaker", "voice", "engine", "model", "revision", "device", "seed", "params"],
                [(t["chapter"] + 1, t["line"] + 1, t["speaker"], t["voice_id"], t["engine"], t["model"], t["revision"],
                  f"{t['device']}/{t['dtype']}", t["seed"], t["params"]) for t in found["takes"]], limit_width=120)
    return 0


def cmd_db_path(args: argparse.Namespace) -> int:
    print(_db())
    return 0


def cmd_db_recover(args: argparse.Namespace) -> int:
    path = args.path or _db()
    aside = move_aside(path)
    print(f"moved the damaged database to {aside}\nstarted a new one at {path}; the next render adopts the takes "
          "already on disk (the run history stays in the old file)")
    return 0


def add_commands(sub) -> None:
    history = sub.add_parser("history", help="list recent runs")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--manifest", type=Path, help="only runs of this manifest")
    history.add_argument("--json", action="store_true")
    history.set_defaults(func=cmd_history)

    show = sub.add_parser("show", help="one run: its takes, cache hits, timings and outputs")
    show.add_argument("run_id", help="a run id or a unique prefix of one")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)

    query = sub.add_parser("query", help="run read-only SQL on the provenance database")
    query.add_argument("sql")
    fmt = query.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    query.set_defaults(func=cmd_query)

    prov = sub.add_parser("provenance", help="which run, model, voice, parameters and seed made this audio file")
    prov.add_argument("file", type=Path)
    prov.add_argument("--json", action="store_true")
    prov.set_defaults(func=cmd_provenance)

    db = sub.add_parser("db", help="the provenance database")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("path", help="print the database's path").set_defaults(func=cmd_db_path)
    recover = db_sub.add_parser("recover", help="move a damaged database aside (timestamped) and start a new one")
    recover.add_argument("path", type=Path, nargs="?", help="the database (default: the one `db path` prints)")
    recover.set_defaults(func=cmd_db_recover)
