"""Incremental re-render on the embedded engine: first run, unchanged re-run, one-line edit (one process).

    .venv/bin/python bench/incremental.py [--lines 200]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import prepare_environment, save, write_manifest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200)
    args = parser.parse_args()
    scratch = prepare_environment()
    import flows  # noqa: F401
    from flows.render import render_manifest

    path = write_manifest(scratch, args.lines, name="incremental")
    out = scratch / "out"

    def run() -> tuple[float, object]:
        start = time.perf_counter()
        summary = render_manifest(str(path), engine="hibari", output_dir=str(out))
        return time.perf_counter() - start, summary

    first_total, first = run()
    again_total, again = run()
    data = yaml.safe_load(path.read_text())
    data["chapters"][0]["lines"][6]["text"] = "This is the edited line seven."
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    edit_total, edit = run()

    results = {
        "lines": args.lines,
        "prefect_startup_s": round(first_total - first.wall_seconds, 2),
        "first_run_s": round(first.wall_seconds, 2),
        "unchanged_rerun_s": round(again.wall_seconds, 3),
        "one_line_edit_rerun_s": round(edit.wall_seconds, 3),
        "unchanged_rerun_fraction_of_first": round(again.wall_seconds / first.wall_seconds, 4),
        "takes_rendered": [first.takes_rendered, again.takes_rendered, edit.takes_rendered],
        "orchestration_per_run_s": [round(first_total - first.wall_seconds, 2), round(again_total - again.wall_seconds, 2),
                                    round(edit_total - edit.wall_seconds, 2)],
    }
    for key, value in results.items():
        print(f"{key:36s} {value}")
    save("incremental", results)


if __name__ == "__main__":
    main()
